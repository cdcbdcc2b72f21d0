//! The `memtally` binary as users run it: exit statuses, the one-line
//! `memtally: ...` errors, and the report of a synthetic trace file.

use memtally_profiler::synth::{TraceBuilder, alloc, free};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn memtally(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(args)
        .output()
        .expect("run memtally")
}

/// A fresh directory for one test, `NAME.PID` under the target's scratch
/// space: two runs of these tests at once (two `cargo test`s on one
/// checkout: cargo locks the build, not the tests) must not truncate each
/// other's traces or remove each other's files. Directories of runs whose
/// process has gone are removed.
fn scratch(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    let me = std::process::id();
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let owner = file_name
            .to_str()
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && pid != me
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = root.join(format!("{name}.{me}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `libmemtally.so` of this build: `cargo test --workspace` builds it
/// into deps/, beside this test (a plain `cargo build` puts another copy
/// beside the binary, which may be stale here).
fn built_library() -> Option<PathBuf> {
    let test_exe = std::env::current_exe().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_memtally"));
    [
        test_exe.with_file_name("libmemtally.so"),
        exe.with_file_name("libmemtally.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Runs `memtally` with `args` in a fresh directory named `test`, with the
/// library of this build; None (the test skips) when it is not built.
fn run_recorded(test: &str, args: &[&str]) -> Option<Output> {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return None;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(args)
        .current_dir(scratch(test))
        .env("MEMTALLY_LIB", &lib)
        .env_remove("PYTHONMALLOC")
        .output()
        .unwrap();
    Some(out)
}

/// Builds `tests/c/NAME.c` with `cc -O1 -g` (and `cc_args`) into
/// `dir/NAME`; the executable's path.
fn build_c(dir: &Path, name: &str, cc_args: &[&str]) -> PathBuf {
    let exe = dir.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let built = Command::new("cc")
        .args(["-O1", "-g"])
        .args(cc_args)
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .status()
        .expect("cc is not installed; .ci/run installs it");
    assert!(built.success(), "cc {}", source.display());
    exe
}

/// Builds `tests/c/NAME.c` (with `cc_args` too) in a fresh directory
/// named `test` and records it with `memtally run` (with `run_args` too),
/// which must succeed;
/// the trace, or None (the test skips) when the library is not built.
fn record_c_program(
    test: &str,
    name: &str,
    cc_args: &[&str],
    run_args: &[&str],
) -> Option<PathBuf> {
    let dir = scratch(test);
    let exe = build_c(&dir, name, cc_args);
    let trace = dir.join("t.mtt");
    let out = run_recorded(
        &format!("{test}-run"),
        &[
            &["run", "-o", trace.to_str().unwrap()],
            run_args,
            &["--", exe.to_str().unwrap()],
        ]
        .concat(),
    )?;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    Some(trace)
}

/// The function names of a site object's frames (JSON), innermost first.
fn functions(site: &serde_json::Value) -> Vec<String> {
    site["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str().map(str::to_owned))
        .collect()
}

/// Runs `memtally` with `args`, which must succeed, and parses what it
/// printed as JSON.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = memtally(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Asserts the command failed with status 2 and one `memtally:` line
/// containing `want`.
fn fails_with(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("memtally: "), "stderr: {err}");
    assert!(err.contains(want), "stderr: {err}");
    assert!(out.stdout.is_empty());
}

fn sample_trace(dir: &Path) -> PathBuf {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1000, 1000);
    t.thread(0, 77, "main", 0);
    t.frame(1, 0, 0x1000).frame(2, 1, 0x2000);
    t.events(
        0,
        &[
            alloc(320, 0xa000, 100, 2),
            alloc(640, 0xb000, 200, 1),
            free(960, 0xa000),
        ],
    );
    t.footer(1280);
    let path = dir.join("sample.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    path
}

#[test]
fn bad_flags_and_missing_files_exit_2_with_one_line() {
    fails_with(&memtally(&["--bogus"]), "invalid option '--bogus'");
    fails_with(&memtally(&[]), "no command given");
    fails_with(&memtally(&["report", "--frames"]), "missing argument");
    fails_with(
        &memtally(&["report", "/no/such/trace.mtt"]),
        "cannot read /no/such/trace.mtt: No such file or directory",
    );
    let dir = scratch("bad-files");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "hello, not a trace\n").unwrap();
    fails_with(
        &memtally(&["report", text.to_str().unwrap()]),
        "notes.txt: not a memtally trace (bad magic bytes)",
    );
    fails_with(
        &memtally(&["report", dir.to_str().unwrap()]),
        "is a directory",
    );
}

#[test]
fn help_exits_0() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["report", "-h"],
        &["help", "run"],
    ] {
        let out = memtally(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));
    }
}

#[test]
fn report_prints_the_sections() {
    let dir = scratch("report");
    let trace = sample_trace(&dir);
    let out = memtally(&["report", trace.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "memtally report: ",
        "SUMMARY",
        "PEAK HEAP: 300 B in 2 blocks at 640 ns",
        "LIVE AT EXIT: 200 B in 1 blocks",
        "TOP SITES BY BYTES ALLOCATED",
        "TEMPORARY ALLOCATIONS",
        "SIZES",
        "LATENCY AND LIFETIMES",
        "THREADS",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
}

#[test]
fn report_json_parses_and_has_the_documented_fields() {
    let dir = scratch("json");
    let trace = sample_trace(&dir);
    let v = json_of(&["report", "--json", "--top", "1", trace.to_str().unwrap()]);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["summary"]["allocations"], 2);
    assert_eq!(v["summary"]["peak_bytes"], 300);
    assert_eq!(v["live_at_exit"]["sites"][0]["stack"], 1);
    assert_eq!(v["top_by_bytes"].as_array().unwrap().len(), 1);
    assert_eq!(v["threads"][0]["os_tid"], 77);
}

#[test]
fn a_truncated_trace_is_reported_with_a_note() {
    let dir = scratch("truncated");
    let trace = sample_trace(&dir);
    let bytes = std::fs::read(&trace).unwrap();
    std::fs::write(&trace, &bytes[..bytes.len() - 3]).unwrap();
    let out = memtally(&["report", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("note: trace cut short at byte"), "{text}");
}

#[test]
fn a_damaged_trace_is_said_in_one_line_and_what_came_before_is_reported() {
    let dir = scratch("damaged");
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1000, 1000);
    t.frame(1, 0, 0x1000);
    t.events(0, &[alloc(320, 0xa000, 100, 1)]);
    let at = t.bytes().len();
    // A FRAME record (kind 4) whose one-byte payload ends after the
    // frame's id, then more that is not read.
    t.raw(&[4, 1, 2]);
    t.events(0, &[free(640, 0xa000)]).footer(1000);
    let path = dir.join("damaged.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let p = path.to_str().unwrap();
    for cmd in ["report", "leaks", "flame", "export", "plot"] {
        let mut args = vec![cmd, p];
        if cmd == "export" {
            args.extend(["--format", "json"]);
        }
        if cmd != "report" && cmd != "leaks" {
            args.extend(["-o", "-"]);
        }
        let out = memtally(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {err}");
        assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "memtally: note: {p} is damaged at byte {at} (a record of kind 4: frame parent); reading stopped there and everything before it is analysed"
            ),
            "{cmd}"
        );
    }
    // The allocation before the damage is there; the free after it is not.
    let out = memtally(&["leaks", p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": 100 B in 1 blocks"), "{text}");
    assert!(
        text.contains("note: the trace is damaged at byte"),
        "{text}"
    );
    let out = memtally(&["report", "--json", p]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["trace"]["cut_at"], at as u64);
    assert_eq!(
        doc["trace"]["damage"],
        format!("byte {at}: a record of kind 4: frame parent")
    );
}

#[test]
fn run_of_a_missing_command_fails_clearly() {
    let out = memtally(&["run", "--", "/no/such/command-xyz"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot run /no/such/command-xyz: command not found")
            || err.contains("libmemtally.so not found"),
        "{err}"
    );
}

#[test]
fn run_true_works_or_says_the_library_is_missing() {
    let dir = scratch("run-true");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--", "true"])
        .current_dir(&dir)
        .env_remove("MEMTALLY_LIB")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(0) {
        assert!(err.contains("memtally: "), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("libmemtally.so not found"), "{err}");
        assert!(
            err.contains("cargo build --release -p memtally-preload"),
            "{err}"
        );
    }
    // A library named by MEMTALLY_LIB that does not exist is an error.
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--", "true"])
        .env("MEMTALLY_LIB", "/no/such/libmemtally.so")
        .output()
        .unwrap();
    fails_with(&out, "MEMTALLY_LIB=/no/such/libmemtally.so is not a file");
}

#[test]
fn run_passes_the_exit_status_on() {
    // Use the system's own libc as a harmless stand-in for the library, so
    // this does not depend on the recorder being built.
    let Some(lib) = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        return;
    };
    let dir = scratch("run-status");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--", "sh", "-c", "exit 3"])
        .current_dir(&dir)
        .env("MEMTALLY_LIB", lib)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("memtally: no trace was written"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
        .current_dir(&dir)
        .env("MEMTALLY_LIB", lib)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
    // The environment the command sees.
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args([
            "run",
            "--mode",
            "sampled",
            "--interval",
            "1M",
            "-o",
            "t.%p.mtt",
            "--",
            "sh",
            "-c",
            "echo \"$MEMTALLY\"; echo \"$LD_PRELOAD\"; echo \"$PYTHONMALLOC\"",
        ])
        .current_dir(&dir)
        .env("MEMTALLY_LIB", lib)
        .env("LD_PRELOAD", "")
        .env_remove("PYTHONMALLOC")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let canonical = dir.canonicalize().unwrap();
    assert_eq!(
        stdout,
        format!(
            "mode=sampled,out={}/t.%p.mtt,interval=1048576\n{}\nmalloc\n",
            canonical.display(),
            Path::new(lib).canonicalize().unwrap().display()
        )
    );
    // A PYTHONMALLOC the user set is left alone.
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["run", "--", "sh", "-c", "echo \"$PYTHONMALLOC\""])
        .current_dir(&dir)
        .env("MEMTALLY_LIB", lib)
        .env("PYTHONMALLOC", "pymalloc_debug")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pymalloc_debug\n");
}

#[test]
fn run_report_prints_the_commands_own_report() {
    fails_with(
        &memtally(&["run", "--report", "--mode", "stats", "--", "true"]),
        "--report",
    );
    let Some(out) = run_recorded(
        "run-report",
        &[
            "run",
            "--report",
            "--",
            "sh",
            "-c",
            "x=$(echo a b c); echo \"$x\"",
        ],
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(stdout.starts_with("a b c\n"), "{stdout}");
    for want in ["SUMMARY", "allocations", "PEAK HEAP", "LIVE AT EXIT"] {
        assert!(stdout.contains(want), "no {want}: {stdout}");
    }
    assert!(err.contains("trace written to"), "{err}");
}

#[test]
fn run_follows_the_command_across_exec_and_reports_the_last_program() {
    // A wrapper that executes the real program, as env, nice and pyenv's
    // shims do.
    let Some(out) = run_recorded(
        "run-exec",
        &[
            "run",
            "--report",
            "-o",
            "w.mtt",
            "--",
            "sh",
            "-c",
            "exec sh -c 'echo inner'",
        ],
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("trace written to w.mtt"), "{err}");
    assert!(err.contains("trace written to w.1.mtt"), "{err}");
    let program = stdout
        .lines()
        .find(|l| l.starts_with("program"))
        .unwrap_or_default();
    assert!(program.contains("sh -c \"echo inner\""), "{stdout}");
}

#[test]
fn python_objects_are_seen() {
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .output()
        .is_err()
    {
        eprintln!("skipped: no python3 (.ci/run installs it)");
        return;
    }
    // 20,000 small objects of 1,000 bytes, all live at once: about 20 MB
    // that CPython's own arenas would hide.
    let Some(out) = run_recorded(
        "run-python",
        &[
            "run",
            "--report",
            "--",
            "python3",
            "-c",
            "x = [bytes(1000) for _ in range(20000)]; print(len(x))",
        ],
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("peak heap"))
        .unwrap_or_else(|| panic!("no peak line: {stdout}"));
    let mut words = peak.split_whitespace();
    let (value, unit) = (words.next().unwrap(), words.next().unwrap());
    let mib: f64 = value.replace(',', "").parse().unwrap();
    assert!(
        unit == "MiB" && mib >= 19.0,
        "peak {value} {unit}: {stdout}"
    );
}

#[test]
fn flame_draws_and_folds_and_says_what_is_wrong() {
    let dir = scratch("flame");
    let trace = sample_trace(&dir);
    let t = trace.to_str().unwrap();
    fails_with(&memtally(&["flame"]), "no trace given");
    fails_with(
        &memtally(&["flame", t, "--metric", "bogus"]),
        "unknown metric \"bogus\"",
    );
    fails_with(&memtally(&["flame", "/no/such.mtt"]), "/no/such.mtt");
    // Folded stacks on standard output.
    let out = memtally(&["flame", t, "--folded", "--metric", "count"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0x1000 1\n0x1000;0x2000 1\n"
    );
    // The SVG, named after the trace and the metric, in the directory.
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["flame", "sample.mtt", "--metric", "leaked"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("written to sample.leaked.svg"), "{err}");
    let svg = std::fs::read_to_string(dir.join("sample.leaked.svg")).unwrap();
    assert!(
        svg.contains("<title>0x1000 (200 bytes, 100.00%)</title>"),
        "{svg}"
    );
    // A differential graph of a trace against itself.
    let out = memtally(&["flame", t, "--diff", t, "-o", "-"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
}

#[test]
fn leaks_finds_the_planted_leaks_exactly() {
    let Some(trace) = record_c_program("leaks", "planted_leaks", &[], &[]) else {
        return;
    };
    let dir = trace.parent().unwrap().to_owned();
    let t = trace.to_str().unwrap();
    let v = json_of(&["leaks", t, "--json"]);
    assert_eq!(v["at_exit"], true);
    assert_eq!(v["leaked_blocks"], 4, "{v:#}");
    assert_eq!(v["leaked_bytes"], 5300);
    let site = |i: usize| {
        let s = &v["sites"][i];
        let frame = &s["frames"][s["library_frames"].as_u64().unwrap() as usize];
        (
            frame["function"].as_str().unwrap_or("?").to_owned(),
            s["live_bytes"].as_u64().unwrap(),
            s["live_blocks"].as_u64().unwrap(),
        )
    };
    assert_eq!(site(0), ("leak_big".to_owned(), 5000, 1));
    assert_eq!(site(1), ("leak_small".to_owned(), 300, 3));
    // --fail makes a leak a failure, for CI; suppressing both passes.
    assert_eq!(memtally(&["leaks", t, "--fail"]).status.code(), Some(1));
    let supp = dir.join("lsan.supp");
    std::fs::write(&supp, "# known\nleak:leak_big\nleak:^leak_sm*$\n").unwrap();
    let out = memtally(&[
        "leaks",
        t,
        "--fail",
        "--suppressions",
        supp.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("LEAKED AT EXIT: 0 B in 0 blocks, at 0 sites"),
        "{text}"
    );
    assert!(
        text.contains("SUPPRESSED: 5.2 KiB in 4 blocks, at 2 sites"),
        "{text}"
    );
    // A bad suppressions file is a clear error.
    std::fs::write(&supp, "race:x\n").unwrap();
    fails_with(
        &memtally(&["leaks", t, "--suppressions", supp.to_str().unwrap()]),
        "line 1: \"race\" suppressions are not memtally's",
    );
    fails_with(&memtally(&["leaks"]), "no trace given");
}

mod attach;
mod errors;
mod export;
mod gpu;
mod guard;
mod leak_scan;
mod live;
mod ownership;
mod plot;
mod races;
mod replay;
mod scopes;

/// Event records are packed by default (regrouped by field and compressed
/// by the writer, when a CPU is spare) and plain with `--no-compress`: the
/// two traces of one program tell the same story, and the packed one is
/// much smaller.
#[test]
fn packed_and_plain_traces_of_a_program_report_the_same() {
    let Some(packed) = record_c_program("packed", "churn_sites", &[], &[]) else {
        return;
    };
    let plain = record_c_program("plain", "churn_sites", &[], &["--no-compress"])
        .expect("the library is built");
    // The packer's memory is memtally's: a leak scan at exit finds the
    // same blocks, reachable or not, either way.
    let scan = |test: &str, extra: &[&str]| {
        let exe = packed.with_file_name("churn_sites");
        let trace = packed.with_file_name(format!("{test}.mtt"));
        let args = [
            &["run", "--leak-scan", "-o", trace.to_str().unwrap()],
            extra,
            &["--", exe.to_str().unwrap()],
        ]
        .concat();
        let out = run_recorded(test, &args).unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = err.lines().find(|l| l.contains("leak scan at exit"));
        let line = line.unwrap_or_else(|| panic!("no leak scan line in {err}"));
        // What it found, not how long the program paused.
        line.split("; the program paused")
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        scan("scan-packed", &[]),
        scan("scan-plain", &["--no-compress"])
    );
    let report = |t: &std::path::Path| json_of(&["report", "--json", t.to_str().unwrap()]);
    let (a, b) = (report(&packed), report(&plain));
    let s = &a["summary"];
    // 200,000 rounds, a third of them a malloc and a realloc (each
    // counted as an allocation, the realloc's old block as a free); 100
    // blocks of 48 bytes leak.
    assert_eq!(s["allocations"], 266_766, "{s:#}");
    assert_eq!(s["reallocations"], 66_666, "{s:#}");
    assert_eq!(s["frees"], 266_666, "{s:#}");
    assert_eq!(s["live_bytes"], 4800, "{s:#}");
    assert_eq!(s["live_blocks"], 100, "{s:#}");
    for key in [
        "allocations",
        "reallocations",
        "frees",
        "bytes_allocated",
        "peak_bytes",
        "temporary",
        "events",
    ] {
        assert_eq!(s[key], b["summary"][key], "{key}");
    }
    // Sites alike but for where the program was loaded (and from).
    fn unplaced(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(k, _)| *k != "address" && *k != "module")
                .map(|(k, v)| (k.clone(), unplaced(v)))
                .collect(),
            serde_json::Value::Array(a) => a.iter().map(unplaced).collect(),
            other => other.clone(),
        }
    }
    for key in ["live_at_exit", "top_by_count", "top_by_bytes"] {
        assert_eq!(unplaced(&a[key]), unplaced(&b[key]), "{key}");
    }
    // The writer packs with a CPU to spare: beside one busy thread, it
    // needs two.
    let size = |t: &std::path::Path| std::fs::metadata(t).unwrap().len();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        assert!(
            size(&packed) * 3 < size(&plain),
            "packed {} bytes, plain {}",
            size(&packed),
            size(&plain)
        );
    } else {
        eprintln!("one CPU: the writer packs nothing beside a busy thread; sizes not compared");
    }
    // On one CPU the same recording is written plain: packing would take
    // the program's time.
    let one_cpu = packed.with_file_name("one-cpu.mtt");
    let exe = packed.with_file_name("churn_sites");
    let out = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_memtally"), "run", "-o"])
        .args([&one_cpu, &exe])
        .env("MEMTALLY_LIB", built_library().unwrap())
        .output();
    match out {
        Ok(out) if out.status.success() => assert!(
            size(&one_cpu) * 10 > size(&plain) * 9,
            "one CPU {} bytes, plain {}",
            size(&one_cpu),
            size(&plain)
        ),
        _ => eprintln!("no taskset: recording on one CPU not tried"),
    }
}

/// `memtally pack` packs a plain trace afterwards: the same report, a
/// fraction of the size; it never writes over a file, and says what is
/// wrong with a bad input in one line.
#[test]
fn pack_compresses_a_plain_trace_and_the_report_stays() {
    let Some(plain) = record_c_program("pack", "churn_sites", &[], &["--no-compress"]) else {
        return;
    };
    let p = plain.to_str().unwrap();
    let out = memtally(&["pack", p]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let packed = plain.with_file_name("t.packed.mtt");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("event records packed"), "{said}");
    let size = |t: &std::path::Path| std::fs::metadata(t).unwrap().len();
    assert!(
        size(&packed) * 3 < size(&plain),
        "{} of {}",
        size(&packed),
        size(&plain)
    );
    let report = |t: &std::path::Path| {
        let mut v = json_of(&["report", "--json", t.to_str().unwrap()]);
        // The trace's own name and size differ, nothing else.
        v["trace"] = serde_json::Value::Null;
        v
    };
    assert_eq!(report(&plain), report(&packed));
    // Never over an existing file, never over the input.
    fails_with(
        &memtally(&["pack", p]),
        "exists; choose another output with -o",
    );
    fails_with(&memtally(&["pack", p, "-o", p]), "is the input");
    // A file that is no trace: one line, status 2, nothing left behind.
    let junk = plain.with_file_name("junk.mtt");
    std::fs::write(&junk, b"not a trace at all").unwrap();
    fails_with(
        &memtally(&["pack", junk.to_str().unwrap()]),
        "not a memtally trace",
    );
    assert!(!plain.with_file_name("junk.packed.mtt").exists());
    fails_with(&memtally(&["pack"]), "no trace given");
}

#[test]
fn leaks_growth_lists_the_site_that_keeps_growing() {
    let dir = scratch("leaks-growth");
    let mut t = TraceBuilder::new();
    t.full_header()
        .clock(0, 0)
        .clock(1_000_000_000, 1_000_000_000);
    t.frame(1, 0, 0x1000).frame(2, 0, 0x2000);
    let mut events = Vec::new();
    for i in 0..200u64 {
        // 0x1000 leaks 64 bytes every 5 ms; 0x2000 churns.
        events.push(alloc(i * 5_000_000, 0x10_0000 + i * 0x100, 64, 1));
        events.push(alloc(i * 5_000_000 + 1, 0x90_0000, 4096, 2));
        events.push(free(i * 5_000_000 + 2, 0x90_0000));
    }
    t.events(0, &events);
    t.footer(1_000_000_000);
    let path = dir.join("grow.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let p = path.to_str().unwrap();

    let out = memtally(&["leaks", "--growth", p]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let section = text.split("GROWING: ").nth(1).expect(&text);
    assert!(section.starts_with("1 site whose"), "{text}");
    assert!(section.contains("12.5 KiB/s"), "{text}");
    assert!(
        section.contains("0x1000") && !section.contains("0x2000"),
        "{text}"
    );

    let out = memtally(&["leaks", "--json", "--growth", p]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = &doc["growing"][0];
    let rate = g["bytes_per_second"].as_f64().unwrap();
    assert!((rate - 12_800.0).abs() < 100.0, "{g}");
    assert_eq!(g["site"]["live_bytes"], 12_800);
    let out = memtally(&["leaks", "--json", p]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["growing"].is_null());
}
