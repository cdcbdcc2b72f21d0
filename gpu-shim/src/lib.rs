//! Device and network memory interception, linked into `libmemtally.so`.
//!
//! A CUDA program reaches the driver's allocation entry points in three
//! ways, and each needs its own hook (see `docs/gpu.md`):
//!
//! 1. a call through the PLT to an exported driver symbol
//!    (`cuMemAlloc_v2`), for programs linked with `-lcuda`: this crate
//!    exports the same names (`cuda/driver.rs`);
//! 2. `dlopen("libcuda.so.1")` then `dlsym(handle, "cuMemAlloc_v2")`: a
//!    handle lookup searches only the driver, so a preloaded export is
//!    never found; the `dlsym`/`dlvsym` hooks (`dl.rs`) hand out the
//!    wrapper instead of the driver's function;
//! 3. `cuGetProcAddress_v2(name, version, flags)`, which is how the CUDA
//!    runtime (dynamic and static) and NCCL get every driver function: the
//!    wrappers of `cuGetProcAddress[_v2]` (`cuda/procaddr.rs`) swap what the
//!    driver hands out for the wrapper of the same ABI (by base name,
//!    version and per-thread-stream flag).
//!
//! Every wrapper calls exactly the function the driver would have handed
//! out (its slot's `next`), then records an event through
//! `memtally_alloc::device`. A per-thread depth guard (`call.rs`) makes one
//! user call one event, labelled with the outermost API the program called
//! (`cudaMalloc` around `cuMemAlloc_v2`).
//!
//! Nothing here allocates from the heap or panics: hooks run before
//! constructors, inside the dynamic loader and in forked children.

#![deny(missing_docs)]

mod call;
mod cuda;
mod dl;
mod elf;
mod nccl;
mod opencl;
mod rdma;
mod slot;
mod vulkan;

pub use dl::wrapped_lookups;
