//! Slots: one per wrapped entry point, tying the wrapper we export (or hand
//! out) to the real function it calls.
//!
//! Each wrapped ABI name (`cuMemAlloc_v2`, `cudaMalloc`, `ibv_reg_mr`...)
//! has a [`Slot`]: the wrapper, the library whose definitions it stands in
//! for, the symbol versions it answers for, and `next`, the function the
//! wrapper calls. `next` is whatever was found for that name last: the
//! library's function handed out by `dlsym`, `dlvsym` or `cuGetProcAddress`
//! (which the wrapper is handed out in place of), or else the next
//! definition after ours (a program linked against the library calls our
//! export through the PLT).
//!
//! Tables of slots are made with [`slots!`], one per API family
//! (`cuda/mod.rs`, `rdma.rs`); [`wrap_symbol`] asks each.

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

/// One wrapped entry point.
pub struct Slot {
    /// The ABI name.
    pub(crate) name: &'static CStr,
    /// The library whose definitions `dlsym` swaps for the wrapper (a
    /// file-name prefix): a program's own function of the same name is
    /// left alone.
    library: &'static [u8],
    /// The symbol versions this wrapper's ABI is found under: `b""` for
    /// an unversioned lookup (`dlsym`, which finds the default version),
    /// then version names for `dlvsym`. The first non-empty one is what
    /// `next` is looked up as when nothing was handed out.
    versions: &'static [&'static [u8]],
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

/// Unversioned only (every CUDA entry point).
pub const UNVERSIONED: &[&[u8]] = &[b""];

impl Slot {
    /// A slot for `name` in `library`, answering for `versions`.
    pub const fn new(
        name: &'static CStr,
        library: &'static [u8],
        versions: &'static [&'static [u8]],
        wrapper: *const c_void,
    ) -> Slot {
        Slot {
            name,
            library,
            versions,
            wrapper: Wrapper(wrapper),
            next: AtomicUsize::new(0),
        }
    }

    fn wrapper(&self) -> usize {
        self.wrapper.0 as usize
    }

    /// The real function, looked up after ours when nothing handed one out
    /// yet; 0 when there is none (the library is not in the process).
    pub fn next(&self) -> usize {
        match self.next.load(Ordering::Acquire) {
            0 => {
                let p = match self.versions.first() {
                    Some(v) if !v.is_empty() => crate::dl::next_versioned(self.name, v),
                    _ => crate::dl::next_symbol(self.name),
                };
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
    pub fn hand_out(&self, real: usize) -> usize {
        if real == self.wrapper() {
            return real;
        }
        self.next.store(real, Ordering::Release);
        self.wrapper()
    }

    /// Does this slot answer a lookup of `name` at `version` (`b""`: an
    /// unversioned lookup)?
    fn answers(&self, name: &[u8], version: &[u8]) -> bool {
        self.name.to_bytes() == name && self.versions.contains(&version)
    }
}

/// Calls the slot's real function as type `F`, or returns `missing` when
/// there is none. `SLOTS` and the id are the caller's (each API family
/// has its own table).
macro_rules! next_or {
    ($slot:expr, $ty:ty, $missing:expr) => {{
        let p = SLOTS[$slot as usize].next();
        if p == 0 {
            return $missing;
        }
        // SAFETY: the slot's real function has the wrapper's signature:
        // both are the ABI the slot is named after.
        unsafe { core::mem::transmute::<usize, $ty>(p) }
    }};
}
pub(crate) use next_or;

/// A table of slots, by [`Id`]: `Name = c"symbol" in b"library" [versions]
/// => wrapper;` (versions default to unversioned).
macro_rules! slots {
    ($($id:ident = $name:literal in $lib:literal $([$($v:literal),*])? => $wrapper:path;)*) => {
        /// Slot indices.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Id { $($id,)* }
        /// Every wrapped entry point of this family.
        pub static SLOTS: [$crate::slot::Slot; [$(Id::$id),*].len()] = [
            $($crate::slot::Slot::new(
                $name,
                $lib,
                $crate::slot::versions!($([$($v),*])?),
                $wrapper as *const core::ffi::c_void,
            ),)*
        ];
    };
}
pub(crate) use slots;

/// The versions of a [`slots!`] row.
macro_rules! versions {
    () => {
        $crate::slot::UNVERSIONED
    };
    ([$($v:literal),*]) => {
        &[$($v),*]
    };
}
pub(crate) use versions;

/// `dlsym` (`version` empty) or `dlvsym` found `real` for `name`: the
/// wrapper to hand out instead, or `real` itself when no slot answers for
/// that name and version, or `real` is not in the library of the slot (a
/// program's own `cuMemAlloc_v2`).
pub fn wrap_symbol(name: &CStr, version: &[u8], real: usize) -> usize {
    let bytes = name.to_bytes();
    let table: &[Slot] = if bytes.starts_with(b"cu") {
        &crate::cuda::SLOTS
    } else if bytes.starts_with(b"ibv_") {
        &crate::rdma::SLOTS
    } else if bytes.starts_with(b"nccl") {
        &crate::nccl::SLOTS
    } else if bytes.starts_with(b"cl") {
        &crate::opencl::SLOTS
    } else if bytes.starts_with(b"vk") {
        &crate::vulkan::SLOTS
    } else {
        return real;
    };
    let Some(slot) = table.iter().find(|s| s.answers(bytes, version)) else {
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
