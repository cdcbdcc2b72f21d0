//! Scopes attributed exactly: this test program uses memtally as its
//! global allocator, records itself, runs known scenarios (nested scopes,
//! a block freed in another scope, a future polled on several threads,
//! instances that end with live memory, many small instances), then reads
//! its own trace and checks every scope's numbers.
//!
//! A test binary of its own (no harness): recording is process-wide and
//! must start before any other thread exists.

mod support;

use memtally_alloc::{InScope, MemTally, scope};
use memtally_profiler::{Analysis, ModelOptions};
use support::scope_program::{Steps, churn, find, keep, poll_on_three_threads, start_recording};

#[global_allocator]
static A: MemTally = MemTally::new();

fn scenarios() {
    // Nested: the inner scope holds what is allocated while it is entered.
    {
        let _outer = scope("outer");
        keep(1000);
        {
            let _inner = scope("inner");
            keep(2000);
            churn(300);
        }
        churn(400);
    }
    // Allocated in one scope, freed in another: it stays the maker's.
    let moved = {
        let _m = scope("maker");
        std::hint::black_box(vec![1u8; 500])
    };
    {
        let _t = scope("taker");
        drop(moved);
    }
    // A future polled on three threads in turn.
    poll_on_three_threads(Box::pin(Steps(0).in_scope("task")));
    // Ten requests of 100, 200, ... 1000 bytes, all freed.
    for i in 1..=10 {
        let _r = scope("request");
        churn(100 * i);
    }
    // A thread that ends inside a scope (its guard forgotten), then one
    // that adopts its heap: the second starts outside any scope.
    std::thread::spawn(|| {
        std::mem::forget(scope("left-open"));
        keep(100);
    })
    .join()
    .unwrap();
    std::thread::spawn(|| keep(700)).join().unwrap();
}

fn main() {
    let path = start_recording("scopes");
    scenarios();
    memtally_alloc::flush();
    let a = Analysis::open_with(&path, ModelOptions::default()).expect("the trace reads");
    let scopes = a.model.scopes();

    let outer = find(&scopes, "outer");
    assert_eq!(
        (outer.counters.allocations, outer.counters.bytes_allocated),
        (2, 1400)
    );
    assert_eq!(outer.counters.live_bytes, 1000);
    assert_eq!((outer.instances, outer.ended, outer.outlived), (1, 1, 1));
    assert_eq!(outer.outlived_bytes, 1000);
    let inner = find(&scopes, "inner");
    assert_eq!(
        (inner.counters.allocations, inner.counters.bytes_allocated),
        (2, 2300)
    );
    assert_eq!(inner.counters.live_bytes, 2000);
    assert_eq!(inner.outlived_bytes, 2000);

    let maker = find(&scopes, "maker");
    assert_eq!((maker.counters.allocations, maker.counters.frees), (1, 1));
    assert_eq!(maker.counters.live_bytes, 0);
    // It was still live when its instance ended.
    assert_eq!((maker.outlived, maker.outlived_bytes), (1, 500));
    let taker = find(&scopes, "taker");
    assert_eq!(
        (taker.counters.allocations, taker.counters.frees),
        (0, 0),
        "a free belongs to the block's scope"
    );

    let task = find(&scopes, "task");
    assert_eq!(
        (task.counters.allocations, task.counters.live_bytes),
        (4, 400),
        "every poll's allocation, on whichever thread"
    );
    assert_eq!((task.instances, task.ended, task.outlived), (1, 1, 1));

    let request = find(&scopes, "request");
    assert_eq!(
        (request.instances, request.ended, request.outlived),
        (10, 10, 0)
    );
    assert_eq!(request.counters.bytes_allocated, 5500);
    assert_eq!(request.counters.live_bytes, 0);
    assert_eq!(request.per_instance.count(), 10);
    assert_eq!(request.per_instance.max(), 1000);
    let left_open = find(&scopes, "left-open");
    assert_eq!(
        (
            left_open.counters.allocations,
            left_open.counters.live_bytes
        ),
        (1, 100),
        "only the thread that entered it"
    );
    // Nothing else was in a scope.
    assert_eq!(scopes.len(), 7, "{scopes:#?}");
    // Ended instances without live blocks are forgotten (the maker's went
    // when its block was freed); the three that left blocks behind are
    // still followed, and the one never ended.
    assert_eq!(a.model.scope_instances_followed(), 4);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    println!("scopes: every scenario attributed exactly");
}
