//! Ownership analytics: a C program whose producer thread hands 100 blocks
//! to a consumer thread that frees them, reported by `memtally report`.

use super::{build_c, memtally, record_c_program, run_recorded, scratch};

#[test]
fn blocks_freed_by_another_thread_are_counted_by_site_and_thread_pair() {
    let Some(trace) = record_c_program("ownership", "handoff", &["-pthread"], &[]) else {
        return;
    };
    let out = memtally(&["report", "--json", trace.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = &doc["ownership"];
    assert_eq!(w["remote_frees"], 100, "{w}");
    assert_eq!(w["remote_bytes"], 4800, "{w}");
    let transfers = w["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 1, "{w}");
    let t = &transfers[0];
    assert_eq!(
        (t["blocks"].as_u64(), t["bytes"].as_u64()),
        (Some(100), Some(4800))
    );
    assert_ne!(t["from"], t["to"]);
    assert_eq!(w["remote_lifetime_ns"]["count"], 100);
    // The producer's site: every block released elsewhere.
    let site = &w["sites"][0];
    assert_eq!(site["remote_frees"], 100);
    assert_eq!(site["remote_share"], 1.0);
    let frame = &site["frames"][site["library_frames"].as_u64().unwrap() as usize];
    assert_eq!(frame["function"], "produce");
    // The two threads: one handed 100 over, the other took 100 over.
    let threads = doc["threads"].as_array().unwrap();
    let producer = threads.iter().find(|x| x["thread"] == t["from"]).unwrap();
    let consumer = threads.iter().find(|x| x["thread"] == t["to"]).unwrap();
    assert_eq!(
        (
            producer["handed_over"].as_u64(),
            producer["taken_over"].as_u64()
        ),
        (Some(100), Some(0))
    );
    assert_eq!(
        (
            consumer["handed_over"].as_u64(),
            consumer["taken_over"].as_u64()
        ),
        (Some(0), Some(100))
    );
    // Local churn stays local.
    assert_eq!(w["local_lifetime_ns"]["count"], 100);
    let text = memtally(&["report", trace.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("OWNERSHIP (which thread releases what each thread allocated; this is not race detection)"), "{text}");
}

#[test]
fn blocks_handed_between_threads_on_busy_cores_are_never_misordered() {
    // Four threads allocate and free tens of millions of blocks, handing
    // some to each other: a free's time is read before its block can be
    // reused, and a free whose core's clock runs behind the allocating
    // core's is matched to its block all the same. Before either, a run
    // showed a handful of blocks "allocated again while live".
    let dir = scratch("handoff-busy");
    let exe = build_c(&dir, "attach_target", &["-pthread"]);
    let trace = dir.join("t.mtt");
    let t = trace.to_str().unwrap();
    let Some(out) = run_recorded(
        "handoff-busy-run",
        &["run", "-o", t, "--", exe.to_str().unwrap(), "1.5", "4"],
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = memtally(&["report", "--json", t]);
    let _ = std::fs::remove_file(&trace);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &doc["summary"];
    assert!(totals["frees"].as_u64().unwrap() > 1_000_000, "{totals}");
    assert_eq!(totals["unknown_frees"], 0, "{totals}");
    assert_eq!(totals["lost_frees"], 0, "{totals}");
}
