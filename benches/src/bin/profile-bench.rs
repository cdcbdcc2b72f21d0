//! `profile-bench`: what recording costs, against heaptrack.
//!
//! It builds the C workload in `benches/profiler/workload.c` (two threads,
//! 5 million allocations each, sizes 16 B to 4 KiB, stacks 6 to 13 frames
//! deep), then runs it, each configuration in turn and repeatedly:
//! - `bare`: under `libmemtally.so` with recording off;
//! - `full`: `MEMTALLY=mode=full`;
//! - `sampled`: `MEMTALLY=mode=sampled` (512 KiB mean interval);
//! - `heaptrack`: Debian's heaptrack, which records every event;
//!
//! and reports the median wall and CPU time of each as a ratio to `bare`,
//! the trace sizes, and how long `memtally report`, `flame` and `leaks`
//! take on the full trace against `heaptrack_print` on heaptrack's. Run through cargo it first
//! builds what it needs:
//!
//! ```text
//! cargo run --release -p memtally-benches --bin profile-bench -- [--reps N] [--iters N]
//! ```

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use memtally_benches::measure::{Measurement, run_measured};
use memtally_benches::report::median;

const USAGE: &str = "\
usage: profile-bench [--reps N] [--iters N] [--no-heaptrack] [--no-build] [--keep DIR]

  --reps N        repetitions of each configuration (default 3)
  --iters N       operations per thread (default 5000000)
  --no-heaptrack  skip heaptrack even if it is installed
  --no-build      do not run cargo build first
  --keep DIR      write the traces to DIR and keep them (default: a temporary
                  directory, removed at the end)
";

struct Options {
    reps: usize,
    iters: u64,
    heaptrack: bool,
    build: bool,
    keep: Option<PathBuf>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        reps: 3,
        iters: 5_000_000,
        heaptrack: true,
        build: true,
        keep: None,
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--reps" => {
                o.reps = value("--reps")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--reps must be a positive integer")?
            }
            "--iters" => {
                o.iters = value("--iters")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--iters must be a positive integer")?
            }
            "--no-heaptrack" => o.heaptrack = false,
            "--no-build" => o.build = false,
            "--keep" => o.keep = Some(PathBuf::from(value("--keep")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let options = match parse(env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("profile-bench: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("profile-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn exe_dir() -> Result<PathBuf, String> {
    let exe = env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    Ok(exe
        .parent()
        .ok_or("executable has no directory")?
        .to_path_buf())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The medians of a configuration's runs.
struct Row {
    name: &'static str,
    wall: f64,
    cpu: f64,
    rss_kib: u64,
    trace_bytes: u64,
}

fn run(o: &Options) -> Result<(), String> {
    if o.build {
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "memtally-preload",
                "-p",
                "memtally",
            ])
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("cargo build failed".into());
        }
    }
    let dir = exe_dir()?;
    let lib = dir.join("libmemtally.so");
    let cli = dir.join("memtally");
    if !lib.exists() {
        return Err(format!(
            "{} is missing (cargo build --release -p memtally-preload)",
            lib.display()
        ));
    }
    let work = match &o.keep {
        Some(d) => d.clone(),
        None => env::temp_dir().join(format!("memtally-profile-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiler/workload.c");
    let program = work.join("workload");
    let status = Command::new("cc")
        .args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !status.success() {
        return Err("compiling the workload failed".into());
    }
    let heaptrack = o.heaptrack && have("heaptrack") && have("heaptrack_print");
    if o.heaptrack && !heaptrack {
        eprintln!("profile-bench: heaptrack is not installed; its rows are skipped");
    }
    let iters = o.iters.to_string();
    let mut configs: Vec<&'static str> = vec!["bare", "full", "sampled"];
    if heaptrack {
        configs.push("heaptrack");
    }
    let timeout = Duration::from_secs(600);
    let mut runs: Vec<(&'static str, Measurement, u64)> = Vec::new();
    for rep in 0..o.reps {
        for i in 0..configs.len() {
            let name = configs[(i + rep) % configs.len()];
            let trace = work.join(format!("{name}.{rep}"));
            let mut cmd = match name {
                "heaptrack" => {
                    let mut c = Command::new("heaptrack");
                    c.arg("-o").arg(&trace).arg(&program).arg(&iters);
                    c
                }
                _ => {
                    let mut c = Command::new(&program);
                    c.arg(&iters).env("LD_PRELOAD", &lib);
                    if name != "bare" {
                        let mode = if name == "full" { "full" } else { "sampled" };
                        c.env(
                            "MEMTALLY",
                            format!("mode={mode},out={}.mtt", trace.display()),
                        );
                    }
                    c
                }
            };
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let m = run_measured(&mut cmd, timeout)?;
            if !m.outcome.is_success() {
                return Err(format!("{name} run {rep} failed: {}", m.outcome.describe()));
            }
            let bytes = trace_file(&work, name, rep)
                .map(|p| file_size(&p))
                .unwrap_or(0);
            eprintln!(
                "profile-bench: {name:<9} rep {rep}: {:.2} s wall, {:.2} s CPU, trace {:.1} MB",
                m.wall_s,
                m.user_s + m.sys_s,
                bytes as f64 / 1e6
            );
            runs.push((name, m, bytes));
        }
    }
    let rows: Vec<Row> = configs
        .iter()
        .map(|&name| {
            let of = |f: fn(&Measurement) -> f64| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.0 == name)
                    .map(|r| f(&r.1))
                    .collect();
                median(&v).unwrap_or(f64::NAN)
            };
            let bytes: Vec<f64> = runs
                .iter()
                .filter(|r| r.0 == name)
                .map(|r| r.2 as f64)
                .collect();
            Row {
                name,
                wall: of(|m| m.wall_s),
                cpu: of(|m| m.user_s + m.sys_s),
                rss_kib: of(|m| m.max_rss_kib as f64) as u64,
                trace_bytes: median(&bytes).unwrap_or(0.0) as u64,
            }
        })
        .collect();
    let bare = rows.iter().find(|r| r.name == "bare").expect("bare row");
    println!(
        "profile-bench: {} operations x 2 threads, median of {} runs; ratios are config / bare\n",
        o.iters, o.reps
    );
    println!("| config | wall (s) | x bare | CPU (s) | x bare CPU | peak RSS (MiB) | trace (MB) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {:.3} | {:.2} | {:.3} | {:.2} | {:.1} | {:.1} |",
            r.name,
            r.wall,
            r.wall / bare.wall,
            r.cpu,
            r.cpu / bare.cpu,
            r.rss_kib as f64 / 1024.0,
            r.trace_bytes as f64 / 1e6
        );
    }
    // Analysis time: memtally report, flame and leaks on the full trace
    // against heaptrack_print.
    let full_trace = trace_file(&work, "full", 0);
    let mut analysis = Vec::new();
    if let Some(t) = &full_trace
        && cli.exists()
    {
        let svg = work.join("flame.svg");
        for (name, args) in [
            ("memtally report", vec!["report".as_ref(), t.as_os_str()]),
            (
                "memtally flame",
                vec![
                    "flame".as_ref(),
                    t.as_os_str(),
                    "-o".as_ref(),
                    svg.as_os_str(),
                ],
            ),
            ("memtally leaks", vec!["leaks".as_ref(), t.as_os_str()]),
        ] {
            let mut c = Command::new(&cli);
            c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            let m = run_measured(&mut c, timeout)?;
            analysis.push((name, m, file_size(t)));
        }
    }
    if heaptrack && let Some(t) = trace_file(&work, "heaptrack", 0) {
        let mut c = Command::new("heaptrack_print");
        c.arg(&t).stdout(Stdio::null()).stderr(Stdio::null());
        let m = run_measured(&mut c, timeout)?;
        analysis.push(("heaptrack_print", m, file_size(&t)));
    }
    if !analysis.is_empty() {
        println!("\n| analysis | wall (s) | CPU (s) | peak RSS (MiB) | input (MB) | outcome |");
        println!("| --- | ---: | ---: | ---: | ---: | --- |");
        for (name, m, bytes) in &analysis {
            println!(
                "| {name} | {:.3} | {:.3} | {:.1} | {:.1} | {} |",
                m.wall_s,
                m.user_s + m.sys_s,
                m.max_rss_kib as f64 / 1024.0,
                *bytes as f64 / 1e6,
                m.outcome.describe()
            );
        }
    }
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// The trace a run of configuration `name` wrote, if any.
fn trace_file(dir: &Path, name: &str, rep: usize) -> Option<PathBuf> {
    let prefix = format!("{name}.{rep}");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix) && f != prefix)
        })
}
