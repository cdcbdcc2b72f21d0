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

use super::{CUDA_ERROR_NOT_INITIALIZED, Id, SLOTS, next_or, pools};
use crate::call::DriverCall;

pub(crate) type CUresult = c_int;
pub(super) type CUdeviceptr = u64;

/// Records an allocation of `size` bytes at `address` (a failure when
/// `result` is not success) on the current context's device.
pub(super) fn allocated(call: &DriverCall, result: CUresult, kind: u8, address: u64, size: u64) {
    if !call.records() {
        return;
    }
    let device = if memory_on_host(kind) {
        HOST
    } else {
        current_device()
    };
    allocated_on(call, result, kind, device, address, size);
}

/// Records an allocation (or failure) on `device`.
pub(crate) fn allocated_on(
    call: &DriverCall,
    result: CUresult,
    kind: u8,
    device: u32,
    address: u64,
    size: u64,
) {
    if !call.records() {
        return;
    }
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
        handle: 0,
    });
    sample_driver_used(call);
}

/// Records the free of `address`.
pub(crate) fn freed(call: &DriverCall, result: CUresult, kind: u8, address: u64) {
    if result != 0 || address == 0 || !call.records() {
        return;
    }
    let event = DeviceEvent {
        op: op::FREE,
        memory: kind,
        device: if memory_on_host(kind) { HOST } else { 0 },
        api: call.api(),
        address,
        size: 0,
        handle: 0,
    };
    memtally_alloc::device::record_at(&event, call.released());
    if !memory_on_host(kind) {
        sample_driver_used(call);
    }
}

fn memory_on_host(kind: u8) -> bool {
    memtally_alloc::trace::device::host_side(kind)
}

/// A driver function we call ourselves (not a wrapped one): found once in
/// the loaded `libcuda.so.1` and kept in `cache` (1: there is none).
pub(super) fn driver_function(cache: &AtomicUsize, name: &core::ffi::CStr) -> Option<usize> {
    let mut f = cache.load(Ordering::Acquire);
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
            crate::dl::symbol_in(h, name)
        };
        f = if p == 0 { 1 } else { p };
        cache.store(f, Ordering::Release);
    }
    (f != 1).then_some(f)
}

/// `driver_fn!(c"cuName", unsafe extern "C" fn(...) -> CUresult)`: the
/// loaded driver's own `cuName` as a function of that type, found once
/// (a static per call site, through [`driver_function`]); None when the
/// driver has none. The type must be the driver's signature for the name
/// (`cuda.h`): that is what makes the conversion sound.
macro_rules! driver_fn {
    ($name:literal, $ty:ty) => {{
        static CACHE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        $crate::cuda::driver::driver_function(&CACHE, $name)
            // SAFETY: a function of the loaded driver, of the signature the
            // macro's caller gives for it (see above).
            .map(|f| unsafe { core::mem::transmute::<usize, $ty>(f) })
    }};
}
pub(crate) use driver_fn;

/// The device of the calling thread's current context (0 if the driver
/// cannot say).
pub(crate) fn current_device() -> u32 {
    let Some(get) = driver_fn!(
        c"cuCtxGetDevice",
        unsafe extern "C" fn(*mut c_int) -> CUresult
    ) else {
        return 0;
    };
    let mut device: c_int = 0;
    // SAFETY: a valid out pointer.
    let device = if unsafe { get(&mut device) } == 0 && device >= 0 {
        device as u32
    } else {
        0
    };
    LAST_DEVICE.with(|d| d.set(device));
    device
}

thread_local! {
    /// The device `current_device` last found on this thread: where a
    /// free (which does not ask) most likely is, for deciding whether the
    /// driver's figure is due.
    static LAST_DEVICE: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Reads the pointer a successful allocation wrote.
pub(super) fn out<T: Copy + Default>(p: *const T, result: CUresult) -> T {
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
    let call = DriverCall::enter_release("cuMemFree_v2");
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
    let call = DriverCall::enter_release("cuMemFreeHost");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(p) };
    freed(&call, r, memory::HOST_PINNED, p as u64);
    r
}

type AllocAsync = unsafe extern "C" fn(*mut CUdeviceptr, usize, *mut c_void) -> CUresult;
type AllocFromPool =
    unsafe extern "C" fn(*mut CUdeviceptr, usize, *mut c_void, *mut c_void) -> CUresult;
type FreeAsync = unsafe extern "C" fn(CUdeviceptr, *mut c_void) -> CUresult;

/// The stream-ordered calls come in twins, for the legacy and the
/// per-thread default stream (`_ptsz`): one definition each.
macro_rules! stream_ordered {
    ($(#[$doc:meta])* alloc $name:ident, $id:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the driver's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            dptr: *mut CUdeviceptr,
            size: usize,
            stream: *mut c_void,
        ) -> CUresult {
            let next = next_or!(Id::$id, AllocAsync, CUDA_ERROR_NOT_INITIALIZED);
            let call = DriverCall::enter(stringify!($name));
            // SAFETY: the caller's arguments, passed on.
            let r = unsafe { next(dptr, size, stream) };
            if call.records() {
                let (pool, device) = pools::current_pool();
                pools::follow(pool, device);
                allocated_on(&call, r, memory::POOL, device, out(dptr, r), size as u64);
                pools::sample(&call);
            }
            r
        }
    };
    ($(#[$doc:meta])* from_pool $name:ident, $id:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the driver's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            dptr: *mut CUdeviceptr,
            size: usize,
            pool: *mut c_void,
            stream: *mut c_void,
        ) -> CUresult {
            let next = next_or!(Id::$id, AllocFromPool, CUDA_ERROR_NOT_INITIALIZED);
            let call = DriverCall::enter(stringify!($name));
            // SAFETY: the caller's arguments, passed on.
            let r = unsafe { next(dptr, size, pool, stream) };
            if call.records() {
                pools::follow(pool as usize, current_device());
                allocated(&call, r, memory::POOL, out(dptr, r), size as u64);
                pools::sample(&call);
            }
            r
        }
    };
    ($(#[$doc:meta])* free $name:ident, $id:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the driver's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(dptr: CUdeviceptr, stream: *mut c_void) -> CUresult {
            let next = next_or!(Id::$id, FreeAsync, CUDA_ERROR_NOT_INITIALIZED);
            let call = DriverCall::enter_release(stringify!($name));
            // SAFETY: the caller's arguments, passed on.
            let r = unsafe { next(dptr, stream) };
            freed(&call, r, memory::POOL, dptr);
            pools::sample(&call);
            r
        }
    };
}

stream_ordered!(
    /// `cuMemAllocAsync` (legacy default stream): from the current
    /// device's current pool.
    alloc cuMemAllocAsync, MemAllocAsync
);
stream_ordered!(
    /// `cuMemAllocAsync_ptsz` (per-thread default stream).
    alloc cuMemAllocAsync_ptsz, MemAllocAsync_ptsz
);
stream_ordered!(
    /// `cuMemAllocFromPoolAsync`.
    from_pool cuMemAllocFromPoolAsync, MemAllocFromPoolAsync
);
stream_ordered!(
    /// `cuMemAllocFromPoolAsync_ptsz`.
    from_pool cuMemAllocFromPoolAsync_ptsz, MemAllocFromPoolAsync_ptsz
);
stream_ordered!(
    /// `cuMemFreeAsync`: recorded when called (stream-ordered: the memory
    /// goes back to its pool when the stream reaches the free).
    free cuMemFreeAsync, MemFreeAsync
);
stream_ordered!(
    /// `cuMemFreeAsync_ptsz`.
    free cuMemFreeAsync_ptsz, MemFreeAsync_ptsz
);

/// `cuMemHostRegister_v2`: memory the program allocated, pinned for the
/// device (recorded apart: it is already counted where it was allocated).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostRegister_v2(
    p: *mut c_void,
    size: usize,
    flags: c_uint,
) -> CUresult {
    let next = next_or!(
        Id::MemHostRegister_v2,
        unsafe extern "C" fn(*mut c_void, usize, c_uint) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemHostRegister_v2");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(p, size, flags) };
    allocated(&call, r, memory::HOST_REGISTERED, p as u64, size as u64);
    r
}

/// `cuMemHostUnregister`.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemHostUnregister(p: *mut c_void) -> CUresult {
    let next = next_or!(
        Id::MemHostUnregister,
        unsafe extern "C" fn(*mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter_release("cuMemHostUnregister");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(p) };
    freed(&call, r, memory::HOST_REGISTERED, p as u64);
    r
}

/// Devices whose samples are timed apart (beyond: they share the last).
const INFO_DEVICES: usize = 16;
/// When each device's figure was last sampled (monotonic ns).
static LAST_INFO_NS: [core::sync::atomic::AtomicU64; INFO_DEVICES] =
    [const { core::sync::atomic::AtomicU64::new(0) }; INFO_DEVICES];
/// The least time between two samples of a device.
const INFO_EVERY_NS: u64 = 100_000_000;

/// After a recorded allocation or free: at most every 100 ms per device,
/// what the driver says is in use on the calling thread's device
/// (`cuMemGetInfo_v2`, total less free: the context's own memory with
/// everything allocated), as a level (`memory::DRIVER_USED`), asked from
/// the caller's thread where its context is current.
pub(super) fn sample_driver_used(call: &DriverCall) {
    if !call.records() {
        return;
    }
    // The device this thread last allocated on (an allocation just asked;
    // a free did not): most calls pay a clock read and a load.
    let likely = LAST_DEVICE.with(core::cell::Cell::get);
    let slot = &LAST_INFO_NS[(likely as usize).min(INFO_DEVICES - 1)];
    let now = monotonic_ns();
    let last = slot.load(Ordering::Relaxed);
    if last != 0 && now < last + INFO_EVERY_NS {
        return;
    }
    if slot
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return; // another thread samples
    }
    let Some(info) = driver_fn!(
        c"cuMemGetInfo_v2",
        unsafe extern "C" fn(*mut usize, *mut usize) -> CUresult
    ) else {
        return;
    };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out pointers.
    if unsafe { info(&mut free, &mut total) } != 0 {
        return;
    }
    // The figure is of the current context's device, whichever it is now.
    let device = current_device();
    memtally_alloc::device::record(&DeviceEvent {
        op: op::GAUGE,
        memory: memory::DRIVER_USED,
        device,
        api: call.api(),
        address: u64::from(device),
        size: total.saturating_sub(free) as u64,
        handle: 0,
    });
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
