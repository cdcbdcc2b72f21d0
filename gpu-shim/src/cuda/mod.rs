//! CUDA: the wrapped entry points of the driver and the runtime, one slot
//! each (`slot.rs`: the wrapper, and the real function it calls).

mod arrays;
pub(crate) mod driver;
mod imports;
mod pools;
mod procaddr;
mod runtime;
mod vmm;

pub(crate) use crate::slot::next_or;
use crate::slot::slots;

/// `CUresult` values the wrappers return themselves.
pub const CUDA_ERROR_NOT_INITIALIZED: i32 = 3;
/// The runtime's `cudaErrorInsufficientDriver`: no runtime to call.
pub const CUDA_ERROR_INSUFFICIENT_DRIVER: i32 = 35;

slots! {
    MemAlloc_v2 = c"cuMemAlloc_v2" in b"libcuda.so" => driver::cuMemAlloc_v2;
    MemAllocPitch_v2 = c"cuMemAllocPitch_v2" in b"libcuda.so" => driver::cuMemAllocPitch_v2;
    MemFree_v2 = c"cuMemFree_v2" in b"libcuda.so" => driver::cuMemFree_v2;
    MemAllocManaged = c"cuMemAllocManaged" in b"libcuda.so" => driver::cuMemAllocManaged;
    MemAllocHost_v2 = c"cuMemAllocHost_v2" in b"libcuda.so" => driver::cuMemAllocHost_v2;
    MemHostAlloc = c"cuMemHostAlloc" in b"libcuda.so" => driver::cuMemHostAlloc;
    MemFreeHost = c"cuMemFreeHost" in b"libcuda.so" => driver::cuMemFreeHost;
    MemHostRegister_v2 = c"cuMemHostRegister_v2" in b"libcuda.so" => driver::cuMemHostRegister_v2;
    MemHostUnregister = c"cuMemHostUnregister" in b"libcuda.so" => driver::cuMemHostUnregister;
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
    MemImportFromShareableHandle = c"cuMemImportFromShareableHandle" in b"libcuda.so" => vmm::cuMemImportFromShareableHandle;
    ArrayCreate_v2 = c"cuArrayCreate_v2" in b"libcuda.so" => arrays::cuArrayCreate_v2;
    Array3DCreate_v2 = c"cuArray3DCreate_v2" in b"libcuda.so" => arrays::cuArray3DCreate_v2;
    ArrayDestroy = c"cuArrayDestroy" in b"libcuda.so" => arrays::cuArrayDestroy;
    IpcOpenMemHandle_v2 = c"cuIpcOpenMemHandle_v2" in b"libcuda.so" => arrays::cuIpcOpenMemHandle_v2;
    IpcCloseMemHandle = c"cuIpcCloseMemHandle" in b"libcuda.so" => arrays::cuIpcCloseMemHandle;
    MipmappedArrayCreate = c"cuMipmappedArrayCreate" in b"libcuda.so" => arrays::cuMipmappedArrayCreate;
    MipmappedArrayDestroy = c"cuMipmappedArrayDestroy" in b"libcuda.so" => arrays::cuMipmappedArrayDestroy;
    MemPoolImportPointer = c"cuMemPoolImportPointer" in b"libcuda.so" => imports::cuMemPoolImportPointer;
    ExternalMemoryGetMappedBuffer = c"cuExternalMemoryGetMappedBuffer" in b"libcuda.so" => imports::cuExternalMemoryGetMappedBuffer;
    ExternalMemoryGetMappedMipmappedArray = c"cuExternalMemoryGetMappedMipmappedArray" in b"libcuda.so" => imports::cuExternalMemoryGetMappedMipmappedArray;
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
