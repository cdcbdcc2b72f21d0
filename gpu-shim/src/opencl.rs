//! OpenCL: buffers and shared virtual memory, through the ICD loader's
//! exports (`libOpenCL.so.1`, which programs link or `dlopen`; it
//! dispatches to the vendor's implementation).
//!
//! A buffer (`clCreateBuffer`, `clCreateBufferWithProperties`,
//! `clCreateSubBuffer`) is an event of memory kind `OPENCL` keyed by its
//! `cl_mem`, with the creating stack. Its free is not `clReleaseMemObject`,
//! which only drops a reference: the shim registers a destructor callback
//! on each object it records (`clSetMemObjectDestructorCallback`, OpenCL
//! 1.1), which the implementation calls once, at the final release, before
//! the object is gone (on whichever thread released it last). A
//! sub-buffer shares its parent's storage and a `CL_MEM_USE_HOST_PTR`
//! buffer the program's memory: both are recorded with no bytes, so that
//! leaks of them still show. SVM (`clSVMAlloc`, `clSVMFree`,
//! `clEnqueueSVMFree` without a callback: freed when enqueued) is keyed by
//! its pointer.
//!
//! Not seen: images and pipes (`clCreateImage*`, `clCreatePipe`), and the
//! USM extension allocators (`clDeviceMemAllocINTEL`...), found through
//! `clGetExtensionFunctionAddressForPlatform`.

#![allow(non_snake_case)]

use core::ffi::{c_uint, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use memtally_alloc::device::{DeviceEvent, memory, op};

use crate::call::DriverCall;
use crate::slot::{next_or, slots};

type ClInt = i32;
type ClMem = *mut c_void;
type Destructor = unsafe extern "C" fn(ClMem, *mut c_void);

/// `CL_MEM_USE_HOST_PTR`: the buffer is the program's own memory.
const USE_HOST_PTR: u64 = 1 << 3;
/// `CL_OUT_OF_HOST_MEMORY`: what our wrappers return without a library.
const OUT_OF_HOST_MEMORY: ClInt = -6;

slots! {
    CreateBuffer = c"clCreateBuffer" in b"libOpenCL.so" => clCreateBuffer;
    CreateBufferWithProperties = c"clCreateBufferWithProperties" in b"libOpenCL.so" => clCreateBufferWithProperties;
    CreateSubBuffer = c"clCreateSubBuffer" in b"libOpenCL.so" => clCreateSubBuffer;
    SVMAlloc = c"clSVMAlloc" in b"libOpenCL.so" => clSVMAlloc;
    SVMFree = c"clSVMFree" in b"libOpenCL.so" => clSVMFree;
    EnqueueSVMFree = c"clEnqueueSVMFree" in b"libOpenCL.so" => clEnqueueSVMFree;
}

/// The library's `clSetMemObjectDestructorCallback` (1: none).
static SET_DESTRUCTOR: AtomicUsize = AtomicUsize::new(0);

/// Records the creation of `object` (`size` bytes) and asks to be told of
/// its destruction. `real` is the function that created it: the callback
/// is registered with the same library.
fn created(call: &DriverCall, object: ClMem, size: u64, requested: u64, real: usize) {
    if !call.records() {
        return;
    }
    let failed = object.is_null();
    memtally_alloc::device::record(&DeviceEvent {
        op: if failed { op::FAILED } else { op::ALLOC },
        memory: memory::OPENCL,
        device: 0,
        api: call.api(),
        address: object as u64,
        size: if failed { requested } else { size },
        handle: 0,
    });
    if failed {
        return;
    }
    let Some(set) = sibling(&SET_DESTRUCTOR, real, c"clSetMemObjectDestructorCallback") else {
        return;
    };
    // SAFETY: the library's clSetMemObjectDestructorCallback(cl_mem,
    // void (*)(cl_mem, void *), void *).
    let set = unsafe {
        core::mem::transmute::<usize, unsafe extern "C" fn(ClMem, Destructor, *mut c_void) -> ClInt>(
            set,
        )
    };
    // SAFETY: a memory object the library just created; our callback
    // outlives it (it is a function of this library, never unloaded).
    unsafe { set(object, destroyed, core::ptr::null_mut()) };
}

/// The destructor callback: `object` is going, at its final release.
unsafe extern "C" fn destroyed(object: ClMem, _user: *mut c_void) {
    let call = DriverCall::enter_release("clReleaseMemObject");
    freed(&call, object as u64);
}

/// Records the free of the object or SVM pointer at `address`.
fn freed(call: &DriverCall, address: u64) {
    if !call.records() || address == 0 {
        return;
    }
    let event = DeviceEvent {
        op: op::FREE,
        memory: memory::OPENCL,
        device: 0,
        api: call.api(),
        address,
        size: 0,
        handle: 0,
    };
    memtally_alloc::device::record_at(&event, call.released());
}

/// `name` in the library that defines the function at `real` (a program
/// that `dlopen`ed the loader has it outside the global scope, where
/// `RTLD_NEXT` would not look), kept in `cache` (1: none).
fn sibling(cache: &AtomicUsize, real: usize, name: &core::ffi::CStr) -> Option<usize> {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        f = crate::dl::symbol_beside(real, name);
        if f == 0 {
            f = 1;
        }
        cache.store(f, Ordering::Release);
    }
    (f != 1).then_some(f)
}

/// `clCreateBuffer`.
///
/// # Safety
/// As OpenCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clCreateBuffer(
    context: *mut c_void,
    flags: u64,
    size: usize,
    host: *mut c_void,
    err: *mut ClInt,
) -> ClMem {
    type F = unsafe extern "C" fn(*mut c_void, u64, usize, *mut c_void, *mut ClInt) -> ClMem;
    let next = next_or!(Id::CreateBuffer, F, missing(err));
    let call = DriverCall::enter("clCreateBuffer");
    // SAFETY: the caller's arguments, passed on.
    let m = unsafe { next(context, flags, size, host, err) };
    let bytes = if flags & USE_HOST_PTR != 0 { 0 } else { size };
    created(&call, m, bytes as u64, size as u64, next as usize);
    m
}

/// `clCreateBufferWithProperties` (OpenCL 3.0).
///
/// # Safety
/// As OpenCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clCreateBufferWithProperties(
    context: *mut c_void,
    properties: *const u64,
    flags: u64,
    size: usize,
    host: *mut c_void,
    err: *mut ClInt,
) -> ClMem {
    type F =
        unsafe extern "C" fn(*mut c_void, *const u64, u64, usize, *mut c_void, *mut ClInt) -> ClMem;
    let next = next_or!(Id::CreateBufferWithProperties, F, missing(err));
    let call = DriverCall::enter("clCreateBufferWithProperties");
    // SAFETY: the caller's arguments, passed on.
    let m = unsafe { next(context, properties, flags, size, host, err) };
    let bytes = if flags & USE_HOST_PTR != 0 { 0 } else { size };
    created(&call, m, bytes as u64, size as u64, next as usize);
    m
}

/// `clCreateSubBuffer`: no bytes of its own (its parent's storage).
///
/// # Safety
/// As OpenCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clCreateSubBuffer(
    buffer: ClMem,
    flags: u64,
    kind: c_uint,
    info: *const c_void,
    err: *mut ClInt,
) -> ClMem {
    type F = unsafe extern "C" fn(ClMem, u64, c_uint, *const c_void, *mut ClInt) -> ClMem;
    let next = next_or!(Id::CreateSubBuffer, F, missing(err));
    let call = DriverCall::enter("clCreateSubBuffer");
    // SAFETY: the caller's arguments, passed on.
    let m = unsafe { next(buffer, flags, kind, info, err) };
    created(&call, m, 0, 0, next as usize);
    m
}

/// Sets `*err` as a call that found no library (null returned).
fn missing(err: *mut ClInt) -> ClMem {
    if !err.is_null() {
        // SAFETY: the caller's error out pointer.
        unsafe { *err = OUT_OF_HOST_MEMORY };
    }
    core::ptr::null_mut()
}

/// `clSVMAlloc` (OpenCL 2.0).
///
/// # Safety
/// As OpenCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clSVMAlloc(
    context: *mut c_void,
    flags: u64,
    size: usize,
    alignment: c_uint,
) -> *mut c_void {
    type F = unsafe extern "C" fn(*mut c_void, u64, usize, c_uint) -> *mut c_void;
    let next = next_or!(Id::SVMAlloc, F, core::ptr::null_mut());
    let call = DriverCall::enter("clSVMAlloc");
    // SAFETY: the caller's arguments, passed on.
    let p = unsafe { next(context, flags, size, alignment) };
    if call.records() {
        memtally_alloc::device::record(&DeviceEvent {
            op: if p.is_null() { op::FAILED } else { op::ALLOC },
            memory: memory::OPENCL,
            device: 0,
            api: call.api(),
            address: p as u64,
            size: size as u64,
            handle: 0,
        });
    }
    p
}

/// `clSVMFree`.
///
/// # Safety
/// As OpenCL's.
#[allow(clippy::unused_unit)] // `next_or!` returns `()` without a library
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clSVMFree(context: *mut c_void, p: *mut c_void) {
    type F = unsafe extern "C" fn(*mut c_void, *mut c_void);
    let next = next_or!(Id::SVMFree, F, ());
    let call = DriverCall::enter_release("clSVMFree");
    // SAFETY: the caller's arguments, passed on.
    unsafe { next(context, p) };
    freed(&call, p as u64);
}

/// `clEnqueueSVMFree`: without a callback the pointers are freed when the
/// queue reaches the command, recorded when it is enqueued (as a
/// stream-ordered free); with one, the callback frees them (its
/// `clSVMFree` is what is recorded).
///
/// # Safety
/// As OpenCL's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clEnqueueSVMFree(
    queue: *mut c_void,
    n: c_uint,
    pointers: *mut *mut c_void,
    callback: *mut c_void,
    user: *mut c_void,
    events: c_uint,
    wait: *const c_void,
    event: *mut c_void,
) -> ClInt {
    type F = unsafe extern "C" fn(
        *mut c_void,
        c_uint,
        *mut *mut c_void,
        *mut c_void,
        *mut c_void,
        c_uint,
        *const c_void,
        *mut c_void,
    ) -> ClInt;
    let next = next_or!(Id::EnqueueSVMFree, F, OUT_OF_HOST_MEMORY);
    let call = DriverCall::enter_release("clEnqueueSVMFree");
    // The pointers may be gone once the call returns: read them first.
    let mut gone = [0u64; 64];
    let count = if callback.is_null() && !pointers.is_null() {
        (n as usize).min(gone.len())
    } else {
        0
    };
    for (i, g) in gone.iter_mut().enumerate().take(count) {
        // SAFETY: the caller's array of `n` pointers.
        *g = unsafe { *pointers.add(i) } as u64;
    }
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(queue, n, pointers, callback, user, events, wait, event) };
    if r == 0 {
        for &p in &gone[..count] {
            freed(&call, p);
        }
    }
    r
}
