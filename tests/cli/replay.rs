//! `memtally replay --embedded`: a synthetic trace whose fit is known,
//! through every model, as text and JSON, and the errors.

use super::{fails_with, json_of, memtally, scratch};
use memtally_profiler::synth::{TraceBuilder, alloc, free};

/// 40 blocks of 100 bytes, every other one freed, then ten of 150 bytes:
/// first fit cannot put them in the 100-byte holes.
fn trace(dir: &std::path::Path) -> std::path::PathBuf {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.frame(1, 0, 0x1000).frame(2, 0, 0x2000);
    let mut events = Vec::new();
    for i in 0..40u64 {
        events.push(alloc(i * 32, 0x10_0000 + i * 0x100, 100, 1));
    }
    for i in (0..40u64).step_by(2) {
        events.push(free(2000 + i * 32, 0x10_0000 + i * 0x100));
    }
    for i in 0..10u64 {
        events.push(alloc(4000 + i * 32, 0x20_0000 + i * 0x100, 150, 2));
    }
    t.events(0, &events).footer(10_000);
    let path = dir.join("holes.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    path
}

#[test]
fn replay_finds_the_failure_and_the_smallest_arena() {
    let dir = scratch("replay");
    let path = trace(&dir);
    let p = path.to_str().unwrap();
    // 40 x 112-byte blocks fill 4480 bytes: the 150-byte requests fail at
    // the first one (op 60) when the arena has no room past them.
    let doc = json_of(&[
        "replay",
        p,
        "--embedded",
        "first-fit,tlsf,buddy",
        "--arena",
        "4480",
        "--json",
    ]);
    assert_eq!(doc["operations"], 70);
    let models = doc["models"].as_array().unwrap();
    let first_fit = models
        .iter()
        .find(|m| m["outcome"]["model"] == "first-fit")
        .unwrap();
    let failure = &first_fit["outcome"]["failure"];
    assert_eq!(failure["index"], 60, "{first_fit}");
    assert_eq!(failure["size"], 150);
    assert_eq!(failure["free_bytes"], 20 * 112);
    assert_eq!(failure["largest_free"], 112);
    // It fits when the ten 160-byte blocks go after the 40: 4480 + 1600.
    assert_eq!(first_fit["smallest_arena"], 6080);
    // Fragmentation over time: 48 stretches, none while the blocks are
    // only allocated (the arena's free space one block), its maximum
    // once every other block is freed.
    let series: Vec<f64> = first_fit["outcome"]["frag_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(series.len(), 48);
    assert_eq!(series[0], 0.0);
    let most = series.iter().copied().fold(0.0, f64::max);
    assert_eq!(most, first_fit["outcome"]["frag_max"].as_f64().unwrap());
    assert!(most > 0.5, "{series:?}");
    assert_eq!(first_fit["outcome"]["failed"], 10);
    let failures = doc["failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .filter_map(|f| f.as_str())
            .any(|f| f.starts_with("fragmentation at ")),
        "{failures:?}"
    );

    let out = memtally(&["replay", p, "--embedded", "all"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("70 operations through 9 models, best first"),
        "{text}"
    );
    for model in [
        "tlsf",
        "first-fit",
        "next-fit",
        "best-fit",
        "worst-fit",
        "buddy",
        "freertos-heap2",
        "freertos-heap4",
        "freertos-heap5",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(model)),
            "{model}: {text}"
        );
    }
}

#[test]
fn replay_says_what_is_wrong() {
    let dir = scratch("replay-errors");
    let path = trace(&dir);
    let p = path.to_str().unwrap();
    fails_with(&memtally(&["replay", p]), "nothing to replay against");
    fails_with(
        &memtally(&["replay", p, "--embedded", "dlmalloc"]),
        "unknown model \"dlmalloc\"",
    );
    fails_with(
        &memtally(&["replay", p, "--embedded", "slab:"]),
        "invalid slab:",
    );
    fails_with(
        &memtally(&["replay", p, "--embedded", "tlsf", "--arena", "8"]),
        "smaller than one block",
    );
    fails_with(
        &memtally(&["replay", p, "--embedded", "tlsf", "--align", "12"]),
        "expected a power of two",
    );
    fails_with(
        &memtally(&["replay", "/no/such.mtt", "--embedded", "tlsf"]),
        "/no/such.mtt",
    );
    // A slab list whose sizes use commas too.
    let out = memtally(&["replay", p, "--embedded", "slab:64,128,256,tlsf"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("slab:64,128,256"));
}

#[test]
fn an_rmm_log_round_trip_keeps_the_peak_and_the_leaks() {
    let dir = scratch("replay-rmm");
    let path = trace(&dir);
    let p = path.to_str().unwrap();
    let csv = dir.join("holes.rmm.csv");
    let out = memtally(&[
        "export",
        "--format",
        "rmm-csv",
        "-o",
        csv.to_str().unwrap(),
        p,
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("Thread,Time,Action,Pointer,Size,Stream\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + 70);
    let summary = |file: &str| {
        let doc = json_of(&["replay", file, "--embedded", "first-fit", "--json"]);
        let o = doc["models"][0]["outcome"].clone();
        (
            o["max_live"].as_u64(),
            o["leaked_blocks"].as_u64(),
            o["unknown_frees"].as_u64(),
        )
    };
    let from_trace = summary(p);
    assert_eq!(from_trace, (Some(4000), Some(30), Some(0)));
    assert_eq!(summary(csv.to_str().unwrap()), from_trace);
    // A damaged log says which line.
    std::fs::write(
        &csv,
        "Thread,Time,Action,Pointer,Size,Stream\n1,00:00:00.0,allocate,0x10,lots,0\n",
    )
    .unwrap();
    fails_with(
        &memtally(&["replay", csv.to_str().unwrap(), "--embedded", "tlsf"]),
        "line 2: bad size \"lots\"",
    );
}

#[test]
fn distributed_replay_spreads_the_trace_and_counts_moves() {
    let dir = scratch("replay-distributed");
    let path = trace(&dir);
    let p = path.to_str().unwrap();
    let doc = json_of(&[
        "replay",
        p,
        "--distributed",
        "nodes=4,placement=rendezvous,key=address",
        "--churn",
        "add@3us",
        "--json",
    ]);
    let d = &doc["distributed"];
    assert_eq!(d["peak"].as_array().unwrap().len(), 5, "{d}");
    // 30 blocks live at the end: 20 of 100 bytes and 10 of 150.
    let last: u64 = d["last"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(last, 3500);
    assert_eq!(d["frees"], 20);
    assert_eq!(d["moves"].as_array().unwrap().len(), 1);
    assert_eq!(d["moves"][0]["nodes"], 5);
    fails_with(
        &memtally(&["replay", p, "--distributed", "nodes=0"]),
        "invalid nodes=0",
    );
    fails_with(
        &memtally(&["replay", p, "--distributed", "nodes=2,placement=maglev"]),
        "invalid placement=maglev",
    );
    fails_with(
        &memtally(&["replay", p, "--churn", "add@1s"]),
        "--churn applies only to --distributed",
    );
}

#[test]
fn access_annotations_give_coherence_counts() {
    use memtally_profiler::synth::{access, marker};
    let dir = scratch("replay-coherence");
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.frame(1, 0, 0x1000).string(1, "sync");
    // Thread 0 allocates and writes a block, thread 1 reads it, forty
    // times, with a marker every ten rounds.
    t.events(0, &[alloc(32, 0x10_0000, 256, 1)]);
    for i in 0..40u64 {
        let at = 64 + i * 128;
        t.events(0, &[access(at, 0x10_0000 + 8, true)]);
        t.events(1, &[access(at + 32, 0x10_0000 + 16, false)]);
        if i % 10 == 9 {
            t.events(0, &[marker(at + 64, 1)]);
        }
    }
    t.footer(10_000);
    let path = dir.join("shared.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let doc = json_of(&[
        "replay",
        path.to_str().unwrap(),
        "--distributed",
        "nodes=4,placement=rendezvous,key=thread",
        "--json",
    ]);
    assert_eq!(doc["operations"], 1, "only the allocation is an operation");
    let c = &doc["distributed"]["coherence"];
    assert_eq!(
        (c["reads"].as_u64(), c["writes"].as_u64()),
        (Some(40), Some(40)),
        "{c}"
    );
    assert_eq!(c["sync_points"], 4);
    // Whether the two threads share a node depends on the hash; either
    // way release consistency sends no more than sequential consistency.
    assert!(
        c["rc_messages"].as_u64() <= c["sc_messages"].as_u64(),
        "{c}"
    );
    let text = memtally(&[
        "replay",
        path.to_str().unwrap(),
        "--distributed",
        "nodes=4,key=thread",
    ]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("coherence (MSI directory, 40 reads and 40 writes annotated)")
    );
}

#[test]
fn churn_times_are_nanoseconds_whatever_a_tick_is() {
    let dir = scratch("replay-churn-ticks");
    let mut t = TraceBuilder::new();
    // Ten ticks a nanosecond (a 10 GHz time-stamp counter).
    t.full_header().clock(0, 0).clock(10_000_000, 1_000_000);
    t.frame(1, 0, 0x1000);
    // A 100-byte block every 100 ns: 0 to 3.9 us.
    let events: Vec<_> = (0..40u64)
        .map(|i| alloc(i * 1000, 0x10_0000 + i * 0x100, 100, 1))
        .collect();
    t.events(0, &events).footer(400_000);
    let path = dir.join("fast-clock.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let p = path.to_str().unwrap();
    let doc = json_of(&[
        "replay",
        p,
        "--distributed",
        "nodes=3,placement=jump,key=address",
        "--churn",
        "add@2050ns",
        "--json",
    ]);
    let moves = doc["distributed"]["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{doc}");
    // At 2.05 us, 21 blocks (0 to 2.0 us) were live.
    assert_eq!(moves[0]["live_bytes"], 2100, "{}", moves[0]);
    // A change after the trace's end (1 ms) is not applied, and says so.
    let out = memtally(&[
        "replay",
        p,
        "--distributed",
        "nodes=3",
        "--churn",
        "add@5ms",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("falls after the trace's end"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("at ")),
        "{text}"
    );
}

#[test]
fn skipped_frees_failures_and_absurd_sizes_are_reported_in_every_mode() {
    let dir = scratch("replay-skipped");
    let csv = dir.join("odd.rmm.csv");
    std::fs::write(
        &csv,
        "Thread,Time,Action,Pointer,Size,Stream\n\
         1,00:00:00.000001,allocate,0x1000,4096,0\n\
         1,00:00:00.000002,allocate,0x2000,18446744073709551615,0\n\
         1,00:00:00.000003,free,0x9000,64,0\n\
         1,00:00:00.000004,allocate failure,(nil),1048576,0\n\
         1,00:00:00.000005,free,0x1000,4096,0\n",
    )
    .unwrap();
    let c = csv.to_str().unwrap();
    // No model panics on a size near 2^64: it fails, and is counted.
    let doc = json_of(&["replay", c, "--embedded", "all", "--arena", "1M", "--json"]);
    assert_eq!(doc["skipped"]["unknown_frees"], 1, "{doc}");
    assert_eq!(doc["skipped"]["recorded_failures"], 1, "{doc}");
    for m in doc["models"].as_array().unwrap() {
        assert_eq!(m["outcome"]["failed"], 1, "{m}");
        assert_eq!(m["outcome"]["failure"]["size"], u64::MAX, "{m}");
    }
    let out = memtally(&["replay", c, "--embedded", "tlsf,buddy"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The notes come whatever is replayed against.
    for mode in [
        &["--embedded", "first-fit"][..],
        &["--distributed", "nodes=2"][..],
    ] {
        let mut args = vec!["replay", c];
        args.extend_from_slice(mode);
        let out = memtally(&args);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("1 frees of addresses not allocated in the trace are skipped")
                && err.contains("1 allocations that failed when recorded are not replayed"),
            "{mode:?}: {err}"
        );
    }
    fails_with(
        &memtally(&["replay", c, "--embedded", "tlsf", "--arena", "2048G"]),
        "--arena 2048G is larger than the 1T",
    );
}

#[test]
fn against_real_allocators_replays_in_worker_processes() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_memtally"));
    if !exe.with_file_name("replay-worker-system").is_file() {
        eprintln!("skipped: the replay workers are not built (run cargo test --workspace)");
        return;
    }
    let dir = scratch("replay-against");
    let path = trace(&dir);
    let p = path.to_str().unwrap();
    let doc = json_of(&[
        "replay",
        p,
        "--against",
        "memtally,system,mimalloc,jemalloc",
        "--runs",
        "1",
        "--json",
    ]);
    let runs = doc["allocators"].as_array().unwrap();
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r["allocator"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["memtally", "system", "mimalloc", "jemalloc"],
        "{doc}"
    );
    for r in runs {
        // Every allocation served; the 30 blocks the trace never frees
        // are left at the end.
        assert_eq!(r["failed"], 0, "{r}");
        assert_eq!(r["leaked"], 30, "{r}");
        let replay_ns = r["replay_ns"].as_u64().unwrap();
        // The threads take turns, so their calls never overlap: the time
        // inside them is part of the replay's.
        let alloc_ns = r["alloc_ns"].as_u64().unwrap();
        assert!(alloc_ns > 0 && alloc_ns <= replay_ns, "{r}");
        assert!(r["peak_rss_kib"].as_u64().unwrap() > 0, "{r}");
        assert!(r["time_ratio"].as_f64().is_some(), "{r}");
        assert!(r["alloc_time_ratio"].as_f64().is_some(), "{r}");
    }
    assert_eq!(runs[0]["time_ratio"], 1.0);
    assert_eq!(runs[0]["alloc_time_ratio"], 1.0);
    fails_with(
        &memtally(&["replay", p, "--against", "tcmalloc"]),
        "tcmalloc",
    );
}

#[test]
fn a_c_programs_access_annotations_reach_the_coherence_model() {
    let Some(trace) =
        super::record_c_program("replay-annotated", "shared_counter", &["-pthread"], &[])
    else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let doc = json_of(&[
        "replay",
        trace.to_str().unwrap(),
        "--distributed",
        "nodes=64,placement=rendezvous,key=thread",
        "--json",
    ]);
    let c = &doc["distributed"]["coherence"];
    // The program's own counts: 200 reads, 200 writes, 4 markers.
    assert_eq!(
        (c["reads"].as_u64(), c["writes"].as_u64()),
        (Some(200), Some(200)),
        "{c}"
    );
    assert_eq!(c["unresolved"], 0, "{c}");
    assert_eq!(c["sync_points"], 4, "{c}");
    assert!(
        c["rc_messages"].as_u64() <= c["sc_messages"].as_u64(),
        "{c}"
    );
}
