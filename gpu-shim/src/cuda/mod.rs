//! CUDA: the wrapped entry points and where each wrapper's real function
//! comes from.
//!
//! Each wrapped ABI name (`cuMemAlloc_v2`, `cuMemAllocAsync_ptsz`,
//! `cudaMalloc`, ...) has a [`Slot`]: the wrapper we export under that
//! name, and `next`, the function the wrapper calls. `next` is whatever
//! was found for that name last: the driver's function handed out by
//! `dlsym` or `cuGetProcAddress` (which the wrapper is handed out in place
//! of), or else the next definition after ours (a program linked with
//! `-lcuda` calls our export through the PLT).

mod driver;
mod pools;
mod procaddr;
mod runtime;
mod vmm;

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

/// `CUresult` values the wrappers return themselves.
pub const CUDA_ERROR_NOT_INITIALIZED: i32 = 3;
/// The runtime's `cudaErrorInsufficientDriver`: no runtime to call.
pub const CUDA_ERROR_INSUFFICIENT_DRIVER: i32 = 35;

/// One wrapped entry point.
pub struct Slot {
    /// The ABI name.
    name: &'static CStr,
    /// The library whose definitions `dlsym` swaps for the wrapper (a
    /// file-name prefix): a program's own function of the same name is
    /// left alone.
    library: &'static [u8],
    /// Our function.
    wrapper: Wrapper,
    /// The real function (0: not known yet).
    next: AtomicUsize,
}

/// A wrapper's address (a function pointer, as a raw pointer so that a
/// static table can hold it).
struct Wrapper(*const c_void);

// SAFETY: a function's address, never written through.
unsafe impl Sync for Wrapper {}

impl Slot {
    const fn new(name: &'static CStr, library: &'static [u8], wrapper: *const c_void) -> Slot {
        Slot {
            name,
            library,
            wrapper: Wrapper(wrapper),
            next: AtomicUsize::new(0),
        }
    }

    fn wrapper(&self) -> usize {
        self.wrapper.0 as usize
    }

    /// The real function, looked up after ours when nothing handed one out
    /// yet; 0 when there is none (no driver in the process).
    pub fn next(&self) -> usize {
        match self.next.load(Ordering::Acquire) {
            0 => {
                let p = crate::dl::next_symbol(self.name);
                if p != 0 && p != self.wrapper() {
                    self.next.store(p, Ordering::Release);
                    p
                } else {
                    0
                }
            }
            p => p,
        }
    }

    /// `real` was found for this slot's name: the wrapper goes out in its
    /// place, and calls it.
    fn hand_out(&self, real: usize) -> usize {
        if real == self.wrapper() {
            return real;
        }
        self.next.store(real, Ordering::Release);
        self.wrapper()
    }
}

/// Calls the slot's real function as type `F`, or returns `missing` when
/// there is none.
macro_rules! next_or {
    ($slot:expr, $ty:ty, $missing:expr) => {{
        let p = $crate::cuda::SLOTS[$slot as usize].next();
        if p == 0 {
            return $missing;
        }
        // SAFETY: the slot's real function has the wrapper's signature:
        // both are the ABI the slot is named after.
        unsafe { core::mem::transmute::<usize, $ty>(p) }
    }};
}
pub(crate) use next_or;

/// The slots, by [`Id`].
macro_rules! slots {
    ($($id:ident = $name:literal in $lib:literal => $wrapper:path;)*) => {
        /// Slot indices.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Id { $($id,)* }
        /// Every wrapped entry point.
        pub static SLOTS: [Slot; [$(Id::$id),*].len()] = [
            $(Slot::new($name, $lib, $wrapper as *const c_void),)*
        ];
    };
}

slots! {
    MemAlloc_v2 = c"cuMemAlloc_v2" in b"libcuda.so" => driver::cuMemAlloc_v2;
    MemAllocPitch_v2 = c"cuMemAllocPitch_v2" in b"libcuda.so" => driver::cuMemAllocPitch_v2;
    MemFree_v2 = c"cuMemFree_v2" in b"libcuda.so" => driver::cuMemFree_v2;
    MemAllocManaged = c"cuMemAllocManaged" in b"libcuda.so" => driver::cuMemAllocManaged;
    MemAllocHost_v2 = c"cuMemAllocHost_v2" in b"libcuda.so" => driver::cuMemAllocHost_v2;
    MemHostAlloc = c"cuMemHostAlloc" in b"libcuda.so" => driver::cuMemHostAlloc;
    MemFreeHost = c"cuMemFreeHost" in b"libcuda.so" => driver::cuMemFreeHost;
    MemAllocAsync = c"cuMemAllocAsync" in b"libcuda.so" => driver::cuMemAllocAsync;
    MemAllocAsync_ptsz = c"cuMemAllocAsync_ptsz" in b"libcuda.so" => driver::cuMemAllocAsync_ptsz;
    MemAllocFromPoolAsync = c"cuMemAllocFromPoolAsync" in b"libcuda.so" => driver::cuMemAllocFromPoolAsync;
    MemAllocFromPoolAsync_ptsz = c"cuMemAllocFromPoolAsync_ptsz" in b"libcuda.so" => driver::cuMemAllocFromPoolAsync_ptsz;
    MemFreeAsync = c"cuMemFreeAsync" in b"libcuda.so" => driver::cuMemFreeAsync;
    MemFreeAsync_ptsz = c"cuMemFreeAsync_ptsz" in b"libcuda.so" => driver::cuMemFreeAsync_ptsz;
    MemPoolCreate = c"cuMemPoolCreate" in b"libcuda.so" => pools::cuMemPoolCreate;
    MemPoolDestroy = c"cuMemPoolDestroy" in b"libcuda.so" => pools::cuMemPoolDestroy;
    MemPoolTrimTo = c"cuMemPoolTrimTo" in b"libcuda.so" => pools::cuMemPoolTrimTo;
    MemAddressReserve = c"cuMemAddressReserve" in b"libcuda.so" => vmm::cuMemAddressReserve;
    MemAddressFree = c"cuMemAddressFree" in b"libcuda.so" => vmm::cuMemAddressFree;
    MemCreate = c"cuMemCreate" in b"libcuda.so" => vmm::cuMemCreate;
    MemRelease = c"cuMemRelease" in b"libcuda.so" => vmm::cuMemRelease;
    MemMap = c"cuMemMap" in b"libcuda.so" => vmm::cuMemMap;
    MemUnmap = c"cuMemUnmap" in b"libcuda.so" => vmm::cuMemUnmap;
    MemRetainAllocationHandle = c"cuMemRetainAllocationHandle" in b"libcuda.so" => vmm::cuMemRetainAllocationHandle;
    GetProcAddress = c"cuGetProcAddress" in b"libcuda.so" => procaddr::cuGetProcAddress;
    GetProcAddress_v2 = c"cuGetProcAddress_v2" in b"libcuda.so" => procaddr::cuGetProcAddress_v2;
    cudaMalloc = c"cudaMalloc" in b"libcudart" => runtime::cudaMalloc;
    cudaFree = c"cudaFree" in b"libcudart" => runtime::cudaFree;
    cudaMallocManaged = c"cudaMallocManaged" in b"libcudart" => runtime::cudaMallocManaged;
    cudaMallocHost = c"cudaMallocHost" in b"libcudart" => runtime::cudaMallocHost;
    cudaHostAlloc = c"cudaHostAlloc" in b"libcudart" => runtime::cudaHostAlloc;
    cudaFreeHost = c"cudaFreeHost" in b"libcudart" => runtime::cudaFreeHost;
    cudaMallocPitch = c"cudaMallocPitch" in b"libcudart" => runtime::cudaMallocPitch;
    cudaMallocAsync = c"cudaMallocAsync" in b"libcudart" => runtime::cudaMallocAsync;
    cudaMallocAsync_ptsz = c"cudaMallocAsync_ptsz" in b"libcudart" => runtime::cudaMallocAsync_ptsz;
    cudaFreeAsync = c"cudaFreeAsync" in b"libcudart" => runtime::cudaFreeAsync;
    cudaFreeAsync_ptsz = c"cudaFreeAsync_ptsz" in b"libcudart" => runtime::cudaFreeAsync_ptsz;
}

/// `dlsym` found `real` for `name`: the wrapper to hand out instead, or
/// `real` itself when `name` is not wrapped or `real` is not in the
/// library that defines it (a program's own `cuMemAlloc_v2`).
pub fn wrap_symbol(name: &CStr, real: usize) -> usize {
    let bytes = name.to_bytes();
    if !bytes.starts_with(b"cu") {
        return real;
    }
    let Some(slot) = SLOTS.iter().find(|s| s.name.to_bytes() == bytes) else {
        return real;
    };
    if real == slot.wrapper() || !defined_in(real, slot.library) {
        return real;
    }
    slot.hand_out(real)
}

/// Is the function at `p` defined in a library whose file name starts
/// with `library`?
fn defined_in(p: usize, library: &[u8]) -> bool {
    // SAFETY: a zeroed Dl_info (pointers and integers) is valid.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(p as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dladdr returns a NUL-terminated file name.
    let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let base = file.rsplit(|&b| b == b'/').next().unwrap_or(file);
    base.starts_with(library)
}
