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
    /// pointer, asked of `/proc/self/maps` with raw system calls: one
    /// `PROCMAP_QUERY` ioctl where the kernel has it (Linux 6.11), else a
    /// parse of the file, which costs tens of microseconds and grows with
    /// the process's mappings (every thread a recording or a guarded block
    /// meets pays it once: a program that keeps starting threads pays it
    /// often).
    ///
    /// Not `pthread_getattr_np`: for the main thread it reads the same file
    /// through stdio while holding the thread's lock, and the `malloc` that
    /// stdio makes is recorded here, which would take that lock again (Rust's
    /// runtime calls it at start-up: a deadlock).
    pub fn of_current_thread() -> Bounds {
        let probe = 0u8;
        let sp = &probe as *const u8 as usize;
        // SAFETY: a read-only open of a procfs file.
        let fd = unsafe {
            libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Bounds::default();
        }
        let found = query_mapping(fd, sp).unwrap_or_else(|| parse_maps(fd, sp));
        // SAFETY: our own descriptor, opened above.
        unsafe { libc::close(fd) };
        found
    }

    /// Does `[p, p + len)` lie inside the stack?
    pub fn contains(&self, p: usize, len: usize) -> bool {
        p >= self.lo && p.saturating_add(len) <= self.hi
    }
}

/// `struct procmap_query` of `linux/fs.h` (Linux 6.11): the mapping that
/// covers an address, from an ioctl on a maps file. Only the range is
/// asked for (no name, no build id: their sizes stay 0).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`: the size, 0x68, is encoded in
/// the request.
const PROCMAP_QUERY: libc::c_ulong = 0xC068_6611;
const _: () = assert!(core::mem::size_of::<ProcmapQuery>() == 0x68);

/// The mapping that covers `addr`, by `PROCMAP_QUERY` on the maps file
/// `fd`; None where the kernel does not know the ioctl (ENOTTY) or finds
/// no mapping there.
fn query_mapping(fd: libc::c_int, addr: usize) -> Option<Bounds> {
    let mut q = ProcmapQuery {
        size: core::mem::size_of::<ProcmapQuery>() as u64,
        // No flags: the mapping that covers the address, or none.
        query_addr: addr as u64,
        ..ProcmapQuery::default()
    };
    // SAFETY: `q` is a live, writable `procmap_query` whose `size` says how
    // large it is; no name or build-id buffer is passed (sizes and
    // addresses 0), so the kernel writes into `q` alone.
    let rc = unsafe { libc::ioctl(fd, PROCMAP_QUERY as _, &mut q as *mut ProcmapQuery) };
    (rc == 0 && q.vma_start <= addr as u64 && (addr as u64) < q.vma_end).then_some(Bounds {
        lo: q.vma_start as usize,
        hi: q.vma_end as usize,
    })
}

/// The mapping that covers `sp`, by reading the maps file `fd` line by
/// line (empty bounds when none does).
fn parse_maps(fd: libc::c_int, sp: usize) -> Bounds {
    let mut buf = [0u8; 4096];
    let mut have = 0usize;
    loop {
        let room = &mut buf[have..];
        // SAFETY: reads at most `room.len()` bytes into `room`.
        let n = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
        if n <= 0 {
            return Bounds::default();
        }
        have += n as usize;
        // Parse complete lines; keep a partial last line for later.
        let mut start = 0;
        while let Some(nl) = buf[start..have].iter().position(|&b| b == b'\n') {
            if let Some((lo, hi)) = parse_range(&buf[start..start + nl])
                && lo <= sp
                && sp < hi
            {
                return Bounds { lo, hi };
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

    /// The ioctl and the parse find the same mapping, for the main
    /// thread's stack and a spawned thread's (where the kernel has the
    /// ioctl; said and skipped where it has not).
    #[test]
    fn the_query_and_the_parse_agree() {
        fn both() -> Option<(Bounds, Bounds)> {
            let local = 0u64;
            let p = &local as *const u64 as usize;
            // SAFETY: a read-only open of a procfs file, closed below.
            let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY) };
            assert!(fd >= 0);
            let queried = query_mapping(fd, p);
            let parsed = parse_maps(fd, p);
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
            queried.map(|q| (q, parsed))
        }
        let Some((q, parsed)) = both() else {
            eprintln!("skipped: this kernel has no PROCMAP_QUERY (Linux 6.11)");
            return;
        };
        assert_eq!((q.lo, q.hi), (parsed.lo, parsed.hi));
        assert!(q.lo < q.hi);
        let (q, parsed) = std::thread::spawn(both).join().unwrap().unwrap();
        assert_eq!((q.lo, q.hi), (parsed.lo, parsed.hi));
        // An address no mapping covers (the first page is never mapped).
        // SAFETY: as above.
        let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY) };
        assert!(query_mapping(fd, 16).is_none());
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
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
