//! Spans attributed exactly: this test program uses memtally as its global
//! allocator, records itself, makes spans through `tracing` with the
//! memtally layer installed (nested spans, an instrumented future polled
//! on three threads, ten request spans), then reads its own trace and
//! checks every scope's numbers.
//!
//! Spans are made before any scope is entered: the registry's and the
//! layer's own allocations for a span then belong to no scope, and the
//! numbers are exact.

#[path = "../../profiler/tests/support/scope_program.rs"]
mod scope_program;

use memtally_alloc::MemTally;
use memtally_profiler::{Analysis, ModelOptions};
use memtally_tracing::MemtallyLayer;
use scope_program::{Steps, churn, find, keep, poll_on_three_threads, start_recording};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[global_allocator]
static A: MemTally = MemTally::new();

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
    poll_on_three_threads(Box::pin(Steps(0).instrument(span)));
    // Ten request spans of 100, 200, ... 1000 bytes.
    for i in 1..=10 {
        let span = tracing::info_span!("request");
        let _r = span.enter();
        churn(100 * i);
    }
}

fn main() {
    let path = start_recording("spans");
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
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    println!("spans: every scenario attributed exactly");
}
