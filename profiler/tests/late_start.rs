//! Recording started from inside a program (`Recorder::start`) while
//! another thread is already allocating: that thread must be recorded from
//! its next allocator slow path on, not only the thread that called
//! `start` (before, it never was). A test binary of its own (no harness):
//! recording is process-wide.

use memtally_alloc::{MemTally, Mode, Recorder};
use memtally_profiler::{Analysis, ModelOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[global_allocator]
static A: MemTally = MemTally::new();

fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let worker = {
        let (stop, running) = (stop.clone(), running.clone());
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                let mut kept = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    kept.push(std::hint::black_box(vec![7u8; 100]));
                    if kept.len() == 1000 {
                        kept.clear();
                    }
                    running.store(true, Ordering::Relaxed);
                }
            })
            .unwrap()
    };
    while !running.load(Ordering::Relaxed) {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(50));
    let dir = std::env::temp_dir().join(format!("memtally-late-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("late.mtt");
    Recorder::new()
        .mode(Mode::Full)
        .output(path.to_str().unwrap())
        .start()
        .expect("recording starts");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    memtally_alloc::flush();
    let a = Analysis::open_with(&path, ModelOptions::default()).expect("the trace reads");
    let worker = a
        .model
        .threads()
        .find(|t| t.info.name == "worker")
        .expect("the worker thread is in the trace");
    let allocations = worker.counters.allocations;
    assert!(
        allocations > 1000,
        "the worker's allocations after the start: {allocations}"
    );
    println!("late start: the running worker recorded {allocations} allocations");
    let _ = std::fs::remove_dir_all(&dir);
}
