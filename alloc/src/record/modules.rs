//! The loaded modules (executable and shared libraries), for the trace's
//! `MODULE` records: what a reader needs to symbolise return addresses,
//! possibly on another machine (path, build id, load bias, executable
//! segments).
//!
//! Read with `dl_iterate_phdr`, which does not allocate; its add/remove
//! counters tell cheaply whether anything was loaded or unloaded since the
//! last scan (`dlopen`/`dlclose`).

use crate::lock::SpinLock;
use core::ffi::{CStr, c_int, c_void};

/// Held around every `dl_iterate_phdr` call of ours, and by the fork
/// handlers: the loader's lock that `dl_iterate_phdr` takes is not reset in
/// a forked child, so a fork while our writer thread iterates would leave
/// the child's loader locked for good. Holding this across `fork()` makes
/// sure none of our iterations is in progress then.
static DL_LOCK: SpinLock<()> = SpinLock::new(());

/// The lock serialising our module scans, for the fork handlers.
pub fn scan_lock() -> &'static SpinLock<()> {
    &DL_LOCK
}

/// Most executable segments recorded per module.
pub const MAX_SEGMENTS: usize = 8;
/// Longest build id kept.
pub const MAX_BUILD_ID: usize = 64;

/// One loaded module, borrowed from the loader for the duration of a scan.
pub struct ModuleInfo<'a> {
    /// Load bias.
    pub base: u64,
    /// Path (the executable's is resolved through /proc/self/exe).
    pub path: &'a [u8],
    /// GNU build id (possibly empty).
    pub build_id: &'a [u8],
    /// Executable segments: (runtime start, runtime end, file offset).
    pub segments: &'a [(u64, u64, u64)],
}

/// The loader's (adds, removes) counters: they change whenever a module is
/// loaded or unloaded.
pub fn generation() -> (u64, u64) {
    let mut counters = (0u64, 0u64);
    extern "C" fn cb(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is our `counters`.
        unsafe {
            let counters = &mut *(data as *mut (u64, u64));
            *counters = ((*info).dlpi_adds, (*info).dlpi_subs);
        }
        1 // one module is enough: the counters are global
    }
    let _g = DL_LOCK.lock();
    // SAFETY: the callback matches the expected signature and only writes
    // through `data`, which points at a live local.
    unsafe { libc::dl_iterate_phdr(Some(cb), &mut counters as *mut _ as *mut c_void) };
    counters
}

/// Calls `f` for every loaded module.
pub fn scan(mut f: impl FnMut(&ModuleInfo<'_>)) {
    let mut f_dyn: &mut dyn FnMut(&ModuleInfo<'_>) = &mut f;
    let _g = DL_LOCK.lock();
    // SAFETY: the callback matches the expected signature; `data` points at
    // `f_dyn`, alive for the whole call.
    unsafe {
        libc::dl_iterate_phdr(Some(visit), &mut f_dyn as *mut _ as *mut c_void);
    }
}

extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `&mut dyn FnMut` passed by `scan`; `info` and
    // its program headers are valid for the duration of the callback.
    unsafe {
        let f = &mut *(data as *mut &mut dyn FnMut(&ModuleInfo<'_>));
        let info = &*info;
        let base = info.dlpi_addr;
        let mut exe_buf = [0u8; 512];
        let name: &[u8] = if info.dlpi_name.is_null() || *info.dlpi_name == 0 {
            let n = libc::readlink(
                c"/proc/self/exe".as_ptr(),
                exe_buf.as_mut_ptr().cast(),
                exe_buf.len(),
            );
            if n > 0 { &exe_buf[..n as usize] } else { b"" }
        } else {
            CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        // A library opened by a relative path (`dlopen("./plugin.so")`)
        // is named relative to the process's directory: made absolute, so
        // that a report run elsewhere finds the file to symbolise. (Where
        // the process changed directory since, the file is not found and
        // the name stays as it was.)
        let mut full = [0u8; 4096];
        let name: &[u8] = if name.first().is_some_and(|&b| b != b'/') && !info.dlpi_name.is_null() {
            let resolved = libc::realpath(info.dlpi_name, full.as_mut_ptr().cast());
            if resolved.is_null() {
                name
            } else {
                CStr::from_ptr(full.as_ptr().cast()).to_bytes()
            }
        } else {
            name
        };
        let mut segments = [(0u64, 0u64, 0u64); MAX_SEGMENTS];
        let mut nseg = 0;
        let mut build_id: &[u8] = &[];
        for i in 0..info.dlpi_phnum as usize {
            let ph = &*info.dlpi_phdr.add(i);
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 && nseg < MAX_SEGMENTS {
                let start = base + ph.p_vaddr;
                segments[nseg] = (start, start + ph.p_memsz, ph.p_offset);
                nseg += 1;
            } else if ph.p_type == libc::PT_NOTE && build_id.is_empty() {
                let notes = core::slice::from_raw_parts(
                    (base + ph.p_vaddr) as *const u8,
                    ph.p_memsz as usize,
                );
                build_id = find_build_id(notes);
            }
        }
        f(&ModuleInfo {
            base,
            path: name,
            build_id,
            segments: &segments[..nseg],
        });
    }
    0
}

/// Calls `f(start, end, eh_frame_hdr)` for every executable segment of
/// every loaded module (`eh_frame_hdr` is 0 when the module has none).
pub fn scan_unwind(mut f: impl FnMut(u64, u64, u64)) {
    let mut f_dyn: &mut dyn FnMut(u64, u64, u64) = &mut f;
    extern "C" fn cb(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: `data` is the closure passed below; `info` and its program
        // headers are valid during the callback.
        unsafe {
            let f = &mut *(data as *mut &mut dyn FnMut(u64, u64, u64));
            let info = &*info;
            let base = info.dlpi_addr;
            let mut hdr = 0;
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_GNU_EH_FRAME {
                    hdr = base + ph.p_vaddr;
                }
            }
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    let start = base + ph.p_vaddr;
                    f(start, start + ph.p_memsz, hdr);
                }
            }
        }
        0
    }
    let _g = DL_LOCK.lock();
    // SAFETY: the callback matches the expected signature; `data` points at
    // `f_dyn`, alive for the whole call.
    unsafe { libc::dl_iterate_phdr(Some(cb), &mut f_dyn as *mut _ as *mut c_void) };
}

/// Finds the GNU build id in an ELF note segment.
fn find_build_id(mut notes: &[u8]) -> &[u8] {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    while notes.len() >= 12 {
        let namesz = word(&notes[0..4]) as usize;
        let descsz = word(&notes[4..8]) as usize;
        let kind = word(&notes[8..12]);
        let name_end = 12 + namesz.next_multiple_of(4);
        let desc_end = name_end + descsz.next_multiple_of(4);
        if desc_end > notes.len() || name_end + descsz > notes.len() {
            break;
        }
        if kind == NT_GNU_BUILD_ID && namesz == 4 && &notes[12..16] == b"GNU\0" {
            return &notes[name_end..name_end + descsz.min(MAX_BUILD_ID)];
        }
        notes = &notes[desc_end..];
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_test_binary_and_libc() {
        let mut saw_exe = false;
        let mut saw_libc = false;
        scan(|m| {
            let path = core::str::from_utf8(m.path).unwrap_or("");
            if !m.segments.is_empty() && path.contains("memtally_alloc") {
                saw_exe = true;
                assert!(!m.build_id.is_empty(), "rustc sets a build id");
            }
            if path.contains("libc.so") {
                saw_libc = true;
                let here = libc::malloc as *const () as usize as u64;
                assert!(m.segments.iter().any(|&(s, e, _)| s <= here && here < e));
            }
        });
        assert!(saw_exe && saw_libc);
        let (adds, _) = generation();
        assert!(adds > 0);
    }
}
