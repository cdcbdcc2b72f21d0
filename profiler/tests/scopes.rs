//! Scopes attributed exactly: this test program uses memtally as its
//! global allocator, records itself, runs known scenarios (nested scopes,
//! a block freed in another scope, a future polled on several threads,
//! instances that end with live memory, many small instances), then reads
//! its own trace and checks every scope's numbers.
//!
//! A test binary of its own (no harness): recording is process-wide and
//! must start before any other thread exists.

use memtally_alloc::{InScope, MemTally, Mode, Recorder, scope};
use memtally_profiler::{Analysis, ModelOptions, ScopeStats};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[global_allocator]
static A: MemTally = MemTally::new();

/// Allocates `n` bytes and keeps them for good.
#[inline(never)]
fn keep(n: usize) {
    std::mem::forget(std::hint::black_box(vec![1u8; n]));
}

/// Allocates `n` bytes and frees them.
#[inline(never)]
fn churn(n: usize) {
    drop(std::hint::black_box(vec![1u8; n]));
}

/// Allocates 100 bytes (kept) on every poll; ready on the fourth.
struct Steps(u32);

impl Future for Steps {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        keep(100);
        self.0 += 1;
        if self.0 == 4 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

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
    let mut task = Box::pin(Steps(0).in_scope("task"));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(task.as_mut().poll(&mut cx).is_pending());
    for _ in 0..2 {
        task = std::thread::spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(task.as_mut().poll(&mut cx).is_pending());
            task
        })
        .join()
        .unwrap();
    }
    assert!(task.as_mut().poll(&mut cx).is_ready());
    drop(task);
    // Ten requests of 100, 200, ... 1000 bytes, all freed.
    for i in 1..=10 {
        let _r = scope("request");
        churn(100 * i);
    }
}

fn find<'a>(scopes: &'a [ScopeStats], name: &str) -> &'a ScopeStats {
    scopes
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scope {name:?} in {scopes:#?}"))
}

fn main() {
    let dir = std::env::temp_dir().join(format!("memtally-scopes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scopes.mtt");
    Recorder::new()
        .mode(Mode::Full)
        .output(path.to_str().unwrap())
        .start()
        .expect("recording starts");
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
    // Nothing else was in a scope.
    assert_eq!(scopes.len(), 6, "{scopes:#?}");
    // Ended instances without live blocks are forgotten (the maker's went
    // when its block was freed); the three that left blocks behind are
    // still followed.
    assert_eq!(a.model.scope_instances_followed(), 3);
    let _ = std::fs::remove_dir_all(&dir);
    println!("scopes: every scenario attributed exactly");
}
