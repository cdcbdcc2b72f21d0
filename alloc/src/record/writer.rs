//! The writer thread: drains every thread's ring into the trace file, with
//! the records that give the events meaning (strings, stack frames,
//! modules, threads, clock, memory samples, watermarks).
//!
//! One round, every 10 ms or sooner when a ring passes half full:
//! 1. take a watermark candidate: now minus a slack, and no later than the
//!    time of any event a thread is producing (each ring shows a lower
//!    bound of it while in flight);
//! 2. snapshot every ring's head;
//! 3. write the `STRING`, `FRAME` and `MODULE` records defined since the last
//!    round — after the snapshots, so every id an event refers to is
//!    already written (a thread interns before it publishes);
//! 4. write each ring's new bytes up to its snapshot as an `EVENTS` record,
//!    announcing new threads and retiring ended ones;
//! 5. write the `WATERMARK`, and every 100 ms `CLOCK` and `MEMORY`.
//!
//! Output goes through a 1 MiB buffer and `write(2)`, so a killed process
//! leaves every completed round on disk. The writer never allocates from the
//! heap it records: its buffers are mapped, and its own thread is marked so
//! that anything it might allocate is not recorded.

use super::intern;
use super::modules;
use super::ring::{self, Ring};
use crate::os;
use crate::trace::{self, Cursor, kind, put_bytes, put_record_header, put_u8, put_uvar};
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

const NONE: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NONE);
static STOP: AtomicBool = AtomicBool::new(false);
/// Footer flags of the stop in progress.
static STOP_FLAGS: AtomicU64 = AtomicU64::new(0);
/// Bumped at the start of every trace: threads reset their delta state
/// when they see a new value (a trace's event stream starts from zero).
pub static TRACE_EPOCH: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static FLUSH_REQ: AtomicU64 = AtomicU64::new(0);
static FLUSH_DONE: AtomicU32 = AtomicU32::new(0);
static FD: AtomicI32 = AtomicI32::new(-1);
/// The process whose trace this is. A `vfork` child shares our memory
/// (and so sees the writer "running") but is another process: it must not
/// end its parent's trace when it calls `_exit` or `execve`.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

const OUT_BYTES: usize = 1 << 20;
const ROUND_MS: i64 = 10;
const CLOCK_EVERY_NS: u64 = 100_000_000;
/// Ticks subtracted from "now" for a watermark, for clock skew between
/// cores and events whose clock read raced the writer (about 1 ms).
const WATERMARK_SLACK: u64 = 3_000_000;

/// Has the writer stopped for good (or never started)? Producers must not
/// wait for it then.
pub fn stopped() -> bool {
    STATE.load(Ordering::Acquire) != RUNNING
}

/// Is the writer running?
pub fn running() -> bool {
    STATE.load(Ordering::Acquire) == RUNNING
}

/// Output buffer and file.
struct Out {
    buf: *mut u8,
    len: usize,
    fd: i32,
    failed: bool,
}

impl Out {
    fn room(&self) -> usize {
        OUT_BYTES - self.len
    }

    /// Writes the buffer to the file.
    fn flush(&mut self) {
        let mut off = 0;
        while off < self.len && !self.failed {
            // SAFETY: [off, len) lies inside the buffer mapping.
            let n = unsafe { libc::write(self.fd, self.buf.add(off).cast(), self.len - off) };
            if n < 0 {
                // SAFETY: reading errno.
                if unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                self.failed = true;
                crate::report::warn(format_args!(
                    "cannot write the trace ({}); recording stops, the program runs on",
                    errno_text()
                ));
                break;
            }
            off += n as usize;
        }
        self.len = 0;
    }

    fn ensure(&mut self, n: usize) {
        if self.room() < n {
            self.flush();
        }
    }

    /// Appends a record whose payload is built by `fill` (at most 64 KiB).
    fn record(&mut self, kind: u8, fill: impl FnOnce(&mut Cursor<'_>)) {
        let mut scratch = [0u8; 4096];
        let mut c = Cursor::new(&mut scratch);
        fill(&mut c);
        debug_assert!(
            !c.overflowed(),
            "record of kind {kind} too large for scratch"
        );
        self.payload_record(kind, c.written());
    }

    /// Appends a record of `kind` whose payload is `payload`.
    fn payload_record(&mut self, kind: u8, payload: &[u8]) {
        self.ensure(payload.len() + 16);
        // SAFETY: the buffer has room for the framing and payload (ensured).
        let dst = unsafe { core::slice::from_raw_parts_mut(self.buf.add(self.len), self.room()) };
        let mut o = Cursor::new(dst);
        put_record_header(&mut o, kind, payload.len());
        let head = o.len();
        dst[head..head + payload.len()].copy_from_slice(payload);
        self.len += head + payload.len();
    }

    /// Appends a thread's `n` ring bytes delivered by `drain`: as an
    /// `EVENTS_PACKED` record when `pack` is on and packing makes it
    /// smaller, else as a plain `EVENTS` record.
    fn events(
        &mut self,
        thread: u64,
        n: usize,
        pack: &mut Packer,
        drain: impl FnOnce(&mut dyn FnMut(&[u8])),
    ) {
        let Some(p) = pack.ready(n) else {
            return self.plain_events(thread, n, drain);
        };
        let started = super::clock::monotonic_ns();
        let mut at = 0;
        drain(&mut |bytes: &[u8]| {
            p.events[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        });
        let events = &p.events[..n];
        let cctx = p.cctx;
        let mut compress = |src: &[u8], dst: &mut [u8]| {
            // SAFETY: `cctx` is the packer's static context, used by this
            // thread alone; `src` and `dst` are valid for their lengths.
            let r = unsafe {
                zstd_sys::ZSTD_compressCCtx(
                    cctx,
                    dst.as_mut_ptr().cast(),
                    dst.len(),
                    src.as_ptr().cast(),
                    src.len(),
                    1,
                )
            };
            // SAFETY: ZSTD_isError only reads its argument.
            (unsafe { zstd_sys::ZSTD_isError(r) } == 0).then_some(r)
        };
        let packed = trace::columns::pack(thread, events, p.columns, p.out, &mut compress);
        *p.spent_ns += super::clock::monotonic_ns().saturating_sub(started);
        match packed {
            // Smaller than the plain payload (the thread, then the events).
            Some(len) if len < n => self.payload_record(kind::EVENTS_PACKED, &p.out[..len]),
            _ => self.plain_events(thread, n, |sink| sink(events)),
        }
    }

    /// Appends an `EVENTS` record: the thread number and `n` ring bytes
    /// delivered by `drain`.
    fn plain_events(&mut self, thread: u64, n: usize, drain: impl FnOnce(&mut dyn FnMut(&[u8]))) {
        let mut tb = [0u8; 10];
        let mut t = Cursor::new(&mut tb);
        put_uvar(&mut t, thread);
        let tlen = t.len();
        self.ensure(n + tlen + 16);
        // SAFETY: room ensured above.
        let dst = unsafe { core::slice::from_raw_parts_mut(self.buf.add(self.len), self.room()) };
        let mut o = Cursor::new(dst);
        put_record_header(&mut o, kind::EVENTS, n + tlen);
        let mut at = o.len();
        dst[at..at + tlen].copy_from_slice(&tb[..tlen]);
        at += tlen;
        drain(&mut |bytes: &[u8]| {
            dst[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        });
        self.len += at;
    }
}

/// What packing events takes (`trace::columns`): mapped buffers for one
/// ring's bytes, their columns and the packed payload, and a static zstd
/// context in a mapping of its own (zstd never calls malloc with one; the
/// leak scan counts the mapping as memtally's), made on the first use and
/// kept from one trace to the next, and across a fork, like the output
/// buffer. A packing that cannot start (no memory, zstd refuses the
/// workspace) leaves events plain.
///
/// Packing costs the writer about 5 ns a byte (splitting and zstd), plain
/// records a copy, so packing uses only spare CPU:
/// - a round whose rings show more busy threads (over [`BUSY_BYTES`] of
///   events since the last round) than the process has CPUs besides the
///   writer's packs nothing: the program's threads would lose the time
///   (on two cores, two busy threads recorded in full mode ran 18%
///   slower with packing; BENCHMARKS.md);
/// - a round packs for at most [`PACK_BUDGET_NS`] and writes the rest of
///   its records plain, so that a program making events faster than the
///   writer can pack them never waits for packing.
struct Packer {
    /// `compress=on`.
    on: bool,
    /// CPUs the process may run on (its affinity mask), read when the
    /// trace starts.
    cpus: usize,
    /// Nanoseconds spent packing in this round.
    spent_ns: u64,
    /// The buffers (null: not mapped yet); see [`Packer::ready`].
    buf: *mut u8,
    /// The zstd context, in its own mapping (null: not made yet).
    cctx: *mut zstd_sys::ZSTD_CCtx,
    /// Mapping or zstd failed: pack no more.
    failed: bool,
}

/// A packer's buffers, ready for one record.
struct PackBufs<'a> {
    events: &'a mut [u8],
    columns: &'a mut [u8],
    out: &'a mut [u8],
    cctx: *mut zstd_sys::ZSTD_CCtx,
    spent_ns: &'a mut u64,
}

/// Packing time allowed per round: half of the round's 10 ms period.
const PACK_BUDGET_NS: u64 = 5_000_000;
/// A thread whose ring gained this many bytes since the last round is busy
/// (about 3,000 events in 10 ms: allocating, not waiting).
const BUSY_BYTES: u64 = 16 * 1024;

/// CPUs this process may run on.
fn affinity_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, which
    // sched_getaffinity fills for this process.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as usize).max(1);
        }
    }
    1
}

/// Bytes of a packer's mapping: the events, their columns, and the packed
/// payload (compression of a column may grow it by a little: zstd's bound
/// is n + n/256 + 64 per column, and each has two length varints).
const PACK_EVENTS: usize = ring::RING_BYTES;
const PACK_COLUMNS: usize = trace::columns::COLUMNS * PACK_EVENTS;
const PACK_OUT: usize = 2 * PACK_EVENTS + 64 * 1024;
const PACK_BYTES: usize = PACK_EVENTS + PACK_COLUMNS + PACK_OUT;

impl Packer {
    const fn new() -> Self {
        Packer {
            on: false,
            cpus: 1,
            spent_ns: 0,
            buf: core::ptr::null_mut(),
            cctx: core::ptr::null_mut(),
            failed: false,
        }
    }

    /// The buffers for packing `n` event bytes, or None when packing is
    /// off or cannot be done.
    fn ready(&mut self, n: usize) -> Option<PackBufs<'_>> {
        if !self.on || self.failed || n > PACK_EVENTS || self.spent_ns >= PACK_BUDGET_NS {
            return None;
        }
        if self.buf.is_null() {
            self.buf = os::map(PACK_BYTES);
        }
        if self.cctx.is_null() {
            self.cctx = static_cctx();
        }
        if self.buf.is_null() || self.cctx.is_null() {
            self.failed = true;
            return None;
        }
        // SAFETY: the mapping is PACK_BYTES long, ours (writer thread), and
        // cut into three disjoint slices.
        let (events, columns, out) = unsafe {
            (
                core::slice::from_raw_parts_mut(self.buf, PACK_EVENTS),
                core::slice::from_raw_parts_mut(self.buf.add(PACK_EVENTS), PACK_COLUMNS),
                core::slice::from_raw_parts_mut(self.buf.add(PACK_EVENTS + PACK_COLUMNS), PACK_OUT),
            )
        };
        Some(PackBufs {
            events,
            columns,
            out,
            cctx: self.cctx,
            spent_ns: &mut self.spent_ns,
        })
    }
}

/// A zstd compression context for level 1 in a mapping of its own, sized
/// for inputs of any length; null when it cannot be made.
fn static_cctx() -> *mut zstd_sys::ZSTD_CCtx {
    // SAFETY: a pure function of the level.
    let size = unsafe { zstd_sys::ZSTD_estimateCCtxSize(1) };
    let mem = os::map(size);
    if mem.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `mem` is `size` bytes, page-aligned (zstd asks for 8), ours
    // for good: the context lives in it and never frees it.
    unsafe { zstd_sys::ZSTD_initStaticCCtx(mem.cast(), size) }
}

fn errno_text() -> &'static str {
    // SAFETY: reading errno.
    match unsafe { *libc::__errno_location() } {
        libc::ENOSPC => "no space left on the device",
        libc::EACCES => "permission denied",
        libc::ENOENT => "no such directory",
        libc::EROFS => "read-only file system",
        libc::EDQUOT => "disk quota exceeded",
        _ => "I/O error",
    }
}

/// Writer-private state, touched only by the writer thread (and by
/// `start`, before the thread exists).
struct WriterState {
    out: Out,
    frames_written: u64,
    strings_written: u64,
    module_gen: (u64, u64),
    modules: [u64; 1024],
    module_count: usize,
    last_clock_ns: u64,
    events: u64,
    /// The last `WATERMARK` written (watermarks only move forward).
    last_watermark: u64,
    /// Kernel-held memory levels written last, and when they were sampled.
    kernel: super::kernel::Sampler,
    last_kernel_ns: u64,
    /// Packs event records (`compress=on`).
    pack: Packer,
}

static mut WS: WriterState = WriterState {
    out: Out {
        buf: core::ptr::null_mut(),
        len: 0,
        fd: -1,
        failed: false,
    },
    frames_written: 0,
    strings_written: 0,
    module_gen: (u64::MAX, u64::MAX),
    modules: [0; 1024],
    module_count: 0,
    last_clock_ns: 0,
    events: 0,
    last_watermark: 0,
    kernel: super::kernel::Sampler::new(),
    last_kernel_ns: 0,
    pack: Packer::new(),
};

/// The writer-private state.
///
/// # Safety
/// Only the writer thread (or `start`/`after_fork_child`, while no writer
/// thread runs) may call this, and never while another reference from it
/// is alive.
#[allow(static_mut_refs)]
unsafe fn ws() -> &'static mut WriterState {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut WS }
}

/// Starts the writer if it is not running: opens the trace file, writes the
/// header and spawns the thread. Called from a recording thread with its
/// recorder marked busy (the thread creation may allocate). Returns false
/// if recording cannot proceed (it then is switched off, with one message).
pub fn start(settings: &crate::options::Settings, mode: u8) -> bool {
    static STARTING: AtomicBool = AtomicBool::new(false);
    if running() {
        return true;
    }
    if STATE.load(Ordering::Acquire) == STOPPED {
        return false;
    }
    if STARTING.swap(true, Ordering::Acquire) {
        // Another thread is starting it; wait.
        while STATE.load(Ordering::Acquire) == NONE && STARTING.load(Ordering::Acquire) {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        return running();
    }
    // Another thread may have started it (and let go of `STARTING`)
    // between the checks above and the claim: a second writer would
    // overwrite the running one's state.
    if running() || STATE.load(Ordering::Acquire) == STOPPED {
        STARTING.store(false, Ordering::Release);
        return running();
    }
    let ok = open_and_spawn(settings, mode);
    if ok {
        super::note_exit_status_at_exit();
    } else {
        STATE.store(STOPPED, Ordering::Release);
        super::disable();
    }
    STARTING.store(false, Ordering::Release);
    ok
}

fn open_and_spawn(settings: &crate::options::Settings, mode: u8) -> bool {
    // Expand %p in the path template.
    let mut path = [0u8; 512];
    let mut n = 0;
    let template = settings.out_template();
    let mut i = 0;
    while i < template.len() && n < path.len() - 24 {
        if template[i] == b'%' && template.get(i + 1) == Some(&b'p') {
            let mut digits = [0u8; 20];
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() } as u64;
            for &d in crate::report::decimal(pid, &mut digits) {
                path[n] = d;
                n += 1;
            }
            i += 2;
        } else {
            path[n] = template[i];
            n += 1;
            i += 1;
        }
    }
    path[n] = 0;
    // A name taken already gets a `.N` before its extension, rather than
    // being replaced, when several processes may write the same name: a
    // `%p` pattern (a process that executes keeps its pid), or any trace
    // of a descendant of the recorded process.
    let per_process = template.windows(2).any(|w| w == b"%p") || super::is_descendant();
    let (fd, n) = open_trace(&mut path, n, per_process);
    if fd < 0 {
        crate::report::warn(format_args!(
            "cannot create the trace '{}' ({}); the program runs without recording",
            core::str::from_utf8(&path[..n]).unwrap_or("?"),
            errno_text()
        ));
        return false;
    }
    spawn_on(fd, &path[..n], settings, mode)
}

/// The path of the trace being written (empty when it was handed over as
/// a descriptor), NUL-padded; written before the writer starts.
static TRACE_PATH: [AtomicU8; 512] = [const { AtomicU8::new(0) }; 512];

/// Copies the path of the trace being written into `out`; its length (0
/// when not writing one, or writing to a descriptor a client handed over).
pub fn trace_path(out: &mut [u8; 512]) -> usize {
    if !running() {
        return 0;
    }
    let mut n = 0;
    for (o, b) in out.iter_mut().zip(&TRACE_PATH) {
        *o = b.load(Ordering::Relaxed);
        if *o == 0 {
            break;
        }
        n += 1;
    }
    n
}

/// Starts a writer on `fd`, a trace file a control-socket client opened
/// and handed over (`control.rs`). False, with `fd` closed, when the
/// writer runs already or cannot start.
pub fn start_on(fd: i32, settings: &crate::options::Settings, mode: u8) -> bool {
    if STATE.load(Ordering::Acquire) == RUNNING {
        // SAFETY: the descriptor was handed to us and is not used further.
        unsafe { libc::close(fd) };
        return false;
    }
    // spawn_on closes `fd` when it fails.
    spawn_on(fd, b"", settings, mode)
}

/// Writes the header to `fd` (the trace at `path`) and spawns the writer
/// thread.
fn spawn_on(fd: i32, path: &[u8], settings: &crate::options::Settings, mode: u8) -> bool {
    for (i, slot) in TRACE_PATH.iter().enumerate() {
        slot.store(path.get(i).copied().unwrap_or(0), Ordering::Relaxed);
    }
    // SAFETY: no writer thread runs now (a previous one has returned); this
    // thread has exclusive use.
    let ws = unsafe { ws() };
    // The buffer of an earlier trace of this process (before a detach, an
    // exec that failed, a fork) is reused.
    let buf = if ws.out.buf.is_null() {
        os::map(OUT_BYTES)
    } else {
        ws.out.buf
    };
    if buf.is_null() {
        // SAFETY: closing the trace's descriptor, not used further.
        unsafe { libc::close(fd) };
        return false;
    }
    // So are the packer's memory and zstd context.
    let mut pack = core::mem::replace(&mut ws.pack, Packer::new());
    pack.on = settings.compress;
    pack.cpus = affinity_cpus();
    *ws = WriterState {
        out: Out {
            buf,
            len: 0,
            fd,
            failed: false,
        },
        frames_written: 0,
        strings_written: 0,
        module_gen: (u64::MAX, u64::MAX),
        modules: [0; 1024],
        module_count: 0,
        last_clock_ns: 0,
        events: 0,
        last_watermark: 0,
        // A new trace starts with every level unwritten.
        kernel: super::kernel::Sampler::new(),
        last_kernel_ns: 0,
        pack,
    };
    FD.store(fd, Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    OWNER_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    write_header(ws, settings, mode);
    clock_record(ws);
    ws.out.flush();
    STOP.store(false, Ordering::Relaxed);
    DONE.store(0, Ordering::Relaxed);
    // A new trace: every thread is announced again and restarts its deltas.
    Ring::for_each(|r| r.announced.store(0, Ordering::Relaxed));
    TRACE_EPOCH.fetch_add(1, Ordering::AcqRel);
    STATE.store(RUNNING, Ordering::Release);
    let rc = os::spawn_thread(writer_main, c"memtally-writer");
    if rc != 0 {
        STATE.store(STOPPED, Ordering::Release);
        FD.store(-1, Ordering::Relaxed);
        // SAFETY: the trace's descriptor; no writer thread uses it.
        unsafe { libc::close(fd) };
        crate::report::warn(format_args!(
            "cannot start the trace writer thread (error {rc}); the program runs without recording"
        ));
        return false;
    }
    true
}

/// Creates the trace file at `path[..n]`. A per-process path (the
/// template has `%p`) never overwrites: a process that execs keeps its pid,
/// and the new image's trace must not truncate the old one's, so an
/// existing name gets a `.1`, `.2`... before its extension. Returns the
/// descriptor (or -1) and the final path length.
fn open_trace(path: &mut [u8; 512], n: usize, per_process: bool) -> (i32, usize) {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC;
    if !per_process {
        // SAFETY: `path` is NUL-terminated at `n`.
        let fd = unsafe { libc::open(path.as_ptr().cast(), flags | libc::O_TRUNC, 0o644) };
        return (fd, n);
    }
    let dot = path[..n]
        .iter()
        .rposition(|&b| b == b'.')
        .filter(|&d| d > 0)
        .unwrap_or(n);
    let mut ext = [0u8; 64];
    let ext_len = (n - dot).min(ext.len());
    ext[..ext_len].copy_from_slice(&path[dot..dot + ext_len]);
    let mut len = n;
    for attempt in 0u32..1000 {
        if attempt > 0 {
            // name.<attempt><ext>
            let mut digits = [0u8; 20];
            let mut at = dot;
            path[at] = b'.';
            at += 1;
            for &d in crate::report::decimal(u64::from(attempt), &mut digits) {
                path[at] = d;
                at += 1;
            }
            path[at..at + ext_len].copy_from_slice(&ext[..ext_len]);
            at += ext_len;
            path[at] = 0;
            len = at;
        }
        // SAFETY: `path` is NUL-terminated at `len`.
        let fd = unsafe { libc::open(path.as_ptr().cast(), flags | libc::O_EXCL, 0o644) };
        // SAFETY: reading errno.
        if fd >= 0 || unsafe { *libc::__errno_location() } != libc::EEXIST {
            return (fd, len);
        }
    }
    (-1, len)
}

fn write_header(ws: &mut WriterState, settings: &crate::options::Settings, mode: u8) {
    // MAGIC and version come first, outside any record.
    let out = &mut ws.out;
    // SAFETY: the buffer is empty and larger than the magic and version.
    let dst = unsafe { core::slice::from_raw_parts_mut(out.buf, OUT_BYTES) };
    dst[..8].copy_from_slice(trace::MAGIC);
    let mut c = Cursor::new(&mut dst[8..]);
    put_uvar(&mut c, trace::VERSION);
    out.len = 8 + c.len();
    let mut exe = [0u8; 512];
    // SAFETY: the buffer is valid for its length.
    let exe_len = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr().cast(),
            exe.len(),
        )
    }
    .max(0) as usize;
    let mut cmdline = [0u8; 3000];
    let cmd_len = read_file(c"/proc/self/cmdline", &mut cmdline);
    out.record(kind::HEADER, |c| {
        put_uvar(c, trace::VERSION);
        // SAFETY: getpid/getppid have no preconditions.
        put_uvar(c, unsafe { libc::getpid() } as u64);
        // SAFETY: as above.
        put_uvar(c, unsafe { libc::getppid() } as u64);
        put_u8(c, mode);
        put_uvar(
            c,
            if mode == trace::mode::SAMPLED {
                settings.interval
            } else {
                0
            },
        );
        put_uvar(c, settings.depth as u64);
        put_uvar(c, super::clock::realtime_ns());
        put_bytes(c, &exe[..exe_len]);
        let args = &cmdline[..cmd_len];
        let argc = args.split(|&b| b == 0).filter(|a| !a.is_empty()).count();
        put_uvar(c, argc as u64);
        for a in args.split(|&b| b == 0).filter(|a| !a.is_empty()) {
            put_bytes(c, &a[..a.len().min(512)]);
        }
    });
}

/// Reads a small file into `buf` with raw system calls; returns the length.
fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: `path` is NUL-terminated; reads stay inside `buf`.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let mut n = 0;
        while n < buf.len() {
            let r = libc::read(fd, buf.as_mut_ptr().add(n).cast(), buf.len() - n);
            if r <= 0 {
                break;
            }
            n += r as usize;
        }
        libc::close(fd);
        n
    }
}

fn clock_record(ws: &mut WriterState) {
    let ticks = super::clock::ticks();
    let mono = super::clock::monotonic_ns();
    let real = super::clock::realtime_ns();
    ws.last_clock_ns = mono;
    ws.out.record(kind::CLOCK, |c| {
        put_uvar(c, ticks);
        put_uvar(c, mono);
        put_uvar(c, real);
    });
}

fn memory_record(ws: &mut WriterState) {
    let mut statm = [0u8; 128];
    let n = read_file(c"/proc/self/statm", &mut statm);
    let resident_pages = statm[..n]
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|f| core::str::from_utf8(f).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let rss = resident_pages * os::os_page_size() as u64;
    let mapped = crate::stats::mapped_bytes() as u64;
    let ticks = super::clock::ticks();
    ws.out.record(kind::MEMORY, |c| {
        put_uvar(c, ticks);
        put_uvar(c, rss);
        put_uvar(c, mapped);
    });
}

/// A `GAUGE` record per kernel-held memory level that changed.
fn kernel_records(ws: &mut WriterState) {
    let ticks = super::clock::ticks();
    let out = &mut ws.out;
    ws.kernel.sample(|level| {
        out.record(kind::GAUGE, |c| {
            put_uvar(c, ticks);
            put_u8(c, level.memory);
            put_uvar(c, u64::from(level.fd));
            put_uvar(c, level.bytes);
        });
    });
}

fn write_strings(ws: &mut WriterState) {
    let count = intern::string_count();
    while ws.strings_written < count {
        let id = ws.strings_written + 1;
        let s = intern::string(id);
        ws.out.record(kind::STRING, |c| {
            put_uvar(c, id);
            put_bytes(c, &s.bytes[..s.len as usize]);
        });
        ws.strings_written = id;
    }
}

fn write_frames(ws: &mut WriterState) {
    let count = intern::frame_count();
    while ws.frames_written < count {
        let id = ws.frames_written + 1;
        let n = intern::frame(id);
        ws.out.record(kind::FRAME, |c| {
            put_uvar(c, id);
            put_uvar(c, n.parent);
            put_uvar(c, n.address);
        });
        ws.frames_written = id;
    }
}

fn write_modules(ws: &mut WriterState) {
    let counters = modules::generation();
    if counters == ws.module_gen {
        return;
    }
    ws.module_gen = counters;
    super::unwind::modules_changed();
    // First intern the paths, so their STRING records precede the MODULE
    // records that name them.
    modules::scan(|m| {
        if !m.segments.is_empty() {
            intern::intern_string(m.path);
        }
    });
    write_strings(ws);
    let mut present = [0u64; 1024];
    let mut present_count = 0;
    let known = ws.modules;
    let known_count = ws.module_count;
    let out = &mut ws.out;
    modules::scan(|m| {
        if m.segments.is_empty() {
            return;
        }
        if present_count < present.len() {
            present[present_count] = m.base;
            present_count += 1;
        }
        if known[..known_count].contains(&m.base) {
            return;
        }
        let path_id = intern::intern_string(m.path);
        out.record(kind::MODULE, |c| {
            put_uvar(c, m.base);
            put_uvar(c, path_id);
            put_bytes(c, m.build_id);
            put_uvar(c, m.segments.len() as u64);
            for &(start, end, offset) in m.segments {
                put_uvar(c, start);
                put_uvar(c, end);
                put_uvar(c, offset);
            }
        });
    });
    for &base in &known[..known_count] {
        if !present[..present_count].contains(&base) {
            ws.out.record(kind::MODULE_GONE, |c| put_uvar(c, base));
        }
    }
    ws.modules = present;
    ws.module_count = present_count;
}

/// One round: see the module docs.
fn round(ws: &mut WriterState, final_round: bool) {
    // 1. Watermark candidate.
    let mut watermark = super::clock::ticks().saturating_sub(WATERMARK_SLACK);
    // 2. Snapshot heads. An event published after its ring's snapshot is
    //    left for the next round.
    let mut heads = [(core::ptr::null::<Ring>(), 0u64); 4096];
    let mut nheads = 0;
    Ring::for_each(|r| {
        if r.state.load(Ordering::Acquire) == ring::FREE {
            return;
        }
        if let Some(bound) = r.busy_bound() {
            watermark = watermark.min(bound);
        }
        if nheads < heads.len() {
            heads[nheads] = (r as *const Ring, r.head());
            nheads += 1;
        }
    });
    // 3. Definitions.
    write_modules(ws);
    write_strings(ws);
    write_frames(ws);
    // 4. Events, packed only with a CPU to spare (see `Packer`).
    let busy = heads[..nheads]
        .iter()
        // SAFETY: rings are never unmapped.
        .filter(|&&(rp, head)| unsafe { (*rp).pending_to(head) } >= BUSY_BYTES)
        .count();
    ws.pack.spent_ns = if busy < ws.pack.cpus {
        0
    } else {
        PACK_BUDGET_NS
    };
    for &(rp, head) in &heads[..nheads] {
        // SAFETY: rings are never unmapped.
        let r = unsafe { &*rp };
        let thread = r.thread.load(Ordering::Relaxed);
        if r.announced.load(Ordering::Acquire) == 0 {
            let mut name = [0u8; 16];
            let nl = r.name_bytes(&mut name);
            ws.out.record(kind::THREAD, |c| {
                put_uvar(c, thread);
                put_uvar(c, r.os_tid.load(Ordering::Relaxed));
                put_bytes(c, &name[..nl]);
                put_uvar(c, r.start_ticks.load(Ordering::Relaxed));
            });
            r.announced.store(1, Ordering::Release);
        }
        let n = r.pending_to(head);
        if n > 0 {
            ws.out.events(thread, n as usize, &mut ws.pack, |sink| {
                r.drain_to(head, |bytes| sink(bytes));
            });
        }
        if r.state.load(Ordering::Acquire) == ring::CLOSED && r.pending_to(r.head()) == 0 {
            ws.out.record(kind::THREAD_END, |c| {
                put_uvar(c, thread);
                put_uvar(c, r.end_ticks.load(Ordering::Relaxed));
            });
            ws.events += r.events.load(Ordering::Relaxed);
            r.state.store(ring::FREE, Ordering::Release);
        }
    }
    // 5. Watermark, clock, memory.
    if watermark > ws.last_watermark && !final_round {
        ws.last_watermark = watermark;
        ws.out.record(kind::WATERMARK, |c| put_uvar(c, watermark));
    }
    let now = super::clock::monotonic_ns();
    if final_round || now >= ws.last_clock_ns + CLOCK_EVERY_NS {
        clock_record(ws);
        memory_record(ws);
    }
    if final_round || now >= ws.last_kernel_ns + super::kernel::SAMPLE_EVERY_NS {
        ws.last_kernel_ns = now;
        kernel_records(ws);
    }
    ws.out.flush();
    if ws.out.failed {
        STATE.store(STOPPED, Ordering::Release);
        super::disable();
    }
}

extern "C" fn writer_main(_: *mut c_void) -> *mut c_void {
    super::mark_current_thread_as_writer();
    loop {
        let seen = ring::WAKE.load(Ordering::Acquire);
        // SAFETY: this is the writer thread.
        let ws = unsafe { ws() };
        if STOP.load(Ordering::Acquire) {
            finish_trace(ws);
            return core::ptr::null_mut();
        }
        // Only the flush requests made before this round's snapshot of the
        // rings are served by it: an event published by a flushing thread
        // after the snapshot waits for the next round, and so must its flush
        // (else a thread about to die, a fault or an abort, loses its last
        // event).
        let req = FLUSH_REQ.load(Ordering::Acquire);
        round(ws, false);
        crate::races::tick();
        if req as u32 != FLUSH_DONE.load(Ordering::Relaxed) {
            FLUSH_DONE.store(req as u32, Ordering::Release);
            os::futex_wake(&FLUSH_DONE, i32::MAX);
        }
        if !running() {
            DONE.store(1, Ordering::Release);
            os::futex_wake(&DONE, i32::MAX);
            return core::ptr::null_mut();
        }
        os::futex_wait(&ring::WAKE, seen, Some(ROUND_MS));
    }
}

fn finish_trace(ws: &mut WriterState) {
    round(ws, true);
    // Rings still active at exit count too.
    let mut events = ws.events;
    Ring::for_each(|r| {
        if r.state.load(Ordering::Acquire) != ring::FREE {
            events += r.events.load(Ordering::Relaxed);
        }
    });
    let ticks = super::clock::ticks();
    let flags = STOP_FLAGS.load(Ordering::Acquire);
    ws.out.record(kind::FOOTER, |c| {
        put_uvar(c, ticks);
        put_uvar(c, events);
        put_uvar(c, super::dropped());
        put_uvar(c, flags);
        put_uvar(c, super::exit_status());
    });
    ws.out.flush();
    // Forgotten before it is closed: the number may soon name a file of
    // the program's, which a forked child must not close as our trace.
    FD.store(-1, Ordering::Relaxed);
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(ws.out.fd) };
    // After an exec that fails, recording goes on into a new trace; after
    // a detach, a later attach starts one.
    let next = if flags & (trace::FOOTER_EXEC | trace::FOOTER_DETACHED) != 0 {
        NONE
    } else {
        STOPPED
    };
    STATE.store(next, Ordering::Release);
    DONE.store(1, Ordering::Release);
    os::futex_wake(&DONE, i32::MAX);
}

/// Drains everything recorded so far to the file and waits until it is
/// written (before `exec`, and for `memtally_alloc::flush`).
pub fn flush() {
    if !running() {
        return;
    }
    let req = FLUSH_REQ.fetch_add(1, Ordering::AcqRel) + 1;
    ring::wake_writer();
    for _ in 0..500 {
        let done = FLUSH_DONE.load(Ordering::Acquire);
        if done >= req as u32 || !running() {
            return;
        }
        os::futex_wait(&FLUSH_DONE, done, Some(10));
    }
}

/// Stops the writer: a last round, the footer with `flags`, close. Waits up
/// to about five seconds.
pub fn finish(flags: u64) {
    // SAFETY: getpid has no preconditions.
    if !running() || OWNER_PID.load(Ordering::Relaxed) != unsafe { libc::getpid() } {
        return;
    }
    STOP_FLAGS.store(flags, Ordering::Release);
    STOP.store(true, Ordering::Release);
    ring::wake_writer();
    for _ in 0..500 {
        if DONE.load(Ordering::Acquire) != 0 {
            return;
        }
        os::futex_wait(&DONE, 0, Some(10));
    }
    crate::report::warn(format_args!(
        "the trace writer did not finish within 5 s; the trace may end without its footer"
    ));
}

/// In a forked child: the writer thread does not exist here. Forget it, so
/// the next event starts a new writer (with a new file, named for the
/// child's pid), and re-emit every string and frame into that trace.
pub fn after_fork_child() {
    STATE.store(NONE, Ordering::Release);
    STOP.store(false, Ordering::Relaxed);
    DONE.store(0, Ordering::Relaxed);
    let fd = FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the parent's trace descriptor, inherited; the child must
        // not write to it.
        unsafe { libc::close(fd) };
    }
}
