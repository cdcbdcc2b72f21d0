//! Guarded allocations: planted overflows, underflows and uses after free
//! in a C program fault at the access under `memtally run --guard-every 1`,
//! are reported with the access and allocation (and free) stacks, and are
//! recorded in the trace; clean programs run clean.

use super::{build_c, built_library, json_of, scratch};
use std::path::Path;
use std::process::{Command, Output};

/// `tests/c/guarded.c`, built in `dir` (its `uaf-thread` case starts a
/// thread).
fn build_guarded(dir: &Path) -> std::path::PathBuf {
    build_c(dir, "guarded", &["-pthread"])
}

fn run_guarded(dir: &Path, exe: &Path, mode: &str, extra: &[&str], trace: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--guard-every", "1", "-o", trace.to_str().unwrap()])
        .args(extra)
        .arg("--")
        .arg(exe)
        .arg(mode)
        .current_dir(dir)
        .env("MEMTALLY_LIB", built_library().unwrap())
        .output()
        .unwrap()
}

#[test]
fn planted_errors_fault_at_the_access_with_their_stacks() {
    if built_library().is_none() {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    }
    let dir = scratch("guard");
    let exe = build_guarded(&dir);
    for (mode, line, kind, function, freed) in [
        (
            "overflow",
            "heap-buffer-overflow: write at",
            "buffer overflow",
            "write_past_end",
            false,
        ),
        (
            "underflow",
            "heap-buffer-underflow: read at",
            "buffer underflow",
            "read_before_start",
            false,
        ),
        (
            "uaf-read",
            "heap-use-after-free: read at",
            "use after free",
            "read_after_free",
            true,
        ),
        // The access is a thread's first brush with the heap (it never
        // allocated): recorded all the same.
        (
            "uaf-thread",
            "heap-use-after-free: read at",
            "use after free",
            "read_after_free",
            true,
        ),
        (
            "uaf-write",
            "heap-use-after-free: write at",
            "use after free",
            "write_after_free",
            true,
        ),
    ] {
        let trace = dir.join(format!("{mode}.mtt"));
        let out = run_guarded(&dir, &exe, mode, &[], &trace);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("survived"),
            "{mode}: {err}"
        );
        assert_eq!(
            out.status.code(),
            Some(128 + libc::SIGSEGV),
            "{mode}: {out:?}"
        );
        let first = err
            .lines()
            .find(|l| l.starts_with("memtally: heap-"))
            .unwrap_or_else(|| panic!("{mode}: no report in {err}"));
        assert!(first.contains(line), "{mode}: {first}");
        assert!(first.contains("the 48-byte block at 0x"), "{mode}: {first}");
        if mode == "overflow" {
            assert!(first.contains("1 byte past the end of"), "{first}");
        }
        if mode == "underflow" {
            assert!(first.contains("1 byte before"), "{first}");
        }
        assert!(
            err.contains("memtally:   access: guarded+0x"),
            "{mode}: {err}"
        );
        assert!(
            err.contains("memtally:   allocated: guarded+0x"),
            "{mode}: {err}"
        );
        assert_eq!(
            err.contains("memtally:   freed: guarded+0x"),
            freed,
            "{mode}: {err}"
        );

        // The trace holds the error with the access's stack, symbolised.
        let doc = json_of(&["report", "--json", trace.to_str().unwrap()]);
        let errors = doc["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{mode}: {errors:?}");
        let e = &errors[0];
        assert_eq!(e["kind"], kind, "{mode}");
        assert_eq!(e["call"], "access", "{mode}");
        let site = &e["site"];
        let frames = super::functions(site);
        assert_eq!(
            frames.first().map(String::as_str),
            Some(function),
            "{mode}: {frames:?}"
        );

        // memtally errors: one group, the block's allocation stack, and
        // --fail fails.
        let doc = json_of(&["errors", "--json", trace.to_str().unwrap()]);
        assert_eq!(doc["total"], 1, "{mode}: {doc}");
        let g = &doc["groups"][0];
        assert_eq!(g["kind"], kind, "{mode}");
        assert_eq!(g["count"], 1, "{mode}");
        let b = &g["block"];
        assert_eq!(b["size"], 48, "{mode}: {g}");
        let alloc = super::functions(&b["allocated_at"]);
        assert!(
            alloc.iter().any(|f| f == "main" || f == "placed"),
            "{mode}: {alloc:?}"
        );
        assert_eq!(b["freed_by_thread"].is_u64(), freed, "{mode}: {b}");
        let status = Command::new(env!("CARGO_BIN_EXE_memtally"))
            .args(["errors", "--fail", trace.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(1), "{mode}");
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(text.contains("MEMORY ERRORS: 1 in 1 group"), "{text}");
        assert!(
            text.contains(&format!("at {function} (c/guarded.c:")),
            "{text}"
        );
    }
}

/// Runs each command line with `LD_PRELOAD=lib` and `env`: each must
/// succeed without a line from memtally. A program not installed is
/// skipped, and said so.
fn assert_run_clean<S: AsRef<std::ffi::OsStr>>(
    lib: &Path,
    env: &[(&str, &str)],
    programs: &[Vec<S>],
) {
    for argv in programs {
        let Ok(out) = Command::new(&argv[0])
            .args(&argv[1..])
            .env("LD_PRELOAD", lib)
            .envs(env.iter().copied())
            .output()
        else {
            eprintln!("skipped {:?}: not installed", argv[0].as_ref());
            continue;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        let shown: Vec<_> = argv.iter().map(|a| a.as_ref()).collect();
        assert!(out.status.success(), "{shown:?}: {out:?}");
        assert!(!err.contains("memtally:"), "{shown:?}: {err}");
    }
}

/// Builds `tests/c/NAME.cpp` with the C++ compiler.
fn build_cpp(dir: &Path, name: &str) -> std::path::PathBuf {
    let exe = dir.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.cpp"));
    let built = Command::new("c++")
        .args(["-O1", "-g", "-o"])
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("c++ is not installed; .ci/run installs it");
    assert!(built.success(), "c++ {}", source.display());
    exe
}

#[test]
fn planted_errors_in_cpp_are_caught_with_their_functions() {
    if built_library().is_none() {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    }
    let dir = scratch("guard-cpp");
    let exe = build_cpp(&dir, "cpp_errors");
    for (mode, kind, function, signal) in [
        (
            "double-delete",
            "double free or never allocated",
            "delete_twice",
            libc::SIGABRT,
        ),
        (
            "overflow",
            "buffer overflow",
            "write_past_end",
            libc::SIGSEGV,
        ),
        ("uaf", "use after free", "read_after_delete", libc::SIGSEGV),
    ] {
        let trace = dir.join(format!("{mode}.mtt"));
        let out = run_guarded(&dir, &exe, mode, &[], &trace);
        assert_eq!(out.status.code(), Some(128 + signal), "{mode}: {out:?}");
        let doc = json_of(&["errors", "--json", trace.to_str().unwrap()]);
        assert_eq!(doc["total"], 1, "{mode}: {doc}");
        let g = &doc["groups"][0];
        assert_eq!(g["kind"], kind, "{mode}");
        let frames = super::functions(&g["site"]);
        assert!(
            frames.iter().any(|f| f.starts_with(function)),
            "{mode}: {frames:?}"
        );
    }
}

#[test]
fn mismatched_cpp_releases_are_caught_and_clean_cpp_runs_clean() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("cpp-mismatch");
    let exe = build_cpp(&dir, "cpp_mismatch");
    for (mode, line, function) in [
        ("free-new", "free(): invalid pointer 0x", "free_a_new_block"),
        (
            "delete-array",
            "operator delete(): invalid pointer 0x",
            "delete_an_array",
        ),
        (
            "array-delete",
            "operator delete[](): invalid pointer 0x",
            "delete_array_of_one",
        ),
    ] {
        let out = Command::new(&exe)
            .arg(mode)
            .env("LD_PRELOAD", &lib)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            None,
            "{mode}: killed by SIGABRT: {out:?}"
        );
        assert!(err.contains(line), "{mode}: {err}");
        assert!(
            err.contains("the block was allocated with new"),
            "{mode}: {err}"
        );
        // Recorded: the offending call's stack names the function.
        let trace = dir.join(format!("{mode}.mtt"));
        Command::new(env!("CARGO_BIN_EXE_memtally"))
            .args(["run", "-o", trace.to_str().unwrap(), "--"])
            .arg(&exe)
            .arg(mode)
            .env("MEMTALLY_LIB", &lib)
            .output()
            .unwrap();
        let doc = json_of(&["errors", "--json", trace.to_str().unwrap()]);
        let g = &doc["groups"][0];
        assert_eq!(
            g["kind"], "allocation and deallocation mismatch",
            "{mode}: {doc}"
        );
        let frames = super::functions(&g["site"]);
        assert!(
            frames.iter().any(|f| f.starts_with(function)),
            "{mode}: {frames:?}"
        );
    }
    // The test program's clean run, then real C++ programs, where
    // installed: the C++ compiler itself, V8, gdb.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/cpp_mismatch.cpp");
    let object = dir.join("cpp_mismatch.o");
    let programs: [Vec<&std::ffi::OsStr>; 4] = [
        vec![exe.as_os_str(), "clean".as_ref()],
        vec![
            "c++".as_ref(),
            "-O2".as_ref(),
            "-c".as_ref(),
            "-o".as_ref(),
            object.as_os_str(),
            source.as_os_str(),
        ],
        vec![
            "node".as_ref(),
            "-e".as_ref(),
            "let a = []; for (let i = 0; i < 100000; i++) a.push({i, s: 'x' + i});".as_ref(),
        ],
        vec![
            "gdb".as_ref(),
            "-batch".as_ref(),
            "-ex".as_ref(),
            "print 1+1".as_ref(),
        ],
    ];
    assert_run_clean(&lib, &[], &programs);
}

#[test]
fn on_error_report_lets_the_program_run_on_past_a_fault() {
    if built_library().is_none() {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    }
    let dir = scratch("guard-report");
    let exe = build_guarded(&dir);
    let trace = dir.join("t.mtt");
    let out = run_guarded(&dir, &exe, "uaf-write", &["--on-error", "report"], &trace);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("survived"),
        "{err}"
    );
    assert_eq!(
        err.matches("memtally: heap-use-after-free").count(),
        1,
        "{err}"
    );
}

#[test]
fn a_trace_without_errors_passes_errors_fail() {
    if built_library().is_none() {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    }
    let dir = scratch("guard-none");
    let exe = build_guarded(&dir);
    let trace = dir.join("t.mtt");
    let out = run_guarded(&dir, &exe, "clean", &[], &trace);
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["errors", "--fail", trace.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "No memory errors in this trace.\n"
    );
}

#[test]
fn clean_programs_run_clean_with_every_allocation_guarded() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("guard-clean");
    let exe = build_guarded(&dir);
    let git_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let programs: Vec<Vec<String>> = vec![
        vec![exe.to_str().unwrap().into(), "clean".into()],
        vec![
            "python3".into(),
            "-c".into(),
            "import json; d = {str(i): [i] * (i % 50) for i in range(20000)}; print(len(json.dumps(d)))"
                .into(),
        ],
        vec!["git".into(), "-C".into(), git_dir.to_str().unwrap().into(), "log".into(), "--oneline".into(), "-20".into()],
        vec![
            "cc".into(),
            "-O2".into(),
            "-c".into(),
            "-o".into(),
            dir.join("reachability.o").to_str().unwrap().into(),
            git_dir.join("tests/c/reachability.c").to_str().unwrap().into(),
        ],
    ];
    assert_run_clean(&lib, &[("MEMTALLY", "guard_every=1")], &programs);
}
