//! Multi-threaded tests: producer/consumer cross-thread frees, frees into
//! full pages, thread churn with blocks outliving their threads, and reuse of
//! an exited thread's memory. A stress test of correctness, not a benchmark.

use crate::util::{check_heap, child_scenario, fill, run_child, verify};
use memtally_alloc::{debug, raw};
use std::sync::mpsc;
use std::thread;

/// A block handed between threads.
struct Block {
    p: usize,
    size: usize,
    seed: u8,
}

fn make(size: usize, seed: u8) -> Block {
    // SAFETY: 8 is a power of two.
    let p = unsafe { raw::alloc(size, 8) };
    assert!(!p.is_null());
    fill(p, size.min(256), seed);
    Block {
        p: p as usize,
        size,
        seed,
    }
}

fn release(b: Block) {
    assert!(
        verify(b.p as *const u8, b.size.min(256), b.seed),
        "block corrupted in transit"
    );
    // SAFETY: the block is live and freed once.
    unsafe { raw::free(b.p as *mut u8, "free") };
}

fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 33
}

#[test]
fn producer_consumer_cross_thread_frees() {
    let (tx, rx) = mpsc::sync_channel::<Vec<Block>>(64);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let producers: Vec<_> = (0..2)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut r = 12345 + t as u64;
                for _ in 0..300 {
                    let batch: Vec<Block> = (0..200)
                        .map(|i| make(1 + (lcg(&mut r) % 3000) as usize, i as u8))
                        .collect();
                    tx.send(batch).unwrap();
                }
                check_heap();
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                loop {
                    let batch = rx.lock().unwrap().recv();
                    match batch {
                        Ok(batch) => batch.into_iter().for_each(release),
                        Err(_) => break,
                    }
                }
                check_heap();
            })
        })
        .collect();
    for h in producers.into_iter().chain(consumers) {
        h.join().unwrap();
    }
    check_heap();
}

#[test]
fn frees_into_full_pages_are_noticed() {
    // The owner fills many pages (they go to its full list), another thread
    // frees everything, and the owner must get the blocks back.
    let (to_freer, freer_rx) = mpsc::channel::<Vec<Block>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let freer = thread::spawn(move || {
        for batch in freer_rx {
            batch.into_iter().for_each(release);
            done_tx.send(()).unwrap();
        }
    });
    let owner = thread::spawn(move || {
        for round in 0..20 {
            let batch: Vec<Block> = (0..20_000).map(|i| make(48, (i + round) as u8)).collect();
            to_freer.send(batch).unwrap();
            done_rx.recv().unwrap();
            check_heap();
        }
        // Everything was freed remotely: after reuse the heap holds at most
        // the last round's pages.
        let report = debug::validate_current_heap().unwrap();
        assert!(report.used_blocks < 25_000, "{report:?}");
    });
    owner.join().unwrap();
    freer.join().unwrap();
}

#[test]
fn thread_churn_does_not_leak() {
    if child_scenario().as_deref() != Some("churn") {
        let (status, stderr) = run_child("threads::thread_churn_does_not_leak", "churn", &[]);
        assert!(status.success(), "child failed: {stderr}");
        return;
    }
    // Threads allocate, hand half their blocks to the next generation and
    // exit; the next generation frees them. Mapped memory must level off.
    let mut carried: Vec<Block> = Vec::new();
    let mut mapped_after = Vec::new();
    for generation in 0..40u64 {
        let inherited = std::mem::take(&mut carried);
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let part: Vec<Block> = Vec::new();
                thread::spawn(move || {
                    let mut r = generation * 7 + t;
                    let mut mine: Vec<Block> = (0..20_000)
                        .map(|i| make(8 + (lcg(&mut r) % 2000) as usize, i as u8))
                        .collect();
                    let keep = mine.split_off(mine.len() / 2);
                    mine.into_iter().for_each(release);
                    check_heap();
                    drop(part);
                    keep
                })
            })
            .collect();
        inherited.into_iter().for_each(release);
        for h in handles {
            carried.extend(h.join().unwrap());
        }
        raw::trim();
        mapped_after.push(debug::stats().mapped_bytes);
    }
    carried.into_iter().for_each(release);
    let early = mapped_after[5];
    let late = *mapped_after.last().unwrap();
    assert!(
        late <= early + (32 << 20),
        "mapped memory keeps growing with thread churn: {mapped_after:?}"
    );
}

#[test]
fn exited_threads_memory_is_reused() {
    if child_scenario().as_deref() != Some("reuse") {
        let (status, stderr) = run_child("threads::exited_threads_memory_is_reused", "reuse", &[]);
        assert!(status.success(), "child failed: {stderr}");
        return;
    }
    const N: usize = 200_000;
    // A thread allocates ~40 MiB of small blocks and exits; main frees them.
    let blocks = thread::spawn(|| (0..N).map(|i| make(200, i as u8)).collect::<Vec<_>>())
        .join()
        .unwrap();
    blocks.into_iter().for_each(release);
    let before = debug::stats().mapped_bytes;
    // A new thread allocating as much again must reuse that memory.
    let blocks = thread::spawn(|| (0..N).map(|i| make(200, i as u8)).collect::<Vec<_>>())
        .join()
        .unwrap();
    let after = debug::stats().mapped_bytes;
    blocks.into_iter().for_each(release);
    assert!(
        after <= before + (8 << 20),
        "second generation mapped new memory: {before} -> {after}"
    );
}

#[test]
fn many_threads_random_sizes() {
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            thread::spawn(move || {
                let mut r = t * 1000 + 1;
                let mut live: Vec<Block> = Vec::new();
                for i in 0..40_000 {
                    if live.len() > 500 || (lcg(&mut r) % 3 == 0 && !live.is_empty()) {
                        let k = (lcg(&mut r) as usize) % live.len();
                        release(live.swap_remove(k));
                    } else {
                        let size = match lcg(&mut r) % 100 {
                            0 => 600_000 + (lcg(&mut r) % 3_000_000) as usize,
                            1..=5 => 10_000 + (lcg(&mut r) % 200_000) as usize,
                            _ => (lcg(&mut r) % 1500) as usize,
                        };
                        live.push(make(size, i as u8));
                    }
                }
                live.into_iter().for_each(release);
                check_heap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
