//! The replay worker: runs a replay program (`memtally replay --against`)
//! with this process's global allocator, one thread per recorded thread,
//! in the recorded global order (a shared counter: each thread waits for
//! its step's turn), and prints how long the replay took. One worker binary
//! per allocator, so that each allocator's peak RSS is its own.
//!
//! Each block allocated is touched once per 4 KiB page (and its first
//! byte), as a program writing its data would, so that RSS reflects it.
//! The worker also prints its RSS before the replay (the program loaded),
//! so that the RSS the replay added can be told from the harness's, and
//! the time spent inside the allocator's calls and a new block's first
//! writes, so that the allocator's cost can be told from the harness's
//! turn-taking (which dominates the wall time of a multi-threaded trace on
//! a small machine).

use memtally_profiler::replay::program::{self, Step};
use std::alloc::{Layout, alloc, dealloc, realloc};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A slot: the live block's pointer, size and alignment.
#[derive(Default)]
struct Slot {
    ptr: AtomicUsize,
    size: AtomicUsize,
    align: AtomicUsize,
}

/// A clock for the time inside allocator calls, in ticks: the CPU's
/// time-stamp counter on x86_64 (a few ns a read; `Instant` costs about 20
/// on this project's VMs, and two reads per call would be more than a fast
/// allocator's whole call), converted to ns by the replay's wall time.
#[inline(always)]
fn tick() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions and no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// The ticks an empty timed interval takes (the least of many): what each
/// measured call's interval holds besides the call.
fn empty_interval() -> u64 {
    (0..1000)
        .map(|_| {
            let t0 = tick();
            std::hint::black_box(());
            tick().saturating_sub(t0)
        })
        .min()
        .unwrap_or(0)
}

/// One thread's time inside allocator calls (and new blocks' first
/// writes).
#[derive(Default)]
struct Inside {
    ticks: u64,
    calls: u64,
}

/// Runs `call` (an allocator call), counting the ticks it took in `inside`.
#[inline(always)]
fn timed<T>(inside: &mut Inside, call: impl FnOnce() -> T) -> T {
    let t0 = tick();
    let r = std::hint::black_box(call());
    inside.ticks += tick().saturating_sub(t0);
    inside.calls += 1;
    r
}

fn touch(p: *mut u8, size: usize) {
    let mut k = 0;
    while k < size {
        // SAFETY: `p` points to `size` bytes just allocated; k < size.
        unsafe { p.add(k).write_volatile(1) };
        k += 4096;
    }
}

fn layout(size: u64, align: u64) -> Layout {
    Layout::from_size_align(size.max(1) as usize, align.max(1) as usize)
        .unwrap_or_else(|_| Layout::new::<u8>())
}

fn release(slot: &Slot, inside: &mut Inside) {
    let p = slot.ptr.swap(0, Ordering::Relaxed);
    if p != 0 {
        let l = layout(
            slot.size.load(Ordering::Relaxed) as u64,
            slot.align.load(Ordering::Relaxed) as u64,
        );
        // SAFETY: `p` came from `alloc`/`realloc` with this layout and is
        // freed once (the slot was emptied first).
        timed(inside, || unsafe { dealloc(p as *mut u8, l) });
    }
}

/// Allocations that returned null.
static FAILED: AtomicU64 = AtomicU64::new(0);

/// `p` (a block of `size` bytes, or null) written as its program would.
fn touched(p: *mut u8, size: usize) -> *mut u8 {
    if !p.is_null() {
        touch(p, size);
    }
    p
}

/// Runs step `s`, counting its allocator call in `inside`. A new block's
/// first writes are timed with the call: a fresh page's fault is paid by
/// whoever writes it first, inside the call for an allocator that writes
/// into its blocks (headers, tags), in the program's first write for one
/// that keeps its metadata apart.
fn step(slots: &[Slot], s: Step, inside: &mut Inside) {
    match s {
        Step::Alloc { slot, size, align } => {
            let l = layout(size, align);
            // SAFETY: the layout has a non-zero size.
            let p = timed(inside, || touched(unsafe { alloc(l) }, l.size()));
            if p.is_null() {
                FAILED.fetch_add(1, Ordering::Relaxed);
            }
            let slot = &slots[slot as usize];
            // A slot still holding a block (its free was never recorded)
            // keeps it: that block leaks, as it did in the program.
            slot.ptr.store(p as usize, Ordering::Relaxed);
            slot.size.store(l.size(), Ordering::Relaxed);
            slot.align.store(l.align(), Ordering::Relaxed);
        }
        Step::Free { slot } => release(&slots[slot as usize], inside),
        Step::Realloc { old, slot, size } => {
            let new = match old.map(|o| &slots[o as usize]) {
                Some(o) if o.ptr.load(Ordering::Relaxed) != 0 => {
                    let p = o.ptr.swap(0, Ordering::Relaxed) as *mut u8;
                    let l = layout(
                        o.size.load(Ordering::Relaxed) as u64,
                        o.align.load(Ordering::Relaxed) as u64,
                    );
                    let n = size.max(1) as usize;
                    let q = timed(inside, || {
                        // SAFETY: `p` was allocated with `l`; the new size
                        // is non-zero.
                        touched(unsafe { realloc(p, l, n) }, n)
                    });
                    (q, l.align())
                }
                _ => {
                    let l = layout(size, 16);
                    // SAFETY: non-zero size.
                    let q = timed(inside, || touched(unsafe { alloc(l) }, l.size()));
                    (q, l.align())
                }
            };
            if new.0.is_null() {
                FAILED.fetch_add(1, Ordering::Relaxed);
            }
            let s = &slots[slot as usize];
            s.ptr.store(new.0 as usize, Ordering::Relaxed);
            s.size.store(size.max(1) as usize, Ordering::Relaxed);
            s.align.store(new.1, Ordering::Relaxed);
        }
    }
}

/// The replay's turns: `next` is the step whose turn it is. A thread
/// waiting for its turn spins a little, then parks, and the thread that
/// ends a step unparks the next step's thread if it is parked. (Spinning
/// then `sched_yield`, as before, left a turn to the scheduler whenever its
/// thread was not running: with more threads than cores busy, each turn
/// waited for a time slice, and a replay of 0.7 s took 57 s beside two busy
/// loops. A woken sleeper is run at once.)
struct Turns {
    next: AtomicU64,
    /// Per thread: its handle (set when it starts), and whether it parks.
    threads: Vec<OnceLock<Thread>>,
    parked: Vec<AtomicBool>,
}

/// Spins before a waiting thread parks: a turn that comes within a few
/// microseconds (its owner running on another core) costs no system call.
const SPINS: u32 = 512;

impl Turns {
    fn new(threads: usize) -> Turns {
        Turns {
            next: AtomicU64::new(0),
            threads: (0..threads).map(|_| OnceLock::new()).collect(),
            parked: (0..threads).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Called by thread `me` when it starts, before it waits.
    fn register(&self, me: usize) {
        let _ = self.threads[me].set(std::thread::current());
    }

    /// Waits until step `index` (of thread `me`) has its turn.
    fn wait(&self, me: usize, index: u64) {
        let mut spins = 0;
        while self.next.load(Ordering::Acquire) != index {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // Say we park, then look at the turn again: a thread that
            // passes the turn after this look sees us parked and unparks
            // us, and an unpark before the park makes the park return (no
            // lost wake-up; both sides store, then load, in one SeqCst
            // order). The timeout is a safety net only.
            self.parked[me].store(true, Ordering::SeqCst);
            if self.next.load(Ordering::SeqCst) != index {
                std::thread::park_timeout(Duration::from_millis(10));
            }
            self.parked[me].store(false, Ordering::SeqCst);
        }
    }

    /// Step `index` is done; the next step is thread `owner`'s (if any).
    fn pass(&self, index: u64, owner: Option<usize>) {
        self.next.store(index + 1, Ordering::SeqCst);
        if let Some(t) = owner
            && self.parked[t].load(Ordering::SeqCst)
            && let Some(thread) = self.threads[t].get()
        {
            thread.unpark();
        }
    }
}

/// The program file mapped read-only: the worker reads it without
/// allocating through the allocator it measures.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &str) -> Result<Mapped, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .len() as usize;
        if len == 0 {
            return Err(format!("{path} is empty"));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a read-only private mapping of an open file; the mapping
        // outlives the descriptor, as mmap allows.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("cannot map {path}"));
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` until drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `open` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

// SAFETY: the mapping is read-only and immutable; sharing it between the
// replay threads is sharing a `&[u8]`.
unsafe impl Sync for Mapped {}

/// A `/proc/self/status` field in KiB: `VmRSS` (now) or `VmHWM` (the
/// peak of this process image: unlike `wait4`'s `ru_maxrss`, it does not
/// inherit the parent's RSS from before the exec).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// The worker's `main`: `replay-worker-NAME PROGRAM`.
pub fn replay_worker_main(allocator: &str) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: replay-worker-{allocator} PROGRAM");
        return ExitCode::from(2);
    };
    let mapped = match Mapped::open(path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("replay-worker-{allocator}: {e}");
            return ExitCode::from(2);
        }
    };
    let reader = match program::Reader::new(mapped.bytes()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replay-worker-{allocator}: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    // Check the whole program before running any of it.
    if let Some(Err(e)) = reader.clone().find(|s| s.is_err()) {
        eprintln!("replay-worker-{allocator}: {path}: {e}");
        return ExitCode::from(2);
    }
    let slots: Vec<Slot> = (0..reader.slots).map(|_| Slot::default()).collect();
    let base_rss_kib = status_kib("VmRSS:");
    let turns = Turns::new(reader.threads as usize);
    // Ticks inside allocator calls, and the calls, summed over the threads.
    let inside_ticks = AtomicU64::new(0);
    let inside_calls = AtomicU64::new(0);
    let empty = empty_interval();
    let start = Instant::now();
    let start_tick = tick();
    std::thread::scope(|scope| {
        for thread in 0..reader.threads {
            let (slots, turns, reader) = (&slots, &turns, reader.clone());
            let (inside_ticks, inside_calls) = (&inside_ticks, &inside_calls);
            scope.spawn(move || {
                turns.register(thread as usize);
                let mut inside = Inside::default();
                let mut steps = reader.flatten().peekable();
                while let Some((index, t, s)) = steps.next() {
                    if t != thread {
                        continue;
                    }
                    turns.wait(thread as usize, index);
                    step(slots, s, &mut inside);
                    let owner = steps.peek().map(|&(_, t, _)| t as usize);
                    turns.pass(index, owner);
                }
                inside_ticks.fetch_add(inside.ticks, Ordering::Relaxed);
                inside_calls.fetch_add(inside.calls, Ordering::Relaxed);
            });
        }
    });
    let elapsed = start.elapsed();
    let ticks = tick().saturating_sub(start_tick).max(1);
    let inside = inside_ticks
        .load(Ordering::Relaxed)
        .saturating_sub(empty * inside_calls.load(Ordering::Relaxed));
    let alloc_ns = (inside as f64 * elapsed.as_nanos() as f64 / ticks as f64) as u64;
    let leaked = slots
        .iter()
        .filter(|s| s.ptr.load(Ordering::Relaxed) != 0)
        .count();
    println!(
        "replay_ns={} alloc_ns={alloc_ns} steps={} threads={} base_rss_kib={base_rss_kib} peak_rss_kib={} failed={} leaked={leaked}",
        elapsed.as_nanos(),
        reader.count,
        reader.threads,
        status_kib("VmHWM:"),
        FAILED.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}
