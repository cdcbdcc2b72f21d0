//! `device-bench`: what the gpu-shim costs (issue 8's benchmark): each
//! intercepted device allocation and free over the stand-in driver's own
//! cost, and the `dlsym` lookups every program makes through the shim's
//! hook, CUDA or not.
//!
//! It builds the stand-in driver (`tests/c/gpu/fake_cuda.c`) and
//! `benches/device/device_loop.c` with `cc`, then runs each loop bare, with
//! `libmemtally.so` preloaded and recording off (`MEMTALLY=mode=off`: the
//! wrappers' bookkeeping only), and recording every event
//! (`mode=full`), rotating the order over the repetitions; it prints the
//! median nanoseconds per iteration and the ratios to the bare run.
//!
//! ```text
//! cargo build --release -p memtally-preload
//! cargo run --release -p memtally-benches --bin device-bench [-- REPS [N]]
//! ```
//!
//! `device-bench heap [REPS]` answers the other half of the benchmark: what
//! the shim costs the heap of a program that uses no device API. It builds
//! `libmemtally.so` without the shim (`--no-default-features`, into
//! `target/no-gpu`), compares the machine code of the allocation entry
//! points of both libraries (with `objdump`), and times the recording
//! benchmark's workload (`benches/profiler/workload.c`, 2 threads x 2
//! million operations) under each, recording off, alternating.
//!
//! The stand-in allocates with `mmap` and frees with `munmap` (a few
//! microseconds, as a real driver's `cuMemAlloc` is a system call and
//! more); the rows marked "no mmap" run it with `FAKE_CUDA_NO_MEMORY=1`
//! (addresses with nothing behind them, no system call), where what the
//! shim adds is not lost in `mmap`'s noise.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cc(dir: &Path, args: &[&str]) {
    let ok = Command::new("cc")
        .current_dir(dir)
        .args(args)
        .status()
        .expect("cc")
        .success();
    assert!(ok, "cc {args:?}");
}

fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let lib = exe.parent().expect("target dir").join("libmemtally.so");
    assert!(
        lib.exists(),
        "{} is not built: cargo build --release -p memtally-preload",
        lib.display()
    );
    lib
}

/// One run of the loop: nanoseconds per iteration.
fn run(dir: &Path, lib: Option<&Path>, mode: &str, what: &str, n: u64, memory: bool) -> f64 {
    let mut c = Command::new(dir.join("device_loop"));
    c.current_dir(dir)
        .env("LD_LIBRARY_PATH", dir)
        .env("FAKE_CUDA_NO_MEMORY", if memory { "0" } else { "1" })
        .args([what, &n.to_string()]);
    if let Some(lib) = lib {
        let out = dir.join("bench.mtt");
        c.env("LD_PRELOAD", lib)
            .env("MEMTALLY", format!("mode={mode},out={}", out.display()));
    }
    let out = c.output().expect("device_loop");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ns per iteration")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The allocation entry points whose code `heap` compares.
const ENTRY_POINTS: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "malloc_usable_size",
    "_Znwm",
    "_ZdlPv",
    "_ZdlPvm",
    "_Znam",
    "_ZdaPv",
];

/// The instructions of `symbol` in `lib`, addresses taken out (the same
/// code at another place reads the same).
fn code_of(lib: &Path, symbol: &str) -> Option<Vec<String>> {
    let table = Command::new("readelf").arg("-sW").arg(lib).output().ok()?;
    let table = String::from_utf8_lossy(&table.stdout);
    let (start, size) = table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[7] == symbol && f[3] == "FUNC").then(|| {
            (
                u64::from_str_radix(f[1], 16).unwrap_or(0),
                f[2].parse::<u64>().unwrap_or(0),
            )
        })
    })?;
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(format!("--start-address={start}"))
        .arg(format!("--stop-address={}", start + size))
        .arg(lib)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.split_once(":\t").map(|(_, i)| i))
            .map(|i| {
                // Drop absolute targets and comments: they move with the
                // code around.
                i.split(['<', '#'])
                    .next()
                    .unwrap_or("")
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|w| !(w.len() >= 4 && w.chars().all(|c| c.is_ascii_hexdigit())))
                    .map(|w| if w.contains("(%rip)") { "RIP" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
    )
}

/// `device-bench heap [REPS]`.
fn heap(reps: usize) {
    let with = library();
    let target = with.parent().and_then(Path::parent).expect("target dir");
    let no_gpu_dir = target.join("no-gpu");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "memtally-preload",
            "--no-default-features",
        ])
        .env("CARGO_TARGET_DIR", &no_gpu_dir)
        .status()
        .expect("cargo")
        .success();
    assert!(ok, "building libmemtally.so without the shim failed");
    let without = no_gpu_dir.join("release/libmemtally.so");
    println!(
        "device-bench heap: {} against {}",
        with.display(),
        without.display()
    );
    for symbol in ENTRY_POINTS {
        match (code_of(&with, symbol), code_of(&without, symbol)) {
            (Some(a), Some(b)) => println!(
                "  {symbol}: {} instructions, {}",
                a.len(),
                if a == b { "identical" } else { "DIFFERENT" }
            ),
            _ => println!("  {symbol}: not compared (objdump or the symbol missing)"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("memtally-heap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = root.join("benches/profiler/workload.c");
    cc(
        &dir,
        &[
            "-O2",
            "-pthread",
            source.to_str().unwrap(),
            "-o",
            "workload",
        ],
    );
    let libs = [("with the shim", &with), ("without", &without)];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for rep in 0..reps {
        for k in 0..2 {
            let i = (k + rep) % 2;
            let t0 = std::time::Instant::now();
            let ok = Command::new(dir.join("workload"))
                .args(["2000000", "2"])
                .env("LD_PRELOAD", libs[i].1)
                .env("MEMTALLY", "mode=off")
                .stdout(std::process::Stdio::null())
                .status()
                .expect("workload")
                .success();
            assert!(ok, "the workload failed");
            times[i].push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let m: Vec<f64> = times.iter().cloned().map(median).collect();
    for (i, (label, _)) in libs.iter().enumerate() {
        let mut sorted = times[i].clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "  workload, {label}: median {:.1} ms (min {:.1}, max {:.1}) over {reps} runs",
            m[i],
            sorted[0],
            sorted[sorted.len() - 1]
        );
    }
    println!("  with / without: {:.3}", m[0] / m[1]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("heap") {
        args.next();
        heap(args.next().map_or(9, |a| a.parse().expect("REPS")));
        return;
    }
    let reps: usize = args.next().map_or(7, |a| a.parse().expect("REPS"));
    let n: u64 = args.next().map_or(100_000, |a| a.parse().expect("N"));
    let lib = library();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("memtally-device-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = root.join("tests/c/gpu/fake_cuda.c");
    let program = root.join("benches/device/device_loop.c");
    cc(
        &dir,
        &[
            "-O2",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Wl,-Bsymbolic",
            "-Wl,-soname,libcuda.so.1",
            "-o",
            "libcuda.so.1",
            fake.to_str().unwrap(),
            "-pthread",
        ],
    );
    let _ = std::fs::remove_file(dir.join("libcuda.so"));
    std::os::unix::fs::symlink("libcuda.so.1", dir.join("libcuda.so")).unwrap();
    cc(
        &dir,
        &[
            "-O2",
            program.to_str().unwrap(),
            "-o",
            "device_loop",
            "-L.",
            "-lcuda",
            "-ldl",
        ],
    );
    let configs: [(&str, Option<&Path>, &str); 3] = [
        ("bare", None, ""),
        ("preloaded, off", Some(&lib), "off"),
        ("preloaded, full", Some(&lib), "full"),
    ];
    println!("device-bench: {reps} reps of {n} iterations, medians in ns per iteration");
    println!(
        "{:<44} {:>10} {:>16} {:>16} {:>10} {:>10}",
        "loop", "bare", "preloaded, off", "preloaded, full", "off/bare", "full/bare"
    );
    for (what, label, iterations, memory) in [
        ("alloc", "cuMemAlloc_v2 + cuMemFree_v2 (PLT), mmap", n, true),
        ("proc", "the same via cuGetProcAddress_v2, mmap", n, true),
        ("alloc", "the PLT pair, no mmap", n * 10, false),
        ("proc", "the cuGetProcAddress pair, no mmap", n * 10, false),
        ("dlsym", "dlsym(libm, \"cos\")", n * 10, true),
    ] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        for rep in 0..reps {
            for k in 0..configs.len() {
                let i = (k + rep) % configs.len();
                let (_, lib, mode) = configs[i];
                times[i].push(run(&dir, lib, mode, what, iterations, memory));
            }
        }
        let m: Vec<f64> = times.into_iter().map(median).collect();
        println!(
            "{:<44} {:>10.1} {:>16.1} {:>16.1} {:>10.3} {:>10.3}",
            label,
            m[0],
            m[1],
            m[2],
            m[1] / m[0],
            m[2] / m[0]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
