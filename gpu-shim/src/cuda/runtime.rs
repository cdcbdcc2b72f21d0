//! The CUDA runtime's allocation calls, wrapped only to name the event the
//! driver call inside records (`api: cudaMalloc` rather than
//! `cuMemAlloc_v2`): every runtime allocation reaches a driver wrapper
//! (`procaddr.rs`), which records it. A statically linked runtime bypasses
//! these; its events carry the driver's names.
//!
//! In a process without the runtime, a program that finds these exports
//! (`dlsym(RTLD_DEFAULT, "cudaMalloc")`) gets `cudaErrorInsufficientDriver`.

#![allow(non_snake_case)]

use core::ffi::{c_int, c_uint, c_void};

use super::{CUDA_ERROR_INSUFFICIENT_DRIVER, Id, SLOTS, next_or};
use crate::call::Label;

/// Defines a runtime wrapper: enter the label, call the runtime.
macro_rules! labelled {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the runtime's.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            let next = next_or!(
                Id::$name,
                unsafe extern "C" fn($($ty),*) -> c_int,
                CUDA_ERROR_INSUFFICIENT_DRIVER
            );
            let _label = Label::enter(stringify!($name));
            // SAFETY: the caller's arguments, passed on.
            unsafe { next($($arg),*) }
        }
    };
}

labelled!(
    /// `cudaMalloc`.
    cudaMalloc(p: *mut *mut c_void, size: usize)
);
labelled!(
    /// `cudaFree`.
    cudaFree(p: *mut c_void)
);
labelled!(
    /// `cudaMallocManaged`.
    cudaMallocManaged(p: *mut *mut c_void, size: usize, flags: c_uint)
);
labelled!(
    /// `cudaMallocHost`.
    cudaMallocHost(p: *mut *mut c_void, size: usize)
);
labelled!(
    /// `cudaHostAlloc`.
    cudaHostAlloc(p: *mut *mut c_void, size: usize, flags: c_uint)
);
labelled!(
    /// `cudaFreeHost`.
    cudaFreeHost(p: *mut c_void)
);
labelled!(
    /// `cudaMallocPitch`.
    cudaMallocPitch(p: *mut *mut c_void, pitch: *mut usize, width: usize, height: usize)
);
labelled!(
    /// `cudaMallocAsync`.
    cudaMallocAsync(p: *mut *mut c_void, size: usize, stream: *mut c_void)
);
labelled!(
    /// `cudaMallocAsync_ptsz`.
    cudaMallocAsync_ptsz(p: *mut *mut c_void, size: usize, stream: *mut c_void)
);
labelled!(
    /// `cudaFreeAsync`.
    cudaFreeAsync(p: *mut c_void, stream: *mut c_void)
);
labelled!(
    /// `cudaFreeAsync_ptsz`.
    cudaFreeAsync_ptsz(p: *mut c_void, stream: *mut c_void)
);
