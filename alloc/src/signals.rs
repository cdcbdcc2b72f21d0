//! What the two signal handlers (`guard.rs`'s `SIGSEGV`, `races.rs`'s
//! `SIGTRAP`) share: installing a handler while keeping the program's,
//! handing a signal that is not ours on to it, reading memory in a way that
//! cannot fault, and the interrupted thread's stack from its context.
//!
//! Everything here is async-signal-safe: system calls and loads, no lock,
//! no allocation.

use core::ptr;

/// Unwind rules for the stacks of error reports, guarded allocations and
/// signal handlers (shared by every thread: a race only costs a lookup).
pub static RULES: crate::record::unwind::RuleCache = crate::record::unwind::RuleCache::new();
use core::sync::atomic::{AtomicPtr, Ordering};

/// Installs `handler` for `sig` (`SA_SIGINFO | SA_ONSTACK` and `extra`
/// flags), keeping the action it replaces in `previous` (a mapping of our
/// own, allocated the first time). False on failure.
pub fn install(
    sig: libc::c_int,
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
    extra: libc::c_int,
    previous: &AtomicPtr<libc::sigaction>,
) -> bool {
    // SAFETY: sigaction with a zeroed struct filled in below; the previous
    // action is written into memory of our own.
    unsafe {
        let mut old = previous.load(Ordering::Acquire);
        if old.is_null() {
            old = crate::os::map(core::mem::size_of::<libc::sigaction>()) as *mut libc::sigaction;
        }
        if old.is_null() {
            return false;
        }
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | extra;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, old) != 0 {
            return false;
        }
        previous.store(old, Ordering::Release);
    }
    true
}

/// Is `handler` the current action for `sig`?
pub fn is_current(
    sig: libc::c_int,
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
) -> bool {
    // SAFETY: a query of the current action into a zeroed struct.
    let current = unsafe {
        let mut cur: libc::sigaction = core::mem::zeroed();
        libc::sigaction(sig, ptr::null(), &mut cur);
        cur.sa_sigaction
    };
    current == handler as *const () as usize
}

/// Restores the default action for `sig`.
pub fn reset_default(sig: libc::c_int) {
    // SAFETY: resetting a signal's action is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &sa, ptr::null_mut());
    }
}

/// Hands a signal that is not ours to the action in `previous`. With no
/// handler there, the default action is restored: a fault then happens
/// again on return and takes its default course; a trap, which would not,
/// is raised again with `reraise`.
pub fn chain(
    previous: &AtomicPtr<libc::sigaction>,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
    reraise: bool,
) {
    let old = previous.load(Ordering::Acquire);
    // SAFETY: `old` is the action sigaction gave us; the program's handler
    // gets the arguments the kernel gave us, as it expects.
    unsafe {
        let handler = if old.is_null() {
            libc::SIG_DFL
        } else {
            (*old).sa_sigaction
        };
        if handler == libc::SIG_IGN && reraise {
            return;
        }
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            reset_default(sig);
            if reraise {
                libc::raise(sig);
            }
            return;
        }
        if (*old).sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                core::mem::transmute(handler);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = core::mem::transmute(handler);
            f(sig);
        }
    }
}

/// The word at `addr`, read by the kernel (`process_vm_readv`): None
/// instead of a fault when it is not mapped, and no watchpoint trap.
pub fn read_word(addr: u64) -> Option<u64> {
    let mut word = 0u64;
    let local = libc::iovec {
        iov_base: (&mut word as *mut u64).cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: reads 8 bytes of our own address space into `word`; the
    // kernel checks the remote range.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == 8).then_some(word)
}

/// The interrupted thread's stack: `first` (the instruction that faulted
/// or trapped), then the return addresses the unwinder finds from the
/// registers in `ctx`. Stack words are read with [`read_word`]: the handler
/// may run on an alternate stack, so the thread's stack bounds are not at
/// hand.
pub fn stack_of(
    ctx: *mut libc::c_void,
    first: u64,
    rules: &crate::record::unwind::RuleCache,
    out: &mut [u64],
) -> usize {
    let Some((head, rest)) = out.split_first_mut() else {
        return 0;
    };
    *head = first;
    #[cfg(target_arch = "x86_64")]
    {
        let g = gregs(ctx);
        let regs = crate::record::unwind::Regs {
            rip: g[libc::REG_RIP as usize] as u64,
            rsp: g[libc::REG_RSP as usize] as u64,
            rbp: g[libc::REG_RBP as usize] as u64,
        };
        let read = |addr: u64| if addr % 8 == 0 { read_word(addr) } else { None };
        1 + crate::record::unwind::unwind(regs, rules, rest, read)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ctx, rules, rest);
        1
    }
}

/// The interrupted thread's general registers.
#[cfg(target_arch = "x86_64")]
pub fn gregs(ctx: *mut libc::c_void) -> &'static [libc::greg_t; 23] {
    // SAFETY: the kernel passes a ucontext to SA_SIGINFO handlers; it lives
    // on the handler's stack for the handler's duration, which is all the
    // callers use it for.
    unsafe { &(*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs }
}

/// The interrupted instruction's address.
pub fn pc(ctx: *mut libc::c_void) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        gregs(ctx)[libc::REG_RIP as usize] as u64
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        0
    }
}
