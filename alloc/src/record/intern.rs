//! Interning: call stacks into a global trie of frames, and strings, each
//! with ids the writer emits as `FRAME` and `STRING` records.
//!
//! A stack is a path in the trie from the root (the outermost frame) to a
//! leaf (the innermost), so stacks that share callers share nodes and a
//! stack is identified by one id. Each thread keeps a small direct-mapped
//! cache from a stack's hash to its leaf id, so a repeated stack costs one
//! hash and one compare; only a miss takes the global lock and walks the
//! trie.
//!
//! Storage comes from `os::map`, never from the heap being recorded: node
//! and string arrays grow in chunks that never move (the writer reads them
//! without the lock, up to the published count), and the lookup tables
//! grow by rehashing under the lock.

use crate::lock::SpinLock;
use crate::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Nodes (or strings) per chunk.
const CHUNK: usize = 1 << 16;
/// Most chunks: 2^28 nodes at most.
const MAX_CHUNKS: usize = 4096;

/// A trie node: the stack `parent` plus one inner frame at `address`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Node {
    /// Parent id (0: the root).
    pub parent: u64,
    /// Return address of the frame this node adds.
    pub address: u64,
}

/// An append-only array in fixed chunks that never move.
struct Chunked<T: Copy> {
    chunks: [AtomicPtr<T>; MAX_CHUNKS],
    /// Elements published (readable without the lock).
    len: AtomicU64,
}

impl<T: Copy> Chunked<T> {
    const fn new() -> Self {
        Chunked {
            chunks: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS],
            len: AtomicU64::new(0),
        }
    }

    /// Appends (caller holds the owner's lock); false when out of memory.
    fn push(&self, value: T) -> bool {
        let i = self.len.load(Ordering::Relaxed) as usize;
        let (c, o) = (i / CHUNK, i % CHUNK);
        if c >= MAX_CHUNKS {
            return false;
        }
        let mut chunk = self.chunks[c].load(Ordering::Relaxed);
        if chunk.is_null() {
            chunk = os::map(CHUNK * core::mem::size_of::<T>()) as *mut T;
            if chunk.is_null() {
                return false;
            }
            self.chunks[c].store(chunk, Ordering::Release);
        }
        // SAFETY: `o < CHUNK`, inside the chunk's mapping; the slot is not
        // yet published, so nobody reads it.
        unsafe { chunk.add(o).write(value) };
        self.len.store(i as u64 + 1, Ordering::Release);
        true
    }

    /// Element `i` (must be below `len()`).
    fn get(&self, i: usize) -> T {
        let chunk = self.chunks[i / CHUNK].load(Ordering::Acquire);
        // SAFETY: `i < len`, so its chunk exists and the slot was written
        // before `len` was published.
        unsafe { *chunk.add(i % CHUNK) }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire) as usize
    }
}

/// An open-addressing table of ids keyed by whatever `key_of(id)` returns.
struct IdTable {
    slots: *mut u64,
    capacity: usize,
    used: usize,
}

// SAFETY: only used under its owner's lock.
unsafe impl Send for IdTable {}

impl IdTable {
    const fn new() -> Self {
        IdTable {
            slots: ptr::null_mut(),
            capacity: 0,
            used: 0,
        }
    }

    /// Finds the id whose key matches, or the empty slot where it belongs.
    fn probe(&self, hash: u64, is_match: impl Fn(u64) -> bool) -> (usize, u64) {
        let mask = self.capacity - 1;
        let mut i = hash as usize & mask;
        loop {
            // SAFETY: `i <= mask < capacity` slots mapped.
            let id = unsafe { *self.slots.add(i) };
            if id == 0 || is_match(id) {
                return (i, id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Makes room for one more entry, rehashing with `hash_of(id)`.
    fn reserve(&mut self, hash_of: impl Fn(u64) -> u64) -> bool {
        if self.capacity != 0 && (self.used + 1) * 2 <= self.capacity {
            return true;
        }
        let new_cap = (self.capacity * 2).max(1 << 14);
        let slots = os::map(new_cap * 8) as *mut u64;
        if slots.is_null() {
            return false;
        }
        let old = (self.slots, self.capacity);
        self.slots = slots;
        self.capacity = new_cap;
        for i in 0..old.1 {
            // SAFETY: `i < old capacity`, inside the old mapping.
            let id = unsafe { *old.0.add(i) };
            if id != 0 {
                let (slot, _) = self.probe(hash_of(id), |_| false);
                // SAFETY: `slot < capacity`.
                unsafe { *self.slots.add(slot) = id };
            }
        }
        if !old.0.is_null() {
            // SAFETY: the old table is no longer referenced.
            unsafe { os::unmap_internal(old.0 as *mut u8, old.1 * 8) };
        }
        true
    }

    fn insert_at(&mut self, slot: usize, id: u64) {
        // SAFETY: `slot` came from `probe` on the current table.
        unsafe { *self.slots.add(slot) = id };
        self.used += 1;
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let x = (a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}

// ----------------------------------------------------------------------
// Frames
// ----------------------------------------------------------------------

static NODES: Chunked<Node> = Chunked::new();
static FRAME_TABLE: SpinLock<IdTable> = SpinLock::new(IdTable::new());

/// The frame table's lock, for the fork handlers.
pub fn frame_lock() -> &'static SpinLock<impl Sized> {
    &FRAME_TABLE
}

fn node(id: u64) -> Node {
    NODES.get(id as usize - 1)
}

fn node_hash(n: Node) -> u64 {
    mix(n.parent, n.address)
}

/// Number of frame nodes defined so far (ids are 1 to this).
pub fn frame_count() -> u64 {
    NODES.len() as u64
}

/// Node `id` (1-based, at most `frame_count()`).
pub fn frame(id: u64) -> Node {
    node(id)
}

/// Returns the id of the stack `frames` (innermost first), inserting the
/// nodes it lacks; 0 when out of memory.
pub fn intern_stack(frames: &[u64]) -> u64 {
    let mut table = FRAME_TABLE.lock();
    let mut id = 0u64;
    for &address in frames.iter().rev() {
        let key = Node {
            parent: id,
            address,
        };
        if !table.reserve(|i| node_hash(node(i))) {
            return 0;
        }
        let (slot, found) = table.probe(node_hash(key), |i| node(i) == key);
        id = if found != 0 {
            found
        } else {
            if !NODES.push(key) {
                return 0;
            }
            let new_id = NODES.len() as u64;
            table.insert_at(slot, new_id);
            new_id
        };
    }
    id
}

/// Hash of a whole stack, for the per-thread cache.
#[inline]
pub fn stack_hash(frames: &[u64]) -> u64 {
    let mut h = frames.len() as u64;
    for &f in frames {
        h = mix(h, f);
    }
    h | 1
}

/// A per-thread cache from stack hash to leaf id.
#[repr(C)]
pub struct StackCache {
    entries: [(AtomicU64, AtomicU64); CACHE_ENTRIES],
}

/// Entries in a thread's stack cache.
pub const CACHE_ENTRIES: usize = 4096;

impl StackCache {
    /// Returns the id of `frames`, from the cache or by interning.
    #[inline]
    pub fn lookup(&self, frames: &[u64]) -> u64 {
        if frames.is_empty() {
            return 0;
        }
        let h = stack_hash(frames);
        let e = &self.entries[(h >> 20) as usize % CACHE_ENTRIES];
        if e.0.load(Ordering::Relaxed) == h {
            return e.1.load(Ordering::Relaxed);
        }
        let id = intern_stack(frames);
        if id != 0 {
            e.0.store(h, Ordering::Relaxed);
            e.1.store(id, Ordering::Relaxed);
        }
        id
    }
}

// ----------------------------------------------------------------------
// Strings
// ----------------------------------------------------------------------

/// Longest interned string; longer ones are cut.
pub const MAX_STRING: usize = 255;

/// A stored string: length and bytes.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct StoredString {
    /// Length in bytes.
    pub len: u8,
    /// The bytes (the first `len` are meaningful).
    pub bytes: [u8; MAX_STRING],
}

static STRINGS: Chunked<StoredString> = Chunked::new();
static STRING_TABLE: SpinLock<IdTable> = SpinLock::new(IdTable::new());

/// The string table's lock, for the fork handlers.
pub fn string_lock() -> &'static SpinLock<impl Sized> {
    &STRING_TABLE
}

fn string_hash(s: &[u8]) -> u64 {
    let mut h = s.len() as u64;
    for chunk in s.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(w));
    }
    h
}

/// String `id` (1-based, at most `string_count()`).
pub fn string(id: u64) -> StoredString {
    STRINGS.get(id as usize - 1)
}

/// Number of strings interned so far.
pub fn string_count() -> u64 {
    STRINGS.len() as u64
}

/// Interns `s` (cut to [`MAX_STRING`] bytes); 0 when out of memory.
pub fn intern_string(s: &[u8]) -> u64 {
    let s = &s[..s.len().min(MAX_STRING)];
    let mut table = STRING_TABLE.lock();
    let bytes_of = |id: u64| {
        let st = string(id);
        (st.len, st.bytes)
    };
    if !table.reserve(|i| {
        let (len, b) = bytes_of(i);
        string_hash(&b[..len as usize])
    }) {
        return 0;
    }
    let (slot, found) = table.probe(string_hash(s), |i| {
        let (len, b) = bytes_of(i);
        &b[..len as usize] == s
    });
    if found != 0 {
        return found;
    }
    let mut stored = StoredString {
        len: s.len() as u8,
        bytes: [0; MAX_STRING],
    };
    stored.bytes[..s.len()].copy_from_slice(s);
    if !STRINGS.push(stored) {
        return 0;
    }
    let id = STRINGS.len() as u64;
    table.insert_at(slot, id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_share_prefixes_and_intern_once() {
        let a = intern_stack(&[0x30, 0x20, 0x10]);
        let b = intern_stack(&[0x31, 0x20, 0x10]);
        let a2 = intern_stack(&[0x30, 0x20, 0x10]);
        assert_eq!(a, a2);
        assert_ne!(a, b);
        // Walk both back to the root: they share the two outer nodes.
        let na = frame(a);
        let nb = frame(b);
        assert_eq!(na.parent, nb.parent);
        assert_eq!((na.address, nb.address), (0x30, 0x31));
        let mid = frame(na.parent);
        assert_eq!(mid.address, 0x20);
        assert_eq!(
            frame(mid.parent),
            Node {
                parent: 0,
                address: 0x10
            }
        );
    }

    #[test]
    fn many_stacks_survive_rehashing() {
        let ids: Vec<u64> = (0..50_000u64)
            .map(|i| intern_stack(&[i + 1000, 7, 8]))
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(intern_stack(&[i as u64 + 1000, 7, 8]), id);
            assert_eq!(frame(id).address, i as u64 + 1000);
        }
    }

    #[test]
    fn strings_intern_once() {
        let a = intern_string(b"phase one");
        let b = intern_string(b"phase two");
        assert_ne!(a, b);
        assert_eq!(intern_string(b"phase one"), a);
        let s = string(b);
        assert_eq!(&s.bytes[..s.len as usize], b"phase two");
        let long = [b'x'; 400];
        let l = intern_string(&long);
        assert_eq!(string(l).len as usize, MAX_STRING);
    }
}
