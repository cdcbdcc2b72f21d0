//! The control socket: how a client (`memtally attach PID`, `memtally top
//! --pid PID`) switches recording on in a process that is already running
//! with memtally (preloaded, or as its global allocator).
//!
//! The socket exists only when `MEMTALLY` asks for it (`control=on`). It
//! is private to the user: a directory of mode 0700 that the user owns
//! (`$XDG_RUNTIME_DIR/memtally`, else `/tmp/memtally-UID`, refused when it
//! is anything else), the socket itself 0600, and the peer's uid checked
//! on every connection (`SO_PEERCRED`), so that even a privileged client
//! of another uid is turned away.
//!
//! One session at a time. The client sends one request line with the
//! recording settings and, as `SCM_RIGHTS`, the trace file it opened (so
//! the trace lands where the client wants it, with the client's rights);
//! the process starts a writer on that descriptor, switches recording on
//! and bumps the instrumentation generation: every thread starts recording
//! at its next allocator slow path (`thread::GENERATION`). The session
//! lasts as long as the connection: when the client closes it (or dies),
//! recording is switched off and the trace gets its footer (`detached`).
//! The wire format is in [`wire`] and `docs/control.md`.
//!
//! The listener is a thread of its own, blocked in `accept`, with every
//! signal blocked (the program's signals are never delivered to it) and
//! its recorder busy for good (nothing it does is recorded). It is started
//! from a thread's slow path, not from the allocator's initialisation,
//! because creating a thread allocates. A forked child closes its parent's
//! sockets and gets a listener of its own only with `children=1`.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

/// The wire format, shared by the process (this module) and the client
/// (the `memtally` command). See `docs/control.md`.
pub mod wire {
    /// The request line's first word.
    pub const REQUEST: &[u8] = b"memtally-attach";
    /// The protocol version, the request line's second word.
    pub const VERSION: &[u8] = b"1";
    /// Longest request line accepted.
    pub const MAX_REQUEST: usize = 512;
    /// Longest socket path (`sun_path` holds 108 bytes with its NUL).
    pub const MAX_PATH: usize = 107;

    /// A reply, one line from the process.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Reply<'a> {
        /// Recording was switched on into the descriptor sent.
        Ok,
        /// The process records already, into this trace (as the process
        /// named it: relative to its working directory).
        Recording(&'a [u8]),
        /// The request was refused, for this reason.
        Error(&'a [u8]),
    }

    /// Parses a reply line (without its newline). None if it is none of
    /// the three.
    pub fn parse_reply(line: &[u8]) -> Option<Reply<'_>> {
        if line == b"ok" {
            Some(Reply::Ok)
        } else if let Some(path) = line.strip_prefix(b"recording ") {
            Some(Reply::Recording(path))
        } else {
            line.strip_prefix(b"error ").map(Reply::Error)
        }
    }

    /// The settings part of a request line (`mode=full,interval=...` in
    /// `MEMTALLY`'s syntax), or None if the line is not a request of this
    /// version.
    pub fn request_settings(line: &[u8]) -> Option<&[u8]> {
        let rest = line.strip_prefix(REQUEST)?.strip_prefix(b" ")?;
        let rest = rest.strip_prefix(VERSION)?;
        match rest.first() {
            None => Some(b""),
            Some(b' ') => Some(&rest[1..]),
            Some(_) => None,
        }
    }

    /// Writes into `out` the directory holding the sockets of user `uid`'s
    /// processes, for a process whose `XDG_RUNTIME_DIR` is `runtime_dir`:
    /// `$XDG_RUNTIME_DIR/memtally` when that is an absolute path short
    /// enough, else `/tmp/memtally-UID`. Returns its length.
    pub fn socket_dir(uid: u32, runtime_dir: Option<&[u8]>, out: &mut [u8; MAX_PATH]) -> usize {
        let mut w = Bytes { out, len: 0 };
        match runtime_dir {
            // Room for "/memtally/" and a pid of up to 10 digits + ".sock".
            Some(dir) if dir.starts_with(b"/") && dir.len() + 26 <= MAX_PATH => {
                w.put(dir.strip_suffix(b"/").unwrap_or(dir));
                w.put(b"/memtally");
            }
            _ => {
                w.put(b"/tmp/memtally-");
                w.number(u64::from(uid));
            }
        }
        w.len
    }

    /// Writes into `out` the socket path of process `pid` in `dir`;
    /// returns its length (0 if it does not fit).
    pub fn socket_path(dir: &[u8], pid: u32, out: &mut [u8; MAX_PATH]) -> usize {
        if dir.len() + 17 > MAX_PATH {
            return 0;
        }
        let mut w = Bytes { out, len: 0 };
        w.put(dir);
        w.put(b"/");
        w.number(u64::from(pid));
        w.put(b".sock");
        w.len
    }

    /// A byte writer into a fixed buffer (callers check the room first).
    struct Bytes<'a> {
        out: &'a mut [u8; MAX_PATH],
        len: usize,
    }

    impl Bytes<'_> {
        fn put(&mut self, b: &[u8]) {
            let n = b.len().min(MAX_PATH - self.len);
            self.out[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
        }

        fn number(&mut self, n: u64) {
            let mut digits = [0u8; 20];
            self.put(crate::report::decimal(n, &mut digits));
        }
    }
}

/// `control=on`: the process wants a control socket.
static WANTED: AtomicBool = AtomicBool::new(false);
/// The process whose listener runs (0: none). A forked child sees its
/// parent's pid here and knows the listener is not its own.
static LISTENER_PID: AtomicI32 = AtomicI32::new(0);
/// The listening socket, and the session's connection (-1: none).
static LISTEN_FD: AtomicI32 = AtomicI32::new(-1);
static SESSION_FD: AtomicI32 = AtomicI32::new(-1);
/// The socket's path, NUL-terminated (removed at exit).
static PATH: [AtomicU8; wire::MAX_PATH + 1] = [const { AtomicU8::new(0) }; wire::MAX_PATH + 1];

/// Applies the `control` setting.
pub(crate) fn configure(on: bool) {
    WANTED.store(on, Ordering::Release);
    if on {
        crate::thread::bump_generation();
    }
}

/// Does this process open a control socket?
pub(crate) fn wanted() -> bool {
    WANTED.load(Ordering::Acquire)
}

/// Starts the listener if this process wants one and has none yet. Called
/// from a thread's slow path (see the module docs).
pub(crate) fn maybe_start() {
    if !wanted() {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let owner = LISTENER_PID.load(Ordering::Acquire);
    if owner == pid
        || LISTENER_PID
            .compare_exchange(owner, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    let fd = match listen(pid) {
        Ok(fd) => fd,
        Err(why) => {
            crate::report::warn(format_args!(
                "control socket: {why}; no client can attach to this process"
            ));
            return;
        }
    };
    LISTEN_FD.store(fd, Ordering::Release);
    let rc = crate::os::spawn_thread(listener_main, c"memtally-ctl");
    if rc != 0 {
        remove_socket();
        // SAFETY: our listening descriptor; no thread accepts on it.
        unsafe { libc::close(LISTEN_FD.swap(-1, Ordering::AcqRel)) };
        crate::report::warn(format_args!(
            "control socket: cannot start its thread (error {rc}); no client can attach to this process"
        ));
    }
}

/// Creates the socket directory (or checks the existing one), binds and
/// listens. Returns the listening descriptor.
fn listen(pid: i32) -> Result<i32, &'static str> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: getenv with a NUL-terminated name; it does not allocate, and
    // the value is copied before anything can change the environment.
    let runtime = unsafe { libc::getenv(c"XDG_RUNTIME_DIR".as_ptr()) };
    let runtime = (!runtime.is_null())
        // SAFETY: getenv returned a NUL-terminated string.
        .then(|| unsafe { core::ffi::CStr::from_ptr(runtime) }.to_bytes());
    let mut dir = [0u8; wire::MAX_PATH];
    let dir_len = wire::socket_dir(uid, runtime, &mut dir);
    let mut dir_c = [0u8; wire::MAX_PATH + 1];
    dir_c[..dir_len].copy_from_slice(&dir[..dir_len]);
    // SAFETY: `dir_c` is NUL-terminated; an existing directory is checked
    // below rather than trusted.
    unsafe { libc::mkdir(dir_c.as_ptr().cast(), 0o700) };
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: NUL-terminated path, writable stat; lstat does not follow a
    // symbolic link planted in the directory's place.
    if unsafe { libc::lstat(dir_c.as_ptr().cast(), &mut st) } != 0 {
        return Err("cannot create its directory");
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR || st.st_uid != uid || st.st_mode & 0o077 != 0 {
        return Err(
            "its directory is not private to this user (it must be a directory of mode 0700 owned by the user)",
        );
    }
    remove_stale_sockets(&dir_c);
    let mut path = [0u8; wire::MAX_PATH];
    let n = wire::socket_path(&dir[..dir_len], pid as u32, &mut path);
    // Room for the temporary suffix and a NUL in `sun_path` (108 bytes).
    if n == 0 || n + TEMPORARY.len() >= 108 {
        return Err("its path is too long");
    }
    // SAFETY: an all-zero sockaddr_un is valid; the path fits `sun_path`
    // with its NUL (MAX_PATH < 108).
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &s) in addr.sun_path.iter_mut().zip(&path[..n]) {
        *d = s as libc::c_char;
    }
    for (slot, i) in PATH.iter().zip(0..) {
        slot.store(if i < n { path[i] } else { 0 }, Ordering::Relaxed);
    }
    // The socket is bound under a temporary name and renamed once it
    // listens: a client that sees `PID.sock` can connect (bound but not yet
    // listening, it would be refused, and taken for a socket left behind).
    let mut bound = addr;
    for (d, &s) in bound.sun_path[n..].iter_mut().zip(TEMPORARY) {
        *d = s as libc::c_char;
    }
    // SAFETY: plain system calls on our own descriptor and NUL-terminated
    // paths (`sun_path` is zero-padded past `n`, and past the suffix, for
    // which the length check above left room).
    unsafe {
        // A socket left by an earlier process with this pid (or by this
        // process's program before it executed this one).
        libc::unlink(addr.sun_path.as_ptr());
        libc::unlink(bound.sun_path.as_ptr());
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err("cannot create it");
        }
        let len = core::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::bind(fd, (&raw const bound).cast(), len) != 0 {
            libc::close(fd);
            return Err("cannot bind it");
        }
        if libc::chmod(bound.sun_path.as_ptr(), 0o600) != 0
            || libc::listen(fd, 4) != 0
            || libc::rename(bound.sun_path.as_ptr(), addr.sun_path.as_ptr()) != 0
        {
            libc::close(fd);
            libc::unlink(bound.sun_path.as_ptr());
            return Err("cannot listen on it");
        }
        Ok(fd)
    }
}

/// The suffix of the socket's name until it listens (`PID.sock.new`).
const TEMPORARY: &[u8] = b".new";

/// Removes the sockets in `dir` (NUL-terminated) of processes that no
/// longer exist (killed before they could remove theirs), reading the
/// directory with `getdents64` into a stack buffer (no allocation).
fn remove_stale_sockets(dir: &[u8; wire::MAX_PATH + 1]) {
    let Ok(path) = core::ffi::CStr::from_bytes_until_nul(dir) else {
        return;
    };
    crate::os::for_each_entry(path, |fd, name| {
        if let Some(pid) = name
            .strip_suffix(TEMPORARY)
            .unwrap_or(name)
            .strip_suffix(b".sock")
            .and_then(|d| core::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<i32>().ok())
            .filter(|&p| p > 0)
        {
            // SAFETY: kill with signal 0 only checks that the process
            // exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0 && crate::os::errno() == libc::ESRCH;
            if gone {
                let mut file = [0u8; wire::MAX_PATH + 1];
                file[..name.len().min(wire::MAX_PATH)]
                    .copy_from_slice(&name[..name.len().min(wire::MAX_PATH)]);
                // SAFETY: a NUL-terminated name relative to our own
                // directory descriptor.
                unsafe { libc::unlinkat(fd, file.as_ptr().cast(), 0) };
            }
        }
        true
    });
}

/// Removes this process's socket file (at exit). Not in a forked child
/// (whose `PATH` is its parent's) nor a `vfork` child (another pid).
fn remove_socket() {
    // SAFETY: getpid has no preconditions.
    if LISTENER_PID.load(Ordering::Acquire) != unsafe { libc::getpid() } {
        return;
    }
    let mut path = [0u8; wire::MAX_PATH + 1];
    for (d, s) in path.iter_mut().zip(&PATH) {
        *d = s.load(Ordering::Relaxed);
    }
    if path[0] != 0 {
        // SAFETY: a NUL-terminated path (the array is one longer than any
        // path stored).
        unsafe { libc::unlink(path.as_ptr().cast()) };
    }
}

/// At process exit: the socket goes (a session in progress ends with the
/// process; its trace gets the exit's footer).
pub(crate) fn at_exit() {
    remove_socket();
}

/// In a forked child: the parent's listener and session are not ours.
/// The child gets a listener of its own (at its next slow path) only
/// when children are followed (`children=1`).
pub(crate) fn after_fork_child(children: bool) {
    for fd in [&LISTEN_FD, &SESSION_FD] {
        let fd = fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: the parent's descriptors, inherited; the child must
            // neither accept on the parent's socket nor keep its client's
            // connection open.
            unsafe { libc::close(fd) };
        }
    }
    if !children {
        WANTED.store(false, Ordering::Relaxed);
    } else if wanted() {
        crate::thread::bump_generation();
    }
}

extern "C" fn listener_main(_: *mut c_void) -> *mut c_void {
    // SAFETY: a filled signal set blocks every signal for this thread
    // only; the program's signals go to its own threads.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, core::ptr::null_mut());
    }
    crate::record::mark_current_thread_as_writer();
    let fd = LISTEN_FD.load(Ordering::Acquire);
    loop {
        // SAFETY: accepting on our listening socket; the peer address is
        // not wanted.
        let c = unsafe {
            libc::accept4(
                fd,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            match crate::os::errno() {
                libc::EINTR | libc::ECONNABORTED | libc::EAGAIN => continue,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    crate::os::sleep_ms(100);
                    continue;
                }
                _ => return core::ptr::null_mut(),
            }
        }
        SESSION_FD.store(c, Ordering::Release);
        serve(c);
        if SESSION_FD.swap(-1, Ordering::AcqRel) == c {
            // SAFETY: the connection we accepted, no longer used.
            unsafe { libc::close(c) };
        }
    }
}

/// Serves one connection: checks the peer, takes the request, runs the
/// session until the client goes.
fn serve(c: i32) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let peer = peer_uid(c);
    if peer != Some(me) {
        reply(
            c,
            b"error ",
            b"permission denied: only the process's own user may attach",
        );
        match peer {
            Some(uid) => crate::report::warn(format_args!(
                "control socket: refused a client of uid {uid} (only uid {me} may attach)"
            )),
            None => crate::report::warn(format_args!(
                "control socket: refused a client whose uid cannot be known"
            )),
        }
        return;
    }
    let mut line = [0u8; wire::MAX_REQUEST];
    let (n, fd) = receive_request(c, &mut line);
    let close_fd = |fd: i32| {
        if fd >= 0 {
            // SAFETY: the client's descriptor, not used.
            unsafe { libc::close(fd) };
        }
    };
    let Some(settings) = wire::request_settings(&line[..n]) else {
        close_fd(fd);
        return reply(c, b"error ", b"not a memtally-attach 1 request");
    };
    let settings = match crate::options::parse_settings(settings) {
        Ok(s) => s,
        Err(e) => {
            close_fd(fd);
            return reply(c, b"error ", e.what.as_bytes());
        }
    };
    if crate::record::active() && !crate::record::attached() {
        close_fd(fd);
        let mut path = [0u8; 512];
        let n = crate::record::trace_path(&mut path);
        if n > 0 {
            return reply(c, b"recording ", &path[..n]);
        }
        return reply(c, b"error ", b"the process is recording already");
    }
    if fd < 0 {
        return reply(c, b"error ", b"no trace file came with the request");
    }
    if let Err(why) = crate::record::attach(settings.mode, settings.interval, settings.depth, fd) {
        return reply(c, b"error ", why.as_bytes());
    }
    reply(c, b"ok", b"");
    wait_for_detach(c);
    crate::record::detach();
}

/// The connected peer's uid (`SO_PEERCRED`).
fn peer_uid(c: i32) -> Option<u32> {
    // SAFETY: an all-zero ucred is valid; getsockopt writes at most `len`
    // bytes into it.
    unsafe {
        let mut cred: libc::ucred = core::mem::zeroed();
        let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            c,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        );
        (rc == 0).then_some(cred.uid)
    }
}

/// Reads the request line (up to its newline, within five seconds) and
/// the descriptor that came with it (-1 if none). Returns the line's
/// length without the newline.
fn receive_request(c: i32, line: &mut [u8; wire::MAX_REQUEST]) -> (usize, i32) {
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: setting a receive timeout on our connection.
    unsafe {
        libc::setsockopt(
            c,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut got = 0;
    let mut fd = -1;
    while got < line.len() {
        // Room for one descriptor's control message, aligned for cmsghdr.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: line[got..].as_mut_ptr().cast(),
            iov_len: line.len() - got,
        };
        // SAFETY: an all-zero msghdr is valid; it then points at live
        // buffers of the stated lengths.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = core::mem::size_of_val(&control) as _;
        // SAFETY: `msg` describes writable buffers; MSG_CMSG_CLOEXEC marks
        // a received descriptor close-on-exec.
        let r = unsafe { libc::recvmsg(c, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r <= 0 {
            break;
        }
        // SAFETY: walking the control messages the kernel wrote into
        // `control`, within `msg_controllen`.
        unsafe {
            let mut cm = libc::CMSG_FIRSTHDR(&msg);
            while !cm.is_null() {
                if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_RIGHTS {
                    let count = ((*cm).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                        / core::mem::size_of::<i32>();
                    let fds = libc::CMSG_DATA(cm).cast::<i32>();
                    for k in 0..count {
                        let f = fds.add(k).read_unaligned();
                        if fd < 0 {
                            fd = f;
                        } else {
                            libc::close(f);
                        }
                    }
                }
                cm = libc::CMSG_NXTHDR(&msg, cm);
            }
        }
        let start = got;
        got += r as usize;
        if let Some(nl) = line[start..got].iter().position(|&b| b == b'\n') {
            return (start + nl, fd);
        }
    }
    (got, fd)
}

/// Blocks until the client closes the connection (or asks to detach), or
/// recording ends by itself (the process executes another program, the
/// trace cannot be written).
fn wait_for_detach(c: i32) {
    loop {
        let mut pfd = libc::pollfd {
            fd: c,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 250) };
        if !crate::record::active() {
            return;
        }
        if r > 0 {
            let mut buf = [0u8; 64];
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(c, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || buf[..n as usize].windows(6).any(|w| w == b"detach") {
                return;
            }
        }
    }
}

/// Sends one reply line: `head`, `text`, a newline.
fn reply(c: i32, head: &[u8], text: &[u8]) {
    let mut out = [0u8; 600];
    let text = &text[..text.len().min(out.len() - head.len() - 1)];
    out[..head.len()].copy_from_slice(head);
    out[head.len()..head.len() + text.len()].copy_from_slice(text);
    let n = head.len() + text.len();
    out[n] = b'\n';
    // SAFETY: sending from a local buffer; MSG_NOSIGNAL: a client that
    // went away must not raise SIGPIPE in the program.
    unsafe { libc::send(c, out.as_ptr().cast(), n + 1, libc::MSG_NOSIGNAL) };
}

#[cfg(test)]
mod tests {
    use super::wire::*;

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply(b"ok"), Some(Reply::Ok));
        assert_eq!(
            parse_reply(b"recording /tmp/a.mtt"),
            Some(Reply::Recording(&b"/tmp/a.mtt"[..]))
        );
        assert_eq!(parse_reply(b"error no"), Some(Reply::Error(&b"no"[..])));
        assert_eq!(parse_reply(b"okay"), None);
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            request_settings(b"memtally-attach 1 mode=full,depth=8"),
            Some(&b"mode=full,depth=8"[..])
        );
        assert_eq!(request_settings(b"memtally-attach 1"), Some(&b""[..]));
        assert_eq!(request_settings(b"memtally-attach 12 mode=full"), None);
        assert_eq!(request_settings(b"GET / HTTP/1.1"), None);
    }

    #[test]
    fn paths() {
        let mut out = [0u8; MAX_PATH];
        let n = socket_dir(1000, Some(b"/run/user/1000"), &mut out);
        assert_eq!(&out[..n], b"/run/user/1000/memtally");
        let n = socket_dir(1000, Some(b"/run/user/1000/"), &mut out);
        assert_eq!(&out[..n], b"/run/user/1000/memtally");
        let n = socket_dir(1000, Some(b"relative"), &mut out);
        assert_eq!(&out[..n], b"/tmp/memtally-1000");
        let n = socket_dir(0, None, &mut out);
        assert_eq!(&out[..n], b"/tmp/memtally-0");
        let long = [b'/'; 100];
        let n = socket_dir(7, Some(&long), &mut out);
        assert_eq!(&out[..n], b"/tmp/memtally-7");
        let mut path = [0u8; MAX_PATH];
        let n = socket_path(b"/tmp/memtally-7", 4242, &mut path);
        assert_eq!(&path[..n], b"/tmp/memtally-7/4242.sock");
    }
}
