//! NCCL's own device allocations: `ncclMemAlloc` and `ncclMemFree`
//! (NCCL 2.19+), which NCCL builds on the CUDA driver's virtual memory
//! management calls, reached through `cuGetProcAddress`. One user call is
//! one event: these wrappers are the thread's outermost driver-level call
//! (`call::DriverCall`), so the address reservation, physical allocation
//! and mapping inside record nothing themselves; `ncclMemAlloc` records
//! one allocation of the physical bytes the driver created for it (the
//! granularity's rounding included: the innermost backing), of memory
//! kind `VMM` at the returned address, and `ncclMemFree` its free.

#![allow(non_snake_case)]

use core::ffi::c_void;

use memtally_alloc::device::memory;

use crate::call::{DriverCall, inner_bytes};
use crate::cuda::driver::{allocated_on, current_device, freed};
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
    let call = DriverCall::enter("ncclMemAlloc");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, size) };
    if call.records() {
        let physical = match inner_bytes() {
            0 => size as u64,
            bytes => bytes,
        };
        let address = if r == 0 && !ptr.is_null() {
            // SAFETY: NCCL wrote the out parameter on success.
            unsafe { *ptr as u64 }
        } else {
            0
        };
        allocated_on(&call, r, memory::VMM, current_device(), address, physical);
    }
    r
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
    let call = DriverCall::enter_release("ncclMemFree");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(ptr) };
    freed(&call, r, memory::VMM, ptr as u64);
    r
}
