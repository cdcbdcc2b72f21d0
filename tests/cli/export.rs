//! `memtally export`: a recorded C program with planted leaks exported as
//! pprof and read back by Go's own `go tool pprof`, and as folded stacks
//! and JSON.

use super::{fails_with, memtally, record_c_program, scratch};
use std::process::Command;

/// Builds tests/c/planted_leaks.c and records it; None when the library is
/// not built.
fn planted_trace(test: &str) -> Option<std::path::PathBuf> {
    record_c_program(test, "planted_leaks", &[], &[])
}

/// `go tool pprof ARGS`, which must succeed.
fn pprof(args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("go is not installed; .ci/run installs it (apt-get install golang-go)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The flat value `go tool pprof -top` gives `function`, in its units.
fn flat(top: &str, function: &str) -> Option<String> {
    top.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() >= 6 && cols[5] == function).then(|| cols[0].to_owned())
    })
}

#[test]
fn pprof_loads_in_go_tool_pprof_with_the_planted_values() {
    let Some(trace) = planted_trace("export-pprof") else {
        return;
    };
    let t = trace.to_str().unwrap();
    let profile = trace.with_file_name("t.pb.gz");
    let out = memtally(&[
        "export",
        "--format",
        "pprof",
        "-o",
        profile.to_str().unwrap(),
        t,
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let p = profile.to_str().unwrap();

    // Live at exit: leak_big's 5000 B and leak_small's 3 x 100 B.
    let top = pprof(&[
        "-top",
        "-unit=B",
        "-nodefraction=0",
        "-sample_index=inuse_space",
        p,
    ]);
    assert_eq!(flat(&top, "leak_big").as_deref(), Some("5000B"), "{top}");
    assert_eq!(flat(&top, "leak_small").as_deref(), Some("300B"), "{top}");
    assert!(top.contains("Type: inuse_space"), "{top}");
    assert!(top.contains("File: planted"), "{top}");
    let top = pprof(&["-top", "-nodefraction=0", "-sample_index=inuse_objects", p]);
    assert_eq!(flat(&top, "leak_small").as_deref(), Some("3"), "{top}");
    // Allocated: churn's 2 x 1000 blocks of 64..1063 B.
    let top = pprof(&["-top", "-nodefraction=0", "-sample_index=alloc_objects", p]);
    assert_eq!(flat(&top, "churn").as_deref(), Some("2000"), "{top}");
    let top = pprof(&[
        "-top",
        "-unit=B",
        "-nodefraction=0",
        "-sample_index=alloc_space",
        p,
    ]);
    let churn_bytes = 2 * (0..1000).map(|i| 64 + i).sum::<u64>();
    assert_eq!(
        flat(&top, "churn"),
        Some(format!("{churn_bytes}B")),
        "{top}"
    );
    // Stacks go on to main, with source lines.
    let traces = pprof(&["-traces", "-sample_index=inuse_space", p]);
    let leak = traces
        .split("-----------+")
        .find(|t| t.contains("leak_big"))
        .unwrap_or_else(|| panic!("{traces}"));
    assert!(leak.find("leak_big") < leak.find("main"), "{leak}");
    let lines = pprof(&["-list=leak_big", "-sample_index=inuse_space", p]);
    assert!(lines.contains("planted_leaks.c"), "{lines}");
}

#[test]
fn folded_and_json_exports_carry_the_same_numbers() {
    let Some(trace) = planted_trace("export-text") else {
        return;
    };
    let t = trace.to_str().unwrap();
    let out = memtally(&[
        "export", "--format", "folded", "--metric", "leaked", "-o", "-", t,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let folded = String::from_utf8(out.stdout).unwrap();
    let value = |f: &str| -> u64 {
        folded
            .lines()
            .filter(|l| l.contains(&format!(";{f};")) || l.contains(&format!(";{f} ")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(value("leak_big"), 5000, "{folded}");
    assert_eq!(value("leak_small"), 300, "{folded}");

    let json = trace.with_file_name("t.json");
    let out = memtally(&[
        "export",
        "--format",
        "json",
        "-o",
        json.to_str().unwrap(),
        t,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["summary"]["live_bytes"], 5300);
    let sites = v["sites"].as_array().unwrap();
    let total: u64 = sites
        .iter()
        .map(|s| s["allocations"].as_u64().unwrap())
        .sum();
    assert_eq!(total, v["summary"]["allocations"].as_u64().unwrap());
    // Whole stacks: every site's frames reach main.
    for s in sites {
        let frames = s["frames"].as_array().unwrap();
        assert_eq!(s["more_frames"], 0);
        if frames.iter().any(|f| f["function"] == "leak_big") {
            assert!(frames.iter().any(|f| f["function"] == "main"), "{s:#}");
        }
    }
}

#[test]
fn export_says_what_is_wrong() {
    let dir = scratch("export-errors");
    fails_with(&memtally(&["export", "x.mtt"]), "no --format given");
    fails_with(
        &memtally(&["export", "--format", "svg", "x.mtt"]),
        "unknown format \"svg\"",
    );
    fails_with(
        &memtally(&["export", "--format", "pprof", "--metric", "peak", "x.mtt"]),
        "--metric applies to --format folded only",
    );
    let missing = dir.join("missing.mtt");
    fails_with(
        &memtally(&["export", "--format", "json", missing.to_str().unwrap()]),
        "missing.mtt",
    );
    let garbage = dir.join("garbage.mtt");
    std::fs::write(&garbage, b"not a trace at all").unwrap();
    fails_with(
        &memtally(&[
            "export",
            "--format",
            "pprof",
            "-o",
            "-",
            garbage.to_str().unwrap(),
        ]),
        "garbage.mtt",
    );
}
