//! A request-serving program that leaks on purpose, to show what
//! `memtally run` finds. It uses the system allocator, so it is recorded
//! through the preloaded `libmemtally.so` like any other program:
//!
//! ```text
//! cargo build --release && target/release/memtally run --report -- target/release/leaky-server
//! ```
//!
//! Two worker threads handle requests. Each request parses its headers into
//! short-lived strings (temporary allocations), builds a response body, and
//! opens a session kept in a shared registry. Two bugs leak memory:
//! - `close_session` forgets to remove one session in fifty from the
//!   registry, so those sessions stay live until exit (a leak by site);
//! - `audit` keeps a copy of every hundredth response in a log that is
//!   never trimmed (growth).
//!
//! The report should name `open_session` and `audit` as the sites still
//! holding memory at exit, and `parse_request` as the main source of
//! temporary allocations.
//!
//! `--duration SECONDS` spreads the requests evenly over that time instead
//! of serving them flat out, so that a live dashboard shows the leak grow:
//!
//! ```text
//! target/release/memtally run --live -- target/release/leaky-server --duration 10
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client session: some per-client state.
struct Session {
    user: String,
    cart: Vec<u64>,
}

/// Shared state of the server.
#[derive(Default)]
struct Server {
    sessions: Mutex<HashMap<u64, Session>>,
    audit_log: Mutex<Vec<Vec<u8>>>,
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Parses a request's headers into owned strings, used and dropped at once.
#[inline(never)]
fn parse_request(seed: &mut u64) -> Vec<(String, String)> {
    let n = 4 + next(seed) % 8;
    (0..n)
        .map(|i| {
            (
                format!("x-header-{i}"),
                "v".repeat((next(seed) % 60) as usize),
            )
        })
        .collect()
}

/// Builds a response body from the headers.
#[inline(never)]
fn build_response(headers: &[(String, String)], seed: &mut u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(256 + (next(seed) % 4096) as usize);
    for (k, v) in headers {
        body.extend_from_slice(k.as_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    body.resize(body.capacity(), b'.');
    body
}

/// Opens a session and registers it.
#[inline(never)]
fn open_session(server: &Server, id: u64, seed: &mut u64) {
    let session = Session {
        user: format!("user-{id}"),
        cart: (0..(next(seed) % 64)).collect(),
    };
    server.sessions.lock().unwrap().insert(id, session);
}

/// Closes a session: the bug is that one in fifty stays registered.
#[inline(never)]
fn close_session(server: &Server, id: u64) {
    if id % 50 != 7 {
        let s = server.sessions.lock().unwrap().remove(&id);
        drop(s);
    }
}

/// Keeps a copy of every hundredth response, forever.
#[inline(never)]
fn audit(server: &Server, id: u64, body: &[u8]) {
    if id % 100 == 0 {
        server.audit_log.lock().unwrap().push(body.to_vec());
    }
}

#[inline(never)]
fn handle(server: &Server, id: u64, seed: &mut u64) -> usize {
    let headers = parse_request(seed);
    let body = build_response(&headers, seed);
    open_session(server, id, seed);
    audit(server, id, &body);
    close_session(server, id);
    body.len()
}

/// Requests each worker serves.
const REQUESTS: u64 = 40_000;

/// `--duration SECONDS`, if given.
fn duration() -> Option<Duration> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--duration"), Some(v)) => match v.parse::<f64>() {
            Ok(s) if s >= 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
            _ => usage(&format!("invalid --duration {v} (expected seconds)")),
        },
        _ => usage("unexpected arguments"),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("leaky-server: {problem} (usage: leaky-server [--duration SECONDS])");
    std::process::exit(2);
}

fn main() {
    let pace = duration();
    let start = Instant::now();
    let server = Arc::new(Server::default());
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let server = server.clone();
            std::thread::spawn(move || {
                let mut seed = 0x2545_F491_4F6C_DD1D ^ (w + 1);
                let mut bytes = 0;
                for i in 0..REQUESTS {
                    bytes += handle(&server, w * 1_000_000 + i, &mut seed);
                    if let Some(total) = pace
                        && i % 100 == 99
                    {
                        // Keep to the schedule: request i is due at
                        // total * i / REQUESTS.
                        let due = total.mul_f64((i + 1) as f64 / REQUESTS as f64);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
                bytes
            })
        })
        .collect();
    let served: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let leaked_sessions = server.sessions.lock().unwrap().len();
    let audit_entries = server.audit_log.lock().unwrap().len();
    println!(
        "served 80000 requests ({:.1} MiB of responses); {leaked_sessions} sessions never closed, {audit_entries} audit entries kept",
        served as f64 / (1 << 20) as f64
    );
    let user_bytes: usize = server
        .sessions
        .lock()
        .unwrap()
        .values()
        .map(|s| s.user.len() + s.cart.len() * 8)
        .sum();
    std::hint::black_box(user_bytes);
    // Exit without dropping the server, as long-running servers do.
    std::mem::forget(server);
}
