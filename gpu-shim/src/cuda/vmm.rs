//! Wrappers of the driver's virtual memory management API (CUDA 10.2+),
//! which PyTorch's expandable segments, NCCL and RMM's arenas use.
//!
//! Three objects, three kinds of event:
//! - address space (`cuMemAddressReserve`/`cuMemAddressFree`): memory
//!   kind `VIRTUAL`, counted apart from memory;
//! - physical allocations (`cuMemCreate`/`cuMemRelease`): kind `VMM`,
//!   keyed by their handle, with the creating stack and the device of
//!   the allocation's location (not the context's);
//! - mappings (`cuMemMap`/`cuMemUnmap`) and retained handles
//!   (`cuMemRetainAllocationHandle`): `MAP`, `UNMAP` and `RETAIN` events
//!   that tie a range to a handle and hold references to it.
//!
//! The driver frees physical memory when the handle is released and no
//! mapping of it is left; the analysis model counts references the same
//! way, so the shim only reports what each call did.
//!
//! Physical memory another process exported and this one imports by a
//! shareable handle (`cuMemImportFromShareableHandle`: PyTorch's and
//! NCCL's inter-process paths) is kind `IMPORTED_HANDLE`, keyed by its
//! handle like `VMM`'s and released the same way, never in a total; the
//! driver says nothing of its size at the import, so the model sizes it
//! at its first mapping.

#![allow(non_snake_case)]

use core::ffi::{c_ulonglong, c_void};

use memtally_alloc::device::{DeviceEvent, HOST, memory, op};

use super::driver::{
    CUdeviceptr, CUresult, allocated, allocated_on, current_device, driver_fn, freed, out,
};
use super::{CUDA_ERROR_NOT_INITIALIZED, Id, SLOTS, next_or};
use crate::call::DriverCall;

/// `CUmemGenericAllocationHandle`.
type Handle = c_ulonglong;

/// The start of `CUmemAllocationProp` (and of `CUmemPoolProps`): two
/// enums, then the `CUmemLocation`.
#[repr(C)]
pub(super) struct LocationHead {
    alloc_type: i32,
    handle_types: i32,
    location_type: i32,
    location_id: i32,
}

/// `CU_MEM_LOCATION_TYPE_DEVICE`.
const LOCATION_DEVICE: i32 = 1;

/// The device a `CUmemAllocationProp` places memory on (HOST for the
/// host and host NUMA nodes).
pub(super) fn location_device(prop: *const c_void) -> u32 {
    if prop.is_null() {
        return current_device();
    }
    // SAFETY: the driver's calls take a valid CUmemAllocationProp (or
    // CUmemPoolProps), which starts with this layout; the driver has read
    // it already, successfully.
    let head = unsafe { &*(prop as *const LocationHead) };
    match head.location_type {
        LOCATION_DEVICE if head.location_id >= 0 => head.location_id as u32,
        LOCATION_DEVICE => current_device(),
        _ => HOST,
    }
}

/// Records a map, unmap or retain (an unmap stamped when its call began,
/// like a free).
fn reference(call: &DriverCall, op: u8, address: u64, size: u64, handle: u64) {
    if !call.records() {
        return;
    }
    let event = DeviceEvent {
        op,
        memory: memory::VMM,
        device: 0,
        api: call.api(),
        address,
        size,
        handle,
    };
    memtally_alloc::device::record_at(&event, call.released());
}

/// `cuMemAddressReserve`: address space only.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAddressReserve(
    ptr: *mut CUdeviceptr,
    size: usize,
    alignment: usize,
    addr: CUdeviceptr,
    flags: c_ulonglong,
) -> CUresult {
    let next = next_or!(
        Id::MemAddressReserve,
        unsafe extern "C" fn(*mut CUdeviceptr, usize, usize, CUdeviceptr, c_ulonglong) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAddressReserve");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, size, alignment, addr, flags) };
    allocated(&call, r, memory::VIRTUAL, out(ptr, r), size as u64);
    r
}

/// `cuMemAddressFree`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAddressFree(ptr: CUdeviceptr, size: usize) -> CUresult {
    let next = next_or!(
        Id::MemAddressFree,
        unsafe extern "C" fn(CUdeviceptr, usize) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuMemAddressFree");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, size) };
    freed(&call, r, memory::VIRTUAL, ptr);
    r
}

/// `cuMemCreate`: physical memory, on the device its properties name.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemCreate(
    handle: *mut Handle,
    size: usize,
    prop: *const c_void,
    flags: c_ulonglong,
) -> CUresult {
    let next = next_or!(
        Id::MemCreate,
        unsafe extern "C" fn(*mut Handle, usize, *const c_void, c_ulonglong) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemCreate");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(handle, size, prop, flags) };
    if call.records() {
        let device = location_device(prop);
        allocated_on(&call, r, memory::VMM, device, out(handle, r), size as u64);
    } else if r == 0 {
        // Inside a library call that records one event for all it did.
        crate::call::add_inner_bytes(size as u64);
    }
    r
}

/// `cuMemRelease`: gives back the creation's (or a retain's) reference.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemRelease(handle: Handle) -> CUresult {
    let next = next_or!(
        Id::MemRelease,
        unsafe extern "C" fn(Handle) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuMemRelease");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(handle) };
    freed(&call, r, memory::VMM, handle);
    r
}

/// `cuMemMap`: the range `[ptr, ptr + size)` now shows the physical
/// allocation `handle` (from `offset`).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemMap(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: Handle,
    flags: c_ulonglong,
) -> CUresult {
    let next = next_or!(
        Id::MemMap,
        unsafe extern "C" fn(CUdeviceptr, usize, usize, Handle, c_ulonglong) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemMap");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, size, offset, handle, flags) };
    if r == 0 {
        reference(&call, op::MAP, ptr, size as u64, handle);
    }
    r
}

/// `cuMemUnmap`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    let next = next_or!(
        Id::MemUnmap,
        unsafe extern "C" fn(CUdeviceptr, usize) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuMemUnmap");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(ptr, size) };
    if r == 0 {
        reference(&call, op::UNMAP, ptr, size as u64, 0);
    }
    r
}

/// `cuMemRetainAllocationHandle`: one more reference to the allocation
/// mapped at `addr`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemRetainAllocationHandle(
    handle: *mut Handle,
    addr: *mut c_void,
) -> CUresult {
    let next = next_or!(
        Id::MemRetainAllocationHandle,
        unsafe extern "C" fn(*mut Handle, *mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemRetainAllocationHandle");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(handle, addr) };
    if r == 0 {
        reference(&call, op::RETAIN, addr as u64, 0, out(handle, r));
    }
    r
}

/// The device of the physical allocation `handle` (the current one if the
/// driver cannot say).
fn device_of_handle(handle: Handle) -> u32 {
    let Some(get) = driver_fn!(
        c"cuMemGetAllocationPropertiesFromHandle",
        unsafe extern "C" fn(*mut c_void, Handle) -> CUresult
    ) else {
        return current_device();
    };
    // CUmemAllocationProp is 32 bytes in CUDA 12 (its layout begins as
    // `LocationHead`); room to spare for a later, larger one.
    let mut prop = [0u64; 16];
    // SAFETY: a buffer larger than the structure the driver fills.
    if unsafe { get(prop.as_mut_ptr().cast(), handle) } != 0 {
        return current_device();
    }
    location_device(prop.as_ptr().cast())
}

/// `cuMemImportFromShareableHandle`: another process's physical memory.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemImportFromShareableHandle(
    handle: *mut Handle,
    os_handle: *mut c_void,
    handle_type: i32,
) -> CUresult {
    let next = next_or!(
        Id::MemImportFromShareableHandle,
        unsafe extern "C" fn(*mut Handle, *mut c_void, i32) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemImportFromShareableHandle");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(handle, os_handle, handle_type) };
    if call.records() {
        let h = out(handle, r);
        let device = if r == 0 {
            device_of_handle(h)
        } else {
            current_device()
        };
        allocated_on(&call, r, memory::IMPORTED_HANDLE, device, h, 0);
    }
    r
}
