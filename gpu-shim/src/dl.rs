//! The `dlsym` and `dlvsym` hooks.
//!
//! A program (or the CUDA runtime, or NCCL) that opens the driver with
//! `dlopen` and asks for an entry point by name gets the driver's function:
//! a handle lookup searches that library only, never our exports. So the
//! shim exports `dlsym` and `dlvsym`, lets glibc resolve the name, and
//! hands out its wrapper when the name is one it wraps and the definition
//! found is the driver's (`cuda::wrap_symbol`).
//!
//! The hard part is `RTLD_NEXT`. glibc's `dlsym` finds "the next object"
//! from its caller's return address; a hook that calls it makes the shim
//! the caller, and every library that asks for the next definition of a
//! function it interposes gets the wrong one (its own, often: infinite
//! recursion). So the exported `dlsym` is a naked trampoline: with
//! `RTLD_NEXT` it tail-jumps to glibc's function with the caller's return
//! address untouched, and only other handles reach the Rust hook (where
//! the caller does not matter, except for `dlmopen` namespaces:
//! `RTLD_DEFAULT` lookups through the hook are made in the base namespace).
//!
//! glibc's own `dlsym` is found by reading the C library's symbol table
//! (`elf.rs`): calling `dlsym` or `dlvsym` from here would call ourselves.
//! On targets other than x86_64 Linux there are no hooks (the exported
//! symbols and `cuGetProcAddress` wrappers still work for programs that
//! reach them).

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

/// glibc's `dlsym` and `dlvsym` (0 until first needed). Not exported: the
/// trampolines read them with a PC-relative load, which a preemptible
/// (exported) symbol would not allow.
static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);
static REAL_DLVSYM: AtomicUsize = AtomicUsize::new(0);

/// Lookups whose result was swapped for a wrapper (for tests and the
/// benchmark's sanity check).
static WRAPPED: AtomicUsize = AtomicUsize::new(0);

/// How many `dlsym`/`dlvsym` lookups were answered with a wrapper.
pub fn wrapped_lookups() -> usize {
    WRAPPED.load(Ordering::Relaxed)
}

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type DlvsymFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> *mut c_void;

/// Stands in for glibc's function if it cannot be found (it always can in
/// a glibc process): every lookup fails, as it would without a library.
unsafe extern "C" fn not_found(_h: *mut c_void, _s: *const c_char) -> *mut c_void {
    core::ptr::null_mut()
}

fn resolve(cell: &AtomicUsize, name: &core::ffi::CStr) -> usize {
    let p = crate::elf::lookup(b"/libc.so.6", name);
    let p = if p == 0 {
        not_found as DlsymFn as usize
    } else {
        p
    };
    cell.store(p, Ordering::Release);
    p
}

extern "C" fn resolve_dlsym() -> usize {
    resolve(&REAL_DLSYM, c"dlsym")
}

extern "C" fn resolve_dlvsym() -> usize {
    resolve(&REAL_DLVSYM, c"dlvsym")
}

fn real_dlsym() -> DlsymFn {
    let p = match REAL_DLSYM.load(Ordering::Acquire) {
        0 => resolve_dlsym(),
        p => p,
    };
    // SAFETY: p is glibc's dlsym (or `not_found`), which has this type.
    unsafe { core::mem::transmute::<usize, DlsymFn>(p) }
}

fn real_dlvsym() -> DlvsymFn {
    let p = match REAL_DLVSYM.load(Ordering::Acquire) {
        0 => resolve_dlvsym(),
        p => p,
    };
    // SAFETY: p is glibc's dlvsym (or `not_found`, whose third argument
    // is ignored: harmless in the C calling convention).
    unsafe { core::mem::transmute::<usize, DlvsymFn>(p) }
}

/// The definition of `name` after `libmemtally.so` in the lookup order
/// (what our export of that name interposes), or 0.
pub fn next_symbol(name: &core::ffi::CStr) -> usize {
    // SAFETY: glibc's dlsym with RTLD_NEXT and a NUL-terminated name;
    // called from this library, so "next" means after us.
    unsafe { real_dlsym()(libc::RTLD_NEXT, name.as_ptr()) as usize }
}

/// The definition of `name` at symbol version `version` after
/// `libmemtally.so` in the lookup order, or 0.
pub fn next_versioned(name: &core::ffi::CStr, version: &[u8]) -> usize {
    let mut v = [0u8; 64];
    if version.len() >= v.len() {
        return 0;
    }
    v[..version.len()].copy_from_slice(version);
    // SAFETY: glibc's dlvsym with RTLD_NEXT and NUL-terminated name and
    // version; called from this library, so "next" means after us.
    unsafe { real_dlvsym()(libc::RTLD_NEXT, name.as_ptr(), v.as_ptr().cast()) as usize }
}

/// `name` in the object that defines the function at `p` (glibc's lookup,
/// no wrapping), or 0.
pub fn symbol_beside(p: usize, name: &core::ffi::CStr) -> usize {
    // SAFETY: a zeroed Dl_info (pointers and integers) is valid.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(p as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return 0;
    }
    // SAFETY: RTLD_NOLOAD only returns a handle of an object already
    // loaded (the one `p` lies in), under the name dladdr gave.
    let h = unsafe { libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if h.is_null() {
        return 0;
    }
    symbol_in(h, name)
}

/// `name` in the object `handle` (glibc's lookup, no wrapping), or 0.
pub fn symbol_in(handle: *mut c_void, name: &core::ffi::CStr) -> usize {
    // SAFETY: glibc's dlsym with a handle from dlopen and a NUL-terminated
    // name.
    unsafe { real_dlsym()(handle, name.as_ptr()) as usize }
}

unsafe extern "C" fn dlsym_hook(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    // SAFETY: the caller's arguments, passed on.
    let p = unsafe { real_dlsym()(handle, symbol) };
    wrap(symbol, core::ptr::null(), p)
}

unsafe extern "C" fn dlvsym_hook(
    handle: *mut c_void,
    symbol: *const c_char,
    version: *const c_char,
) -> *mut c_void {
    // SAFETY: the caller's arguments, passed on.
    let p = unsafe { real_dlvsym()(handle, symbol, version) };
    wrap(symbol, version, p)
}

/// What to hand out for the definition `p` found for `symbol` (at
/// `version`, null for `dlsym`).
fn wrap(symbol: *const c_char, version: *const c_char, p: *mut c_void) -> *mut c_void {
    if symbol.is_null() || p.is_null() {
        return p;
    }
    // SAFETY: dlsym's contract: a NUL-terminated name (and version).
    let (name, version) = unsafe {
        (
            core::ffi::CStr::from_ptr(symbol),
            if version.is_null() {
                &b""[..]
            } else {
                core::ffi::CStr::from_ptr(version).to_bytes()
            },
        )
    };
    let w = crate::slot::wrap_symbol(name, version, p as usize);
    if w != p as usize {
        WRAPPED.fetch_add(1, Ordering::Relaxed);
    }
    w as *mut c_void
}

/// `dlsym(3)`: see the module comment. `RTLD_NEXT` is `(void *)-1` on
/// glibc.
///
/// # Safety
/// As glibc's `dlsym`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _symbol: *const c_char) -> *mut c_void {
    // At entry the stack is 8 bytes off 16-byte alignment (the return
    // address): two pushes and 8 more bytes align it for the call.
    core::arch::naked_asm!(
        "cmp rdi, -1",
        "jne 2f",
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "jz 3f",
        "jmp rax",
        "3:",
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {resolve}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "jmp rax",
        "2:",
        "jmp {hook}",
        real = sym REAL_DLSYM,
        resolve = sym resolve_dlsym,
        hook = sym dlsym_hook,
    )
}

/// `dlvsym(3)`: as [`dlsym`], with a version (NCCL finds the verbs API
/// this way).
///
/// # Safety
/// As glibc's `dlvsym`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlvsym(
    _handle: *mut c_void,
    _symbol: *const c_char,
    _version: *const c_char,
) -> *mut c_void {
    // Three pushes align the stack for the call.
    core::arch::naked_asm!(
        "cmp rdi, -1",
        "jne 2f",
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "jz 3f",
        "jmp rax",
        "3:",
        "push rdi",
        "push rsi",
        "push rdx",
        "call {resolve}",
        "pop rdx",
        "pop rsi",
        "pop rdi",
        "jmp rax",
        "2:",
        "jmp {hook}",
        real = sym REAL_DLVSYM,
        resolve = sym resolve_dlvsym,
        hook = sym dlvsym_hook,
    )
}
