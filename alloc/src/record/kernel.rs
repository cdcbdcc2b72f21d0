//! Memory the kernel holds for the process on behalf of its file
//! descriptors, sampled by the writer (no hook: liburing makes raw system
//! calls, and socket buffers are never allocated by a call at all).
//!
//! Every [`SAMPLE_EVERY_NS`], the writer lists `/proc/self/fd` and looks at
//! each descriptor's link:
//! - `socket:[...]`: `getsockopt(SO_MEMINFO)` gives the socket's memory;
//!   its level is what was received and not yet read (`rmem_alloc`) plus
//!   what is queued and not yet sent (`wmem_queued`), in the kernel's
//!   accounting (buffer sizes, not payload bytes);
//! - `anon_inode:[io_uring]`: `/proc/self/fdinfo/N` lists the ring's
//!   registered buffers (`UserBufs:` then `index: 0xADDR/LENGTH` lines):
//!   pinned user pages, their lengths summed;
//! - a packet socket (`AF_PACKET`, `AF_XDP`: `SO_DOMAIN`) may have rings
//!   (`PACKET_RX_RING`/`TX_RING`), kernel memory the program maps: when
//!   there is one, `/proc/self/maps` is read for mappings of
//!   `socket:[INODE]`, their sizes summed per socket.
//!
//! A level that changed since the last sample (0 for a descriptor gone) is
//! written as a `GAUGE` record. No allocation: fixed buffers on the stack
//! and in the writer's state; at most [`MAX_FDS`] descriptors looked at
//! and [`MAX_FOLLOWED`] levels followed per sample (a process with more
//! shows the first ones).

use core::ffi::c_int;

use crate::trace::device::memory;

/// How often the writer samples.
pub const SAMPLE_EVERY_NS: u64 = 500_000_000;
/// Levels followed at most.
pub const MAX_FOLLOWED: usize = 512;
/// Descriptors looked at per sample at most.
const MAX_FDS: usize = 4096;

/// `SO_DOMAIN`, and the families whose sockets have mapped rings.
const SO_DOMAIN: c_int = 39;
const AF_PACKET: c_int = 17;
const AF_XDP: c_int = 44;
/// Packet sockets whose rings are looked for at most.
const MAX_RING_SOCKETS: usize = 64;

/// `SO_MEMINFO` and the indices of its `u32` array (`SK_MEMINFO_*`).
const SO_MEMINFO: c_int = 55;
const MEMINFO_RMEM_ALLOC: usize = 0;
const MEMINFO_WMEM_QUEUED: usize = 5;
const MEMINFO_VARS: usize = 9;

/// One level: a descriptor's memory of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// `trace::device::memory::*`.
    pub memory: u8,
    /// The file descriptor.
    pub fd: u32,
    /// Bytes.
    pub bytes: u64,
}

const NO_LEVEL: Level = Level {
    memory: 0,
    fd: 0,
    bytes: 0,
};

/// The levels written last.
pub struct Sampler {
    followed: [Level; MAX_FOLLOWED],
    count: usize,
}

impl Sampler {
    /// No level written yet.
    pub const fn new() -> Sampler {
        Sampler {
            followed: [NO_LEVEL; MAX_FOLLOWED],
            count: 0,
        }
    }

    /// Samples every descriptor; calls `changed` with each level that
    /// differs from the last written (0 for one gone).
    pub fn sample(&mut self, mut changed: impl FnMut(Level)) {
        let mut now = [NO_LEVEL; MAX_FOLLOWED];
        let n = current_levels(&mut now);
        for level in &now[..n] {
            let same = self.followed[..self.count]
                .iter()
                .any(|l| l.memory == level.memory && l.fd == level.fd && l.bytes == level.bytes);
            if !same {
                changed(*level);
            }
        }
        for old in &self.followed[..self.count] {
            if !now[..n]
                .iter()
                .any(|l| l.memory == old.memory && l.fd == old.fd)
            {
                changed(Level { bytes: 0, ..*old });
            }
        }
        self.followed = now;
        self.count = n;
    }
}

/// Fills `out` with the non-zero levels of the process's descriptors.
fn current_levels(out: &mut [Level]) -> usize {
    let mut n = 0;
    let mut seen = 0;
    // Packet sockets: (inode, descriptor).
    let mut ring_sockets = [(0u64, 0u32); MAX_RING_SOCKETS];
    let mut rings = 0;
    crate::os::for_each_entry(c"/proc/self/fd", |dir, name| {
        let Some(fd) = parse_u32(name) else {
            return true;
        };
        if fd as c_int == dir {
            return true;
        }
        seen += 1;
        if seen > MAX_FDS || n == out.len() {
            return false;
        }
        let (level, packet_inode) = level_of(dir, name, fd);
        if let Some(level) = level {
            out[n] = level;
            n += 1;
        }
        if let Some(inode) = packet_inode
            && rings < MAX_RING_SOCKETS
        {
            ring_sockets[rings] = (inode, fd);
            rings += 1;
        }
        true
    });
    if rings > 0 {
        let mut sizes = [0u64; MAX_RING_SOCKETS];
        mapped_sockets(&ring_sockets[..rings], &mut sizes);
        for (&(_, fd), &bytes) in ring_sockets[..rings].iter().zip(&sizes) {
            if bytes > 0 && n < out.len() {
                out[n] = Level {
                    memory: memory::PACKET_RING,
                    fd,
                    bytes,
                };
                n += 1;
            }
        }
    }
    n
}

/// Sums, per socket of `sockets` (inode, descriptor), the sizes of its
/// mappings in `/proc/self/maps` (lines ending `socket:[INODE]`).
fn mapped_sockets(sockets: &[(u64, u32)], sizes: &mut [u64]) {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 16384];
    let mut kept = 0;
    loop {
        // SAFETY: reads stay inside `buf`, after the kept partial line.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().add(kept).cast(), buf.len() - kept) };
        if r <= 0 {
            break;
        }
        let end = kept + r as usize;
        let mut start = 0;
        while let Some(nl) = buf[start..end].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + nl];
            if let Some((inode, size)) = socket_mapping(line)
                && let Some(k) = sockets.iter().position(|s| s.0 == inode)
            {
                sizes[k] = sizes[k].saturating_add(size);
            }
            start += nl + 1;
        }
        // A partial line moves to the front; one too long for the buffer
        // (not a socket's: those are short) is dropped.
        kept = end - start;
        if kept == buf.len() {
            kept = 0;
        } else {
            buf.copy_within(start..end, 0);
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
}

/// A maps line of a socket's mapping: its inode and size.
fn socket_mapping(line: &[u8]) -> Option<(u64, u64)> {
    let tail = line.strip_suffix(b"]")?;
    let at = tail.windows(8).rposition(|w| w == b"socket:[")?;
    let inode = crate::os::parse_decimal(&tail[at + 8..])?;
    let dash = line.iter().position(|&b| b == b'-')?;
    let space = line.iter().position(|&b| b == b' ')?;
    let start = parse_hex(&line[..dash])?;
    let end = parse_hex(&line[dash + 1..space])?;
    Some((inode, end.checked_sub(start)?))
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        let d = (b as char).to_digit(16)?;
        Some(v << 4 | u64::from(d))
    })
}

/// The level of descriptor `fd` (named `name` in the directory `dir`), if
/// it is a socket or an io_uring holding memory; and its inode if it is a
/// packet socket (whose rings are looked for in the maps).
fn level_of(dir: c_int, name: &[u8], fd: u32) -> (Option<Level>, Option<u64>) {
    let mut path = [0u8; 16];
    if name.len() >= path.len() {
        return (None, None);
    }
    path[..name.len()].copy_from_slice(name);
    let mut link = [0u8; 64];
    // SAFETY: NUL-terminated name relative to `dir`; at most `link.len()`
    // bytes written.
    let len = unsafe {
        libc::readlinkat(
            dir,
            path.as_ptr().cast(),
            link.as_mut_ptr().cast(),
            link.len(),
        )
    };
    if len <= 0 {
        return (None, None);
    }
    let link = &link[..len as usize];
    let packet = link
        .strip_prefix(b"socket:[")
        .and_then(|l| l.strip_suffix(b"]"))
        .and_then(crate::os::parse_decimal)
        .filter(|_| matches!(socket_domain(fd), Some(AF_PACKET | AF_XDP)));
    (level_from_link(link, name, fd), packet)
}

/// A socket's address family.
fn socket_domain(fd: u32) -> Option<c_int> {
    let mut domain: c_int = 0;
    let mut len = core::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `domain`.
    let r = unsafe {
        libc::getsockopt(
            fd as c_int,
            libc::SOL_SOCKET,
            SO_DOMAIN,
            (&mut domain as *mut c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(domain)
}

/// The level a descriptor with `link` holds.
fn level_from_link(link: &[u8], name: &[u8], fd: u32) -> Option<Level> {
    let (kind, bytes) = if link.starts_with(b"socket:") {
        (memory::SOCKET, socket_bytes(fd)?)
    } else if link == b"anon_inode:[io_uring]" {
        (memory::IO_URING, io_uring_bytes(name)?)
    } else {
        return None;
    };
    (bytes > 0).then_some(Level {
        memory: kind,
        fd,
        bytes,
    })
}

/// A socket's received-unread and queued-unsent bytes: the kernel's
/// accounting of its buffers (`SO_MEMINFO`: what the data costs the
/// kernel, headers and slack included), at least the payload waiting to
/// be read (`SIOCINQ`: a Unix socket's data is charged to its sender's
/// allocation, which `SO_MEMINFO` does not count as queued, so it reads 0
/// there); where `SO_MEMINFO` is refused, the payload waiting in each
/// direction (`SIOCINQ` + `SIOCOUTQ`).
fn socket_bytes(fd: u32) -> Option<u64> {
    match meminfo_bytes(fd) {
        Some(accounted) => Some(accounted.max(unread_bytes(fd).unwrap_or(0))),
        None => queued_bytes(fd),
    }
}

/// `SIOCINQ`: bytes received and not read.
fn unread_bytes(fd: u32) -> Option<u64> {
    let mut inq: c_int = 0;
    // SAFETY: the ioctl writes one int through the pointer.
    let ok = unsafe { libc::ioctl(fd as c_int, libc::FIONREAD, &mut inq) == 0 };
    ok.then(|| inq.max(0) as u64)
}

/// `SO_MEMINFO`'s receive-allocated and write-queued bytes.
fn meminfo_bytes(fd: u32) -> Option<u64> {
    let mut info = [0u32; MEMINFO_VARS];
    let mut len = core::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe {
        libc::getsockopt(
            fd as c_int,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0).then(|| u64::from(info[MEMINFO_RMEM_ALLOC]) + u64::from(info[MEMINFO_WMEM_QUEUED]))
}

/// `SIOCINQ` + `SIOCOUTQ`: bytes received and not read, sent and not
/// acknowledged (or not yet sent).
fn queued_bytes(fd: u32) -> Option<u64> {
    let mut outq: c_int = 0;
    // SAFETY: the ioctl writes one int through the pointer.
    let ok = unsafe { libc::ioctl(fd as c_int, libc::TIOCOUTQ, &mut outq) == 0 };
    Some(unread_bytes(fd)? + if ok { outq.max(0) as u64 } else { 0 })
}

/// An io_uring's registered buffers, from its fdinfo.
fn io_uring_bytes(name: &[u8]) -> Option<u64> {
    let mut path = [0u8; 40];
    let prefix = b"/proc/self/fdinfo/";
    if prefix.len() + name.len() >= path.len() {
        return None;
    }
    path[..prefix.len()].copy_from_slice(prefix);
    path[prefix.len()..prefix.len() + name.len()].copy_from_slice(name);
    let mut text = [0u8; 16384];
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut n = 0;
    while n < text.len() {
        // SAFETY: reads stay inside `text`.
        let r = unsafe { libc::read(fd, text.as_mut_ptr().add(n).cast(), text.len() - n) };
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    Some(registered_buffers(&text[..n]))
}

/// The lengths of the buffers an io_uring fdinfo lists after `UserBufs:`
/// (lines `index: 0xADDRESS/LENGTH`), summed.
pub fn registered_buffers(fdinfo: &[u8]) -> u64 {
    let mut lines = fdinfo.split(|&b| b == b'\n');
    if !lines.any(|l| l.starts_with(b"UserBufs:")) {
        return 0;
    }
    let mut total = 0u64;
    for line in lines {
        let trimmed = line.trim_ascii_start();
        let Some(colon) = trimmed.iter().position(|&b| b == b':') else {
            break;
        };
        if parse_u32(&trimmed[..colon]).is_none() {
            break; // the next section
        }
        let Some(slash) = trimmed.iter().rposition(|&b| b == b'/') else {
            continue;
        };
        if let Some(len) = crate::os::parse_decimal(trimmed[slash + 1..].trim_ascii()) {
            total = total.saturating_add(len);
        }
    }
    total
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    u32::try_from(crate::os::parse_decimal(s)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_fdinfo_buffers_are_summed() {
        let text = b"SqThreadCpu:\t-1\nUserFiles:\t0\nUserBufs:\t2\n    0: 0x7f427cb5a000/65536\n    1: 0x7f427cb4a000/65536\nPollList:\nCqOverflowList:\n";
        assert_eq!(registered_buffers(text), 131072);
        assert_eq!(registered_buffers(b"UserBufs:\t0\nPollList:\n"), 0);
        assert_eq!(registered_buffers(b"pos:\t0\n"), 0);
    }

    #[test]
    fn socket_mappings_are_read_from_maps_lines() {
        let line = b"7f14b8d89000-7f14b8dc9000 rw-s 00000000 00:09 423299                     socket:[423299]";
        assert_eq!(socket_mapping(line), Some((423299, 0x40000)));
        let other = b"7f14b8d89000-7f14b8dc9000 r--p 00000000 08:01 1234  /usr/lib/libc.so.6";
        assert_eq!(socket_mapping(other), None);
    }

    #[test]
    fn a_level_is_written_when_it_changes_and_zero_when_gone() {
        let mut s = Sampler::new();
        s.followed[0] = Level {
            memory: memory::SOCKET,
            fd: 9999,
            bytes: 5,
        };
        s.count = 1;
        let mut seen = Vec::new();
        // No descriptor 9999 in this process: it is gone.
        s.sample(|l| seen.push(l));
        assert!(seen.contains(&Level {
            memory: memory::SOCKET,
            fd: 9999,
            bytes: 0
        }));
    }

    #[test]
    fn a_socket_s_unread_bytes_are_seen_both_ways() {
        let mut fds = [0 as c_int; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let made =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(made, 0);
        let data = [7u8; 1000];
        // SAFETY: writes from a live buffer of that length.
        let n = unsafe { libc::write(fds[0], data.as_ptr().cast(), data.len()) };
        assert_eq!(n, 1000);
        // Unread at the receiving end: its payload bytes exactly (a Unix
        // socket's data is charged to the sender, so SO_MEMINFO's queue
        // counts say nothing of it), once, at the reader.
        assert_eq!(unread_bytes(fds[1] as u32), Some(1000));
        assert_eq!(socket_bytes(fds[1] as u32), Some(1000));
        assert_eq!(socket_bytes(fds[0] as u32), Some(0));
        assert!(queued_bytes(fds[1] as u32).is_some_and(|b| b >= 1000));
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
