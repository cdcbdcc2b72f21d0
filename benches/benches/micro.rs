//! Criterion micro-benchmarks of memtally against the system allocator,
//! mimalloc and jemalloc.
//!
//! All four allocators are called directly through their `GlobalAlloc`
//! methods from this one binary, whose own global allocator stays the system
//! one (only criterion uses it), so each criterion group shows the four side by
//! side under identical conditions. Every call goes through a
//! `&dyn GlobalAlloc`, so no allocator gets inlined into the benchmark loop
//! while the others pay for a call. These isolate the fast paths; the
//! `alloc-bench` driver measures whole workloads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memtally_alloc::MemTally;
use mimalloc::MiMalloc;
use tikv_jemallocator::Jemalloc;

static MEMTALLY: MemTally = MemTally::new();

/// An allocator under comparison, with its report name.
type Contender = (&'static str, &'static (dyn GlobalAlloc + Sync));

fn contenders() -> [Contender; 4] {
    [
        ("memtally", &MEMTALLY),
        ("system", &System),
        ("mimalloc", &MiMalloc),
        ("jemalloc", &Jemalloc),
    ]
}

/// Sizes for the malloc/free pairs: the small classes, a page, and a medium block.
const PAIR_SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 32768];
const BATCH: usize = 1000;
const BATCH_SIZE: usize = 64;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("benchmark layouts are valid")
}

/// Allocates with `a`, aborting the benchmark on failure.
fn alloc_with(a: &dyn GlobalAlloc, layout: Layout) -> *mut u8 {
    // SAFETY: every layout used here has a non-zero size.
    let ptr = unsafe { a.alloc(layout) };
    assert!(
        !ptr.is_null(),
        "allocation of {} bytes failed",
        layout.size()
    );
    // SAFETY: the block has at least one byte; writing it makes the allocation real.
    unsafe { ptr.write_volatile(1) };
    ptr
}

/// One allocation followed by its free, per size class.
fn malloc_free(c: &mut Criterion) {
    for size in PAIR_SIZES {
        let layout = layout(size);
        let mut group = c.benchmark_group(format!("malloc_free/{size}"));
        group.throughput(Throughput::Elements(1));
        for (name, a) in contenders() {
            group.bench_function(name, |b| {
                b.iter(|| {
                    let ptr = alloc_with(a, layout);
                    // SAFETY: `ptr` was just allocated by `a` with `layout`.
                    unsafe { a.dealloc(black_box(ptr), layout) };
                });
            });
        }
        group.finish();
    }
}

/// A thousand allocations, then a thousand frees in the same order: the
/// pattern of building and dropping a collection of small objects.
fn batch(c: &mut Criterion) {
    let layout = layout(BATCH_SIZE);
    let mut group = c.benchmark_group(format!("batch/{BATCH}x{BATCH_SIZE}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, a) in contenders() {
        let mut ptrs: Vec<*mut u8> = Vec::with_capacity(BATCH);
        group.bench_function(name, |b| {
            b.iter(|| {
                ptrs.extend((0..BATCH).map(|_| alloc_with(a, layout)));
                for ptr in ptrs.drain(..) {
                    // SAFETY: each pointer was allocated by `a` with `layout` above.
                    unsafe { a.dealloc(ptr, layout) };
                }
            });
        });
    }
    group.finish();
}

/// A buffer grown from 16 bytes to 1 MiB by doubling, as a `Vec` grows.
fn realloc_growth(c: &mut Criterion) {
    let mut group = c.benchmark_group("realloc_growth/16B-1MiB");
    for (name, a) in contenders() {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut size = 16;
                let mut ptr = alloc_with(a, layout(size));
                while size < 1 << 20 {
                    let new_size = size * 2;
                    // SAFETY: `ptr` is live, allocated by `a` with `layout(size)`,
                    // and the new size is non-zero and fits a Layout.
                    ptr = unsafe { a.realloc(ptr, layout(size), new_size) };
                    assert!(!ptr.is_null(), "realloc to {new_size} bytes failed");
                    // SAFETY: the grown block has `new_size` bytes.
                    unsafe { ptr.add(new_size - 1).write_volatile(1) };
                    size = new_size;
                }
                // SAFETY: `ptr` is live with `layout(size)`.
                unsafe { a.dealloc(black_box(ptr), layout(size)) };
            });
        });
    }
    group.finish();
}

/// A batch allocated on the benchmark thread is freed by a second, long-lived
/// thread: the producer/consumer pattern behind remote frees.
fn cross_thread_free(c: &mut Criterion) {
    let layout = layout(BATCH_SIZE);
    let mut group = c.benchmark_group(format!("cross_thread_free/{BATCH}x{BATCH_SIZE}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, a) in contenders() {
        // Addresses travel as `usize` because raw pointers are not `Send`; the
        // emptied vectors come back so the steady state allocates nothing
        // outside the allocator under test.
        let (to_freer, batches) = mpsc::sync_channel::<Vec<usize>>(4);
        let (give_back, returned) = mpsc::channel::<Vec<usize>>();
        let freer = thread::spawn(move || {
            for mut batch in batches {
                for addr in batch.drain(..) {
                    // SAFETY: every address was allocated by `a` with `layout`
                    // and sent here exactly once.
                    unsafe { a.dealloc(addr as *mut u8, layout) };
                }
                if give_back.send(batch).is_err() {
                    break;
                }
            }
        });
        let mut spare: Vec<Vec<usize>> = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut in_flight = 0usize;
                for _ in 0..iters {
                    let mut batch = match returned.try_recv() {
                        Ok(batch) => {
                            in_flight -= 1;
                            batch
                        }
                        Err(_) => spare.pop().unwrap_or_else(|| Vec::with_capacity(BATCH)),
                    };
                    batch.extend((0..BATCH).map(|_| alloc_with(a, layout) as usize));
                    to_freer.send(batch).expect("the freeing thread died");
                    in_flight += 1;
                }
                // The time includes waiting for the last frees to finish.
                while in_flight > 0 {
                    spare.push(returned.recv().expect("the freeing thread died"));
                    in_flight -= 1;
                }
                start.elapsed()
            });
        });
        drop(to_freer);
        freer.join().expect("the freeing thread panicked");
    }
    group.finish();
}

/// Short measurement windows keep the whole run to a few minutes; the fast
/// paths are stable enough that longer windows add little precision.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! {
    name = micro;
    config = config();
    targets = malloc_free, batch, realloc_growth, cross_thread_free
}
criterion_main!(micro);
