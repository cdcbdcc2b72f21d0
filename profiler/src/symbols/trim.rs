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

/// True when `loc` lies in `libmemtally.so` (the preloaded allocator,
/// recorder and gpu-shim).
pub fn in_memtally_library(loc: &Location) -> bool {
    loc.module
        .as_deref()
        .is_some_and(|m| m.rsplit('/').next() == Some("libmemtally.so"))
}

/// True when `loc` is a frame of the allocator or recorder.
pub fn is_allocator_frame(loc: &Location) -> bool {
    if in_memtally_library(loc) {
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
///
/// A physical frame whose function is the allocator's goes whole, with
/// what the compiler inlined into it (the recorder's slice indexing is
/// `core::` code, but runs inside `memtally_alloc::record::emit_busy`);
/// then allocator functions inlined at the inner end of the next frame.
pub fn inner_allocator_frames(frames: &[Location]) -> usize {
    let mut n = 0;
    while let Some(k) = frames[n..].iter().position(|l| !l.inlined) {
        if !is_allocator_frame(&frames[n + k]) {
            break;
        }
        n += k + 1;
    }
    n += frames[n..]
        .iter()
        .take_while(|l| is_allocator_frame(l))
        .count();
    if n == frames.len() { 0 } else { n }
}

/// Path prefixes of the Rust and C++ standard libraries' functions (after
/// a leading `<` and a `T as ` of trait impls).
const LIBRARY_PREFIXES: &[&str] = &[
    "alloc::",
    "core::",
    "std::",
    "hashbrown::",
    "[T]",
    "__gnu_cxx::",
];

/// True when `loc` is a frame of the language's standard library (Rust's
/// `alloc`, `core`, `std`, `hashbrown`; C++'s `std::`): the container code
/// between the program's call and the allocator.
pub fn is_library_frame(loc: &Location) -> bool {
    let Some(f) = loc.function.as_deref() else {
        return false;
    };
    let Some(inner) = f.strip_prefix('<') else {
        return is_library_path(f);
    };
    // `<Self as Trait>::f` is the library's when `Self` is a library or
    // primitive type (`u64`, `&mut alloc::string::String`, a generic `T`
    // of a library impl); a program's own `impl Display for Mine` is not.
    let self_type = inner.split(" as ").next().unwrap_or(inner);
    let self_type = self_type.trim_start_matches(['&', '*']);
    let self_type = self_type.strip_prefix("mut ").unwrap_or(self_type);
    let self_type = self_type.strip_prefix("const ").unwrap_or(self_type);
    is_library_path(self_type) || is_primitive_or_generic(self_type)
}

fn is_library_path(f: &str) -> bool {
    LIBRARY_PREFIXES.iter().any(|p| f.starts_with(p))
}

/// `u64`, `str`, `[u8]`, `T`: a type with no path, named by the language.
fn is_primitive_or_generic(t: &str) -> bool {
    let name = t.split(['<', ' ']).next().unwrap_or(t);
    !name.contains("::")
        && (name.starts_with('[')
            || name.len() == 1
            || matches!(
                name,
                "u8" | "u16"
                    | "u32"
                    | "u64"
                    | "u128"
                    | "usize"
                    | "i8"
                    | "i16"
                    | "i32"
                    | "i64"
                    | "i128"
                    | "isize"
                    | "f32"
                    | "f64"
                    | "bool"
                    | "char"
                    | "str"
            ))
}

/// How many standard-library frames sit at the inner end of `frames`,
/// between the allocator and the program's own code, so that a site is
/// named after the program's function (`audit`) rather than the container
/// code that called the allocator (`RawVec::try_allocate_in`). None are
/// counted when every frame is a library one.
pub fn inner_library_frames(frames: &[Location]) -> usize {
    let n = frames.iter().take_while(|l| is_library_frame(l)).count();
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
    fn allocator_frames_go_with_what_was_inlined_into_them() {
        let inlined = |f: &str| Location {
            inlined: true,
            ..named(f)
        };
        // Innermost first: core code inlined into the recorder, the
        // recorder's physical frames, then the program.
        let frames = [
            inlined(
                "<core::ops::range::Range<usize> as core::slice::index::SliceIndex<[T]>>::index",
            ),
            inlined("memtally_alloc::record::emit"),
            named("memtally_alloc::record::emit_busy"),
            named("memtally_alloc::api::alloc_slow_lane"),
            inlined("__rustc::__rust_alloc"),
            named("server::handle"),
            named("main"),
        ];
        assert_eq!(inner_allocator_frames(&frames), 5);
        // An allocator function inlined into the program's frame goes; the
        // program's frame stays.
        let frames = [inlined("__rustc::__rust_alloc"), named("server::handle")];
        assert_eq!(inner_allocator_frames(&frames), 1);
        // Nothing but the allocator: shown whole.
        let frames = [inlined("core::ptr::write"), named("malloc")];
        assert_eq!(inner_allocator_frames(&frames), 0);
    }

    #[test]
    fn standard_library_frames_are_recognised() {
        for f in [
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
            "<alloc::raw_vec::RawVecInner>::finish_grow",
            "<T as alloc::slice::<impl [T]>::to_vec_in::ConvertVec>::to_vec",
            "hashbrown::raw::RawTableInner::new_uninitialized",
            "std::vector<int, std::allocator<int> >::_M_realloc_insert",
            "alloc::fmt::format::format_inner",
            "<u64 as core::fmt::Display>::fmt",
            "<&mut alloc::string::String as core::fmt::Write>::write_str",
            "<str as alloc::string::ToString>::to_string",
        ] {
            assert!(is_library_frame(&named(f)), "{f}");
        }
        for f in [
            "leaky_server::audit",
            "main",
            "parse_a",
            "<my::Type as core::fmt::Display>::fmt",
        ] {
            assert!(!is_library_frame(&named(f)), "{f}");
        }
        let frames = [
            named("alloc::vec::Vec<T>::with_capacity"),
            named("app::audit"),
            named("alloc::x"),
        ];
        assert_eq!(inner_library_frames(&frames), 1);
        assert_eq!(inner_library_frames(&frames[..1]), 0);
    }

    #[test]
    fn only_the_inner_end_is_trimmed() {
        let frames = [named("malloc"), named("user"), named("free"), named("main")];
        assert_eq!(inner_allocator_frames(&frames), 1);
        assert_eq!(inner_allocator_frames(&[named("malloc")]), 0);
    }
}
