//! Vulkan: `vkAllocateMemory` and `vkFreeMemory`, however the program
//! reaches them.
//!
//! The loader exports both, as trampolines that dispatch on the device;
//! but volk, engines and every dispatch-table user call the driver's own
//! functions, from `vkGetDeviceProcAddr`, which an interposer of the
//! exported names never sees (the same story as CUDA's
//! `cuGetProcAddress`). So the shim also wraps `vkGetDeviceProcAddr` and
//! `vkGetInstanceProcAddr`: asked for the two functions, they hand out our
//! wrappers, remembering the driver's function per device (two devices of
//! two drivers have two), and asked for `vkGetDeviceProcAddr` they hand
//! out ours.
//!
//! An allocation is an event of memory kind `VULKAN` keyed by its
//! `VkDeviceMemory`, with the size asked for (an import of external
//! memory, by file descriptor or host pointer, with no bytes: it is not
//! new memory) and the stack; a failure (`VK_ERROR_OUT_OF_DEVICE_MEMORY`)
//! a failed allocation. Not seen: sub-allocations inside a block (VMA and
//! engines carve buffers out of large `vkAllocateMemory` blocks), and the
//! driver's internal memory (`VK_EXT_device_memory_report`).

#![allow(non_snake_case)]

use core::ffi::{CStr, c_char, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use memtally_alloc::device::{DeviceEvent, memory, op};

use crate::call::DriverCall;
use crate::slot::{next_or, slots};

type VkResult = i32;
type Allocate =
    unsafe extern "C" fn(*mut c_void, *const c_void, *const c_void, *mut u64) -> VkResult;
type Free = unsafe extern "C" fn(*mut c_void, u64, *const c_void);
type ProcAddr = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// `VK_ERROR_INITIALIZATION_FAILED`: no function to call.
const INITIALIZATION_FAILED: VkResult = -3;

slots! {
    AllocateMemory = c"vkAllocateMemory" in b"libvulkan.so" => vkAllocateMemory;
    FreeMemory = c"vkFreeMemory" in b"libvulkan.so" => vkFreeMemory;
    GetDeviceProcAddr = c"vkGetDeviceProcAddr" in b"libvulkan.so" => vkGetDeviceProcAddr;
    GetInstanceProcAddr = c"vkGetInstanceProcAddr" in b"libvulkan.so" => vkGetInstanceProcAddr;
}

/// Devices whose driver functions were handed out: the device, and its
/// allocate and free functions. Lock-free (a slot is claimed by a
/// compare-and-swap of its device), so that a call can never wait here,
/// not even in a child forked while another thread was inside.
const MAX_DEVICES: usize = 16;
struct DeviceFunctions {
    device: AtomicUsize,
    allocate: AtomicUsize,
    free: AtomicUsize,
}
static DEVICES: [DeviceFunctions; MAX_DEVICES] = [const {
    DeviceFunctions {
        device: AtomicUsize::new(0),
        allocate: AtomicUsize::new(0),
        free: AtomicUsize::new(0),
    }
}; MAX_DEVICES];

/// Remembers `device`'s driver function (`free`: which one); false when
/// the table is full (the caller then hands out the driver's function
/// itself, unrecorded).
fn remember(device: *mut c_void, real: usize, free: bool) -> bool {
    let d = device as usize;
    let slot = DEVICES
        .iter()
        .find(|e| e.device.load(Ordering::Acquire) == d)
        .or_else(|| {
            DEVICES.iter().find(|e| {
                e.device
                    .compare_exchange(0, d, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
        });
    let Some(slot) = slot else {
        return false;
    };
    if free {
        slot.free.store(real, Ordering::Release);
    } else {
        slot.allocate.store(real, Ordering::Release);
    }
    true
}

/// `device`'s driver function, else the loader's trampoline (which
/// dispatches on the device), else 0.
fn driver_function(device: *mut c_void, free: bool) -> usize {
    let d = device as usize;
    let found = DEVICES
        .iter()
        .find(|e| e.device.load(Ordering::Acquire) == d)
        .map(|e| {
            if free {
                e.free.load(Ordering::Acquire)
            } else {
                e.allocate.load(Ordering::Acquire)
            }
        })
        .filter(|&f| f != 0);
    found.unwrap_or_else(|| {
        let id = if free {
            Id::FreeMemory
        } else {
            Id::AllocateMemory
        };
        SLOTS[id as usize].next()
    })
}

/// `VkMemoryAllocateInfo`'s start.
#[repr(C)]
struct AllocateInfo {
    s_type: i32,
    next: *const c_void,
    size: u64,
}

/// The header of every structure in a `pNext` chain.
#[repr(C)]
struct ChainLink {
    s_type: i32,
    next: *const ChainLink,
}

/// `VK_STRUCTURE_TYPE_IMPORT_MEMORY_FD_INFO_KHR`,
/// `..._IMPORT_MEMORY_HOST_POINTER_INFO_EXT`,
/// `..._IMPORT_MEMORY_WIN32_HANDLE_INFO_KHR`,
/// `..._IMPORT_ANDROID_HARDWARE_BUFFER_INFO_ANDROID`.
const IMPORTS: [i32; 4] = [1_000_074_000, 1_000_178_001, 1_000_073_000, 1_000_129_003];

/// The bytes an allocation asks for (0 for an import), from its info.
fn requested(info: *const c_void) -> (u64, bool) {
    if info.is_null() {
        return (0, false);
    }
    // SAFETY: the driver accepted (or at least was given) a valid
    // VkMemoryAllocateInfo, whose pNext chain is a list of structures that
    // start with sType and pNext.
    unsafe {
        let info = &*(info as *const AllocateInfo);
        let mut link = info.next as *const ChainLink;
        let mut links = 0;
        while !link.is_null() && links < 64 {
            if IMPORTS.contains(&(*link).s_type) {
                return (info.size, true);
            }
            link = (*link).next;
            links += 1;
        }
        (info.size, false)
    }
}

/// Calls `real` and records what it did.
///
/// # Safety
/// `real` is a driver's or the loader's `vkAllocateMemory`; the rest are
/// the caller's arguments.
unsafe fn allocate(
    real: usize,
    device: *mut c_void,
    info: *const c_void,
    allocator: *const c_void,
    out: *mut u64,
) -> VkResult {
    if real == 0 {
        return INITIALIZATION_FAILED;
    }
    // SAFETY: see above.
    let real = unsafe { core::mem::transmute::<usize, Allocate>(real) };
    let call = DriverCall::enter("vkAllocateMemory");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { real(device, info, allocator, out) };
    if call.records() {
        let (size, import) = requested(info);
        let ok = r == 0 && !out.is_null();
        // SAFETY: the driver wrote the handle on success.
        let handle = if ok { unsafe { *out } } else { 0 };
        memtally_alloc::device::record(&DeviceEvent {
            op: if ok { op::ALLOC } else { op::FAILED },
            memory: memory::VULKAN,
            device: 0,
            api: call.api(),
            address: handle,
            size: if ok && import { 0 } else { size },
            handle: 0,
        });
    }
    r
}

/// Calls `real` and records the free.
///
/// # Safety
/// `real` is a driver's or the loader's `vkFreeMemory`; the rest are the
/// caller's arguments.
unsafe fn free(real: usize, device: *mut c_void, memory_handle: u64, allocator: *const c_void) {
    if real == 0 {
        return;
    }
    // SAFETY: see above.
    let real = unsafe { core::mem::transmute::<usize, Free>(real) };
    let call = DriverCall::enter_release("vkFreeMemory");
    // SAFETY: the caller's arguments, passed on.
    unsafe { real(device, memory_handle, allocator) };
    if call.records() && memory_handle != 0 {
        let event = DeviceEvent {
            op: op::FREE,
            memory: memory::VULKAN,
            device: 0,
            api: call.api(),
            address: memory_handle,
            size: 0,
            handle: 0,
        };
        memtally_alloc::device::record_at(&event, call.released());
    }
}

/// `vkAllocateMemory`: the loader's export, or what
/// `vkGetInstanceProcAddr` handed out (both dispatch on the device).
///
/// # Safety
/// As Vulkan's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vkAllocateMemory(
    device: *mut c_void,
    info: *const c_void,
    allocator: *const c_void,
    out: *mut u64,
) -> VkResult {
    let real = SLOTS[Id::AllocateMemory as usize].next();
    // SAFETY: the loader's function, the caller's arguments.
    unsafe { allocate(real, device, info, allocator, out) }
}

/// `vkFreeMemory`, as [`vkAllocateMemory`].
///
/// # Safety
/// As Vulkan's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vkFreeMemory(
    device: *mut c_void,
    memory_handle: u64,
    allocator: *const c_void,
) {
    let real = SLOTS[Id::FreeMemory as usize].next();
    // SAFETY: the loader's function, the caller's arguments.
    unsafe { free(real, device, memory_handle, allocator) }
}

/// What `vkGetDeviceProcAddr` hands out for `vkAllocateMemory`: calls the
/// device's driver function.
unsafe extern "C" fn device_allocate(
    device: *mut c_void,
    info: *const c_void,
    allocator: *const c_void,
    out: *mut u64,
) -> VkResult {
    // SAFETY: the device's driver function, the caller's arguments.
    unsafe { allocate(driver_function(device, false), device, info, allocator, out) }
}

/// What `vkGetDeviceProcAddr` hands out for `vkFreeMemory`.
unsafe extern "C" fn device_free(
    device: *mut c_void,
    memory_handle: u64,
    allocator: *const c_void,
) {
    // SAFETY: the device's driver function, the caller's arguments.
    unsafe {
        free(
            driver_function(device, true),
            device,
            memory_handle,
            allocator,
        )
    }
}

/// `vkGetDeviceProcAddr`: the driver's allocation functions swapped for
/// ours, remembered per device.
///
/// # Safety
/// As Vulkan's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vkGetDeviceProcAddr(
    device: *mut c_void,
    name: *const c_char,
) -> *mut c_void {
    let next = next_or!(Id::GetDeviceProcAddr, ProcAddr, core::ptr::null_mut());
    // SAFETY: the caller's arguments, passed on.
    let real = unsafe { next(device, name) };
    if real.is_null() || name.is_null() {
        return real;
    }
    // SAFETY: the caller's NUL-terminated name.
    let wanted = unsafe { CStr::from_ptr(name) }.to_bytes();
    match wanted {
        b"vkAllocateMemory" if remember(device, real as usize, false) => {
            device_allocate as *mut c_void
        }
        b"vkFreeMemory" if remember(device, real as usize, true) => device_free as *mut c_void,
        b"vkGetDeviceProcAddr" => {
            SLOTS[Id::GetDeviceProcAddr as usize].hand_out(real as usize) as *mut c_void
        }
        _ => real,
    }
}

/// `vkGetInstanceProcAddr`: the loader's trampolines of the allocation
/// functions, and `vkGetDeviceProcAddr`, swapped for ours.
///
/// # Safety
/// As Vulkan's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vkGetInstanceProcAddr(
    instance: *mut c_void,
    name: *const c_char,
) -> *mut c_void {
    let next = next_or!(Id::GetInstanceProcAddr, ProcAddr, core::ptr::null_mut());
    // SAFETY: the caller's arguments, passed on.
    let real = unsafe { next(instance, name) };
    if real.is_null() || name.is_null() {
        return real;
    }
    // SAFETY: the caller's NUL-terminated name.
    let wanted = unsafe { CStr::from_ptr(name) }.to_bytes();
    let id = match wanted {
        b"vkAllocateMemory" => Id::AllocateMemory,
        b"vkFreeMemory" => Id::FreeMemory,
        b"vkGetDeviceProcAddr" => Id::GetDeviceProcAddr,
        b"vkGetInstanceProcAddr" => Id::GetInstanceProcAddr,
        _ => return real,
    };
    SLOTS[id as usize].hand_out(real as usize) as *mut c_void
}
