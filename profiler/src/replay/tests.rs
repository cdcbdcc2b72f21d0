//! The models checked by hand-computed cases and by property tests of
//! their invariants, and the replay's accounting.

use super::*;
use proptest::prelude::*;

fn alloc(addr: u64, size: u64) -> Timed {
    Timed {
        op: Op::Alloc {
            addr,
            size,
            align: 8,
        },
        ticks: addr,
        stack: 7,
        thread: 0,
    }
}

fn free(addr: u64) -> Timed {
    Timed {
        op: Op::Free { addr },
        ticks: addr + 1000,
        stack: 0,
        thread: 0,
    }
}

fn cfg(header: u64) -> Config {
    Config {
        header,
        ..Config::default()
    }
}

#[test]
fn first_fit_fails_where_worked_out_by_hand() {
    // Arena 64, 8-byte headers: A [0,24), B [24,48), free [48,64); A freed
    // leaves free blocks of 24 and 16: a 24-byte request (a 32-byte block)
    // fails although 40 bytes are free.
    let ops = [
        alloc(0x100, 16),
        alloc(0x200, 16),
        free(0x100),
        alloc(0x300, 24),
    ];
    let out = run(&ModelKind::FirstFit, &cfg(8), 64, &ops, false);
    let f = out.failure.expect("a failure");
    assert_eq!(
        (f.index, f.size, f.free_bytes, f.largest_free),
        (3, 24, 40, 24)
    );
    assert_eq!(f.stack, 7);
    assert_eq!(out.failed, 1);
    assert!((out.frag_max - (1.0 - 24.0 / 40.0)).abs() < 1e-9);
    // 72 bytes fit it: C goes after B.
    assert_eq!(
        smallest_arena(&ModelKind::FirstFit, &cfg(8), &ops),
        Some(80)
    );
    assert!(
        run(&ModelKind::FirstFit, &cfg(8), 80, &ops, false)
            .failure
            .is_none()
    );
}

#[test]
fn buddy_rounds_to_powers_of_two() {
    // 33 bytes take a 64-byte block: footprint 64 for 33 live (J&W #4).
    let ops = [alloc(0x100, 33)];
    let out = run(&ModelKind::Buddy, &cfg(0), 1024, &ops, false);
    assert_eq!(out.peak_footprint, 64);
    assert!((out.jw4 - 64.0 / 33.0).abs() < 1e-9);
    // Orders 6 to 10 looked at, then 4 splits.
    assert_eq!(out.steps_max, 9);
    let mut b = buddy::BuddyHeap::new(1024, 16, 0);
    let x = b.alloc(100, 8).unwrap();
    let y = b.alloc(100, 8).unwrap();
    assert_eq!((x.user, y.user), (0, 128));
    b.check(&[x, y]).unwrap();
    b.free(x);
    b.free(y);
    b.check(&[]).unwrap();
    assert_eq!(b.stats().largest_free, 1024, "buddies merged back");
}

#[test]
fn tlsf_rounds_up_to_the_next_list_and_merges_at_once() {
    let mut t = tlsf::TlsfHeap::new(1024, 8, 8);
    // 100 + 8 bytes: a 112-byte block from the start, the rest free.
    let a = t.alloc(100, 8).unwrap();
    assert_eq!(a.user, 8);
    assert_eq!(t.stats().largest_free, 1024 - 112);
    let b = t.alloc(200, 8).unwrap();
    assert_eq!(b.user, 112 + 8);
    t.check(&[a, b]).unwrap();
    t.free(a);
    t.check(&[b]).unwrap();
    assert_eq!(t.stats().free_total, 1024 - 208);
    t.free(b);
    t.check(&[]).unwrap();
    assert_eq!(t.stats().largest_free, 1024, "everything merged");
    // Constant work: a few steps whatever the heap.
    let steps = t.take_steps();
    assert!(steps <= 4 * 8, "{steps}");
}

#[test]
fn heap2_never_coalesces_and_heap4_does() {
    // Two blocks freed side by side (24 bytes, and 40: the 16 left over
    // from the 64-byte arena are not more than heapMINIMUM_BLOCK_SIZE, so
    // the second allocation takes them too), then 56 bytes asked for.
    let ops = [
        alloc(0x100, 16),
        alloc(0x200, 16),
        free(0x100),
        free(0x200),
        alloc(0x300, 48),
    ];
    let h2 = run(&ModelKind::FreeRtosHeap2, &cfg(8), 64, &ops, false);
    let h4 = run(&ModelKind::FreeRtosHeap4, &cfg(8), 64, &ops, false);
    assert!(
        h2.failure.is_some(),
        "heap_2 keeps a 24-byte and a 40-byte block"
    );
    assert!(h4.failure.is_none(), "heap_4 merged them");
}

#[test]
fn slab_pools_share_the_arena_and_do_not_borrow() {
    let mut s = slab::SlabHeap::new(1024, &[32, 128], 8);
    // 512 bytes each: 16 blocks of 32, 4 of 128.
    let mut live = Vec::new();
    for _ in 0..16 {
        live.push(s.alloc(20, 8).expect("a 32-byte block"));
    }
    assert!(s.alloc(20, 8).is_none(), "the 32-byte pool is empty");
    for _ in 0..4 {
        live.push(s.alloc(100, 8).expect("a 128-byte block"));
    }
    assert!(s.alloc(100, 8).is_none());
    s.check(&live).unwrap();
    assert!(s.check(&live[1..]).is_err(), "a live block left out");
}

#[test]
fn unknown_frees_and_leaks_are_counted_not_fatal() {
    let ops = [free(0x999), alloc(0x100, 10), alloc(0x200, 10)];
    let out = run(&ModelKind::Tlsf, &cfg(8), 4096, &ops, false);
    assert_eq!(
        (out.unknown_frees, out.leaked_blocks, out.failed),
        (1, 2, 0)
    );
}

#[test]
fn every_model_parses_by_its_name() {
    for k in ModelKind::all() {
        assert_eq!(ModelKind::parse(&k.name()).unwrap(), k);
    }
    assert_eq!(
        ModelKind::parse("slab:32,64").unwrap(),
        ModelKind::Slab(vec![32, 64])
    );
    assert!(ModelKind::parse("slab:").is_err());
    assert!(ModelKind::parse("slab:0").is_err());
    assert!(
        ModelKind::parse("dlmalloc")
            .unwrap_err()
            .contains("unknown model")
    );
}

fn model_strategy() -> impl Strategy<Value = ModelKind> {
    prop_oneof![
        Just(ModelKind::Tlsf),
        Just(ModelKind::FirstFit),
        Just(ModelKind::NextFit),
        Just(ModelKind::BestFit),
        Just(ModelKind::WorstFit),
        Just(ModelKind::Buddy),
        Just(ModelKind::FreeRtosHeap2),
        Just(ModelKind::FreeRtosHeap4),
        Just(ModelKind::FreeRtosHeap5),
        Just(ModelKind::Slab(vec![16, 64, 256, 1024])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of allocations and frees keeps every model's
    /// invariants (blocks tile the arena, never overlap, merged where the
    /// model merges), gives distinct live blocks that stay inside the
    /// arena, and frees what it allocated.
    #[test]
    fn models_keep_their_invariants(
        kind in model_strategy(),
        arena in 256u64..16384,
        steps in proptest::collection::vec((any::<bool>(), 1u64..700, any::<u16>()), 1..200),
    ) {
        let config = cfg(8);
        let mut heap = kind.build(arena, &config);
        let mut live: Vec<(Allocation, u64)> = Vec::new();
        for (is_alloc, size, pick) in steps {
            if is_alloc || live.is_empty() {
                if let Some(a) = heap.alloc(size, 8) {
                    let at = a.user;
                    // heap_5 lays its regions out with an alignment unit
                    // between them (blocks of two regions never merge):
                    // its addresses run that much past the arena's bytes;
                    // its check() keeps every block inside a region.
                    let gaps = if matches!(kind, ModelKind::FreeRtosHeap5) { 2 * 8 } else { 0 };
                    prop_assert!(at + size <= arena + gaps, "{}: {at}+{size} past the {arena}-byte arena", kind.name());
                    for &(o, s) in &live {
                        let o = o.user;
                        prop_assert!(at + size <= o || o + s <= at, "{at}+{size} overlaps {o}+{s}");
                    }
                    live.push((a, size));
                }
            } else {
                let (a, _) = live.swap_remove(pick as usize % live.len());
                heap.free(a);
            }
            let allocations: Vec<Allocation> = live.iter().map(|l| l.0).collect();
            let c = heap.check(&allocations);
            prop_assert!(c.is_ok(), "{}: {:?}", kind.name(), c);
            let st = heap.stats();
            prop_assert!(st.largest_free <= st.free_total, "{}: {:?}", kind.name(), st);
        }
        for (a, _) in live.drain(..) {
            heap.free(a);
        }
        prop_assert!(heap.check(&[]).is_ok());
        let st = heap.stats();
        prop_assert!(st.largest_free <= st.free_total);
    }
}

#[test]
fn slab_statistics_add_up() {
    let mut s = slab::SlabHeap::new(4096, &[16, 64, 65536], 8);
    let a = s.alloc(10, 8).unwrap();
    let st = s.stats();
    assert!(st.largest_free <= st.free_total, "{st:?}");
    s.free(a);
    let st = s.stats();
    assert!(st.largest_free <= st.free_total, "{st:?}");
}

#[test]
fn a_program_round_trips_and_reuses_slots() {
    let mut ops = vec![
        alloc(0x100, 10),
        alloc(0x200, 20),
        free(0x100),
        alloc(0x300, 30),
        free(0x999),
    ];
    ops[1].thread = 5;
    let p = program::build(&ops);
    assert_eq!(p.threads, 2);
    assert_eq!(p.slots, 2, "the freed slot 0 serves 0x300");
    assert_eq!(p.steps.len(), 4, "the unknown free is left out");
    assert_eq!(
        p.steps[3],
        (
            0,
            program::Step::Alloc {
                slot: 0,
                size: 30,
                align: 8
            }
        )
    );
    assert_eq!(p.steps[1].0, 1);
    let bytes = program::encode(&p);
    assert_eq!(program::decode(&bytes).unwrap(), p);
    assert!(
        program::decode(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("cut short")
    );
    assert!(program::decode(b"nope").unwrap_err().contains("bad magic"));
}

#[test]
fn a_free_a_little_before_another_threads_allocation_of_its_block_follows_it() {
    let at = |op: Op, ticks: u64, thread: u64| Timed {
        op,
        ticks,
        stack: 0,
        thread,
    };
    let block = 0x1000;
    let mut ops = vec![
        // Thread 2's clock runs behind: its free of the block thread 1
        // allocated and handed over looks 64 ticks older.
        at(Op::Free { addr: block }, 3136, 2),
        at(
            Op::Alloc {
                addr: block,
                size: 48,
                align: 8,
            },
            3200,
            1,
        ),
        // A free far older than any allocation of its address stays
        // where it is (and is skipped as unknown).
        at(Op::Free { addr: 0x2000 }, 4000, 2),
        at(
            Op::Alloc {
                addr: 0x2000,
                size: 16,
                align: 8,
            },
            4000 + 2 * crate::model::CLOCK_SKEW_TICKS,
            1,
        ),
    ];
    order_across_clock_skew(&mut ops);
    let order: Vec<(bool, u64)> = ops
        .iter()
        .map(|t| (matches!(t.op, Op::Free { .. }), t.ticks))
        .collect();
    assert_eq!(
        order,
        [
            (false, 3200),
            (true, 3136),
            (true, 4000),
            (false, 4000 + 2 * crate::model::CLOCK_SKEW_TICKS)
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A replay by handles (until its first failure) ends exactly as one
    /// by address throughout: the same failures, unknown frees, leaks,
    /// steps and fragmentation, whatever the trace does (frees of unknown
    /// addresses, addresses reused while live, reallocations that move,
    /// stay or fail) and however small the arena.
    #[test]
    fn replay_by_handle_matches_replay_by_address(
        kind in model_strategy(),
        arena in 64u64..4096,
        steps in proptest::collection::vec((0u8..4, 0u64..12, 0u64..12, 1u64..600), 1..150),
    ) {
        let ops: Vec<Timed> = steps
            .iter()
            .enumerate()
            .map(|(i, &(what, a, b, size))| Timed {
                op: match what {
                    0 | 1 => Op::Alloc { addr: 16 * (a + 1), size, align: 8 },
                    2 => Op::Free { addr: 16 * (a + 1) },
                    _ => Op::Realloc { old: 16 * a, addr: 16 * (b + 1), size },
                },
                ticks: i as u64 * 10,
                stack: 3,
                thread: 0,
            })
            .collect();
        let by_address = Handles { per_op: Vec::new(), count: 0 };
        let summary = |o: &Outcome| {
            (
                o.failure,
                o.failed,
                o.unknown_frees,
                o.leaked_blocks,
                o.peak_footprint,
                o.max_live,
                o.steps_mean.to_bits(),
                o.steps_max,
                o.frag_max.to_bits(),
                o.frag_mean.to_bits(),
            )
        };
        for stop in [false, true] {
            let a = run_with(&kind, &cfg(8), arena, &ops, &Handles::of(&ops), stop);
            let b = run_with(&kind, &cfg(8), arena, &ops, &by_address, stop);
            prop_assert_eq!(summary(&a), summary(&b), "{}", kind.name());
        }
    }
}

#[test]
fn heap2_takes_the_newest_block_of_a_size() {
    // FreeRTOS's heap_2 inserts a freed block before those of its size,
    // and its search takes the first that fits: the newest of the size.
    let mut h = ModelKind::FreeRtosHeap2.build(1024, &cfg(8));
    let a = h.alloc(16, 8).unwrap();
    let b = h.alloc(16, 8).unwrap();
    let c = h.alloc(16, 8).unwrap();
    h.free(a);
    h.free(b);
    let d = h.alloc(16, 8).unwrap();
    assert_eq!(d.user, b.user, "the block freed last");
    let e = h.alloc(16, 8).unwrap();
    assert_eq!(e.user, a.user);
    h.check(&[c, d, e]).unwrap();
}

#[test]
fn freertos_heaps_split_only_past_the_minimum_block() {
    // heap_4 splits a block when more than heapMINIMUM_BLOCK_SIZE (twice
    // the header: 16 bytes) would be left; 40 bytes need a 48-byte block,
    // which leaves exactly 16 of 64: the whole block is handed out. Over
    // boundary tags (first fit) 16 bytes are enough for a free block.
    let mut h4 = ModelKind::FreeRtosHeap4.build(64, &cfg(8));
    let a = h4.alloc(40, 8).unwrap();
    assert_eq!((a.inner.1, h4.stats().free_total), (64, 0));
    let mut ff = ModelKind::FirstFit.build(64, &cfg(8));
    let b = ff.alloc(40, 8).unwrap();
    assert_eq!((b.inner.1, ff.stats().free_total), (48, 16));
    h4.check(&[a]).unwrap();
    ff.check(&[b]).unwrap();
}

#[test]
fn the_parallel_searches_find_each_models_smallest_arena() {
    // Blocks of varied sizes, every third kept: each model fragments the
    // arena in its own way, so the smallest arenas differ.
    let mut ops = Vec::new();
    for i in 0..300u64 {
        ops.push(alloc(0x10000 + i * 0x1000, 16 + (i * 37) % 900));
        if i % 3 != 0 {
            ops.push(free(0x10000 + i * 0x1000));
        }
    }
    let kinds = ModelKind::all();
    let cfg = cfg(8);
    let reports = compare(&kinds, &cfg, &ops);
    assert_eq!(reports.len(), kinds.len());
    for r in &reports {
        let kind = kinds
            .iter()
            .find(|k| k.name() == r.outcome.model)
            .expect("a model asked for");
        assert_eq!(
            r.smallest_arena,
            smallest_arena(kind, &cfg, &ops),
            "{}",
            r.outcome.model
        );
        // Replayed at its smallest arena, every model fits.
        assert!(r.outcome.failure.is_none(), "{}", r.outcome.model);
        assert_eq!(r.outcome.arena, r.smallest_arena.unwrap());
    }
}
