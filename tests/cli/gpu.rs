//! Device memory through the gpu-shim, against stand-ins built here
//! (`tests/c/gpu/`: a fake `libcuda.so.1` that hands out host memory and
//! keeps its own ledger, a mini CUDA runtime that reaches the driver only
//! through `cuGetProcAddress_v2`, as the real one does). Each stand-in is
//! built with `-Wl,-Bsymbolic` and hidden visibility, so that what it hands
//! out is its own functions, never ours (else these would pass vacuously).

use super::*;

fn gpu_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c/gpu")
        .join(name)
}

fn cc(dir: &Path, args: &[&str]) {
    let ok = Command::new("cc")
        .current_dir(dir)
        .args(args)
        .status()
        .expect("cc is not installed; .ci/run installs it")
        .success();
    assert!(ok, "cc {args:?}");
}

/// Builds the fake driver and the mini runtime (shared and static) in `dir`.
fn build_stand_ins(dir: &Path) {
    let fake = gpu_source("fake_cuda.c");
    let rt = gpu_source("mini_cudart.c");
    let (fake, rt) = (fake.to_str().unwrap(), rt.to_str().unwrap());
    let hidden = [
        "-O1",
        "-g",
        "-shared",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wl,-Bsymbolic",
    ];
    let mut a = hidden.to_vec();
    a.extend([
        "-Wl,-soname,libcuda.so.1",
        "-o",
        "libcuda.so.1",
        fake,
        "-pthread",
    ]);
    cc(dir, &a);
    std::os::unix::fs::symlink("libcuda.so.1", dir.join("libcuda.so")).unwrap();
    let mut a = hidden.to_vec();
    a.extend(["-o", "libcudart_mini.so", rt, "-ldl", "-pthread"]);
    cc(dir, &a);
    cc(
        dir,
        &[
            "-O1",
            "-g",
            "-c",
            "-fPIC",
            "-fvisibility=hidden",
            "-o",
            "mini_cudart.o",
            rt,
        ],
    );
    let ok = Command::new("ar")
        .current_dir(dir)
        .args(["rcs", "libcudart_mini.a", "mini_cudart.o"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Runs `exe` under `memtally run` with the stand-ins on the library path;
/// the report's JSON and the fake driver's ledger lines.
fn record(dir: &Path, lib: &Path, exe: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let trace = dir.join(format!("{exe}.mtt"));
    let ledger = dir.join(format!("{exe}.ledger"));
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(dir)
        .env("LD_LIBRARY_PATH", dir)
        .env("FAKE_CUDA_LEDGER", &ledger)
        .env("MEMTALLY_LIB", lib)
        .args([
            "run",
            "-o",
            trace.to_str().unwrap(),
            "--",
            &format!("./{exe}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = memtally(&["report", "--json", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (doc, lines)
}

fn count(ledger: &[serde_json::Value], op: &str) -> usize {
    ledger.iter().filter(|l| l["op"] == op).count()
}

/// The shim's view equals the driver's ledger: allocations, frees, the
/// failure, per device; leaks with their stacks.
fn check(doc: &serde_json::Value, ledger: &[serde_json::Value], kept_at: &str) {
    let d = &doc["device"];
    let devices = d["devices"].as_array().expect("a device section");
    let allocs: u64 = devices
        .iter()
        .map(|t| t["allocations"].as_u64().unwrap())
        .sum();
    let frees: u64 = devices.iter().map(|t| t["frees"].as_u64().unwrap()).sum();
    let failed: u64 = devices
        .iter()
        .map(|t| t["failures"].as_u64().unwrap())
        .sum();
    assert_eq!(allocs as usize, count(ledger, "alloc"), "{d}");
    assert_eq!(frees as usize, count(ledger, "free"), "{d}");
    assert_eq!(failed as usize, count(ledger, "fail"), "{d}");
    let leaked: u64 = ledger
        .iter()
        .filter(|l| l["op"] == "alloc")
        .map(|l| l["size"].as_u64().unwrap())
        .sum::<u64>()
        - ledger
            .iter()
            .filter(|l| l["op"] == "free")
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();
    let live: u64 = devices
        .iter()
        .map(|t| t["live_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(live, leaked, "{d}");
    let top = &d["sites"][0];
    let frames = top["site"]["frames"].to_string();
    assert!(frames.contains(kept_at), "{top}");
}

#[test]
fn device_memory_is_seen_through_the_plt_and_through_a_runtime_that_uses_cu_get_proc_address() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("gpu-direct");
    build_stand_ins(&dir);
    let direct = gpu_source("cuda_direct.c");
    cc(
        &dir,
        &[
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            direct.to_str().unwrap(),
            "-o",
            "cuda_direct",
            "-L.",
            "-lcuda",
        ],
    );
    let (doc, ledger) = record(&dir, &lib, "cuda_direct");
    check(&doc, &ledger, "device_alloc_kept");
    let d = &doc["device"];
    let on = |n: u64| {
        d["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["device"] == n)
            .cloned()
    };
    assert_eq!(on(1).unwrap()["live_bytes"], 256 * 1024, "{d}");
    assert_eq!(d["failures"][0]["size"], 4u64 << 30, "{d}");
    assert!(
        d["failures"][0]["site"]["frames"]
            .to_string()
            .contains("too_big"),
        "{d}"
    );

    // The runtime reaches the driver only through cuGetProcAddress_v2
    // (dynamic and static alike): one event per call, named after the
    // runtime call when the runtime is a shared library.
    let user = gpu_source("cudart_user.c");
    let user = user.to_str().unwrap();
    let flags = ["-O1", "-g", "-fno-omit-frame-pointer"];
    let mut a = flags.to_vec();
    a.extend([user, "-o", "cudart_user_dyn", "-L.", "-lcudart_mini"]);
    cc(&dir, &a);
    let mut a = flags.to_vec();
    a.extend([
        user,
        "-o",
        "cudart_user_static",
        "libcudart_mini.a",
        "-ldl",
        "-pthread",
    ]);
    cc(&dir, &a);
    let (doc, ledger) = record(&dir, &lib, "cudart_user_dyn");
    check(&doc, &ledger, "runtime_alloc_kept");
    assert_eq!(doc["device"]["sites"][0]["api"], "cudaMalloc");
    let (doc, ledger) = record(&dir, &lib, "cudart_user_static");
    check(&doc, &ledger, "runtime_alloc_kept");
    assert_eq!(doc["device"]["sites"][0]["api"], "cuMemAlloc_v2");
}

#[test]
fn dlsym_and_dlvsym_with_rtld_next_still_find_the_next_definition() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("gpu-rtld-next");
    let src = gpu_source("rtld_next");
    let s = |f: &str| src.join(f).to_str().unwrap().to_owned();
    cc(
        &dir,
        &[
            "-O1",
            "-g",
            "-shared",
            "-fPIC",
            "-o",
            "liba.so",
            &s("liba.c"),
            "-ldl",
        ],
    );
    let map = format!("-Wl,--version-script={}", s("libb.map"));
    cc(
        &dir,
        &[
            "-O1",
            "-g",
            "-shared",
            "-fPIC",
            &map,
            "-o",
            "libb.so",
            &s("libb.c"),
        ],
    );
    cc(
        &dir,
        &[
            "-O1",
            "-g",
            &s("main.c"),
            "-o",
            "main",
            "-L.",
            "-Wl,--no-as-needed",
            "-la",
            "-lb",
            "-ldl",
            "-Wl,-rpath,$ORIGIN",
        ],
    );
    let out = Command::new(dir.join("main"))
        .env("LD_PRELOAD", &lib)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "next=2 nextv=2",
        "{out:?}"
    );
}
