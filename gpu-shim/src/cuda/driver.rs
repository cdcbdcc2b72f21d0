//! Wrappers of the CUDA driver's allocation entry points (the table of
//! `docs/gpu.md`): each calls the real function, then, if it is the
//! thread's outermost driver call and something is recorded, records an
//! allocation, a free or a failure.
//!
//! Signatures are the driver API's (`cuda.h`): `CUresult` is an `int`,
//! `CUdeviceptr` an `unsigned long long`, streams and pools pointers.

#![allow(non_snake_case)]

use core::ffi::{c_int, c_uint, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use memtally_alloc::device::{DeviceEvent, HOST, memory, op};

use super::{CUDA_ERROR_NOT_INITIALIZED, Id, next_or};
use crate::call::DriverCall;

type CUresult = c_int;
type CUdeviceptr = u64;

/// Records an allocation of `size` bytes at `address` (a failure when
/// `result` is not success) on the current context's device.
fn allocated(call: &DriverCall, result: CUresult, kind: u8, address: u64, size: u64) {
    if !call.records() {
        return;
    }
    let device = if memory_on_host(kind) {
        HOST
    } else {
        current_device()
    };
    let (op, address) = if result == 0 {
        (op::ALLOC, address)
    } else {
        (op::FAILED, 0)
    };
    memtally_alloc::device::record(&DeviceEvent {
        op,
        memory: kind,
        device,
        api: call.api(),
        address,
        size,
    });
}

/// Records the free of `address`.
fn freed(call: &DriverCall, result: CUresult, kind: u8, address: u64) {
    if result != 0 || address == 0 || !call.records() {
        return;
    }
    memtally_alloc::device::record(&DeviceEvent {
        op: op::FREE,
        memory: kind,
        device: if memory_on_host(kind) { HOST } else { 0 },
        api: call.api(),
        address,
        size: 0,
    });
}

fn memory_on_host(kind: u8) -> bool {
    memtally_alloc::trace::device::host_side(kind)
}

/// The driver's `cuCtxGetDevice` (1: none).
static CTX_GET_DEVICE: AtomicUsize = AtomicUsize::new(0);

/// The device of the calling thread's current context (0 if the driver
/// cannot say).
fn current_device() -> u32 {
    let mut f = CTX_GET_DEVICE.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlopen with RTLD_NOLOAD only returns a handle of a library
        // already loaded (the driver, which the call just went to).
        let h = unsafe {
            libc::dlopen(
                c"libcuda.so.1".as_ptr(),
                libc::RTLD_LAZY | libc::RTLD_NOLOAD,
            )
        };
        let p = if h.is_null() {
            0
        } else {
            crate::dl::symbol_in(h, c"cuCtxGetDevice")
        };
        f = if p == 0 { 1 } else { p };
        CTX_GET_DEVICE.store(f, Ordering::Release);
    }
    if f == 1 {
        return 0;
    }
    // SAFETY: the driver's cuCtxGetDevice(CUdevice *).
    let get =
        unsafe { core::mem::transmute::<usize, unsafe extern "C" fn(*mut c_int) -> CUresult>(f) };
    let mut device: c_int = 0;
    // SAFETY: a valid out pointer.
    if unsafe { get(&mut device) } == 0 && device >= 0 {
        device as u32
    } else {
        0
    }
}

/// Reads the pointer a successful allocation wrote.
fn out<T: Copy + Default>(p: *const T, result: CUresult) -> T {
    if result != 0 || p.is_null() {
        return T::default();
    }
    // SAFETY: the driver wrote the out parameter on success.
    unsafe { *p }
}

/// `cuMemAlloc_v2`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> CUresult {
    let next = next_or!(
        Id::MemAlloc_v2,
        unsafe extern "C" fn(*mut CUdeviceptr, usize) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAlloc_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, size) };
    allocated(&call, r, memory::DEVICE, out(dptr, r), size as u64);
    r
}

/// `cuMemAllocPitch_v2`: the block is `*pitch * height` bytes.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocPitch_v2(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    element: c_uint,
) -> CUresult {
    let next = next_or!(
        Id::MemAllocPitch_v2,
        unsafe extern "C" fn(*mut CUdeviceptr, *mut usize, usize, usize, c_uint) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAllocPitch_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, pitch, width, height, element) };
    let size = if r == 0 {
        out(pitch, r).saturating_mul(height)
    } else {
        width.saturating_mul(height)
    };
    allocated(&call, r, memory::DEVICE, out(dptr, r), size as u64);
    r
}

/// `cuMemFree_v2` (device, managed and pool memory alike).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    let next = next_or!(
        Id::MemFree_v2,
        unsafe extern "C" fn(CUdeviceptr) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemFree_v2");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(dptr) };
    freed(&call, r, memory::DEVICE, dptr);
    r
}

/// `cuMemAllocManaged`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocManaged(
    dptr: *mut CUdeviceptr,
    size: usize,
    flags: c_uint,
) -> CUresult {
    let next = next_or!(
        Id::MemAllocManaged,
        unsafe extern "C" fn(*mut CUdeviceptr, usize, c_uint) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAllocManaged");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, size, flags) };
    allocated(&call, r, memory::MANAGED, out(dptr, r), size as u64);
    r
}

/// `cuMemAllocHost_v2`: pinned host memory.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocHost_v2(pp: *mut *mut c_void, size: usize) -> CUresult {
    let next = next_or!(
        Id::MemAllocHost_v2,
        unsafe extern "C" fn(*mut *mut c_void, usize) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAllocHost_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(pp, size) };
    allocated(
        &call,
        r,
        memory::HOST_PINNED,
        out(pp, r) as u64,
        size as u64,
    );
    r
}

/// `cuMemHostAlloc`: pinned host memory.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostAlloc(
    pp: *mut *mut c_void,
    size: usize,
    flags: c_uint,
) -> CUresult {
    let next = next_or!(
        Id::MemHostAlloc,
        unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemHostAlloc");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(pp, size, flags) };
    allocated(
        &call,
        r,
        memory::HOST_PINNED,
        out(pp, r) as u64,
        size as u64,
    );
    r
}

/// `cuMemFreeHost`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    let next = next_or!(
        Id::MemFreeHost,
        unsafe extern "C" fn(*mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemFreeHost");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(p) };
    freed(&call, r, memory::HOST_PINNED, p as u64);
    r
}

type AllocAsync = unsafe extern "C" fn(*mut CUdeviceptr, usize, *mut c_void) -> CUresult;
type AllocFromPool =
    unsafe extern "C" fn(*mut CUdeviceptr, usize, *mut c_void, *mut c_void) -> CUresult;
type FreeAsync = unsafe extern "C" fn(CUdeviceptr, *mut c_void) -> CUresult;

/// `cuMemAllocAsync` (legacy default stream).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    size: usize,
    stream: *mut c_void,
) -> CUresult {
    let next = next_or!(Id::MemAllocAsync, AllocAsync, CUDA_ERROR_NOT_INITIALIZED);
    let call = DriverCall::enter("cuMemAllocAsync");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, size, stream) };
    allocated(&call, r, memory::POOL, out(dptr, r), size as u64);
    r
}

/// `cuMemAllocAsync_ptsz` (per-thread default stream).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync_ptsz(
    dptr: *mut CUdeviceptr,
    size: usize,
    stream: *mut c_void,
) -> CUresult {
    let next = next_or!(
        Id::MemAllocAsync_ptsz,
        AllocAsync,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAllocAsync_ptsz");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, size, stream) };
    allocated(&call, r, memory::POOL, out(dptr, r), size as u64);
    r
}

/// `cuMemAllocFromPoolAsync`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: *mut c_void,
    stream: *mut c_void,
) -> CUresult {
    let next = next_or!(
        Id::MemAllocFromPoolAsync,
        AllocFromPool,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAllocFromPoolAsync");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, size, pool, stream) };
    allocated(&call, r, memory::POOL, out(dptr, r), size as u64);
    r
}

/// `cuMemAllocFromPoolAsync_ptsz`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync_ptsz(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: *mut c_void,
    stream: *mut c_void,
) -> CUresult {
    let next = next_or!(
        Id::MemAllocFromPoolAsync_ptsz,
        AllocFromPool,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemAllocFromPoolAsync_ptsz");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, size, pool, stream) };
    allocated(&call, r, memory::POOL, out(dptr, r), size as u64);
    r
}

/// `cuMemFreeAsync`: recorded when called (stream-ordered: the memory
/// goes back to its pool when the stream reaches the free).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, stream: *mut c_void) -> CUresult {
    let next = next_or!(Id::MemFreeAsync, FreeAsync, CUDA_ERROR_NOT_INITIALIZED);
    let call = DriverCall::enter("cuMemFreeAsync");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, stream) };
    freed(&call, r, memory::POOL, dptr);
    r
}

/// `cuMemFreeAsync_ptsz`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeAsync_ptsz(dptr: CUdeviceptr, stream: *mut c_void) -> CUresult {
    let next = next_or!(Id::MemFreeAsync_ptsz, FreeAsync, CUDA_ERROR_NOT_INITIALIZED);
    let call = DriverCall::enter("cuMemFreeAsync_ptsz");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(dptr, stream) };
    freed(&call, r, memory::POOL, dptr);
    r
}
