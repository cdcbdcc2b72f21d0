//! Memory errors: a C program that frees a block twice is stopped, as
//! glibc would, and the trace and `memtally report` name the call and its
//! stack.

use super::{build_c, built_library, json_of, memtally, scratch};
use std::path::Path;
use std::process::{Command, Output};

/// `memtally run --on-error report -o trace -- exe` in `dir`, which must
/// run to its end (a C program here prints "survived" when it does).
fn run_reporting(dir: &Path, exe: &Path, lib: &Path, trace: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--on-error", "report", "-o"])
        .arg(trace)
        .arg("--")
        .arg(exe)
        .current_dir(dir)
        .env("MEMTALLY_LIB", lib)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("survived"));
    out
}

#[test]
fn a_double_free_is_reported_with_the_offending_stack() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("errors");
    let exe = build_c(&dir, "double_free", &[]);
    let trace = dir.join("t.mtt");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "-o", trace.to_str().unwrap(), "--"])
        .arg(&exe)
        .current_dir(&dir)
        .env("MEMTALLY_LIB", &lib)
        .output()
        .unwrap();
    // Stopped by SIGABRT, as glibc stops a double free.
    assert_eq!(out.status.code(), Some(134), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("free(): invalid pointer")
            && err.contains("recorded in the trace with the call's stack"),
        "{err}"
    );

    let doc = json_of(&["report", "--json", trace.to_str().unwrap()]);
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e["call"], "free");
    assert_eq!(e["kind"], "double free or never allocated");
    let site = &e["site"];
    let frame = &site["frames"][site["library_frames"].as_u64().unwrap() as usize];
    assert_eq!(frame["function"], "release_twice", "{site}");
    let text = memtally(&["report", trace.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("MEMORY ERRORS: 1"), "{text}");
    assert!(text.contains("release_twice"), "{text}");
}

#[test]
fn double_frees_split_between_threads_are_each_reported_and_skipped_on_request() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("errors-threads");
    let exe = build_c(&dir, "double_free_threads", &["-pthread"]);
    // Unrecorded, default: the first one stops the program.
    let out = Command::new(&exe).env("LD_PRELOAD", &lib).output().unwrap();
    assert_eq!(out.status.code(), None, "killed by SIGABRT: {out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));

    // Recorded, on_error=report: both reported with their stacks, the
    // program runs to its end on an intact heap.
    let trace = dir.join("t.mtt");
    let out = run_reporting(&dir, &exe, &lib, &trace);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("the call is ignored").count(), 2, "{err}");
    // With the offending call's stack (module+offset) under each.
    assert_eq!(
        err.matches("memtally:   at: double_free_threads+0x")
            .count(),
        2,
        "{err}"
    );

    let doc = json_of(&["report", "--json", trace.to_str().unwrap()]);
    let errors = doc["errors"].as_array().unwrap();
    let culprits: Vec<String> = errors
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "double free or never allocated");
            let site = &e["site"];
            let frame = &site["frames"][site["library_frames"].as_u64().unwrap() as usize];
            frame["function"].as_str().unwrap_or("?").to_owned()
        })
        .collect();
    assert_eq!(
        culprits,
        ["free_again_locally", "free_again_remote"],
        "{errors:?}"
    );
}

#[test]
fn invalid_frees_that_are_a_threads_first_call_are_recorded() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("errors-first-call");
    let exe = build_c(&dir, "first_call_invalid", &["-pthread"]);
    let trace = dir.join("t.mtt");
    let out = run_reporting(&dir, &exe, &lib, &trace);
    // The line says recorded only where the trace has it: here both.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("recorded in the trace with the call's stack")
            .count(),
        2,
        "{err}"
    );

    let doc = json_of(&["errors", "--json", trace.to_str().unwrap()]);
    assert_eq!(doc["total"], 2, "{doc}");
    let mut culprits: Vec<String> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            assert_eq!(g["kind"], "not allocated by memtally", "{g}");
            super::functions(&g["site"])
                .into_iter()
                .next()
                .unwrap_or_default()
        })
        .collect();
    culprits.sort();
    assert_eq!(culprits, ["free_a_global", "free_a_stack_address"], "{doc}");
}
