//! Spans attributed exactly: this test program uses memtally as its global
//! allocator, records itself, makes spans through `tracing` with the
//! memtally layer installed (nested spans, an instrumented future polled
//! on three threads, ten request spans), then reads its own trace and
//! checks every scope's numbers.
//!
//! Spans are made before any scope is entered: the registry's and the
//! layer's own allocations for a span then belong to no scope, and the
//! numbers are exact.

use memtally_alloc::{MemTally, Mode, Recorder};
use memtally_profiler::{Analysis, ModelOptions, ScopeStats};
use memtally_tracing::MemtallyLayer;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[global_allocator]
static A: MemTally = MemTally::new();

#[inline(never)]
fn keep(n: usize) {
    std::mem::forget(std::hint::black_box(vec![1u8; n]));
}

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
    // Warm up the registry and the layer's per-thread stack (two deep).
    {
        let a = tracing::info_span!("warm-up");
        let b = tracing::info_span!("warm-up");
        let _a = a.enter();
        let _b = b.enter();
    }
    // Nested spans.
    let outer = tracing::info_span!("outer");
    let inner = tracing::info_span!("inner");
    {
        let _o = outer.enter();
        keep(1000);
        {
            let _i = inner.enter();
            keep(2000);
            churn(300);
        }
        churn(400);
    }
    drop((outer, inner));
    // A future instrumented with a span, polled on three threads in turn.
    let span = tracing::info_span!("task");
    let mut task = Box::pin(Steps(0).instrument(span));
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
    // Ten request spans of 100, 200, ... 1000 bytes.
    for i in 1..=10 {
        let span = tracing::info_span!("request");
        let _r = span.enter();
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
    let dir = std::env::temp_dir().join(format!("memtally-spans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spans.mtt");
    Recorder::new()
        .mode(Mode::Full)
        .output(path.to_str().unwrap())
        .start()
        .expect("recording starts");
    tracing_subscriber::registry()
        .with(MemtallyLayer::new())
        .init();
    scenarios();
    memtally_alloc::flush();
    let a = Analysis::open_with(&path, ModelOptions::default()).expect("the trace reads");
    let scopes = a.model.scopes();

    let outer = find(&scopes, "outer");
    assert_eq!(
        (outer.counters.allocations, outer.counters.bytes_allocated),
        (2, 1400),
        "{outer:#?}"
    );
    assert_eq!(outer.counters.live_bytes, 1000);
    assert_eq!((outer.instances, outer.ended, outer.outlived), (1, 1, 1));
    let inner = find(&scopes, "inner");
    assert_eq!(
        (inner.counters.allocations, inner.counters.bytes_allocated),
        (2, 2300),
        "{inner:#?}"
    );
    assert_eq!(inner.outlived_bytes, 2000);

    let task = find(&scopes, "task");
    assert_eq!(
        (task.counters.allocations, task.counters.live_bytes),
        (4, 400),
        "every poll's allocation, on whichever thread: {task:#?}"
    );
    assert_eq!((task.instances, task.ended), (1, 1));

    let request = find(&scopes, "request");
    assert_eq!(
        (request.instances, request.ended, request.outlived),
        (10, 10, 0)
    );
    assert_eq!(request.counters.bytes_allocated, 5500, "{request:#?}");
    assert_eq!(request.per_instance.max(), 1000);
    let _ = std::fs::remove_dir_all(&dir);
    println!("spans: every scenario attributed exactly");
}
