//! Sorted (key, value) entries in chunks of fewer than `CHUNK`, each
//! chunk's largest value and length a leaf of a segment tree: the fit
//! models' free blocks in address order (keyed by end, valued by size).
//! (The models' indexes of distinct sizes are in `sizemap.rs`.)
//!
//! The policies ask questions a plain ordered map answers by walking it:
//! the first block (from some place) that is at least so large, and how
//! many blocks the walk passed (the model's steps); the largest block
//! (worst fit, and the fragmentation figure after every operation); how
//! many blocks lie below an address (heap_4's sorted insertion). The tree
//! answers each in O(log chunks) plus one chunk's scan: a search descends
//! to the first chunk whose largest block is large enough, and a rank is a
//! sum of the chunk lengths it keeps. Entries sit in flat arrays, where a
//! B-tree's walk chased a pointer every few.
//!
//! By address, blocks are keyed by their end offset, with their size (a
//! block starts at `end - size`): a split takes the front of a block and
//! a freed block merges into the front of the next, which keep the end,
//! so both change a size in place.

use std::cell::Cell;

/// A chunk that reaches this many entries is split in two halves (a
/// chunk holds fewer).
const CHUNK: usize = 64;
/// A chunk this small merges with a neighbour when the two together fill
/// at most three quarters of a chunk.
const SMALL: usize = CHUNK / 4;

/// One chunk: entries sorted by key.
#[derive(Clone)]
struct Chunk {
    keys: Vec<u64>,
    sizes: Vec<u64>,
    /// Its largest sizes (not with `no_max`).
    tops: Tops,
}

/// How many of a chunk's largest sizes it keeps.
const TOPS: usize = 4;

/// A chunk's `n` largest sizes, largest first (as a multiset: the first
/// `n` of its sizes sorted from the largest), `n` at most [`TOPS`]. A
/// change among them keeps the rest known where it can: a size that
/// leaves takes one off `n`, a size that comes in at or above the
/// smallest known one joins them. The chunk is scanned again only when
/// none is left, where keeping the largest and the second alone meant a
/// scan of up to 63 sizes whenever a split took the largest block below
/// the second (first fit's and heap_4's split blocks are often their
/// chunk's largest: a search stops at the first chunk with one large
/// enough; next fit shrinks the block at its rover again and again, worst
/// fit the largest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tops {
    v: [u64; TOPS],
    n: u8,
}

impl Tops {
    /// The largest sizes of `sizes`, by a scan.
    fn of(sizes: &[u64]) -> Tops {
        let mut t = Tops::default();
        for (others, &s) in sizes.iter().enumerate() {
            t.add(s, others);
        }
        t
    }

    /// The largest size (0 when none is known).
    fn max(&self) -> u64 {
        if self.n == 0 { 0 } else { self.v[0] }
    }

    /// A size comes into a chunk that holds `others` more.
    #[inline]
    fn add(&mut self, s: u64, others: usize) {
        let n = usize::from(self.n);
        // With every other size known, or `s` at least the smallest known,
        // `s` is among the largest (unless TOPS larger ones are known).
        if n == others || (n > 0 && s >= self.v[n - 1]) {
            let at = self.v[..n].iter().take_while(|&&x| x > s).count();
            if at < TOPS {
                let last = n.min(TOPS - 1);
                self.v.copy_within(at..last, at + 1);
                self.v[at] = s;
                self.n = (n + 1).min(TOPS) as u8;
            }
        }
    }

    /// A size leaves the chunk.
    #[inline]
    fn remove(&mut self, s: u64) {
        let n = usize::from(self.n);
        if n > 0 && s >= self.v[n - 1] {
            // One of the known holds it: a size at or above the smallest
            // known is either among them or equal to the smallest.
            let at = self.v[..n]
                .iter()
                .position(|&x| x == s)
                .expect("a known size");
            self.v.copy_within(at + 1..n, at);
            self.n -= 1;
        }
    }
}

/// Per chunk, its largest value (a size) and its number of entries, as the
/// leaves of a segment tree whose nodes hold the largest value and the
/// count below them: the largest block is found in O(log chunks) whichever
/// chunk holds it (worst fit shrinks it on every allocation), and so is
/// the rank of a chunk's first entry (heap_4's walk of a list that can
/// hold thousands of blocks). A change of a largest value climbs only
/// while it changes a parent; inserting, removing or splitting chunks,
/// once per many entries, recomputes the nodes above the leaves that
/// moved. (Indexes that keep no largest value hold 1 per chunk.)
#[derive(Clone, Default)]
struct ChunkTree {
    /// Leaves: a power of two, at least `len`.
    cap: usize,
    len: usize,
    /// `node[1]` is the root; node `i` has children `2i` and `2i + 1`;
    /// the leaves are `node[cap..cap + len]` (0 past `len`).
    max: Vec<u64>,
    /// The same layout: entries below each node.
    count: Vec<u64>,
}

impl ChunkTree {
    fn max(&self, k: usize) -> u64 {
        self.max[self.cap + k]
    }

    fn set_max(&mut self, k: usize, v: u64) {
        let mut i = self.cap + k;
        self.max[i] = v;
        while i > 1 {
            i /= 2;
            let m = self.max[2 * i].max(self.max[2 * i + 1]);
            if self.max[i] == m {
                break;
            }
            self.max[i] = m;
        }
    }

    /// Recomputes node `i` from its children.
    fn pull(&mut self, i: usize) {
        self.max[i] = self.max[2 * i].max(self.max[2 * i + 1]);
        self.count[i] = self.count[2 * i] + self.count[2 * i + 1];
    }

    /// `n` more (`up`) or fewer counted in chunk `k`.
    fn add_count(&mut self, k: usize, n: u64, up: bool) {
        let mut i = self.cap + k;
        while i >= 1 {
            if up {
                self.count[i] += n;
            } else {
                self.count[i] -= n;
            }
            i /= 2;
        }
    }

    /// How many entries the chunks before `k` hold: the left siblings'
    /// counts on the way up.
    fn before(&self, k: usize) -> u64 {
        let mut i = self.cap + k;
        let mut n = 0;
        while i > 1 {
            // Without a branch: whether a node is a right child is a coin
            // toss from level to level, which a branch mispredicts half
            // the time (`count[i - 1]` is a node either way).
            let right = 0u64.wrapping_sub((i % 2) as u64);
            n += self.count[i - 1] & right;
            i /= 2;
        }
        n
    }

    /// The leaves as (largest, entries), in order.
    fn leaves(&self) -> Vec<(u64, u64)> {
        let r = self.cap..self.cap + self.len;
        self.max[r.clone()]
            .iter()
            .copied()
            .zip(self.count[r].iter().copied())
            .collect()
    }

    /// Replaces the leaves `k..end` by `with`: in place, the leaves after
    /// them moved and the nodes above the leaves from `k` on recomputed
    /// (rebuilt whole when the leaves no longer fit or fill half).
    fn splice(&mut self, k: usize, end: usize, with: &[(u64, u64)]) {
        let (cap, old_len) = (self.cap, self.len);
        let new_len = old_len - (end - k) + with.len();
        if cap == 0 || new_len.next_power_of_two() != cap {
            let mut leaves = self.leaves();
            leaves.splice(k..end, with.iter().copied());
            return self.rebuild(&leaves);
        }
        for v in [&mut self.max, &mut self.count] {
            v.copy_within(cap + end..cap + old_len, cap + k + with.len());
            if new_len < old_len {
                v[cap + new_len..cap + old_len].fill(0);
            }
        }
        for (j, &(m, n)) in with.iter().enumerate() {
            self.max[cap + k + j] = m;
            self.count[cap + k + j] = n;
        }
        self.len = new_len;
        let (mut lo, mut hi) = (cap + k, cap + old_len.max(new_len));
        while lo > 1 {
            (lo, hi) = (lo / 2, hi.div_ceil(2));
            for i in lo..hi {
                self.pull(i);
            }
        }
    }

    fn rebuild(&mut self, leaves: &[(u64, u64)]) {
        self.len = leaves.len();
        self.cap = leaves.len().next_power_of_two();
        for v in [&mut self.max, &mut self.count] {
            v.clear();
            v.resize(2 * self.cap, 0);
        }
        for (k, &(m, n)) in leaves.iter().enumerate() {
            self.max[self.cap + k] = m;
            self.count[self.cap + k] = n;
        }
        for i in (1..self.cap).rev() {
            self.pull(i);
        }
    }

    /// The first leaf from `lo` on whose value is at least `need` (which
    /// is above 0: the padding leaves never qualify).
    fn first_at_least(&self, lo: usize, need: u64) -> Option<usize> {
        if lo >= self.len {
            return None;
        }
        let mut i = self.cap + lo;
        // Up and right until a subtree qualifies...
        while self.max[i] < need {
            while i % 2 == 1 {
                i /= 2;
            }
            if i == 0 {
                return None;
            }
            i += 1;
        }
        // ...then down to its leftmost qualifying leaf.
        while i < self.cap {
            i = if self.max[2 * i] >= need {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(i - self.cap)
    }

    /// The first leaf whose value is at least `need` (which is above 0),
    /// searched down from the root, and the count of the leaves before it
    /// (the left subtrees passed on the way): first fit's search from the
    /// lowest address, where a search up from the first leaf climbs as
    /// far as it then descends, and counting takes no climb of its own.
    fn first_at_least_from_root(&self, need: u64) -> Option<(usize, u64)> {
        if self.max[1] < need {
            return None;
        }
        let (mut i, mut before) = (1, 0);
        while i < self.cap {
            let left = 2 * i;
            // Without a branch: which way a search turns is data.
            let right = self.max[left] < need;
            before += self.count[left] & 0u64.wrapping_sub(u64::from(right));
            i = left + usize::from(right);
        }
        Some((i - self.cap, before))
    }

    /// The last leaf of the largest value, and the value.
    fn last_largest(&self) -> (usize, u64) {
        let m = self.max[1];
        let mut i = 1;
        while i < self.cap {
            i = if self.max[2 * i + 1] == m {
                2 * i + 1
            } else {
                2 * i
            };
        }
        (i - self.cap, m)
    }
}

/// The place of an entry: its chunk and its index there (ordered as the
/// entries are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    chunk: usize,
    i: usize,
}

/// Entries (key, value) in key order: free blocks by their end offset,
/// with their sizes.
#[derive(Clone, Default)]
pub struct Chunked {
    chunks: Vec<Chunk>,
    /// Per chunk, its last key (the chunks' order: a binary search finds
    /// the chunk of a key).
    last: Vec<u64>,
    /// Per chunk, its largest value (for the walks that pass whole chunks;
    /// 1 with `no_max`) and its number of entries (kept only with
    /// `ranked`).
    tree: ChunkTree,
    len: usize,
    /// The largest block as (size, key), the highest key among equal
    /// sizes; `None` when it must be found again (the one known shrank or
    /// went), and always with `no_max`.
    largest: Option<(u64, u64)>,
    /// Where the last search found a block: the model changes or removes
    /// the block it found next, which then needs no search.
    found: Cell<Pos>,
    /// Where next fit's last search found its block: the rest of that
    /// block (keyed by its end) is the entry the next search starts from,
    /// unless blocks came or went around it since (checked).
    rover_hint: Cell<Pos>,
    /// Keep the tree's counts, for ranks in O(log chunks) (else a rank
    /// sums the chunks' lengths: the models that ask for none do not pay
    /// a climb of the tree per entry).
    ranked: bool,
    /// No chunk's largest value is kept (the tree holds 1 for each), for
    /// an index never asked for the largest value or the first that is
    /// large enough: best fit's address order (searched by size in
    /// `bins.rs`). Keeping it costs a climb of the tree when a chunk's
    /// largest value changes, and a scan of the chunk when the last of
    /// its known largest sizes goes (see [`Tops`]).
    no_max: bool,
}

/// Free blocks in address order, keyed by their end.
pub type FreeBlocks = Chunked;

impl Chunked {
    /// An empty index that answers ranks in O(log chunks).
    pub fn ranked() -> Self {
        Chunked {
            ranked: true,
            ..Chunked::default()
        }
    }

    /// An empty index that keeps no largest value: `largest`,
    /// `first_fit` and `next_fit` are not asked of it.
    pub fn without_max() -> Self {
        Chunked {
            no_max: true,
            ..Chunked::default()
        }
    }

    /// Chunk `c`'s largest sizes, by a scan (none with `no_max`).
    fn scanned_tops(&self, c: &Chunk) -> Tops {
        if self.no_max {
            Tops::default()
        } else {
            Tops::of(&c.sizes)
        }
    }

    /// What the tree keeps as a chunk's largest value, from its `tops`.
    fn kept_max(&self, tops: &Tops) -> u64 {
        if self.no_max { 1 } else { tops.max() }
    }

    /// After a change of chunk `k`'s sizes (`tops` told of it): scans the
    /// chunk if no largest size is left known, and gives the tree the
    /// largest.
    fn settle_tops(&mut self, k: usize) {
        let c = &mut self.chunks[k];
        if c.tops.n == 0 {
            c.tops = Tops::of(&c.sizes);
        }
        let max = c.tops.max();
        if max != self.tree.max(k) {
            self.tree.set_max(k, max);
        }
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first entry whose key is not `before` the one sought (or the
    /// end): keys that are `before` it come first in both levels.
    fn bound(&self, before: impl Fn(&u64) -> bool) -> Pos {
        let chunk = self.last.partition_point(&before);
        if chunk == self.chunks.len() {
            return self.end_pos();
        }
        let i = self.chunks[chunk].keys.partition_point(&before);
        Pos { chunk, i }
    }

    /// Is `p` (a remembered place, perhaps stale) the entry [`Chunked::bound`]
    /// finds for `before`: an entry not `before`, whose predecessor (in
    /// its chunk, or the last of the chunk before) is, or the first entry?
    /// A check of two keys where the search takes two binary searches.
    fn bound_is_at(&self, p: Pos, before: impl Fn(&u64) -> bool) -> bool {
        let Some(c) = self.chunks.get(p.chunk) else {
            return false;
        };
        c.keys.get(p.i).is_some_and(|k| !before(k))
            && match p.i.checked_sub(1) {
                Some(j) => before(&c.keys[j]),
                None => p.chunk == 0 || before(&self.last[p.chunk - 1]),
            }
    }

    /// The first entry whose key is at least `key` (or the end).
    fn lower_bound(&self, key: u64) -> Pos {
        self.bound(|&k| k < key)
    }

    /// The first entry whose key is above `key` (or the end).
    fn upper_bound(&self, key: u64) -> Pos {
        self.bound(|&k| k <= key)
    }

    /// The place of the entry keyed `key` (or where it would be).
    fn find(&self, key: u64) -> Pos {
        let p = self.found.get();
        match self.chunks.get(p.chunk) {
            Some(c) if c.keys.get(p.i) == Some(&key) => p,
            _ => self.lower_bound(key),
        }
    }

    /// The value keyed `key` (remembered as found, for the change or
    /// removal that follows).
    pub fn get(&self, key: u64) -> Option<u64> {
        let p = self.find(key);
        let (k, v) = self.entry(p)?;
        self.found.set(p);
        (k == key).then_some(v)
    }

    /// The entry at `p`, remembered as found.
    fn found_at(&self, p: Pos) -> Option<(u64, u64)> {
        self.found.set(p);
        self.entry(p)
    }

    /// The place past the last entry.
    fn end_pos(&self) -> Pos {
        Pos {
            chunk: self.chunks.len(),
            i: 0,
        }
    }

    fn entry(&self, p: Pos) -> Option<(u64, u64)> {
        let c = self.chunks.get(p.chunk)?;
        Some((c.keys[p.i], c.sizes[p.i]))
    }

    /// The place after `p`.
    fn next_pos(&self, p: Pos) -> Pos {
        if p.i + 1 < self.chunks[p.chunk].keys.len() {
            Pos {
                chunk: p.chunk,
                i: p.i + 1,
            }
        } else {
            Pos {
                chunk: p.chunk + 1,
                i: 0,
            }
        }
    }

    /// Adds the block (`key`, `size`); no block has that key. (Its rank is
    /// not worked out: heap_4 counts its walk to a freed block's place in
    /// the search for the block's neighbours, `at_or_after_counted`.)
    pub fn insert(&mut self, key: u64, size: u64) {
        // A size of 0 would tie with the tree's empty leaves (where they
        // are compared).
        debug_assert!(size > 0 || self.no_max, "an empty block at {key:?}");
        self.len += 1;
        if let Some(l) = self.largest
            && (size, key) > l
        {
            self.largest = Some((size, key));
        }
        if self.chunks.is_empty() {
            let mut first = Chunk {
                keys: vec![key],
                sizes: vec![size],
                tops: Tops::default(),
            };
            first.tops = self.scanned_tops(&first);
            let max = self.kept_max(&first.tops);
            self.chunks.push(first);
            self.last.push(key);
            self.tree.splice(0, 0, &[(max, 1)]);
            // Without largest values, `largest` stays None (and every
            // update of it below is a no-op).
            if !self.no_max {
                self.largest = Some((size, key));
            }
            return;
        }
        let (chunk, i) = self.insertion_place(key);
        let c = &self.chunks[chunk];
        debug_assert!(c.keys.get(i) != Some(&key), "a block at {key:?}");
        let c = &mut self.chunks[chunk];
        c.keys.insert(i, key);
        c.sizes.insert(i, size);
        self.last[chunk] = *c.keys.last().expect("not empty");
        if c.keys.len() < CHUNK {
            if !self.no_max {
                c.tops.add(size, c.keys.len() - 1);
                self.settle_tops(chunk);
            }
            if self.ranked {
                self.tree.add_count(chunk, 1, true);
            }
            return;
        }
        let half = c.keys.len() / 2;
        let mut upper = Chunk {
            keys: c.keys.split_off(half),
            sizes: c.sizes.split_off(half),
            tops: Tops::default(),
        };
        upper.tops = self.scanned_tops(&upper);
        self.chunks[chunk].tops = self.scanned_tops(&self.chunks[chunk]);
        let halves = [
            (
                self.kept_max(&self.chunks[chunk].tops),
                self.chunks[chunk].keys.len() as u64,
            ),
            (self.kept_max(&upper.tops), upper.keys.len() as u64),
        ];
        self.tree.splice(chunk, chunk + 1, &halves);
        self.last[chunk] = *self.chunks[chunk].keys.last().expect("half");
        self.last
            .insert(chunk + 1, *upper.keys.last().expect("half"));
        self.chunks.insert(chunk + 1, upper);
    }

    /// Where `key` goes in: (chunk, index). The place last found, when the
    /// key goes right before its entry (a freed block that merges with
    /// neither neighbour goes in where the search for them ended), else a
    /// search (past every chunk's last key, the last chunk takes it).
    fn insertion_place(&self, key: u64) -> (usize, usize) {
        let p = self.found.get();
        // (No entry has the key: the first not below it is above it.)
        if self.bound_is_at(p, |&k| k < key) {
            return (p.chunk, p.i);
        }
        let chunk = self
            .last
            .partition_point(|&l| l < key)
            .min(self.chunks.len() - 1);
        (chunk, self.chunks[chunk].keys.partition_point(|&e| e < key))
    }

    /// Removes the block keyed `key`; its size.
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        let p = self.find(key);
        if self.entry(p)?.0 != key {
            return None;
        }
        self.len -= 1;
        let c = &mut self.chunks[p.chunk];
        c.keys.remove(p.i);
        let size = c.sizes.remove(p.i);
        // The block after it, which a merge changes next, is where it was.
        self.found.set(p);
        if self.largest == Some((size, key)) {
            self.largest = None;
        }
        if c.keys.is_empty() {
            self.chunks.remove(p.chunk);
            self.last.remove(p.chunk);
            self.tree.splice(p.chunk, p.chunk + 1, &[]);
            return Some(size);
        }
        if !self.no_max {
            c.tops.remove(size);
            self.settle_tops(p.chunk);
        }
        if self.ranked {
            self.tree.add_count(p.chunk, 1, false);
        }
        let c = &self.chunks[p.chunk];
        self.last[p.chunk] = *c.keys.last().expect("not empty");
        if c.keys.len() < SMALL {
            self.merge_small(p.chunk);
        }
        Some(size)
    }

    /// Joins chunk `k`, grown small, with a neighbour when the two
    /// together fill at most three quarters of a chunk, so that removals
    /// do not leave a trail of near-empty chunks for walks to pass.
    fn merge_small(&mut self, k: usize) {
        let len = |c: &Chunk| c.keys.len();
        let other = if k + 1 < self.chunks.len()
            && len(&self.chunks[k]) + len(&self.chunks[k + 1]) <= CHUNK * 3 / 4
        {
            k + 1
        } else if k > 0 && len(&self.chunks[k - 1]) + len(&self.chunks[k]) <= CHUNK * 3 / 4 {
            k - 1
        } else {
            return;
        };
        let (lo, hi) = (k.min(other), k.max(other));
        let upper = self.chunks.remove(hi);
        self.last.remove(hi);
        let c = &mut self.chunks[lo];
        c.keys.extend_from_slice(&upper.keys);
        c.sizes.extend_from_slice(&upper.sizes);
        self.chunks[lo].tops = self.scanned_tops(&self.chunks[lo]);
        let c = &self.chunks[lo];
        self.last[lo] = *c.keys.last().expect("not empty");
        let joined = (self.kept_max(&c.tops), c.keys.len() as u64);
        self.tree.splice(lo, hi + 1, &[joined]);
    }

    /// The largest block as (size, key): the highest key among equal
    /// sizes.
    pub fn largest(&mut self) -> Option<(u64, u64)> {
        assert!(!self.no_max, "an index without its largest values");
        if self.largest.is_none() && self.len > 0 {
            let (k, max) = self.tree.last_largest();
            let c = &self.chunks[k];
            let i = c.sizes.iter().rposition(|&s| s == max).expect("its max");
            self.found.set(Pos { chunk: k, i });
            self.largest = Some((max, c.keys[i]));
        }
        self.largest
    }

    /// The largest block's size (0 when none): the tree's root, with no
    /// search for the block. The fragmentation figure asks for it after
    /// every operation; [`Chunked::largest`] looked for the block whenever
    /// the one it knew shrank or went, which next fit's rover (often the
    /// heap's largest block, shrunk by every allocation) made a descent of
    /// the tree and a chunk's scan per operation.
    pub fn largest_size(&self) -> u64 {
        assert!(!self.no_max, "an index without its largest values");
        if self.len == 0 { 0 } else { self.tree.max[1] }
    }

    /// How many entries come before `p`.
    fn rank(&self, p: Pos) -> u64 {
        if p.chunk >= self.chunks.len() {
            // The end: everything.
            return self.len as u64;
        }
        // No chunk before the first (next fit's second search starts
        // there): no climb of the tree.
        let before = if p.chunk == 0 {
            0
        } else if self.ranked {
            self.tree.before(p.chunk)
        } else {
            self.chunks[..p.chunk]
                .iter()
                .map(|c| c.keys.len() as u64)
                .sum()
        };
        before + p.i as u64
    }

    /// The first block in `[from, to)` of at least `need` bytes, as
    /// (key, size), and how many blocks come before it in the range (all
    /// of the range's when there is none): chunks with nothing large
    /// enough are skipped by the tree (the ranks are sums of chunk lengths
    /// where the counts are not kept).
    fn first_in(&self, from: Pos, to: Pos, need: u64) -> (Option<(u64, u64)>, u64) {
        assert!(!self.no_max, "an index without its largest values");
        let mut p = from;
        while p < to {
            let c = &self.chunks[p.chunk];
            let stop = if p.chunk == to.chunk {
                to.i
            } else {
                c.keys.len()
            };
            if self.tree.max(p.chunk) >= need
                && let Some(k) = c.sizes[p.i..stop].iter().position(|&s| s >= need)
            {
                let at = Pos {
                    chunk: p.chunk,
                    i: p.i + k,
                };
                self.found.set(at);
                return (self.entry(at), self.rank(at) - self.rank(from));
            }
            // The chunks between hold nothing large enough: the tree finds
            // the next that does, and ranks count what was passed.
            let Some(next) = self.tree.first_at_least(p.chunk + 1, need) else {
                break;
            };
            p = Pos { chunk: next, i: 0 };
        }
        (None, self.rank(to) - self.rank(from))
    }

    /// Every block as (key, size), in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.keys.iter().copied().zip(c.sizes.iter().copied()))
    }

    /// Checks the chunks against their summaries; for tests.
    pub fn check(&self) -> Result<(), String> {
        let mut prev = None;
        let mut n = 0;
        for (k, c) in self.chunks.iter().enumerate() {
            if c.keys.is_empty() || c.keys.len() >= CHUNK || c.keys.len() != c.sizes.len() {
                return Err(format!("chunk {k} holds {} entries", c.keys.len()));
            }
            if self.last[k] != *c.keys.last().expect("not empty") {
                return Err(format!("chunk {k}'s last key is not {:?}", self.last[k]));
            }
            let mut sorted = c.sizes.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let known = usize::from(c.tops.n);
            if !self.no_max && (known == 0 || c.tops.v[..known] != sorted[..known]) {
                return Err(format!(
                    "chunk {k}'s largest sizes are not {:?}",
                    &c.tops.v[..known]
                ));
            }
            let max = self.kept_max(&c.tops);
            let counted = self.tree.count[self.tree.cap + k];
            if self.tree.max(k) != max || (self.ranked && counted != c.keys.len() as u64) {
                return Err(format!(
                    "chunk {k}'s largest size is not {} or its length not {}",
                    self.tree.max(k),
                    counted
                ));
            }
            for &e in &c.keys {
                if prev.is_some_and(|p| p >= e) {
                    return Err(format!("keys out of order at {e:?}"));
                }
                prev = Some(e);
            }
            n += c.keys.len();
        }
        if n != self.len
            || self.last.len() != self.chunks.len()
            || self.tree.len != self.chunks.len()
        {
            return Err(format!("{n} entries counted, {} known", self.len));
        }
        let mut tree = ChunkTree::default();
        tree.rebuild(&self.tree.leaves());
        if self.tree.len > 0
            && (tree.max != self.tree.max || (self.ranked && tree.count != self.tree.count))
        {
            return Err("the chunks' tree is stale".into());
        }
        let truth = self.iter().map(|(e, s)| (s, e)).max();
        if self.largest.is_some() && self.largest != truth {
            return Err(format!("largest known {:?}, it is {truth:?}", self.largest));
        }
        Ok(())
    }

    /// Changes the size of the block ending at `end` (a split took its
    /// front, or it grew backwards over a freed neighbour), or the value
    /// keyed `end`; returns the old one.
    pub fn set_size(&mut self, end: u64, size: u64) -> u64 {
        let p = self.find(end);
        let found = self.chunks.get(p.chunk).and_then(|c| c.keys.get(p.i));
        assert_eq!(found, Some(&end), "no free block ends at {end}");
        let c = &mut self.chunks[p.chunk];
        let old = std::mem::replace(&mut c.sizes[p.i], size);
        if !self.no_max && size != old {
            c.tops.remove(old);
            c.tops.add(size, c.keys.len() - 1);
            self.settle_tops(p.chunk);
        }
        match self.largest {
            Some(l) if (size, end) >= l => self.largest = Some((size, end)),
            Some(l) if l == (old, end) => self.largest = None,
            _ => {}
        }
        old
    }

    /// Is (`at`, `size`) a free block? (Best fit's bins ask, for their
    /// lazily removed entries.)
    pub fn holds(&self, at: u64, size: u64) -> bool {
        self.get(at + size) == Some(size)
    }

    /// The first block ending at or after `key`, and the one after it:
    /// (end, size) each.
    pub fn at_or_after(&self, key: u64) -> [Option<(u64, u64)>; 2] {
        let p = self.lower_bound(key);
        match self.entry(p) {
            None => [None, None],
            Some(_) => [self.found_at(p), self.entry(self.next_pos(p))],
        }
    }

    /// [`Chunked::at_or_after`], and how many blocks end at or below
    /// `key` (heap_4's walk to a freed block's place), from one search.
    pub fn at_or_after_counted(&self, key: u64) -> ([Option<(u64, u64)>; 2], u64) {
        let p = self.lower_bound(key);
        match self.entry(p) {
            None => ([None, None], self.len as u64),
            Some((k, _)) => (
                [self.found_at(p), self.entry(self.next_pos(p))],
                self.rank(p) + u64::from(k == key),
            ),
        }
    }

    /// First fit from the lowest address: the block, and the blocks
    /// passed before it (all of them when none fits).
    pub fn first_fit(&self, need: u64) -> (Option<(u64, u64)>, u64) {
        assert!(!self.no_max, "an index without its largest values");
        if !self.ranked || self.len == 0 {
            return self.first_in(Pos { chunk: 0, i: 0 }, self.end_pos(), need);
        }
        // The first chunk often holds one (a heap that is not fragmented):
        // then the blocks passed are those before it there.
        let (chunk, passed) = if self.tree.max(0) >= need {
            (0, 0)
        } else {
            match self.tree.first_at_least_from_root(need) {
                Some(found) => found,
                None => return (None, self.len as u64),
            }
        };
        let c = &self.chunks[chunk];
        let i = c
            .sizes
            .iter()
            .position(|&s| s >= need)
            .expect("the chunk holds one");
        let at = Pos { chunk, i };
        self.found.set(at);
        (self.entry(at), passed + i as u64)
    }

    /// Next fit from `rover`: the blocks beginning at or after it, then
    /// those ending at or before it, then a block spanning it (one merged
    /// across it since); the block, and the blocks looked at before it.
    pub fn next_fit(&self, rover: u64, need: u64) -> (Option<(u64, u64)>, u64) {
        let (found, looked) = self.next_fit_from(self.upper_bound_near(rover), rover, need);
        if found.is_some() {
            self.rover_hint.set(self.found.get());
        }
        (found, looked)
    }

    /// The first entry whose key is above `key`, when it is at the rover
    /// hint (no search), or by a search.
    fn upper_bound_near(&self, key: u64) -> Pos {
        let p = self.rover_hint.get();
        if self.bound_is_at(p, |&k| k <= key) {
            return p;
        }
        self.upper_bound(key)
    }

    /// [`Chunked::next_fit`] with `split`, the first entry above `rover`.
    fn next_fit_from(&self, split: Pos, rover: u64, need: u64) -> (Option<(u64, u64)>, u64) {
        let spanning = self.entry(split).filter(|&(e, s)| e - s < rover);
        let after = if spanning.is_some() {
            self.next_pos(split)
        } else {
            split
        };
        let (found, a) = self.first_in(after, self.end_pos(), need);
        if found.is_some() {
            return (found, a);
        }
        let (found, b) = self.first_in(Pos { chunk: 0, i: 0 }, split, need);
        if found.is_some() {
            return (found, a + b);
        }
        match spanning {
            Some(e) if e.1 >= need => {
                self.found.set(split);
                (Some(e), a + b)
            }
            Some(_) => (None, a + b + 1),
            None => (None, a + b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What the walks must give, from a plain ordered map.
    fn first_fit(map: &BTreeMap<u64, u64>, need: u64) -> (Option<(u64, u64)>, u64) {
        let mut passed = 0;
        for (&e, &s) in map {
            if s >= need {
                return (Some((e, s)), passed);
            }
            passed += 1;
        }
        (None, passed)
    }

    fn next_fit(map: &BTreeMap<u64, u64>, rover: u64, need: u64) -> (Option<(u64, u64)>, u64) {
        let mut from_rover = map.range(rover + 1..).peekable();
        let spanning = from_rover
            .next_if(|&(&end, &size)| end - size < rover)
            .map(|(&e, &s)| (e, s));
        let mut looked = 0;
        for (e, s) in from_rover
            .map(|(&e, &s)| (e, s))
            .chain(map.range(..=rover).map(|(&e, &s)| (e, s)))
            .chain(spanning)
        {
            if s >= need {
                return (Some((e, s)), looked);
            }
            looked += 1;
        }
        (None, looked)
    }

    /// Chunks split as blocks come, merge and go as they leave, and the
    /// answers stay those of an ordered map throughout.
    #[test]
    fn chunks_split_merge_and_go() {
        for ranked in [false, true] {
            let mut ours = if ranked {
                FreeBlocks::ranked()
            } else {
                FreeBlocks::default()
            };
            let mut map = BTreeMap::new();
            let agree = |ours: &mut FreeBlocks, map: &BTreeMap<u64, u64>| {
                ours.check().unwrap();
                assert!(ours.iter().eq(map.iter().map(|(&e, &s)| (e, s))));
                assert_eq!(ours.first_fit(7), first_fit(map, 7));
                assert_eq!(ours.largest(), map.iter().map(|(&e, &s)| (s, e)).max());
            };
            for k in 1..=1000u64 {
                ours.insert(16 * k, 1 + k % 8);
                map.insert(16 * k, 1 + k % 8);
                agree(&mut ours, &map);
            }
            let most = ours.chunks.len();
            assert!(most >= 1000 / CHUNK, "{most} chunks");
            // Remove all but every 50th block, from the top down and from
            // the bottom up: chunks shrink, merge and disappear.
            let mut fewer = 0;
            let order: Vec<u64> = (1..=500).rev().chain(501..=1000).collect();
            for k in order.into_iter().filter(|k| k % 50 != 0) {
                let before = ours.chunks.len();
                assert_eq!(ours.remove(16 * k), map.remove(&(16 * k)));
                fewer += usize::from(ours.chunks.len() < before);
                agree(&mut ours, &map);
            }
            assert!(
                ours.chunks.len() == 1 && fewer >= most - 1,
                "{fewer} of {most}"
            );
            for k in (50..=1000).step_by(50) {
                assert_eq!(ours.remove(16 * k), map.remove(&(16 * k)));
                agree(&mut ours, &map);
            }
            assert_eq!((ours.len(), ours.chunks.len()), (0, 0));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random inserts, removals and size changes of disjoint blocks
        /// (many, so that chunks split and merge): every question gets the
        /// answer a walk of an ordered map gives.
        #[test]
        fn answers_as_a_walk_of_an_ordered_map(
            ops in proptest::collection::vec((0u8..4, 0u64..400, 1u64..8, 1u64..16), 1..1500),
            ranked in any::<bool>(),
        ) {
            let mut ours = if ranked { FreeBlocks::ranked() } else { FreeBlocks::default() };
            let mut map: BTreeMap<u64, u64> = BTreeMap::new();
            let n = ops.len();
            for (k, (op, slot, size, need)) in ops.into_iter().enumerate() {
                // The second half mostly removes: chunks empty and merge.
                let op = if 2 * k >= n && op < 2 { 2 } else { op };
                // Slot k holds a block ending at 8k + 8 of at most 8 bytes:
                // blocks never overlap.
                let end = slot * 8 + 8;
                match op {
                    0 | 1 => {
                        if let std::collections::btree_map::Entry::Vacant(v) = map.entry(end) {
                            v.insert(size);
                            ours.insert(end, size);
                        }
                    }
                    2 => prop_assert_eq!(ours.remove(end), map.remove(&end)),
                    _ => {
                        if let Some(s) = map.get_mut(&end) {
                            prop_assert_eq!(ours.set_size(end, size), *s);
                            *s = size;
                        }
                    }
                }
                prop_assert!(ours.check().is_ok(), "{:?}", ours.check());
                prop_assert_eq!(ours.len(), map.len());
                prop_assert_eq!(ours.first_fit(need), first_fit(&map, need));
                let rover = slot * 8 + need % 9;
                prop_assert_eq!(ours.next_fit(rover, need), next_fit(&map, rover, need));
                let mut after = map.range(end..).map(|(&e, &s)| (e, s));
                let after = [after.next(), after.next()];
                prop_assert_eq!(ours.at_or_after(end), after);
                let counted = map.range(..=end).count() as u64;
                prop_assert_eq!(ours.at_or_after_counted(end), (after, counted));
                let largest = map.iter().map(|(&e, &s)| (s, e)).max();
                prop_assert_eq!(ours.largest_size(), largest.map_or(0, |l| l.0));
                prop_assert_eq!(ours.largest(), largest);
            }
            prop_assert!(ours.iter().eq(map.iter().map(|(&e, &s)| (e, s))));
        }
    }
}
