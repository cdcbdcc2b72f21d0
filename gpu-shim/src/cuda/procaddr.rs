//! `cuGetProcAddress` and `cuGetProcAddress_v2`: how the CUDA runtime
//! (dynamic and static), NCCL and `cudaGetDriverEntryPoint` users get every
//! driver function. The wrappers call the driver, then swap the function
//! it handed out for our wrapper of the same ABI, chosen from the table
//! below by base name, requested version and the per-thread-default-stream
//! flag, and make that wrapper call exactly what the driver handed out.
//!
//! The table is data: the version at which each ABI starts (the `_vNNNN`
//! of `cudaTypedefs.h`'s `PFN_` types). A version below every entry of a
//! name (`cuMemAlloc` before 3020 is the 32-bit v1) is passed through
//! untouched, as is any name not in the table.

#![allow(non_snake_case)]

use core::ffi::{CStr, c_char, c_int, c_void};

use super::{CUDA_ERROR_NOT_INITIALIZED, Id, SLOTS, next_or};

/// `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`.
const PER_THREAD_DEFAULT_STREAM: u64 = 2;

/// One ABI of a driver function.
struct Abi {
    /// The name asked for (without `_vN`).
    base: &'static [u8],
    /// The first CUDA version with this ABI.
    since: c_int,
    /// For functions with a per-thread-default-stream twin: which one this
    /// is. None: the flag does not matter.
    per_thread: Option<bool>,
    /// Our wrapper's slot.
    slot: Id,
}

const fn abi(base: &'static [u8], since: c_int, per_thread: Option<bool>, slot: Id) -> Abi {
    Abi {
        base,
        since,
        per_thread,
        slot,
    }
}

/// Newer ABIs of a name before older ones: the first match wins.
static ABIS: &[Abi] = &[
    abi(b"cuMemAlloc", 3020, None, Id::MemAlloc_v2),
    abi(b"cuMemAllocPitch", 3020, None, Id::MemAllocPitch_v2),
    abi(b"cuMemFree", 3020, None, Id::MemFree_v2),
    abi(b"cuMemAllocManaged", 6000, None, Id::MemAllocManaged),
    abi(b"cuMemAllocHost", 3020, None, Id::MemAllocHost_v2),
    abi(b"cuMemHostAlloc", 2020, None, Id::MemHostAlloc),
    abi(b"cuMemFreeHost", 2000, None, Id::MemFreeHost),
    abi(b"cuMemAllocAsync", 11020, Some(false), Id::MemAllocAsync),
    abi(
        b"cuMemAllocAsync",
        11020,
        Some(true),
        Id::MemAllocAsync_ptsz,
    ),
    abi(
        b"cuMemAllocFromPoolAsync",
        11020,
        Some(false),
        Id::MemAllocFromPoolAsync,
    ),
    abi(
        b"cuMemAllocFromPoolAsync",
        11020,
        Some(true),
        Id::MemAllocFromPoolAsync_ptsz,
    ),
    abi(b"cuMemFreeAsync", 11020, Some(false), Id::MemFreeAsync),
    abi(b"cuMemFreeAsync", 11020, Some(true), Id::MemFreeAsync_ptsz),
    abi(b"cuMemPoolCreate", 11020, None, Id::MemPoolCreate),
    abi(b"cuMemPoolDestroy", 11020, None, Id::MemPoolDestroy),
    abi(b"cuMemPoolTrimTo", 11020, None, Id::MemPoolTrimTo),
    abi(b"cuMemAddressReserve", 10020, None, Id::MemAddressReserve),
    abi(b"cuMemAddressFree", 10020, None, Id::MemAddressFree),
    abi(b"cuMemCreate", 10020, None, Id::MemCreate),
    abi(b"cuMemRelease", 10020, None, Id::MemRelease),
    abi(b"cuMemMap", 10020, None, Id::MemMap),
    abi(b"cuMemUnmap", 10020, None, Id::MemUnmap),
    abi(
        b"cuMemRetainAllocationHandle",
        11000,
        None,
        Id::MemRetainAllocationHandle,
    ),
    abi(
        b"cuMemImportFromShareableHandle",
        10020,
        None,
        Id::MemImportFromShareableHandle,
    ),
    abi(b"cuMemHostRegister", 6050, None, Id::MemHostRegister_v2),
    abi(b"cuMemHostUnregister", 4000, None, Id::MemHostUnregister),
    abi(b"cuArrayCreate", 3020, None, Id::ArrayCreate_v2),
    abi(b"cuArray3DCreate", 3020, None, Id::Array3DCreate_v2),
    abi(b"cuArrayDestroy", 2000, None, Id::ArrayDestroy),
    abi(b"cuIpcOpenMemHandle", 11000, None, Id::IpcOpenMemHandle_v2),
    abi(b"cuIpcCloseMemHandle", 4010, None, Id::IpcCloseMemHandle),
    abi(
        b"cuMipmappedArrayCreate",
        5000,
        None,
        Id::MipmappedArrayCreate,
    ),
    abi(
        b"cuMipmappedArrayDestroy",
        5000,
        None,
        Id::MipmappedArrayDestroy,
    ),
    abi(
        b"cuMemPoolImportPointer",
        11020,
        None,
        Id::MemPoolImportPointer,
    ),
    abi(
        b"cuExternalMemoryGetMappedBuffer",
        10000,
        None,
        Id::ExternalMemoryGetMappedBuffer,
    ),
    abi(
        b"cuExternalMemoryGetMappedMipmappedArray",
        10000,
        None,
        Id::ExternalMemoryGetMappedMipmappedArray,
    ),
    abi(b"cuGetProcAddress", 12000, None, Id::GetProcAddress_v2),
    abi(b"cuGetProcAddress", 11030, None, Id::GetProcAddress),
];

/// The driver handed out `*pfn` for (`symbol`, `version`, `flags`): put
/// our wrapper in its place if we wrap that ABI.
fn swap(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: u64) {
    if symbol.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: the driver succeeded, so `pfn` holds what it handed out and
    // `symbol` is the caller's NUL-terminated name.
    let (name, real) = unsafe { (CStr::from_ptr(symbol).to_bytes(), *pfn as usize) };
    if real == 0 {
        return;
    }
    let per_thread = flags & PER_THREAD_DEFAULT_STREAM != 0;
    let Some(abi) = ABIS.iter().find(|a| {
        a.base == name && version >= a.since && a.per_thread.is_none_or(|p| p == per_thread)
    }) else {
        return;
    };
    let w = SLOTS[abi.slot as usize].hand_out(real);
    // SAFETY: as above; the wrapper has the ABI asked for.
    unsafe { *pfn = w as *mut c_void };
}

/// `cuGetProcAddress_v2` (CUDA 12 and later; `cuGetProcAddress` in
/// `cuda.h` is a macro for it).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut c_int,
) -> c_int {
    let next = next_or!(
        Id::GetProcAddress_v2,
        unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> c_int,
        CUDA_ERROR_NOT_INITIALIZED
    );
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(symbol, pfn, version, flags, status) };
    if r == 0 {
        swap(symbol, pfn, version, flags);
    }
    r
}

/// `cuGetProcAddress`, the CUDA 11.3 ABI (no status argument).
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> c_int {
    let next = next_or!(
        Id::GetProcAddress,
        unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64) -> c_int,
        CUDA_ERROR_NOT_INITIALIZED
    );
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(symbol, pfn, version, flags) };
    if r == 0 {
        swap(symbol, pfn, version, flags);
    }
    r
}
