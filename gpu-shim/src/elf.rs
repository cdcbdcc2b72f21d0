//! Finding a function in a loaded library by reading its dynamic symbol
//! table, without `dlsym`.
//!
//! The shim exports `dlsym` and `dlvsym` itself, and a call to either from
//! inside `libmemtally.so` binds to those exports (ours come first in the
//! global scope, and an unversioned definition interposes even versioned
//! references). So glibc's own `dlsym` is found the way the dynamic loader
//! would find it: walk the loaded objects (`dl_iterate_phdr`), take the
//! C library's `PT_DYNAMIC`, and look the name up in its GNU or SysV hash
//! table.

use core::ffi::{CStr, c_int, c_void};

const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_GNU_HASH: i64 = 0x6fff_fef5;

/// The address of the function `name` defined by the loaded object whose
/// file name ends with `suffix` (the first one found), or 0.
pub fn lookup(suffix: &[u8], name: &CStr) -> usize {
    let mut q = Query {
        suffix,
        name: name.to_bytes(),
        found: 0,
    };
    // SAFETY: the callback only reads the loader's structures for the
    // duration of the call, as dl_iterate_phdr allows.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut q as *mut Query<'_>).cast()) };
    q.found
}

struct Query<'a> {
    suffix: &'a [u8],
    name: &'a [u8],
    found: usize,
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our Query.
    let (info, q) = unsafe { (&*info, &mut *(data as *mut Query<'_>)) };
    if info.dlpi_name.is_null() {
        return 0;
    }
    // SAFETY: the loader's object names are NUL-terminated strings.
    let file = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
    if !file.ends_with(q.suffix) {
        return 0;
    }
    let base = info.dlpi_addr as usize;
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_DYNAMIC {
            // SAFETY: a loaded object's PT_DYNAMIC is mapped at base + vaddr
            // and its tables (relocated in place by the loader, or relative
            // to the base) are mapped too.
            q.found = unsafe {
                find(
                    base,
                    (base + ph.p_vaddr as usize) as *const [i64; 2],
                    q.name,
                )
            };
            return 1;
        }
    }
    0
}

/// Looks `name` up in the dynamic section at `dynamic` of the object
/// loaded at `base`.
///
/// # Safety
/// `dynamic` must be a loaded object's dynamic section.
unsafe fn find(base: usize, dynamic: *const [i64; 2], name: &[u8]) -> usize {
    let (mut strtab, mut symtab, mut hash, mut gnu_hash) = (0usize, 0usize, 0usize, 0usize);
    let mut d = dynamic;
    loop {
        // SAFETY: the dynamic section ends with DT_NULL.
        let [tag, value] = unsafe { *d };
        // The loader relocates these in place on most targets; where it
        // does not, they are relative to the base.
        let addr = if (value as usize) < base {
            base + value as usize
        } else {
            value as usize
        };
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = addr,
            DT_SYMTAB => symtab = addr,
            DT_HASH => hash = addr,
            DT_GNU_HASH => gnu_hash = addr,
            _ => {}
        }
        // SAFETY: not past DT_NULL.
        d = unsafe { d.add(1) };
    }
    if strtab == 0 || symtab == 0 {
        return 0;
    }
    let t = Tables {
        base,
        strtab: strtab as *const u8,
        symtab: symtab as *const libc::Elf64_Sym,
    };
    // SAFETY: the hash tables belong to this object's symbol table.
    unsafe {
        if gnu_hash != 0 {
            t.gnu_lookup(gnu_hash as *const u32, name)
        } else if hash != 0 {
            t.sysv_lookup(hash as *const u32, name)
        } else {
            0
        }
    }
}

struct Tables {
    base: usize,
    strtab: *const u8,
    symtab: *const libc::Elf64_Sym,
}

impl Tables {
    /// The address of symbol `i` if it is a definition named `name`.
    ///
    /// # Safety
    /// `i` must index the symbol table.
    unsafe fn matches(&self, i: usize, name: &[u8]) -> Option<usize> {
        // SAFETY: caller.
        let sym = unsafe { &*self.symtab.add(i) };
        if sym.st_shndx == 0 || sym.st_value == 0 {
            return None;
        }
        // SAFETY: st_name is an offset into the string table.
        let s = unsafe { CStr::from_ptr(self.strtab.add(sym.st_name as usize).cast()) };
        (s.to_bytes() == name).then(|| self.base + sym.st_value as usize)
    }

    /// GNU hash lookup (`DT_GNU_HASH`).
    ///
    /// # Safety
    /// `h` must be this object's GNU hash table.
    unsafe fn gnu_lookup(&self, h: *const u32, name: &[u8]) -> usize {
        let hash = name.iter().fold(5381u32, |h, &c| {
            h.wrapping_mul(33).wrapping_add(u32::from(c))
        });
        // SAFETY: the header is 4 words, then the bloom filter (64-bit
        // words), the buckets and the chains.
        unsafe {
            let nbuckets = *h;
            let symoffset = *h.add(1);
            let bloom_words = *h.add(2) as usize;
            let buckets = h.add(4 + 2 * bloom_words);
            let chains = buckets.add(nbuckets as usize);
            if nbuckets == 0 {
                return 0;
            }
            let mut i = *buckets.add((hash % nbuckets) as usize);
            if i < symoffset {
                return 0;
            }
            loop {
                let h2 = *chains.add((i - symoffset) as usize);
                if (h2 | 1) == (hash | 1)
                    && let Some(a) = self.matches(i as usize, name)
                {
                    return a;
                }
                if h2 & 1 != 0 {
                    return 0;
                }
                i += 1;
            }
        }
    }

    /// SysV hash lookup (`DT_HASH`).
    ///
    /// # Safety
    /// `h` must be this object's SysV hash table.
    unsafe fn sysv_lookup(&self, h: *const u32, name: &[u8]) -> usize {
        let hash = name.iter().fold(0u32, |h, &c| {
            let h = (h << 4).wrapping_add(u32::from(c));
            let g = h & 0xf000_0000;
            (h ^ (g >> 24)) & !g
        });
        // SAFETY: nbucket, nchain, then the buckets and the chains.
        unsafe {
            let nbucket = *h;
            if nbucket == 0 {
                return 0;
            }
            let buckets = h.add(2);
            let chains = buckets.add(nbucket as usize);
            let mut i = *buckets.add((hash % nbucket) as usize);
            while i != 0 {
                if let Some(a) = self.matches(i as usize, name) {
                    return a;
                }
                i = *chains.add(i as usize);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_c_librarys_dlsym_and_not_what_is_not_there() {
        let found = super::lookup(b"/libc.so.6", c"dlsym");
        assert_ne!(found, 0);
        // SAFETY: a zeroed Dl_info is valid.
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        // SAFETY: dladdr only reads the loader's tables and fills `info`.
        assert_ne!(unsafe { libc::dladdr(found as *const _, &mut info) }, 0);
        // SAFETY: dladdr found a symbol, so dli_sname is its name.
        let name = unsafe { core::ffi::CStr::from_ptr(info.dli_sname) };
        assert_eq!(name.to_bytes(), b"dlsym");
        assert_eq!(super::lookup(b"/libc.so.6", c"no_such_function_here"), 0);
        assert_eq!(super::lookup(b"/no-such-library.so", c"dlsym"), 0);
    }
}
