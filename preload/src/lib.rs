//! `libmemtally.so`: the malloc family of C, backed by memtally's allocator,
//! for `LD_PRELOAD` into any dynamically linked program.
//!
//! ```text
//! LD_PRELOAD=target/release/libmemtally.so MEMTALLY_STATS=1 python3 script.py
//! ```
//!
//! This crate is only the C ABI: each function maps C's semantics (glibc's,
//! where C leaves room) onto `memtally_alloc::raw`. Nothing here allocates,
//! panics, or touches thread-locals beyond what the allocator does, because
//! these functions run before `main`, inside the dynamic loader's callbacks,
//! in `fork` children and in thread destructors.
//!
//! The library must be loaded at process start (`LD_PRELOAD` or linked), not
//! with `dlopen`: its thread-local storage must be allocated statically, and
//! memory allocated by the previous malloc cannot be freed by this one.

#![deny(missing_docs)]

use core::ffi::{c_int, c_void};
use memtally_alloc::raw;

mod cxx;

// The device-memory hooks (CUDA entry points, dlsym, dlvsym) are exported
// from this library too; nothing here calls them.
#[cfg(feature = "gpu")]
extern crate memtally_gpu_shim;

/// glibc's `malloc` alignment on 64-bit targets (`alignof(max_align_t)`).
const MALLOC_ALIGN: usize = 16;

/// Runs when the library is loaded: reads the settings at once, so that a bad
/// `MEMTALLY_*` value is reported even by a program that never allocates,
/// and decides which processes started from this one record.
extern "C" fn on_load() {
    raw::init();
    raw::hand_on_settings();
    raw::install_exit_handler();
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = code };
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions and does not allocate.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as usize } else { 4096 }
}

/// `malloc(3)`.
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: MALLOC_ALIGN is a power of two.
    unsafe { raw::alloc(size, MALLOC_ALIGN).cast() }
}

/// `free(3)`: null is ignored; a pointer this allocator did not hand out is
/// reported on stderr and aborts, as glibc does.
///
/// # Safety
/// `p` must be null or from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded from the caller; invalid pointers abort.
    unsafe { raw::free(p.cast(), "free") }
}

/// `calloc(3)`: zeroed; an overflowing `n * size` fails with ENOMEM.
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    // SAFETY: MALLOC_ALIGN is a power of two.
    unsafe { raw::alloc_zeroed(total, MALLOC_ALIGN).cast() }
}

/// `realloc(3)` with glibc's edge cases: a null pointer allocates; size 0
/// frees and returns null; on failure the old block is untouched.
///
/// # Safety
/// `p` must be null or from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if !p.is_null() && size == 0 {
        // SAFETY: forwarded from the caller.
        unsafe { raw::free(p.cast(), "realloc") };
        return core::ptr::null_mut();
    }
    // SAFETY: MALLOC_ALIGN is a power of two; `p` is forwarded.
    unsafe { raw::realloc(p.cast(), size, MALLOC_ALIGN, usize::MAX).cast() }
}

/// `reallocarray(3)`: `realloc(p, n * size)` failing with ENOMEM on overflow.
///
/// # Safety
/// `p` must be null or from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    // SAFETY: forwarded from the caller.
    unsafe { realloc(p, total) }
}

/// Allocation with alignment `align`, which must be a power of two.
fn aligned(align: usize, size: usize) -> *mut c_void {
    // SAFETY: callers pass a power of two.
    unsafe { raw::alloc(size, align.max(MALLOC_ALIGN)).cast() }
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power of two multiple of
/// `sizeof(void *)`; ENOMEM when out of memory. Returns the error, sets
/// `*out` only on success.
///
/// # Safety
/// `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = aligned(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable pointer.
    unsafe { *out = p };
    0
}

/// `aligned_alloc(3)`: EINVAL unless `align` is a power of two (as glibc
/// 2.36; a size that is not a multiple of the alignment is accepted).
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    aligned(align, size)
}

/// `memalign(3)`: an alignment that is not a power of two is rounded up to
/// one, as glibc does; an impossible one fails with EINVAL.
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align
        .checked_next_power_of_two()
        .filter(|&a| a <= isize::MAX as usize / 2)
    else {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    };
    aligned(align, size)
}

/// `valloc(3)`: page-aligned.
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages (at least one).
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    let Some(rounded) = size.max(1).checked_next_multiple_of(page) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    aligned(page, rounded)
}

/// `malloc_usable_size(3)`: bytes usable from `p` (0 for null).
///
/// # Safety
/// `p` must be null or from this allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe { raw::usable_size(p.cast()) }
}

/// `malloc_trim(3)`: returns unused memory to the OS now. Always reports
/// that memory may have been released (1).
///
/// # Safety
/// Callable from C at any time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    raw::trim();
    1
}

// glibc's internal names, which a few programs call directly; forwarding them
// keeps such programs from mixing two allocators.

/// `__libc_malloc`, as `malloc`.
///
/// # Safety
/// As [`malloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: same contract.
    unsafe { malloc(size) }
}

/// `__libc_free`, as `free`.
///
/// # Safety
/// As [`free`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: same contract.
    unsafe { free(p) }
}

/// `__libc_calloc`, as `calloc`.
///
/// # Safety
/// As [`calloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract.
    unsafe { calloc(n, size) }
}

/// `__libc_realloc`, as `realloc`.
///
/// # Safety
/// As [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: same contract.
    unsafe { realloc(p, size) }
}

/// `__libc_memalign`, as `memalign`.
///
/// # Safety
/// As [`memalign`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: same contract.
    unsafe { memalign(align, size) }
}

// ----------------------------------------------------------------------
// Recording: markers, flushing, exec and _exit
// ----------------------------------------------------------------------

/// `void memtally_mark(const char *text)`: puts a marker ("phase 2") on the
/// calling thread's timeline in the trace being recorded. Does nothing when
/// not recording or for a null pointer.
///
/// # Safety
/// `text` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memtally_mark(text: *const core::ffi::c_char) {
    if text.is_null() {
        return;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let bytes = unsafe { core::ffi::CStr::from_ptr(text) }.to_bytes();
    memtally_alloc::mark_bytes(bytes);
}

/// `void memtally_scope_enter(const char *name)`: enters a new instance of
/// scope `name` (a request, a task) on the calling thread: until the
/// matching `memtally_scope_exit`, the blocks it allocates belong to it.
/// Scopes nest. Does nothing when not recording; a null `name` enters a
/// scope with an empty name (so that the matching exit still pairs).
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memtally_scope_enter(name: *const core::ffi::c_char) {
    if name.is_null() {
        // Keep enters and exits paired: an empty name is no scope's name,
        // but it is entered so that its exit pops it.
        memtally_alloc::scopes::enter(b"");
        return;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let bytes = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
    memtally_alloc::scopes::enter(bytes);
}

/// `void memtally_scope_exit(void)`: leaves the scope the calling thread
/// entered last with `memtally_scope_enter`, ending that instance.
#[unsafe(no_mangle)]
pub extern "C" fn memtally_scope_exit() {
    memtally_alloc::scopes::exit();
}

/// `void memtally_access(const void *p, int write)`: notes in the trace
/// that the calling thread read (`write` 0) or wrote the memory at `p`, for
/// the distributed models' coherence counts. Does nothing when not
/// recording.
#[unsafe(no_mangle)]
pub extern "C" fn memtally_access(p: *const c_void, write: c_int) {
    let what = if write != 0 {
        memtally_alloc::Access::Write
    } else {
        memtally_alloc::Access::Read
    };
    memtally_alloc::access(p, what);
}

/// `void memtally_race_watch(const void *p, size_t len)`: asks the race
/// detector (`MEMTALLY=...,races=on`) to watch the `len` bytes at `p` in
/// its next windows.
#[unsafe(no_mangle)]
pub extern "C" fn memtally_race_watch(p: *const c_void, len: usize) {
    memtally_alloc::race_watch(p, len);
}

/// `void memtally_flush(void)`: writes everything recorded so far to the
/// trace and waits until it is written.
#[unsafe(no_mangle)]
pub extern "C" fn memtally_flush() {
    raw::flush();
}

/// `int memtally_leak_check(void)`: finds the blocks nothing points to any
/// more, now (stopping the other threads for the scan), records them in the
/// trace when recording, and prints one line on stderr; returns 1 when
/// anything leaked, else 0. LeakSanitizer's
/// `__lsan_do_recoverable_leak_check`, for memtally.
#[unsafe(no_mangle)]
pub extern "C" fn memtally_leak_check() -> core::ffi::c_int {
    core::ffi::c_int::from(raw::leak_check_report())
}

type ExecveFn = unsafe extern "C" fn(
    *const core::ffi::c_char,
    *const *const core::ffi::c_char,
    *const *const core::ffi::c_char,
) -> c_int;

/// The next definition of `name` after this library (libc's), looked up
/// once and cached in `slot`.
fn next_symbol(
    slot: &core::sync::atomic::AtomicPtr<c_void>,
    name: &core::ffi::CStr,
) -> *mut c_void {
    use core::sync::atomic::Ordering;
    let mut f = slot.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: RTLD_NEXT lookup of a NUL-terminated name.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        slot.store(f, Ordering::Release);
    }
    f
}

type ExitFn = unsafe extern "C" fn(c_int) -> !;

/// Ends the trace, then calls libc's `name` (`_exit` or `_Exit`), which
/// must not return.
fn exit_through(
    slot: &core::sync::atomic::AtomicPtr<c_void>,
    name: &core::ffi::CStr,
    status: c_int,
) -> ! {
    raw::finish_before_exit(status);
    let f = next_symbol(slot, name);
    if !f.is_null() {
        // SAFETY: `f` is libc's `_exit`/`_Exit`, with this signature.
        unsafe { core::mem::transmute::<*mut c_void, ExitFn>(f)(status) }
    }
    // SAFETY: exit_group ends the process; it has no preconditions.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable!("exit_group returned")
}

/// `_exit(2)`: skips `atexit` handlers and destructors, which is where the
/// trace is normally ended, so it is ended here. Shells, `fork` children
/// and servers that exit fast use it; without this hook their last events
/// (often all of them, for a short process) would be lost. A `vfork` child
/// calling it leaves its parent's trace alone (see `record::writer`).
///
/// # Safety
/// As `_exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    static REAL: core::sync::atomic::AtomicPtr<c_void> =
        core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
    exit_through(&REAL, c"_exit", status)
}

/// `_Exit(3)`, the C name of [`_exit`].
///
/// # Safety
/// As `_exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    static REAL: core::sync::atomic::AtomicPtr<c_void> =
        core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
    exit_through(&REAL, c"_Exit", status)
}

/// The environment for a program this process executes: `envp` as
/// given, or, when this process records and the program should go on
/// recording in a trace of its own, a copy of it with the recorder's
/// `MEMTALLY` setting (which the constructor removed from the environment
/// so that forked children do not record unless asked). The copy lives in
/// a mapping of its own, released by dropping the value (after a failed
/// exec; a successful one replaces the whole image).
struct ExecEnv {
    envp: *const *const core::ffi::c_char,
    mapping: Option<(*mut u8, usize)>,
}

impl ExecEnv {
    /// # Safety
    /// `envp` must be a null-terminated array of NUL-terminated strings.
    unsafe fn new(envp: *const *const core::ffi::c_char) -> ExecEnv {
        let plain = ExecEnv {
            envp,
            mapping: None,
        };
        let Some(setting) = raw::exec_setting() else {
            return plain;
        };
        let mut n = 0;
        if !envp.is_null() {
            // SAFETY: the array is null-terminated (caller's contract).
            while !unsafe { *envp.add(n) }.is_null() {
                n += 1;
            }
        }
        let bytes = (n + 2) * core::mem::size_of::<usize>();
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return plain;
        }
        let out = p.cast::<*const core::ffi::c_char>();
        let mut k = 0;
        for i in 0..n {
            // SAFETY: i < n, inside the null-terminated array.
            let entry = unsafe { *envp.add(i) };
            // SAFETY: each entry is a NUL-terminated string.
            let name = unsafe { core::ffi::CStr::from_ptr(entry) }.to_bytes();
            if !name.starts_with(b"MEMTALLY=") {
                // SAFETY: k <= i < n + 2 slots in the mapping.
                unsafe { *out.add(k) = entry };
                k += 1;
            }
        }
        // SAFETY: k <= n, so k + 1 < n + 2 slots.
        unsafe {
            *out.add(k) = setting.as_ptr();
            *out.add(k + 1) = core::ptr::null();
        }
        ExecEnv {
            envp: out,
            mapping: Some((p.cast(), bytes)),
        }
    }

    /// The process environment (`environ`) with the setting added.
    fn current() -> ExecEnv {
        unsafe extern "C" {
            static environ: *const *const core::ffi::c_char;
        }
        // SAFETY: reading the process's environment pointer; the array is
        // null-terminated.
        unsafe { ExecEnv::new(environ) }
    }
}

impl Drop for ExecEnv {
    fn drop(&mut self) {
        if let Some((p, bytes)) = self.mapping {
            // SAFETY: our own mapping, no longer used.
            unsafe { libc::munmap(p.cast(), bytes) };
        }
    }
}

/// Calls libc's `name` (`execve` or `execvpe`, same signature) with the
/// environment for the new program, after ending the trace.
fn exec_through(
    slot: &core::sync::atomic::AtomicPtr<c_void>,
    name: &core::ffi::CStr,
    file: *const core::ffi::c_char,
    argv: *const *const core::ffi::c_char,
    env: ExecEnv,
) -> c_int {
    raw::finish_for_exec();
    let f = next_symbol(slot, name);
    if f.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: `f` is libc's execve or execvpe, with this exact signature;
    // the arguments are the caller's, the environment a valid array.
    let r = unsafe { core::mem::transmute::<*mut c_void, ExecveFn>(f)(file, argv, env.envp) };
    // The exec failed: recording goes on in a new trace; the copy goes.
    drop(env);
    r
}

static REAL_EXECVE: core::sync::atomic::AtomicPtr<c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
static REAL_EXECVPE: core::sync::atomic::AtomicPtr<c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// `execve(2)`: ends the trace before the program image is replaced (a
/// failed exec returns here and recording goes on in a new trace). The
/// new program records into its own trace too (see [`ExecEnv`]).
///
/// # Safety
/// As `execve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const core::ffi::c_char,
    argv: *const *const core::ffi::c_char,
    envp: *const *const core::ffi::c_char,
) -> c_int {
    // SAFETY: the caller passes a valid environment array.
    let env = unsafe { ExecEnv::new(envp) };
    exec_through(&REAL_EXECVE, c"execve", path, argv, env)
}

/// `execv(3)`, as [`execve`] with the process environment.
///
/// # Safety
/// As `execv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(
    path: *const core::ffi::c_char,
    argv: *const *const core::ffi::c_char,
) -> c_int {
    exec_through(&REAL_EXECVE, c"execve", path, argv, ExecEnv::current())
}

/// `execvp(3)`, as [`execve`] with a `PATH` search and the process
/// environment.
///
/// # Safety
/// As `execvp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(
    file: *const core::ffi::c_char,
    argv: *const *const core::ffi::c_char,
) -> c_int {
    exec_through(&REAL_EXECVPE, c"execvpe", file, argv, ExecEnv::current())
}

/// `execvpe(3)`, as [`execve`] with a `PATH` search.
///
/// # Safety
/// As `execvpe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const core::ffi::c_char,
    argv: *const *const core::ffi::c_char,
    envp: *const *const core::ffi::c_char,
) -> c_int {
    // SAFETY: the caller passes a valid environment array.
    let env = unsafe { ExecEnv::new(envp) };
    exec_through(&REAL_EXECVPE, c"execvpe", file, argv, env)
}
