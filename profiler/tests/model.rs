//! The model against event sequences whose answers are worked out by hand:
//! totals, the peak and each site's share of it, live blocks by site,
//! temporaries per thread, sampled weights, unknown and lost frees, and
//! ordering across threads.

use crate::util::analyse;
use memtally_alloc::trace::mode;
use memtally_profiler::synth::{TraceBuilder, alloc, free, realloc};
use memtally_profiler::{Counters, GroupBy, ModelOptions, Symbolizer, group_sites};

const A: u64 = 0x7f00_0000_1000;
const B: u64 = 0x7f00_0000_2000;
const C: u64 = 0x7f00_0000_3000;
const D: u64 = 0x7f00_0000_4000;

/// Two sites under a common caller: 2 = [0x1000, 0x2000], 3 = [0x1000, 0x3000].
fn with_stacks(t: &mut TraceBuilder) {
    t.frame(1, 0, 0x1000)
        .frame(2, 1, 0x2000)
        .frame(3, 1, 0x3000);
}

#[test]
fn totals_peak_and_live_blocks_by_site() {
    let mut t = TraceBuilder::new();
    // Times are multiples of 32 ticks, the format's time unit.
    t.full_header().clock(0, 0).clock(192, 384);
    with_stacks(&mut t);
    t.thread(0, 4242, "main", 16);
    // Heap after each event: 100, 150, 350 (A moved to C and grew: the
    // peak, at tick 96), 300, 310.
    t.events(
        0,
        &[
            alloc(32, A, 100, 2),
            alloc(64, B, 50, 3),
            realloc(96, A, C, 300, 2),
            free(128, B),
            alloc(160, D, 10, 3),
        ],
    );
    t.footer(192);
    let a = analyse(t.bytes());
    let m = &a.model;
    assert!(a.ending.is_complete());

    let c = m.totals().counters;
    assert_eq!(c.allocations, 4);
    assert_eq!(c.reallocations, 1);
    assert_eq!(c.frees, 2);
    assert_eq!(c.bytes_allocated, 460);
    assert_eq!(c.bytes_freed, 150);
    assert_eq!((c.live_blocks, c.live_bytes), (2, 310));
    assert_eq!(m.totals().unknown_frees, 0);

    let peak = m.peak();
    assert_eq!((peak.bytes, peak.blocks, peak.ticks), (350, 2, 96));
    // Two nanoseconds per tick, from tick 0.
    assert_eq!(m.since_start_ns(peak.ticks), 192);
    assert_eq!(m.duration_ns(), 384);

    let s2 = m.site(2).unwrap();
    assert_eq!(s2.allocations, 2);
    assert_eq!(s2.reallocations, 1);
    assert_eq!(s2.bytes_allocated, 400);
    assert_eq!((s2.live_blocks, s2.live_bytes), (1, 300));
    assert_eq!((s2.at_peak_blocks, s2.at_peak_bytes), (1, 300));
    assert_eq!(s2.max_live_bytes, 300);
    let s3 = m.site(3).unwrap();
    assert_eq!(s3.allocations, 2);
    assert_eq!(s3.bytes_allocated, 60);
    assert_eq!((s3.live_blocks, s3.live_bytes), (1, 10));
    // B was live at the peak; D came after it.
    assert_eq!((s3.at_peak_blocks, s3.at_peak_bytes), (1, 50));
    assert_eq!(s3.max_live_bytes, 50);

    // The live map says where each remaining block came from.
    let mut live: Vec<(u64, u64, u64)> = m
        .live()
        .iter()
        .map(|(addr, b)| (addr, b.size, b.stack))
        .collect();
    live.sort();
    assert_eq!(live, [(C, 300, 2), (D, 10, 3)]);
    assert_eq!(m.live().get(C).unwrap().ticks, 96);

    let threads: Vec<_> = m.threads().collect();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].info.name, "main");
    assert_eq!(threads[0].info.os_tid, 4242);
    assert_eq!(threads[0].counters.live_bytes, 310);
    assert_eq!(threads[0].counters.at_peak_bytes, 350);

    // Durations: four allocation calls (16 ticks each but the realloc's
    // 24), one free (8 ticks), lifetimes of A (ended by the realloc: not a
    // lifetime) and B (64 ticks).
    assert_eq!(m.alloc_latency().count(), 4);
    assert_eq!(m.alloc_latency().max(), 24);
    assert_eq!(m.free_latency().count(), 1);
    assert_eq!(m.lifetimes().count(), 1);
    assert_eq!(m.lifetimes().max(), 64);

    let sizes: Vec<(u64, u64)> = m
        .sizes()
        .buckets()
        .iter()
        .filter(|b| b.blocks > 0)
        .map(|b| (b.min, b.blocks))
        .collect();
    assert_eq!(sizes, [(8, 1), (32, 1), (64, 1), (256, 1)]);
}

#[test]
fn temporaries_are_counted_per_thread() {
    const X: u64 = 0x10_000;
    const Y: u64 = 0x20_000;
    const Z: u64 = 0x30_000;
    const W: u64 = 0x40_000;
    const V: u64 = 0x50_000;
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    // In global time order: t0 alloc X; t1 alloc Y; t0 free X; t1 free Y.
    // heaptrack's rule (a free right after its own malloc in the global
    // stream) counts neither; per thread, both are temporary.
    t.events(0, &[alloc(32, X, 16, 2), free(96, X)]);
    t.events(1, &[alloc(64, Y, 16, 3), free(128, Y)]);
    t.watermark(150);
    // t0: Z and W, then Z freed (not temporary: W came between), then W
    // freed (temporary); V allocated by t0 and freed by t1 (not).
    t.events(
        0,
        &[
            alloc(160, Z, 16, 2),
            alloc(192, W, 16, 2),
            free(224, Z),
            free(256, W),
            alloc(288, V, 16, 2),
        ],
    );
    t.events(1, &[free(320, V)]);
    t.footer(400);
    let m = analyse(t.bytes()).model;
    let c = m.totals().counters;
    assert_eq!(c.temporary, 3);
    assert_eq!(c.temporary_bytes, 48);
    assert_eq!(m.site(2).unwrap().temporary, 2);
    assert_eq!(m.site(3).unwrap().temporary, 1);
    let threads: Vec<_> = m.threads().collect();
    assert_eq!(threads[0].counters.temporary, 2);
    assert_eq!(threads[1].counters.temporary, 1);
    // V was freed by thread 1 but stays thread 0's block.
    assert_eq!(threads[0].counters.frees, 4);
    assert_eq!(threads[1].counters.frees, 1);
    assert_eq!(c.live_blocks, 0);
}

#[test]
fn thread_records_out_of_order_still_give_the_true_peak() {
    // True order (in units of 32 ticks): t0 +1000 at 10, +1 at 12, t1
    // +500 at 20 (peak 1501), t1 frees t0's block X at 25, t0 frees at
    // 30, t1 at 40. Thread 1's
    // record is written first, so reading in file order would see the
    // free of X before its allocation and a peak of only 1000.
    const X: u64 = 0x9000;
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    const U: u64 = 32;
    t.events(
        1,
        &[alloc(20 * U, B, 500, 3), free(25 * U, X), free(40 * U, B)],
    );
    t.events(
        0,
        &[
            alloc(10 * U, A, 1000, 2),
            alloc(12 * U, X, 1, 2),
            free(30 * U, A),
        ],
    );
    t.watermark(100 * U);
    t.footer(100 * U);
    let m = analyse(t.bytes()).model;
    let peak = m.peak();
    assert_eq!((peak.bytes, peak.ticks), (1501, 20 * U));
    assert_eq!(m.totals().unknown_frees, 0);
    assert_eq!(m.totals().counters.live_blocks, 0);
    assert_eq!(m.site(2).unwrap().at_peak_bytes, 1001);
    assert_eq!(m.site(3).unwrap().at_peak_bytes, 500);
}

#[test]
fn calls_the_recorder_did_not_time_are_left_out_of_latencies() {
    use memtally_alloc::trace::RawEvent;
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    let untimed = |time, address| RawEvent::Alloc {
        time,
        address,
        size: 8,
        align: 16,
        stack: 2,
        latency: 0,
    };
    t.events(
        0,
        &[
            untimed(10, A),
            alloc(20, B, 8, 2),
            untimed(30, C),
            RawEvent::Free {
                time: 40,
                address: A,
                latency: 0,
            },
        ],
    );
    t.footer(50);
    let m = analyse(t.bytes()).model;
    assert_eq!(m.totals().counters.allocations, 3);
    assert_eq!(m.alloc_latency().count(), 1);
    assert_eq!(m.alloc_latency().quantile(0.5), 16);
    assert_eq!(m.free_latency().count(), 0);
    assert_eq!(m.lifetimes().count(), 1);
}

#[test]
fn frees_of_unknown_addresses_are_counted_not_fatal() {
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    t.events(
        0,
        &[
            free(10, 0xdead_0000),
            realloc(20, 0xbeef_0000, A, 64, 2),
            free(25, 0),
            alloc(30, B, 8, 3),
        ],
    );
    t.footer(40);
    let m = analyse(t.bytes()).model;
    let totals = m.totals();
    assert_eq!(totals.unknown_frees, 2);
    assert_eq!(totals.counters.frees, 0);
    assert_eq!(totals.counters.allocations, 2);
    assert_eq!(totals.counters.live_bytes, 72);
    assert_eq!(m.threads().next().unwrap().info.unknown_frees, 2);
}

#[test]
fn an_address_allocated_twice_loses_the_first_block() {
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    t.events(0, &[alloc(10, A, 100, 2), alloc(20, A, 30, 3), free(30, A)]);
    t.footer(40);
    let m = analyse(t.bytes()).model;
    let totals = m.totals();
    assert_eq!(totals.lost_frees, 1);
    assert_eq!(totals.counters.frees, 1);
    assert_eq!(totals.counters.live_bytes, 0);
    assert_eq!(m.site(2).unwrap().live_bytes, 0);
    assert_eq!(m.site(2).unwrap().frees, 0);
}

#[test]
fn realloc_to_zero_frees_and_a_failed_realloc_keeps_the_block() {
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    t.events(
        0,
        &[
            alloc(10, A, 100, 2),
            realloc(20, A, 0, 1 << 40, 2),
            realloc(30, A, 0, 0, 2),
        ],
    );
    t.footer(40);
    let m = analyse(t.bytes()).model;
    let totals = m.totals();
    assert_eq!(totals.failed_reallocs, 1);
    assert_eq!(totals.counters.allocations, 1);
    assert_eq!(totals.counters.frees, 1);
    assert_eq!(totals.counters.live_blocks, 0);
}

#[test]
fn sampled_traces_weigh_each_sample_by_its_inverse_probability() {
    let mut t = TraceBuilder::new();
    t.header(7, mode::SAMPLED, 1000, "/bin/app", &["app"]);
    with_stacks(&mut t);
    // p(1000 B) = 1 - e^-1 = 0.632: each stands for 1581.98 bytes and
    // 1.582 blocks (1 then 2 by error diffusion); p(4096 B) = 0.9834:
    // 4165.3 bytes and 1.017 blocks (1).
    t.events(
        0,
        &[
            alloc(10, A, 1000, 2),
            alloc(20, B, 1000, 2),
            alloc(30, C, 4096, 3),
            free(40, A),
        ],
    );
    t.footer(50);
    let m = analyse(t.bytes()).model;
    assert!(m.is_estimate());
    let c = m.totals().counters;
    assert_eq!(c.allocations, 4);
    assert_eq!(c.bytes_allocated, 1582 * 2 + 4165);
    assert_eq!(c.frees, 1);
    assert_eq!(c.bytes_freed, 1582);
    assert_eq!((c.live_blocks, c.live_bytes), (3, 1582 + 4165));
    assert_eq!(c.events, 4);
    let s2 = m.site(2).unwrap();
    assert_eq!((s2.allocations, s2.live_blocks), (3, 2));
    assert_eq!(m.peak().bytes, 1582 * 2 + 4165);
}

#[test]
fn the_timeline_is_bounded_and_keeps_the_peak() {
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    let mut events = Vec::new();
    let mut time = 0;
    for i in 0..20_000u64 {
        time += 96;
        let size = if i == 12_345 { 1 << 20 } else { 64 };
        events.push(alloc(time, A, size, 2));
        time += 64;
        events.push(free(time, A));
    }
    for chunk in events.chunks(1000) {
        t.events(0, chunk);
    }
    t.memory(10, 1 << 20, 2 << 20)
        .memory(90_000, 3 << 20, 4 << 20);
    t.footer(time + 1);
    let a = memtally_profiler::Analysis::read(
        t.bytes(),
        ModelOptions {
            series_points: 64,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    let m = &a.model;
    assert!(m.heap_series().len() <= 64);
    assert_eq!(m.heap_series().points().map(|p| p.max).max(), Some(1 << 20));
    assert_eq!(m.peak().bytes, 1 << 20);
    assert_eq!(m.peak().ticks, 12_345 * 160 + 96);
    assert_eq!(m.rss_series().points().map(|p| p.max).max(), Some(3 << 20));
    assert_eq!(m.live().len(), 0);
    assert_eq!(m.totals().counters.temporary, 20_000);
}

#[test]
fn sites_group_by_innermost_frame_and_function() {
    let mut t = TraceBuilder::new();
    t.full_header();
    // Two stacks that end in the same frame from different callers.
    t.frame(1, 0, 0x10)
        .frame(2, 1, 0x20)
        .frame(3, 0, 0x30)
        .frame(4, 3, 0x20);
    t.events(
        0,
        &[alloc(1, A, 10, 2), alloc(2, B, 20, 4), alloc(3, C, 5, 3)],
    );
    t.footer(5);
    let m = analyse(t.bytes()).model;
    let mut s = Symbolizer::default();
    let groups = group_sites(&m, &mut s, GroupBy::InnermostFrame);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].key, "0x20");
    assert_eq!(groups[0].sites, [2, 4]);
    assert_eq!(groups[0].counters.bytes_allocated, 30);
    let mut want = Counters::default();
    want.add(&m.site(3).unwrap());
    assert_eq!(groups[1].counters, want);
    assert_eq!(group_sites(&m, &mut s, GroupBy::Function).len(), 2);
}

#[test]
fn a_free_stamped_a_little_before_the_allocation_it_frees_is_matched_to_it() {
    // Thread 1 allocates A at tick 3200 and hands it over; thread 2, whose
    // core's clock runs 64 ticks behind, frees it "at" 3136. Later thread
    // 1 gets A again. Without the clock-skew window the free was unknown
    // and the first block lost.
    let mut t = TraceBuilder::new();
    t.full_header();
    with_stacks(&mut t);
    t.thread(1, 101, "producer", 0)
        .thread(2, 102, "consumer", 0);
    t.events(1, &[alloc(3200, A, 48, 2)]);
    t.events(2, &[free(3136, A)]);
    t.events(1, &[alloc(9600, A, 32, 3)]);
    // A free far older than any allocation of its address stays unknown.
    t.events(2, &[free(12800, B)]);
    t.events(1, &[alloc(12800 + 2 * 4096, B, 16, 3)]);
    t.footer(40000);
    let m = analyse(t.bytes()).model;
    let totals = m.totals();
    assert_eq!(totals.unknown_frees, 1);
    assert_eq!(totals.lost_frees, 0);
    assert_eq!(totals.counters.frees, 1);
    assert_eq!(
        (totals.counters.live_blocks, totals.counters.live_bytes),
        (2, 48)
    );
    // The free is the consumer's: the block was handed over.
    let consumer = m.threads().find(|t| t.info.name == "consumer").unwrap();
    assert_eq!(consumer.info.unknown_frees, 1);
}
