//! What a race's access did, from its instruction. A watchpoint traps
//! after a read and a write alike, and the recorder can only say whether
//! the word's value changed: a side whose value did not change comes as an
//! `access`, and a read can come as a `write` when another thread, not yet
//! watched as the window was being armed, changed the word first.
//! Decoding the instruction that holds the trapping address says what the
//! access itself did.
//!
//! The instruction is found by decoding forward from the start of the
//! function that holds it (its symbol in the module's file): x86's
//! variable lengths make that the reliable way, as decoding backwards
//! from an address is ambiguous. Without a symbol, every start up to 15
//! bytes before the address that decodes to one instruction ending just
//! after it (the recorder's address is the last byte of the access, one
//! before the next instruction) is tried, and an answer is given only when
//! all those with a memory operand agree. Files are read from the module's
//! path as recorded, regular files only, with the symbolizer's symbol
//! table (`symbols::function_symbols`); one that cannot be read, or bytes
//! that do not decode, leave the recorder's word.
//!
//! The instruction also tells some atomics: a `lock`-prefixed
//! read-modify-write, or an `xchg` with memory (locked without the prefix:
//! C and C++ compile sequentially consistent stores to it) is atomic by
//! the hardware. Relaxed, acquire and release accesses compile to plain
//! moves, which only debug information tells apart (the report's
//! `in_atomic`).

use crate::symbols::{function_symbols, map_regular, symbol_at};
use iced_x86::{Decoder, DecoderOptions, Instruction, InstructionInfoFactory, Mnemonic, OpAccess};
use memmap2::Mmap;
use object::{Object, ObjectSection};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

/// What an instruction does to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Writes (or reads and writes).
    Write,
    /// Reads and writes as one locked operation (`lock` prefix, or `xchg`
    /// with memory): an atomic operation.
    Locked,
}

impl Access {
    /// The word a report uses for it.
    pub fn call(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write | Access::Locked => "write",
        }
    }
}

/// An x86-64 module file's code: its mapping, the address, size and file
/// offset of each section with code, and its function symbols.
struct Code {
    map: Rc<Mmap>,
    sections: Vec<(u64, u64, usize)>,
    symbols: Vec<(u64, u64, String)>,
}

impl Code {
    /// Reads `path` (a regular file only, as the symbolizer does: a
    /// crafted trace may name a FIFO).
    fn open(path: &str) -> Option<Code> {
        let map = map_regular(Path::new(path)).ok()?;
        let elf = object::File::parse(&map[..]).ok()?;
        if elf.architecture() != object::Architecture::X86_64 {
            return None;
        }
        let sections = elf
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
            .filter_map(|s| {
                let (offset, size) = s.file_range()?;
                Some((s.address(), size, usize::try_from(offset).ok()?))
            })
            .filter(|&(_, size, offset)| offset as u64 + size <= map.len() as u64)
            .collect();
        let symbols = function_symbols(&elf);
        Some(Code {
            map,
            sections,
            symbols,
        })
    }

    fn access(&self, addr: u64) -> Option<Access> {
        let &(base, size, offset) = self
            .sections
            .iter()
            .find(|&&(base, size, _)| (base..base + size).contains(&addr))?;
        let data = &self.map[offset..offset + size as usize];
        let at = (addr - base) as usize;
        let to = (at + 16).min(data.len());
        match symbol_at(&self.symbols, addr).filter(|&(s, _)| s >= base && addr - s < 1 << 20) {
            Some((start, _)) => decode_forward(&data[(start - base) as usize..to], start, addr),
            None => {
                let from = at.saturating_sub(15);
                decode_around(&data[from..to], base + from as u64, addr)
            }
        }
    }
}

/// Reads instructions out of module files, each file read once.
#[derive(Default)]
pub struct CodeReader {
    files: HashMap<String, Option<Code>>,
}

impl CodeReader {
    /// What the instruction at file virtual address `addr` of the x86-64
    /// module at `path` does to memory; None when that cannot be told.
    pub fn access(&mut self, path: &str, addr: u64) -> Option<Access> {
        self.files
            .entry(path.to_owned())
            .or_insert_with(|| Code::open(path))
            .as_ref()?
            .access(addr)
    }
}

/// Decodes `code` (at address `base`) from its start until the instruction
/// that covers `addr`, and says what it does to memory.
pub fn decode_forward(code: &[u8], base: u64, addr: u64) -> Option<Access> {
    let mut decoder = Decoder::with_ip(64, code, base, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    while decoder.can_decode() {
        let instr = decoder.decode();
        if instr.is_invalid() {
            return None;
        }
        if instr.next_ip() > addr {
            return (instr.ip() <= addr)
                .then(|| access_of(&instr, &mut info))
                .flatten();
        }
    }
    None
}

/// Without the function's start: each start in `code` (at address `base`)
/// that decodes to an instruction whose last byte is `addr`, the answer
/// when all those that touch memory agree.
pub fn decode_around(code: &[u8], base: u64, addr: u64) -> Option<Access> {
    let mut info = InstructionInfoFactory::new();
    let mut answer = None;
    for from in 0..code.len() {
        let ip = base + from as u64;
        if ip > addr {
            break;
        }
        let mut decoder = Decoder::with_ip(64, &code[from..], ip, DecoderOptions::NONE);
        let instr = decoder.decode();
        if instr.is_invalid() || instr.next_ip() != addr + 1 {
            continue;
        }
        if let Some(a) = access_of(&instr, &mut info) {
            match answer {
                None => answer = Some(a),
                Some(b) if b != a => return None,
                Some(_) => {}
            }
        }
    }
    answer
}

/// Locked for a locked instruction with memory, write if any of the memory
/// operands may be written, else read; None without memory operands.
fn access_of(instr: &Instruction, info: &mut InstructionInfoFactory) -> Option<Access> {
    let used = info.info(instr).used_memory();
    if used.is_empty() {
        return None;
    }
    if instr.has_lock_prefix() || instr.mnemonic() == Mnemonic::Xchg {
        // An xchg of two registers has no memory operand (returned above).
        return Some(Access::Locked);
    }
    let mut read = false;
    for m in used {
        match m.access() {
            OpAccess::Write
            | OpAccess::CondWrite
            | OpAccess::ReadWrite
            | OpAccess::ReadCondWrite => {
                return Some(Access::Write);
            }
            OpAccess::Read | OpAccess::CondRead => read = true,
            _ => {}
        }
    }
    read.then_some(Access::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    // push rbp; mov rbp, rsp; mov rax, [rdi+8]; mov [rsi], rax; add [rdx], eax;
    // cmp qword [rdi], 0; lock xadd [rcx], eax; pop rbp; ret; xchg [rdi], rax;
    // xchg rbx, rax; lock cmpxchg [rsi], rcx
    const CODE: &[u8] = &[
        0x55, // 0: push rbp
        0x48, 0x89, 0xe5, // 1: mov rbp, rsp
        0x48, 0x8b, 0x47, 0x08, // 4: mov rax, [rdi+8]
        0x48, 0x89, 0x06, // 8: mov [rsi], rax
        0x01, 0x02, // 11: add [rdx], eax
        0x48, 0x83, 0x3f, 0x00, // 13: cmp qword [rdi], 0
        0xf0, 0x0f, 0xc1, 0x01, // 17: lock xadd [rcx], eax
        0x5d, // 21: pop rbp
        0xc3, // 22: ret
        0x48, 0x87, 0x07, // 23: xchg [rdi], rax
        0x48, 0x87, 0xc3, // 26: xchg rbx, rax
        0xf0, 0x48, 0x0f, 0xb1, 0x0e, // 29: lock cmpxchg [rsi], rcx
    ];
    const BASE: u64 = 0x1000;

    #[test]
    fn forward_decoding_tells_reads_from_writes() {
        // The recorder's address is one byte before the next instruction.
        let at = |next: u64| decode_forward(CODE, BASE, BASE + next - 1);
        assert_eq!(at(8), Some(Access::Read), "mov rax, [rdi+8]");
        assert_eq!(at(11), Some(Access::Write), "mov [rsi], rax");
        assert_eq!(at(13), Some(Access::Write), "add [rdx], eax");
        assert_eq!(at(17), Some(Access::Read), "cmp qword [rdi], 0");
        assert_eq!(at(21), Some(Access::Locked), "lock xadd [rcx], eax");
        assert_eq!(at(26), Some(Access::Locked), "xchg [rdi], rax");
        assert_eq!(at(29), None, "xchg rbx, rax: registers only");
        assert_eq!(at(34), Some(Access::Locked), "lock cmpxchg [rsi], rcx");
        assert_eq!(Access::Locked.call(), "write");
        // Any byte of the instruction finds it.
        assert_eq!(decode_forward(CODE, BASE, BASE + 4), Some(Access::Read));
        // The stack is memory too: push writes it.
        assert_eq!(at(1), Some(Access::Write), "push rbp");
        assert_eq!(at(4), None, "mov rbp, rsp: no memory operand");
        assert_eq!(
            decode_forward(CODE, BASE, BASE + 100),
            None,
            "past the code"
        );
    }

    #[test]
    fn decoding_around_answers_only_when_the_starts_agree() {
        // mov [rsi], rax: the starts that end with its last byte are `48
        // 89 06` (a write) and `89 06` (a write too); `06` is invalid in
        // 64-bit code.
        assert_eq!(
            decode_around(&CODE[..11], BASE, BASE + 10),
            Some(Access::Write)
        );
        // mov rax, [rdi+8]: `48 8b 47 08` and `8b 47 08` both read.
        assert_eq!(
            decode_around(&CODE[..8], BASE, BASE + 7),
            Some(Access::Read)
        );
    }
}
