//! The report's sections and its JSON document.

use crate::util::analyse;
use memtally_alloc::trace::mode;
use memtally_profiler::Symbolizer;
use memtally_profiler::report::{ReportOptions, build, render_text, write_json};
use memtally_profiler::synth::{TraceBuilder, alloc, free};

/// Two threads, three sites (no modules: frames print as addresses).
fn sample(cut: bool) -> Vec<u8> {
    let mut t = TraceBuilder::new();
    // Times are multiples of 32 ticks, the format's time unit; one tick
    // is one nanosecond.
    t.full_header().clock(0, 0).clock(3200, 3200);
    t.thread(0, 100, "main", 0).thread(1, 101, "worker", 5);
    t.frame(1, 0, 0x1000)
        .frame(2, 1, 0x2000)
        .frame(3, 1, 0x3000)
        .frame(4, 3, 0x4000);
    t.events(
        0,
        &[
            alloc(320, 0xa000, 1000, 2),
            alloc(640, 0xb000, 24, 3),
            free(960, 0xb000),
            alloc(1280, 0xc000, 4096, 4),
        ],
    );
    t.events(1, &[alloc(1120, 0xd000, 8, 3), free(1600, 0xc000)]);
    t.memory(1440, 10 << 20, 12 << 20);
    t.watermark(1920);
    if !cut {
        t.footer(3200);
    }
    t.into_bytes()
}

#[test]
fn the_text_report_has_every_section() {
    let a = analyse(&sample(false));
    let r = build(&a, &mut Symbolizer::default(), &ReportOptions::default());
    let text = render_text(&r);
    for want in [
        "program   prog --flag  (pid 4242)",
        "recorded  full mode; 3.2 µs; 2 threads; 6 events",
        "SUMMARY",
        "  allocations           4  5.0 KiB requested",
        "  peak heap       5.0 KiB  3 blocks, at 1.3 µs",
        "  live at exit     1008 B  2 blocks",
        "PEAK HEAP: 5.0 KiB in 3 blocks at 1.3 µs",
        "  alloc latency      4   16 ns   16 ns",
        "  lifetime           2  320 ns  320 ns",
        "LIVE AT EXIT: 1008 B in 2 blocks",
        "TOP SITES BY BYTES ALLOCATED",
        "TOP SITES BY ALLOCATIONS",
        "TOP SITES BY THEIR OWN PEAK",
        "TEMPORARY ALLOCATIONS: 1 (25.0% of allocations, 24 B)",
        "SIZES (requested, power-of-two buckets)",
        "memtally's size classes serve these requests with",
        "LATENCY AND LIFETIMES",
        "THREADS",
        "HEAP OVER TIME",
        "RSS OVER TIME (highest 10.0 MiB)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // The peak's largest site, with its stack innermost first.
    assert!(
        text.contains(
            "  4.0 KiB       1  0x4000\n                   <- 0x3000\n                   <- 0x1000\n"
        ),
        "{text}"
    );
    // Threads: name, tid, allocations, bytes, live at end, and the one
    // block main allocated that worker freed.
    assert!(
        text.contains("       1  101  worker       1      8 B     0     1         8 B            0           1\n"),
        "{text}"
    );
    assert!(
        text.contains("OWNERSHIP (which thread releases what each thread allocated; this is not race detection): 50.0% of blocks released by another thread (1 blocks, 4.0 KiB)"),
        "{text}"
    );
    assert!(text.contains("  [4 KiB, 8 KiB)  1  ####"), "{text}");
    assert!(!text.contains("note:"), "{text}");
}

#[test]
fn a_cut_short_trace_says_so() {
    let a = analyse(&sample(true));
    let r = build(&a, &mut Symbolizer::default(), &ReportOptions::default());
    let text = render_text(&r);
    let at = sample(true).len();
    assert!(
        text.contains(&format!(
            "note: trace cut short at byte {at}: the process did not exit normally"
        )),
        "{text}"
    );
    assert!(text.contains("LIVE WHEN THE TRACE ENDS"), "{text}");
    assert!(!r.trace.complete);
    assert_eq!(r.trace.cut_at, Some(at as u64));
}

#[test]
fn sampled_reports_mark_estimates() {
    let mut t = TraceBuilder::new();
    t.header(1, mode::SAMPLED, 1000, "/bin/app", &["app"]);
    t.events(0, &[alloc(10, 0x1000, 1000, 0)]);
    t.footer(20);
    let a = analyse(t.bytes());
    let r = build(&a, &mut Symbolizer::default(), &ReportOptions::default());
    let text = render_text(&r);
    assert!(text.contains("counts and bytes are estimates"), "{text}");
    assert!(text.contains("~1.5 KiB requested"), "{text}");
    assert!(r.trace.estimated);
    assert_eq!(r.trace.mode, "sampled");
}

#[test]
fn the_json_document_has_the_documented_fields() {
    let a = analyse(&sample(false));
    let r = build(
        &a,
        &mut Symbolizer::default(),
        &ReportOptions { top: 2, frames: 2 },
    );
    let mut out = Vec::new();
    write_json(&r, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema_version"], 1);
    for key in [
        "trace",
        "summary",
        "peak",
        "live_at_exit",
        "top_by_bytes",
        "top_by_count",
        "top_by_peak",
        "temporary",
        "sizes",
        "alloc_latency_ns",
        "free_latency_ns",
        "lifetime_ns",
        "threads",
        "timeline",
        "notes",
        "unsymbolised_modules",
    ] {
        assert!(v.get(key).is_some(), "no {key}");
    }
    assert_eq!(v["trace"]["pid"], 4242);
    assert_eq!(v["trace"]["mode"], "full");
    assert_eq!(v["trace"]["complete"], true);
    assert_eq!(v["summary"]["allocations"], 4);
    assert_eq!(v["summary"]["bytes_allocated"], 1000 + 24 + 4096 + 8);
    assert_eq!(v["summary"]["peak_bytes"], 5104);
    assert_eq!(v["summary"]["peak_time_ns"], 1280);
    assert_eq!(v["peak"]["sites"][0]["stack"], 4);
    assert_eq!(v["peak"]["sites"][0]["at_peak_bytes"], 4096);
    let frames = v["peak"]["sites"][0]["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0]["address"], 0x4000);
    assert_eq!(v["peak"]["sites"][0]["more_frames"], 1);
    assert_eq!(v["top_by_bytes"].as_array().unwrap().len(), 2);
    assert_eq!(v["live_at_exit"]["bytes"], 1008);
    assert_eq!(v["temporary"]["count"], 1);
    assert_eq!(v["threads"][1]["name"], "worker");
    assert_eq!(v["threads"][1]["os_tid"], 101);
    assert_eq!(v["alloc_latency_ns"]["count"], 4);
    assert_eq!(v["alloc_latency_ns"]["max"], 16);
    assert!(v["timeline"]["heap"].as_array().unwrap().len() >= 2);
    assert_eq!(v["timeline"]["rss"][0]["bytes"], 10 << 20);
}

/// One race pair trapping in either order (the read first, then the write
/// first) is one group of two in `memtally errors`, and the report's text
/// lists each as a data race, not as an invalid pointer.
#[test]
fn a_race_trapped_in_either_order_is_one_group() {
    use memtally_profiler::errors;
    use memtally_profiler::synth::race_side;
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(32_000, 32_000);
    t.string(1, "write").string(2, "access");
    t.frame(1, 0, 0x1000).frame(2, 0, 0x2000);
    // Thread 1 reads at 0x2000 (stack 2), thread 0 writes at 0x1000
    // (stack 1). The second access records its side first.
    t.events(0, &[alloc(320, 0xa000, 64, 1)]);
    t.events(1, &[race_side(3200, false, 0xa008, 1, 1)]);
    t.events(0, &[race_side(3520, true, 0xa008, 2, 2)]);
    t.events(0, &[race_side(9600, false, 0xa008, 2, 2)]);
    t.events(1, &[race_side(9920, true, 0xa008, 1, 1)]);
    let a = analyse(&t.into_bytes());
    let r = errors::build(&a, &mut Symbolizer::default(), 4);
    assert_eq!(r.total, 2, "{:?}", r.groups);
    assert_eq!(r.groups.len(), 1, "{:?}", r.groups);
    assert_eq!(r.groups[0].count, 2);
    assert_eq!(r.groups[0].kind, "data race");
    let report = build(&a, &mut Symbolizer::default(), &ReportOptions::default());
    let text = render_text(&report);
    assert!(text.contains("MEMORY ERRORS: 2\n"), "{text}");
    assert!(
        text.contains(
            "  data race on 0xa008: an access (thread 0, at 3.5 µs) overlapping a write (thread 1)"
        ),
        "{text}"
    );
    assert!(!text.contains("invalid pointer"), "{text}");
}
