//! The thread-local slot: each thread's heap pointer and free token.
//!
//! Every malloc and free reads this slot first, so its cost is the floor of
//! the fast paths. Rust's `thread_local!` compiles to the general-dynamic TLS
//! model inside a shared library, where each access calls `__tls_get_addr`;
//! measured under `LD_PRELOAD`, that doubled the cost of a malloc/free pair
//! (17 ns against mimalloc's 9 ns on this machine's batch loop). C
//! allocators declare their thread-locals `initial-exec`, which reads the
//! slot at a fixed offset from the thread pointer. Stable Rust cannot ask for
//! that model, so on x86_64 Linux the slot is defined in assembly in `.tbss`
//! and read with an initial-exec (`@GOTTPOFF`) access: two instructions, and
//! in an executable the linker relaxes it to one.
//!
//! The slot starts zeroed in every new thread, so it stores the heap pointer
//! as its distance from the static empty heap: zero means "the empty heap",
//! which is exactly the state a new thread must start in (see `thread.rs`).
//! The free token is stored as it is: zero (null) matches no segment's owner,
//! which is what a thread without a heap, or with an instrumented one, needs.
//!
//! A library using the initial-exec model must be loaded at start-up
//! (`LD_PRELOAD`, or linked); `dlopen` works only while glibc has static TLS
//! space to spare. Other targets use `thread_local!`.

use crate::heap::Heap;
use crate::thread::empty_heap;

#[inline(always)]
fn encode(p: *mut Heap) -> usize {
    (p as usize).wrapping_sub(empty_heap() as usize)
}

#[inline(always)]
fn decode(v: usize) -> *mut Heap {
    v.wrapping_add(empty_heap() as usize) as *mut Heap
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod slot {
    use core::arch::{asm, global_asm};

    // Two words of thread-local storage: [heap, token], zero-initialised.
    global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 4",
        ".globl memtally_alloc_tls_slot_v1",
        ".hidden memtally_alloc_tls_slot_v1",
        ".type memtally_alloc_tls_slot_v1, @object",
        ".size memtally_alloc_tls_slot_v1, 16",
        "memtally_alloc_tls_slot_v1:",
        ".zero 16",
        ".popsection",
    );

    #[inline(always)]
    pub fn read<const WORD: usize>() -> usize {
        let v: usize;
        // SAFETY: initial-exec access to the calling thread's copy of the
        // slot defined above: load its offset from the thread pointer from
        // the GOT, then read through %fs. Only reads memory.
        unsafe {
            asm!(
                "mov {v}, qword ptr [rip + memtally_alloc_tls_slot_v1@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v} + {off}]",
                v = out(reg) v,
                off = const WORD * 8,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub fn write<const WORD: usize>(value: usize) {
        // SAFETY: as in `read`; writes only the calling thread's slot.
        unsafe {
            asm!(
                "mov {t}, qword ptr [rip + memtally_alloc_tls_slot_v1@GOTTPOFF]",
                "mov qword ptr fs:[{t} + {off}], {v}",
                t = out(reg) _,
                v = in(reg) value,
                off = const WORD * 8,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod slot {
    use core::cell::Cell;

    thread_local! {
        static SLOT: [Cell<usize>; 2] = const { [Cell::new(0), Cell::new(0)] };
    }

    #[inline(always)]
    pub fn read<const WORD: usize>() -> usize {
        SLOT.with(|s| s[WORD].get())
    }

    #[inline(always)]
    pub fn write<const WORD: usize>(value: usize) {
        SLOT.with(|s| s[WORD].set(value))
    }
}

/// The calling thread's heap (the empty heap before its first allocation).
#[inline(always)]
pub fn heap() -> *mut Heap {
    decode(slot::read::<0>())
}

/// The calling thread's free token: its heap if frees into that heap may take
/// the fast path, else null (see `thread.rs`).
#[inline(always)]
pub fn token() -> *mut Heap {
    slot::read::<1>() as *mut Heap
}

/// Sets the calling thread's heap and free token.
pub fn set(heap: *mut Heap, token: *mut Heap) {
    slot::write::<0>(encode(heap));
    slot::write::<1>(token as usize);
}
