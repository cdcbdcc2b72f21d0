//! `alloc-bench`: the driver of the workload harness.
//!
//! It runs every selected workload under every selected allocator, each run in
//! a fresh `mt-bench-<allocator>` worker process so that peak RSS and CPU time
//! are the worker's own, and reads those from the kernel with `wait4`. Run
//! through cargo (`cargo run --release -p memtally-benches --bin alloc-bench`)
//! it first builds the workers, so one command works from a fresh clone. See
//! `--help` for the options and [`memtally_benches::report`] for how the
//! medians, ratios and geometric means are computed.

use std::env;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use memtally_benches::SCALE_ENV;
use memtally_benches::cli::{self, Options};
use memtally_benches::measure::run_measured;
use memtally_benches::report::{self, Run};

fn main() -> ExitCode {
    let options = match cli::parse_args(env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("alloc-bench: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    if options.help {
        print!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("alloc-bench: {message}");
            ExitCode::from(1)
        }
    }
}

/// Runs the whole comparison; returns whether every worker run succeeded.
fn run(options: &Options) -> Result<bool, String> {
    let started = Instant::now();
    let dir = worker_dir()?;
    let target = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", dir.display()))?
        .to_path_buf();
    let profile = dir.file_name().unwrap_or_default().to_os_string();
    let memtally_builds: Vec<&str> = options
        .allocators
        .iter()
        .map(String::as_str)
        .filter(|a| cli::is_memtally_build(a))
        .collect();
    if options.build {
        build_workers(None)?;
        for layout in 0..options.layouts {
            for &build in &memtally_builds {
                if let Some(own) = build_dir(&target, build, layout) {
                    build_workers(Some((&own, build, layout)))?;
                }
            }
        }
    }
    // A worker's binary: in a target directory of its own for a build with
    // flags of its own, else beside this executable.
    let locate = |a: &str, layout: usize| -> Result<PathBuf, String> {
        let own = build_dir(&target, a, layout);
        let path = match &own {
            Some(own) => own.join(&profile).join(worker_file("memtally")),
            None => dir.join(worker_file(a)),
        };
        if path.is_file() {
            return Ok(path);
        }
        let how = match &own {
            Some(own) => format!(
                "RUSTFLAGS='{}' CARGO_TARGET_DIR={} cargo build --release -p memtally-benches --bin mt-bench-memtally",
                build_flags(a, layout),
                own.display()
            ),
            None => "cargo build --release -p memtally-benches --bins".to_string(),
        };
        Err(format!(
            "worker {} not found; build it with `{how}`",
            path.display()
        ))
    };
    // (name, worker, MEMTALLY for a --variant)
    let mut workers: Vec<(String, PathBuf, Option<&str>)> = Vec::new();
    for a in &options.allocators {
        let layouts = if cli::is_memtally_build(a) {
            options.layouts
        } else {
            1
        };
        for layout in 0..layouts {
            workers.push((cli::layout_name(a, layout), locate(a, layout)?, None));
        }
    }
    for (name, settings) in &options.variants {
        workers.push((name.clone(), locate("memtally", 0)?, Some(settings)));
    }
    let timeout = Duration::from_secs(options.timeout_secs);
    let total = options.workloads.len() * workers.len() * options.reps;
    let mut runs = Vec::with_capacity(total);
    for workload in &options.workloads {
        for rep in 0..options.reps {
            // Rotate the allocator order every repetition, so that none of them
            // always runs first (cold caches) or always right after a given
            // neighbour, which spreads the noise of a shared machine evenly.
            for k in 0..workers.len() {
                let (allocator, path, settings) = &workers[(k + rep) % workers.len()];
                let allocator = allocator.as_str();
                let how = Worker {
                    path,
                    settings: *settings,
                    scale: options.scale,
                    timeout,
                };
                let run = measure(&how, workload, allocator, rep)?;
                eprintln!(
                    "[{:>3}/{total}] {workload:<13} {allocator:<11} rep {}: {}",
                    runs.len() + 1,
                    rep + 1,
                    describe(&run)
                );
                runs.push(run);
            }
        }
    }
    let workload_names: Vec<&str> = options.workloads.iter().map(String::as_str).collect();
    let allocator_names = options.names_run();
    let baseline = options.baseline.as_str();
    // The main table is layout 0's (the normal builds); the other layouts
    // only enter the table of ratios by layout.
    let summary = report::summarize(&workload_names, &allocator_names, baseline, &runs);
    if let Some(path) = &options.csv {
        std::fs::write(path, report::render_csv(&summary))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if options.json {
        print!("{}", report::render_json(&summary, &runs));
    } else {
        let scale = match options.scale {
            Some(scale) => scale.to_string(),
            None => env::var(SCALE_ENV).unwrap_or_else(|_| "1".to_string()),
        };
        println!(
            "alloc-bench: median of {} rep(s) per cell, scale {scale}; ratios are allocator/{baseline} (below 1 is better); spread is (max - min) / median of the times\n",
            options.reps
        );
        print!("{}", report::render_table(&summary));
        if options.layouts > 1 {
            print!(
                "{}",
                report::render_layouts(
                    &workload_names,
                    &memtally_builds,
                    baseline,
                    options.layouts,
                    &runs
                )
            );
        }
        println!(
            "\ntotal harness wall time: {elapsed:.1} s for {} worker runs",
            runs.len()
        );
    }
    Ok(summary.failures == 0)
}

/// Builds the worker binaries with the cargo that started us, so that
/// `cargo run --bin alloc-bench` alone is enough from a fresh clone. With
/// `variant` (a target directory, `memtally` or `unchecked`, a code layout),
/// builds memtally's worker alone there with that build's flags: the checks
/// compiled out for `unchecked` (`--cfg memtally_unchecked`), the layout's
/// code alignment ([`cli::LAYOUT_FLAGS`]). Each variant has a target
/// directory of its own, so that its flags never reach the real build.
fn build_workers(variant: Option<(&Path, &str, usize)>) -> Result<(), String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    if !manifest.is_file() {
        // The binary was moved away from its sources; use the workers beside it.
        eprintln!(
            "alloc-bench: {} is gone, not building the workers",
            manifest.display()
        );
        return Ok(());
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .args(["build", "-p", "memtally-benches", "--manifest-path"])
        .arg(&manifest);
    match variant {
        None => {
            command.arg("--bins");
        }
        Some((target, build, layout)) => {
            let mut flags = env::var("RUSTFLAGS").unwrap_or_default();
            flags.push(' ');
            flags.push_str(&build_flags(build, layout));
            command
                .args(["--bin", "mt-bench-memtally", "--target-dir"])
                .arg(target)
                .env("RUSTFLAGS", flags.trim());
        }
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "alloc-bench: this is a debug build, so the workers are too; use --release for real numbers"
        );
    } else {
        command.arg("--release");
    }
    // Cargo's output goes to stderr so stdout stays clean for --json.
    command.stdout(io::stderr());
    let status = command
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building the workers failed ({status})"))
    }
}

/// The `RUSTFLAGS` memtally's `build` (`memtally` or `unchecked`) is built
/// with in code layout `layout`, beyond the caller's own.
fn build_flags(build: &str, layout: usize) -> String {
    let mut flags = cli::LAYOUT_FLAGS[layout].to_string();
    if build == "unchecked" {
        flags.push_str(" --cfg memtally_unchecked");
    }
    flags.trim().to_string()
}

/// The target directory of its own that memtally's `build` in code layout
/// `layout` is built in, in `target`: `target/unchecked` for the unchecked
/// build in the normal layout, `target/layout-2` and
/// `target/layout-2-unchecked` in layout 2; `None` for the normal memtally
/// build and the other allocators, whose workers are beside this executable.
fn build_dir(target: &Path, build: &str, layout: usize) -> Option<PathBuf> {
    match (build, layout) {
        ("unchecked", 0) => Some(target.join("unchecked")),
        ("unchecked", k) => Some(target.join(format!("layout-{k}-unchecked"))),
        ("memtally", 0) => None,
        ("memtally", k) => Some(target.join(format!("layout-{k}"))),
        _ => None,
    }
}

/// The file name of allocator `a`'s worker.
fn worker_file(a: &str) -> String {
    format!("mt-bench-{a}{}", env::consts::EXE_SUFFIX)
}

/// The directory holding this executable, where cargo also puts the workers.
fn worker_dir() -> Result<PathBuf, String> {
    let exe = env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))
}

/// How to run a worker: its binary, the `MEMTALLY` settings of a
/// `--variant` (others inherit the environment's), the scale, the timeout.
struct Worker<'a> {
    path: &'a Path,
    settings: Option<&'a str>,
    scale: Option<f64>,
    timeout: Duration,
}

/// Runs one worker and measures it.
fn measure(worker: &Worker, workload: &str, allocator: &str, rep: usize) -> Result<Run, String> {
    let mut command = Command::new(worker.path);
    command
        .arg(workload)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(scale) = worker.scale {
        command.env(SCALE_ENV, scale.to_string());
    }
    if let Some(settings) = worker.settings {
        command.env("MEMTALLY", settings);
    }
    let m = run_measured(&mut command, worker.timeout)?;
    Ok(Run {
        workload: workload.to_string(),
        allocator: allocator.to_string(),
        rep,
        outcome: m.outcome,
        wall_s: m.wall_s,
        user_s: m.user_s,
        sys_s: m.sys_s,
        max_rss_kib: m.max_rss_kib,
        minor_faults: m.minor_faults,
        major_faults: m.major_faults,
    })
}

/// One progress line's worth of a run.
fn describe(run: &Run) -> String {
    if run.outcome.is_success() {
        format!(
            "{:.3} s, {:.1} MiB",
            run.wall_s,
            run.max_rss_kib as f64 / 1024.0
        )
    } else {
        format!(
            "FAILED ({}) after {:.3} s",
            run.outcome.describe(),
            run.wall_s
        )
    }
}
