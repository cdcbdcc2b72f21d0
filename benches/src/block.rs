//! Owned heap blocks, the one way the workloads allocate memory.
//!
//! A [`Block`] allocates through `std::alloc::alloc`, so whichever
//! `#[global_allocator]` the worker binary installs is the allocator being
//! measured. It writes to its memory as soon as it exists, so that page faults
//! and cache misses are paid the way a real program pays them, and it frees
//! itself on drop, which keeps the workloads themselves free of `unsafe`.
//!
//! Writes go through volatile stores: the compiler knows the semantics of the
//! allocation functions and may otherwise delete stores to memory that is freed
//! without being read, or even the whole allocation.

use std::alloc::{self, Layout};
use std::hint::black_box;
use std::ptr::NonNull;

/// Alignment of every block. Eight matches what `Box<u64>` or a `Vec` of
/// pointers asks for; with sizes of at least eight it also keeps the system
/// allocator on plain `malloc` rather than its `posix_memalign` path.
pub const ALIGN: usize = 8;

/// The smallest block; smaller requests are rounded up to it so that a block
/// can always carry its own size when it is passed around as a raw pointer.
pub const MIN_SIZE: usize = 8;

/// The stride used to touch every page of a large block.
const PAGE: usize = 4096;

/// A heap allocation of `size` bytes, freed on drop.
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a `Block` is the unique owner of its allocation, like a `Box<[u8]>`,
// and the global allocator contract allows freeing on any thread.
unsafe impl Send for Block {}

impl Block {
    /// Allocates `size` bytes (at least [`MIN_SIZE`]) and writes their first
    /// and last byte.
    pub fn new(size: usize) -> Block {
        let size = size.max(MIN_SIZE);
        let layout = layout_for(size);
        // SAFETY: `layout_for` never produces a zero-sized layout.
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        let block = Block { ptr, size };
        block.touch_ends();
        block
    }

    /// Allocates `size` bytes and fills all of them with `byte`, as a program
    /// initialising a small object would.
    pub fn filled(size: usize, byte: u8) -> Block {
        let mut block = Block::new(size);
        block.fill(byte);
        block
    }

    /// The usable size of the block in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Writes every byte of the block.
    pub fn fill(&mut self, byte: u8) {
        // SAFETY: the block owns `size` writable bytes starting at `ptr`.
        unsafe { self.ptr.as_ptr().write_bytes(byte, self.size) };
        // Letting the pointer escape forces the stores above to happen.
        black_box(self.ptr);
    }

    /// Writes one byte in every 4 KiB page, so that a large block is fully
    /// backed by physical memory, as it would be once a program used it.
    pub fn touch_pages(&mut self) {
        let base = self.ptr.as_ptr();
        for offset in (0..self.size).step_by(PAGE) {
            // SAFETY: `offset < size`, so the byte lies inside the block.
            unsafe { base.add(offset).write_volatile(1) };
        }
        self.touch_ends();
    }

    /// Increments the byte at `index` with a volatile read-modify-write, the
    /// unit of work of the false-sharing workload.
    pub fn bump(&mut self, index: usize) {
        assert!(
            index < self.size,
            "bump index {index} outside a {}-byte block",
            self.size
        );
        // SAFETY: `index < size`, so the byte lies inside the block.
        unsafe {
            let byte = self.ptr.as_ptr().add(index);
            byte.write_volatile(byte.read_volatile().wrapping_add(1));
        }
    }

    /// Reads the first byte, which every constructor has written.
    pub fn first_byte(&self) -> u8 {
        // SAFETY: blocks are never empty and the first byte was initialised in `new`.
        unsafe { self.ptr.as_ptr().read_volatile() }
    }

    /// Gives up ownership and returns the bare pointer, with the size stored
    /// in the first eight bytes so that [`Block::from_raw`] can free it later.
    ///
    /// This is how blocks travel through lock-free slots (an `AtomicPtr`).
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        // SAFETY: blocks are at least `MIN_SIZE` (8) bytes and `ALIGN`-aligned,
        // so a `usize` fits at the start and is properly aligned.
        unsafe { ptr.cast::<usize>().as_ptr().write(self.size) };
        std::mem::forget(self);
        ptr
    }

    /// Takes back ownership of a pointer returned by [`Block::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` must come from [`Block::into_raw`], and must not be used again
    /// by the caller (the returned block frees it).
    pub unsafe fn from_raw(ptr: NonNull<u8>) -> Block {
        // SAFETY: per the contract, `into_raw` stored the size at the start.
        let size = unsafe { ptr.cast::<usize>().as_ptr().read() };
        Block { ptr, size }
    }

    /// Writes the first and the last byte; the least a program does with memory it asked for.
    fn touch_ends(&self) {
        let tag = self.size as u8;
        // SAFETY: both offsets are below `size`, and the block is exclusively ours.
        unsafe {
            self.ptr.as_ptr().write_volatile(tag);
            self.ptr.as_ptr().add(self.size - 1).write_volatile(tag);
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by the global allocator for exactly this
        // layout, and a block frees it only once, here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout_for(self.size)) };
    }
}

/// The layout of a block of `size` bytes (already rounded up to [`MIN_SIZE`]).
fn layout_for(size: usize) -> Layout {
    match Layout::from_size_align(size, ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("a block of {size} bytes does not fit a Layout"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Block, MIN_SIZE};

    #[test]
    fn blocks_round_up_and_survive_a_raw_round_trip() {
        let tiny = Block::new(1);
        assert_eq!(tiny.size(), MIN_SIZE);
        let mut block = Block::filled(100, 0xAB);
        assert_eq!(block.first_byte(), 0xAB);
        block.bump(0);
        assert_eq!(block.first_byte(), 0xAC);
        let raw = block.into_raw();
        // SAFETY: `raw` comes straight from `into_raw` and is not used again.
        let back = unsafe { Block::from_raw(raw) };
        assert_eq!(back.size(), 100);
    }
}
