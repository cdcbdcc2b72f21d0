//! Memory this process did not allocate from the driver but maps in:
//! pool allocations another process exported (`cuMemPoolImportPointer`)
//! and external memory of another API or process, Vulkan's or a dma-buf's
//! (`cuImportExternalMemory`, then `cuExternalMemoryGetMappedBuffer` and
//! `cuExternalMemoryGetMappedMipmappedArray`).
//!
//! Both are imports (memory kind `IMPORTED`, never in a device's total,
//! as `cuIpcOpenMemHandle`'s are in `arrays.rs`): a pool import is sized
//! by the driver's address range, a mapped buffer by its descriptor, and
//! both are freed with `cuMemFree` (or `cuMemFreeAsync`), which the model
//! matches by address. The external memory object itself is no memory of
//! the driver's and is not recorded. A mipmapped array mapped from it is
//! recorded as an array of no bytes of its own, so that its
//! `cuMipmappedArrayDestroy` is a known free and a forgotten one shows as
//! a handle left open.

#![allow(non_snake_case)]

use core::ffi::{c_uint, c_void};

use memtally_alloc::device::memory;

use super::arrays::{Array3DDescriptor, range_size};
use super::driver::{CUdeviceptr, CUresult, allocated, out};
use super::{CUDA_ERROR_NOT_INITIALIZED, Id, SLOTS, next_or};
use crate::call::DriverCall;

/// `CUDA_EXTERNAL_MEMORY_BUFFER_DESC`: offset, size, flags (then reserved).
#[repr(C)]
pub struct ExternalBufferDescriptor {
    offset: u64,
    size: u64,
    flags: c_uint,
    reserved: [c_uint; 16],
}

/// `cuMemPoolImportPointer`: a pool allocation another process exported.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolImportPointer(
    ptr: *mut CUdeviceptr,
    pool: *mut c_void,
    data: *mut c_void,
) -> CUresult {
    let next = next_or!(
        Id::MemPoolImportPointer,
        unsafe extern "C" fn(*mut CUdeviceptr, *mut c_void, *mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemPoolImportPointer");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, pool, data) };
    if call.records() {
        let p = out(ptr, r);
        let size = if r == 0 { range_size(p) } else { 0 };
        allocated(&call, r, memory::IMPORTED, p, size);
    }
    r
}

/// `cuExternalMemoryGetMappedBuffer`: a range of external memory mapped at
/// a device address.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuExternalMemoryGetMappedBuffer(
    ptr: *mut CUdeviceptr,
    external: *mut c_void,
    descriptor: *const ExternalBufferDescriptor,
) -> CUresult {
    let next = next_or!(
        Id::ExternalMemoryGetMappedBuffer,
        unsafe extern "C" fn(
            *mut CUdeviceptr,
            *mut c_void,
            *const ExternalBufferDescriptor,
        ) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuExternalMemoryGetMappedBuffer");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, external, descriptor) };
    if call.records() && !descriptor.is_null() {
        // SAFETY: the descriptor the driver was given.
        let size = unsafe { (*descriptor).size };
        allocated(&call, r, memory::IMPORTED, out(ptr, r), size);
    }
    r
}

/// `CUDA_EXTERNAL_MEMORY_MIPMAPPED_ARRAY_DESC`: offset, the array's
/// descriptor, levels (then reserved).
#[repr(C)]
pub struct ExternalMipmappedArrayDescriptor {
    offset: u64,
    descriptor: Array3DDescriptor,
    levels: c_uint,
    reserved: [c_uint; 16],
}

/// `cuExternalMemoryGetMappedMipmappedArray`: an array over external
/// memory, recorded with no bytes of its own.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuExternalMemoryGetMappedMipmappedArray(
    array: *mut *mut c_void,
    external: *mut c_void,
    descriptor: *const ExternalMipmappedArrayDescriptor,
) -> CUresult {
    let next = next_or!(
        Id::ExternalMemoryGetMappedMipmappedArray,
        unsafe extern "C" fn(
            *mut *mut c_void,
            *mut c_void,
            *const ExternalMipmappedArrayDescriptor,
        ) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuExternalMemoryGetMappedMipmappedArray");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(array, external, descriptor) };
    allocated(&call, r, memory::ARRAY, out(array, r) as u64, 0);
    r
}
