//! One user call, one event: the per-thread guard every wrapper enters.
//!
//! A runtime call (`cudaMalloc`) runs the driver call (`cuMemAlloc_v2`)
//! through a wrapper of ours too; a driver function may call another. Only
//! the outermost driver-level wrapper of a thread records, and it labels
//! the event with the outermost API the program called: the runtime
//! wrappers ([`Label`]) only name the call, the driver wrappers
//! ([`DriverCall`]) record it. A statically linked runtime is never seen
//! at its own level, so its calls are labelled with the driver's name: the
//! event is still there.

use core::cell::Cell;

thread_local! {
    /// Driver-level wrappers this thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The outermost API the thread's current call came through ("" for
    /// none).
    static LABEL: Cell<&'static str> = const { Cell::new("") };
    /// Physical bytes created by driver calls inside the thread's current
    /// outermost call (a library call such as `ncclMemAlloc` records them
    /// as its one event).
    static INNER_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Notes `bytes` of physical memory created by a driver call that is not
/// the thread's outermost (it records nothing itself).
pub fn add_inner_bytes(bytes: u64) {
    INNER_BYTES.with(|b| b.set(b.get().saturating_add(bytes)));
}

/// Physical bytes the calls inside the current outermost call created.
pub fn inner_bytes() -> u64 {
    INNER_BYTES.with(Cell::get)
}

/// A runtime- or library-level call in progress: names the event the
/// driver call inside it records.
pub struct Label {
    previous: &'static str,
}

impl Label {
    /// Enters `api` (kept only if the thread is in no other labelled call).
    pub fn enter(api: &'static str) -> Label {
        let previous = LABEL.with(|l| {
            let p = l.get();
            if p.is_empty() {
                l.set(api);
            }
            p
        });
        Label { previous }
    }
}

impl Drop for Label {
    fn drop(&mut self) {
        LABEL.with(|l| l.set(self.previous));
    }
}

/// A driver-level call in progress.
pub struct DriverCall {
    outermost: bool,
    api: &'static str,
    /// A release's stamp (see [`DriverCall::enter_release`]); 0 for none.
    released: u64,
}

impl DriverCall {
    /// Enters the driver function `api`.
    pub fn enter(api: &'static str) -> DriverCall {
        let outermost = DEPTH.with(|d| {
            let n = d.get();
            d.set(n + 1);
            n == 0
        });
        if outermost {
            INNER_BYTES.with(|b| b.set(0));
        }
        let label = LABEL.with(Cell::get);
        DriverCall {
            outermost,
            api: if label.is_empty() { api } else { label },
            released: 0,
        }
    }

    /// Enters the driver function `api`, which releases memory (a free,
    /// an unmap): its event is stamped now, before the memory can go to
    /// another thread (`memtally_alloc::device::begin_release`).
    pub fn enter_release(api: &'static str) -> DriverCall {
        let mut call = DriverCall::enter(api);
        if call.records() {
            call.released = memtally_alloc::device::begin_release();
        }
        call
    }

    /// The release's stamp (0: now).
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Should this call record its event (it is the thread's outermost
    /// driver call, and something is being recorded)?
    pub fn records(&self) -> bool {
        self.outermost && memtally_alloc::device::recording()
    }

    /// The API to name in the event.
    pub fn api(&self) -> &'static str {
        self.api
    }
}

impl Drop for DriverCall {
    fn drop(&mut self) {
        if self.released != 0 {
            memtally_alloc::device::end_release();
        }
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}
