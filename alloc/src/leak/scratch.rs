//! Scratch memory of the leak scan: growable arrays and bitmaps in mappings
//! of their own.
//!
//! The scan runs with the other threads stopped anywhere, possibly inside
//! the allocator, so it must not allocate from the heap it scans: every
//! array it needs comes from `os::map`, which registers the mapping as
//! internal (never a root) and takes no lock. Growth maps a larger array
//! and copies, which is rare: sizes are known or doubled.

use crate::os;
use core::marker::PhantomData;
use core::ptr;

/// A growable array in its own mapping. Values move when it grows (a
/// bitwise copy) and are never dropped: it holds plain data and atomics.
pub struct ScratchVec<T> {
    ptr: *mut T,
    len: usize,
    cap: usize,
    _owns: PhantomData<T>,
}

impl<T> ScratchVec<T> {
    /// An empty array (maps nothing yet).
    pub const fn new() -> Self {
        ScratchVec {
            ptr: ptr::null_mut(),
            len: 0,
            cap: 0,
            _owns: PhantomData,
        }
    }

    /// An empty array with room for `cap` values; None when the OS refuses.
    pub fn with_capacity(cap: usize) -> Option<Self> {
        let mut v = Self::new();
        v.reserve(cap).then_some(v)
    }

    /// Makes room for `extra` more values; false when the OS refuses.
    pub fn reserve(&mut self, extra: usize) -> bool {
        let Some(need) = self.len.checked_add(extra) else {
            return false;
        };
        if need <= self.cap {
            return true;
        }
        let cap = need.max(self.cap * 2).max(4096 / size_of::<T>().max(1));
        let Some(bytes) = cap.checked_mul(size_of::<T>()) else {
            return false;
        };
        let bytes = bytes.next_multiple_of(os::OS_PAGE);
        let p = os::map(bytes) as *mut T;
        if p.is_null() {
            return false;
        }
        let len = self.len;
        if !self.ptr.is_null() {
            // SAFETY: both mappings hold at least `len` values and do not
            // overlap (the new one is fresh).
            unsafe { ptr::copy_nonoverlapping(self.ptr, p, len) };
            self.release();
        }
        self.len = len;
        self.ptr = p;
        self.cap = bytes / size_of::<T>();
        true
    }

    /// Appends `v`; false when the array could not grow.
    #[inline]
    pub fn push(&mut self, v: T) -> bool {
        if self.len == self.cap && !self.reserve(1) {
            return false;
        }
        // SAFETY: `len < cap`, inside the mapping.
        unsafe { self.ptr.add(self.len).write(v) };
        self.len += 1;
        true
    }

    /// Removes and returns the last value.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the value at `len` was written by `push`.
        Some(unsafe { self.ptr.add(self.len).read() })
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the first `len` values were written.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        if self.ptr.is_null() {
            return &mut [];
        }
        // SAFETY: the first `len` values were written; `&mut self` makes
        // this the only view.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The spare capacity after the values: its start and length.
    pub fn spare(&mut self) -> (*mut T, usize) {
        // SAFETY: `len <= cap`; an empty array has a null pointer and no room.
        (unsafe { self.ptr.add(self.len) }, self.cap - self.len)
    }

    /// Claims `len` values as written.
    ///
    /// # Safety
    /// `len <= capacity` and the values up to it were written (through
    /// [`Self::spare`]).
    pub unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.cap);
        self.len = len;
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    fn release(&mut self) {
        if !self.ptr.is_null() {
            let bytes = (self.cap * size_of::<T>()).next_multiple_of(os::OS_PAGE);
            // SAFETY: the mapping was made by `os::map` with this size and
            // nothing refers to it any more.
            unsafe { os::unmap_internal(self.ptr.cast(), bytes) };
            self.ptr = ptr::null_mut();
            self.cap = 0;
            self.len = 0;
        }
    }
}

impl<T> Drop for ScratchVec<T> {
    fn drop(&mut self) {
        self.release();
    }
}

/// A fixed-size bitmap in its own mapping, all clear at first.
pub struct Bits {
    words: ScratchVec<u64>,
}

impl Bits {
    /// `n` clear bits; None when the OS refuses.
    pub fn new(n: usize) -> Option<Bits> {
        let words = n.div_ceil(64).max(1);
        let mut v = ScratchVec::with_capacity(words)?;
        // The mapping is fresh and reads as zero; claim it without writing.
        v.len = words;
        Some(Bits { words: v })
    }

    /// Is bit `i` set?
    #[inline(always)]
    pub fn get(&self, i: usize) -> bool {
        self.words.as_slice()[i / 64] & (1 << (i % 64)) != 0
    }

    /// Sets bit `i`; returns whether it was set before.
    #[inline(always)]
    pub fn set(&mut self, i: usize) -> bool {
        let w = &mut self.words.as_mut_slice()[i / 64];
        let bit = 1 << (i % 64);
        let was = *w & bit != 0;
        *w |= bit;
        was
    }
}
