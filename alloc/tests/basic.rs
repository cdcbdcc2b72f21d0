//! Single-threaded contract tests: sizes, alignments, zeroing, realloc,
//! usable size, huge blocks, and the heap validator after each.

use crate::util::{alloc_checked, check_heap, fill, verify};
use memtally_alloc::raw;

#[test]
fn every_small_size_is_usable_and_aligned() {
    let mut blocks = Vec::new();
    for size in 0..=4200usize {
        let p = alloc_checked(size, 8);
        fill(p, size, size as u8);
        blocks.push((p, size));
    }
    check_heap();
    for &(p, size) in &blocks {
        assert!(
            verify(p, size, size as u8),
            "block of {size} bytes overwritten"
        );
        // SAFETY: `p` is live and freed once.
        unsafe { raw::free(p, "free") };
    }
    check_heap();
}

#[test]
fn zero_size_requests_get_distinct_blocks() {
    let a = alloc_checked(0, 8);
    let b = alloc_checked(0, 8);
    assert_ne!(a, b);
    // SAFETY: both are live and freed once.
    unsafe {
        raw::free(a, "free");
        raw::free(b, "free");
    }
}

#[test]
fn alignments_up_to_sixteen_mebibytes() {
    let mut align = 1;
    while align <= 16 << 20 {
        for size in [0usize, 1, 24, 100, 4096, 70_000, 600_000, 3 << 20] {
            let p = alloc_checked(size, align);
            fill(p, size, 7);
            assert!(verify(p, size, 7));
            // SAFETY: live, freed once.
            unsafe { raw::free(p, "free") };
        }
        align *= 2;
    }
    check_heap();
}

#[test]
fn zeroed_memory_is_zero_even_after_reuse() {
    // Dirty a range of blocks, free them, then ask for zeroed ones.
    for round in 0..3 {
        let sizes = [8usize, 48, 200, 1000, 5000, 40_000, 300_000, 2 << 20];
        let dirty: Vec<_> = sizes
            .iter()
            .map(|&s| {
                let p = alloc_checked(s, 8);
                fill(p, s, 0xAB);
                p
            })
            .collect();
        for p in dirty {
            // SAFETY: live, freed once.
            unsafe { raw::free(p, "free") };
        }
        for &s in &sizes {
            // SAFETY: 8 is a power of two.
            let p = unsafe { raw::alloc_zeroed(s, 8) };
            assert!(!p.is_null());
            // SAFETY: `p` has `s` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, s) };
            assert!(
                bytes.iter().all(|&b| b == 0),
                "round {round}: {s}-byte block not zeroed"
            );
            // SAFETY: live, freed once.
            unsafe { raw::free(p, "free") };
        }
    }
    check_heap();
}

#[test]
fn realloc_preserves_contents_growing_and_shrinking() {
    // SAFETY: 8 is a power of two.
    let mut p = unsafe { raw::alloc(1, 8) };
    let mut len = 1usize;
    fill(p, len, 3);
    // Grow across small, medium, large and huge classes, then shrink back.
    let mut sizes: Vec<usize> = (0..26).map(|i| 1usize << i).collect();
    sizes.extend((0..26).rev().map(|i| (1usize << i) + 13));
    for new in sizes {
        // SAFETY: `p` is live; 8 is a power of two.
        let q = unsafe { raw::realloc(p, new, 8, usize::MAX) };
        assert!(!q.is_null());
        let keep = len.min(new);
        assert!(verify(q, keep, 3), "contents lost resizing {len} -> {new}");
        // SAFETY: `q` is live.
        assert!(unsafe { raw::usable_size(q) } >= new);
        fill(q, new, 3);
        p = q;
        len = new;
    }
    // SAFETY: live, freed once.
    unsafe { raw::free(p, "free") };
    check_heap();
}

#[test]
fn realloc_stays_in_place_within_the_class() {
    let p = alloc_checked(100, 8);
    // SAFETY: `p` is live.
    let usable = unsafe { raw::usable_size(p) };
    // SAFETY: `p` is live and the size fits its block.
    let q = unsafe { raw::realloc(p, usable, 8, usize::MAX) };
    assert_eq!(p, q, "realloc within the usable size moved the block");
    // SAFETY: live, freed once.
    unsafe { raw::free(q, "free") };
}

#[test]
fn huge_blocks_are_reused_from_the_cache() {
    // Other tests allocate huge blocks concurrently, so the check runs in a
    // child process with one test thread.
    if crate::util::child_scenario().as_deref() != Some("huge-cache") {
        let (status, stderr) = crate::util::run_child(
            "basic::huge_blocks_are_reused_from_the_cache",
            "huge-cache",
            &[],
        );
        assert!(status.success(), "child failed: {stderr}");
        return;
    }
    let a = alloc_checked(20 << 20, 8);
    fill(a, 4096, 1);
    // SAFETY: live, freed once.
    unsafe { raw::free(a, "free") };
    let b = alloc_checked(19 << 20, 8);
    assert_eq!(
        a, b,
        "a freed 20 MiB mapping should serve the next 19 MiB request"
    );
    // SAFETY: live, freed once.
    unsafe { raw::free(b, "free") };
}

#[test]
fn huge_realloc_grows_without_losing_data() {
    let mut p = alloc_checked(1 << 20, 8);
    fill(p, 1 << 20, 9);
    for mib in [2usize, 8, 33, 100] {
        // SAFETY: `p` is live.
        let q = unsafe { raw::realloc(p, mib << 20, 8, usize::MAX) };
        assert!(!q.is_null());
        assert!(verify(q, 1 << 20, 9), "lost data growing to {mib} MiB");
        p = q;
    }
    // SAFETY: live, freed once.
    unsafe { raw::free(p, "free") };
}

#[test]
fn impossible_sizes_fail_cleanly() {
    for size in [usize::MAX, usize::MAX / 2, isize::MAX as usize] {
        // SAFETY: 8 is a power of two.
        let p = unsafe { raw::alloc(size, 8) };
        assert!(p.is_null(), "alloc({size}) should fail");
    }
    let p = alloc_checked(10, 8);
    // SAFETY: `p` is live; the failed realloc must leave it intact.
    let q = unsafe { raw::realloc(p, usize::MAX - 4096, 8, usize::MAX) };
    assert!(q.is_null());
    // SAFETY: still live, freed once.
    unsafe { raw::free(p, "free") };
}

#[test]
fn std_collections_work() {
    let mut m = std::collections::BTreeMap::new();
    for i in 0..50_000u32 {
        m.insert(i, format!("value {i}"));
    }
    let v: Vec<String> = m.values().filter(|s| s.ends_with('7')).cloned().collect();
    assert_eq!(v.len(), 5000);
    let mut h = std::collections::HashMap::new();
    for i in 0..50_000u64 {
        h.insert(i, vec![i as u8; (i % 300) as usize]);
    }
    assert_eq!(h[&299].len(), 299);
    check_heap();
}

#[test]
fn size_classes_bound_waste() {
    for size in 65..=(512 * 1024) {
        let class = memtally_alloc::debug::class_size_for(size).unwrap();
        assert!(8 * (class - size) < size, "{size} -> {class}");
    }
}
