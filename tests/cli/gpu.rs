//! Device memory through the gpu-shim, against stand-ins built here
//! (`tests/c/gpu/`: a fake `libcuda.so.1` that hands out host memory and
//! keeps its own ledger, a mini CUDA runtime that reaches the driver only
//! through `cuGetProcAddress_v2`, as the real one does). Each stand-in is
//! built with `-Wl,-Bsymbolic` and hidden visibility, so that what it hands
//! out is its own functions, never ours (else these would pass vacuously).

use super::*;
use std::collections::HashMap;

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

/// Builds the test program `source` (in `tests/c/gpu`) as `dir/out`,
/// linked with `libs`.
fn program(dir: &Path, source: &str, out: &str, libs: &[&str]) {
    let source = gpu_source(source);
    let mut a = vec![
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        source.to_str().unwrap(),
        "-o",
        out,
    ];
    a.extend(libs);
    cc(dir, &a);
}

/// `libmemtally.so`, or `None` (the test is skipped, and says so) when it
/// is not built.
fn library() -> Option<PathBuf> {
    let lib = built_library();
    if lib.is_none() {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
    }
    lib
}

/// The stand-ins and `libmemtally.so`, or `None` (the test is skipped)
/// when the library is not built.
fn setup(name: &str) -> Option<(PathBuf, PathBuf)> {
    let lib = library()?;
    let dir = scratch(name);
    build_stand_ins(&dir);
    Some((dir, lib))
}

#[test]
fn device_memory_is_seen_through_the_plt_and_through_a_runtime_that_uses_cu_get_proc_address() {
    let Some((dir, lib)) = setup("gpu-direct") else {
        return;
    };
    program(&dir, "cuda_direct.c", "cuda_direct", &["-L.", "-lcuda"]);
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
    // What the driver says is in use is sampled per device (each device's
    // first recorded call finds its figure due).
    for n in [0, 1] {
        let levels = on(n).unwrap()["levels"].clone();
        assert!(
            levels
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["memory"] == "in use (driver)")),
            "device {n}: {levels}"
        );
    }
    assert_eq!(d["failures"][0]["size"], 4u64 << 30, "{d}");
    assert!(
        d["failures"][0]["site"]["frames"]
            .to_string()
            .contains("too_big"),
        "{d}"
    );
    rmm_round_trip(&dir, &ledger);
    flame_of_device(&dir);
    torch_snapshot(&dir, &ledger);

    // The runtime reaches the driver only through cuGetProcAddress_v2
    // (dynamic and static alike): one event per call, named after the
    // runtime call when the runtime is a shared library.
    program(
        &dir,
        "cudart_user.c",
        "cudart_user_dyn",
        &["-L.", "-lcudart_mini"],
    );
    program(
        &dir,
        "cudart_user.c",
        "cudart_user_static",
        &["libcudart_mini.a", "-ldl", "-pthread"],
    );
    let (doc, ledger) = record(&dir, &lib, "cudart_user_dyn");
    check(&doc, &ledger, "runtime_alloc_kept");
    assert_eq!(doc["device"]["sites"][0]["api"], "cudaMalloc");
    let (doc, ledger) = record(&dir, &lib, "cudart_user_static");
    check(&doc, &ledger, "runtime_alloc_kept");
    assert_eq!(doc["device"]["sites"][0]["api"], "cuMemAlloc_v2");
}

#[test]
fn device_memory_is_seen_through_dlsym_and_through_cu_get_proc_address_by_version_and_stream_flag()
{
    let Some((dir, lib)) = setup("gpu-lookups") else {
        return;
    };
    // T2: the driver dlopened, its exports found with dlsym.
    program(&dir, "cuda_dlsym.c", "cuda_dlsym", &["-ldl"]);
    let (doc, ledger) = record(&dir, &lib, "cuda_dlsym");
    assert_eq!(count(&ledger, "alloc"), 6, "{ledger:?}");
    check(&doc, &ledger, "dlsym_alloc_kept");

    // T3: everything through cuGetProcAddress_v2, which hands out the
    // driver's internal functions; the per-thread-stream flag picks the
    // _ptsz twin, and the wrapper handed out for it must call that twin.
    program(&dir, "cuda_procaddr.c", "cuda_procaddr", &["-ldl"]);
    let (doc, ledger) = record(&dir, &lib, "cuda_procaddr");
    assert_eq!(count(&ledger, "alloc"), 5, "{ledger:?}");
    check(&doc, &ledger, "procaddr_alloc");
    let ran = |f: &str| {
        ledger
            .iter()
            .filter(|l| l["fn"] == f && l["op"] == "alloc")
            .count()
    };
    assert_eq!(ran("cuMemAllocAsync_ptsz"), 1, "{ledger:?}");
    assert_eq!(ran("cuMemAllocAsync"), 1, "{ledger:?}");
    let sites = doc["device"]["sites"].as_array().unwrap();
    let api_of = |size: u64| {
        sites
            .iter()
            .find(|s| s["live_bytes"] == size)
            .map(|s| s["api"].as_str().unwrap().to_owned())
    };
    assert_eq!(api_of(7000).as_deref(), Some("cuMemAllocAsync_ptsz"));
    assert_eq!(api_of(5000).as_deref(), Some("cuMemAllocAsync"));
    assert_eq!(api_of(3000).as_deref(), Some("cuMemAlloc_v2"));
}

#[test]
fn eight_threads_allocating_through_all_three_paths_lose_no_device_event() {
    let Some((dir, lib)) = setup("gpu-threads") else {
        return;
    };
    // T11: 8 threads x 10,000 alloc/free pairs, rotating over the PLT,
    // dlsym and cuGetProcAddress pointers; all freed by the end.
    program(
        &dir,
        "cuda_threads.c",
        "cuda_threads",
        &["-L.", "-lcuda", "-ldl", "-pthread"],
    );
    let (doc, ledger) = record(&dir, &lib, "cuda_threads");
    assert_eq!(count(&ledger, "alloc"), 80_000);
    let d = &doc["device"];
    let devices = d["devices"].as_array().expect("a device section");
    assert_eq!(devices.len(), 2, "{d}");
    for t in devices {
        assert_eq!(t["allocations"], 40_000, "{t}");
        assert_eq!(t["frees"], 40_000, "{t}");
        assert_eq!(t["live_bytes"], 0, "{t}");
    }
    assert_eq!(d["unknown_frees"], 0, "{d}");
    assert_eq!(d["reused_while_live"], 0, "{d}");
}

/// T19: device 0's events as a RAPIDS RMM log, row for row the driver's
/// ledger, which the replay reads back with the same leaks.
fn rmm_round_trip(dir: &Path, ledger: &[serde_json::Value]) {
    let trace = dir.join("cuda_direct.mtt");
    let csv = dir.join("cuda_direct.dev0.rmm.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(dir)
        .args(["export", "--format", "rmm-csv", "--device", "0"])
        .arg(&trace)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Thread,Time,Action,Pointer,Size,Stream"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let on0 = |op: &str| {
        ledger
            .iter()
            .filter(|l| l["op"] == op && l["device"] == 0)
            .count()
    };
    let rows_of = |action: &str| rows.iter().filter(|r| r[2] == action).count();
    assert_eq!(rows_of("allocate"), on0("alloc"), "{text}");
    assert_eq!(rows_of("free"), on0("free"), "{text}");
    assert_eq!(rows_of("allocate failure"), on0("fail"), "{text}");
    // Every allocation row is the ledger's (address and size).
    for r in rows.iter().filter(|r| r[2] == "allocate") {
        let size: u64 = r[4].parse().unwrap();
        assert!(
            ledger
                .iter()
                .any(|l| l["op"] == "alloc" && l["ptr"] == r[3] && l["size"] == size),
            "{r:?} not in the ledger"
        );
    }
    let out = memtally(&[
        "replay",
        "--json",
        "--embedded",
        "first-fit",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leaked = on0("alloc") - on0("free");
    assert_eq!(
        doc.to_string()
            .matches(&format!("\"leaked_blocks\":{leaked}"))
            .count(),
        1,
        "{doc}"
    );
}

/// T19's other export: device 0 as a PyTorch memory snapshot, read back by
/// Python's own pickle: an entry per ledger allocation, free and failure,
/// and the kept allocation as the one live segment, with its frames.
fn torch_snapshot(dir: &Path, ledger: &[serde_json::Value]) {
    let trace = dir.join("cuda_direct.mtt");
    let out = memtally(&[
        "export",
        "--format",
        "torch-snapshot",
        trace.to_str().unwrap(),
        "-o",
        dir.join("snapshot.pickle").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let script = "import pickle, json, sys\n\
        d = pickle.load(open(sys.argv[1], 'rb'))\n\
        t = d['device_traces'][0]\n\
        n = lambda a: sum(1 for e in t if e['action'] == a)\n\
        s = d['segments']\n\
        print(json.dumps({'alloc': n('alloc'), 'free': n('free_completed'), 'oom': n('oom'),\n\
            'segments': len(s), 'kept': s[0]['total_size'],\n\
            'where': s[0]['blocks'][0]['frames'][0]['name']}))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("snapshot.pickle"))
        .output()
        .expect("python3 is installed (.ci/run installs it)");
    assert!(out.status.success(), "{out:?}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let on0 = |op: &str| {
        ledger
            .iter()
            .filter(|l| l["op"] == op && l["device"] == 0)
            .count()
    };
    assert_eq!(got["alloc"], on0("alloc"), "{got}");
    assert_eq!(got["free"], on0("free"), "{got}");
    assert_eq!(got["oom"], on0("fail"), "{got}");
    assert_eq!(got["segments"], 1, "{got}");
    assert_eq!(got["kept"], 1 << 20, "{got}");
    assert_eq!(got["where"], "device_alloc_kept", "{got}");
}

/// `flame --device 0 --folded`: the kept allocation's stack under the API
/// it called.
fn flame_of_device(dir: &Path) {
    let trace = dir.join("cuda_direct.mtt");
    let out = memtally(&[
        "flame",
        "--device",
        "0",
        "--metric",
        "leaked",
        "--folded",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("device_alloc_kept;[cuMemAlloc_v2] ")),
        "{text}"
    );
    let out = memtally(&["flame", "--device", "x", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// Bytes the ledger says are live at the end for the ops `up` and `down`,
/// per device (-1: none).
fn ledger_live(ledger: &[serde_json::Value], up: &str, down: &str) -> HashMap<i64, u64> {
    let mut live = HashMap::new();
    for l in ledger.iter().filter(|l| l["op"] == up || l["op"] == down) {
        let size = l["size"].as_u64().unwrap();
        let device = l["device"].as_i64().unwrap();
        if l["op"] == up {
            *live.entry(device).or_insert(0) += size;
        } else if l["op"] == down {
            *live.entry(device).or_insert(0) -= size;
        }
    }
    live
}

/// The host's row of a report's device section (`device` null).
fn host_of(d: &serde_json::Value) -> serde_json::Value {
    d["devices"]
        .as_array()
        .expect("a device section")
        .iter()
        .find(|t| t["device"].is_null())
        .expect("host memory")
        .clone()
}

fn by_kind(device: &serde_json::Value, kind: &str) -> serde_json::Value {
    device["by_memory"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["memory"] == kind)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn virtual_memory_pools_and_failures_match_the_driver_ledger() {
    let Some((dir, lib)) = setup("gpu-vmm") else {
        return;
    };
    // T8, T9, T10: see tests/c/gpu/cuda_vmm.c.
    program(&dir, "cuda_vmm.c", "cuda_vmm", &["-L.", "-lcuda", "-ldl"]);
    let (doc, ledger) = record(&dir, &lib, "cuda_vmm");
    let d = &doc["device"];
    let devices = d["devices"].as_array().expect("a device section");
    let on = |n: i64| devices.iter().find(|t| t["device"] == n).unwrap();

    // Physical memory: created minus physically freed (at the last of
    // release and unmap), per device, as the driver counted it.
    let physical = ledger_live(&ledger, "create", "physfree");
    assert_eq!(physical[&0], 0, "{ledger:?}");
    assert_eq!(physical[&1], 4 << 20, "{ledger:?}");
    for n in [0, 1] {
        assert_eq!(
            by_kind(on(n), "virtual memory (physical)")["live_bytes"],
            physical[&n],
            "{d}"
        );
    }
    assert_eq!(
        by_kind(on(0), "virtual memory (physical)")["peak_bytes"],
        2 << 20
    );
    // Address space is counted apart from memory.
    let space = ledger_live(&ledger, "reserve", "unreserve");
    assert_eq!(
        by_kind(on(0), "reserved address space")["live_bytes"],
        space[&0],
        "{d}"
    );
    assert_eq!(on(1)["live_bytes"], 4 << 20, "{d}");
    // The leak is the created memory, at the stack that created it (not
    // the one that mapped it), ahead of the address space.
    let top = &d["sites"][0];
    assert_eq!(top["api"], "cuMemCreate", "{top}");
    assert_eq!(top["device"], 1, "{top}");
    assert!(top["site"]["frames"].to_string().contains("vmm_leaked"));

    // Pools: logical bytes from the allocations, reserved bytes sampled;
    // the ledger's last level per pool and the most held at once.
    let mut levels: HashMap<String, u64> = HashMap::new();
    let mut most = 0;
    for l in ledger.iter().filter(|l| l["op"] == "pool") {
        levels.insert(
            l["ptr"].as_str().unwrap().into(),
            l["size"].as_u64().unwrap(),
        );
        most = most.max(levels.values().sum::<u64>());
    }
    assert_eq!(on(0)["pool_reserved_bytes"], levels.values().sum::<u64>());
    assert_eq!(on(0)["peak_pool_reserved_bytes"], most, "{d}");
    assert_eq!((most, levels.values().sum::<u64>()), (4 << 20, 2 << 20));
    let pool = by_kind(on(0), "stream-ordered pool");
    assert_eq!(pool["live_bytes"], 512 * 1024, "{d}");
    assert_eq!(pool["peak_bytes"], 3 << 20, "{d}");

    // The failure, with what it asked for and where.
    assert_eq!(count(&ledger, "fail"), 1);
    assert_eq!(d["failures"][0]["api"], "cuMemCreate");
    assert_eq!(d["failures"][0]["size"], 2u64 << 30);
    assert!(
        d["failures"][0]["site"]["frames"]
            .to_string()
            .contains("vmm_too_big")
    );
    assert_eq!(d["unknown_frees"], 0, "{d}");
    assert_eq!(d["reused_while_live"], 0, "{d}");

    // memtally leaks lists the device memory never freed, memory first
    // (the physical allocation, the pool allocation), then the address
    // space; --fail fails on it.
    let trace = dir.join("cuda_vmm.mtt");
    let out = memtally(&["leaks", "--json", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let leaks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let device = leaks["device"].as_array().unwrap();
    let apis: Vec<&str> = device.iter().map(|s| s["api"].as_str().unwrap()).collect();
    assert_eq!(
        apis,
        ["cuMemCreate", "cuMemAllocAsync", "cuMemAddressReserve"],
        "{leaks}"
    );
    assert_eq!(leaks["device_leaked_blocks"], 3);
    assert!(
        device[0]["site"]["frames"]
            .to_string()
            .contains("vmm_leaked")
    );
    let out = memtally(&["leaks", "--fail", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DEVICE AND NETWORK MEMORY NEVER FREED"));
}

#[test]
fn arrays_are_sized_from_their_descriptors_and_ipc_imports_are_not_new_memory() {
    let Some((dir, lib)) = setup("gpu-arrays") else {
        return;
    };
    program(&dir, "cuda_arrays.c", "cuda_arrays", &["-L.", "-lcuda"]);
    let (doc, ledger) = record(&dir, &lib, "cuda_arrays");
    let d = &doc["device"];
    let dev0 = &d["devices"][0];
    let made_by = |prefix: &str| {
        ledger
            .iter()
            .filter(|l| l["op"] == "alloc" && l["fn"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    let array = by_kind(dev0, "array");
    assert_eq!(array["allocations"], made_by("cuArray"), "{d}");
    assert_eq!(array["live_bytes"], 8 << 20, "1024 x 512 float4: {d}");
    assert_eq!(array["peak_bytes"], (8 << 20) + (256 << 10), "{d}");
    let imported = ledger_live(&ledger, "import", "unimport");
    assert_eq!(
        by_kind(dev0, "imported (IPC)")["live_bytes"],
        imported[&0],
        "{d}"
    );
    assert_eq!(imported[&0], 1 << 20);
    // Another process's memory is not this one's: arrays and the exported
    // allocation only.
    assert_eq!(dev0["live_bytes"], (8 << 20) + (1 << 20), "{d}");
    // Registered host memory, apart from the host's pinned allocations.
    let registered = ledger_live(&ledger, "hostreg", "hostunreg");
    let host = &host_of(d);
    let pinned = by_kind(host, "host registered (pinned for a GPU)");
    assert_eq!(pinned["live_bytes"], registered[&-1], "{d}");
    assert_eq!(registered[&-1], 1 << 20);
    assert_eq!(host["live_bytes"], 0, "not new memory: {d}");
    // What the driver says is in use, sampled after the first allocation:
    // its 256 MiB context reserve and the 8 MiB array.
    let used = dev0["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["memory"] == "in use (driver)")
        .expect("the driver's figure")
        .clone();
    assert!(
        used["peak_bytes"].as_u64().unwrap() >= (256 << 20) + (8 << 20),
        "{used}"
    );
    assert_eq!(d["unknown_frees"], 0, "{d}");
}

#[test]
fn mipmapped_arrays_pool_imports_and_external_memory_are_sized_and_kept_apart() {
    let Some((dir, lib)) = setup("gpu-imports") else {
        return;
    };
    program(&dir, "cuda_imports.c", "cuda_imports", &["-L.", "-lcuda"]);
    let (doc, ledger) = record(&dir, &lib, "cuda_imports");
    let d = &doc["device"];
    let dev0 = &d["devices"][0];
    let array = by_kind(dev0, "array");
    // Two mipmapped arrays of the driver's and two mapped from external
    // memory (no bytes of their own).
    let count = |op: &str| ledger.iter().filter(|l| l["op"] == op).count();
    let mipmaps = ledger
        .iter()
        .filter(|l| l["op"] == "alloc" && l["fn"] == "cuMipmappedArrayCreate")
        .count();
    assert_eq!(mipmaps, 2);
    assert_eq!(array["allocations"], mipmaps + count("extarray"), "{d}");
    assert_eq!(
        array["live_bytes"], 349_524,
        "256 x 256 RGBA8, 9 levels: {d}"
    );
    assert_eq!(array["peak_bytes"], 349_524 + 86_016, "{d}");
    // Pool pointers and external buffers are imports: the ledger's, and
    // never in the device's total.
    let imported = ledger_live(&ledger, "import", "unimport");
    assert_eq!(imported[&0], (1 << 20) + (2 << 20));
    let imports = by_kind(dev0, "imported (IPC)");
    assert_eq!(imports["live_bytes"], imported[&0], "{d}");
    assert_eq!(imports["allocations"], count("import"), "{d}");
    let pool = ledger_live(&ledger, "alloc", "free");
    // The physical memory created here (an imported handle's physfree
    // line is not of it: handles are reused).
    let created: Vec<&serde_json::Value> = ledger.iter().filter(|l| l["op"] == "create").collect();
    assert_eq!(created.len(), 1);
    let physical = created[0]["size"].as_u64().unwrap();
    assert_eq!(physical, 2 << 20);
    assert_eq!(
        dev0["live_bytes"],
        pool[&0] + physical,
        "arrays, the pool allocation and the exported physical memory only: {d}"
    );
    // Physical memory imported by a shareable handle: two imports, one
    // released after its unmap, the other mapped and kept (sized at its
    // mapping).
    let by_handle = by_kind(dev0, "imported (shareable handle)");
    assert_eq!(by_handle["allocations"], count("importphys"), "{d}");
    assert_eq!(by_handle["live_bytes"], 2 << 20, "{d}");
    assert_eq!(by_handle["bytes_allocated"], 4 << 20, "{d}");
    // The pool import came through cuGetProcAddress: the caller was given
    // our wrapper.
    assert!(
        ledger
            .iter()
            .any(|l| l["op"] == "lookup" && l["fn"] == "cuMemPoolImportPointer"),
        "no lookup in the ledger"
    );
    assert_eq!(d["unknown_frees"], 0, "{d}");
    // Each kept import is named by the function that made it.
    let sites = d["sites"].as_array().unwrap();
    for f in ["pool_import", "external"] {
        assert!(
            sites
                .iter()
                .any(|s| s["function"].as_str().is_some_and(|n| n.contains(f))
                    || s.to_string().contains(f)),
            "{f} not among the sites: {d}"
        );
    }
}

#[test]
fn forked_children_record_their_own_device_memory_and_never_hang_on_the_shims_state() {
    let Some((dir, lib)) = setup("gpu-fork") else {
        return;
    };
    // 20 forks while another thread allocates from a pool (the shim
    // samples the pool under a lock, which it only ever tries, so a child
    // forked while the lock was held cannot wait on it; the race is too
    // narrow for this test to hit, as 200 forks with a blocking lock
    // showed; the stand-in's own lock has fork handlers, as CI once found
    // a child stuck on it): each child records its own device memory.
    program(
        &dir,
        "cuda_fork.c",
        "cuda_fork",
        &["-L.", "-lcuda", "-pthread"],
    );
    let pattern = dir.join("fork.%p.mtt");
    let mut run = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(&dir)
        .env("LD_LIBRARY_PATH", &dir)
        .env("MEMTALLY_LIB", &lib)
        .args([
            "run",
            "--follow-children",
            "-o",
            pattern.to_str().unwrap(),
            "--",
            "./cuda_fork",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang is the failure this test looks for: it must not hang CI.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = run.kill();
            let _ = Command::new("pkill").args(["-f", "cuda_fork"]).status();
            panic!("cuda_fork hung (a child forked with a lock held?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut run.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("done"), "{stdout}");
    let traces: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fork.")
        })
        .collect();
    assert_eq!(traces.len(), 21, "{traces:?}");
    let mut children = 0;
    for t in &traces {
        let out = memtally(&["report", "--json", t.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &doc["device"];
        if site_holds(d, "child_kept", 2 << 20) {
            children += 1;
        } else {
            assert!(site_holds(d, "parent_kept", 1 << 20), "{d}");
        }
    }
    assert_eq!(children, 20);
}

#[test]
fn device_calls_in_constructors_and_inside_dlopen_are_recorded() {
    let Some((dir, lib)) = setup("gpu-early") else {
        return;
    };
    // A constructor of the program (before main) and one of a library
    // the program dlopens (inside the dynamic loader) allocate.
    let src = gpu_source("cuda_early.c");
    let src = src.to_str().unwrap();
    cc(
        &dir,
        &[
            "-O1",
            "-g",
            "-shared",
            "-fPIC",
            "-DEARLY_LIBRARY",
            src,
            "-o",
            "libearly.so",
            "-L.",
            "-lcuda",
        ],
    );
    program(
        &dir,
        "cuda_early.c",
        "cuda_early",
        &["-L.", "-lcuda", "-ldl"],
    );
    let (doc, ledger) = record(&dir, &lib, "cuda_early");
    let d = &doc["device"];
    assert_eq!(count(&ledger, "alloc"), 2);
    assert!(site_holds(d, "before_main", 1 << 20), "{d}");
    assert!(site_holds(d, "in_dlopen", 2 << 20), "{d}");
}

#[test]
fn nccl_mem_alloc_is_one_physical_allocation_named_after_nccl_at_the_callers_stack() {
    let Some((dir, lib)) = setup("gpu-nccl") else {
        return;
    };
    // T12: the stand-in NCCL builds ncclMemAlloc on the driver's virtual
    // memory calls, found through cuGetProcAddress_v2.
    let nccl = gpu_source("fake_nccl.c");
    cc(
        &dir,
        &[
            "-O1",
            "-g",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Wl,-Bsymbolic",
            "-Wl,-soname,libnccl.so.2",
            "-o",
            "libnccl.so.2",
            nccl.to_str().unwrap(),
            "-ldl",
            "-pthread",
        ],
    );
    std::os::unix::fs::symlink("libnccl.so.2", dir.join("libnccl.so")).unwrap();
    program(
        &dir,
        "nccl_user.c",
        "nccl_user",
        &["-L.", "-lnccl", "-lcuda"],
    );
    let (doc, ledger) = record(&dir, &lib, "nccl_user");
    let d = &doc["device"];
    let physical = ledger_live(&ledger, "create", "physfree");
    assert_eq!(physical[&0], 8 << 20);
    let dev0 = &d["devices"][0];
    let vmm = by_kind(dev0, "virtual memory (physical)");
    assert_eq!(vmm["live_bytes"], physical[&0], "{d}");
    // One user call, one event: four ncclMemAlloc calls, four
    // allocations of the physical bytes the driver created for them (the
    // 1 MiB calls got 2 MiB with the granularity), and none of the
    // reservations, creations and mappings inside.
    assert_eq!(count(&ledger, "create"), 4);
    assert_eq!(vmm["allocations"], 4, "{d}");
    let created: u64 = ledger
        .iter()
        .filter(|l| l["op"] == "create")
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert_eq!(vmm["bytes_allocated"], created, "{d}");
    assert_eq!(
        by_kind(dev0, "reserved address space")["allocations"],
        serde_json::Value::Null,
        "the reservation inside ncclMemAlloc is not an event of its own: {d}"
    );
    assert_eq!(dev0["allocations"], 4, "{d}");
    assert_eq!(dev0["live_bytes"], 8 << 20, "{d}");
    let top = &d["sites"][0];
    assert_eq!(top["api"], "ncclMemAlloc", "{top}");
    let frames = top["site"]["frames"].to_string();
    assert!(frames.contains("nccl_kept"), "{top}");
    // The shim's own wrapper between the program and NCCL is not shown.
    assert!(!frames.contains("nccl.rs"), "{top}");
    assert_eq!(d["unknown_frees"], 0, "{d}");
}

/// The CUDA runtime wheel `package==version` from PyPI, unpacked under
/// the target directory (kept between runs); its `lib` directory, or None
/// when pip cannot fetch it (no network: the test says it is skipped).
fn cuda_runtime_wheel(package: &str, lib: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(package.replace(['=', '*'], "_"));
    let libdir = dir.join(lib);
    if libdir.is_dir() {
        return Some(libdir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let got = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "-q", package, "-d"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !got {
        return None;
    }
    let unpacked = Command::new("python3")
        .current_dir(&dir)
        .args([
            "-c",
            "import zipfile, glob; [zipfile.ZipFile(w).extractall('.') for w in glob.glob('*.whl')]",
        ])
        .status()
        .is_ok_and(|s| s.success());
    (unpacked && libdir.is_dir()).then_some(libdir)
}

/// Runs `exe` bare and with `libmemtally.so` recording; both outputs (the
/// same, or the test fails) and the lookups each made (the stand-in's
/// ledger: name, version, flags, found; and through whom).
fn bare_and_preloaded(
    dir: &Path,
    lib: &Path,
    exe: &str,
    libpath: &str,
    version: &str,
) -> (String, Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut ledgers = Vec::new();
    let mut outputs = Vec::new();
    for preload in [false, true] {
        let ledger = dir.join(format!("{exe}.{preload}.ledger"));
        let _ = std::fs::remove_file(&ledger);
        let mut c = Command::new(dir.join(exe));
        c.env("LD_LIBRARY_PATH", libpath)
            .env("FAKE_CUDA_LEDGER", &ledger)
            .env("FAKE_CUDA_VERSION", version);
        if preload {
            c.env("LD_PRELOAD", lib).env(
                "MEMTALLY",
                format!("mode=full,out={}", dir.join(format!("{exe}.mtt")).display()),
            );
        }
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{exe} (preload {preload}): {out:?}"
        );
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        ledgers.push(
            std::fs::read_to_string(&ledger)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|l| l["op"] == "lookup")
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        outputs[0], outputs[1],
        "{exe}: the runtime's results differ"
    );
    let preloaded = ledgers.pop().unwrap();
    let bare = ledgers.pop().unwrap();
    (outputs.pop().unwrap(), bare, preloaded)
}

#[test]
fn the_real_cuda_runtime_gets_every_driver_function_through_our_wrappers_and_its_results_unchanged()
{
    let Some((dir, lib)) = setup("gpu-cudart-real") else {
        return;
    };
    // T6: NVIDIA's runtime, dynamic and static, CUDA 12 and 13.
    let Some(lib12) = cuda_runtime_wheel(
        "nvidia-cuda-runtime-cu12==12.9.79",
        "nvidia/cuda_runtime/lib",
    ) else {
        eprintln!("skipped: pip could not fetch nvidia-cuda-runtime-cu12 (no network?)");
        return;
    };
    let src = gpu_source("cudart_real.c");
    let src = src.to_str().unwrap();
    let flags = ["-O1", "-g"];
    let mut a = flags.to_vec();
    a.extend([
        "-DCUDART=\"libcudart.so.12\"",
        src,
        "-o",
        "cudart_real12",
        "-ldl",
    ]);
    cc(&dir, &a);
    let stat = lib12.join("libcudart_static.a");
    let mut a = flags.to_vec();
    a.extend([
        "-DSTATIC_CUDART",
        src,
        "-o",
        "cudart_real_static",
        stat.to_str().unwrap(),
        "-ldl",
        "-lrt",
        "-pthread",
    ]);
    cc(&dir, &a);
    let mut runs = vec![(
        "cudart_real12",
        format!("{}:{}", dir.display(), lib12.display()),
        "12090",
    )];
    runs.push(("cudart_real_static", dir.display().to_string(), "12090"));
    match cuda_runtime_wheel("nvidia-cuda-runtime==13.5.37", "nvidia/cu13/lib") {
        Some(lib13) => {
            let mut a = flags.to_vec();
            a.extend([
                "-DCUDART=\"libcudart.so.13\"",
                src,
                "-o",
                "cudart_real13",
                "-ldl",
            ]);
            cc(&dir, &a);
            runs.push((
                "cudart_real13",
                format!("{}:{}", dir.display(), lib13.display()),
                "13050",
            ));
        }
        None => eprintln!("skipped CUDA 13: pip could not fetch nvidia-cuda-runtime"),
    }
    let key = |l: &serde_json::Value| {
        (
            l["fn"].as_str().unwrap().to_owned(),
            l["version"].as_i64().unwrap(),
            l["flags"].as_i64().unwrap(),
            l["found"].as_i64().unwrap(),
        )
    };
    for (exe, libpath, version) in runs {
        let (output, bare, preloaded) = bare_and_preloaded(&dir, &lib, exe, &libpath, version);
        assert!(output.starts_with(&format!("driver {version} (rc 0) cudaMalloc rc ")));
        // The runtime asked for the same functions with us in between...
        assert!(bare.len() > 100, "{exe}: {} lookups", bare.len());
        assert_eq!(
            bare.iter().map(key).collect::<Vec<_>>(),
            preloaded.iter().map(key).collect::<Vec<_>>(),
            "{exe}"
        );
        // ...and every one of its lookups reached the driver through our
        // cuGetProcAddress wrappers, so each allocation entry point it was
        // handed is ours.
        assert!(
            bare.iter().all(|l| l["via"] != "libmemtally.so"),
            "{exe}: {bare:?}"
        );
        for l in &preloaded {
            assert_eq!(l["via"], "libmemtally.so", "{exe}: {l}");
        }
        let asked = |name: &str, v: i64, flags: i64| {
            preloaded.iter().any(|l| {
                l["fn"] == name && l["version"] == v && l["flags"] == flags && l["found"] == 1
            })
        };
        assert!(asked("cuGetProcAddress", 11030, 0), "{exe}");
        assert!(asked("cuGetProcAddress", 12000, 0), "{exe}");
        assert!(asked("cuMemAlloc", 3020, 0), "{exe}");
        assert!(asked("cuMemAllocAsync", 11020, 0), "{exe}");
        assert!(asked("cuMemAllocAsync", 11020, 2), "{exe}");
        assert!(asked("cuMemHostAlloc", 2020, 0), "{exe}");
    }
}

#[test]
fn dlsym_and_dlvsym_with_rtld_next_still_find_the_next_definition() {
    let Some(lib) = library() else {
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

/// Builds the stand-in `source` (in `tests/c/DIR/`) as the shared library
/// `soname` in `dir`, hidden and `-Bsymbolic` as the real ones behave,
/// with its link-time name (`libX.so`) beside it.
fn stand_in(dir: &Path, source: &str, soname: &str, extra: &[&str]) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(source);
    let so = format!("-Wl,-soname,{soname}");
    let mut a = vec![
        "-O1",
        "-g",
        "-shared",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wl,-Bsymbolic",
        &so,
        "-o",
        soname,
        source.to_str().unwrap(),
        "-pthread",
    ];
    a.extend(extra);
    cc(dir, &a);
    let link = soname.rsplit_once(".so").unwrap().0.to_owned() + ".so";
    std::os::unix::fs::symlink(soname, dir.join(link)).unwrap();
}

/// Builds the test program `source` (in `tests/c/`) as `dir/out`.
fn test_program(dir: &Path, source: &str, out: &str, libs: &[&str]) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(source);
    let mut a = vec![
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        source.to_str().unwrap(),
        "-o",
        out,
        "-L.",
    ];
    a.extend(libs);
    a.push("-Wl,-rpath,$ORIGIN");
    cc(dir, &a);
}

/// Runs `./exe` under `memtally run` with the stand-in's ledger in the
/// file `ledger_var` names; the report's device section (top 20 sites)
/// and the ledger's lines.
fn run_with_ledger(
    dir: &Path,
    lib: &Path,
    exe: &str,
    ledger_var: &str,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let trace = dir.join(format!("{exe}.mtt"));
    let ledger = dir.join(format!("{exe}.ledger"));
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(dir)
        .env(ledger_var, &ledger)
        .env("MEMTALLY_LIB", lib)
        .args(["run", "-o", trace.to_str().unwrap(), "--"])
        .arg(format!("./{exe}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let out = memtally(&["report", "--json", "--top", "20", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (doc["device"].clone(), lines)
}

/// Is there a site whose stack names `function` holding `live` bytes?
fn site_holds(d: &serde_json::Value, function: &str, live: u64) -> bool {
    d["sites"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["live_bytes"] == live && s["site"]["frames"].to_string().contains(function))
}

#[test]
fn rdma_registrations_are_seen_through_the_plt_and_through_dlvsym_of_each_version() {
    let Some(lib) = library() else {
        return;
    };
    // T13: the stand-in libibverbs, with rdma-core's symbol versions.
    let dir = scratch("rdma");
    let map = format!(
        "-Wl,--version-script={}/tests/c/rdma/libibverbs.map",
        env!("CARGO_MANIFEST_DIR")
    );
    stand_in(&dir, "rdma/fake_ibverbs.c", "libibverbs.so.1", &[&map]);
    test_program(
        &dir,
        "rdma/rdma_user.c",
        "rdma_user",
        &["-libverbs", "-ldl"],
    );
    let (d, ledger) = run_with_ledger(&dir, &lib, "rdma_user", "FAKE_IBV_LEDGER");
    let d = &d;
    let host = &host_of(d);
    let registered = by_kind(host, "registered (pinned for a NIC)");
    let sum = |op: &str| -> u64 {
        ledger
            .iter()
            .filter(|l| l["op"] == op)
            .map(|l| l["length"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(registered["allocations"], count(&ledger, "reg"), "{d}");
    assert_eq!(registered["live_bytes"], sum("reg") - sum("dereg"), "{d}");
    assert_eq!(sum("reg") - sum("dereg"), 192 << 10);
    // Registrations are pinned memory allocated elsewhere: not new bytes.
    assert_eq!(host["live_bytes"], 0, "{host}");
    let sites = d["sites"].as_array().unwrap();
    let live_at = |f: &str| {
        sites
            .iter()
            .filter(|s| s["site"]["frames"].to_string().contains(f))
            .map(|s| s["live_bytes"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(live_at("nccl_style"), 128 << 10, "{d}");
    assert_eq!(live_at("rdma_reg_kept"), 64 << 10, "{d}");
    // The legacy ABI, found with dlvsym at IBVERBS_1.0, is seen too.
    assert!(
        sites
            .iter()
            .any(|s| s["site"]["frames"].to_string().contains("legacy_abi")),
        "{d}"
    );
    // Every exported variant was called (the ledger names the function),
    // and each registration was seen: the counts above include them.
    for f in [
        "ibv_reg_mr",
        "ibv_reg_mr_iova",
        "ibv_reg_mr_iova2",
        "ibv_reg_dmabuf_mr",
    ] {
        assert!(
            ledger.iter().any(|l| l["op"] == "reg" && l["fn"] == f),
            "{f} not in the ledger"
        );
    }
    assert_eq!(d["unknown_frees"], 0, "{d}");
    assert_eq!(d["reused_while_live"], 0, "{d}");
}

#[test]
fn opencl_buffers_are_freed_once_at_their_final_release_and_svm_at_its_free() {
    let Some(lib) = library() else {
        return;
    };
    // T17: the stand-in ICD loader, reference counting as the spec says.
    let dir = scratch("opencl");
    stand_in(&dir, "opencl/fake_opencl.c", "libOpenCL.so.1", &[]);
    test_program(&dir, "opencl/cl_user.c", "cl_user", &["-lOpenCL", "-ldl"]);
    let (d, ledger) = run_with_ledger(&dir, &lib, "cl_user", "FAKE_CL_LEDGER");
    let d = &d;
    let cl = by_kind(&d["devices"][0], "opencl");
    let made = count(&ledger, "create") + count(&ledger, "svm_alloc");
    let gone = count(&ledger, "destroy") + count(&ledger, "svm_free");
    assert_eq!(cl["allocations"], made, "{d}");
    assert_eq!(d["devices"][0]["frees"], gone, "one free per object: {d}");
    // What the ledger holds at the end: the kept buffer and SVM block (a
    // sub-buffer has no bytes of its own; it shares its parent's).
    assert_eq!(cl["live_bytes"], (1 << 20) + (64 << 10), "{d}");
    // The retained buffer was destroyed once, at its second release.
    let retained = d["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"]["frames"].to_string().contains("cl_retained"))
        .expect("cl_retained's site");
    assert_eq!(
        (
            retained["allocations"].as_u64(),
            retained["live_blocks"].as_u64()
        ),
        (Some(1), Some(0)),
        "{retained}"
    );
    assert!(site_holds(d, "cl_kept", 1 << 20), "{d}");
    assert!(site_holds(d, "svm_kept", 64 << 10), "{d}");
    assert_eq!(d["unknown_frees"], 0, "{d}");
    assert_eq!(d["reused_while_live"], 0, "{d}");
}

#[test]
fn vulkan_memory_is_seen_through_the_export_and_through_both_get_proc_addrs() {
    let Some(lib) = library() else {
        return;
    };
    // T18: the stand-in loader hands out the driver's own functions from
    // vkGetDeviceProcAddr, which a hook of the exported names never sees.
    let dir = scratch("vulkan");
    stand_in(&dir, "vulkan/fake_vulkan.c", "libvulkan.so.1", &[]);
    test_program(&dir, "vulkan/vk_user.c", "vk_user", &["-lvulkan"]);
    let (d, ledger) = run_with_ledger(&dir, &lib, "vk_user", "FAKE_VK_LEDGER");
    let vk = by_kind(&d["devices"][0], "vulkan");
    assert_eq!(vk["allocations"], count(&ledger, "alloc"), "{d}");
    assert_eq!(d["devices"][0]["frees"], count(&ledger, "free"), "{d}");
    assert_eq!(d["devices"][0]["failures"], count(&ledger, "fail"), "{d}");
    assert_eq!(count(&ledger, "alloc"), 4);
    assert_eq!(vk["live_bytes"], 3 << 20, "{d}");
    assert!(site_holds(&d, "vk_exported", 1 << 20), "{d}");
    assert!(site_holds(&d, "vk_device_proc", 2 << 20), "{d}");
    // The allocation made through vkGetInstanceProcAddr's
    // vkGetDeviceProcAddr, freed.
    assert!(
        d["sites"].as_array().unwrap().iter().any(|s| {
            s["bytes_allocated"] == 512 << 10
                && s["site"]["frames"].to_string().contains("vk_instance_proc")
        }),
        "{d}"
    );
    assert_eq!(d["failures"][0]["size"], 8u64 << 30, "{d}");
    assert_eq!(d["unknown_frees"], 0, "{d}");
}

#[test]
fn socket_buffers_io_uring_buffers_and_packet_rings_are_sampled_from_the_kernel() {
    let Some(lib) = library() else {
        return;
    };
    // T14-T16 on the real kernel: no call allocates this memory, so it
    // is sampled (every 0.5 s) while the program holds it for 1.2 s.
    let dir = scratch("net");
    test_program(&dir, "net/net_user.c", "net_user", &[]);
    let trace = dir.join("net.mtt");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(&dir)
        .env("MEMTALLY_LIB", &lib)
        .args(["run", "-o", trace.to_str().unwrap(), "--", "./net_user"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = memtally(&["report", "--json", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &doc["device"];
    let host = &host_of(d);
    let level = |kind: &str| {
        host["levels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["memory"] == kind)
            .cloned()
    };
    // 300 KB written and not read: queued at the sender, received at the
    // receiver, in the kernel's accounting (buffers, a little more).
    let socket = level("socket buffers").expect("socket buffers sampled");
    assert!(
        socket["peak_bytes"].as_u64().unwrap() >= 250_000,
        "{socket}"
    );
    assert_eq!(socket["bytes"], 0, "closed before the end: {socket}");
    if stdout.contains("io_uring unavailable") {
        eprintln!("skipped io_uring: {stdout}");
    } else {
        let ring = level("io_uring registered buffers").expect("io_uring sampled");
        assert_eq!(ring["peak_bytes"], 2 * 65536, "{ring}");
        assert_eq!(ring["bytes"], 0, "unregistered: {ring}");
    }
    if stdout.contains("packet sockets unavailable") {
        eprintln!("skipped packet rings: {stdout}");
    } else {
        let rings = level("packet rings").expect("packet rings sampled");
        assert_eq!(rings["peak_bytes"], 4 * 65536, "{rings}");
        assert_eq!(rings["bytes"], 0, "closed: {rings}");
    }
    // Kernel-held memory is a gauge, never new memory of the host.
    assert_eq!(host["live_bytes"], 0);
    // Per descriptor: the connection's two ends (the sender's queue and
    // the receiver's buffers), each a socket of its own, their sum the
    // level's peak or more (sampled at different moments).
    let sockets: Vec<&serde_json::Value> = d["descriptors"]
        .as_array()
        .expect("descriptors")
        .iter()
        .filter(|x| x["memory"] == "socket buffers")
        .collect();
    assert!(sockets.len() >= 2, "{}", d["descriptors"]);
    let fds: std::collections::HashSet<u64> =
        sockets.iter().map(|x| x["fd"].as_u64().unwrap()).collect();
    assert_eq!(fds.len(), sockets.len(), "one row a socket");
    let busiest = sockets[0]["peak_bytes"].as_u64().unwrap();
    assert!(busiest >= 100_000, "{}", d["descriptors"]);
    assert!(
        sockets.iter().all(|x| x["bytes"] == 0),
        "closed: {}",
        d["descriptors"]
    );
    let text = memtally(&["report", trace.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("KERNEL-HELD MEMORY BY DESCRIPTOR"), "{text}");
}

#[test]
fn vulkan_memory_is_seen_on_a_real_loader_and_driver() {
    let Some(lib) = library() else {
        return;
    };
    // T18 on Mesa's lavapipe through the real loader (.ci/run installs
    // them): the driver's own functions from vkGetDeviceProcAddr.
    let icd = Path::new("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json");
    if !icd.exists() {
        eprintln!("skipped: lavapipe is not installed (.ci/run installs mesa-vulkan-drivers)");
        return;
    }
    let dir = scratch("vulkan-real");
    test_program(&dir, "vulkan/vk_real.c", "vk_real", &["-ldl"]);
    let trace = dir.join("vk_real.mtt");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(&dir)
        .env("VK_ICD_FILENAMES", icd)
        .env("MEMTALLY_LIB", &lib)
        .args(["run", "-o", trace.to_str().unwrap(), "--", "./vk_real"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.starts_with("skip:") {
        eprintln!("skipped: {stdout}");
        return;
    }
    assert!(stdout.contains("done"), "{out:?}");
    let out = memtally(&["report", "--json", trace.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &doc["device"];
    let vk = by_kind(&d["devices"][0], "vulkan");
    assert_eq!(vk["allocations"], 3, "{d}");
    assert_eq!(vk["live_bytes"], 3 << 20, "{d}");
    assert_eq!(vk["peak_bytes"], 5 << 20, "{d}");
    assert!(site_holds(d, "real_device_proc", 2 << 20), "{d}");
    assert!(site_holds(d, "real_exported", 1 << 20), "{d}");
    assert_eq!(d["unknown_frees"], 0, "{d}");
}

#[test]
fn opencl_memory_is_seen_on_a_real_implementation() {
    let Some(lib) = library() else {
        return;
    };
    // T17 on pocl through the ICD loader (.ci/run installs them): the
    // destructor callback is the implementation's own.
    if !Path::new("/etc/OpenCL/vendors/pocl.icd").exists() {
        eprintln!("skipped: pocl is not installed (.ci/run installs pocl-opencl-icd)");
        return;
    }
    let dir = scratch("opencl-real");
    test_program(&dir, "opencl/cl_real.c", "cl_real", &["-ldl"]);
    let trace = dir.join("cl_real.mtt");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .current_dir(&dir)
        .env("MEMTALLY_LIB", &lib)
        .args(["run", "-o", trace.to_str().unwrap(), "--", "./cl_real"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.starts_with("skip:") {
        eprintln!("skipped: {stdout}");
        return;
    }
    assert!(stdout.contains("done"), "{out:?}");
    let svm = stdout.contains("svm");
    let out = memtally(&["report", "--json", trace.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &doc["device"];
    let cl = by_kind(&d["devices"][0], "opencl");
    // The retained buffer freed once, at its last release.
    assert_eq!(d["devices"][0]["frees"], if svm { 2 } else { 1 }, "{d}");
    assert!(site_holds(d, "real_kept", 1 << 20), "{d}");
    let kept = (1 << 20) + if svm { 64 << 10 } else { 0 };
    assert_eq!(cl["live_bytes"], kept, "{d}");
    assert_eq!(d["unknown_frees"], 0, "{d}");
}
