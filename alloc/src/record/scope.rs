//! The recorder's side of scopes (memory by request, task or span; the
//! public API is `crate::scope`).
//!
//! A thread's current scope is two words in its recorder: the STRING id of
//! the scope's name and the instance (one request, one task). Entering or
//! leaving a scope only swaps those words, so it costs a few nanoseconds
//! and nothing is written; the next event the thread records is preceded
//! by a `Scope` event when the scope differs from the one last written
//! (see `emit_busy`). So a scope that allocates nothing costs no bytes,
//! and every recorded event belongs to the scope its thread was in. The
//! end of an instance is an event of its own (`ScopeEnd`), for the
//! analysis to tell memory that outlived its request.

use super::{RawEvent, clock, emit, intern};
use crate::heap::Heap;
use core::sync::atomic::{AtomicU64, Ordering};

/// C ABI scopes kept per thread for `memtally_scope_exit` (deeper ones
/// are counted and not entered).
pub const C_DEPTH: usize = 64;
/// Scope names remembered per thread, so that entering a scope does not
/// take the string table's lock.
pub const NAME_CACHE: usize = 8;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A new scope instance id (never 0).
pub fn new_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

/// FNV-1a, for names whose bytes may change behind the same address.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The STRING id of scope name `name` (0 if the string table is full).
/// `fixed`: the bytes at that address never change (a `&'static str`), so
/// the address and length identify the name; otherwise its hash must
/// match too.
pub fn name_id(heap: &Heap, name: &[u8], fixed: bool) -> u64 {
    let rec = &heap.rec;
    let address = name.as_ptr() as usize;
    let h = if fixed { 0 } else { hash(name) };
    let slot = ((address >> 3) ^ name.len() ^ h as usize) % NAME_CACHE;
    let (a, n, eh, id) = rec.names[slot].get();
    if id != 0 && a == address && n == name.len() && eh == h {
        return id;
    }
    let id = intern::intern_string(name);
    if id != 0 {
        rec.names[slot].set((address, name.len(), h, id));
    }
    id
}

/// Sets the calling thread's scope (`heap` is its heap); returns the one
/// it replaces.
#[inline]
pub fn set(heap: &Heap, scope: [u64; 2]) -> [u64; 2] {
    heap.rec.scope.replace(scope)
}

/// Records that scope instance `instance` ended.
pub fn end_instance(heap: &Heap, instance: u64) {
    emit(heap, super::Stack::No, clock::ticks(), |_, time, _| {
        RawEvent::ScopeEnd { time, instance }
    });
}

/// `memtally_scope_enter`: a new instance of scope `name` on the calling
/// thread, until the matching [`c_exit`].
pub fn c_enter(heap: &Heap, name: &[u8]) {
    let rec = &heap.rec;
    let depth = rec.c_depth.get();
    rec.c_depth.set(depth + 1);
    if depth >= C_DEPTH {
        return;
    }
    let id = name_id(heap, name, false);
    let previous = set(heap, [id, new_instance()]);
    rec.c_scopes[depth].set(previous);
}

/// `memtally_scope_exit`: leaves the scope the last [`c_enter`] entered
/// and ends its instance. Unbalanced exits are ignored.
pub fn c_exit(heap: &Heap) {
    let rec = &heap.rec;
    let depth = rec.c_depth.get();
    if depth == 0 {
        return;
    }
    rec.c_depth.set(depth - 1);
    if depth > C_DEPTH {
        return;
    }
    let left = set(heap, rec.c_scopes[depth - 1].get());
    if left[1] != 0 {
        end_instance(heap, left[1]);
    }
}
