//! C++'s `operator new` and `operator delete`, every replaceable form, so
//! that a block's family (`new`, `new[]`, `malloc`) is known and a
//! mismatched release (`free` of a `new[]` array, `delete` of a `new[]`
//! one...) is reported like an invalid free.
//!
//! The throwing forms must throw `std::bad_alloc` (after calling the
//! program's new-handler) when memory runs out, which only the C++ runtime
//! can do: on a null block they call the C++ library's own definition
//! (found with `dlsym(RTLD_NEXT)`), which retries through `malloc` (ours)
//! and throws. The `nothrow` forms return null.

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};
use memtally_alloc::raw;

/// The default alignment of `operator new` (`__STDCPP_DEFAULT_NEW_ALIGNMENT__`).
const NEW_ALIGN: usize = 16;

/// The C++ library's definitions of the throwing forms, by `NextNew`.
static NEXT: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
const NEXT_NAMES: [&core::ffi::CStr; 4] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
];

/// Out of memory in a throwing form: the C++ library's definition `which`
/// (of [`NEXT_NAMES`]) handles it (new-handler, `std::bad_alloc`).
#[cold]
fn out_of_memory(which: usize, size: usize, align: usize) -> *mut c_void {
    let mut f = NEXT[which].load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the
        // definition after ours (libstdc++'s).
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, NEXT_NAMES[which].as_ptr()) } as usize;
        NEXT[which].store(f, Ordering::Release);
    }
    if f == 0 {
        // No C++ runtime to throw with: as glibc's abort on heap failure.
        let msg =
            b"memtally: operator new: out of memory and no C++ runtime to throw std::bad_alloc\n";
        // SAFETY: writes a static message to stderr, then aborts.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::abort();
        }
    }
    // SAFETY: `f` is the C++ library's operator new of the same signature.
    unsafe {
        if which < 2 {
            let f: extern "C" fn(usize) -> *mut c_void = core::mem::transmute(f);
            f(size)
        } else {
            let f: extern "C" fn(usize, usize) -> *mut c_void = core::mem::transmute(f);
            f(size, align)
        }
    }
}

fn new_block(size: usize, align: usize, array: bool) -> *mut c_void {
    let align = if align.is_power_of_two() {
        align.max(NEW_ALIGN)
    } else {
        NEW_ALIGN
    };
    // SAFETY: `align` is a power of two.
    unsafe { raw::alloc_new(size, align, array).cast() }
}

macro_rules! new_forms {
    ($($(#[$doc:meta])* $name:ident ($($arg:ident: $ty:ty),*) => $size:expr, $align:expr, $array:expr, $throw:expr;)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// Callable from C++ at any time.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            let p = new_block($size, $align, $array);
            match $throw {
                Some(which) if p.is_null() => out_of_memory(which, $size, $align),
                _ => p,
            }
        }
    )*};
}

new_forms! {
    /// `operator new(size_t)`.
    _Znwm(size: usize) => size, NEW_ALIGN, false, Some(0usize);
    /// `operator new[](size_t)`.
    _Znam(size: usize) => size, NEW_ALIGN, true, Some(1usize);
    /// `operator new(size_t, const std::nothrow_t&)`.
    _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_char) => size, NEW_ALIGN, false, None::<usize>;
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_char) => size, NEW_ALIGN, true, None::<usize>;
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t(size: usize, align: usize) => size, align, false, Some(2usize);
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t(size: usize, align: usize) => size, align, true, Some(3usize);
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: *const c_char) => size, align, false, None::<usize>;
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: *const c_char) => size, align, true, None::<usize>;
}

macro_rules! delete_forms {
    ($($(#[$doc:meta])* $name:ident ($($arg:ident: $ty:ty),*) => $array:expr, $call:expr;)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// `p` must be null or from the matching `operator new`; others are
        /// reported (and abort, by default).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: forwarded from the caller; invalid pointers are caught.
            unsafe { raw::free_delete(p.cast(), $array, $call) }
        }
    )*};
}

delete_forms! {
    /// `operator delete(void*)`.
    _ZdlPv() => false, "operator delete";
    /// `operator delete[](void*)`.
    _ZdaPv() => true, "operator delete[]";
    /// `operator delete(void*, size_t)`.
    _ZdlPvm(_size: usize) => false, "operator delete";
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm(_size: usize) => true, "operator delete[]";
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t(_align: usize) => false, "operator delete";
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t(_align: usize) => true, "operator delete[]";
    /// `operator delete(void*, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(_size: usize, _align: usize) => false, "operator delete";
    /// `operator delete[](void*, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(_size: usize, _align: usize) => true, "operator delete[]";
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t(_nt: *const c_char) => false, "operator delete";
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t(_nt: *const c_char) => true, "operator delete[]";
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(_align: usize, _nt: *const c_char) => false, "operator delete";
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(_align: usize, _nt: *const c_char) => true, "operator delete[]";
}
