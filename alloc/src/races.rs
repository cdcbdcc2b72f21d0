//! The race detector: DataCollider and KCSAN's idea on a hardware
//! watchpoint. Opt-in (`MEMTALLY=...,races=on`, `memtally run --races`),
//! and only while recording: reports go into the trace, where symbolising
//! tells atomic accesses apart.
//!
//! Every `race_period` (50 ms) the trace writer thread picks a random
//! 8-byte word of a candidate block (the last blocks taken on the sampling
//! path, or a block the program named with `memtally_alloc::race_watch`)
//! and, for at most a window (10 ms), watches it: it opens one
//! `perf_event_open` breakpoint (`HW_BREAKPOINT_RW`, 8 bytes, `sigtrap`, so
//! that an access traps synchronously in the accessing thread) on each
//! thread of the process, listed from `/proc/self/task` (a random 64 of
//! them when there are more, and no more than a quarter of the descriptors
//! the process may still open), disabled; reads the word's value; enables
//! them all; and closes them when the window ends. About 20 µs an open
//! here, 1-2 µs an enable: 0.25-0.4 ms a window for eight threads, which
//! the budget below pays for. Between windows the process has no event at
//! all. An earlier design opened one event inherited by every thread
//! created after: it cost each new thread a copy (10-15 µs a thread
//! started), and every thread's context switches a perf context, 5% of
//! the workload harness; and it could not see the threads that existed
//! before it.
//!
//! The first thread to touch the word (A) traps after its access, reads the
//! word, and stalls `race_stall` (80 µs, KCSAN's delay) with the watch still
//! armed. A second thread (B) touching the word during the stall traps too:
//! the two accesses overlapped in real time, which proves that nothing
//! ordered them, with no happens-before reasoning (which cannot work for
//! Rust, whose locks are futexes the allocator never sees). A race needs a
//! write, inferred from the value: A wrote if the word changed since the
//! watch was armed, B if it changed during A's stall; when neither changed
//! it, nothing is reported (two reads, or writes of the same value). A side
//! whose value did not change is recorded as an `access`: x86 watchpoints
//! do not say read or write, and two writes landing together leave one
//! value. Reading the trace, the profiler decodes each side's instruction
//! from the module's file and says `read` or `write` (profiler's
//! `access.rs`): the events are enabled one by one, so a thread not yet
//! watched may still change the word in those few microseconds, and the
//! value alone would then call a read a write (the profiler sets a pair
//! of reads aside). Each side records itself (error events `RACE_SECOND`
//! from B, then `RACE_FIRST` from A, with the stack of the access), pairs
//! already reported (by the two code addresses, in either order) are not
//! reported again, and the watch is taken off after A's stall whatever
//! happened (A's handler disables each of the window's events, one
//! `ioctl` each): one stall per window at most.
//!
//! A trap budget (`race_budget`, 1% of one core by default) sets the pace:
//! the time spent in trap handlers during a window (A's stall, B's report),
//! and the writer's CPU time opening and closing the window's events, is
//! charged to it, and the next window waits at least `race_period` and
//! long enough that the windows' trap time stays within the budget of the
//! time elapsed (a window that trapped for 80 µs under a 1% budget is
//! followed by none for 8 ms; with a long `race_stall`, or `race_period`
//! short, the budget is what limits the rate).
//!
//! Misses: races that do not overlap within the stall; words not watched
//! (a sample); stack and global memory; threads started during a window
//! (the next one sees them), and beyond 64 threads, those not drawn for a
//! window; programs that use the debug registers themselves (debuggers,
//! rr). Where `perf_event_open` is refused (seccomp, `perf_event_paranoid`
//! 3), the first window says so once and everything else runs on.

use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering,
};

/// Settings (`race_period`, `race_window` in ms, `race_stall` in µs, the
/// budget in parts per million of one core).
static PERIOD_MS: AtomicU64 = AtomicU64::new(50);
static BUDGET_PPM: AtomicU64 = AtomicU64::new(10_000);
/// Microseconds spent in trap handlers, in total, and at the start of the
/// current window; when the window started (µs), windows and traps so far.
static TRAP_US: AtomicU64 = AtomicU64::new(0);
static WINDOW_TRAP_US: AtomicU64 = AtomicU64::new(0);
static WINDOW_START_US: AtomicU64 = AtomicU64::new(0);
static WINDOWS: AtomicU64 = AtomicU64::new(0);
static TRAPS: AtomicU64 = AtomicU64::new(0);
static WINDOW_MS: AtomicU64 = AtomicU64::new(10);
static STALL_US: AtomicU64 = AtomicU64::new(80);

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Most threads watched in one window: a random subset of more.
const MAX_WATCHED: usize = 64;
/// The window's events, one per watched thread, the first `WATCHED` open.
/// Only the writer opens and closes them; a trap handler may disable them.
static WATCH_FDS: [AtomicI32; MAX_WATCHED] = [const { AtomicI32::new(-1) }; MAX_WATCHED];
static WATCHED: AtomicUsize = AtomicUsize::new(0);
/// Microseconds of CPU the writer spent opening, disabling and closing the
/// current window's events (charged to the budget with its traps; CPU,
/// not elapsed time: an open or close sometimes waits milliseconds in the
/// kernel without using the CPU).
static WINDOW_SETUP_US: AtomicU64 = AtomicU64::new(0);
/// The watched address (0: none).
static TARGET: AtomicU64 = AtomicU64::new(0);
/// A word nobody reads or writes, for the warm-up to read.
static IDLE: AtomicU64 = AtomicU64::new(0);
/// When the current window ends, and when the next may start (ms).
static WINDOW_END: AtomicU64 = AtomicU64::new(0);
static NEXT_WINDOW: AtomicU64 = AtomicU64::new(0);
/// The word's value when the watch was armed.
static ARMED_VALUE: AtomicU64 = AtomicU64::new(0);
/// A block the program asked to watch (`race_watch`), and its length.
static HINT: AtomicU64 = AtomicU64::new(0);
static HINT_LEN: AtomicU64 = AtomicU64::new(0);
/// Candidates: the last blocks taken on the sampling path.
const CANDIDATES: usize = 64;
static CANDIDATE_ADDR: [AtomicU64; CANDIDATES] = [const { AtomicU64::new(0) }; CANDIDATES];
static CANDIDATE_LEN: [AtomicU64; CANDIDATES] = [const { AtomicU64::new(0) }; CANDIDATES];
static CANDIDATE_NEXT: AtomicUsize = AtomicUsize::new(0);
static RNG: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

/// The stalled thread (A), 0 when none.
static STALLED: AtomicI32 = AtomicI32::new(0);
/// A's access: did it write, and the code address after it.
static A_WROTE: AtomicBool = AtomicBool::new(false);
static A_VALUE: AtomicU64 = AtomicU64::new(0);
static A_PC: AtomicU64 = AtomicU64::new(0);
/// A has published `A_VALUE`, `A_WROTE` and `A_PC` for this window.
static A_READY: AtomicBool = AtomicBool::new(false);
/// B during A's stall: started, finished.
static B_STARTED: AtomicBool = AtomicBool::new(false);
static B_DONE: AtomicBool = AtomicBool::new(false);
/// Who settled the window's pairing first: B, committing to record its
/// side (A then waits for it, and records its own), or A, leaving its
/// stall without B's side (B then records nothing). Either way a race is
/// recorded with both sides or not at all; a B that gave up waiting for
/// A's side settles nothing, and A records nothing either.
static PAIRING: AtomicU8 = AtomicU8::new(OPEN);
const OPEN: u8 = 0;
const B_COMMITTED: u8 = 1;
const A_LEFT: u8 = 2;
static B_PC: AtomicU64 = AtomicU64::new(0);
/// Pairs of code addresses reported already.
static REPORTED_PAIRS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// Races recorded.
static RACES: AtomicU64 = AtomicU64::new(0);
/// The program's SIGTRAP action before ours.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());

const PERF_TYPE_BREAKPOINT: u32 = 5;
const HW_BREAKPOINT_RW: u32 = 3;
const TRAP_PERF: i32 = 6;
/// `_IO('$', 0)` and `_IO('$', 1)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
const IOC_DISABLE: libc::c_ulong = 0x2401;
/// Marks our events' signals (`sig_data`).
const SIG_DATA: u64 = 0x6d74_7261_6365;
const FRAMES: usize = 32;

/// `struct perf_event_attr` as of Linux 5.13 (`PERF_ATTR_SIZE_VER7`).
#[repr(C)]
#[derive(Clone, Copy)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    bp_addr: u64,
    bp_len: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
}

const _: () = assert!(core::mem::size_of::<PerfEventAttr>() == 128);

/// The flag bits we set: disabled (until `arm` enables it), exclude_kernel,
/// exclude_hv, remove_on_exec, sigtrap.
const FLAGS: u64 = 1 | (1 << 5) | (1 << 6) | (1 << 36) | (1 << 37);

/// The watchpoint's attributes: watching `addr`, opened disabled.
fn attr(addr: u64) -> PerfEventAttr {
    PerfEventAttr {
        type_: PERF_TYPE_BREAKPOINT,
        size: 128,
        config: 0,
        sample_period: 1,
        sample_type: 0,
        read_format: 0,
        flags: FLAGS,
        wakeup_events: 0,
        bp_type: HW_BREAKPOINT_RW,
        bp_addr: addr,
        bp_len: 8,
        branch_sample_type: 0,
        sample_regs_user: 0,
        sample_stack_user: 0,
        clockid: 0,
        sample_regs_intr: 0,
        aux_watermark: 0,
        sample_max_stack: 0,
        reserved_2: 0,
        aux_sample_size: 0,
        reserved_3: 0,
        sig_data: SIG_DATA,
    }
}

/// Is race detection on?
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Races recorded so far.
pub fn count() -> u64 {
    RACES.load(Ordering::Relaxed)
}

/// What the detector has done: windows opened, traps taken, the
/// microseconds spent in its trap handlers (stalls included), and races
/// recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaceStats {
    /// Watch windows opened.
    pub windows: u64,
    /// Traps on watched words.
    pub traps: u64,
    /// Time in the trap handlers, in microseconds.
    pub trap_us: u64,
    /// Simultaneous conflicting accesses recorded (as `count`).
    pub races: u64,
}

/// For tests: the next first access waits this long (µs) before it
/// publishes its side, and the next second access before it commits to
/// recording its own, once each (as a thread held up in its own system
/// calls on a loaded machine would, past the other's wait for it).
static HOLD_FIRST_US: AtomicU64 = AtomicU64::new(0);
static HOLD_SECOND_US: AtomicU64 = AtomicU64::new(0);

/// For tests: every window waits this long (µs) between reading the
/// word's value and enabling its events, as a writer thread descheduled
/// there on a loaded machine would: a thread may then change the word
/// before any watch is on.
static HOLD_ARMING_US: AtomicU64 = AtomicU64::new(0);

/// See [`HOLD_ARMING_US`].
pub fn hold_arming(us: u64) {
    HOLD_ARMING_US.store(us, Ordering::Relaxed);
}

/// See [`HOLD_FIRST_US`].
pub fn hold_next(first_us: u64, second_us: u64) {
    HOLD_FIRST_US.store(first_us, Ordering::Relaxed);
    HOLD_SECOND_US.store(second_us, Ordering::Relaxed);
}

/// Spins for the hold in `hold` (µs), if any, and clears it.
fn take_hold(hold: &AtomicU64) {
    if hold.load(Ordering::Relaxed) != 0 {
        spin_us(hold.swap(0, Ordering::Relaxed));
    }
}

/// Spins `us` microseconds (a test's hold: no sleep, as a busy thread).
fn spin_us(us: u64) {
    let t = crate::os::now_us();
    while crate::os::now_us() < t + us {
        core::hint::spin_loop();
    }
}

/// Runs `f` on the writer thread and charges the CPU time it took to the
/// current window (`WINDOW_SETUP_US`).
fn charged(f: impl FnOnce()) {
    let t = crate::os::thread_cpu_us();
    f();
    WINDOW_SETUP_US.fetch_add(crate::os::thread_cpu_us() - t, Ordering::Relaxed);
}

/// The detector's counters.
pub fn stats() -> RaceStats {
    RaceStats {
        windows: WINDOWS.load(Ordering::Relaxed),
        traps: TRAPS.load(Ordering::Relaxed),
        trap_us: TRAP_US.load(Ordering::Relaxed),
        races: count(),
    }
}

/// Installs the trap handler and turns the detector on; `period_ms`,
/// `window_ms`, `stall_us` and the budget (`budget_ppm` of one core) as the
/// settings say. Whether the kernel opens watchpoints is learnt at the
/// first window, on the writer thread (see `arm`): the first open in a
/// process took up to 23 ms here, which the program's own start must not
/// wait for.
pub fn configure(period_ms: u64, window_ms: u64, stall_us: u64, budget_ppm: u64) {
    if enabled() {
        return;
    }
    BUDGET_PPM.store(budget_ppm.clamp(1, 1_000_000), Ordering::Relaxed);
    PERIOD_MS.store(period_ms.max(1), Ordering::Relaxed);
    WINDOW_MS.store(window_ms.max(1), Ordering::Relaxed);
    STALL_US.store(stall_us, Ordering::Relaxed);
    if !install_handler() {
        crate::report::warn(format_args!(
            "races: cannot install the SIGTRAP handler; race detection is off"
        ));
        return;
    }
    warm_up();
    RNG.store(crate::record::clock::ticks() | 1, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Release);
}

/// Opens the watchpoint `a` on thread `tid` (0: the caller); the
/// descriptor, or -1 with errno set.
fn open_event(a: &PerfEventAttr, tid: i32) -> i32 {
    // SAFETY: perf_event_open reads `a` (128 bytes, the size it says).
    unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            a as *const PerfEventAttr,
            tid,
            -1,
            -1,
            8, // PERF_FLAG_FD_CLOEXEC
        ) as i32
    }
}

/// Names a block to watch next (and in later windows, until another is
/// named): for a test, or a program that suspects a structure.
pub fn watch(p: *const u8, len: usize) {
    HINT_LEN.store(len as u64, Ordering::Relaxed);
    HINT.store(p as u64, Ordering::Release);
}

/// Offers a block taken on the sampling path as a watch candidate.
#[inline]
pub fn offer(p: *const u8, len: usize) {
    if !enabled() || len < 8 {
        return;
    }
    let i = CANDIDATE_NEXT.fetch_add(1, Ordering::Relaxed) % CANDIDATES;
    CANDIDATE_LEN[i].store(len as u64, Ordering::Relaxed);
    CANDIDATE_ADDR[i].store(p as u64, Ordering::Relaxed);
}

fn next_random() -> u64 {
    let mut x = RNG.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    RNG.store(x, Ordering::Relaxed);
    x
}

/// Watches `word` for a window: sets the target, opens a watchpoint on it,
/// disabled, in each thread of the process but the writer (a random
/// `MAX_WATCHED` of them when there are more, fewer when the process is
/// near its descriptor limit), reads the word's value, then enables them
/// all. A thread that exited meanwhile is skipped; a kernel that refuses
/// every thread turns the detector off, with one line (so the first window
/// is where a refusal is learnt).
///
/// Why opened disabled: an open takes about 20 µs, an enable 1-2. A
/// thread whose event is not on yet can change the word unseen, and a
/// first access trapping after that would take the change for its own
/// write, and two reads for a race. With the value read after the opens,
/// only the enables (a few µs for the window) leave that room, not the
/// opens (a quarter of a millisecond for eight threads).
fn arm(word: u64) {
    // SeqCst: pairs with `disarm` in a trap handler (see below).
    TARGET.store(word, Ordering::SeqCst);
    let me = tid();
    let cap = descriptor_room().min(MAX_WATCHED);
    let mut tids = [0i32; MAX_WATCHED];
    let mut seen = 0usize;
    let listed = crate::os::for_each_thread(|t| {
        if t == me {
            return;
        }
        // Reservoir sampling: each thread as likely to be drawn.
        let slot = if seen < cap {
            seen
        } else {
            (next_random() % (seen as u64 + 1)) as usize
        };
        if slot < cap {
            tids[slot] = t;
        }
        seen += 1;
    });
    if !listed {
        // No /proc: no thread to watch, now or later.
        TARGET.store(0, Ordering::SeqCst);
        ENABLED.store(false, Ordering::Release);
        crate::report::warn(format_args!(
            "races: /proc/self/task cannot be read, so no thread can be watched; race detection is off, the rest runs on"
        ));
        return;
    }
    let a = attr(word);
    let (mut refused, mut refusal) = (0, 0);
    let drawn = &tids[..seen.min(cap)];
    for &t in drawn {
        let fd = open_event(&a, t);
        if fd < 0 {
            // A thread that exited meanwhile, one whose debug registers
            // are taken (a debugger), no memory or descriptors now: the
            // next window tries again. The rest say the kernel will not.
            let e = crate::os::errno();
            if matches!(
                e,
                libc::EACCES
                    | libc::EPERM
                    | libc::ENOSYS
                    | libc::EINVAL
                    | libc::ENOENT
                    | libc::ENODEV
                    | libc::EOPNOTSUPP
            ) {
                refused += 1;
                refusal = e;
            }
            continue;
        }
        let i = WATCHED.load(Ordering::Relaxed);
        WATCH_FDS[i].store(fd, Ordering::Relaxed);
        // Counted before any is enabled, so a trap's `disarm` sees them
        // all.
        WATCHED.store(i + 1, Ordering::SeqCst);
    }
    if refused > 0 && refused == drawn.len() {
        // Seccomp, `perf_event_paranoid` 3, no breakpoint support: said
        // once, and no window again.
        TARGET.store(0, Ordering::SeqCst);
        ENABLED.store(false, Ordering::Release);
        crate::report::warn(format_args!(
            "races: perf_event_open refused a hardware watchpoint (errno {refusal}); race detection is off, the rest runs on"
        ));
        return;
    }
    // No event is on yet, so no trap can read this before it is stored.
    let Some(value) = crate::signals::read_word(word) else {
        // The block went away meanwhile: the window ends with nothing on.
        TARGET.store(0, Ordering::SeqCst);
        return;
    };
    ARMED_VALUE.store(value, Ordering::SeqCst);
    spin_us(HOLD_ARMING_US.load(Ordering::Relaxed));
    for fd in &WATCH_FDS[..WATCHED.load(Ordering::Relaxed)] {
        let fd = fd.load(Ordering::Relaxed);
        enable(fd);
        // The enable, then the target's load (SeqCst), against a
        // handler's store of the target, then its disables: either the
        // handler disables this event after it was enabled, or this sees
        // the window ended and disables it (and those after it stay off).
        if TARGET.load(Ordering::SeqCst) != word {
            disable(fd);
            break;
        }
    }
}

/// What a window may hold when the room left cannot be learnt.
const FEW_DESCRIPTORS: usize = 4;

/// How many descriptors a window may hold: a quarter of those the process
/// may still open (`RLIMIT_NOFILE` less those open now), so that a program
/// near its limit does not find one missing because a window holds it.
fn descriptor_room() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return FEW_DESCRIPTORS;
    }
    let mut open = 0u64;
    let listed = crate::os::for_each_entry(c"/proc/self/fd", |_, name| {
        open += u64::from(crate::os::parse_decimal(name).is_some());
        true
    });
    if !listed {
        return FEW_DESCRIPTORS;
    }
    usize::try_from(limit.rlim_cur.saturating_sub(open) / 4).unwrap_or(usize::MAX)
}

/// Ends the watch: no target, every event of the window disabled. From the
/// writer at the window's end, or a trap handler after its stall.
fn disarm() {
    TARGET.store(0, Ordering::SeqCst);
    for fd in &WATCH_FDS[..WATCHED.load(Ordering::SeqCst)] {
        disable(fd.load(Ordering::Relaxed));
    }
}

fn enable(fd: i32) {
    // SAFETY: one of the window's descriptors, open (the writer's own).
    unsafe { libc::ioctl(fd, IOC_ENABLE, 0) };
}

fn disable(fd: i32) {
    // SAFETY: one of the window's descriptors, open until `close_events`,
    // which runs only when no handler can be here (see `tick`).
    unsafe { libc::ioctl(fd, IOC_DISABLE, 0) };
}

/// Closes the window's events (the writer, once no trap handler is in its
/// stall).
fn close_events() {
    let n = WATCHED.swap(0, Ordering::SeqCst);
    for fd in &WATCH_FDS[..n] {
        let fd = fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: the window's descriptor, ours, closed once.
            unsafe { libc::close(fd) };
        }
    }
}

/// In a forked child: the window's descriptors are the parent's events.
/// Closing the child's copies leaves them to the parent (disabling them
/// would not); the child's own windows start afresh.
pub fn after_fork_child() {
    close_events();
    TARGET.store(0, Ordering::SeqCst);
    STALLED.store(0, Ordering::Relaxed);
    WINDOW_START_US.store(0, Ordering::Relaxed);
    NEXT_WINDOW.store(0, Ordering::Relaxed);
}

/// Called by the trace writer thread every round: ends a window that is
/// over, or starts one when it is due.
pub fn tick() {
    if !enabled() {
        return;
    }
    let now = crate::os::now_ms();
    if WINDOW_START_US.load(Ordering::Relaxed) != 0 {
        // A window is open, or ended by a trap since the last tick.
        if TARGET.load(Ordering::Acquire) != 0 {
            if now < WINDOW_END.load(Ordering::Relaxed) || STALLED.load(Ordering::Acquire) != 0 {
                return;
            }
            charged(disarm);
        }
        // A stall still on (one that took the watch off itself, or a trap
        // that passed its target check before the disarm above and
        // claimed the stall since) is charged to this window when it
        // ends: its handler counts its time before releasing the stall.
        // A trap claiming the stall after this load sees no target and
        // gives it up (both sides store, then load, in one SeqCst order),
        // so no handler uses the events `end_window` closes.
        if STALLED.load(Ordering::SeqCst) != 0 {
            return;
        }
        end_window(now);
        return;
    }
    if now < NEXT_WINDOW.load(Ordering::Relaxed) {
        return;
    }
    let (addr, len) = match HINT.load(Ordering::Acquire) {
        0 => {
            let i = (next_random() % CANDIDATES as u64) as usize;
            (
                CANDIDATE_ADDR[i].load(Ordering::Relaxed),
                CANDIDATE_LEN[i].load(Ordering::Relaxed),
            )
        }
        h => (h, HINT_LEN.load(Ordering::Relaxed)),
    };
    if addr == 0 || len < 8 {
        return;
    }
    let words = len / 8;
    let word = addr.div_ceil(8) * 8 + (next_random() % words) * 8;
    if word + 8 > addr + len {
        return;
    }
    // A word that cannot be read now is not watched (`arm` reads the
    // value it compares with once the events are open).
    if crate::signals::read_word(word).is_none() {
        return;
    }
    // A fresh window: no first access yet, no second.
    A_READY.store(false, Ordering::Relaxed);
    B_STARTED.store(false, Ordering::Relaxed);
    B_DONE.store(false, Ordering::Relaxed);
    PAIRING.store(OPEN, Ordering::Relaxed);
    STALLED.store(0, Ordering::Release);
    WINDOW_END.store(now + WINDOW_MS.load(Ordering::Relaxed), Ordering::Relaxed);
    WINDOW_TRAP_US.store(TRAP_US.load(Ordering::Relaxed), Ordering::Relaxed);
    WINDOW_START_US.store(crate::os::now_us().max(1), Ordering::Relaxed);
    WINDOWS.fetch_add(1, Ordering::Relaxed);
    WINDOW_SETUP_US.store(0, Ordering::Relaxed);
    charged(|| arm(word));
}

/// Schedules the next window after the one that started at
/// `WINDOW_START_US`, whose events it closes: `race_period` after it at
/// the soonest, and late enough that its cost (trap time, and the writer's
/// CPU time opening, disabling and closing its events) is within the budget of
/// the time since it started.
fn end_window(now_ms: u64) {
    charged(close_events);
    let setup_us = WINDOW_SETUP_US.load(Ordering::Relaxed);
    let start_us = WINDOW_START_US.swap(0, Ordering::Relaxed);
    let cost_us = TRAP_US
        .load(Ordering::Relaxed)
        .saturating_sub(WINDOW_TRAP_US.load(Ordering::Relaxed))
        + setup_us;
    let budget_ppm = BUDGET_PPM.load(Ordering::Relaxed);
    // cost / (time to the next window) <= budget.
    let paid_until_ms = (start_us + cost_us.saturating_mul(1_000_000) / budget_ppm) / 1000;
    let next = (now_ms + PERIOD_MS.load(Ordering::Relaxed)).max(paid_until_ms);
    NEXT_WINDOW.store(next, Ordering::Relaxed);
}

fn tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Calls every C library function the trap handler calls once, so that
/// lazy binding does not run on a small alternate signal stack.
fn warm_up() {
    crate::signals::read_word(IDLE.as_ptr() as u64);
    tid();
    crate::os::now_us();
}

fn install_handler() -> bool {
    crate::signals::install(libc::SIGTRAP, on_trap, 0, &PREVIOUS)
}

/// The `SIGTRAP` handler.
extern "C" fn on_trap(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    if code != TRAP_PERF {
        return crate::signals::chain(&PREVIOUS, sig, info, ctx, true);
    }
    let target = TARGET.load(Ordering::Acquire);
    if target == 0 || addr != target {
        // A trap of ours after its window ended (a thread that touched the
        // word as it was disarmed), or a program's own watchpoint on
        // another word.
        return;
    }
    let entered = crate::os::now_us();
    TRAPS.fetch_add(1, Ordering::Relaxed);
    let me = tid();
    if STALLED
        .compare_exchange(0, me, Ordering::SeqCst, Ordering::Acquire)
        .is_ok()
    {
        if TARGET.load(Ordering::SeqCst) != target {
            // The writer ended the window meanwhile (see `tick`).
            STALLED.store(0, Ordering::Release);
            return;
        }
        first_access(target, ctx);
        // The stall's time is counted before the stall is released: the
        // writer ends the window once it sees no stall, and charges the
        // window what `TRAP_US` says then. Counted after, a stall that
        // ended its window would be charged to no window and escape the
        // budget.
        TRAP_US.fetch_add(
            crate::os::now_us().saturating_sub(entered),
            Ordering::Relaxed,
        );
        STALLED.store(0, Ordering::Release);
    } else {
        if STALLED.load(Ordering::Acquire) != me {
            second_access(target, ctx);
        }
        TRAP_US.fetch_add(
            crate::os::now_us().saturating_sub(entered),
            Ordering::Relaxed,
        );
    }
}

/// Thread A: record what it did, stall with the watch armed, and if
/// another thread touched the word meanwhile, record the race.
fn first_access(target: u64, ctx: *mut libc::c_void) {
    // Publish what B compares with first; the stack can wait.
    let value = crate::signals::read_word(target).unwrap_or(0);
    let wrote = value != ARMED_VALUE.load(Ordering::Acquire);
    A_VALUE.store(value, Ordering::Relaxed);
    A_WROTE.store(wrote, Ordering::Relaxed);
    A_PC.store(access_pc(ctx), Ordering::Relaxed);
    take_hold(&HOLD_FIRST_US);
    A_READY.store(true, Ordering::Release);
    let mut frames = [0u64; FRAMES];
    let n = trap_stack(ctx, &mut frames);
    let start = crate::os::now_us();
    let until = start + STALL_US.load(Ordering::Relaxed);
    loop {
        let now = crate::os::now_us();
        // A B that started is waited for (its report must not be left
        // without ours), though never more than 10 ms.
        if B_DONE.load(Ordering::Acquire)
            || (!B_STARTED.load(Ordering::Acquire) && now >= until)
            || now >= start + 10_000
        {
            break;
        }
        core::hint::spin_loop();
    }
    // A B that has not finished either never came, or is held up: it
    // records its side only if it commits before A leaves (`PAIRING`). One
    // that committed has only its event to write: it is waited for.
    if !B_DONE.load(Ordering::Acquire)
        && PAIRING
            .compare_exchange(OPEN, A_LEFT, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        let committed = crate::os::now_us();
        while !B_DONE.load(Ordering::Acquire) && crate::os::now_us() < committed + 100_000 {
            core::hint::spin_loop();
        }
    }
    // One stall per window: the watch comes off now.
    disarm();
    // Only a race whose other side B recorded (B commits to it when either
    // access wrote and the pair is new): a B that waited in vain for A's
    // side (A held up past B's wait, in a system call of its own, on a
    // loaded machine) finishes without one, and a report of A's side alone
    // would name one function of the two.
    if B_DONE.load(Ordering::Acquire) && PAIRING.load(Ordering::Acquire) == B_COMMITTED {
        let pair = pair_key(frames[0], B_PC.load(Ordering::Relaxed));
        if remember_pair(pair) {
            RACES.fetch_add(1, Ordering::Relaxed);
            crate::record::on_race(crate::trace::error::RACE_FIRST, target, wrote, &frames[..n]);
        }
    }
}

/// Thread B, during A's stall: the accesses overlapped.
fn second_access(target: u64, ctx: *mut libc::c_void) {
    if B_STARTED.swap(true, Ordering::AcqRel) {
        return; // one second access per window
    }
    // Wait (briefly) for A to publish its side.
    let start = crate::os::now_us();
    while !A_READY.load(Ordering::Acquire) {
        if crate::os::now_us() > start + 1000 {
            B_DONE.store(true, Ordering::Release);
            return;
        }
        core::hint::spin_loop();
    }
    let value = crate::signals::read_word(target).unwrap_or(0);
    let wrote = value != A_VALUE.load(Ordering::Relaxed);
    let mut frames = [0u64; FRAMES];
    let n = trap_stack(ctx, &mut frames);
    B_PC.store(frames[0], Ordering::Relaxed);
    let pair = pair_key(A_PC.load(Ordering::Acquire), frames[0]);
    take_hold(&HOLD_SECOND_US);
    // Recorded only if A is still there to record its side (see
    // `PAIRING`): a side alone would name one function of the two.
    if (wrote || A_WROTE.load(Ordering::Relaxed))
        && !already_reported(pair)
        && PAIRING
            .compare_exchange(OPEN, B_COMMITTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        crate::record::on_race(
            crate::trace::error::RACE_SECOND,
            target,
            wrote,
            &frames[..n],
        );
    }
    B_DONE.store(true, Ordering::Release);
}

/// A pair of accesses by their code addresses, in either order: the same
/// two trap in either order from one window to the next, and are one race.
fn pair_key(a: u64, b: u64) -> u64 {
    a.min(b).rotate_left(17) ^ a.max(b)
}

fn already_reported(pair: u64) -> bool {
    REPORTED_PAIRS
        .iter()
        .any(|p| p.load(Ordering::Relaxed) == pair)
}

/// Remembers a reported pair; false when it was reported before.
fn remember_pair(pair: u64) -> bool {
    if already_reported(pair) {
        return false;
    }
    let i = (pair as usize) % REPORTED_PAIRS.len();
    REPORTED_PAIRS[i].store(pair, Ordering::Relaxed);
    true
}

/// The accessing instruction's address: the trap comes after it, so one
/// byte before the next instruction (inside the access, for symbolising).
fn access_pc(ctx: *mut libc::c_void) -> u64 {
    crate::signals::pc(ctx).saturating_sub(1)
}

/// The trapping thread's stack, innermost the access.
fn trap_stack(ctx: *mut libc::c_void, out: &mut [u64; FRAMES]) -> usize {
    crate::signals::stack_of(ctx, access_pc(ctx), &crate::signals::RULES, out)
}
