//! `tui-bench`: can the dashboard keep up with a busy program?
//!
//! A generator process writes a trace as a recording program would (a
//! round of records every 10 ms, each with a watermark): it builds up to
//! `--live` live blocks over `--stacks` distinct stacks on four threads,
//! then keeps them at that count, freeing a random block and allocating
//! another, `--rate` events per second in all, for `--seconds`. Meanwhile
//! this process follows the trace with the dashboard's own model
//! (`profiler::Live` with per-thread sites and site details) and draws a
//! frame every 250 ms exactly as `memtally top` does (snapshot under the
//! lock, then ratatui, here into a 120x40 `TestBackend`). It reports:
//!
//! - frame times (snapshot + draw): p50, p99, max;
//! - how far ingest trails the file while it grows, and how long it takes
//!   to finish once the generator stops;
//! - this process's CPU (cores used over the run);
//! - its peak RSS against that of a process that only reads the finished
//!   trace into the same model.
//!
//! ```text
//! cargo run --release -p memtally-benches --bin tui-bench -- [--live N] [--stacks N] [--rate N] [--seconds N]
//! ```

use memtally_profiler::synth::{TraceBuilder, alloc, free};
use memtally_profiler::{Analysis, Live, ModelOptions, WriterWatch};
use memtally_tui::{App, Target, Theme, View, ui};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: tui-bench [--live N] [--stacks N] [--rate N] [--seconds N] [--keep FILE]

  --live N      live blocks held once built up (default 1000000)
  --stacks N    distinct allocation stacks (default 10000)
  --rate N      events per second written (default 1000000)
  --seconds N   seconds of steady state after the build-up (default 10)
  --keep FILE   write the trace to FILE and keep it (default: a temporary
                file, removed at the end)
";

#[derive(Clone, Copy)]
struct Load {
    live: u64,
    stacks: u64,
    rate: u64,
    seconds: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => generate(&args[1..]),
        Some("model") => model_only(Path::new(&args[1])),
        Some("snap") => snapshots_only(Path::new(&args[1]), &args[2..]),
        _ => match parse(&args) {
            Ok(Some((load, keep))) => bench(load, keep),
            Ok(None) => {
                print!("{USAGE}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tui-bench: {e}\n{USAGE}");
                ExitCode::from(2)
            }
        },
    }
}

fn parse(args: &[String]) -> Result<Option<(Load, Option<PathBuf>)>, String> {
    let mut load = Load {
        live: 1_000_000,
        stacks: 10_000,
        rate: 1_000_000,
        seconds: 10,
    };
    let mut keep = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--live" => load.live = number("--live")?,
            "--stacks" => load.stacks = number("--stacks")?,
            "--rate" => load.rate = number("--rate")?,
            "--seconds" => load.seconds = number("--seconds")?,
            "--keep" => keep = Some(PathBuf::from(it.next().ok_or("--keep needs a file")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some((load, keep)))
}

/// The model options the dashboard uses.
fn options() -> ModelOptions {
    ModelOptions {
        thread_sites: true,
        site_details: true,
        ..ModelOptions::default()
    }
}

/// `ru_maxrss` (KiB) and user + system CPU seconds of this process.
fn usage() -> (u64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (ru.ru_maxrss as u64, secs(ru.ru_utime) + secs(ru.ru_stime))
}

/// The generator: `gen FILE LIVE STACKS RATE SECONDS`.
fn generate(args: &[String]) -> ExitCode {
    let n = |i: usize| -> u64 { args[i].parse().expect("a number") };
    let path = PathBuf::from(&args[0]);
    let load = Load {
        live: n(1),
        stacks: n(2),
        rate: n(3),
        seconds: n(4),
    };
    let mut file = std::fs::File::create(&path).expect("create the trace");
    let mut t = TraceBuilder::new();
    t.header(
        std::process::id() as u64,
        memtally_alloc::trace::mode::FULL,
        0,
        "/usr/bin/busy-server",
        &["busy-server", "--port", "8080"],
    )
    .clock(0, 0);
    // Stacks: 100 outer frames, each the parent of stacks/100 leaves; the
    // leaves are the allocation sites.
    for outer in 0..100u64 {
        t.frame(1 + outer, 0, 0x50_0000 + outer * 0x40);
    }
    for leaf in 0..load.stacks {
        t.frame(1000 + leaf, 1 + leaf % 100, 0x40_0000 + leaf * 0x10);
    }
    const THREADS: u64 = 4;
    for th in 0..THREADS {
        t.thread(th, 1000 + th, &format!("worker-{th}"), 0);
    }
    let start = Instant::now();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Slot i holds a block at 0x1000_0000 + i*64 once allocated.
    let slot = |i: u64| 0x1000_0000 + i * 64;
    let mut built = 0u64;
    let mut written = 0u64;
    let build_events = load.live;
    let total = build_events + load.rate * load.seconds;
    let mut last_clock = 0u64;
    while written < total {
        std::thread::sleep(Duration::from_millis(10));
        let now = start.elapsed().as_nanos() as u64 / 32 * 32;
        let due = (load.rate as u128 * start.elapsed().as_nanos() / 1_000_000_000) as u64;
        let due = due.min(total);
        let mut per_thread: Vec<Vec<_>> = (0..THREADS).map(|_| Vec::new()).collect();
        while written < due {
            let th = written % THREADS;
            let stack = 1000 + next() % load.stacks;
            let size = 16 + next() % 512;
            if built < load.live {
                per_thread[th as usize].push(alloc(now, slot(built), size, stack));
                built += 1;
                written += 1;
            } else {
                let victim = next() % load.live;
                per_thread[th as usize].push(free(now, slot(victim)));
                per_thread[th as usize].push(alloc(now, slot(victim), size, stack));
                written += 2;
            }
        }
        for (th, events) in per_thread.iter().enumerate() {
            if !events.is_empty() {
                t.events(th as u64, events);
            }
        }
        t.watermark(now.saturating_sub(1_000_000));
        if now - last_clock >= 100_000_000 {
            t.clock(now, now);
            t.memory(now, 64 << 20, 128 << 20);
            last_clock = now;
        }
        file.write_all(&t.take_bytes()).expect("write the trace");
    }
    let now = start.elapsed().as_nanos() as u64 / 32 * 32;
    t.clock(now, now).footer(now);
    file.write_all(&t.take_bytes()).expect("write the trace");
    ExitCode::SUCCESS
}

/// `model FILE`: reads the trace into the dashboard's model and prints the
/// peak RSS (KiB).
fn model_only(path: &Path) -> ExitCode {
    let a = Analysis::open_with(path, options()).expect("read the trace");
    std::hint::black_box(&a);
    println!("{}", usage().0);
    ExitCode::SUCCESS
}

/// `tui-bench snap FILE [N]`: reads a finished trace (one kept with
/// `--keep`) into the dashboard's model, then times N snapshots of it (30
/// by default) with nothing else running: the snapshot's own cost, for
/// profiling.
fn snapshots_only(path: &Path, rest: &[String]) -> ExitCode {
    let n: usize = rest.first().and_then(|a| a.parse().ok()).unwrap_or(30);
    let slot = memtally_tui::LiveSlot::new(Live::follow(path, options(), WriterWatch::Told));
    let live = slot.get();
    live.writer_gone();
    while !live.status().state.is_final() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = Target {
        live: slot,
        process: None,
    };
    let mut view = View::default();
    let app = App::default();
    let mut takes: Vec<Duration> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(view.take(&target, &app));
            t0.elapsed()
        })
        .collect();
    let first = takes.first().copied().unwrap_or_default();
    let slowest: Vec<(usize, u128)> = {
        let mut v: Vec<(usize, u128)> = takes.iter().map(|d| d.as_millis()).enumerate().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v.truncate(5);
        v
    };
    takes.sort();
    println!(
        "snapshots: {n}, the first {:.1} ms, p50 {:.1} ms, max {:.1} ms; the five slowest (number, ms): {slowest:?}",
        first.as_secs_f64() * 1e3,
        percentile(&takes, 0.5).as_secs_f64() * 1e3,
        takes.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn bench(load: Load, keep: Option<PathBuf>) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("tui-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = keep.clone().unwrap_or_else(|| dir.join("busy.mtt"));
    let _ = std::fs::remove_file(&path);
    let me = std::env::current_exe().expect("own path");
    println!(
        "tui-bench: {} live blocks over {} stacks, {} events/s for {} s after the build-up",
        load.live, load.stacks, load.rate, load.seconds
    );
    let (_, cpu0) = usage();
    let wall0 = Instant::now();
    let mut generator = Command::new(&me)
        .arg("gen")
        .arg(&path)
        .args([load.live, load.stacks, load.rate, load.seconds].map(|n| n.to_string()))
        .stdin(Stdio::null())
        .spawn()
        .expect("start the generator");
    let slot = memtally_tui::LiveSlot::new(Live::follow(&path, options(), WriterWatch::Told));
    let live = slot.get();
    let target = Target {
        live: slot,
        process: None,
    };
    let mut view = View::default();
    let mut app = App::default();
    let mut term = Terminal::new(TestBackend::new(120, 40)).expect("test terminal");
    let mut frames = Vec::new();
    let mut takes: Vec<Duration> = Vec::new();
    let mut lags: Vec<u64> = Vec::new();
    // How old the newest event drawn is when its frame is drawn: the
    // generator's clock starts after `wall0` (it is spawned then), so
    // this overestimates by its start-up time.
    let mut stale: Vec<Duration> = Vec::new();
    let mut generator_done = None;
    loop {
        let t0 = Instant::now();
        let (snap, status) = view.take(&target, &app);
        takes.push(t0.elapsed());
        term.draw(|f| ui::draw(f, &mut app, &snap, &status, Theme { color: true }))
            .expect("draw");
        frames.push(t0.elapsed());
        if generator_done.is_none() {
            if snap.duration_ns > 0 {
                let since = t0.duration_since(wall0).as_nanos() as u64;
                stale.push(Duration::from_nanos(since.saturating_sub(snap.duration_ns)));
            }
            let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            lags.push(written.saturating_sub(live.status().bytes));
            if let Ok(Some(_)) = generator.try_wait() {
                generator_done = Some(Instant::now());
                live.writer_gone();
            }
        }
        if live.status().state.is_final() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250).saturating_sub(t0.elapsed()));
    }
    let catch_up = generator_done.map_or(Duration::ZERO, |d| d.elapsed());
    let _ = generator.wait();
    let wall = wall0.elapsed().as_secs_f64();
    let (rss_kib, cpu1) = usage();
    let status = live.status();
    let (events, live_blocks) = {
        let m = live.model();
        (m.totals().events, m.live().len())
    };
    drop(target);
    let bytes = status.bytes;

    let mut slowest: Vec<(usize, Duration)> = frames.iter().copied().enumerate().collect();
    slowest.sort_by_key(|f| std::cmp::Reverse(f.1));
    frames.sort();
    takes.sort();
    lags.sort();
    stale.sort();
    let model_rss: u64 = Command::new(&me)
        .arg("model")
        .arg(&path)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0);
    println!(
        "trace: {:.1} MiB, {} events, {} live blocks at the end; state {:?}",
        bytes as f64 / (1 << 20) as f64,
        events,
        live_blocks,
        status.state
    );
    println!(
        "frames: {} drawn; snapshot + draw p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 50 ms)",
        frames.len(),
        percentile(&frames, 0.5).as_secs_f64() * 1e3,
        percentile(&frames, 0.99).as_secs_f64() * 1e3,
        frames.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "frames: the snapshot alone p50 {:.1} ms, max {:.1} ms",
        percentile(&takes, 0.5).as_secs_f64() * 1e3,
        takes.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "frames: the five slowest (frame number, ms): {:?}",
        slowest
            .iter()
            .take(5)
            .map(|(i, f)| (*i, (f.as_secs_f64() * 1e3).round() as u64))
            .collect::<Vec<_>>()
    );
    println!(
        "ingest: trailing the file by p50 {:.1} MiB, max {:.1} MiB while it grew; done {:.2} s after the generator stopped",
        lags.get(lags.len() / 2).copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        lags.last().copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        catch_up.as_secs_f64()
    );
    println!(
        "freshness: the newest event drawn was p50 {:.0} ms, max {:.0} ms old when drawn; with a frame every 250 ms, an event is on screen within {:.0} ms (target: 1 s)",
        percentile(&stale, 0.5).as_secs_f64() * 1e3,
        stale.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        stale.last().copied().unwrap_or_default().as_secs_f64() * 1e3 + 250.0
    );
    println!(
        "cpu: {:.2} cores over {:.1} s (target <= 1)",
        (cpu1 - cpu0) / wall,
        wall
    );
    println!(
        "memory: dashboard peak RSS {:.0} MiB, the model alone {:.0} MiB: ratio {:.2} (target <= 2)",
        rss_kib as f64 / 1024.0,
        model_rss as f64 / 1024.0,
        rss_kib as f64 / model_rss.max(1) as f64
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    ExitCode::SUCCESS
}
