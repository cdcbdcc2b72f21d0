//! The index of sizes of the models that search by size (`bins.rs`):
//! each distinct free block size with a value (best fit's: its only
//! block's offset, or "several"; heap_2's: its number of blocks),
//! answering "the smallest size at least this large", "the largest size"
//! and, weighted (heap_2), "how many blocks are smaller" (its steps).
//!
//! Why not [`super::ordered::Chunked`] (which held it before): best fit
//! changes this index two or three times per operation (a split takes
//! out a size and puts in the remainder's; a merge takes out two and puts
//! in one), and a general ordered structure of chunks under a segment
//! tree spent about 160 instructions on each change, two thirds of the
//! model's time on a trace of random sizes. Here sizes fall into classes
//! by their top bits (all sizes below 32 exactly; above, 32 classes per
//! power of two, as TLSF splits them), a bitmap says which classes hold
//! sizes, and each class keeps its few sizes sorted in a small vector: a
//! change is a class computation and an insertion into a vector that
//! rarely holds more than a few entries, and a search is one class's scan
//! and, past it, the bitmap's next set bit. A weighted map keeps each
//! class's sum in a Fenwick tree: a rank is a prefix of it and a scan of
//! one class.
//!
//! The worst case is many distinct sizes in one class (thousands of free
//! blocks whose sizes share their top six bits): insertion then moves the
//! class's entries, O(n) in the class, where the chunked index was
//! O(chunk). Free lists of that shape were not seen in any trace here.

/// Sizes below this are classes of their own.
const EXACT: u64 = 32;
/// log2 of the classes per power of two above `EXACT`.
const SUB_BITS: u32 = 5;
/// Classes: sizes up to 2^64 - 1.
const CLASSES: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + EXACT as usize;
/// Words of the class bitmap.
const WORDS: usize = CLASSES.div_ceil(64);

/// The class of `size`; classes are ordered as their sizes are.
#[inline]
fn class_of(size: u64) -> usize {
    if size < EXACT {
        return size as usize;
    }
    let msb = 63 - size.leading_zeros();
    let shift = msb - SUB_BITS;
    (((shift + 1) << SUB_BITS) as u64 + ((size >> shift) & (EXACT - 1))) as usize
}

/// Where a size is, or would go, in a [`SizeMap`]: its class and its index
/// there, from [`SizeMap::locate`], for the change that follows (valid until
/// the map changes). A model that reads a size's value and then changes it
/// finds it once.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    class: usize,
    index: usize,
}

/// An ordered map from sizes to values (see the module comment).
pub struct SizeMap {
    /// Each class's (size, value) entries, by size.
    classes: Vec<Vec<(u64, u64)>>,
    /// Bit `c` set when class `c` holds entries.
    bits: [u64; WORDS],
    /// Bit `w` set when `bits[w]` is not 0.
    summary: u64,
    /// Weighted maps only (else empty): the sum of each class's values, as
    /// a Fenwick tree (1-based), for ranks: heap_2's index of sizes is
    /// valued by the number of blocks of each size, and a rank is the
    /// number of smaller blocks.
    sums: Vec<u64>,
}

impl Default for SizeMap {
    fn default() -> Self {
        SizeMap {
            classes: (0..CLASSES).map(|_| Vec::new()).collect(),
            bits: [0; WORDS],
            summary: 0,
            sums: Vec::new(),
        }
    }
}

impl SizeMap {
    /// A map whose values are weights: [`SizeMap::at_least_ranked`] sums
    /// those of smaller sizes.
    pub fn weighted() -> Self {
        SizeMap {
            sums: vec![0; CLASSES + 1],
            ..SizeMap::default()
        }
    }

    /// Adds `delta` (wrapping: a decrease is a wrapped subtraction) to
    /// class `c`'s sum, if weighted. (The tree's climb is out of line, so
    /// that an unweighted map's changes stay small enough to inline.)
    #[inline(always)]
    fn add_to_class(&mut self, c: usize, delta: u64) {
        if !self.sums.is_empty() {
            self.climb(c, delta);
        }
    }

    #[inline(never)]
    fn climb(&mut self, c: usize, delta: u64) {
        let mut i = c + 1;
        while i <= CLASSES {
            self.sums[i] = self.sums[i].wrapping_add(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// The sum of the values of classes below `c`.
    fn below_class(&self, c: usize) -> u64 {
        let mut sum = 0u64;
        let mut i = c;
        while i > 0 {
            sum = sum.wrapping_add(self.sums[i]);
            i &= i - 1;
        }
        sum
    }

    /// [`SizeMap::at_least`], and the sum of the values of every smaller
    /// size (a weighted map's rank of `size`).
    pub fn at_least_ranked(&self, size: u64) -> (Option<(u64, u64)>, u64) {
        let (c, i) = self.place(size);
        (
            self.first_from(c, i),
            self.rank_at(Place { class: c, index: i }),
        )
    }

    /// The sum of the values of the sizes before place `p` (a weighted
    /// map's rank of the size there).
    pub fn rank_at(&self, p: Place) -> u64 {
        debug_assert!(!self.sums.is_empty(), "a weighted map");
        let within: u64 = self.classes[p.class][..p.index].iter().map(|e| e.1).sum();
        self.below_class(p.class).wrapping_add(within)
    }

    /// Where `size` is or would go: its class and its index there.
    #[inline]
    fn place(&self, size: u64) -> (usize, usize) {
        let c = class_of(size);
        (c, self.classes[c].partition_point(|e| e.0 < size))
    }

    /// The entry at index `i` of class `c`, or past that class's end the
    /// first of the next class that holds entries.
    #[inline]
    fn first_from(&self, c: usize, i: usize) -> Option<(u64, u64)> {
        if let Some(&e) = self.classes[c].get(i) {
            return Some(e);
        }
        let next = self.class_from(c + 1)?;
        self.classes[next].first().copied()
    }

    /// Where `size` is or would go, and its value when it is held.
    #[inline(always)]
    pub fn locate(&self, size: u64) -> (Place, Option<u64>) {
        let (class, index) = self.place(size);
        let value = self.classes[class]
            .get(index)
            .filter(|e| e.0 == size)
            .map(|e| e.1);
        (Place { class, index }, value)
    }

    /// The value of `size` (the models go through [`SizeMap::locate`] and
    /// the changes at a place; these four are the tests' plain map).
    #[cfg(test)]
    pub fn get(&self, size: u64) -> Option<u64> {
        self.locate(size).1
    }

    /// Adds `size` (not held) with `value`.
    #[cfg(test)]
    pub fn insert(&mut self, size: u64, value: u64) {
        let (p, held) = self.locate(size);
        debug_assert!(held.is_none(), "size {size} held");
        self.insert_at(p, size, value);
    }

    /// Adds `size` (not held, at `p`, its place) with `value`.
    #[inline(always)]
    pub fn insert_at(&mut self, p: Place, size: u64, value: u64) {
        let c = p.class;
        let class = &mut self.classes[c];
        debug_assert_eq!(
            p.index,
            class.partition_point(|e| e.0 < size),
            "a stale place"
        );
        class.insert(p.index, (size, value));
        if class.len() == 1 {
            self.bits[c / 64] |= 1 << (c % 64);
            self.summary |= 1 << (c / 64);
        }
        self.add_to_class(c, value);
    }

    /// Changes the value of `size` (held).
    #[cfg(test)]
    pub fn set(&mut self, size: u64, value: u64) {
        let (p, held) = self.locate(size);
        assert!(held.is_some(), "a held size");
        self.set_at(p, value);
    }

    /// Changes the value of the size held at `p`.
    #[inline(always)]
    pub fn set_at(&mut self, p: Place, value: u64) {
        let old = std::mem::replace(&mut self.classes[p.class][p.index].1, value);
        self.add_to_class(p.class, value.wrapping_sub(old));
    }

    /// Takes out `size`, returning its value.
    #[cfg(test)]
    pub fn remove(&mut self, size: u64) -> Option<u64> {
        let (p, held) = self.locate(size);
        held.map(|_| self.remove_at(p))
    }

    /// Takes out the size held at `p`, returning its value.
    #[inline(always)]
    pub fn remove_at(&mut self, p: Place) -> u64 {
        let c = p.class;
        let class = &mut self.classes[c];
        let (_, value) = class.remove(p.index);
        if class.is_empty() {
            self.bits[c / 64] &= !(1 << (c % 64));
            if self.bits[c / 64] == 0 {
                self.summary &= !(1 << (c / 64));
            }
        }
        self.add_to_class(c, value.wrapping_neg());
        value
    }

    /// The smallest size at least `size`, with its value.
    #[inline]
    pub fn at_least(&self, size: u64) -> Option<(u64, u64)> {
        let (c, i) = self.place(size);
        self.first_from(c, i)
    }

    /// The first class at or after `c` that holds entries.
    fn class_from(&self, c: usize) -> Option<usize> {
        if c >= CLASSES {
            return None;
        }
        let w = c / 64;
        let here = self.bits[w] & (u64::MAX << (c % 64));
        if here != 0 {
            return Some(w * 64 + here.trailing_zeros() as usize);
        }
        let later = self.summary & (u64::MAX.checked_shl(w as u32 + 1).unwrap_or(0));
        if later == 0 {
            return None;
        }
        let w = later.trailing_zeros() as usize;
        Some(w * 64 + self.bits[w].trailing_zeros() as usize)
    }

    /// The largest size, with its value.
    pub fn last(&self) -> Option<(u64, u64)> {
        if self.summary == 0 {
            return None;
        }
        let w = 63 - self.summary.leading_zeros() as usize;
        let c = w * 64 + 63 - self.bits[w].leading_zeros() as usize;
        self.classes[c].last().copied()
    }

    /// Every (size, value), by size.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.classes.iter().flatten().copied()
    }

    /// Checks the classes, the bitmap and the sums (for tests).
    pub fn check(&self) -> Result<(), String> {
        let mut last = None;
        for (c, class) in self.classes.iter().enumerate() {
            let bit = self.bits[c / 64] >> (c % 64) & 1 == 1;
            if bit == class.is_empty() {
                return Err(format!("class {c}: bit {bit}, {} entries", class.len()));
            }
            for &(size, _) in class {
                if class_of(size) != c || last.is_some_and(|l| l >= size) {
                    return Err(format!("size {size} out of place in class {c}"));
                }
                last = Some(size);
            }
        }
        for (w, &word) in self.bits.iter().enumerate() {
            if (self.summary >> w & 1 == 1) != (word != 0) {
                return Err(format!("summary bit {w} wrong"));
            }
        }
        if !self.sums.is_empty() {
            let mut want = 0u64;
            for c in 0..=CLASSES {
                if self.below_class(c) != want {
                    return Err(format!("classes below {c}: the tree's sum is not {want}"));
                }
                if let Some(class) = self.classes.get(c) {
                    want += class.iter().map(|e| e.1).sum::<u64>();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn classes_are_ordered_as_sizes_and_cover_every_size() {
        let mut last = 0;
        let probe = (0..4096u64).chain((12..64).flat_map(|b| {
            let p = 1u64 << b;
            [p - 1, p, p + 1, p + (p >> 6), p | (p - 1)]
        }));
        let mut sizes: Vec<u64> = probe.chain([u64::MAX]).collect();
        sizes.sort_unstable();
        for s in sizes {
            let c = class_of(s);
            assert!(c >= last && c < CLASSES, "size {s}: class {c} after {last}");
            last = c;
        }
        assert_eq!(class_of(u64::MAX), CLASSES - 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random insertions, changes and removals over sizes of every
        /// magnitude (and many in one class): every answer is a
        /// `BTreeMap`'s.
        #[test]
        fn answers_as_an_ordered_map(
            ops in proptest::collection::vec((0u8..4, 0u32..64, 0u64..4096, 0u64..1000), 1..800),
            weighted in any::<bool>(),
        ) {
            let mut ours = if weighted { SizeMap::weighted() } else { SizeMap::default() };
            let mut theirs: BTreeMap<u64, u64> = BTreeMap::new();
            for (op, bits, low, value) in ops {
                // Sizes near a power of two, or crowded into one class.
                let size = if bits < 8 { 1 << 20 | low } else { (1u64 << (bits % 64)) ^ low };
                match op {
                    0 | 1 => {
                        if let std::collections::btree_map::Entry::Vacant(v) = theirs.entry(size) {
                            v.insert(value);
                            ours.insert(size, value);
                        } else {
                            theirs.insert(size, value);
                            ours.set(size, value);
                        }
                    }
                    _ => prop_assert_eq!(ours.remove(size), theirs.remove(&size)),
                }
                prop_assert!(ours.check().is_ok(), "{:?}", ours.check());
                prop_assert_eq!(ours.get(size), theirs.get(&size).copied());
                for probe in [size, size.wrapping_add(1), size / 2, low, 0] {
                    let want = theirs.range(probe..).next().map(|(&k, &v)| (k, v));
                    prop_assert_eq!(ours.at_least(probe), want);
                    if weighted {
                        let rank: u64 = theirs.range(..probe).map(|(_, &v)| v).sum();
                        prop_assert_eq!(ours.at_least_ranked(probe), (want, rank));
                    }
                }
                prop_assert_eq!(ours.last(), theirs.last_key_value().map(|(&k, &v)| (k, v)));
                prop_assert_eq!(ours.iter().count(), theirs.len());
            }
            let all: Vec<(u64, u64)> = theirs.into_iter().collect();
            prop_assert_eq!(ours.iter().collect::<Vec<_>>(), all);
        }
    }
}
