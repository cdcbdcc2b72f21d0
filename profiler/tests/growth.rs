//! The growth test (`memtally leaks --growth`) on synthetic traces whose
//! shapes are known: a steady leak and a leak in steps are found with the
//! right rate; a cache that fills and stays, churn, and growth that stopped
//! halfway are not.

use memtally_profiler::growth::growing_sites;
use memtally_profiler::synth::{TraceBuilder, alloc, free};
use memtally_profiler::{Analysis, ModelOptions, StackId};

/// One tick is one nanosecond; the trace lasts 10 s.
const SECOND: u64 = 1_000_000_000;

#[test]
fn steady_and_stepped_leaks_are_found_and_plateaus_churn_and_stopped_growth_are_not() {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(10 * SECOND, 10 * SECOND);
    for site in 1..=5 {
        t.frame(site, 0, 0x400000 + site * 0x1000);
    }
    let mut events = Vec::new();
    let mut address = 0x10_0000u64;
    let mut next = || {
        address += 0x1000;
        address
    };
    for step in 0..1000u64 {
        let time = step * SECOND / 100;
        // 1: a steady leak of 100 bytes every 10 ms (10,000 B/s).
        events.push(alloc(time, next(), 100, 1));
        // 2: a cache that fills in the first second and then stays.
        if step < 100 {
            events.push(alloc(time + 1, next(), 1000, 2));
        }
        // 3: churn: allocated and freed at once.
        let a = next();
        events.push(alloc(time + 2, a, 5000, 3));
        events.push(free(time + 3, a));
        // 4: grows for 5 s, then stops.
        if step < 500 {
            events.push(alloc(time + 4, next(), 100, 4));
        }
        // 5: a leak in steps: 10 KiB every second.
        if step % 100 == 50 {
            events.push(alloc(time + 5, next(), 10_240, 5));
        }
    }
    t.events(0, &events);
    t.footer(10 * SECOND);
    let options = ModelOptions {
        site_details: true,
        ..ModelOptions::default()
    };
    let a = Analysis::read(t.bytes(), options).unwrap();
    let found = growing_sites(&a.model, 0);
    let stacks: Vec<StackId> = found.iter().map(|g| g.stack).collect();
    assert_eq!(stacks, [5, 1], "{found:#?}");
    let steady = &found[1];
    assert!(
        (steady.bytes_per_second - 10_000.0).abs() < 500.0,
        "{steady:?}"
    );
    assert_eq!(steady.live_bytes, 100_000);
    let stepped = &found[0];
    assert!(
        (stepped.bytes_per_second - 10_240.0).abs() < 1500.0,
        "{stepped:?}"
    );
    // Sites observed for less than the minimum span are not judged.
    assert!(growing_sites(&a.model, 20 * SECOND).is_empty());
}

#[test]
fn without_site_details_nothing_is_judged() {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(SECOND, SECOND);
    t.frame(1, 0, 0x401000);
    let events: Vec<_> = (0..100)
        .map(|i| alloc(i * SECOND / 100, 0x1000 + i * 0x100, 64, 1))
        .collect();
    t.events(0, &events);
    t.footer(SECOND);
    let a = Analysis::read(t.bytes(), ModelOptions::default()).unwrap();
    assert!(growing_sites(&a.model, 0).is_empty());
}
