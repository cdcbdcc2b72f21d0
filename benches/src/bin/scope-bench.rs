//! `scope-bench`: what scopes cost.
//!
//! With memtally as this program's global allocator, it times (best of
//! five runs of a few million iterations each, ns per iteration):
//!
//! - entering and leaving a scope while nothing is recorded;
//! - the same while recording in full mode (an instance end is an event);
//! - a recorded 64-byte malloc+free outside any scope, inside one
//!   long-lived scope (the scope is written once), and each in a scope
//!   instance of its own (the worst case: a scope event before the
//!   allocation and an end event after the free);
//! - a request loop (a handler making a few strings) under a tracing
//!   registry, without and with `memtally_tracing::MemtallyLayer`.
//!
//! Recording goes to /dev/null: the writer's work is counted (it runs on
//! the other core), the disk is not.
//!
//! ```text
//! cargo run --release -p memtally-benches --bin scope-bench
//! ```

use memtally_alloc::{MemTally, Mode, Recorder, scope};
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static A: MemTally = MemTally::new();

const RUNS: usize = 5;

/// Best of [`RUNS`] runs of `iters` calls of `f`, in ns per call.
fn time(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn malloc_free() {
    drop(black_box(Vec::<u8>::with_capacity(64)));
}

/// A request handler: parses a few headers into strings and builds a
/// response.
fn handle(i: u64) -> usize {
    let headers: Vec<String> = (0..4).map(|h| format!("x-header-{h}: {i}")).collect();
    let body = headers.join("\n");
    black_box(body.len())
}

fn main() {
    const N: u64 = 2_000_000;
    let off = time(N, |_| drop(black_box(scope("request"))));
    Recorder::new()
        .mode(Mode::Full)
        .output("/dev/null")
        .start()
        .expect("recording starts");
    let on = time(N, |_| drop(black_box(scope("request"))));
    let plain = time(N, |_| malloc_free());
    let steady = {
        let _s = scope("steady");
        time(N, |_| malloc_free())
    };
    let each = time(N, |_| {
        let _s = scope("request");
        malloc_free();
    });
    const R: u64 = 200_000;
    let without = tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        time(R, |i| {
            let span = tracing::info_span!("request");
            let _e = span.enter();
            black_box(handle(i));
        })
    });
    let with = {
        use tracing_subscriber::prelude::*;
        let subscriber =
            tracing_subscriber::registry().with(memtally_tracing::MemtallyLayer::new());
        tracing::subscriber::with_default(subscriber, || {
            time(R, |i| {
                let span = tracing::info_span!("request");
                let _e = span.enter();
                black_box(handle(i));
            })
        })
    };
    println!("scope-bench: best of {RUNS} runs, ns per iteration");
    println!("| measure | ns |");
    println!("| --- | ---: |");
    println!("| enter + leave a scope, not recording | {off:.1} |");
    println!("| enter + leave a scope, recording (full) | {on:.1} |");
    println!("| recorded malloc+free 64 B, no scope | {plain:.1} |");
    println!("| recorded malloc+free 64 B, in one long-lived scope | {steady:.1} |");
    println!("| recorded malloc+free 64 B, each in a scope instance of its own | {each:.1} |");
    println!("| request loop (span + handler), registry without the layer | {without:.1} |");
    println!("| request loop (span + handler), registry with MemtallyLayer | {with:.1} |");
    println!(
        "scope tag per recorded event (long-lived scope): {:+.1} ns; layer overhead per request: {:+.1} ns ({:.2}x)",
        steady - plain,
        with - without,
        with / without
    );
}
