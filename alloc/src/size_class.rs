//! Size classes: which block size serves a request, and what kind of page holds
//! blocks of that size.
//!
//! The classes are exact 8-byte steps up to 64 bytes, then eight classes per
//! power of two: between `2^b` and `2^(b+1)` the step is `2^b / 8`. A request
//! just above a class boundary therefore wastes less than one step, which is
//! less than 12.5% of the request for every size above 64 bytes. Classes end at
//! [`LARGE_MAX`]; bigger requests are huge blocks with their own mapping.
//!
//! Alignment falls out of the geometry: every class of at least `8 * a` bytes
//! is a multiple of `a`, and every multiple of `a` below that is itself a class.
//! So a request for `size` bytes aligned to a power of two `a` (up to the
//! alignment of a page's first block, 4 KiB or more) is served by the class of
//! `round_up(size, a)`, with no extra work on the fast path.

/// The size of a machine word; the smallest block and the step of tiny classes.
pub const WORD: usize = 8;

/// Blocks up to this size live in small pages (64 KiB).
pub const SMALL_MAX: usize = 8 * 1024;
/// Blocks up to this size live in medium pages (512 KiB).
pub const MEDIUM_MAX: usize = 64 * 1024;
/// Blocks up to this size live in large pages (one per 4 MiB segment); above
/// it, blocks are huge and get a mapping of their own.
pub const LARGE_MAX: usize = 512 * 1024;
/// Requests up to this size find their page through the heap's direct table,
/// indexed by the size in words, without computing the class.
pub const DIRECT_MAX: usize = 1024;
/// Number of entries in the direct table (word sizes 0 to `DIRECT_MAX / 8`).
pub const DIRECT_COUNT: usize = DIRECT_MAX / WORD + 1;

/// The smallest class in use (16 bytes).
pub const MIN_CLASS: usize = 1;

/// Number of tiny classes (8 to 64 bytes in 8-byte steps).
const TINY_COUNT: usize = 8;
/// Classes per power of two above 64 bytes.
const STEPS_PER_DOUBLING: usize = 8;
/// Number of size classes.
pub const CLASS_COUNT: usize =
    TINY_COUNT + STEPS_PER_DOUBLING * (LARGE_MAX.trailing_zeros() as usize - 6);

/// The page kind that holds blocks of a class.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum PageKind {
    /// 64 KiB pages, 64 per segment.
    Small = 0,
    /// 512 KiB pages, 8 per segment.
    Medium = 1,
    /// One page filling a whole segment.
    Large = 2,
    /// One block in a mapping of its own.
    Huge = 3,
}

/// Returns the class of a request of `size` bytes (`size <= LARGE_MAX`).
///
/// Requests up to 16 bytes (zero included) are served by the 16-byte class:
/// a free block holds two words, its link and its freed tag (see
/// `page.rs`), so the 8-byte class 0 is never used.
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= 64 {
        if size <= 2 * WORD {
            return MIN_CLASS;
        }
        return size.div_ceil(WORD) - 1;
    }
    let s = size - 1;
    let b = (usize::BITS - 1 - s.leading_zeros()) as usize; // s in [2^b, 2^(b+1))
    let step_shift = b - 3;
    let k = (s - (1 << b)) >> step_shift;
    TINY_COUNT + (b - 6) * STEPS_PER_DOUBLING + k
}

const fn compute_class_size(cls: usize) -> usize {
    if cls < TINY_COUNT {
        return (cls + 1) * WORD;
    }
    let j = cls - TINY_COUNT;
    let b = 6 + j / STEPS_PER_DOUBLING;
    let k = j % STEPS_PER_DOUBLING;
    (1 << b) + (k + 1) * (1 << (b - 3))
}

const fn build_sizes() -> [u32; CLASS_COUNT] {
    let mut t = [0u32; CLASS_COUNT];
    let mut i = 0;
    while i < CLASS_COUNT {
        t[i] = compute_class_size(i) as u32;
        i += 1;
    }
    t
}

/// Block size of each class.
static CLASS_SIZE: [u32; CLASS_COUNT] = build_sizes();

/// Returns the block size of class `cls`.
#[inline]
pub fn class_size(cls: usize) -> usize {
    CLASS_SIZE[cls] as usize
}

/// Returns the kind of page that holds blocks of class `cls`.
#[inline]
pub fn class_kind(cls: usize) -> PageKind {
    let size = class_size(cls);
    if size <= SMALL_MAX {
        PageKind::Small
    } else if size <= MEDIUM_MAX {
        PageKind::Medium
    } else {
        PageKind::Large
    }
}

/// The smallest word size (index into the direct table) served by class `cls`.
/// Only meaningful for classes up to [`DIRECT_MAX`].
#[inline]
pub fn class_first_wsize(cls: usize) -> usize {
    if cls <= MIN_CLASS {
        0
    } else {
        class_size(cls - 1) / WORD + 1
    }
}

/// The multiplier for Lemire's divisibility test by `d` (at least 2): for
/// any `n < 2^32`, `n % d == 0` exactly when `n.wrapping_mul(m) < m`. One
/// multiplication instead of a division lets the free path reject pointers
/// into the middle of a block.
#[inline]
pub const fn divisibility_magic(d: usize) -> u64 {
    u64::MAX / d as u64 + 1
}

/// Lemire's test: is `n` a multiple of the divisor whose magic is `m`?
/// Valid for `n < 2^32`. (Lemire writes `<= m - 1`; `< m` is the same for
/// every `m` a divisor of at least 2 gives, and saves the fast free path
/// an instruction. `m` 0, an unused page's, answers false.)
#[inline(always)]
pub fn is_multiple(n: u64, m: u64) -> bool {
    n.wrapping_mul(m) < m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_count_and_bounds() {
        assert_eq!(CLASS_COUNT, 112);
        assert_eq!(class_size(0), 8);
        assert_eq!(class_size(7), 64);
        assert_eq!(class_size(8), 72);
        assert_eq!(class_size(CLASS_COUNT - 1), LARGE_MAX);
    }

    #[test]
    fn classes_strictly_increase_and_are_word_multiples() {
        for c in 1..CLASS_COUNT {
            assert!(class_size(c) > class_size(c - 1));
            assert_eq!(class_size(c) % WORD, 0);
        }
    }

    #[test]
    fn every_size_gets_the_smallest_fitting_class() {
        for size in 0..=LARGE_MAX {
            let c = class_of(size);
            assert!(c < CLASS_COUNT, "size {size}");
            assert!(class_size(c) >= size.max(16), "size {size} class {c}");
            if c > MIN_CLASS {
                assert!(class_size(c - 1) < size, "size {size} fits a smaller class");
            }
        }
    }

    #[test]
    fn waste_above_64_bytes_is_below_one_eighth() {
        for size in 65..=LARGE_MAX {
            let got = class_size(class_of(size));
            // waste / size < 1/8  <=>  8 * waste < size
            assert!(8 * (got - size) < size, "size {size} -> {got}");
        }
    }

    #[test]
    fn aligned_rounding_lands_on_aligned_classes() {
        let mut align = 8;
        while align <= 4096 {
            for size in (align..=LARGE_MAX).step_by(align) {
                let c = class_size(class_of(size));
                assert_eq!(c % align, 0, "size {size} align {align} -> {c}");
            }
            align *= 2;
        }
    }

    #[test]
    fn direct_table_ranges_cover_each_word_size_once() {
        for w in 1..DIRECT_COUNT {
            let c = class_of(w * WORD);
            assert!(class_first_wsize(c) <= w);
            assert!(class_size(c) >= w * WORD);
        }
    }

    #[test]
    fn divisibility_magic_agrees_with_modulo() {
        for c in 0..CLASS_COUNT {
            let d = class_size(c);
            let m = divisibility_magic(d);
            for n in (0..(4usize << 20))
                .step_by(d.max(1) / 2 + 1)
                .chain([d - 1, d, d + 1, 3 * d])
            {
                assert_eq!(is_multiple(n as u64, m), n % d == 0, "n {n} d {d}");
            }
        }
        // Block sizes that are not classes (huge blocks, page areas).
        for d in [2usize, 3, 48, 4096 + 8, (1 << 20) + 24, (1 << 31) - 1] {
            let m = divisibility_magic(d);
            for n in [0, 1, d - 1, d, d + 1, 2 * d, 7 * d + 1] {
                if n < 1 << 32 {
                    assert_eq!(is_multiple(n as u64, m), n % d == 0, "n {n} d {d}");
                }
            }
        }
        // An unused page's magic matches nothing.
        assert!(!is_multiple(0, 0) && !is_multiple(16, 0));
    }

    #[test]
    fn kinds_follow_size_limits() {
        assert_eq!(class_kind(class_of(SMALL_MAX)), PageKind::Small);
        assert_eq!(class_kind(class_of(SMALL_MAX + 1)), PageKind::Medium);
        assert_eq!(class_kind(class_of(MEDIUM_MAX)), PageKind::Medium);
        assert_eq!(class_kind(class_of(MEDIUM_MAX + 1)), PageKind::Large);
        assert_eq!(class_kind(class_of(LARGE_MAX)), PageKind::Large);
    }
}
