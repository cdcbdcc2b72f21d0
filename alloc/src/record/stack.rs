//! Stack capture: the return addresses of the calling thread's frames,
//! innermost first.
//!
//! On x86_64 the stack is unwound with the call-frame information of every
//! module (`unwind.rs`): correct for code built with or without frame
//! pointers, and a few nanoseconds per frame once a thread's rule cache
//! knows the return addresses. Elsewhere frame pointers are walked: each
//! frame stores the caller's frame pointer and the return address next to
//! it; the walk stops at the first frame pointer that leaves the thread's
//! stack, goes backwards, or is misaligned.

/// The calling thread's stack range, for bounds checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bounds {
    /// Lowest address of the stack.
    pub lo: usize,
    /// One past the highest address.
    pub hi: usize,
}

impl Bounds {
    /// The calling thread's stack, from pthread's attributes. May allocate
    /// (glibc reads /proc/self/maps for the main thread), so it is called
    /// once per thread, outside any allocator critical section.
    pub fn of_current_thread() -> Bounds {
        // SAFETY: `attr` is initialised by pthread_getattr_np before use and
        // destroyed after; the out-pointers are valid locals.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return Bounds::default();
            }
            let mut addr: *mut libc::c_void = core::ptr::null_mut();
            let mut size: usize = 0;
            let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            if rc != 0 {
                return Bounds::default();
            }
            Bounds {
                lo: addr as usize,
                hi: addr as usize + size,
            }
        }
    }

    /// Does `[p, p + len)` lie inside the stack?
    pub fn contains(&self, p: usize, len: usize) -> bool {
        p >= self.lo && p.saturating_add(len) <= self.hi
    }
}

/// Fills `out` with return addresses, innermost first; returns how many.
/// Uses the DWARF unwinder (with the thread's rule cache) on x86_64, and
/// frame pointers elsewhere.
#[inline(never)]
pub fn capture(out: &mut [u64], bounds: Bounds, cache: &super::unwind::RuleCache) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let (rip, rsp, rbp): (u64, u64, u64);
        // SAFETY: reads three registers; no memory access.
        unsafe {
            core::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) rip,
                sp = out(reg) rsp,
                bp = out(reg) rbp,
                options(nomem, nostack, preserves_flags),
            );
        }
        let read = |addr: u64| {
            if addr % 8 == 0 && bounds.contains(addr as usize, 8) {
                // SAFETY: inside this thread's mapped stack (checked).
                Some(unsafe { *(addr as *const u64) })
            } else {
                None
            }
        };
        super::unwind::unwind(super::unwind::Regs { rip, rsp, rbp }, cache, out, read)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cache;
        capture_frame_pointers(out, bounds)
    }
}

/// The current frame pointer.
#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register; no memory access.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register; no memory access.
    unsafe {
        core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

/// Frame-pointer walk: fills `out` with return addresses, innermost first.
#[allow(dead_code)]
#[inline(never)]
fn capture_frame_pointers(out: &mut [u64], bounds: Bounds) -> usize {
    let mut fp = frame_pointer();
    let mut n = 0;
    while n < out.len() {
        if fp % 8 != 0 || !bounds.contains(fp, 16) {
            break;
        }
        // SAFETY: [fp, fp + 16) lies inside this thread's stack (checked),
        // which is mapped and readable.
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
        if ret == 0 {
            break;
        }
        out[n] = ret as u64;
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}
