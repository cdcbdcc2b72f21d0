//! Stopping the world for the leak scan: a signal handshake (as the Boehm
//! collector does it), no ptrace.
//!
//! The scanning thread lists the process's threads (`/proc/self/task`),
//! gives each a slot and sends it [`stop_signal`] with `tgkill`. The
//! handler, in the interrupted thread, copies the interrupted registers and
//! stack pointer from its `ucontext` into its slot, says it stopped, and
//! waits on a futex until the scanner lets the world go. Threads created
//! meanwhile are found by listing again until a listing finds no new one.
//!
//! A thread that does not answer within [`WAIT`] (it blocks the signal, or
//! is stuck in uninterruptible sleep) is left running and counted: the scan
//! goes on without its registers and says it is incomplete. Its signal may
//! still arrive later, so our handler then stays installed (it returns at
//! once when no scan is running) rather than restoring a default action
//! that would kill the process.
//!
//! Everything the handler touches is a static or the slots' mapping, and
//! it calls only `gettid` and `futex`: async-signal-safe, no allocation.

use super::scratch::ScratchVec;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use core::{mem, ptr};

/// Registers saved per thread (every general-purpose register).
pub const REGS: usize = 32;

/// How long the scanner waits for all threads of a listing to stop.
const WAIT: core::time::Duration = core::time::Duration::from_secs(2);

/// Listings of `/proc/self/task` before giving up on threads that keep
/// appearing.
const ROUNDS: usize = 8;

const WAITING: u32 = 0;
const STOPPED: u32 = 1;
const RESUMED: u32 = 2;
const GONE: u32 = 3;

/// One thread's slot, written by its handler.
#[repr(C)]
pub struct Slot {
    tid: AtomicI32,
    state: AtomicU32,
    /// The interrupted stack pointer.
    sp: AtomicUsize,
    /// The interrupted general-purpose registers.
    regs: [AtomicUsize; REGS],
}

impl Slot {
    /// The stopped thread's stack pointer.
    pub fn sp(&self) -> usize {
        self.sp.load(Ordering::Relaxed)
    }

    /// The stopped thread's registers.
    pub fn regs(&self) -> [usize; REGS] {
        core::array::from_fn(|i| self.regs[i].load(Ordering::Relaxed))
    }
}

static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(ptr::null_mut());
static SLOT_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Bumped (and futex-woken) by the scanner to let stopped threads go.
static RESUME: AtomicU32 = AtomicU32::new(0);
/// Set once our handler was left installed (see the module comment).
static HANDLER_KEPT: AtomicU32 = AtomicU32::new(0);

/// The signal the handshake uses: the second-highest real-time signal,
/// which programs rarely use (glibc keeps the lowest ones for itself).
pub fn stop_signal() -> libc::c_int {
    libc::SIGRTMAX() - 1
}

/// The other threads, stopped until this is dropped.
pub struct World {
    slots: ScratchVec<Slot>,
    old_action: libc::sigaction,
    /// Threads that did not stop.
    pub missed: u32,
}

impl World {
    /// Stops every other thread of the process. None when the handshake
    /// cannot be set up (no scratch memory, `/proc` not mounted).
    pub fn stop() -> Option<World> {
        let me = gettid();
        // Room for threads created while stopping; fixed, because the
        // handlers read the slots while the scanner adds to them.
        let capacity = count_threads()? * 2 + 64;
        let mut slots = ScratchVec::<Slot>::with_capacity(capacity)?;
        // SAFETY: an all-zero sigaction is a valid value to be overwritten.
        let mut old: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut act: libc::sigaction = unsafe { mem::zeroed() };
        act.sa_sigaction = on_stop_signal as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        // SAFETY: `act` is a valid handler description; `sa_mask` is empty
        // (zeroed), so other signals still reach the stopped thread's own
        // handlers after the scan.
        if unsafe { libc::sigaction(stop_signal(), &act, &mut old) } != 0 {
            return None;
        }
        SLOT_COUNT.store(0, Ordering::Relaxed);
        SLOTS.store(slots.as_mut_slice().as_mut_ptr(), Ordering::Release);
        let mut missed = 0;
        for _ in 0..ROUNDS {
            let mut added = 0;
            let mut full = false;
            let ok = crate::os::for_each_thread(|tid| {
                if tid == me
                    || slots
                        .as_slice()
                        .iter()
                        .any(|s| s.tid.load(Ordering::Relaxed) == tid)
                {
                    return;
                }
                if slots.len() == capacity {
                    full = true;
                    return;
                }
                slots.push(Slot {
                    tid: AtomicI32::new(tid),
                    state: AtomicU32::new(WAITING),
                    sp: AtomicUsize::new(0),
                    regs: [const { AtomicUsize::new(0) }; REGS],
                });
                SLOTS.store(slots.as_mut_slice().as_mut_ptr(), Ordering::Release);
                SLOT_COUNT.store(slots.len(), Ordering::Release);
                // SAFETY: tgkill with our own pid and a listed tid; at worst
                // the thread has exited (ESRCH).
                let rc =
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, stop_signal()) };
                if rc != 0 {
                    slots.as_slice()[slots.len() - 1]
                        .state
                        .store(GONE, Ordering::Relaxed);
                }
                added += 1;
            });
            if !ok {
                break;
            }
            wait_until(|| {
                slots
                    .as_slice()
                    .iter()
                    .all(|s| s.state.load(Ordering::Acquire) != WAITING)
            });
            if full {
                missed += 1;
            }
            if added == 0 {
                break;
            }
        }
        missed += slots
            .as_slice()
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == WAITING)
            .count() as u32;
        Some(World {
            slots,
            old_action: old,
            missed,
        })
    }

    /// Calls `f` with the saved stack pointer and registers of every
    /// stopped thread.
    pub fn for_each_stopped(&self, mut f: impl FnMut(&Slot)) {
        for s in self.slots.as_slice() {
            if s.state.load(Ordering::Acquire) == STOPPED {
                f(s);
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        RESUME.fetch_add(1, Ordering::Release);
        crate::os::futex_wake(&RESUME, i32::MAX);
        let all_back = wait_until(|| {
            self.slots
                .as_slice()
                .iter()
                .all(|s| s.state.load(Ordering::Acquire) != STOPPED)
        });
        let all_answered = self.missed == 0 && all_back;
        if all_answered {
            SLOT_COUNT.store(0, Ordering::Release);
            SLOTS.store(ptr::null_mut(), Ordering::Release);
            if HANDLER_KEPT.load(Ordering::Relaxed) == 0 {
                // SAFETY: restores the action saved in `stop`.
                unsafe { libc::sigaction(stop_signal(), &self.old_action, ptr::null_mut()) };
            }
        } else {
            // A thread may still run the handler on these slots: keep them
            // mapped and the handler installed for good.
            HANDLER_KEPT.store(1, Ordering::Relaxed);
            mem::forget(mem::replace(&mut self.slots, ScratchVec::new()));
        }
    }
}

/// Polls `done` until it holds or [`WAIT`] passes; whether it held.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = crate::os::now_ms();
    let mut spins = 0u32;
    loop {
        if done() {
            return true;
        }
        if crate::os::now_ms() - start > WAIT.as_millis() as u64 {
            return false;
        }
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

extern "C" fn on_stop_signal(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: errno is the interrupted code's; put it back before returning.
    let errno = unsafe { *libc::__errno_location() };
    let resume = RESUME.load(Ordering::Acquire);
    let slots = SLOTS.load(Ordering::Acquire);
    let n = SLOT_COUNT.load(Ordering::Acquire);
    if !slots.is_null() {
        let tid = gettid();
        // SAFETY: the scanner published `n` initialised slots and keeps the
        // mapping until every stopped thread has resumed.
        let slots = unsafe { core::slice::from_raw_parts(slots, n) };
        if let Some(slot) = slots.iter().find(|s| s.tid.load(Ordering::Relaxed) == tid)
            && slot.state.load(Ordering::Acquire) == WAITING
        {
            // SAFETY: the kernel passes a valid ucontext to SA_SIGINFO handlers.
            unsafe { save_context(slot, ctx.cast()) };
            slot.state.store(STOPPED, Ordering::Release);
            while RESUME.load(Ordering::Acquire) == resume {
                crate::os::futex_wait(&RESUME, resume, None);
            }
            slot.state.store(RESUMED, Ordering::Release);
        }
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = errno };
}

/// Copies the interrupted registers out of `uc`.
///
/// # Safety
/// `uc` must be the context the kernel passed to the handler.
unsafe fn save_context(slot: &Slot, uc: *const libc::ucontext_t) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: guaranteed by the caller.
        let gregs = unsafe { &(*uc).uc_mcontext.gregs };
        for (r, g) in slot.regs.iter().zip(gregs.iter()) {
            r.store(*g as usize, Ordering::Relaxed);
        }
        slot.sp
            .store(gregs[libc::REG_RSP as usize] as usize, Ordering::Relaxed);
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: guaranteed by the caller.
        let m = unsafe { &(*uc).uc_mcontext };
        for (r, g) in slot.regs.iter().zip(m.regs.iter()) {
            r.store(*g as usize, Ordering::Relaxed);
        }
        slot.sp.store(m.sp as usize, Ordering::Relaxed);
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (slot, uc);
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn count_threads() -> Option<usize> {
    let mut n = 0;
    crate::os::for_each_thread(|_| n += 1).then_some(n)
}
