//! `leak-scan-bench`: how fast the leak scan reads a heap (issue 4's goal:
//! at least 0.4 GiB/s per core of heap scanned).
//!
//! With memtally as this program's global allocator, it builds a
//! pointer-dense heap as in the research notes' measurement: `N` nodes of
//! 64 bytes whose first word points to a random other node (one word in
//! eight a pointer; random targets, so the flood misses the cache as a real
//! object graph does), every node also held by a root array; optionally a
//! share of them leaked (unreachable, in chains), which the scan must then
//! classify. It runs `memtally_alloc::leak_check()` a few times and prints
//! the bytes scanned, the pause (the other threads stopped: the whole scan)
//! and the rate.
//!
//! ```text
//! cargo run --release -p memtally-benches --bin leak-scan-bench [-- MIB [LEAKED_PERCENT]]
//! ```

use memtally_alloc::MemTally;
use std::hint::black_box;

#[global_allocator]
static A: MemTally = MemTally::new();

#[repr(C)]
struct Node {
    next: *mut Node,
    data: [u64; 7],
}

/// xorshift64*: reproducible random targets without a dependency.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(256, |a| a.parse().expect("MIB"));
    let leaked_percent: usize = args
        .next()
        .map_or(0, |a| a.parse().expect("LEAKED_PERCENT"));
    let n = mib * 1024 * 1024 / size_of::<Node>();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let nodes: Vec<*mut Node> = (0..n)
        .map(|i| {
            Box::into_raw(Box::new(Node {
                next: std::ptr::null_mut(),
                data: [i as u64; 7],
            }))
        })
        .collect();
    let leaked = n * leaked_percent / 100;
    // The first `leaked` nodes form chains among themselves, out of the
    // root array; the others point at random reachable nodes.
    for i in 0..n {
        let target = if i < leaked {
            if (i + 1) % 64 == 0 || i + 1 == leaked {
                std::ptr::null_mut()
            } else {
                nodes[i + 1]
            }
        } else {
            nodes[leaked + (rng(&mut seed) as usize) % (n - leaked)]
        };
        let node = nodes[i];
        // SAFETY: every node is live and only this thread touches it.
        unsafe { (*node).next = target };
    }
    let roots: Vec<*mut Node> = nodes[leaked..].to_vec();
    drop(nodes);

    println!(
        "heap: {n} nodes of 64 bytes ({mib} MiB), {leaked} leaked in chains of 64, roots array {} MiB",
        (roots.len() * 8) >> 20
    );
    println!("run  scanned MiB  pause ms  GiB/s  direct  indirect  reachable");
    let mut rates = Vec::new();
    for run in 1..=5 {
        let s = memtally_alloc::leak_check().expect("the scan runs");
        let gib_s = s.scanned_bytes as f64 / (1u64 << 30) as f64 / (s.pause_us as f64 / 1e6);
        rates.push(gib_s);
        println!(
            "{run:>3}  {:>11.1}  {:>8.1}  {gib_s:>5.2}  {:>6}  {:>8}  {:>9}",
            s.scanned_bytes as f64 / (1 << 20) as f64,
            s.pause_us as f64 / 1000.0,
            s.direct[0],
            s.indirect[0],
            s.reachable[0],
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median rate: {:.2} GiB/s (one core)",
        rates[rates.len() / 2]
    );
    black_box(&roots);
}
