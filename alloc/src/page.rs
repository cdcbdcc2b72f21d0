//! Pages: a run of equal-sized blocks and the three free lists that shard it.
//!
//! A page belongs to one heap (through its segment) and serves one size class.
//! Its blocks are handed out from `free`; blocks freed by the owning thread go
//! to `local_free`, blocks freed by other threads to the atomic `thread_free`
//! list. The owner merges the latter two into `free` only when `free` runs dry,
//! so the fast paths touch one plain list each and never an atomic
//! read-modify-write (the sharding idea of mimalloc).
//!
//! Accounting invariant (checked by `validate.rs`):
//! `used + |free| + |local_free| == capacity <= reserved`, where `used` counts
//! blocks handed out and not yet returned to `free` or `local_free`: blocks
//! freed by other threads and waiting in `thread_free` (or on the heap's
//! `delayed` list) still count as used until the owner collects them.
//!
//! Freed-block tags: a free block's second word holds its tag, the address
//! of its page's metadata (this `Page`, in the segment header); handing the
//! block out clears it. Every free reads the tag first, so freeing a block
//! that is already free (twice by one thread, or split between the owner
//! and other threads in any order) is caught at the call and never reaches
//! a free list, where it would corrupt the links. The check costs a load
//! and a store in a word the fast paths touch anyway (the block's own cache
//! line): a liveness bitmap was tried first and cost 16% on the workload
//! harness, one more cache line per call. It is exact except in two cases
//! it cannot see: a program that writes into a block after freeing it,
//! over the tag, and then frees it again; and two threads freeing one
//! block at the same instant. A program storing exactly that value in the
//! second word of a live block would be reported falsely; a program never
//! holds the address of our metadata, which lies outside every block, so
//! it can only store it by copying it out of a freed block. The free fast
//! path has the page's address in a register already, so the tag costs no
//! instruction to compute (three times the block's address, the tag until
//! 2026-12-02, cost a `lea` on every free and two additions per block
//! carved), and carving writes the same tag into every block. The tag is
//! why the smallest block is 16 bytes (class 0 is unused).
//!
//! Full pages: a page with no free block leaves its size-class queue for the
//! heap's full list, so the allocation slow path never scans it. To learn when
//! another thread frees into it, the owner arms the `NOTIFY` bit of
//! `thread_free`; the first remote free that sees the bit clears it and pushes
//! its block onto the heap's `delayed` list instead, which the owner drains in
//! its slow path, moving the page back to its queue. Because the block rather
//! than the page is queued, no page can be released while it is still queued.

use crate::size_class::{divisibility_magic, is_multiple};
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// A free block: its first word links to the next free block, its second
/// holds its freed tag.
#[repr(C)]
pub struct Block {
    /// Next free block in the same list, or null.
    pub next: *mut Block,
    /// The address of the block's page while the block is free
    /// ([`freed_tag`]); cleared when it is handed out.
    pub tag: u64,
}

/// Whether the always-on checks (freed tags, Rust layouts) are compiled in.
/// Only `--cfg memtally_unchecked` turns them off: alloc-bench builds its
/// `unchecked` worker so, to measure what the checks cost against the same
/// code without them. Never for use: a double free then corrupts a list.
pub const CHECKED: bool = !cfg!(memtally_unchecked);

/// The tag of a free block of `page`: the page's own address.
#[inline(always)]
pub fn freed_tag(page: &Page) -> u64 {
    page as *const Page as u64
}

/// Is the block at `b` (a carved block start of `page`) free? Reads its tag
/// word.
///
/// # Safety
/// `b` must be a block start of `page`, in use, below its capacity.
#[inline(always)]
pub unsafe fn is_freed(page: &Page, b: *const Block) -> bool {
    // SAFETY: guaranteed by the caller: the block's two words are mapped.
    CHECKED && unsafe { (*b).tag == freed_tag(page) }
}

/// Tags the block at `b` of `page` as free.
///
/// # Safety
/// As [`is_freed`], and the block must be the caller's to write.
#[inline(always)]
pub unsafe fn tag_freed(page: &Page, b: *mut Block) {
    if CHECKED {
        // SAFETY: guaranteed by the caller.
        unsafe { (*b).tag = freed_tag(page) };
    }
}

/// Clears the tag of a block being handed out.
///
/// # Safety
/// `b` must be a block just taken off a free list.
#[inline(always)]
pub unsafe fn untag(b: *mut Block) {
    if CHECKED {
        // SAFETY: guaranteed by the caller.
        unsafe { (*b).tag = 0 };
    }
}

/// The smallest size a Rust `dealloc` with an alignment up to a word may
/// name for a block of `block` bytes (a word multiple): the sizes that fit
/// are `min..=block`, those whose request, rounded to a word and to the
/// two-word minimum, is at most the block and at least half of it (the
/// rule of `api::layout_fits`, which a test checks this against). Blocks
/// under two words never take the fast path that asks; they get
/// `usize::MAX`, which no layout's size reaches.
pub const fn word_dealloc_min(block: usize) -> usize {
    const WORD: usize = crate::size_class::WORD;
    if block < 2 * WORD {
        return usize::MAX;
    }
    // Up to four words, the two-word minimum makes every request large
    // enough; above, the rounded request must reach half the block.
    if block <= 4 * WORD {
        0
    } else {
        block.div_ceil(2).next_multiple_of(WORD) - (WORD - 1)
    }
}

/// `flags`: the page sits in the heap's full list, not in its class queue.
pub const IN_FULL: u8 = 1;
/// `flags`: every block in `free` reads as zero apart from its link word.
pub const FREE_IS_ZERO: u8 = 2;
/// `flags`: the page's memory was all zero when the page was set up, so blocks
/// carved from it by [`Page::extend`] are zero apart from their link word.
pub const ZERO_INIT: u8 = 4;
/// `flags`: some block of this page was handed out at an interior, over-aligned
/// address, so frees of interior pointers must be rounded to the block start.
pub const HAS_ALIGNED: u8 = 8;

/// `flags`: every block of this page is a sampled allocation (sampled
/// recording); its frees always take the slow path, which records them.
pub const SAMPLED: u8 = 16;
/// `flags`: the page's blocks come from C++ `operator new`.
pub const NEW: u8 = 32;
/// `flags`: the page's blocks come from C++ `operator new[]`.
pub const NEW_ARRAY: u8 = 64;

/// Which allocation family a page serves: its blocks must be released by
/// the matching call (`free`, `delete`, `delete[]`), which is how a
/// mismatch is told without any per-block metadata. Sampled pages serve
/// sampled blocks of any family (their frees are not checked for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Lane {
    /// `malloc` and friends, Rust's allocator.
    Malloc = 0,
    /// Sampled allocations (sampled recording).
    Sampled = 1,
    /// `operator new`.
    New = 2,
    /// `operator new[]`.
    NewArray = 3,
}

/// Number of lanes.
pub const LANES: usize = 4;

impl Lane {
    /// Every lane, in index order.
    pub const ALL: [Lane; LANES] = [Lane::Malloc, Lane::Sampled, Lane::New, Lane::NewArray];

    /// The page flag marking the lane (none for malloc).
    pub fn flag(self) -> u8 {
        match self {
            Lane::Malloc => 0,
            Lane::Sampled => SAMPLED,
            Lane::New => NEW,
            Lane::NewArray => NEW_ARRAY,
        }
    }

    /// The call that allocates in it, for messages.
    pub fn allocator(self) -> &'static str {
        match self {
            Lane::Malloc | Lane::Sampled => "malloc",
            Lane::New => "new",
            Lane::NewArray => "new[]",
        }
    }
}

/// Which family of call frees a block: the index of the page's fast-free
/// bound it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Family {
    /// `free`, `realloc`, Rust's `dealloc`.
    Free = 0,
    /// `operator delete`.
    Delete = 1,
    /// `operator delete[]`.
    DeleteArray = 2,
}

impl Family {
    /// The lane whose blocks this family may free.
    pub fn lane(self) -> Lane {
        match self {
            Family::Free => Lane::Malloc,
            Family::Delete => Lane::New,
            Family::DeleteArray => Lane::NewArray,
        }
    }
}

/// Low bit of `thread_free`: the owner wants to hear about the next remote
/// free (the page is in the full list). Set only while the list is empty.
pub const NOTIFY: usize = 1;

/// Upper bound on the bytes carved from a page per extension: keeps a fresh
/// page from being touched (and made resident) all at once.
const EXTEND_BYTES: usize = 4096;

/// Page metadata, stored in the segment header. Hot fields for the fast paths
/// come first so that a malloc or free touches one cache line of metadata.
///
/// Fields are `Cell`s so that the owner can update its own fields through a
/// shared reference while other threads read the fields that are fixed for
/// the page's lifetime (`block_start`, `block_size`, `reserved`, `magic`,
/// `class`) and push onto `thread_free`. Which thread may write which field
/// is stated on each field; the protocol, not the type, keeps them apart.
#[repr(C)]
pub struct Page {
    /// Blocks ready to hand out (owner only).
    pub free: Cell<*mut Block>,
    /// Blocks handed out and not yet back in `free` or `local_free` (owner only).
    pub used: Cell<u32>,
    /// Blocks carved out of the page so far; `capacity <= reserved` (owner only).
    pub capacity: Cell<u32>,
    /// Address of the first block (fixed while in use).
    pub block_start: Cell<*mut u8>,
    /// Pointers at offsets from `block_start` below this bound may be freed on
    /// the fast path: `capacity * block_size` (the blocks carved so far, all
    /// tagged when free) while the page is in its class queue, 0 while it is unused, in the full list (so that frees into it
    /// take the slow path, which moves it back) or holds sampled blocks.
    /// Owner only.
    pub free_limit: Cell<u32>,
    /// Number of blocks that fit in the page (fixed while in use; 0 iff unused).
    pub reserved: Cell<u32>,
    /// Lemire divisibility multiplier for `block_size` (fixed while in use).
    pub magic: Cell<u64>,
    /// Blocks freed by the owner since `free` was last refilled (owner only).
    pub local_free: Cell<*mut Block>,
    /// Size of each block in bytes; for huge pages, the usable size (fixed
    /// while in use).
    pub block_size: Cell<usize>,
    /// The smallest size a Rust `dealloc` of alignment up to a word may name
    /// for a block of the page, whose sizes that fit are
    /// `dealloc_min..=block_size` (see [`word_dealloc_min`]; fixed while in
    /// use).
    pub dealloc_min: Cell<usize>,
    /// `block_size - dealloc_min`, or 0: the free fast path checks a
    /// layout's size with one subtraction and one comparison, both with
    /// the page's fields in memory.
    pub dealloc_span: Cell<usize>,
    /// Blocks freed by other threads: a lock-free stack, low bit [`NOTIFY`].
    pub thread_free: AtomicUsize,
    /// Links in the heap's class queue or full list (owner only).
    pub next: Cell<*mut Page>,
    /// See `next`.
    pub prev: Cell<*mut Page>,
    /// Size class of the blocks (fixed while in use).
    pub class: Cell<u8>,
    /// Index of this page in its segment (fixed for the segment's lifetime).
    pub slot: Cell<u8>,
    /// [`IN_FULL`], [`FREE_IS_ZERO`], [`ZERO_INIT`], [`HAS_ALIGNED`],
    /// [`SAMPLED`]. Written
    /// by the owner only, with plain loads and stores; atomic because freeing
    /// threads read [`HAS_ALIGNED`] while the owner updates the other bits.
    pub flags: AtomicU8,
    /// Housekeeping round in which the page was last seen as an empty queue
    /// head (see `Heap::page_retire`).
    pub retire_tick: Cell<u32>,
    /// The bound of `free_limit` for `operator delete` and `delete[]`
    /// frees (after the hot fields: C++ deletes are the rarer family).
    /// Each of the three is open only on pages of its own lane, so a fast
    /// free by the wrong family finds 0 and takes the slow path, which
    /// reports it.
    pub delete_limit: [Cell<u32>; 2],
}

impl Page {
    /// A page with no blocks; used for unused slots and for the static empty
    /// page that new threads start with.
    pub const fn empty() -> Page {
        Page {
            free: Cell::new(ptr::null_mut()),
            used: Cell::new(0),
            capacity: Cell::new(0),
            block_start: Cell::new(ptr::null_mut()),
            free_limit: Cell::new(0),
            reserved: Cell::new(0),
            magic: Cell::new(0),
            local_free: Cell::new(ptr::null_mut()),
            block_size: Cell::new(0),
            dealloc_min: Cell::new(usize::MAX),
            dealloc_span: Cell::new(0),
            thread_free: AtomicUsize::new(0),
            next: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            class: Cell::new(0),
            slot: Cell::new(0),
            flags: AtomicU8::new(0),
            retire_tick: Cell::new(0),
            delete_limit: [Cell::new(0), Cell::new(0)],
        }
    }

    /// Sets up an unused page slot to serve `block_size`-byte blocks of class
    /// `class` from `[start, start + area)`. `zero` says the area reads as zero.
    pub fn init(&self, class: usize, block_size: usize, start: *mut u8, area: usize, zero: bool) {
        debug_assert!(self.used.get() == 0 && !self.in_use());
        let reserved = area / block_size;
        debug_assert!(reserved >= 1 && reserved <= u32::MAX as usize);
        self.free.set(ptr::null_mut());
        self.used.set(0);
        self.capacity.set(0);
        self.block_start.set(start);
        self.reserved.set(reserved as u32);
        self.close_fast_free();
        self.magic.set(divisibility_magic(block_size));
        self.local_free.set(ptr::null_mut());
        self.block_size.set(block_size);
        let min = word_dealloc_min(block_size);
        self.dealloc_min.set(min);
        // (0 for blocks under two words, whose `min` no size reaches.)
        self.dealloc_span.set(block_size.saturating_sub(min));
        self.thread_free.store(0, Ordering::Relaxed);
        self.next.set(ptr::null_mut());
        self.prev.set(ptr::null_mut());
        self.class.set(class as u8);
        self.flags
            .store(if zero { ZERO_INIT } else { 0 }, Ordering::Relaxed);
        self.retire_tick.set(0);
    }

    fn limit_for(blocks: usize, block_size: usize) -> u32 {
        (blocks * block_size).min(u32::MAX as usize) as u32
    }

    /// Re-enables fast-path frees (after the page leaves the full list) by
    /// the page's own family, except on sampled pages, whose frees are
    /// always recorded.
    pub fn open_fast_free(&self) {
        let limit = Self::limit_for(self.capacity.get() as usize, self.block_size.get());
        match self.lane() {
            Lane::Sampled => {}
            Lane::Malloc => self.free_limit.set(limit),
            Lane::New => self.delete_limit[0].set(limit),
            Lane::NewArray => self.delete_limit[1].set(limit),
        }
    }

    /// Closes every fast-free path (a full page, an unused one).
    pub fn close_fast_free(&self) {
        self.free_limit.set(0);
        self.delete_limit[0].set(0);
        self.delete_limit[1].set(0);
    }

    /// The fast-free bound of `family`.
    #[inline(always)]
    pub fn limit(&self, family: Family) -> u32 {
        match family {
            Family::Free => self.free_limit.get(),
            Family::Delete => self.delete_limit[0].get(),
            Family::DeleteArray => self.delete_limit[1].get(),
        }
    }

    /// The page's lane, from its flags.
    pub fn lane(&self) -> Lane {
        let f = self.flags.load(Ordering::Relaxed);
        if f & SAMPLED != 0 {
            Lane::Sampled
        } else if f & NEW != 0 {
            Lane::New
        } else if f & NEW_ARRAY != 0 {
            Lane::NewArray
        } else {
            Lane::Malloc
        }
    }

    /// May a free by `family` release this page's blocks with no more
    /// ado? The page is not sampled (whose frees are events) and serves
    /// `malloc` or the family's own lane (`family_fits` in api.rs says the
    /// rest). Two flag tests, for the free of another thread's block.
    #[inline(always)]
    pub fn plain_lane_for(&self, family: Family) -> bool {
        let f = self.flags.load(Ordering::Relaxed) & (SAMPLED | NEW | NEW_ARRAY);
        f == 0 || f == family.lane().flag()
    }

    /// Makes this (freshly set up) page serve `lane`.
    pub fn mark_lane(&self, lane: Lane) {
        if lane != Lane::Malloc {
            self.set_flag(lane.flag(), true);
        }
        self.close_fast_free();
    }

    /// Returns the slot to the unused state.
    pub fn clear(&self) {
        self.free.set(ptr::null_mut());
        self.used.set(0);
        self.capacity.set(0);
        self.block_start.set(ptr::null_mut());
        self.close_fast_free();
        self.reserved.set(0);
        self.magic.set(0);
        self.local_free.set(ptr::null_mut());
        self.block_size.set(0);
        self.thread_free.store(0, Ordering::Relaxed);
        self.next.set(ptr::null_mut());
        self.prev.set(ptr::null_mut());
        self.flags.store(0, Ordering::Relaxed);
    }

    /// Is the slot serving blocks?
    #[inline]
    pub fn in_use(&self) -> bool {
        self.reserved.get() != 0
    }

    /// Has the flag bit `flag` set?
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    /// Sets or clears the flag bit `flag`.
    #[inline]
    pub fn set_flag(&self, flag: u8, on: bool) {
        let f = self.flags.load(Ordering::Relaxed);
        self.flags
            .store(if on { f | flag } else { f & !flag }, Ordering::Relaxed);
    }

    /// Size class of the page.
    #[inline]
    pub fn class(&self) -> usize {
        self.class.get() as usize
    }

    /// Bytes covered by the page's blocks.
    #[inline]
    fn area(&self) -> usize {
        self.reserved.get() as usize * self.block_size.get()
    }

    /// Does `p` point at the start of one of this page's blocks (in use or
    /// not)? Valid for small, medium and large pages (areas below 4 GiB).
    #[inline]
    pub fn is_block_start(&self, p: *mut u8) -> bool {
        let off = (p as usize).wrapping_sub(self.block_start.get() as usize);
        off < self.area() && is_multiple(off as u64, self.magic.get())
    }

    /// Has the block starting at `p` (a block start) been carved out, so
    /// that it carries a tag when free?
    #[inline]
    pub fn is_carved(&self, p: *mut u8) -> bool {
        let off = (p as usize).wrapping_sub(self.block_start.get() as usize);
        off < self.capacity.get() as usize * self.block_size.get()
    }

    /// Returns the start of the block containing `p`, or null when `p` is
    /// outside the page's blocks.
    pub fn block_containing(&self, p: *mut u8) -> *mut u8 {
        let off = (p as usize).wrapping_sub(self.block_start.get() as usize);
        if off >= self.area() {
            return ptr::null_mut();
        }
        let start = off - off % self.block_size.get();
        self.block_start.get().wrapping_add(start)
    }

    /// Carves more blocks out of the unused end of the page into `free`, which
    /// must be empty. Returns false when the page has no room left.
    #[inline(always)]
    pub fn extend(&self) -> bool {
        debug_assert!(self.free.get().is_null());
        let capacity = self.capacity.get() as usize;
        let remaining = self.reserved.get() as usize - capacity;
        if remaining == 0 {
            return false;
        }
        let bsize = self.block_size.get();
        let n = (EXTEND_BYTES / bsize).clamp(1, remaining);
        // SAFETY: blocks capacity..capacity+n lie inside the page's area
        // (capacity + n <= reserved) and have never been handed out, so
        // writing their link and tag words cannot clobber live data.
        unsafe {
            let first = self.block_start.get().add(capacity * bsize);
            let mut b = first;
            for _ in 1..n {
                let next = b.add(bsize);
                (*(b as *mut Block)).next = next as *mut Block;
                tag_freed(self, b as *mut Block);
                b = next;
            }
            (*(b as *mut Block)).next = ptr::null_mut();
            tag_freed(self, b as *mut Block);
            self.free.set(first as *mut Block);
        }
        self.capacity.set((capacity + n) as u32);
        if !self.has(IN_FULL) {
            // Fast frees may now reach the new blocks too.
            self.open_fast_free();
        }
        self.set_flag(FREE_IS_ZERO, self.has(ZERO_INIT));
        true
    }

    /// Refills an empty `free` from the blocks freed by other threads and by
    /// the owner. Returns true when `free` is non-empty afterwards.
    ///
    /// Must not be called on a page whose [`NOTIFY`] bit is armed (pages in the
    /// full list), because taking the list would disarm it without telling
    /// anyone.
    pub fn collect(&self) -> bool {
        if !self.free.get().is_null() {
            return true;
        }
        self.collect_thread_free();
        let local = self.local_free.get();
        if !local.is_null() {
            self.free.set(local);
            self.local_free.set(ptr::null_mut());
            self.set_flag(FREE_IS_ZERO, false);
        }
        !self.free.get().is_null()
    }

    /// Moves the remote-free list into `local_free` and adjusts `used`.
    pub fn collect_thread_free(&self) {
        if self.thread_free.load(Ordering::Relaxed) & !NOTIFY == 0 {
            return;
        }
        // Once blocks are on the list the NOTIFY bit is clear, and only the
        // owner (this thread) sets it again, so a plain swap is exact.
        let head = self.thread_free.swap(0, Ordering::Acquire) as *mut Block;
        debug_assert!(head as usize & NOTIFY == 0);
        let mut count = 1u32;
        let mut tail = head;
        // SAFETY: every block on the list was handed out by this page and
        // freed exactly once by another thread, which wrote its link word
        // before publishing it with a release CAS (acquired by the swap).
        unsafe {
            while !(*tail).next.is_null() {
                tail = (*tail).next;
                count += 1;
            }
            (*tail).next = self.local_free.get();
        }
        self.local_free.set(head);
        debug_assert!(count <= self.used.get());
        self.used.set(self.used.get() - count);
    }

    /// Arms the full-page notification. Returns false, without arming, when
    /// remote frees are already waiting (the page is then not full).
    pub fn arm_notify(&self) -> bool {
        self.thread_free
            .compare_exchange(0, NOTIFY, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Disarms the notification if no remote free has consumed it yet.
    pub fn disarm_notify(&self) {
        let _ = self
            .thread_free
            .compare_exchange(NOTIFY, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Pushes `block` onto `page`'s remote-free list, from a thread that does not
/// own the page. Returns true when the push consumed the page's [`NOTIFY`]
/// bit, in which case the block was NOT pushed and the caller must queue it on
/// the owning heap's delayed list.
///
/// # Safety
/// `block` must be a block of `page` that is in use and freed exactly once.
pub unsafe fn push_thread_free(page: &Page, block: *mut Block) -> bool {
    let tf = &page.thread_free;
    let mut old = tf.load(Ordering::Relaxed);
    loop {
        if old & NOTIFY != 0 {
            debug_assert!(old == NOTIFY);
            match tf.compare_exchange_weak(old, 0, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => old = seen,
            }
            continue;
        }
        // SAFETY: the block is ours to write (caller); its first word becomes
        // the link, published by the release CAS below.
        unsafe { (*block).next = old as *mut Block };
        match tf.compare_exchange_weak(old, block as usize, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return false,
            Err(seen) => old = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page over a fresh, zeroed, 64 KiB buffer.
    fn page_over(buf: &mut [u64], block_size: usize, class: usize) -> Page {
        let page = Page::empty();
        let bytes = buf.len() * 8;
        page.init(class, block_size, buf.as_mut_ptr().cast(), bytes, true);
        page
    }

    fn pop(page: &Page) -> *mut Block {
        let b = page.free.get();
        assert!(!b.is_null());
        // SAFETY: `b` is a free block of the page.
        page.free.set(unsafe { (*b).next });
        page.used.set(page.used.get() + 1);
        b
    }

    fn len(mut b: *mut Block) -> usize {
        let mut n = 0;
        while !b.is_null() {
            n += 1;
            // SAFETY: free-list blocks hold valid links.
            b = unsafe { (*b).next };
        }
        n
    }

    #[test]
    fn extend_carves_at_most_four_kib_and_marks_zero() {
        let mut buf = vec![0u64; 8192];
        let page = page_over(&mut buf, 16, 1);
        assert_eq!(page.reserved.get(), 4096);
        assert!(page.extend());
        assert_eq!(page.capacity.get(), 256);
        assert_eq!(len(page.free.get()), 256);
        assert!(page.has(FREE_IS_ZERO));
        // Blocks come out in address order, each a block start.
        let a = pop(&page);
        let b = pop(&page);
        assert_eq!(b as usize - a as usize, 16);
        assert!(page.is_block_start(a.cast()));
        assert!(!page.is_block_start((a as *mut u8).wrapping_add(8)));
    }

    #[test]
    fn local_and_remote_frees_are_collected_with_exact_accounting() {
        let mut buf = vec![0u64; 8192];
        let page = page_over(&mut buf, 48, 5);
        page.extend();
        let blocks: Vec<_> = (0..10).map(|_| pop(&page)).collect();
        assert_eq!(page.used.get(), 10);
        // Three freed by the owner, four by "another thread".
        for &b in &blocks[..3] {
            // SAFETY: `b` is in use and freed once.
            unsafe { (*b).next = page.local_free.get() };
            page.local_free.set(b);
            page.used.set(page.used.get() - 1);
        }
        for &b in &blocks[3..7] {
            // SAFETY: in use, freed once.
            assert!(!unsafe { push_thread_free(&page, b) });
        }
        assert_eq!(
            page.used.get(),
            7,
            "remote frees count as used until collected"
        );
        // Drain `free` so that collect refills it.
        while !page.free.get().is_null() {
            pop(&page);
        }
        let used_before = page.used.get();
        assert!(page.collect());
        assert_eq!(page.used.get(), used_before - 4);
        assert_eq!(len(page.free.get()), 7);
        assert!(!page.has(FREE_IS_ZERO));
        let capacity = page.capacity.get() as usize;
        assert_eq!(page.used.get() as usize + len(page.free.get()), capacity);
    }

    #[test]
    fn notify_bit_diverts_exactly_one_remote_free() {
        let mut buf = vec![0u64; 8192];
        let page = page_over(&mut buf, 64, 7);
        page.extend();
        let a = pop(&page);
        let b = pop(&page);
        assert!(page.arm_notify());
        // SAFETY: in use, freed once.
        let first = unsafe { push_thread_free(&page, a) };
        assert!(first, "first remote free takes the notification");
        // SAFETY: in use, freed once.
        let second = unsafe { push_thread_free(&page, b) };
        assert!(!second, "later ones go to the page list");
        assert!(!page.arm_notify(), "cannot arm while blocks are waiting");
        page.collect_thread_free();
        assert!(page.arm_notify());
        page.disarm_notify();
        assert_eq!(page.thread_free.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn carved_blocks_are_tagged_free_until_handed_out() {
        let mut buf = vec![0u64; 8192];
        let page = page_over(&mut buf, 32, 3);
        page.extend();
        let b = pop(&page);
        // SAFETY: `b` is a carved block start of the page.
        unsafe {
            assert!(
                is_freed(&page, b),
                "a carved block is free until handed out"
            );
            untag(b);
            assert!(!is_freed(&page, b));
            tag_freed(&page, b);
            assert!(is_freed(&page, b));
            // The tag is the page's: another page's does not match it.
            let other = page_over(&mut vec![0u64; 512], 32, 3);
            assert!(!is_freed(&other, b));
        }
        assert!(page.is_carved(b as *mut u8));
        let uncarved = page
            .block_start
            .get()
            .wrapping_add(page.capacity.get() as usize * 32);
        assert!(!page.is_carved(uncarved));
    }

    #[test]
    fn block_containing_rounds_down_and_rejects_the_tail() {
        let mut buf = vec![0u64; 8192];
        let page = page_over(&mut buf, 24, 2);
        let start = page.block_start.get();
        assert_eq!(
            page.block_containing(start.wrapping_add(50)),
            start.wrapping_add(48)
        );
        let area = page.reserved.get() as usize * 24;
        assert!(page.block_containing(start.wrapping_add(area)).is_null());
        assert!(page.block_containing(start.wrapping_sub(1)).is_null());
    }
}
