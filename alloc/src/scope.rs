//! Scopes: memory by unit of work — a request, an async task, a tracing
//! span.
//!
//! ```
//! let _request = memtally_alloc::scope("GET /users");
//! let body = vec![0u8; 4096]; // belongs to this instance of "GET /users"
//! # drop(body);
//! ```
//!
//! A scope has a name and, each time it is entered afresh, a new
//! *instance* (one request). While a thread is in a scope, every block it
//! allocates belongs to that instance, wherever the block is later freed;
//! when the instance ends (its guard is dropped, its future completes or
//! is dropped), the trace says so, and the analysis can tell the memory
//! that outlived its request. Scopes nest: the inner one holds the
//! allocations made while it is entered.
//!
//! [`InScope::in_scope`] wraps a future: its instance is entered on every
//! poll, on whichever worker thread polls it, and left after, so an async
//! task's allocations follow it across threads.
//!
//! Cost: entering and leaving swap two words in the thread's recorder
//! (the next recorded event carries the scope); when nothing is being
//! recorded, a scope is one relaxed load and a branch.

use crate::{record, thread};
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll};

/// Enters a new instance of scope `name` on this thread until the guard
/// is dropped (which ends the instance). Does nothing when nothing is
/// being recorded.
#[must_use = "the scope ends when the guard is dropped"]
pub fn scope(name: &'static str) -> ScopeGuard {
    if !record::active() {
        return ScopeGuard::inert();
    }
    let Some(heap) = thread::own_heap() else {
        return ScopeGuard::inert();
    };
    let id = record::scope::name_id(heap, name.as_bytes(), true);
    let instance = record::scope::new_instance();
    let previous = record::scope::set(heap, [id, instance]);
    ScopeGuard {
        previous,
        instance,
        _not_send: PhantomData,
    }
}

/// An entered scope instance; dropping it leaves the scope and ends the
/// instance. It restores the thread's previous scope, so it must be
/// dropped on the thread that made it (it is not `Send`).
#[derive(Debug)]
pub struct ScopeGuard {
    previous: [u64; 2],
    /// 0 for a guard that entered nothing.
    instance: u64,
    _not_send: PhantomData<*const ()>,
}

impl ScopeGuard {
    fn inert() -> Self {
        ScopeGuard {
            previous: [0, 0],
            instance: 0,
            _not_send: PhantomData,
        }
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if self.instance == 0 {
            return;
        }
        if let Some(heap) = thread::own_heap() {
            record::scope::set(heap, self.previous);
            record::scope::end_instance(heap, self.instance);
        }
    }
}

/// Wraps futures in a scope: `.in_scope("GET /users")`.
pub trait InScope: Future + Sized {
    /// This future in a new instance of scope `name`: entered on every
    /// poll, on whichever thread polls, and ended when the future
    /// completes or is dropped.
    fn in_scope(self, name: &'static str) -> Scoped<Self> {
        Scoped {
            inner: self,
            name,
            instance: 0,
            ended: false,
        }
    }
}

impl<F: Future> InScope for F {}

/// A future in a scope (see [`InScope::in_scope`]).
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    inner: F,
    name: &'static str,
    /// 0 until first polled while recording.
    instance: u64,
    ended: bool,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of
        // `self` (not here, not in Drop), and the other fields are plain
        // data, never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this.inner` stays where it is.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        if !record::active() || this.ended {
            return inner.poll(cx);
        }
        let Some(heap) = thread::own_heap() else {
            return inner.poll(cx);
        };
        if this.instance == 0 {
            this.instance = record::scope::new_instance();
        }
        let id = record::scope::name_id(heap, this.name.as_bytes(), true);
        let previous = record::scope::set(heap, [id, this.instance]);
        let result = inner.poll(cx);
        record::scope::set(heap, previous);
        if result.is_ready() {
            this.ended = true;
            record::scope::end_instance(heap, this.instance);
        }
        result
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        if self.instance != 0
            && !self.ended
            && let Some(heap) = thread::own_heap()
        {
            record::scope::end_instance(heap, self.instance);
        }
    }
}

/// Enters a new instance of scope `name` until the matching [`exit`]: the
/// C ABI's `memtally_scope_enter`, for code that cannot hold a guard.
/// `name`'s bytes may change after the call (they are looked up by
/// content). Does nothing when nothing is being recorded.
pub fn enter(name: &[u8]) {
    if !record::active() {
        return;
    }
    if let Some(heap) = thread::own_heap() {
        record::scope::c_enter(heap, name);
    }
}

/// Leaves the scope the last [`enter`] of this thread entered, and ends
/// its instance (`memtally_scope_exit`). An exit without an enter is
/// ignored.
pub fn exit() {
    if !record::active() {
        return;
    }
    if let Some(heap) = thread::own_heap() {
        record::scope::c_exit(heap);
    }
}

/// A thread's scope as it was before [`enter_instance`], to give back to
/// [`restore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved([u64; 2]);

/// A new scope instance id, for integrations that manage instances
/// themselves (a tracing span is one instance, entered many times); 0 when
/// nothing is being recorded.
pub fn new_instance() -> u64 {
    if record::active() {
        record::scope::new_instance()
    } else {
        0
    }
}

/// Puts this thread in instance `instance` (from [`new_instance`]) of
/// scope `name` until [`restore`]; returns what to restore. Does nothing
/// for instance 0.
pub fn enter_instance(name: &'static str, instance: u64) -> Saved {
    if instance == 0 || !record::active() {
        return Saved::default();
    }
    match thread::own_heap() {
        Some(heap) => {
            let id = record::scope::name_id(heap, name.as_bytes(), true);
            Saved(record::scope::set(heap, [id, instance]))
        }
        None => Saved::default(),
    }
}

/// Gives this thread back the scope [`enter_instance`] replaced.
pub fn restore(saved: Saved) {
    if !record::active() {
        return;
    }
    if let Some(heap) = thread::own_heap() {
        record::scope::set(heap, saved.0);
    }
}

/// Records that instance `instance` ended (once; 0 is ignored).
pub fn end_instance(instance: u64) {
    if instance == 0 || !record::active() {
        return;
    }
    if let Some(heap) = thread::own_heap() {
        record::scope::end_instance(heap, instance);
    }
}
