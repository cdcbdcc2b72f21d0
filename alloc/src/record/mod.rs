//! Recording: every allocation, free and reallocation of the process (or a
//! sample of them) with its time, thread, call stack and latency, written to
//! a trace file by a background thread.
//!
//! The path of one event: the allocator's slow path (every operation of an
//! instrumented heap takes it) calls [`on_alloc`], [`on_free`] or
//! [`on_realloc`] after doing its work; the thread captures its stack
//! (`stack.rs`), turns it into an id (`intern.rs`), encodes the event with
//! the trace encoder and appends it to its own ring (`ring.rs`); the writer
//! thread (`writer.rs`) drains the rings into the file.
//!
//! Re-entrancy: a thread's recorder is marked busy while it records, and
//! whatever it allocates meanwhile (the stack bounds lookup, thread
//! creation) goes through the allocator without being recorded. The writer
//! thread is busy for good.
//!
//! Nothing is lost: a thread whose ring is full waits for the writer. The
//! only events not written are those made after the writer stopped at exit
//! or after an output error, and they are counted in the footer.

pub mod clock;
pub(crate) mod intern;
pub mod kernel;
mod modules;
pub(crate) mod ring;
pub mod scope;
pub(crate) mod stack;
pub(crate) mod unwind;
mod writer;

use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::options::{Mode, Settings};
use crate::trace::{self, Cursor, MAX_EVENT_BYTES, RawEvent, ThreadCodec};
use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use ring::Ring;
use stack::Bounds;

const OFF: u8 = 0;
const SAMPLED: u8 = trace::mode::SAMPLED;
const FULL: u8 = trace::mode::FULL;

static RECORDING: AtomicU8 = AtomicU8::new(OFF);
static SETTINGS: SpinLock<Option<Settings>> = SpinLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Takes every lock of the recorder, in their nesting order, before
/// `fork()`: a lock held by another thread at the fork would stay held in
/// the child for good. Undone by [`fork_release`].
pub fn fork_acquire() {
    unwind::rebuild_lock().raw_lock();
    modules::scan_lock().raw_lock();
    intern::string_lock().raw_lock();
    intern::frame_lock().raw_lock();
    SETTINGS.raw_lock();
}

/// Releases what [`fork_acquire`] took (in the parent, and in the child).
///
/// # Safety
/// The calling thread must have called [`fork_acquire`] (in the child: the
/// parent's thread that forked did).
pub unsafe fn fork_release() {
    // SAFETY: guaranteed by the caller.
    unsafe {
        SETTINGS.raw_unlock();
        intern::frame_lock().raw_unlock();
        intern::string_lock().raw_unlock();
        modules::scan_lock().raw_unlock();
        unwind::rebuild_lock().raw_unlock();
    }
}

/// Applies settings (from `MEMTALLY` at start-up, or the builder API).
pub fn configure(settings: Settings) {
    *SETTINGS.lock() = Some(settings);
    let mode = match settings.mode {
        Mode::Off => OFF,
        Mode::Stats => {
            crate::stats::enable_counting();
            OFF
        }
        Mode::Sampled => SAMPLED,
        Mode::Full => FULL,
    };
    SAMPLE_INTERVAL.store(settings.interval.max(1), Ordering::Relaxed);
    RECORDING.store(mode, Ordering::Release);
}

fn settings() -> Settings {
    SETTINGS.lock().unwrap_or_default()
}

/// Is anything being recorded?
#[inline]
pub fn active() -> bool {
    RECORDING.load(Ordering::Relaxed) != OFF
}

/// Is every event being recorded?
#[inline]
pub fn full() -> bool {
    RECORDING.load(Ordering::Relaxed) == FULL
}

/// The mean sampling interval in bytes, when recording samples.
#[inline]
pub fn sampling_interval() -> Option<u64> {
    if RECORDING.load(Ordering::Relaxed) == SAMPLED {
        Some(SAMPLE_INTERVAL.load(Ordering::Relaxed))
    } else {
        None
    }
}

static SAMPLE_INTERVAL: AtomicU64 = AtomicU64::new(512 * 1024);

/// Draws the bytes until the next sample: exponentially distributed with
/// mean `interval`, so that every byte allocated has the same chance
/// `1/interval` of being the one sampled (a Poisson process over bytes).
pub fn next_sample_interval(heap: &Heap, interval: u64) -> i64 {
    let mut x = heap.rng.get();
    if x == 0 {
        x = clock::ticks() | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    heap.rng.set(x);
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    // u in (0, 1]: never 0, so ln(u) is finite.
    let u = (r as f64 + 1.0) / (1u64 << 53) as f64;
    let bytes = -u.ln() * interval as f64;
    (bytes as i64).clamp(1, i64::MAX / 4)
}

/// The countdown a heap starts with in the current mode: to the next
/// recorded sample, else to the next guarded allocation (-1: every
/// allocation takes the slow path, which counts them), else never.
pub fn initial_sample_left(heap: &Heap) -> i64 {
    heap.rng
        .set(clock::ticks() ^ (heap as *const Heap as u64).rotate_left(17) | 1);
    next_countdown(heap)
}

/// The countdown to the next visit of the sampling path (see
/// [`initial_sample_left`]).
pub fn next_countdown(heap: &Heap) -> i64 {
    if let Some(interval) = sampling_interval() {
        return next_sample_interval(heap, interval);
    }
    if crate::guard::enabled() {
        if crate::guard::every() > 0 {
            return -1;
        }
        return next_sample_interval(heap, crate::guard::interval());
    }
    if crate::races::enabled() {
        // Watch candidates, one per 256 KiB allocated on average.
        return next_sample_interval(heap, 256 << 10);
    }
    i64::MAX
}

/// Set while recording runs because a control-socket client asked for it
/// (`control.rs`), until it detaches.
static ATTACHED: AtomicBool = AtomicBool::new(false);
/// Set once the process has begun to exit: no client may attach then.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Switches recording on in the running process, into `fd` (a trace file a
/// control-socket client opened and handed over), with the client's mode,
/// interval and depth over the process's own settings. Every thread
/// starts recording at its next slow path (see `thread::GENERATION`).
/// On error `fd` is closed and the reason returned.
pub fn attach(mode: Mode, interval: u64, depth: usize, fd: i32) -> Result<(), &'static str> {
    let code = match mode {
        Mode::Full => FULL,
        Mode::Sampled => SAMPLED,
        Mode::Off | Mode::Stats => {
            // SAFETY: the client's descriptor, not used further.
            unsafe { libc::close(fd) };
            return Err("the mode must be full or sampled");
        }
    };
    let refuse = if EXITING.load(Ordering::Acquire) {
        Some("the process is exiting")
    } else if active() || ATTACHED.load(Ordering::Acquire) {
        Some("the process is recording already")
    } else {
        None
    };
    if let Some(why) = refuse {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
        return Err(why);
    }
    let mut s = settings();
    s.mode = mode;
    s.interval = interval.max(1);
    s.depth = depth.clamp(1, MAX_DEPTH);
    *SETTINGS.lock() = Some(s);
    SAMPLE_INTERVAL.store(s.interval, Ordering::Relaxed);
    if !writer::start_on(fd, &s, code) {
        return Err("the trace writer could not start");
    }
    ATTACHED.store(true, Ordering::Release);
    RECORDING.store(code, Ordering::SeqCst);
    crate::thread::bump_generation();
    Ok(())
}

/// Ends an attached recording: switches recording off, waits for the
/// events in flight, and ends the trace (its footer says `detached`). The
/// process runs on as before the attach.
pub fn detach() {
    if !ATTACHED.swap(false, Ordering::AcqRel) {
        return;
    }
    RECORDING.store(OFF, Ordering::SeqCst);
    crate::thread::bump_generation();
    // After this barrier every thread that read the mode before it was
    // switched off has its event's in-flight mark visible (`emit_busy`
    // reads the mode after setting the mark, with only a compiler fence).
    crate::os::process_barrier();
    for _ in 0..2000 {
        let mut busy = false;
        Ring::for_each(|r| busy |= r.state.load(Ordering::Acquire) != ring::FREE && r.in_flight());
        if !busy {
            break;
        }
        crate::os::sleep_ms(1);
    }
    writer::finish(trace::FOOTER_DETACHED);
}

/// The path of the trace being written, as the process named it (0: none,
/// or a descriptor a client handed over).
pub fn trace_path(out: &mut [u8; 512]) -> usize {
    writer::trace_path(out)
}

/// Is a control-socket client's recording running?
pub fn attached() -> bool {
    ATTACHED.load(Ordering::Acquire)
}

/// Stops recording (after an output error); the program runs on.
pub fn disable() {
    RECORDING.store(OFF, Ordering::Release);
}

/// Events that could not be written.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A thread's recording state, kept in its heap.
pub struct ThreadRecorder {
    /// Set while the thread records (re-entrancy guard), and for good on
    /// the writer thread.
    busy: Cell<bool>,
    /// The thread's ring, null until its first event.
    ring: Cell<*mut Ring>,
    /// The encoder's model of the thread's event stream (owner only; see
    /// `ThreadRecorder::codec`).
    codec: UnsafeCell<ThreadCodec>,
    /// The thread's stack range.
    bounds: Cell<Bounds>,
    /// Most frames per stack.
    depth: Cell<usize>,
    /// The trace epoch `delta` belongs to.
    epoch: Cell<u32>,
    /// Calls left before the next one whose latency is measured.
    latency_left: Cell<u32>,
    /// The time of the free (or reallocation) being made, read before its
    /// block was released (see [`stamp_release`]); 0 when none, and
    /// [`UNRECORDED_RELEASE`] when recording was off then.
    release_time: Cell<u64>,
    /// Set while a reallocation to be recorded runs (see
    /// [`ThreadRecorder::reallocating`]).
    in_realloc: Cell<bool>,
    /// The thread's current scope: its name's STRING id and its instance
    /// (`[0, 0]`: none). Entering a scope only sets this; the next event
    /// recorded says it (see `scope.rs`).
    scope: Cell<[u64; 2]>,
    /// The scope last written into the thread's event stream.
    written_scope: Cell<[u64; 2]>,
    /// Scopes entered through the C ABI and not yet left, innermost last.
    c_scopes: [Cell<[u64; 2]>; scope::C_DEPTH],
    /// How many of `c_scopes` are in use (may exceed `C_DEPTH`: those
    /// past it are counted, not kept).
    c_depth: Cell<usize>,
    /// Scope names already interned: (address, length, hash, STRING id).
    names: [Cell<(usize, usize, u64, u64)>; scope::NAME_CACHE],
}

impl ThreadRecorder {
    /// A recorder that has recorded nothing.
    pub const fn new() -> Self {
        ThreadRecorder {
            busy: Cell::new(false),
            ring: Cell::new(core::ptr::null_mut()),
            codec: UnsafeCell::new(ThreadCodec::new()),
            bounds: Cell::new(Bounds { lo: 0, hi: 0 }),
            depth: Cell::new(64),
            epoch: Cell::new(u32::MAX),
            latency_left: Cell::new(0),
            release_time: Cell::new(0),
            in_realloc: Cell::new(false),
            scope: Cell::new([0, 0]),
            written_scope: Cell::new([0, 0]),
            c_scopes: [const { Cell::new([0, 0]) }; scope::C_DEPTH],
            c_depth: Cell::new(0),
            names: [const { Cell::new((0, 0, 0, 0)) }; scope::NAME_CACHE],
        }
    }

    /// The thread's event model.
    ///
    /// # Safety
    /// Only the owning thread may call this, and the reference must not
    /// outlive the recording of one event (callers use it within `emit`,
    /// which is not re-entered: the recorder is busy meanwhile).
    #[allow(clippy::mut_from_ref)]
    unsafe fn codec(&self) -> &mut ThreadCodec {
        // SAFETY: guaranteed by the caller.
        unsafe { &mut *self.codec.get() }
    }

    /// Is the thread recording right now (or the writer)?
    pub fn is_busy(&self) -> bool {
        self.busy.get()
    }

    /// Runs `f`, a reallocation that will be recorded as one event, with
    /// recording suspended (its inner allocation and free are not events
    /// of their own); its release of the old block may stamp the event's
    /// time ([`stamp_release`]) only if the event will be made, that is,
    /// if the recorder was not busy already.
    pub fn reallocating<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.busy.replace(true);
        self.in_realloc.set(!was);
        let r = f();
        self.in_realloc.set(false);
        self.busy.set(was);
        r
    }

    /// The thread's ring, registering the thread on its first event.
    fn ring(&self) -> Option<&'static Ring> {
        let r = self.ring.get();
        if !r.is_null() {
            // SAFETY: rings are never unmapped.
            return Some(unsafe { &*r });
        }
        let r = Ring::acquire();
        if r.is_null() {
            return None;
        }
        // SAFETY: just acquired for this thread; rings are never unmapped.
        let ring = unsafe { &*r };
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
        ring.os_tid.store(tid, Ordering::Relaxed);
        let mut name = [0u8; 16];
        // SAFETY: PR_GET_NAME writes at most 16 bytes into `name`.
        unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
        for (slot, b) in ring.name.iter().zip(name) {
            slot.store(b, Ordering::Relaxed);
        }
        ring.start_ticks.store(clock::ticks(), Ordering::Relaxed);
        self.bounds.set(Bounds::of_current_thread());
        // SAFETY: this thread owns its recorder; no other reference to the
        // codec is alive (see `codec`).
        unsafe { *self.codec() = ThreadCodec::new() };
        self.written_scope.set([0, 0]);
        self.depth.set(settings().depth.clamp(1, MAX_DEPTH));
        self.ring.set(r);
        Some(ring)
    }
}

impl Default for ThreadRecorder {
    fn default() -> Self {
        Self::new()
    }
}

const MAX_DEPTH: usize = 256;

/// Where an event's stack comes from.
#[derive(Clone, Copy)]
pub(crate) enum Stack<'a> {
    /// The event has none.
    No,
    /// The calling thread's, captured here.
    Capture,
    /// These return addresses (a fault's, unwound from its context).
    Given(&'a [u64]),
}

/// Records one event of the calling thread that began at tick `t0`:
/// captures the stack (per `stack`), then encodes
/// `make(stack_id, time, latency)` into the ring. The clock is read once
/// here (it costs 15 ns on this project's VMs): the event's time is the end
/// of the allocator call, its latency the time since `t0`.
#[inline(always)]
fn emit(heap: &Heap, stack: Stack<'_>, t0: u64, make: impl FnOnce(u64, u64, u64) -> RawEvent) {
    let rec = &heap.rec;
    if rec.busy.get() {
        return;
    }
    rec.busy.set(true);
    emit_busy(rec, stack, t0, make);
    rec.busy.set(false);
}

#[inline(always)]
fn emit_busy(
    rec: &ThreadRecorder,
    stack: Stack<'_>,
    t0: u64,
    make: impl FnOnce(u64, u64, u64) -> RawEvent,
) {
    // A free's time was read before its block was released (see
    // `stamp_release`); other events' is read below, at the end of the call.
    let released = rec.release_time.replace(0);
    if released == UNRECORDED_RELEASE {
        return;
    }
    let Some(ring) = rec.ring() else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mode = if released != 0 {
        // Marked in flight by the stamp, which found recording on: a
        // detach waits for this event, so it is made whatever the mode
        // says now (dropping it would leave its block live in the trace
        // while another thread's allocation of the address is in it).
        RECORDING.load(Ordering::Relaxed)
    } else {
        let Some(mode) = begin_event(ring) else {
            return;
        };
        mode
    };
    // A writer is started here only while recording is on: an event begun
    // before a detach switched it off, on a thread held up past the
    // detach's wait for events in flight, must not start a writer of its
    // own after the session's has finished (a stray trace file, and a
    // running writer that makes the next attach fail).
    if !writer::running()
        && (mode == OFF
            || RECORDING.load(Ordering::Acquire) == OFF
            || !writer::start(&settings(), mode))
    {
        ring.abandon_event();
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: the recorder is busy (emit is not re-entered) and this is the
    // owning thread.
    let codec = unsafe { rec.codec() };
    let epoch = writer::TRACE_EPOCH.load(Ordering::Acquire);
    if rec.epoch.get() != epoch {
        rec.epoch.set(epoch);
        *codec = ThreadCodec::new();
        rec.written_scope.set([0, 0]);
        // A trace started by a client may ask for another depth.
        rec.depth.set(settings().depth.clamp(1, MAX_DEPTH));
    }
    let time = if released != 0 {
        released
    } else {
        clock::ticks()
    };
    ring.timed(time);
    let scope = rec.scope.get();
    // The thread entered or left a scope since its last event: say so
    // before the event, which belongs to it, in the same publication (the
    // event stays in flight until both are out).
    let scope_event = (scope != rec.written_scope.get()).then_some(RawEvent::Scope {
        time,
        string: scope[0],
        instance: scope[1],
    });
    let stack_id = match stack {
        Stack::Capture => {
            let mut frames = core::mem::MaybeUninit::<[u64; MAX_DEPTH]>::uninit();
            // SAFETY: u64 has no invalid bit patterns and `capture` writes
            // the first `n` entries before they are read; the rest are never
            // read.
            let frames = unsafe { &mut *frames.as_mut_ptr() };
            let n = stack::capture(
                &mut frames[..rec.depth.get()],
                rec.bounds.get(),
                &ring.rules,
            );
            ring.cache.lookup(&frames[..n])
        }
        Stack::Given(frames) => ring
            .cache
            .lookup(&frames[..frames.len().min(rec.depth.get())]),
        Stack::No => 0,
    };
    let latency = if t0 == 0 {
        0
    } else if released != 0 {
        clock::ticks().saturating_sub(t0).max(1)
    } else {
        time.saturating_sub(t0).max(1)
    };
    let event = make(stack_id, time, latency);
    match scope_event {
        None => {
            write_event(ring, codec, &event);
        }
        Some(scope_event) => {
            if write_pair(ring, codec, &scope_event, &event) {
                rec.written_scope.set(scope);
            }
        }
    }
}

/// Marks an event in flight on `ring`, then reads the recording mode: None
/// (and the mark taken off) when recording is off. A detach switches
/// recording off, then waits until no ring has an event in flight before
/// it ends the trace; reading the mode after the mark (ordered by the
/// detach's process-wide barrier, see [`detach`]) means that an event
/// either sees recording off and is not made, or is waited for.
#[inline(always)]
fn begin_event(ring: &Ring) -> Option<u8> {
    ring.begin();
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let mode = RECORDING.load(Ordering::Relaxed);
    if mode == OFF {
        ring.abandon_event();
        return None;
    }
    Some(mode)
}

/// Encodes `event` into the calling thread's `ring`; false when the writer
/// has stopped for good (the event is counted as dropped).
#[inline(always)]
fn write_event(ring: &Ring, codec: &mut ThreadCodec, event: &RawEvent) -> bool {
    // SAFETY: this thread owns the ring; no other room slice is alive.
    if let Some(room) = unsafe { ring.room(MAX_EVENT_BYTES) } {
        let mut c = Cursor::new(room);
        codec.encode(&mut c, event);
        let len = c.len();
        ring.publish(len);
        ring.count_event();
        return true;
    }
    push_events(ring, codec, &[event])
}

/// Encodes `first` and `second` into the calling thread's `ring` and
/// publishes them together (rare: a scope change before an event); false
/// when the writer has stopped for good.
fn write_pair(ring: &Ring, codec: &mut ThreadCodec, first: &RawEvent, second: &RawEvent) -> bool {
    push_events(ring, codec, &[first, second])
}

/// Encodes `events` (at most two) off the ring and pushes them as one
/// piece: the path of an event that does not fit at the ring's head, and
/// of a pair that must be published together. False when the writer has
/// stopped for good (the events are counted as dropped): no later event of
/// this thread reaches the trace, so the codec running ahead is harmless.
fn push_events(ring: &Ring, codec: &mut ThreadCodec, events: &[&RawEvent]) -> bool {
    debug_assert!(events.len() <= 2);
    let mut buf = [0u8; 2 * MAX_EVENT_BYTES];
    let mut c = Cursor::new(&mut buf);
    for e in events {
        codec.encode(&mut c, e);
    }
    let len = c.len();
    if ring.push(&buf[..len]) {
        for _ in events {
            ring.count_event();
        }
        true
    } else {
        DROPPED.fetch_add(events.len() as u64, Ordering::Relaxed);
        false
    }
}

/// In full mode, one call in this many has its latency measured: the clock
/// costs about 15 ns a read on this project's VMs, and a second read per
/// event would be the largest single cost of recording. A latency histogram
/// from every eighth call is as accurate as one from all of them.
const LATENCY_EVERY: u32 = 8;

/// The tick at which an allocator call starts, when its latency is to be
/// measured, else 0 (an event with latency 0 has none recorded). Called at
/// the entry of every recorded call.
#[inline]
pub fn call_start(heap: *mut Heap) -> u64 {
    if heap == crate::thread::empty_heap() || !full() {
        return clock::ticks();
    }
    // SAFETY: a non-empty thread heap is live and ours.
    let rec = unsafe { &(*heap).rec };
    let left = rec.latency_left.get();
    if left == 0 {
        rec.latency_left.set(LATENCY_EVERY - 1);
        clock::ticks()
    } else {
        rec.latency_left.set(left - 1);
        0
    }
}

/// Reads the time of the free (or reallocation) the calling thread is
/// about to record, before the block it frees is released: once released,
/// another thread may allocate the same address and record that with an
/// earlier time than a clock read after the release, and the trace would
/// show the address allocated twice and freed once. The thread's ring is
/// marked busy from here (the writer's watermark waits for the event); the
/// event made next takes this time, and [`cancel_release`] undoes it when
/// none is made. Frees go through [`free_event`].
fn stamp_release(heap: &Heap) {
    if !heap.rec.busy.get() {
        stamp(&heap.rec);
    }
}

/// [`stamp_release`] for a reallocation that moves, between getting its
/// new block and releasing the old one: only a reallocation that will be
/// recorded (see [`ThreadRecorder::reallocating`]).
pub fn stamp_realloc_release(heap: &Heap) {
    if heap.rec.in_realloc.get() {
        stamp(&heap.rec);
    }
}

/// The recording decision for a free (or a moving reallocation) is taken
/// here, before its block is released, and holds: a free stamped with
/// recording on is made even if a detach switches recording off before
/// the event is written (the detach waits for the in-flight mark taken
/// here), and one whose stamp found recording off is not made even if an
/// attach switches it on meanwhile (its time, read after the release,
/// could be later than another thread's allocation of the same address).
fn stamp(rec: &ThreadRecorder) {
    if RECORDING.load(Ordering::Relaxed) == OFF {
        rec.release_time.set(UNRECORDED_RELEASE);
        return;
    }
    let was_busy = rec.busy.replace(true);
    if let Some(ring) = rec.ring() {
        if begin_event(ring).is_some() {
            let time = clock::ticks();
            ring.timed(time);
            rec.release_time.set(time);
        } else {
            rec.release_time.set(UNRECORDED_RELEASE);
        }
    }
    rec.busy.set(was_busy);
}

/// `ThreadRecorder::release_time` of a release made while recording was
/// off: its event is not made (see [`stamp`]).
const UNRECORDED_RELEASE: u64 = u64::MAX;

/// Frees a block through `release` (true when it freed it) and, when
/// `heap` is given (the calling thread's, this free being an event),
/// records the free that began at `t0` with its time read before the
/// block was released ([`stamp_release`]); a failed free records nothing.
pub fn free_event(heap: Option<&Heap>, p: *mut u8, t0: u64, release: impl FnOnce() -> bool) {
    let Some(h) = heap else {
        release();
        return;
    };
    stamp_release(h);
    if release() {
        on_free(h, p, t0);
    } else {
        cancel_release(h);
    }
}

/// Forgets a stamp whose event will not be made (the free failed, the
/// thread ended).
fn cancel_release(heap: &Heap) {
    let time = heap.rec.release_time.replace(0);
    if time != 0 && time != UNRECORDED_RELEASE {
        let ring = heap.rec.ring.get();
        if !ring.is_null() {
            // SAFETY: rings are never unmapped.
            unsafe { (*ring).abandon_event() };
        }
    }
}

/// Records an allocation whose call began at tick `t0`.
pub fn on_alloc(heap: &Heap, p: *mut u8, size: usize, align: usize, t0: u64) {
    if p.is_null() {
        return;
    }
    emit(heap, Stack::Capture, t0, |stack, time, latency| {
        RawEvent::Alloc {
            time,
            address: p as u64,
            size: size as u64,
            align: align as u64,
            stack,
            latency,
        }
    });
}

/// Records a free whose call began at tick `t0`.
pub fn on_free(heap: &Heap, p: *mut u8, t0: u64) {
    emit(heap, Stack::No, t0, |_, time, latency| RawEvent::Free {
        time,
        address: p as u64,
        latency,
    });
}

/// Records a reallocation from `old` to `new` (`new` may equal `old`).
pub fn on_realloc(heap: &Heap, old: *mut u8, new: *mut u8, size: usize, t0: u64) {
    if new.is_null() {
        return;
    }
    emit(heap, Stack::Capture, t0, |stack, time, latency| {
        RawEvent::Realloc {
            time,
            old_address: old as u64,
            new_address: new as u64,
            new_size: size as u64,
            stack,
            latency,
        }
    });
}

/// Records a user marker on the calling thread's timeline.
pub fn mark(heap: &Heap, text: &[u8]) {
    let id = intern::intern_string(text);
    if id == 0 {
        return;
    }
    emit(heap, Stack::No, clock::ticks(), |_, time, _| {
        RawEvent::Marker { time, string: id }
    });
}

/// Records a memory error of the calling thread (an invalid pointer given
/// to `call`) with the offending call's stack, and writes everything
/// recorded so far to the trace: the process is about to abort. False when
/// nothing could be recorded (not recording, or no memory for a heap). A
/// thread whose first call to the allocator this is (a main thread that
/// frees a stack address before it allocates, a thread that only frees)
/// gets a heap to record with, as its first allocation would.
pub fn on_invalid_pointer(call: &str, p: *const u8, error: u8) -> bool {
    let recorded = record_error(error, p as u64, call.as_bytes(), Stack::Capture);
    if recorded {
        writer::flush();
    }
    recorded
}

/// Records a fault on a guarded allocation (`guard.rs`): error `error` at
/// `address`, with the faulting access's stack, then flushes the trace (the
/// process is usually about to end). Called from the fault handler of the
/// accessing thread, which may never have allocated (it reads a block
/// another thread made): it gets a heap to record with, as a race's side
/// does (the faulting access is the program's, not the allocator's, so
/// the thread holds none of the allocator's locks).
pub fn on_fault(error: u8, address: u64, frames: &[u64]) {
    if record_error(error, address, b"access", Stack::Given(frames)) {
        writer::flush();
    }
}

/// Records one side of a data race (`races.rs`): error `error` on the
/// watched word `address`, a `write` (the value changed) or an `access`,
/// with the access's stack. Called from the trap handler of the accessing
/// thread, which may never have allocated: it gets a heap to record with.
pub fn on_race(error: u8, address: u64, write: bool, frames: &[u64]) {
    // A value the access did not change may be a read or a write of the
    // same value (or a write overtaken by the other thread's): "access".
    let call: &[u8] = if write { b"write" } else { b"access" };
    record_error(error, address, call, Stack::Given(frames));
}

/// Records a memory error event of the calling thread, giving it a heap if
/// it has none yet; false when not recording (or there is no memory for
/// the heap).
fn record_error(error: u8, address: u64, call: &[u8], stack: Stack<'_>) -> bool {
    if !active() {
        return false;
    }
    let Some(heap) = crate::thread::own_heap() else {
        return false;
    };
    let call = intern::intern_string(call);
    emit(heap, stack, clock::ticks(), |stack, time, _| {
        RawEvent::Error {
            time,
            error,
            address,
            call,
            stack,
        }
    });
    true
}

/// Records a block a leak scan found unreachable (called by the scanning
/// thread, after the world runs again).
pub fn leak(heap: &Heap, leak: &crate::leak::Leak) {
    emit(heap, Stack::No, clock::ticks(), |_, time, _| {
        RawEvent::Leak {
            time,
            address: leak.start as u64,
            size: leak.size as u64,
            direct: leak.direct,
        }
    });
}

/// Records the end of a leak scan, after its [`leak`] events.
pub fn leak_scan_end(heap: &Heap, s: &crate::leak::LeakSummary) {
    emit(heap, Stack::No, clock::ticks(), |_, time, _| {
        RawEvent::LeakScan {
            time,
            stopped_at: s.stopped_at,
            status: s.status,
            direct: s.direct,
            indirect: s.indirect,
        }
    });
}

/// Does the process want a leak scan at exit (`leaks=scan`)? Not a forked
/// child unless children are followed: like recording, the scan is for the
/// process that was asked.
pub fn leak_scan_at_exit() -> bool {
    SETTINGS
        .lock()
        .is_some_and(|s| s.leak_scan && (s.children || !FORKED.load(Ordering::Relaxed)))
}

/// Records an access annotation of the calling thread.
pub fn access(heap: &Heap, address: u64, write: bool) {
    emit(heap, Stack::No, clock::ticks(), |_, time, _| {
        RawEvent::Access {
            time,
            address,
            write,
        }
    });
}

/// Stamps a release that a call of unknown length is about to make (a
/// device free): the time now, with the thread's ring holding the
/// watermark at or below it until [`unhold`]. 0 when not recording.
pub fn hold(heap: &Heap) -> u64 {
    if RECORDING.load(Ordering::Relaxed) == OFF {
        return 0;
    }
    let was_busy = heap.rec.busy.replace(true);
    let ticks = match heap.rec.ring() {
        Some(ring) => {
            let t = clock::ticks();
            ring.hold(t);
            t
        }
        None => 0,
    };
    heap.rec.busy.set(was_busy);
    ticks
}

/// Ends [`hold`].
pub fn unhold(heap: &Heap) {
    let r = heap.rec.ring.get();
    if !r.is_null() {
        // SAFETY: rings are never unmapped.
        unsafe { (*r).unhold() };
    }
}

/// Records a device-memory event of the calling thread (see `device.rs`),
/// with time `ticks` (0: now).
pub fn device(heap: &Heap, event: &crate::device::DeviceEvent<'_>, ticks: u64) {
    let api = intern::intern_string(event.api.as_bytes());
    let stack = if crate::device::op::carries_stack(event.op) {
        Stack::Capture
    } else {
        Stack::No
    };
    emit(heap, stack, 0, |stack, time, _| {
        RawEvent::Device {
            // A release's time was read before the memory was released
            // (the ring held the watermark for it meanwhile).
            time: if ticks != 0 { ticks.min(time) } else { time },
            op: event.op,
            memory: event.memory,
            device: event.device,
            api,
            address: event.address,
            size: event.size,
            stack,
            handle: event.handle,
        }
    });
}

/// The calling thread's heap is being given up (thread exit): closes its
/// ring so the writer drains it and writes the thread's end.
pub fn thread_exit(heap: &Heap) {
    // Nothing passes to the thread that adopts the heap: no pending time,
    // and not the busy mark, which the writer and control threads keep
    // for good (a writer ends at every detach, and the next thread to
    // adopt its heap would go unrecorded).
    cancel_release(heap);
    heap.rec.in_realloc.set(false);
    heap.rec.busy.set(false);
    // A new thread starts outside any scope, whatever the old one left
    // entered.
    heap.rec.scope.set([0, 0]);
    heap.rec.c_depth.set(0);
    let r = heap.rec.ring.replace(core::ptr::null_mut());
    if !r.is_null() {
        // SAFETY: rings are never unmapped.
        let ring = unsafe { &*r };
        ring.end_ticks.store(clock::ticks(), Ordering::Relaxed);
        ring.state.store(ring::CLOSED, Ordering::Release);
        ring::wake_writer();
    }
}

/// Marks the calling thread as the writer: nothing it does is recorded.
pub(crate) fn mark_current_thread_as_writer() {
    let heap = crate::thread::init_thread();
    if !heap.is_null() {
        // SAFETY: the thread's own heap, live.
        unsafe { (*heap).rec.busy.set(true) };
    }
}

/// Writes everything recorded so far to the trace and waits until it is on
/// disk.
pub fn flush() {
    writer::flush();
}

/// Ends the trace before `exec` replaces the program (the footer says so);
/// if the exec fails, the next event starts a new trace, unless the trace
/// was a client's (attached): that session is over.
pub fn finish_for_exec() {
    if attached() {
        disable();
    }
    writer::finish(trace::FOOTER_EXEC);
}

/// Ends the trace at process exit.
pub extern "C" fn finish_at_exit() {
    EXITING.store(true, Ordering::Release);
    crate::control::at_exit();
    writer::finish(trace::FOOTER_CLEAN_EXIT);
}

/// The process's exit status plus one, once `exit` or `_exit` has been
/// called with it (0: not known), for the footer.
static EXIT_STATUS: AtomicU64 = AtomicU64::new(0);
/// An `on_exit` handler registered before the C library's own (see
/// [`install_exit_handler`]) ends the trace instead of the destructor.
static EXIT_HANDLER: AtomicBool = AtomicBool::new(false);

/// Notes the status the process exits with (the `_exit` hook's, or
/// `exit`'s through the `on_exit` handler).
pub fn set_exit_status(status: i32) {
    EXIT_STATUS.store(u64::from(status as u32 & 0xff) + 1, Ordering::Release);
}

/// The exit status for the footer (see [`EXIT_STATUS`]).
pub(crate) fn exit_status() -> u64 {
    EXIT_STATUS.load(Ordering::Acquire)
}

/// Registers an `on_exit` handler that ends the trace with the status
/// `exit` was given. Called by the preloaded library's constructor, which
/// runs before the C library registers the dynamic linker's destructor
/// pass (`__libc_start_main`): handlers run in reverse order, so this one
/// runs last, after the program's exit handlers and every destructor, and
/// so the trace's end still sees what they free. Without it (memtally as
/// a Rust program's global allocator) the trace ends in memtally's
/// destructor, with the status [`note_exit_status_at_exit`] noted.
pub fn install_exit_handler() {
    extern "C" fn on_exit_handler(status: libc::c_int, _: *mut libc::c_void) {
        set_exit_status(status);
        end_at_exit();
    }
    // SAFETY: glibc's on_exit(3) with a handler that lives as long as the
    // process (this library is never unloaded once preloaded).
    if unsafe { on_exit(on_exit_handler, core::ptr::null_mut()) } == 0 {
        EXIT_HANDLER.store(true, Ordering::Release);
    }
}

/// When recording starts in a program without the preloaded library's
/// handler (memtally as a Rust program's global allocator): an `on_exit`
/// handler that only notes the status. Registered after the C library's
/// destructor pass was (recording starts in `main`, or later), it runs
/// before it, so memtally's destructor, which ends the trace, knows the
/// status.
pub(crate) fn note_exit_status_at_exit() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    extern "C" fn note(status: libc::c_int, _: *mut libc::c_void) {
        set_exit_status(status);
    }
    if EXIT_HANDLER.load(Ordering::Acquire) || REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: glibc's on_exit(3) with a handler in this image, which is
    // never unloaded.
    unsafe { on_exit(note, core::ptr::null_mut()) };
}

unsafe extern "C" {
    /// glibc's `on_exit(3)`: `f(status, arg)` runs at `exit`.
    fn on_exit(
        f: extern "C" fn(libc::c_int, *mut libc::c_void),
        arg: *mut libc::c_void,
    ) -> libc::c_int;
}

/// At exit, after the program's own exit handlers and destructors: the
/// leak scan when asked for, then the trace's end.
fn end_at_exit() {
    if leak_scan_at_exit() {
        crate::leak_check_report("at exit");
    }
    if crate::races::enabled() && !FORKED.load(Ordering::Relaxed) {
        crate::report::warn(format_args!(
            "races: {} simultaneous conflicting accesses recorded (memtally errors shows them; atomic accesses are told apart there)",
            crate::races::count()
        ));
    }
    finish_at_exit();
}

/// memtally's destructor: ends the trace unless the exit handler will.
extern "C" fn at_exit() {
    if !EXIT_HANDLER.load(Ordering::Acquire) {
        end_at_exit();
    }
}

#[used]
#[unsafe(link_section = ".fini_array")]
static FINISH_AT_EXIT: extern "C" fn() = at_exit;

/// In a forked child: recording continues into a new trace named for the
/// child when children are followed, else stops.
pub fn after_fork_child(current: *mut Heap) {
    writer::after_fork_child();
    crate::races::after_fork_child();
    FORKED.store(true, Ordering::Relaxed);
    // A client's recording is of the parent: the child does not go on
    // with it.
    let attached = ATTACHED.swap(false, Ordering::Relaxed);
    let follow = settings().children && !attached;
    crate::control::after_fork_child(settings().children);
    let mine = if current.is_null() || current == crate::thread::empty_heap() {
        core::ptr::null_mut()
    } else {
        // SAFETY: the forking thread's own heap.
        unsafe { (*current).rec.ring.get() }
    };
    Ring::for_each(|r| {
        r.discard();
        if core::ptr::eq(r, mine) {
            r.announced.store(0, Ordering::Relaxed);
        } else if r.state.load(Ordering::Relaxed) != ring::FREE {
            // Its thread does not exist in the child.
            r.state.store(ring::FREE, Ordering::Relaxed);
        }
    });
    // The child's trace starts a new epoch, which restarts this thread's
    // event deltas (see `emit_busy`).
    if !follow {
        disable();
    }
}

/// Decides what the processes this one starts inherit. Forked children
/// record only with `children=1`: otherwise `MEMTALLY` leaves the
/// environment. Programs this process itself executes go on recording
/// either way (the exec hooks hand the setting on, see [`exec_setting`]).
/// What is handed on is marked `descendant=1`, so that a descendant's trace
/// never replaces an existing file. Called by the preloaded library's
/// constructor (never from inside an allocation, where the environment
/// lock may be held).
pub fn hand_on_settings() {
    // SAFETY: getpid has no preconditions.
    INIT_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    if !active() && !crate::control::wanted() {
        return;
    }
    save_setting();
    // The environment is edited in place rather than with setenv/unsetenv,
    // which a program may define for itself (bash does, for its shell
    // variables: before bash's main its unsetenv removes nothing, and every
    // command the script ran used to record).
    let replacement = if settings().children {
        exec_setting().map(|s| s.as_ptr())
    } else {
        None
    };
    // SAFETY: the constructor runs before the program's main, on its only
    // thread, so nothing else reads or writes the environment meanwhile.
    unsafe { edit_environment(replacement) };
}

/// Removes every `MEMTALLY=` entry of `environ`, or points the first one at
/// `replacement` (a static `MEMTALLY=...` string) and removes the others.
///
/// # Safety
/// No other thread may use the environment meanwhile; `replacement`, if
/// given, must be a NUL-terminated string that lives forever.
unsafe fn edit_environment(replacement: Option<*const core::ffi::c_char>) {
    unsafe extern "C" {
        static mut environ: *mut *const core::ffi::c_char;
    }
    // SAFETY: reading the process's environment pointer (caller: no one
    // else uses it now).
    let env = unsafe { environ };
    if env.is_null() {
        return;
    }
    let mut replacement = replacement;
    let (mut read, mut write) = (0, 0);
    loop {
        // SAFETY: the array is null-terminated; `read` has not passed the
        // terminator.
        let entry = unsafe { *env.add(read) };
        if entry.is_null() {
            break;
        }
        read += 1;
        // SAFETY: environment entries are NUL-terminated strings.
        let is_ours = unsafe { core::ffi::CStr::from_ptr(entry) }
            .to_bytes()
            .starts_with(b"MEMTALLY=");
        let keep = match (is_ours, replacement.take()) {
            (false, r) => {
                replacement = r;
                Some(entry)
            }
            (true, Some(r)) => Some(r),
            (true, None) => None,
        };
        if let Some(e) = keep {
            // SAFETY: write <= read - 1, inside the array.
            unsafe { *env.add(write) = e };
            write += 1;
        }
    }
    // SAFETY: write <= read, the terminator's index.
    unsafe { *env.add(write) = core::ptr::null() };
}

/// The process that loaded the library (a `vfork` child has another pid
/// while it shares our memory).
static INIT_PID: AtomicI32 = AtomicI32::new(0);
/// `MEMTALLY=...,descendant=1` from the setting the process found,
/// NUL-terminated (empty when not saved), for the programs it starts.
static SAVED_SETTING: [AtomicU8; 1024] = [const { AtomicU8::new(0) }; 1024];

fn save_setting() {
    // SAFETY: getenv with a NUL-terminated name; the value is read before
    // anything can change the environment (the library's constructor).
    let value = unsafe { libc::getenv(c"MEMTALLY".as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    let value = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
    let name = b"MEMTALLY=";
    let mark: &[u8] = if settings().descendant {
        b""
    } else {
        b",descendant=1"
    };
    if name.len() + value.len() + mark.len() >= SAVED_SETTING.len() {
        return;
    }
    for (slot, &b) in SAVED_SETTING
        .iter()
        .zip(name.iter().chain(value).chain(mark))
    {
        slot.store(b, Ordering::Relaxed);
    }
}

/// Set in a forked child that records: its trace, like any descendant's,
/// never replaces an existing file.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Is this process a descendant of the recorded one (forked, or executed
/// with a handed-on setting)?
pub fn is_descendant() -> bool {
    settings().descendant || FORKED.load(Ordering::Relaxed)
}

/// The `MEMTALLY=...` entry to add to the environment of a program this
/// process executes, when this process records and is the one that loaded
/// the library (not a `vfork` child, not an unfollowed fork child, which
/// stopped recording).
pub fn exec_setting() -> Option<&'static core::ffi::CStr> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if !(active() || crate::control::wanted()) || INIT_PID.load(Ordering::Relaxed) != pid {
        return None;
    }
    if SAVED_SETTING[0].load(Ordering::Relaxed) == 0 {
        return None;
    }
    // SAFETY: AtomicU8 has u8's layout; the saved bytes end with a NUL (the
    // array is longer than the setting) and are not written again.
    let bytes = unsafe {
        core::slice::from_raw_parts(SAVED_SETTING.as_ptr().cast::<u8>(), SAVED_SETTING.len())
    };
    core::ffi::CStr::from_bytes_until_nul(bytes).ok()
}
