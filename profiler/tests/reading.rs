//! Reading whole traces: traces cut short, corrupt traces, files that are
//! not traces, and clock calibration.

use crate::util::{analyse, try_analyse};
use memtally_alloc::trace::kind;
use memtally_profiler::synth::{TraceBuilder, alloc, free};
use memtally_profiler::{Ending, ErrorKind};

fn base() -> TraceBuilder {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.frame(1, 0, 0x401000);
    t
}

#[test]
fn a_trace_cut_inside_a_record_is_analysed_up_to_the_cut() {
    let mut t = base();
    t.events(0, &[alloc(320, 0x1000, 100, 1)]);
    t.watermark(480);
    // Thread 1's events come after the last watermark: the decoder holds
    // them back for ordering until the trace is known to have ended.
    t.events(1, &[alloc(640, 0x2000, 50, 1)]);
    let cut = t.bytes().len() as u64;
    t.events(0, &[free(960, 0x1000)]);
    let full = t.bytes().to_vec();
    // Drop the last two bytes: the last EVENTS record is incomplete.
    let a = analyse(&full[..full.len() - 2]);
    assert_eq!(a.ending, Ending::CutShort { at: cut });
    let c = a.model.totals().counters;
    assert_eq!(c.allocations, 2);
    assert_eq!(c.frees, 0);
    assert_eq!(a.model.peak().bytes, 150);
}

#[test]
fn a_trace_ending_on_a_record_boundary_without_footer_is_cut_short_at_its_end() {
    let mut t = base();
    t.events(0, &[alloc(10, 0x1000, 100, 1)]);
    let len = t.bytes().len() as u64;
    let a = analyse(t.bytes());
    assert_eq!(a.ending, Ending::CutShort { at: len });
    assert_eq!(a.model.totals().counters.live_bytes, 100);
}

#[test]
fn a_footer_without_the_clean_exit_flag_is_reported() {
    let mut t = base();
    t.record(kind::FOOTER, |c| {
        memtally_alloc::trace::put_uvar(c, 5);
        memtally_alloc::trace::put_uvar(c, 0);
        memtally_alloc::trace::put_uvar(c, 0);
        memtally_alloc::trace::put_uvar(c, 0);
    });
    let a = analyse(t.bytes());
    assert_eq!(
        a.ending,
        Ending::Complete {
            clean_exit: false,
            exec: false
        }
    );
}

#[test]
fn a_damaged_record_stops_reading_and_what_came_before_is_analysed() {
    let mut t = base();
    t.events(0, &[alloc(320, 0x1000, 100, 1)]);
    t.watermark(400);
    // Held back for ordering when the damage comes: released, not lost.
    t.events(1, &[alloc(480, 0x2000, 50, 1)]);
    let at = t.bytes().len() as u64;
    // A FRAME record whose payload ends after the id.
    t.record(kind::FRAME, |c| memtally_alloc::trace::put_uvar(c, 2));
    // What follows the damage is not read.
    t.events(0, &[free(640, 0x1000)]);
    t.footer(800);
    let a = analyse(t.bytes());
    assert_eq!(
        a.ending,
        Ending::Damaged {
            at,
            kind: kind::FRAME,
            what: "frame parent"
        }
    );
    let c = a.model.totals().counters;
    assert_eq!((c.allocations, c.frees), (2, 0));
    assert_eq!(a.model.peak().bytes, 150);
    assert_eq!(
        a.ending.warning().unwrap(),
        format!(
            "is damaged at byte {at} (a record of kind 4: frame parent); reading stopped there and everything before it is analysed"
        )
    );
}

#[test]
fn damaged_events_of_a_held_thread_lose_only_what_follows_the_damage() {
    let mut t = base();
    t.events(0, &[alloc(320, 0x1000, 100, 1)]);
    // Thread 1's record holds a good event, then bytes that do not decode
    // as an event: the first is kept.
    t.events(1, &[alloc(480, 0x2000, 50, 1)]);
    let good = t.bytes().to_vec();
    // An EVENTS record of thread 1 with garbage after the thread number.
    t.record(kind::EVENTS, |c| {
        memtally_alloc::trace::put_uvar(c, 1);
        memtally_alloc::trace::put_bytes(c, &[0xff; 12]);
    });
    t.record(kind::FRAME, |c| memtally_alloc::trace::put_uvar(c, 2));
    let a = analyse(t.bytes());
    assert!(matches!(a.ending, Ending::Damaged { .. }), "{:?}", a.ending);
    assert_eq!(a.model.totals().counters.allocations, 2);
    assert!(good.len() < t.bytes().len());
}

#[test]
fn a_file_that_is_not_a_trace_is_a_clear_error() {
    let e = try_analyse(b"hello, this is not a trace").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Decode(_)));
    assert_eq!(e.to_string(), "not a memtally trace (bad magic bytes)");
}

#[test]
fn flipped_bytes_never_panic() {
    let mut t = base();
    t.events(0, &[alloc(10, 0x1000, 100, 1), free(20, 0x1000)]);
    t.footer(30);
    let good = t.into_bytes();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            // Any answer is fine but a panic.
            let _ = try_analyse(&bad);
        }
    }
}

#[test]
fn other_files_are_rejected_with_a_reason() {
    let e = try_analyse(b"#!/bin/sh\necho hello\n").unwrap_err();
    assert_eq!(e.to_string(), "not a memtally trace (bad magic bytes)");
    let e = try_analyse(b"").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NoHeader { file_bytes: 0 }));
    assert!(e.to_string().contains("trace has no header"), "{e}");
    let e = try_analyse(&TraceBuilder::new().into_bytes()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NoHeader { .. }));
    let e =
        memtally_profiler::Analysis::open(std::path::Path::new("/no/such/file.mtt")).unwrap_err();
    assert!(
        e.to_string().starts_with("cannot read /no/such/file.mtt: "),
        "{e}"
    );
}

#[test]
fn without_clock_records_one_tick_is_one_nanosecond() {
    let mut t = TraceBuilder::new();
    t.full_header();
    t.events(0, &[alloc(1024, 0x1000, 8, 0), alloc(3072, 0x2000, 8, 0)]);
    t.footer(5120);
    let a = analyse(t.bytes());
    assert!(!a.model.clock().is_calibrated());
    assert_eq!(a.model.duration_ns(), 4096);
    assert_eq!(a.model.since_start_ns(a.model.peak().ticks), 2048);
}

#[test]
fn a_trace_ended_by_exec_says_so() {
    let mut t = base();
    t.events(0, &[alloc(10, 0x1000, 100, 1)]);
    t.record(kind::FOOTER, |c| {
        memtally_alloc::trace::put_uvar(c, 20);
        memtally_alloc::trace::put_uvar(c, 1);
        memtally_alloc::trace::put_uvar(c, 0);
        memtally_alloc::trace::put_uvar(c, memtally_alloc::trace::FOOTER_EXEC);
    });
    let a = analyse(t.bytes());
    assert_eq!(
        a.ending,
        Ending::Complete {
            clean_exit: false,
            exec: true
        }
    );
    let r = memtally_profiler::report::build(
        &a,
        &mut memtally_profiler::Symbolizer::default(),
        &Default::default(),
    );
    assert!(r.trace.exec);
    let text = memtally_profiler::report::render_text(&r);
    assert!(
        text.contains("note: the trace ends where the process executed another program"),
        "{text}"
    );
    assert!(!text.contains("did not exit normally"), "{text}");
    assert!(text.contains("LIVE WHEN THE TRACE ENDS"), "{text}");
}
