//! A small request-serving program with memtally as its global allocator:
//! worker threads parse requests into short-lived buffers, keep a bounded
//! cache of responses shared between threads (so blocks are freed by other
//! threads than the ones that allocated them), and the pool of workers is
//! recycled a few times (so threads exit while their blocks live on).
//!
//! Run it with `MEMTALLY_STATS=1` to see the allocator's statistics line at
//! exit:
//!
//! ```text
//! MEMTALLY_STATS=1 cargo run --release -p memtally-examples --bin server-churn
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: memtally_alloc::MemTally = memtally_alloc::MemTally::new();

/// Responses cached across requests, evicted oldest first.
struct Cache {
    entries: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Cache {
    fn insert(&mut self, key: u64, value: Vec<u8>) {
        if self.entries.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Handles one request: parse headers into strings, build a body, maybe
/// cache it. Returns the response size.
fn handle(seed: &mut u64, cache: &Mutex<Cache>) -> usize {
    let header_count = 4 + next(seed) % 12;
    let headers: Vec<(String, String)> = (0..header_count)
        .map(|i| {
            (
                format!("x-header-{i}"),
                "v".repeat((next(seed) % 80) as usize),
            )
        })
        .collect();
    let body_len = match next(seed) % 100 {
        0 => 256 * 1024 + (next(seed) % (2 << 20)) as usize,
        1..=10 => 8 * 1024 + (next(seed) % 60_000) as usize,
        _ => 64 + (next(seed) % 2000) as usize,
    };
    let mut body = Vec::with_capacity(body_len);
    body.extend(
        headers
            .iter()
            .flat_map(|(k, v)| k.bytes().chain(v.bytes()))
            .take(body_len),
    );
    body.resize(body_len, b'.');
    let key = next(seed) % 5000;
    let size = body.len();
    if key % 3 == 0 {
        cache.lock().unwrap().insert(key, body);
    }
    size
}

fn main() {
    let started = Instant::now();
    let cache = Arc::new(Mutex::new(Cache {
        entries: HashMap::new(),
        order: VecDeque::new(),
        capacity: 2000,
    }));
    let mut served = 0usize;
    let mut bytes = 0usize;
    for generation in 0..4u64 {
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (generation * 16 + w + 1);
                    let mut total = 0usize;
                    for _ in 0..20_000 {
                        total += handle(&mut seed, &cache);
                    }
                    (20_000usize, total)
                })
            })
            .collect();
        for w in workers {
            let (n, b) = w.join().expect("worker panicked");
            served += n;
            bytes += b;
        }
    }
    let cached = cache.lock().unwrap().entries.len();
    println!(
        "served {served} requests, {:.1} MiB of responses, {cached} cached, in {:.2} s",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
}
