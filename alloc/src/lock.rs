//! A tiny spin lock for the allocator's few global structures (the heap pool,
//! the segment and huge-block caches, the metadata arena).
//!
//! Why not `std::sync::Mutex`: the fork handlers must take every global lock
//! before `fork()` and release it in both processes afterwards without a
//! guard object, and the lock must be usable before anything is initialised.
//! None of these locks is ever taken on the allocation fast path, and each is
//! held only for a few hundred instructions, so spinning with a `sched_yield`
//! fallback is adequate.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A spin lock protecting a `T`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`, so sharing the lock is
// as safe as sending the value between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock and returns a guard that releases it when dropped.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw_lock();
        SpinGuard { lock: self }
    }

    /// Takes the lock without a guard (for the fork handlers).
    pub fn raw_lock(&self) {
        let mut spins = 0u32;
        loop {
            if !self.locked.swap(true, Ordering::Acquire) {
                return;
            }
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    core::hint::spin_loop();
                    spins += 1;
                } else {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }

    /// Releases a lock taken with [`SpinLock::raw_lock`].
    ///
    /// # Safety
    /// The caller must hold the lock through `raw_lock`, or be the only thread
    /// of a freshly forked child whose parent held it at `fork()`.
    pub unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Access to the locked value; releases the lock on drop.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held, so no other reference to
        // the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard was created by `lock`, which took the lock.
        unsafe { self.lock.raw_unlock() };
    }
}
