//! Following a trace while it is written: the model grows as records are
//! appended (even when a record arrives in two writes), held events are
//! released when the writer goes, the footer ends following, and damage
//! stops it without losing what came before.

use memtally_profiler::synth::{TraceBuilder, alloc, free};
use memtally_profiler::{Live, LiveState, Model, ModelOptions, WriterWatch};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn base() -> TraceBuilder {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.frame(1, 0, 0x401000);
    t
}

/// Waits (up to 10 s) until `f` holds of the live model.
fn until(live: &Live, what: &str, f: impl Fn(&Model) -> bool) {
    let start = Instant::now();
    while !f(&live.model()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}; status {:?}",
            live.status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn the_model_follows_appended_records_and_releases_held_events_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.mtt");
    let live = Live::follow(&path, ModelOptions::default(), WriterWatch::Told);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(live.status().state, LiveState::Waiting);

    let mut t = base();
    t.events(0, &[alloc(100, 0x1000, 64, 1)]).watermark(200);
    let first = t.bytes().len();
    append(&path, t.bytes());
    until(&live, "the first allocation", |m| {
        m.totals().counters.allocations == 1
    });
    assert_eq!(live.status().state, LiveState::Following);

    // The next record arrives in two writes: nothing of it is applied
    // until it is whole, then all of it.
    t.events(0, &[alloc(300, 0x2000, 36, 1), free(310, 0x1000)])
        .watermark(400);
    let second = &t.bytes()[first..];
    append(&path, &second[..3]);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(live.model().totals().counters.allocations, 1);
    append(&path, &second[3..]);
    until(&live, "the second record", |m| {
        m.totals().counters.frees == 1
    });
    assert_eq!(live.model().totals().counters.live_bytes, 36);

    // Events past the last watermark are held back for ordering...
    let before = t.bytes().len();
    t.events(0, &[alloc(900, 0x3000, 1000, 1)]);
    append(&path, &t.bytes()[before..]);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(live.model().totals().counters.allocations, 2);
    // ...until the writer is known to be gone.
    live.writer_gone();
    let end = t.bytes().len() as u64;
    let (model, status) = live.wait();
    assert_eq!(status.state, LiveState::CutShort { at: end });
    assert_eq!(status.bytes, end);
    assert_eq!(model.totals().counters.allocations, 3);
    assert_eq!(model.peak().bytes, 1036);
}

#[test]
fn the_footer_ends_following_and_damage_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done.mtt");
    let mut t = base();
    t.events(0, &[alloc(100, 0x1000, 64, 1)]).footer(200);
    std::fs::write(&done, t.bytes()).unwrap();
    // The process named in the header is long gone, but the footer is
    // what ends it.
    let (model, status) =
        Live::follow(&done, ModelOptions::default(), WriterWatch::HeaderPid).wait();
    assert_eq!(
        status.state,
        LiveState::Complete {
            clean_exit: true,
            exec: false,
            detached: false,
            exit_status: None
        }
    );
    assert_eq!(model.totals().counters.live_bytes, 64);

    let damaged = dir.path().join("damaged.mtt");
    let mut t = base();
    t.events(0, &[alloc(100, 0x1000, 64, 1)]).watermark(150);
    // A FRAME record whose payload is cut inside its varints.
    t.raw(&[memtally_alloc::trace::kind::FRAME, 1, 0x80]);
    std::fs::write(&damaged, t.bytes()).unwrap();
    let (model, status) = Live::follow(&damaged, ModelOptions::default(), WriterWatch::Told).wait();
    let LiveState::Failed(why) = &status.state else {
        panic!("{status:?}");
    };
    assert!(why.contains("damaged.mtt"), "{why}");
    assert_eq!(model.totals().counters.allocations, 1);
}

#[test]
fn a_program_that_never_writes_its_trace_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.mtt");
    let live = Live::follow(&path, ModelOptions::default(), WriterWatch::Told);
    live.writer_gone();
    let (_, status) = live.wait();
    let LiveState::Failed(why) = &status.state else {
        panic!("{status:?}");
    };
    assert!(why.contains("without writing a trace"), "{why}");
}

#[test]
fn a_trace_whose_pid_now_runs_another_program_is_not_followed_forever() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reused.mtt");
    // Written by "pid <this test>", but as another executable: the pid was
    // reused, the writer is gone.
    let mut t = TraceBuilder::new();
    t.header(
        u64::from(std::process::id()),
        memtally_alloc::trace::mode::FULL,
        0,
        "/usr/bin/long-gone-server",
        &["long-gone-server"],
    )
    .clock(0, 0)
    .frame(1, 0, 0x401000);
    t.events(0, &[alloc(100, 0x1000, 64, 1)]);
    std::fs::write(&path, t.bytes()).unwrap();
    let (model, status) =
        Live::follow(&path, ModelOptions::default(), WriterWatch::HeaderPid).wait();
    assert!(
        matches!(status.state, LiveState::CutShort { .. }),
        "{status:?}"
    );
    assert_eq!(model.totals().counters.allocations, 1);
}
