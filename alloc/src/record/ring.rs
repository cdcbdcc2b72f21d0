//! Per-thread event rings: each recording thread writes its encoded events
//! into its own ring, and the writer thread drains all rings into the trace.
//!
//! A ring is a single-producer (its thread), single-consumer (the writer)
//! byte queue: the producer publishes whole events by advancing `head`, the
//! writer consumes by advancing `tail`; neither ever takes a lock. When a
//! ring is full the producer waits for the writer — events are never
//! dropped — and when it passes half full it wakes the writer early, so a
//! busy thread rarely waits.
//!
//! Rings live in their own mappings (never in the heap being recorded) and
//! are never unmapped: a thread's ring is closed when the thread exits,
//! drained by the writer, then reused by a later thread.

use crate::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Bytes of event data per ring.
pub const RING_BYTES: usize = 256 * 1024;

/// Ring states.
pub const FREE: u8 = 0;
/// Owned by a live thread.
pub const ACTIVE: u8 = 1;
/// Its thread ended; the writer drains it and then frees it.
pub const CLOSED: u8 = 2;

/// The ring of one thread.
#[repr(C)]
pub struct Ring {
    /// Bytes published by the producer, in total.
    head: AtomicU64,
    /// While the producer is between reading the clock and publishing an
    /// event: a lower bound of that event's time (never 0); 0 otherwise.
    /// The writer's watermark stays at or below it.
    busy: AtomicU64,
    /// Ticks of the thread's latest event (producer only): the next
    /// event's time is at least this.
    last_ticks: AtomicU64,
    /// While the producer is inside a call whose event will carry a time
    /// read at the call's start (a device free: see `Ring::hold`), that
    /// time; 0 otherwise. The watermark stays at or below it too.
    held: AtomicU64,
    /// Bytes consumed by the writer, in total.
    tail: AtomicU64,
    /// FREE, ACTIVE or CLOSED.
    pub state: AtomicU8,
    /// Set by the writer once it has written this thread's THREAD record.
    pub announced: AtomicU8,
    /// Thread number in the trace.
    pub thread: AtomicU64,
    /// OS thread id.
    pub os_tid: AtomicU64,
    /// Ticks of the thread's first event.
    pub start_ticks: AtomicU64,
    /// Ticks when the thread ended (valid once CLOSED).
    pub end_ticks: AtomicU64,
    /// Thread name (NUL-padded), written by the owner before publishing.
    pub name: [AtomicU8; 16],
    /// Events published, in total (producer only).
    pub events: AtomicU64,
    /// Next ring in the registry.
    next: AtomicPtr<Ring>,
    data: *mut u8,
    /// The thread's stack-id cache (kept across reuse: ids are global).
    pub cache: crate::record::intern::StackCache,
    /// The thread's unwind-rule cache (kept across reuse: rules are per
    /// code address).
    pub rules: crate::record::unwind::RuleCache,
}

// SAFETY: all shared fields are atomics; `data` is written only by the
// producer in [head, tail + RING_BYTES) and read only by the consumer in
// [tail, head), with the indices published by release/acquire.
unsafe impl Sync for Ring {}

static REGISTRY: AtomicPtr<Ring> = AtomicPtr::new(ptr::null_mut());
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
/// Futex word the writer sleeps on; producers bump it to wake the writer.
pub static WAKE: AtomicU32 = AtomicU32::new(0);

impl Ring {
    /// Claims a free ring, or maps a new one, for the calling thread.
    /// Null when the OS refuses memory.
    pub fn acquire() -> *mut Ring {
        let thread = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        let mut r = REGISTRY.load(Ordering::Acquire);
        while !r.is_null() {
            // SAFETY: rings are never unmapped.
            let ring = unsafe { &*r };
            if ring
                .state
                .compare_exchange(FREE, ACTIVE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                ring.reset(thread);
                return r;
            }
            r = ring.next.load(Ordering::Acquire);
        }
        let header = core::mem::size_of::<Ring>().next_multiple_of(os::OS_PAGE);
        let mem = os::map(header + RING_BYTES);
        if mem.is_null() {
            return ptr::null_mut();
        }
        let r = mem as *mut Ring;
        // SAFETY: the mapping is fresh and large enough; zeroed memory is a
        // valid Ring except for `data`, set here before publication.
        unsafe {
            ptr::addr_of_mut!((*r).data).write(mem.add(header));
            (*r).state.store(ACTIVE, Ordering::Relaxed);
            (*r).reset(thread);
        }
        let mut head = REGISTRY.load(Ordering::Relaxed);
        loop {
            // SAFETY: not yet published; we are its only user.
            unsafe { (*r).next.store(head, Ordering::Relaxed) };
            match REGISTRY.compare_exchange_weak(head, r, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return r,
                Err(seen) => head = seen,
            }
        }
    }

    fn reset(&self, thread: u64) {
        let t = self.tail.load(Ordering::Relaxed);
        self.head.store(t, Ordering::Relaxed);
        self.busy.store(0, Ordering::Relaxed);
        self.held.store(0, Ordering::Relaxed);
        self.last_ticks
            .store(crate::record::clock::ticks(), Ordering::Relaxed);
        self.announced.store(0, Ordering::Relaxed);
        self.thread.store(thread, Ordering::Relaxed);
        self.end_ticks.store(0, Ordering::Relaxed);
        self.events.store(0, Ordering::Relaxed);
        for b in &self.name {
            b.store(0, Ordering::Relaxed);
        }
    }

    /// Calls `f` on every ring ever created.
    pub fn for_each(mut f: impl FnMut(&Ring)) {
        let mut r = REGISTRY.load(Ordering::Acquire);
        while !r.is_null() {
            // SAFETY: rings are never unmapped.
            let ring = unsafe { &*r };
            f(ring);
            r = ring.next.load(Ordering::Acquire);
        }
    }

    /// Counts one more published event (producer only).
    #[inline]
    pub fn count_event(&self) {
        self.events
            .store(self.events.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Marks the start of an event, before its time is read, with a lower
    /// bound of that time (the thread's previous event's). Plain stores:
    /// the writer's watermark slack (about a millisecond) covers the time a
    /// store takes to become visible, so no fence is paid per event.
    ///
    /// Why a bound rather than a flag: with a flag, a thread that does
    /// little but allocate is nearly always "busy" when the writer looks,
    /// the writer can never emit a watermark, and a reader must hold every
    /// event until the end of the trace.
    #[inline]
    pub fn begin(&self) {
        let bound = self.last_ticks.load(Ordering::Relaxed).max(1);
        self.busy.store(bound, Ordering::Relaxed);
    }

    /// Ends an event that will not be published after all (recording was
    /// switched off after [`Ring::begin`]).
    #[inline]
    pub fn abandon_event(&self) {
        self.busy.store(0, Ordering::Release);
    }

    /// Is an event being produced? (A detach waits until none is.)
    pub fn in_flight(&self) -> bool {
        self.busy.load(Ordering::Acquire) != 0
    }

    /// Notes the time read for the event being produced.
    #[inline]
    pub fn timed(&self, ticks: u64) {
        self.last_ticks.store(ticks, Ordering::Relaxed);
    }

    /// Room to encode one event of at most `n` bytes in place: the free
    /// bytes at the head, when at least `n` of them are contiguous (not
    /// near the end of the ring, where an event may wrap, nor while the
    /// ring is nearly full: then encode elsewhere and [`Ring::push`]).
    /// Saves a copy per event. Publish with [`Ring::publish`].
    ///
    /// # Safety
    /// Producer only, and no other slice from `room` may be alive.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn room(&self, n: usize) -> Option<&mut [u8]> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let start = (head % RING_BYTES as u64) as usize;
        if (head - tail) as usize + n > RING_BYTES || start + n > RING_BYTES {
            return None;
        }
        // SAFETY: [start, start + n) lies inside `data` and in the ring's
        // free part (checked), which only the producer writes; the caller
        // holds no other slice of it.
        Some(unsafe { core::slice::from_raw_parts_mut(self.data.add(start), n) })
    }

    /// Publishes `len` bytes written through [`Ring::room`] and ends the
    /// event.
    #[inline]
    pub fn publish(&self, len: usize) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let half = RING_BYTES as u64 / 2;
        let used = head - tail;
        if used < half && used + len as u64 >= half {
            wake_writer();
        }
        self.head.store(head + len as u64, Ordering::Release);
        self.busy.store(0, Ordering::Release);
    }

    /// Publishes `bytes` (one or more whole events) and ends the event.
    /// Waits for the writer while the ring is full. Returns false, without
    /// publishing, only if the writer has stopped for good (process exit or
    /// an output error), when waiting would never end.
    pub fn push(&self, bytes: &[u8]) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let need = bytes.len() as u64;
        debug_assert!(bytes.len() <= RING_BYTES);
        let mut spins = 0u32;
        loop {
            let tail = self.tail.load(Ordering::Acquire);
            let used = head - tail;
            if used + need <= RING_BYTES as u64 {
                if used < RING_BYTES as u64 / 2 && used + need >= RING_BYTES as u64 / 2 {
                    wake_writer();
                }
                break;
            }
            // Full: the program waits for the writer rather than lose events.
            if super::writer::stopped() {
                self.busy.store(0, Ordering::Release);
                return false;
            }
            wake_writer();
            spins += 1;
            if spins < 16 {
                core::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
        let start = (head % RING_BYTES as u64) as usize;
        let first = bytes.len().min(RING_BYTES - start);
        // SAFETY: [start, start + first) and [0, rest) lie inside `data`, in
        // the free part of the ring (checked above), which only the producer
        // writes.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(start), first);
            ptr::copy_nonoverlapping(bytes.as_ptr().add(first), self.data, bytes.len() - first);
        }
        self.head.store(head + need, Ordering::Release);
        self.busy.store(0, Ordering::Release);
        true
    }

    /// Holds the watermark at or below `ticks` until [`Ring::unhold`]: an
    /// event stamped `ticks` will be published after a call of unknown
    /// length (the events the thread makes meanwhile publish as usual).
    pub fn hold(&self, ticks: u64) {
        self.held.store(ticks.max(1), Ordering::Relaxed);
    }

    /// Ends [`Ring::hold`] (after the held event is published).
    pub fn unhold(&self) {
        self.held.store(0, Ordering::Release);
    }

    /// While an event is being produced, a lower bound of its time.
    pub fn busy_bound(&self) -> Option<u64> {
        let busy = self.busy.load(Ordering::Acquire);
        let held = self.held.load(Ordering::Acquire);
        match (busy, held) {
            (0, 0) => None,
            (0, t) | (t, 0) => Some(t),
            (a, b) => Some(a.min(b)),
        }
    }

    /// Bytes published so far, in total (a snapshot for [`Ring::drain_to`]).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Bytes published but not consumed, up to the snapshot `head`.
    pub fn pending_to(&self, head: u64) -> u64 {
        head - self.tail.load(Ordering::Relaxed)
    }

    /// Hands the bytes published up to the snapshot `head` to `out` (in up
    /// to two slices, in order) and marks them consumed. Writer only.
    pub fn drain_to(&self, head: u64, mut out: impl FnMut(&[u8])) -> u64 {
        let tail = self.tail.load(Ordering::Relaxed);
        let n = head - tail;
        if n == 0 {
            return 0;
        }
        let start = (tail % RING_BYTES as u64) as usize;
        let first = (n as usize).min(RING_BYTES - start);
        // SAFETY: [tail, head) was published by the producer (acquire above)
        // and is not overwritten until `tail` moves past it.
        unsafe {
            out(core::slice::from_raw_parts(self.data.add(start), first));
            if first < n as usize {
                out(core::slice::from_raw_parts(self.data, n as usize - first));
            }
        }
        self.tail.store(head, Ordering::Release);
        n
    }

    /// Discards everything not yet consumed (in a forked child, whose
    /// pending events belong to the parent's trace).
    pub fn discard(&self) {
        self.tail
            .store(self.head.load(Ordering::Relaxed), Ordering::Relaxed);
        self.busy.store(0, Ordering::Relaxed);
        self.held.store(0, Ordering::Relaxed);
    }

    /// The thread name as bytes.
    pub fn name_bytes(&self, out: &mut [u8; 16]) -> usize {
        let mut n = 0;
        for (i, b) in self.name.iter().enumerate() {
            out[i] = b.load(Ordering::Relaxed);
            if out[i] != 0 {
                n = i + 1;
            }
        }
        n
    }
}

/// Wakes the writer thread if it is sleeping.
pub fn wake_writer() {
    WAKE.fetch_add(1, Ordering::Release);
    crate::os::futex_wake(&WAKE, 1);
}
