//! A small tokio HTTP service whose memory is measured by route: each
//! request's handler runs in a scope named after its route
//! (`.in_scope(route)`), so `memtally report --by scope` says how much each
//! route allocates per request and which route keeps memory after its
//! requests end.
//!
//! Routes:
//! - `GET /items`: builds a listing and returns it (all freed);
//! - `POST /users`: parses a JSON-ish body into a user record (freed);
//! - `GET /search?q=...`: the bug: every result is kept in a global cache
//!   that is never trimmed, so each request leaves a little memory behind.
//!
//! The program serves itself: it listens on a loopback port and runs a
//! load loop of `--requests N` requests (default 3000) from 8 concurrent
//! clients, then exits, saying how long the loop took. With `--tracing
//! registry` each request runs in a `tracing` span (as tower-http's
//! TraceLayer makes one), with `--tracing layer` memtally's tracing layer
//! also makes that span a scope (the outer one; the route scopes nest in
//! it): to measure the layer's cost on the same service. It uses memtally as its global allocator and
//! records itself when `MEMTALLY` asks:
//!
//! ```text
//! cargo build --release -p memtally-examples
//! MEMTALLY=mode=full,out=scoped.mtt target/release/scoped-server
//! target/release/memtally report --by scope scoped.mtt
//! target/release/memtally leaks --by scope scoped.mtt
//! ```

use memtally_alloc::{InScope, MemTally};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

#[global_allocator]
static A: MemTally = MemTally::new();

/// The search cache that is never trimmed.
static SEARCH_CACHE: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

/// Reads one request: the request line and headers, then a body of
/// `Content-Length` bytes.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((method, path, body))
}

/// `GET /items`: a listing, built and returned.
#[inline(never)]
fn list_items() -> String {
    let items: Vec<String> = (0..40).map(|i| format!("item-{i}")).collect();
    items.join(",")
}

/// `POST /users`: the body parsed into fields.
#[inline(never)]
fn create_user(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let fields: HashMap<String, String> = text
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    format!("created {}", fields.len())
}

/// `GET /search?q=...`: results, and a copy kept in the cache for good.
#[inline(never)]
fn search(query: &str) -> String {
    let results: Vec<String> = (0..4).map(|i| format!("{query}-result-{i}")).collect();
    let body = results.join(",");
    SEARCH_CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(query.to_owned(), results);
    body
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// Serves one connection: the route's handler runs in the route's scope.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let (method, path, body) = read_request(&mut stream).await?;
    let (route, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (path.clone(), String::new()),
    };
    match (method.as_str(), route.as_str()) {
        ("GET", "/items") => {
            async {
                let listing = list_items();
                respond(&mut stream, "200 OK", &listing).await
            }
            .in_scope("GET /items")
            .await
        }
        ("POST", "/users") => {
            async {
                let created = create_user(&body);
                respond(&mut stream, "201 Created", &created).await
            }
            .in_scope("POST /users")
            .await
        }
        ("GET", "/search") => {
            async {
                let q = query.strip_prefix("q=").unwrap_or(&query);
                let results = search(q);
                respond(&mut stream, "200 OK", &results).await
            }
            .in_scope("GET /search")
            .await
        }
        _ => respond(&mut stream, "404 Not Found", "").await,
    }
}

/// One client request; the response's status line.
async fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// How requests are traced: not at all, in `tracing` spans with a plain
/// registry, or with memtally's layer (every span a scope).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tracing {
    None,
    Registry,
    Layer,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "scoped-server: {problem} (usage: scoped-server [--requests N] [--tracing none|registry|layer])"
    );
    std::process::exit(2)
}

fn arguments() -> (usize, Tracing) {
    let mut total = 3000;
    let mut tracing = Tracing::None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--requests" => {
                total = value
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("invalid --requests {value}")))
            }
            "--tracing" => {
                tracing = match value.as_str() {
                    "none" => Tracing::None,
                    "registry" => Tracing::Registry,
                    "layer" => Tracing::Layer,
                    _ => usage(&format!("invalid --tracing {value}")),
                }
            }
            _ => usage(&format!("unexpected argument {a}")),
        }
    }
    (total, tracing)
}

fn main() -> std::io::Result<()> {
    let (total, tracing) = arguments();
    match tracing {
        Tracing::None => {}
        Tracing::Registry => {
            tracing::subscriber::set_global_default(tracing_subscriber::registry())
                .expect("no subscriber yet")
        }
        Tracing::Layer => {
            use tracing_subscriber::prelude::*;
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(memtally_tracing::MemtallyLayer::new()),
            )
            .expect("no subscriber yet")
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if tracing == Tracing::None {
                    tokio::spawn(serve(stream));
                } else {
                    // A request span, as tower-http's TraceLayer makes.
                    tokio::spawn(serve(stream).instrument(tracing::info_span!("request")));
                }
            }
        });
        // The load loop: 8 clients, requests spread over the routes.
        let started = std::time::Instant::now();
        let clients: Vec<_> = (0..8)
            .map(|c| {
                tokio::spawn(async move {
                    let mut ok = 0;
                    for i in (c..total).step_by(8) {
                        let status = match i % 4 {
                            0 | 1 => request(port, "GET", "/items", "").await,
                            2 => request(port, "POST", "/users", "{name: ada, role: admin}").await,
                            _ => request(port, "GET", &format!("/search?q=term{i}"), "").await,
                        };
                        if status.is_ok_and(|s| s.contains(" 20")) {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut ok = 0;
        for c in clients {
            ok += c.await.unwrap_or(0);
        }
        let cached = SEARCH_CACHE.lock().unwrap().as_ref().map_or(0, |c| c.len());
        println!(
            "served {ok} of {total} requests in {:.1} ms; {cached} searches cached for good",
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    })
}
