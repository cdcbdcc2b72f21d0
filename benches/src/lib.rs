//! Workload harness comparing memtally with the system allocator, mimalloc and
//! jemalloc.
//!
//! The library holds everything that does not depend on the allocator: the
//! workloads (modelled on the mimalloc-bench suite, see [`workloads`]), the
//! driver's option parsing ([`cli`]) and its statistics and tables
//! ([`report`]). Each `mt-bench-*` worker binary only installs its
//! `#[global_allocator]` and calls [`worker_main`], so every workload runs in a
//! fresh process per allocator and the peak RSS the driver reads is its own.

pub mod block;
pub mod cli;
pub mod measure;
pub mod replay_worker;
pub mod report;
pub mod rng;
pub mod workloads;

use std::process::ExitCode;

/// Environment variable holding the scale factor applied to every workload's
/// iteration counts (default `1.0`); the driver's `--scale` sets it.
pub const SCALE_ENV: &str = "MT_BENCH_SCALE";

/// A named workload.
pub struct Workload {
    /// The name used on the command line and in reports.
    pub name: &'static str,
    /// One line saying what the workload stresses.
    pub summary: &'static str,
    run: fn(f64),
}

impl Workload {
    /// Runs the workload at `scale` times its default size.
    pub fn run(&self, scale: f64) {
        (self.run)(scale);
    }
}

/// Every workload, in the order the reports list them.
pub static WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson",
        summary: "server churn; threads hand their blocks to fresh threads",
        run: workloads::larson::run,
    },
    Workload {
        name: "xmalloc",
        summary: "producer allocates, consumer frees (remote frees)",
        run: workloads::xmalloc::run,
    },
    Workload {
        name: "cache-scratch",
        summary: "passive false sharing of small objects",
        run: workloads::cache_scratch::run,
    },
    Workload {
        name: "glibc-simple",
        summary: "single-thread batches of fixed small sizes (fast path)",
        run: workloads::glibc_simple::run,
    },
    Workload {
        name: "glibc-thread",
        summary: "per-thread random replacement, mostly small sizes",
        run: workloads::glibc_thread::run,
    },
    Workload {
        name: "mstress",
        summary: "mixed sizes, shared transfer array, recreated threads",
        run: workloads::mstress::run,
    },
    Workload {
        name: "rptest",
        summary: "power-law sizes 16 B-16 KiB, some cross-thread frees",
        run: workloads::rptest::run,
    },
    Workload {
        name: "alloc-test1",
        summary: "skewed sizes with short, medium and long lifetimes, 1 thread",
        run: workloads::alloc_test::run_single,
    },
    Workload {
        name: "alloc-testN",
        summary: "alloc-test1's work on each of 2 threads",
        run: workloads::alloc_test::run_threads,
    },
    Workload {
        name: "sh6bench",
        summary: "size ramps freed LIFO, FIFO and interleaved",
        run: workloads::sh6bench::run,
    },
    Workload {
        name: "malloc-large",
        summary: "5-25 MiB blocks with a small live set",
        run: workloads::malloc_large::run,
    },
];

/// The names of all workloads, in report order.
pub fn workload_names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|w| w.name).collect()
}

/// Looks a workload up by name.
pub fn find_workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// Runs the named workload at the scale given by [`SCALE_ENV`] (default 1).
pub fn run_workload(name: &str) -> Result<(), String> {
    let scale = match std::env::var(SCALE_ENV) {
        Ok(text) => parse_scale(&text).map_err(|e| format!("{SCALE_ENV}: {e}"))?,
        Err(std::env::VarError::NotPresent) => 1.0,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{SCALE_ENV} is not valid UTF-8"));
        }
    };
    run_workload_scaled(name, scale)
}

/// Runs the named workload at `scale` times its default size.
pub fn run_workload_scaled(name: &str, scale: f64) -> Result<(), String> {
    let workload = find_workload(name).ok_or_else(|| {
        format!(
            "unknown workload {name:?}; known: {}",
            workload_names().join(", ")
        )
    })?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(format!("scale must be a positive number, not {scale}"));
    }
    workload.run(scale);
    Ok(())
}

/// Parses a scale factor: a finite number greater than zero.
pub fn parse_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        _ => Err(format!("scale must be a positive number, not {text:?}")),
    }
}

/// The whole of a worker binary's `main`: runs the workload named by the only
/// argument and exits 0, or prints why not and exits 1 (workload error) or 2
/// (usage error). `--list` prints the workloads.
pub fn worker_main(allocator: &str) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for workload in WORKLOADS {
                println!("{:<14} {}", workload.name, workload.summary);
            }
            ExitCode::SUCCESS
        }
        [name] if !name.starts_with('-') => match run_workload(name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("mt-bench-{allocator}: {message}");
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!(
                "usage: mt-bench-{allocator} <workload> | --list   (workloads: {})",
                workload_names().join(", ")
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{WORKLOADS, find_workload, parse_scale, run_workload_scaled};
    use std::time::Instant;

    /// Every workload runs to completion at 1% of its size. This is the check
    /// that the workloads are sound (no panics, no double frees under the
    /// test's system allocator), not a benchmark.
    #[test]
    fn every_workload_runs_at_small_scale() {
        for workload in WORKLOADS {
            let start = Instant::now();
            run_workload_scaled(workload.name, 0.01).unwrap();
            eprintln!("{:<14} {:?}", workload.name, start.elapsed());
        }
    }

    #[test]
    fn names_are_unique_and_unknown_names_are_rejected() {
        for (i, workload) in WORKLOADS.iter().enumerate() {
            assert!(WORKLOADS[..i].iter().all(|w| w.name != workload.name));
            assert!(find_workload(workload.name).is_some());
        }
        let err = run_workload_scaled("no-such-workload", 1.0).unwrap_err();
        assert!(err.contains("unknown workload"), "{err}");
        assert!(run_workload_scaled("larson", 0.0).is_err());
    }

    #[test]
    fn scales_must_be_positive_numbers() {
        assert_eq!(parse_scale("0.5"), Ok(0.5));
        assert_eq!(parse_scale(" 2 "), Ok(2.0));
        for bad in ["0", "-1", "abc", "", "inf", "NaN"] {
            assert!(parse_scale(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
