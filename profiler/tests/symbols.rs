//! Symbolisation against a real binary: a small C program is compiled with
//! debug information, run to learn its return addresses, and described to
//! the model by a synthetic trace.

use crate::util::analyse;
use memtally_profiler::report::{ReportOptions, build, render_text};
use memtally_profiler::synth::{TraceBuilder, alloc};
use memtally_profiler::{FileProblem, Location, Symbolizer};
use object::Object;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The C program. `leaf` records its return address (inside the inlined
/// `helper`, in `make_buffer`), `make_buffer` records its own (in `main`);
/// the lines below are checked against the symboliser's answers.
const PROGRAM: &str = r#"#include <stdio.h>

static void *trail[2];

__attribute__((noinline)) void leaf(void) {
    trail[0] = __builtin_return_address(0);
}

static inline __attribute__((always_inline)) void helper(void) {
    leaf();
}

__attribute__((noinline)) void make_buffer(void) {
    helper();
    trail[1] = __builtin_return_address(0);
}

int main(void) {
    make_buffer();
    printf("%p %p %p\n", (void *)leaf, trail[0], trail[1]);
    return 0;
}
"#;

/// The compiled program and the addresses it printed.
struct Program {
    path: PathBuf,
    build_id: Vec<u8>,
    /// Start of `leaf`.
    leaf: u64,
    /// Return address into `make_buffer` (from the inlined `helper`).
    in_helper: u64,
    /// Return address into `main`.
    in_main: u64,
}

fn program() -> &'static Program {
    static PROGRAM_ONCE: OnceLock<Program> = OnceLock::new();
    PROGRAM_ONCE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("symbolise");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("prog.c");
        let path = dir.join("prog");
        std::fs::write(&src, PROGRAM).unwrap();
        // A non-PIE build loads at its link addresses: base 0.
        let status = Command::new("cc")
            .args(["-g", "-O0", "-no-pie", "-Wl,--build-id", "-o"])
            .arg(&path)
            .arg(&src)
            .status()
            .expect("run cc (the tests need a C compiler)");
        assert!(status.success(), "cc failed");
        let out = Command::new(&path).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let addrs: Vec<u64> = text
            .split_whitespace()
            .map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap())
            .collect();
        let data = std::fs::read(&path).unwrap();
        let file = object::File::parse(&data[..]).unwrap();
        let build_id = file.build_id().unwrap().unwrap().to_vec();
        Program {
            path,
            build_id,
            leaf: addrs[0],
            in_helper: addrs[1],
            in_main: addrs[2],
        }
    })
}

/// A trace whose module is `path` with `build_id`; stack 3 is
/// main -> make_buffer (helper inlined) -> leaf, and stack 5 is
/// main -> make_buffer -> an allocator frame in libmemtally.so.
fn trace(path: &str, build_id: &[u8]) -> Vec<u8> {
    let p = program();
    let mut t = TraceBuilder::new();
    t.full_header();
    t.string(1, path)
        .string(2, "/opt/memtally/lib/libmemtally.so");
    t.module(0, 1, build_id, &[(0x400000, 0x500000, 0)]);
    t.module(0x7000_0000, 2, &[], &[(0x7000_0000, 0x7001_0000, 0)]);
    t.frame(1, 0, p.in_main)
        .frame(2, 1, p.in_helper)
        .frame(3, 2, p.leaf)
        .frame(5, 2, 0x7000_0100);
    t.events(0, &[alloc(10, 0x1000, 64, 3), alloc(20, 0x2000, 32, 5)]);
    t.footer(30);
    t.into_bytes()
}

fn names(frames: &[Location]) -> Vec<(String, Option<u32>, bool)> {
    frames
        .iter()
        .map(|l| {
            (
                l.function.clone().unwrap_or_else(|| l.raw()),
                l.line,
                l.inlined,
            )
        })
        .collect()
}

#[test]
fn functions_lines_and_inlined_frames_are_found() {
    let p = program();
    let a = analyse(&trace(p.path.to_str().unwrap(), &p.build_id));
    let mut s = Symbolizer::default();
    let stack = s.stack(&a.model, 3);
    assert_eq!(stack.trimmed, 0);
    assert_eq!(
        names(&stack.frames),
        [
            ("leaf".to_string(), Some(5), false),
            ("helper".to_string(), Some(10), true),
            ("make_buffer".to_string(), Some(14), false),
            ("main".to_string(), Some(19), false),
        ]
    );
    let leaf = &stack.frames[0];
    assert!(leaf.file.as_deref().unwrap().ends_with("symbolise/prog.c"));
    assert_eq!(leaf.module_offset, Some(p.leaf));
    assert_eq!(leaf.to_string(), "leaf (symbolise/prog.c:5)");
    assert!(s.problems().is_empty(), "{:?}", s.problems());
}

#[test]
fn allocator_frames_are_trimmed_from_the_inner_end() {
    let p = program();
    let a = analyse(&trace(p.path.to_str().unwrap(), &p.build_id));
    let mut s = Symbolizer::default();
    let stack = s.stack(&a.model, 5);
    assert_eq!(stack.trimmed, 1);
    assert_eq!(
        names(&stack.frames),
        [
            ("helper".to_string(), Some(10), true),
            ("make_buffer".to_string(), Some(14), false),
            ("main".to_string(), Some(19), false),
        ]
    );
}

#[test]
fn the_report_names_the_function_and_line() {
    let p = program();
    let a = analyse(&trace(p.path.to_str().unwrap(), &p.build_id));
    let r = build(&a, &mut Symbolizer::default(), &ReportOptions::default());
    let text = render_text(&r);
    assert!(text.contains("  leaf (symbolise/prog.c:5)\n"), "{text}");
    assert!(
        text.contains("<- helper (symbolise/prog.c:10) [inlined]\n"),
        "{text}"
    );
    assert!(text.contains("<- main (symbolise/prog.c:19)\n"), "{text}");
    let site = &r.top_by_bytes[0];
    assert_eq!(site.frames[0].function.as_deref(), Some("leaf"));
    assert_eq!(site.frames[0].line, Some(5));
}

#[test]
fn a_missing_file_gives_module_and_offset() {
    let p = program();
    let a = analyse(&trace("/no/such/dir/prog", &p.build_id));
    let mut s = Symbolizer::default();
    let stack = s.stack(&a.model, 3);
    let raw: Vec<String> = stack.frames.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        raw,
        [
            format!("prog+{:#x}", p.leaf),
            format!("prog+{:#x}", p.in_helper),
            format!("prog+{:#x}", p.in_main),
        ]
    );
    let problems = s.problems();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "/no/such/dir/prog");
    assert!(matches!(problems[0].problem, FileProblem::Unreadable(_)));
    let r = build(&a, &mut Symbolizer::default(), &ReportOptions::default());
    let text = render_text(&r);
    assert!(text.contains(&format!("  prog+{:#x}\n", p.leaf)), "{text}");
    assert!(text.contains("NOT SYMBOLISED"), "{text}");
}

#[test]
fn a_different_build_id_is_not_trusted() {
    let p = program();
    let a = analyse(&trace(p.path.to_str().unwrap(), &[0xde, 0xad, 0xbe, 0xef]));
    let mut s = Symbolizer::default();
    let stack = s.stack(&a.model, 3);
    assert_eq!(stack.frames[0].function, None);
    assert_eq!(stack.frames[0].raw(), format!("prog+{:#x}", p.leaf));
    let problems = s.problems();
    assert_eq!(problems.len(), 1);
    let msg = problems[0].problem.to_string();
    assert!(msg.contains("differs from the program's deadbeef"), "{msg}");
}

#[test]
fn a_module_path_naming_a_device_is_refused_not_read() {
    // A damaged or crafted trace may name /dev/zero, which never ends.
    let p = program();
    let a = analyse(&trace("/dev/zero", &p.build_id));
    let mut s = Symbolizer::default();
    let stack = s.stack(&a.model, 3);
    assert_eq!(stack.frames[0].to_string(), format!("zero+{:#x}", p.leaf));
    let problems = s.problems();
    assert_eq!(problems.len(), 1);
    assert!(
        matches!(&problems[0].problem, FileProblem::Unreadable(why) if why.contains("not a regular file")),
        "{:?}",
        problems[0].problem
    );
}
