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

fn main() {
    let mut args = std::env::args().skip(1);
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
