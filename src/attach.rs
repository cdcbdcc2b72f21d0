//! Attaching to a running process through its control socket: `memtally
//! attach PID` (record until Ctrl-C, `--duration` or the process's exit)
//! and the session `memtally top --pid PID` runs its dashboard over.
//!
//! The client finds the socket where the process made it (the process's
//! own `XDG_RUNTIME_DIR`, read from `/proc/PID/environ`, else
//! `/tmp/memtally-UID`; `memtally_alloc::control::wire` computes both
//! sides' paths), opens the trace file itself and hands the descriptor
//! over with the request, so the trace is the client's, where the client
//! wants it. The session lasts as long as the connection.

use crate::args::AttachArgs;
use anyhow::{Context, Result, bail};
use memtally_alloc::control::wire;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A session with a process.
pub struct Session {
    stream: UnixStream,
    /// The process.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
    /// The trace being written.
    pub trace: PathBuf,
    /// True when recording was switched on for us; false when the process
    /// records already and `trace` is its own trace.
    pub attached: bool,
}

impl Session {
    /// Connects to process `pid` and asks it to record.
    pub fn open(args: &AttachArgs) -> Result<Session> {
        let pid = args.pid;
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let meta = std::fs::metadata(&proc_dir).map_err(|_| anyhow::anyhow!("no process {pid}"))?;
        let name = std::fs::read_to_string(proc_dir.join("comm"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| "?".into());
        let socket = find_socket(pid, meta.uid())?;
        let stream = UnixStream::connect(&socket).map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => anyhow::anyhow!(
                "process {pid} ({name}) does not answer on {} (a socket left behind: the program it belonged to exited or executed another)",
                socket.display()
            ),
            io::ErrorKind::PermissionDenied => anyhow::anyhow!(
                "permission denied on {}: only the user running process {pid} may attach to it",
                socket.display()
            ),
            _ => anyhow::anyhow!("cannot connect to {}: {e}", socket.display()),
        })?;
        let (trace, file) = create_trace(args)?;
        let request = request_line(args);
        // A process that refuses a client answers at once and closes, so a
        // failed send may still have its answer waiting.
        let sent = send_request(&stream, &request, &file);
        let reply = match (sent, read_reply(&stream)) {
            (_, Ok(reply)) => Ok(reply),
            (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
        };
        drop(file);
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&trace);
                return Err(e.context(format!("process {pid} ({name})")));
            }
        };
        match wire::parse_reply(reply.as_bytes()) {
            Some(wire::Reply::Ok) => Ok(Session {
                stream,
                pid,
                name,
                trace,
                attached: true,
            }),
            Some(wire::Reply::Recording(path)) => {
                let _ = std::fs::remove_file(&trace);
                let own = Path::new(OsStr::from_bytes(path));
                let own = if own.is_absolute() {
                    own.to_owned()
                } else {
                    std::fs::read_link(proc_dir.join("cwd"))
                        .context("cannot find the process's working directory")?
                        .join(own)
                };
                Ok(Session {
                    stream,
                    pid,
                    name,
                    trace: own,
                    attached: false,
                })
            }
            Some(wire::Reply::Error(why)) => {
                let _ = std::fs::remove_file(&trace);
                bail!(
                    "process {pid} ({name}) refused: {}",
                    String::from_utf8_lossy(why)
                )
            }
            None => {
                let _ = std::fs::remove_file(&trace);
                bail!(
                    "process {pid} ({name}) gave an answer memtally does not understand: {reply:?}"
                )
            }
        }
    }

    /// A handle that waits for the session to end on the process's side
    /// (it exited, executed another program, or its trace failed).
    pub fn watcher(&self) -> Result<impl FnOnce() + Send + 'static> {
        let stream = self
            .stream
            .try_clone()
            .context("cannot watch the session")?;
        Ok(move || {
            let mut reader = BufReader::new(stream);
            let mut sink = Vec::new();
            while reader.read_until(b'\n', &mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        })
    }

    /// Ends the session: the process switches recording off and writes the
    /// trace's footer; waits (up to ten seconds) until it has.
    pub fn detach(self) {
        let mut stream = self.stream;
        let _ = stream.write_all(b"detach\n");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(stream);
        let mut sink = Vec::new();
        while reader.read_until(b'\n', &mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    }
}

/// The socket of process `pid` (of user `uid`): where its own
/// `XDG_RUNTIME_DIR` puts it, else under `/tmp`.
fn find_socket(pid: u32, uid: u32) -> Result<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let runtime = environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"XDG_RUNTIME_DIR="));
    let mut candidates = Vec::new();
    for dir in [runtime, None] {
        let mut d = [0u8; wire::MAX_PATH];
        let n = wire::socket_dir(uid, dir, &mut d);
        let mut p = [0u8; wire::MAX_PATH];
        let m = wire::socket_path(&d[..n], pid, &mut p);
        let path = PathBuf::from(OsStr::from_bytes(&p[..m]));
        if m > 0 && !candidates.contains(&path) {
            candidates.push(path);
        }
    }
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "process {pid} ({}) has no memtally control socket (looked for {}): start it with memtally preloaded and MEMTALLY=control=on, e.g. `memtally run --control --mode off -- COMMAND`",
        comm.trim_end(),
        looked.join(" and ")
    )
}

/// Creates the trace file: `-o FILE` (replaced if it exists), else a new
/// `memtally.PID.attach.mtt` (`.1`, `.2`... when taken).
fn create_trace(args: &AttachArgs) -> Result<(PathBuf, File)> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC);
    if let Some(out) = &args.output {
        let file = options
            .create(true)
            .truncate(true)
            .open(out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        return Ok((absolute(out), file));
    }
    options.create_new(true);
    for n in 0..1000 {
        let name = if n == 0 {
            format!("memtally.{}.attach.mtt", args.pid)
        } else {
            format!("memtally.{}.attach.{n}.mtt", args.pid)
        };
        match options.open(&name) {
            Ok(file) => return Ok((absolute(Path::new(&name)), file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => bail!("cannot create {name}: {e}"),
        }
    }
    bail!("cannot find a free name for the trace (use -o FILE)")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// The request line: `memtally-attach 1 mode=...,interval=...,depth=...`.
fn request_line(args: &AttachArgs) -> Vec<u8> {
    let mut line = wire::REQUEST.to_vec();
    line.push(b' ');
    line.extend_from_slice(wire::VERSION);
    line.extend_from_slice(format!(" mode={}", args.mode.name()).as_bytes());
    if let Some(i) = args.interval {
        line.extend_from_slice(format!(",interval={i}").as_bytes());
    }
    if let Some(d) = args.depth {
        line.extend_from_slice(format!(",depth={d}").as_bytes());
    }
    line.push(b'\n');
    line
}

/// Sends the request line with the trace file's descriptor (`SCM_RIGHTS`).
fn send_request(stream: &UnixStream, line: &[u8], file: &File) -> Result<()> {
    let fd = file.as_raw_fd();
    // A buffer for one control message carrying one descriptor, aligned
    // for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: line.as_ptr() as *mut libc::c_void,
        iov_len: line.len(),
    };
    // SAFETY: an all-zero msghdr is valid; it then points at live buffers
    // of the stated lengths, and the control message written below stays
    // inside `control` (CMSG_SPACE of one int is far below its 64 bytes).
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as _;
        let cm = libc::CMSG_FIRSTHDR(&msg);
        (*cm).cmsg_level = libc::SOL_SOCKET;
        (*cm).cmsg_type = libc::SCM_RIGHTS;
        (*cm).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        libc::CMSG_DATA(cm).cast::<i32>().write_unaligned(fd);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent != line.len() as isize {
        bail!("cannot send the request: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the reply line (ten seconds at most).
fn read_reply(stream: &UnixStream) -> Result<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .context("cannot wait for the answer")?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .context("no answer from the control socket")?;
    if n == 0 || line.last() != Some(&b'\n') {
        bail!("the control socket closed without an answer");
    }
    stream.set_read_timeout(None).ok();
    line.pop();
    Ok(String::from_utf8_lossy(&line).into_owned())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs `memtally attach`.
pub fn attach(args: &AttachArgs) -> Result<ExitCode> {
    let session = Session::open(args)?;
    let (pid, name, trace) = (session.pid, session.name.clone(), session.trace.clone());
    if !session.attached {
        say!(
            "memtally: process {pid} ({name}) records already, into {}; nothing to attach",
            trace.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_stop_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_stop_signal as *const () as libc::sighandler_t,
        );
    }
    let mode = args.mode.name();
    say!(
        "memtally: attached to process {pid} ({name}), recording ({mode}) into {}; {}",
        trace.display(),
        match args.duration {
            Some(d) => format!("detaching after {:.1} s or at Ctrl-C", d.as_secs_f64()),
            None => "Ctrl-C detaches".into(),
        }
    );
    let start = Instant::now();
    let (gone_tx, gone_rx) = std::sync::mpsc::channel();
    let watch = session.watcher()?;
    std::thread::spawn(move || {
        watch();
        let _ = gone_tx.send(());
    });
    let ended_by_process = loop {
        if gone_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            break true;
        }
        if STOP.load(Ordering::SeqCst) || args.duration.is_some_and(|d| start.elapsed() >= d) {
            break false;
        }
    };
    let took = start.elapsed().as_secs_f64();
    if ended_by_process {
        say!(
            "memtally: process {pid} ended the session after {took:.1} s (it exited or executed another program); the trace is {}",
            trace.display()
        );
    } else {
        session.detach();
        say!(
            "memtally: detached from process {pid} after {took:.1} s; the trace is {} (memtally report {})",
            trace.display(),
            trace.display()
        );
    }
    if args.report {
        crate::report::run(&crate::args::ReportArgs {
            file: trace,
            json: false,
            frames: 5,
            top: 5,
            by_scope: false,
        })?;
    }
    Ok(ExitCode::SUCCESS)
}
