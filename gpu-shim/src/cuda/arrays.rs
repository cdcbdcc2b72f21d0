//! CUDA arrays (texture memory: `cuArrayCreate_v2`, `cuArray3DCreate_v2`,
//! `cuArrayDestroy`, and mipmapped arrays: `cuMipmappedArrayCreate`,
//! `cuMipmappedArrayDestroy`) and memory opened from another process
//! through IPC (`cuIpcOpenMemHandle_v2`, `cuIpcCloseMemHandle`).
//!
//! The driver does not say how big an array is; its size is estimated
//! from the descriptor: width x height x depth elements of `NumChannels`
//! channels of the format's size (1, 2 or 4 bytes; block-compressed and
//! video formats counted at a byte a channel); a mipmapped array as the
//! sum of its levels, each half the last in every dimension (at least one
//! element; a layered array's layers do not halve). An IPC import is memory
//! another process allocated, mapped here: recorded with the size the
//! driver gives for the range (`cuMemGetAddressRange_v2`), as memory kind
//! `IMPORTED`, never in a device's total.

#![allow(non_snake_case)]

use core::ffi::{c_uint, c_void};

use memtally_alloc::device::memory;

use super::driver::{CUdeviceptr, CUresult, allocated, driver_fn, freed, out};
use super::{CUDA_ERROR_NOT_INITIALIZED, Id, SLOTS, next_or};
use crate::call::DriverCall;

/// `CUDA_ARRAY_DESCRIPTOR`.
#[repr(C)]
pub struct ArrayDescriptor {
    width: usize,
    height: usize,
    format: i32,
    channels: c_uint,
}

/// `CUDA_ARRAY3D_DESCRIPTOR`.
#[repr(C)]
pub(super) struct Array3DDescriptor {
    width: usize,
    height: usize,
    depth: usize,
    format: i32,
    channels: c_uint,
    flags: c_uint,
}

/// `CUipcMemHandle`: 64 opaque bytes, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IpcMemHandle([u8; 64]);

/// Bytes of one channel of a `CUarray_format`.
fn format_bytes(format: i32) -> u64 {
    match format {
        0x02 | 0x09 | 0x10 => 2,
        0x03 | 0x0a | 0x20 => 4,
        _ => 1,
    }
}

/// An array's estimated bytes.
fn array_bytes(width: usize, height: usize, depth: usize, format: i32, channels: c_uint) -> u64 {
    (width as u64)
        .saturating_mul(height.max(1) as u64)
        .saturating_mul(depth.max(1) as u64)
        .saturating_mul(u64::from(channels))
        .saturating_mul(format_bytes(format))
}

/// `cuArrayCreate_v2`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArrayCreate_v2(
    array: *mut *mut c_void,
    descriptor: *const ArrayDescriptor,
) -> CUresult {
    let next = next_or!(
        Id::ArrayCreate_v2,
        unsafe extern "C" fn(*mut *mut c_void, *const ArrayDescriptor) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuArrayCreate_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(array, descriptor) };
    if call.records() && !descriptor.is_null() {
        // SAFETY: the descriptor the driver was given.
        let d = unsafe { &*descriptor };
        let size = array_bytes(d.width, d.height, 1, d.format, d.channels);
        allocated(&call, r, memory::ARRAY, out(array, r) as u64, size);
    }
    r
}

/// `cuArray3DCreate_v2`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArray3DCreate_v2(
    array: *mut *mut c_void,
    descriptor: *const Array3DDescriptor,
) -> CUresult {
    let next = next_or!(
        Id::Array3DCreate_v2,
        unsafe extern "C" fn(*mut *mut c_void, *const Array3DDescriptor) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuArray3DCreate_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(array, descriptor) };
    if call.records() && !descriptor.is_null() {
        // SAFETY: the descriptor the driver was given.
        let d = unsafe { &*descriptor };
        let size = array_bytes(d.width, d.height, d.depth, d.format, d.channels);
        allocated(&call, r, memory::ARRAY, out(array, r) as u64, size);
    }
    r
}

/// `cuArrayDestroy`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArrayDestroy(array: *mut c_void) -> CUresult {
    let next = next_or!(
        Id::ArrayDestroy,
        unsafe extern "C" fn(*mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuArrayDestroy");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(array) };
    freed(&call, r, memory::ARRAY, array as u64);
    r
}

/// `CUDA_ARRAY3D_LAYERED`: the depth is a count of layers.
const ARRAY3D_LAYERED: c_uint = 1;

/// A mipmapped array's estimated bytes: its `levels` levels.
fn mipmapped_bytes(d: &Array3DDescriptor, levels: c_uint) -> u64 {
    let halve = |n: usize, l: u32| if n == 0 { 0 } else { (n >> l.min(63)).max(1) };
    (0..levels.min(64))
        .map(|l| {
            let depth = if d.flags & ARRAY3D_LAYERED != 0 {
                d.depth
            } else {
                halve(d.depth, l)
            };
            array_bytes(
                halve(d.width, l),
                halve(d.height, l),
                depth,
                d.format,
                d.channels,
            )
        })
        .fold(0u64, u64::saturating_add)
}

/// `cuMipmappedArrayCreate`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMipmappedArrayCreate(
    array: *mut *mut c_void,
    descriptor: *const Array3DDescriptor,
    levels: c_uint,
) -> CUresult {
    let next = next_or!(
        Id::MipmappedArrayCreate,
        unsafe extern "C" fn(*mut *mut c_void, *const Array3DDescriptor, c_uint) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMipmappedArrayCreate");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(array, descriptor, levels) };
    if call.records() && !descriptor.is_null() {
        // SAFETY: the descriptor the driver was given.
        let size = mipmapped_bytes(unsafe { &*descriptor }, levels);
        allocated(&call, r, memory::ARRAY, out(array, r) as u64, size);
    }
    r
}

/// `cuMipmappedArrayDestroy`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMipmappedArrayDestroy(array: *mut c_void) -> CUresult {
    let next = next_or!(
        Id::MipmappedArrayDestroy,
        unsafe extern "C" fn(*mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuMipmappedArrayDestroy");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(array) };
    freed(&call, r, memory::ARRAY, array as u64);
    r
}

/// The size of the allocation at `p`, as the driver gives it (0 if it
/// cannot say).
pub(super) fn range_size(p: CUdeviceptr) -> u64 {
    let Some(range) = driver_fn!(
        c"cuMemGetAddressRange_v2",
        unsafe extern "C" fn(*mut CUdeviceptr, *mut usize, CUdeviceptr) -> CUresult
    ) else {
        return 0;
    };
    let mut size = 0usize;
    // SAFETY: valid out pointers (the base is not wanted).
    if unsafe { range(core::ptr::null_mut(), &mut size, p) } != 0 {
        return 0;
    }
    size as u64
}

/// `cuIpcOpenMemHandle_v2`: another process's memory, mapped here.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuIpcOpenMemHandle_v2(
    dptr: *mut CUdeviceptr,
    handle: IpcMemHandle,
    flags: c_uint,
) -> CUresult {
    let next = next_or!(
        Id::IpcOpenMemHandle_v2,
        unsafe extern "C" fn(*mut CUdeviceptr, IpcMemHandle, c_uint) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuIpcOpenMemHandle_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, handle, flags) };
    if call.records() {
        let p = out(dptr, r);
        let size = if r == 0 { range_size(p) } else { 0 };
        allocated(&call, r, memory::IMPORTED, p, size);
    }
    r
}

/// `cuIpcCloseMemHandle`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuIpcCloseMemHandle(dptr: CUdeviceptr) -> CUresult {
    let next = next_or!(
        Id::IpcCloseMemHandle,
        unsafe extern "C" fn(CUdeviceptr) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuIpcCloseMemHandle");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(dptr) };
    freed(&call, r, memory::IMPORTED, dptr);
    r
}
