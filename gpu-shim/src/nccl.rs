//! NCCL's own device allocations: `ncclMemAlloc` and `ncclMemFree`
//! (NCCL 2.19+), which NCCL builds on the CUDA driver's virtual memory
//! management calls, reached through `cuGetProcAddress`. Those calls are
//! recorded by their wrappers (`cuda/vmm.rs`); these wrappers only name
//! the events after the call the program made (`call::Label`), so that a
//! buffer NCCL allocated for the program reads `ncclMemAlloc` at the
//! program's stack, its physical memory the one event that counts.

#![allow(non_snake_case)]

use core::ffi::c_void;

use crate::call::Label;
use crate::slot::{next_or, slots};

/// `ncclSystemError`: returned when there is no NCCL to call.
const NCCL_SYSTEM_ERROR: i32 = 2;

slots! {
    MemAlloc = c"ncclMemAlloc" in b"libnccl.so" => ncclMemAlloc;
    MemFree = c"ncclMemFree" in b"libnccl.so" => ncclMemFree;
}

/// `ncclMemAlloc`.
///
/// # Safety
/// As NCCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ncclMemAlloc(ptr: *mut *mut c_void, size: usize) -> i32 {
    let next = next_or!(
        Id::MemAlloc,
        unsafe extern "C" fn(*mut *mut c_void, usize) -> i32,
        NCCL_SYSTEM_ERROR
    );
    let _label = Label::enter("ncclMemAlloc");
    // SAFETY: the caller's arguments, passed on.
    unsafe { next(ptr, size) }
}

/// `ncclMemFree`.
///
/// # Safety
/// As NCCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ncclMemFree(ptr: *mut c_void) -> i32 {
    let next = next_or!(
        Id::MemFree,
        unsafe extern "C" fn(*mut c_void) -> i32,
        NCCL_SYSTEM_ERROR
    );
    let _label = Label::enter("ncclMemFree");
    // SAFETY: the caller's argument, passed on.
    unsafe { next(ptr) }
}
