//! The race detector (`MEMTALLY=...,races=on`) on planted bugs: two threads
//! storing to one heap word with plain volatile writes must be reported
//! with both functions; the same stores under a mutex must not; relaxed
//! atomic stores are caught by the watchpoint and told apart as atomic
//! when the trace is read; with long stalls and no wait between windows,
//! the trap budget keeps the detector's time near 1% of a core. Each
//! scenario is a child process (this binary again) recording itself;
//! skipped, and said so, where `perf_event_open` is refused. Where a
//! seccomp filter refuses it, the detector says so once and the program
//! and its trace go on; at its descriptor limit, a program's opens never
//! fail for the descriptors a window holds. Readers sharing a read lock
//! while a writer changes the word are no race, even when the watch comes
//! on late and the recorder pairs two reads.

use memtally_alloc::MemTally;
use memtally_profiler::{Analysis, Symbolizer, errors};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[global_allocator]
static A: MemTally = MemTally::new();

/// How long a scenario's threads keep at it at most.
const RUN_FOR: Duration = Duration::from_millis(1500);
/// The longest a scenario that expects a race waits for it.
const CATCH_WITHIN: Duration = Duration::from_secs(10);

#[inline(never)]
fn racy_store(p: *mut u64, v: u64) {
    // SAFETY: `p` points into a live Box shared on purpose without
    // synchronisation: the planted race.
    unsafe { std::ptr::write_volatile(p, v) };
}

#[inline(never)]
fn racy_load(p: *const u64) -> u64 {
    // SAFETY: as `racy_store`: the other side of the planted race.
    unsafe { std::ptr::read_volatile(p) }
}

#[inline(never)]
fn locked_store(m: &Mutex<u64>, v: u64) {
    *m.lock().unwrap() = v;
}

#[inline(never)]
fn shared_read(l: &RwLock<u64>) -> u64 {
    // SAFETY: a reference to the lock's value, under its read guard.
    unsafe { std::ptr::read_volatile(&*l.read().unwrap()) }
}

#[inline(never)]
fn exclusive_write(l: &RwLock<u64>, v: u64) {
    // SAFETY: a reference to the lock's value, under its write guard.
    unsafe { std::ptr::write_volatile(&mut *l.write().unwrap(), v) };
}

#[inline(never)]
fn atomic_store(a: &AtomicU64, v: u64) {
    a.store(v, Ordering::Relaxed);
}

/// Runs `work(thread, i)` on two threads until `RUN_FOR` has passed, or
/// with `until_caught`, until the detector has recorded a race (at most
/// `CATCH_WITHIN`): a loaded machine (the whole suite on two cores) may
/// not run the two threads at once in every window.
fn two_threads(until_caught: bool, work: impl Fn(u64, u64) + Send + Sync + 'static) {
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (work, stop) = (work.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    work(t, i);
                    i += 1;
                }
            })
        })
        .collect();
    let start = Instant::now();
    let done = || {
        if until_caught {
            memtally_alloc::debug::race_stats().races > 0 || start.elapsed() >= CATCH_WITHIN
        } else {
            start.elapsed() >= RUN_FOR
        }
    };
    while !done() {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

fn scenario(name: &str) {
    match name {
        "racy" | "racy_held" => {
            if name == "racy_held" {
                // The first window's first access is held up past the
                // second's wait for its side (1 ms), then the next second
                // access past the first's wait for it (10 ms).
                memtally_alloc::debug::race_hold_next(3000, 15_000);
            }
            let word = Box::into_raw(Box::new([0u64; 8])) as *mut u64;
            memtally_alloc::race_watch(word, 8);
            let addr = word as usize;
            two_threads(true, move |t, i| {
                racy_store(addr as *mut u64, (t << 40) | i)
            });
        }
        "read_write" => {
            let word = Box::into_raw(Box::new([0u64; 8])) as *mut u64;
            memtally_alloc::race_watch(word, 8);
            let addr = word as usize;
            two_threads(true, move |t, i| {
                if t == 0 {
                    racy_store(addr as *mut u64, i);
                } else {
                    black_box(racy_load(addr as *const u64));
                }
            });
        }
        "mutex" => {
            let m = Arc::new(Mutex::new(0u64));
            let inner = {
                let guard = m.lock().unwrap();
                &*guard as *const u64
            };
            memtally_alloc::race_watch(inner, 8);
            two_threads(false, move |t, i| locked_store(&m, (t << 40) | i));
        }
        "rwlock" | "rwlock_held" => {
            // Two readers sharing a read lock read the word at the same
            // time, which is no race; a writer changes it under the write
            // lock all along. Held, every window's watch comes on 0.5 ms
            // after its value was read, so the word has changed before any
            // trap, and two overlapping reads are recorded as a race.
            let held = name == "rwlock_held";
            if held {
                memtally_alloc::debug::race_hold_arming(500);
            }
            let l = Arc::new(RwLock::new(0u64));
            let inner = {
                let guard = l.read().unwrap();
                &*guard as *const u64
            };
            memtally_alloc::race_watch(inner, 8);
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (l, stop) = (l.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        exclusive_write(&l, i);
                        i += 1;
                        // Asleep, the writer leaves both cores to the
                        // readers, and waits for the lock less often
                        // (a waiting writer keeps new readers out).
                        std::thread::sleep(Duration::from_micros(100));
                    }
                })
            };
            two_threads(held, move |_, _| {
                black_box(shared_read(&l));
            });
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap();
            let s = memtally_alloc::debug::race_stats();
            println!("stats {} {} {}", s.windows, s.traps, s.races);
        }
        "atomic" => {
            let a = Arc::new(AtomicU64::new(0));
            memtally_alloc::race_watch(Arc::as_ptr(&a), 8);
            two_threads(true, move |t, i| atomic_store(&a, (t << 40) | i));
        }
        "fd_limit" => {
            // Every descriptor the process may open (64, see main) taken
            // but two: the program opens and closes one all along, beside
            // two racing threads, and a window must not take the other.
            let mut held = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                held.push(f);
            }
            held.truncate(held.len().saturating_sub(2));
            let word = Box::into_raw(Box::new([0u64; 8])) as *mut u64;
            memtally_alloc::race_watch(word, 8);
            let addr = word as usize;
            let opener = std::thread::spawn(|| {
                let start = Instant::now();
                let (mut opened, mut failed) = (0, 0);
                while start.elapsed() < RUN_FOR {
                    match std::fs::File::open("/dev/null") {
                        Ok(_) => opened += 1,
                        Err(_) => failed += 1,
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                (opened, failed)
            });
            two_threads(false, move |t, i| {
                racy_store(addr as *mut u64, (t << 40) | i)
            });
            let (opened, failed) = opener.join().unwrap();
            println!("opens {opened} {failed}");
            drop(held);
        }
        "budget" => {
            let word = Box::into_raw(Box::new([0u64; 8])) as *mut u64;
            memtally_alloc::race_watch(word, 8);
            let addr = word as usize;
            // One thread: every window's first access stalls in full, as
            // no second thread comes to end it.
            let start = Instant::now();
            let worker = std::thread::spawn(move || {
                let mut i = 0u64;
                while start.elapsed() < RUN_FOR {
                    racy_store(addr as *mut u64, i);
                    i += 1;
                }
            });
            worker.join().unwrap();
            let s = memtally_alloc::debug::race_stats();
            println!(
                "stats {} {} {} {}",
                s.windows,
                s.traps,
                s.trap_us,
                start.elapsed().as_micros()
            );
        }
        other => panic!("unknown scenario {other}"),
    }
    black_box(());
}

/// The numbers a scenario printed after `prefix` on its output's one line.
fn numbers_after(prefix: &str, out: &str) -> Option<Vec<u64>> {
    out.trim()
        .strip_prefix(prefix)?
        .split(' ')
        .map(|n| n.parse().ok())
        .collect()
}

/// Makes `perf_event_open` fail with `EACCES` in the child `cmd` starts
/// (a seccomp filter, as a container's default profile does).
fn refuse_perf_event_open(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    // Load the system call number; if it is perf_event_open, fail with
    // EACCES; else allow.
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_perf_event_open as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: RET_ERRNO | libc::EACCES as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    // SAFETY: between fork and exec the hook makes two prctl calls on a
    // filter that outlives them (moved into the closure), and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn main() {
    if let Ok(name) = std::env::var("RACES_SCENARIO") {
        scenario(&name);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let run_with = |name: &str, settings: &str| {
        let trace = dir.path().join(format!("{name}.mtt"));
        let out = Command::new(&me)
            .env("RACES_SCENARIO", name)
            .env(
                "MEMTALLY",
                format!("mode=full,out={},races=on,{settings}", trace.display()),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{name}: {out:?}");
        (
            trace,
            err,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let run = |name: &str| {
        let (trace, err, _) = run_with(name, "race_period=5");
        (trace, err)
    };
    // Refused by a seccomp filter: one line, then the program runs on and
    // its trace is whole.
    let trace = dir.path().join("refused.mtt");
    let mut cmd = Command::new(&me);
    cmd.env("RACES_SCENARIO", "mutex").env(
        "MEMTALLY",
        format!("mode=full,out={},races=on,race_period=5", trace.display()),
    );
    refuse_perf_event_open(&mut cmd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "refused: {out:?}");
    assert_eq!(
        err.matches("memtally: races: perf_event_open refused a hardware watchpoint (errno 13); race detection is off, the rest runs on").count(),
        1,
        "refused: {err}"
    );
    let analysis = Analysis::open(&trace).unwrap();
    assert!(
        matches!(
            analysis.ending,
            memtally_profiler::Ending::Complete {
                clean_exit: true,
                ..
            }
        ),
        "refused: {err}"
    );
    let allocations = analysis.model.totals().counters.allocations;
    assert!(allocations > 0, "refused: an empty trace: {err}");
    println!("races refused: said once, the trace recorded");

    // Near the descriptor limit, windows take none of the program's last
    // descriptors.
    let trace = dir.path().join("fd_limit.mtt");
    let mut cmd = Command::new(&me);
    cmd.env("RACES_SCENARIO", "fd_limit").env(
        "MEMTALLY",
        format!("mode=full,out={},races=on,race_period=5", trace.display()),
    );
    // SAFETY: one setrlimit call between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "fd_limit: {out:?}");
    let opens = numbers_after("opens ", &stdout).unwrap_or_else(|| panic!("fd_limit: {out:?}"));
    assert!(
        opens[0] > 100 && opens[1] == 0,
        "fd_limit: {opens:?} {out:?}"
    );
    println!(
        "races fd_limit: {} opens beside the windows at the descriptor limit, none refused",
        opens[0]
    );

    let (trace, err) = run("racy");
    if err.contains("perf_event_open refused") {
        println!("races: skipped, perf_event_open is refused here: {err}");
        return;
    }
    let report = |trace: &std::path::Path| {
        let analysis = Analysis::open(trace).unwrap();
        errors::build(&analysis, &mut Symbolizer::default(), 12)
    };
    let functions = |site: &memtally_profiler::report::SiteReport| -> Vec<String> {
        site.frames
            .iter()
            .filter_map(|f| f.function.clone())
            .collect()
    };

    // Plain stores from two threads: a race, both sides in racy_store. Held
    // up, either side whose other gave up waiting for it records nothing (a
    // report of one side alone would name one function of the two), and a
    // later window reports the race whole.
    let racy = |trace: &std::path::Path, err: &str| {
        let r = report(trace);
        assert_eq!(r.groups.len(), 1, "racy: {err} {:?}", r.groups);
        let g = &r.groups[0];
        assert_eq!(g.kind, "data race");
        let other = g.race.as_ref().expect("the other side");
        // At least one side is known to have written (the value changed). The
        // other may read as an `access`: when the second store lands between
        // the first's trap and its read of the word, both see one value (the
        // design says so, races.rs); CI saw it once in some hundred runs.
        assert!(
            g.call == "write" || other.call == "write",
            "{} / {}",
            g.call,
            other.call
        );
        assert!(
            functions(&g.site).iter().any(|f| f.ends_with("racy_store")),
            "{:?}",
            functions(&g.site)
        );
        assert!(
            functions(&other.site)
                .iter()
                .any(|f| f.ends_with("racy_store")),
            "{:?}",
            functions(&other.site)
        );
        assert_ne!(g.threads[0], other.thread, "two threads");
        assert!(err.contains("memtally: races: 1 simultaneous"), "{err}");
    };
    racy(&trace, &err);
    println!("races racy: reported, both sides in racy_store");
    let (trace, err) = run("racy_held");
    racy(&trace, &err);
    println!("races racy_held: each side held up in turn, then the race reported whole");

    // One thread reads, the other writes. A watchpoint says neither, and
    // the value may mislead (the writer may change the word before its own
    // event is open, and the reader then sees a changed value): the
    // decoded instructions say which side read.
    let (trace, err) = run("read_write");
    let r = report(&trace);
    assert_eq!(r.groups.len(), 1, "read_write: {err} {:?}", r.groups);
    let g = &r.groups[0];
    let other = g.race.as_ref().expect("the other side");
    let mut sides = [
        (g.call.as_str(), functions(&g.site)),
        (other.call.as_str(), functions(&other.site)),
    ];
    sides.sort_by_key(|s| s.0);
    assert_eq!(sides[0].0, "read", "read_write: {sides:?}");
    assert!(
        sides[0].1.iter().any(|f| f.ends_with("racy_load")),
        "{sides:?}"
    );
    assert_eq!(sides[1].0, "write", "read_write: {sides:?}");
    assert!(
        sides[1].1.iter().any(|f| f.ends_with("racy_store")),
        "{sides:?}"
    );
    println!("races read_write: the load told as a read by its instruction, the store as a write");

    // The same stores under a mutex: nothing.
    let (trace, err) = run("mutex");
    let r = report(&trace);
    assert_eq!(r.total, 0, "mutex: {err} {:?}", r.groups);
    assert_eq!(r.atomic_races, 0, "mutex");
    println!("races mutex: no report");

    // Readers sharing a read lock while a writer changes the word under
    // the write lock: no race, though the word changes in windows where
    // two reads overlap.
    let (trace, err, out) = run_with("rwlock", "race_period=5");
    let r = report(&trace);
    assert_eq!(r.total, 0, "rwlock: {err} {out} {:?}", r.groups);
    println!(
        "races rwlock: no report ({} pair(s) of reads set aside; windows, traps, recorded: {})",
        r.read_only_races,
        out.trim().trim_start_matches("stats ")
    );
    // The same, with the watch late: the recorder pairs two reads, which
    // the decoded instructions set aside.
    let (trace, err, out) = run_with("rwlock_held", "race_period=5");
    let r = report(&trace);
    assert_eq!(r.total, 0, "rwlock_held: {err} {out} {:?}", r.groups);
    let stats = numbers_after("stats ", &out).unwrap_or_else(|| panic!("rwlock_held: {out}"));
    assert!(
        stats[2] >= 1 && r.read_only_races == stats[2],
        "rwlock_held: {stats:?} {} {err}",
        r.read_only_races
    );
    println!(
        "races rwlock_held: {} pair(s) of reads recorded, all set aside",
        r.read_only_races
    );

    // Relaxed atomic stores: caught, and told apart as atomic.
    let (trace, err) = run("atomic");
    let r = report(&trace);
    assert_eq!(r.total, 0, "atomic: {err} {:?}", r.groups);
    assert!(
        r.atomic_races >= 1,
        "atomic: the watchpoint saw them: {err}"
    );
    println!(
        "races atomic: {} caught, all told apart as atomic",
        r.atomic_races
    );

    // 2 ms stalls with no wait between windows: unbudgeted, a full stall
    // every two writer rounds (20 ms) is 10% of a thread. The 1% budget
    // spaces the windows out.
    let (trace, err, out) = run_with("budget", "race_period=1,race_stall=2000,race_budget=1");
    let numbers =
        numbers_after("stats ", &out).unwrap_or_else(|| panic!("budget: no stats: {out} {err}"));
    let [windows, traps, trap_us, elapsed_us] = numbers[..] else {
        panic!("budget: {out}");
    };
    let share = trap_us as f64 / elapsed_us as f64;
    // One window's cost may be paid after the run ends: allow 2%.
    assert!(
        share <= 0.02,
        "budget: {trap_us} us in traps over {elapsed_us} us ({windows} windows, {traps} traps)"
    );
    assert!(
        windows >= 2 && traps >= 2,
        "budget: {windows} windows, {traps} traps"
    );
    drop(trace);
    println!(
        "races budget: {:.2}% of a thread in {traps} traps over {windows} windows",
        share * 100.0
    );
}
