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
//! all those with a memory operand agree. Files are read from the module's path as recorded; one
//! that cannot be read, or bytes that do not decode, leave the access as
//! it was.

use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess};
use object::{Object, ObjectSection, ObjectSymbol};
use std::collections::HashMap;
use std::fs::File;

/// What an instruction does to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Writes (or reads and writes).
    Write,
}

impl Access {
    /// The word a report uses for it.
    pub fn call(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// Reads instructions out of module files, each file mapped once.
#[derive(Default)]
pub struct CodeReader {
    files: HashMap<String, Option<memmap2::Mmap>>,
}

impl CodeReader {
    /// What the instruction at file virtual address `addr` of the x86-64
    /// module at `path` does to memory; None when that cannot be told.
    pub fn access(&mut self, path: &str, addr: u64) -> Option<Access> {
        let map = self
            .files
            .entry(path.to_owned())
            .or_insert_with(|| {
                let file = File::open(path).ok()?;
                // SAFETY: a read-only mapping of a module file; a file
                // changed under it gives wrong bytes, which decode to a
                // wrong answer or none, never to unsafety in safe code
                // reading a byte slice.
                unsafe { memmap2::Mmap::map(&file) }.ok()
            })
            .as_ref()?;
        let elf = object::File::parse(&map[..]).ok()?;
        if elf.architecture() != object::Architecture::X86_64 {
            return None;
        }
        let section = elf
            .sections()
            .find(|s| (s.address()..s.address() + s.size()).contains(&addr))?;
        let data = section.data().ok()?;
        let start =
            function_start(&elf, addr).filter(|&s| s >= section.address() && addr - s < 1 << 20);
        match start {
            Some(s) => {
                let from = (s - section.address()) as usize;
                let to = ((addr - section.address()) as usize + 16).min(data.len());
                decode_forward(&data[from..to], s, addr)
            }
            None => {
                let at = (addr - section.address()) as usize;
                let from = at.saturating_sub(15);
                let to = (at + 16).min(data.len());
                decode_around(&data[from..to], section.address() + from as u64, addr)
            }
        }
    }
}

/// The address of the function symbol at or before `addr`.
fn function_start(elf: &object::File<'_>, addr: u64) -> Option<u64> {
    elf.symbols()
        .chain(elf.dynamic_symbols())
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() <= addr)
        .filter(|s| s.size() == 0 || addr < s.address() + s.size())
        .map(|s| s.address())
        .max()
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
                .then(|| access_of(info.info(&instr).used_memory()))
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
        if let Some(a) = access_of(info.info(&instr).used_memory()) {
            match answer {
                None => answer = Some(a),
                Some(b) if b != a => return None,
                Some(_) => {}
            }
        }
    }
    answer
}

/// Write if any of the memory operands may be written, else read; None
/// without memory operands.
fn access_of(used: &[iced_x86::UsedMemory]) -> Option<Access> {
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
    // cmp qword [rdi], 0; lock xadd [rcx], eax; pop rbp; ret
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
        assert_eq!(at(21), Some(Access::Write), "lock xadd [rcx], eax");
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
