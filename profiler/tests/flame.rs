//! Flamegraphs: the folded stacks of each metric, worked out by hand from a
//! synthetic trace, and the SVG drawn from them.

use crate::util::analyse;
use memtally_profiler::flame::{self, Metric, Titles};
use memtally_profiler::synth::{TraceBuilder, alloc, free};
use memtally_profiler::{Analysis, ModelOptions, Symbolizer};

/// Three sites under one root frame (no modules: frames are addresses):
/// stack 2 = 0x1000;0x2000 allocates 1000 B, kept; stack 3 = 0x1000;0x3000
/// allocates 24 B freed at once (temporary) and 8 B kept (by another
/// thread); stack 4 = 0x1000;0x3000;0x4000 allocates 4096 B, freed after
/// the peak (at 1280 ticks: 1000 + 8 + 4096 live).
fn sample() -> Vec<u8> {
    let mut t = TraceBuilder::new();
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
    t.footer(3200);
    t.into_bytes()
}

fn folded_text(a: &Analysis, metric: Metric) -> String {
    let lines = flame::folded(&a.model, &mut Symbolizer::default(), metric);
    let mut out = Vec::new();
    flame::write_folded(&lines, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn each_metric_folds_the_sites_it_counts() {
    let a = analyse(&sample());
    assert_eq!(
        folded_text(&a, Metric::Allocated),
        "0x1000;0x2000 1000\n0x1000;0x3000 32\n0x1000;0x3000;0x4000 4096\n"
    );
    assert_eq!(
        folded_text(&a, Metric::Count),
        "0x1000;0x2000 1\n0x1000;0x3000 2\n0x1000;0x3000;0x4000 1\n"
    );
    assert_eq!(
        folded_text(&a, Metric::Peak),
        "0x1000;0x2000 1000\n0x1000;0x3000 8\n0x1000;0x3000;0x4000 4096\n"
    );
    assert_eq!(
        folded_text(&a, Metric::Leaked),
        "0x1000;0x2000 1000\n0x1000;0x3000 8\n"
    );
    assert_eq!(folded_text(&a, Metric::Temporary), "0x1000;0x3000 1\n");
}

#[test]
fn live_at_reads_the_trace_up_to_the_moment() {
    let bytes = sample();
    let at = |ticks| {
        let options = ModelOptions {
            until_ticks: Some(ticks),
            ..ModelOptions::default()
        };
        let a = Analysis::read(&bytes[..], options).unwrap();
        folded_text(&a, Metric::LiveAt(ticks))
    };
    // At 1000 ticks the 24-byte block has come and gone.
    assert_eq!(at(1000), "0x1000;0x2000 1000\n");
    // At 1500 the 4096-byte block and the worker's 8 bytes are live too.
    assert_eq!(
        at(1500),
        "0x1000;0x2000 1000\n0x1000;0x3000 8\n0x1000;0x3000;0x4000 4096\n"
    );
}

#[test]
fn the_svg_names_the_metric_and_holds_every_frame_with_its_value() {
    let a = analyse(&sample());
    let lines = flame::folded(&a.model, &mut Symbolizer::default(), Metric::Allocated);
    let titles = Titles {
        title: "memtally: bytes allocated".into(),
        subtitle: "prog --flag".into(),
    };
    let mut svg = Vec::new();
    flame::write_svg(&lines, Metric::Allocated, &titles, &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
    assert!(svg.contains(">memtally: bytes allocated<"));
    for want in [
        "<title>all (5,128 bytes, 100%)</title>",
        "<title>0x1000 (5,128 bytes, 100.00%)</title>",
        "<title>0x2000 (1,000 bytes, 19.50%)</title>",
        "<title>0x3000 (4,128 bytes, 80.50%)</title>",
        "<title>0x4000 (4,096 bytes, 79.88%)</title>",
    ] {
        assert!(svg.contains(want), "no {want} in the SVG");
    }
    // A metric no site has still makes a picture that says so.
    let mut svg = Vec::new();
    flame::write_svg(&[], Metric::Leaked, &titles, &mut svg).unwrap();
    assert!(String::from_utf8(svg).unwrap().contains("nothing to show"));
}

#[test]
fn a_differential_graph_is_drawn_from_two_traces() {
    let a = analyse(&sample());
    let before = flame::folded(&a.model, &mut Symbolizer::default(), Metric::Allocated);
    let mut after = before.clone();
    after[0].value = 3000;
    let titles = Titles {
        title: "diff".into(),
        subtitle: String::new(),
    };
    let mut svg = Vec::new();
    flame::write_diff_svg(&before, &after, Metric::Allocated, &titles, &mut svg).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    // Boxes are sized by the new values; inferno adds the change of each
    // frame's share to its tooltip.
    assert!(svg.contains("<title>all (7,128 bytes, 100%)</title>"));
    assert!(svg.contains("<title>0x2000 (3,000 bytes, 42.09%; +"));
    assert!(svg.contains("<title>0x4000 (4,096 bytes, 57.46%; 0.00%)</title>"));
}
