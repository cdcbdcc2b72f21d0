//! Property tests: random sequences of allocate, reallocate and free, with
//! sizes from 0 bytes to 64 MiB and alignments up to 1 MiB, checked against a
//! model of the live blocks: no two blocks overlap, alignment is honoured,
//! contents survive reallocation, usable size covers the request, and the
//! heap validator passes after every sequence.

use crate::util::{check_heap, fill, verify};
use memtally_alloc::raw;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        zero: bool,
    },
    Realloc {
        pick: usize,
        size: usize,
    },
    Free {
        pick: usize,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=1024,
        4 => 1025usize..=65_536,
        2 => 65_537usize..=(1 << 20),
        1 => (1usize << 20)..=(64 << 20),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (size_strategy(), prop_oneof![6 => 0u32..=4, 1 => 5u32..=20], any::<bool>())
            .prop_map(|(size, align_log, zero)| Op::Alloc { size, align_log, zero }),
        2 => (any::<usize>(), size_strategy()).prop_map(|(pick, size)| Op::Realloc { pick, size }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

struct Live {
    size: usize,
    align: usize,
    seed: u8,
}

/// Bytes of each block checked and written: all of small blocks, the ends of
/// big ones (so a 64 MiB block does not cost 64 MiB of writes per step).
fn pattern_len(size: usize) -> usize {
    size.min(4096)
}

fn check_no_overlap(
    live: &BTreeMap<usize, Live>,
    p: usize,
    size: usize,
) -> Result<(), TestCaseError> {
    let end = p + size.max(1);
    if let Some((&q, l)) = live.range(..end).next_back() {
        let q_end = q + l.size.max(1);
        prop_assert!(
            q_end <= p || q >= end,
            "block {p:#x}+{size} overlaps {q:#x}+{}",
            l.size
        );
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut seed = 0u8;
    for op in ops {
        match op {
            Op::Alloc {
                size,
                align_log,
                zero,
            } => {
                let align = 1usize << align_log;
                // SAFETY: `align` is a power of two.
                let p = unsafe {
                    if zero {
                        raw::alloc_zeroed(size, align)
                    } else {
                        raw::alloc(size, align)
                    }
                };
                prop_assert!(!p.is_null());
                prop_assert_eq!(p as usize % align, 0);
                // SAFETY: `p` is live.
                let usable = unsafe { raw::usable_size(p) };
                prop_assert!(usable >= size, "usable {} < {}", usable, size);
                if zero {
                    // SAFETY: `p` has at least `size` bytes.
                    let bytes = unsafe { std::slice::from_raw_parts(p, pattern_len(size)) };
                    prop_assert!(bytes.iter().all(|&b| b == 0));
                }
                check_no_overlap(&live, p as usize, size)?;
                seed = seed.wrapping_add(1);
                fill(p, pattern_len(size), seed);
                live.insert(p as usize, Live { size, align, seed });
            }
            Op::Realloc { pick, size } => {
                if live.is_empty() {
                    continue;
                }
                let key = *live.keys().nth(pick % live.len()).unwrap();
                let old = live.remove(&key).unwrap();
                // SAFETY: `key` is a live block allocated with `old.align`.
                let q = unsafe { raw::realloc(key as *mut u8, size, old.align, usize::MAX) };
                prop_assert!(!q.is_null());
                prop_assert_eq!(q as usize % old.align, 0);
                // SAFETY: `q` is live.
                let usable = unsafe { raw::usable_size(q) };
                prop_assert!(usable >= size, "usable {} < {}", usable, size);
                let kept = pattern_len(old.size).min(size);
                prop_assert!(
                    verify(q, kept, old.seed),
                    "contents lost in realloc {} -> {}",
                    old.size,
                    size
                );
                check_no_overlap(&live, q as usize, size)?;
                fill(q, pattern_len(size), old.seed);
                live.insert(q as usize, Live { size, ..old });
            }
            Op::Free { pick } => {
                if live.is_empty() {
                    continue;
                }
                let key = *live.keys().nth(pick % live.len()).unwrap();
                let l = live.remove(&key).unwrap();
                prop_assert!(
                    verify(key as *const u8, pattern_len(l.size), l.seed),
                    "block overwritten"
                );
                // SAFETY: live, freed once.
                unsafe { raw::free(key as *mut u8, "free") };
            }
        }
    }
    check_heap();
    for (p, l) in live {
        prop_assert!(
            verify(p as *const u8, pattern_len(l.size), l.seed),
            "block overwritten"
        );
        // SAFETY: live, freed once.
        unsafe { raw::free(p as *mut u8, "free") };
    }
    check_heap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences(ops in proptest::collection::vec(op_strategy(), 1..300)) {
        run(ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Many small blocks of one size class: exercises page exhaustion, the
    /// full list and page retirement.
    #[test]
    fn one_class_churn(size in 1usize..2048, n in 1usize..5000, frees in proptest::collection::vec(any::<usize>(), 0..5000)) {
        let mut ops: Vec<Op> = (0..n).map(|_| Op::Alloc { size, align_log: 3, zero: false }).collect();
        ops.extend(frees.into_iter().map(|pick| Op::Free { pick }));
        ops.extend((0..n / 2).map(|_| Op::Alloc { size, align_log: 3, zero: true }));
        run(ops)?;
    }
}
