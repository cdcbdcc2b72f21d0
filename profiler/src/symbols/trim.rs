//! Which frames belong to the allocator and its recorder rather than to the
//! program, so that they are trimmed from the inner end of stacks and the
//! innermost frame shown is the program's own call.
//!
//! A frame is the allocator's when it lies in `libmemtally.so`, when its
//! function is in the `memtally_alloc` crate, when it is one of Rust's
//! global-allocator shims (`__rust_alloc`, `__rdl_alloc`, `__rg_alloc` and
//! their siblings, anything in `alloc::alloc`), or when it is the C or C++
//! allocation API itself (`malloc`, `free`, `operator new`, ...).

use super::Location;

/// Names of C and Rust allocation entry points (compared with a function's
/// last path segment, so that `__rustc::__rust_alloc` matches too).
const ENTRY_POINTS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "cfree",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "__libc_malloc",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_free",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__rust_alloc",
    "__rust_alloc_zeroed",
    "__rust_realloc",
    "__rust_dealloc",
    "__rdl_alloc",
    "__rdl_alloc_zeroed",
    "__rdl_realloc",
    "__rdl_dealloc",
    "__rg_alloc",
    "__rg_alloc_zeroed",
    "__rg_realloc",
    "__rg_dealloc",
];

/// Function name prefixes of allocator code.
const PREFIXES: &[&str] = &[
    "memtally_alloc::",
    "<memtally_alloc::",
    "alloc::alloc::",
    "<alloc::alloc::",
    "operator new",
    "operator delete",
];

/// True when `loc` is a frame of the allocator or recorder.
pub fn is_allocator_frame(loc: &Location) -> bool {
    if loc
        .module
        .as_deref()
        .is_some_and(|m| m.rsplit('/').next() == Some("libmemtally.so"))
    {
        return true;
    }
    let Some(f) = loc.function.as_deref() else {
        return false;
    };
    if PREFIXES.iter().any(|p| f.starts_with(p)) {
        return true;
    }
    // The last path segment, without generic arguments or a C++ parameter
    // list.
    let base = f.split(['(', '<']).next().unwrap_or(f);
    let last = base.rsplit("::").next().unwrap_or(base);
    ENTRY_POINTS.contains(&last)
}

/// How many frames at the inner end of `frames` (innermost first) are the
/// allocator's. When every frame is, none is trimmed: a stack made only of
/// allocator frames is better shown whole than empty.
pub fn inner_allocator_frames(frames: &[Location]) -> usize {
    let n = frames.iter().take_while(|l| is_allocator_frame(l)).count();
    if n == frames.len() { 0 } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(f: &str) -> Location {
        Location {
            function: Some(f.to_owned()),
            ..Location::unknown(0)
        }
    }

    #[test]
    fn allocator_frames_are_recognised() {
        for f in [
            "malloc",
            "__rustc::__rust_alloc",
            "__rdl_alloc",
            "alloc::alloc::exchange_malloc",
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
            "<memtally_alloc::MemTally as core::alloc::global::GlobalAlloc>::alloc",
            "memtally_alloc::api::alloc_slow",
            "operator new(unsigned long)",
        ] {
            assert!(is_allocator_frame(&named(f)), "{f}");
        }
        for f in [
            "main",
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "my_malloc_wrapper",
            "std::collections::hash::map::HashMap<K,V>::insert",
        ] {
            assert!(!is_allocator_frame(&named(f)), "{f}");
        }
        let mut in_lib = Location::unknown(0x1000);
        in_lib.module = Some("/usr/lib/libmemtally.so".into());
        assert!(is_allocator_frame(&in_lib));
    }

    #[test]
    fn only_the_inner_end_is_trimmed() {
        let frames = [named("malloc"), named("user"), named("free"), named("main")];
        assert_eq!(inner_allocator_frames(&frames), 1);
        assert_eq!(inner_allocator_frames(&[named("malloc")]), 0);
    }
}
