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
    /// The calling thread's stack: the mapping that holds the current stack
    /// pointer, found in `/proc/self/maps` with raw system calls.
    ///
    /// Not `pthread_getattr_np`: for the main thread it reads the same file
    /// through stdio while holding the thread's lock, and the `malloc` that
    /// stdio makes is recorded here, which would take that lock again (Rust's
    /// runtime calls it at start-up: a deadlock).
    pub fn of_current_thread() -> Bounds {
        let probe = 0u8;
        let sp = &probe as *const u8 as usize;
        let mut found = Bounds::default();
        // SAFETY: a read-only open of a procfs file; reads stay inside `buf`.
        unsafe {
            let fd = libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return found;
            }
            let mut buf = [0u8; 4096];
            let mut have = 0usize;
            'read: loop {
                let n = libc::read(fd, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
                if n <= 0 {
                    break;
                }
                have += n as usize;
                // Parse complete lines; keep a partial last line for later.
                let mut start = 0;
                while let Some(nl) = buf[start..have].iter().position(|&b| b == b'\n') {
                    let line = &buf[start..start + nl];
                    if let Some((lo, hi)) = parse_range(line)
                        && lo <= sp
                        && sp < hi
                    {
                        found = Bounds { lo, hi };
                        break 'read;
                    }
                    start += nl + 1;
                }
                buf.copy_within(start..have, 0);
                have -= start;
                if have == buf.len() {
                    // A line longer than the buffer: drop it.
                    have = 0;
                }
            }
            libc::close(fd);
        }
        found
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
        // One comparison per read: `addr - lo` wraps for an address below
        // the stack, so one unsigned bound covers both ends. (Addresses
        // from CFI are aligned; the frame-pointer guess checks its own.)
        let Some(span) = bounds
            .hi
            .checked_sub(bounds.lo)
            .and_then(|len| len.checked_sub(8))
        else {
            return 0;
        };
        let (lo, span) = (bounds.lo as u64, span as u64);
        let read = |addr: u64| {
            (addr.wrapping_sub(lo) <= span).then(|| {
                // SAFETY: [addr, addr + 8) lies inside this thread's mapped
                // stack (checked); the read does not assume alignment.
                unsafe { (addr as *const u64).read_unaligned() }
            })
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

/// Parses the `start-end` address range at the beginning of a maps line.
fn parse_range(line: &[u8]) -> Option<(usize, usize)> {
    let dash = line.iter().position(|&b| b == b'-')?;
    let space = line.iter().position(|&b| b == b' ')?;
    let hex = |s: &[u8]| -> Option<usize> {
        let mut v = 0usize;
        for &c in s {
            let d = (c as char).to_digit(16)? as usize;
            v = v.checked_mul(16)?.checked_add(d)?;
        }
        Some(v)
    };
    Some((hex(&line[..dash])?, hex(&line[dash + 1..space])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_mapping_holds_a_local() {
        let b = Bounds::of_current_thread();
        let local = 0u64;
        let p = &local as *const u64 as usize;
        assert!(b.lo < b.hi && b.lo <= p && p < b.hi, "{b:?} vs {p:#x}");
        let t = std::thread::spawn(|| {
            let b = Bounds::of_current_thread();
            let local = 0u64;
            let p = &local as *const u64 as usize;
            b.lo <= p && p < b.hi
        });
        assert!(t.join().unwrap());
    }

    #[test]
    fn parses_maps_ranges() {
        assert_eq!(
            parse_range(b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0   [stack]"),
            Some((0x7ffd1000, 0x7ffd3000))
        );
        assert_eq!(parse_range(b"garbage"), None);
    }
}
