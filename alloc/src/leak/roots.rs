//! The root set of the leak scan: memory that may hold pointers to blocks
//! without being a block itself.
//!
//! Roots are every private, readable and writable mapping of the process
//! (from `/proc/self/maps`): the `.data` and `.bss` of every module, thread
//! stacks (with their static TLS, which glibc keeps at the top of each
//! thread's stack mapping), the main thread's TLS, the C library's own heap
//! (a Rust program using memtally as its global allocator still has C code
//! that keeps Rust pointers in `malloc`ed memory) and anonymous mappings the
//! program made. Taken out of them:
//!
//! - memtally's segments: the heap is reached through chunks, never as a
//!   root, or nothing would ever be leaked; and the cached empty segments
//!   and huge mappings, whose stale contents would keep leaks alive;
//! - memtally's internal mappings (heaps, recorder state, scan scratch): the
//!   recorder keeps the addresses of recent blocks, which must not keep
//!   leaks alive; and the segment map's own bitmap;
//! - the dead part of each stack: below the stack pointer of each stopped
//!   thread (less the 128-byte red zone), and of the scanning thread.
//!
//! Shared mappings (files mapped `MAP_SHARED`, shared memory) and device
//! mappings are not scanned: reading them can be slow or have effects, and
//! heap pointers kept there would be meaningless to another process.

use super::scratch::ScratchVec;

/// The red zone below the stack pointer that leaf functions may use.
const RED_ZONE: usize = 128;

/// The ranges to scan, sorted and disjoint.
pub struct Roots {
    pub ranges: ScratchVec<(usize, usize)>,
}

impl Roots {
    /// Reads the process's mappings and takes out what is not a root:
    /// `excluded` (any order, may overlap) and, for each stack pointer in
    /// `sps`, its mapping's part below it. None when `/proc/self/maps`
    /// cannot be read or scratch memory mapped.
    pub fn collect(excluded: &mut ScratchVec<(usize, usize)>, sps: &[usize]) -> Option<Roots> {
        let maps = read_maps()?;
        let mut ranges = ScratchVec::new();
        for line in maps.as_slice().split(|&b| b == b'\n') {
            let Some((lo, hi, scan)) = parse_line(line) else {
                continue;
            };
            if !scan {
                continue;
            }
            // A stack: only from the lowest stack pointer in it up.
            let lowest_sp = sps.iter().copied().filter(|&sp| lo <= sp && sp < hi).min();
            let lo = match lowest_sp {
                Some(sp) => sp.saturating_sub(RED_ZONE).max(lo) & !7,
                None => lo,
            };
            if !ranges.push((lo, hi)) {
                return None;
            }
        }
        let ex = excluded.as_mut_slice();
        ex.sort_unstable();
        let mut out = ScratchVec::new();
        for &(lo, hi) in ranges.as_slice() {
            // Subtract every excluded range from [lo, hi).
            let mut at = lo;
            let first = ex.partition_point(|&(_, e_hi)| e_hi <= lo);
            for &(e_lo, e_hi) in &ex[first..] {
                if e_lo >= hi {
                    break;
                }
                if e_lo > at && !out.push((at, e_lo)) {
                    return None;
                }
                at = at.max(e_hi);
            }
            if at < hi && !out.push((at, hi)) {
                return None;
            }
        }
        Some(Roots { ranges: out })
    }
}

/// `/proc/self/maps`, read whole with `read` (no stdio: it allocates).
fn read_maps() -> Option<ScratchVec<u8>> {
    // SAFETY: a read-only open of a procfs file.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = ScratchVec::<u8>::new();
    let ok = loop {
        if !buf.reserve(16 * 1024) {
            break false;
        }
        let room = buf.spare();
        // SAFETY: `read` writes at most `room.1` bytes at `room.0`, the
        // array's spare capacity.
        let n = unsafe { libc::read(fd, room.0.cast(), room.1) };
        if n <= 0 {
            break n == 0;
        }
        // SAFETY: `read` initialised `n` more bytes.
        unsafe { buf.set_len(buf.len() + n as usize) };
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    ok.then_some(buf)
}

/// Parses one line of `/proc/self/maps`: its range, and whether it is a
/// root candidate (private, readable, writable, not a kernel or device
/// mapping).
fn parse_line(line: &[u8]) -> Option<(usize, usize, bool)> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    let perms = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let lo = hex(&range[..dash])?;
    let hi = hex(&range[dash + 1..])?;
    let path = fields.nth(3).unwrap_or(b"");
    let private_rw = perms.len() >= 4 && perms[0] == b'r' && perms[1] == b'w' && perms[3] == b'p';
    let special = path.starts_with(b"[v") // [vvar], [vvar_vclock], [vsyscall], [vdso]
        || (path.starts_with(b"/dev/") && !path.starts_with(b"/dev/zero"));
    Some((lo, hi, private_rw && !special))
}

fn hex(s: &[u8]) -> Option<usize> {
    let mut v: usize = 0;
    if s.is_empty() {
        return None;
    }
    for &b in s {
        let d = (b as char).to_digit(16)? as usize;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_only_private_writable_mappings_are_roots() {
        let l = b"7f0000000000-7f0000021000 rw-p 00000000 00:00 0 ";
        assert_eq!(
            parse_line(l),
            Some((0x7f00_0000_0000, 0x7f00_0002_1000, true))
        );
        let l = b"55d0c0a00000-55d0c0a21000 rw-p 00002000 fe:01 1234   /usr/bin/python3";
        assert_eq!(parse_line(l).map(|r| r.2), Some(true));
        let l = b"7f0000000000-7f0000021000 r--p 00000000 00:00 0 ";
        assert_eq!(parse_line(l).map(|r| r.2), Some(false));
        let l = b"7f0000000000-7f0000021000 rw-s 00000000 00:05 7 /dev/shm/x";
        assert_eq!(parse_line(l).map(|r| r.2), Some(false));
        let l = b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0   [vvar]";
        assert_eq!(parse_line(l).map(|r| r.2), Some(false));
        assert_eq!(parse_line(b""), None);
        assert_eq!(parse_line(b"garbage"), None);
    }
}
