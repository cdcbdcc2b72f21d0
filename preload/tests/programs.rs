//! Real programs under LD_PRELOAD: output identical to a plain run, and the
//! statistics line proves the library served their allocations.

use crate::util::{
    TempDir, allocation_counts, compile, require, run_preloaded, same_with_and_without,
    without_stats,
};
use std::process::Command;

#[test]
fn python_builds_dicts_strings_and_threads() {
    require("python3");
    let script = r#"
import threading, json
data = {f"key{i}": [str(i) * (i % 17)] * (i % 5) for i in range(200000)}
out = []
def work(n):
    d = {i: {"v": str(i) * 3, "l": list(range(i % 40))} for i in range(n)}
    out.append(sum(len(v["l"]) for v in d.values()))
ts = [threading.Thread(target=work, args=(50000 + k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
s = json.dumps(data)[:100000]
print(len(data), sorted(out), len(s), hash("stable") != 0)
"#;
    // PYTHONMALLOC=malloc sends every object through malloc instead of
    // Python's own small-object arenas, so the allocator sees all of them.
    same_with_and_without("python3", 1_000_000, || {
        let mut c = Command::new("python3");
        c.args(["-c", script])
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONMALLOC", "malloc");
        c
    });
    // And with Python's default allocator, as users run it.
    same_with_and_without("python3 (pymalloc)", 1_000, || {
        let mut c = Command::new("python3");
        c.args(["-c", script]).env("PYTHONHASHSEED", "0");
        c
    });
}

/// What one command of a session produced: exit code, stdout, stderr without
/// statistics, and the allocation counts of the statistics lines.
type StepOutput = (Option<i32>, Vec<u8>, String, Vec<u64>);

/// One git session in a fresh repository: init, add, commit, log.
fn git_session(preload: bool) -> Vec<StepOutput> {
    let dir = TempDir::new("git");
    for i in 0..200 {
        std::fs::write(
            dir.join(&format!("f{i}.txt")),
            format!("line {i}\n").repeat(i),
        )
        .unwrap();
    }
    let steps: [&[&str]; 4] = [
        &["init", "-q", "-b", "main"],
        &["add", "."],
        &["commit", "-q", "-m", "first"],
        &["log", "--stat", "--format=%H %an %s"],
    ];
    steps
        .iter()
        .map(|args| {
            let mut c = Command::new("git");
            c.args(*args)
                .current_dir(&dir.0)
                .env("HOME", &dir.0)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "T")
                .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
                .env("GIT_COMMITTER_NAME", "T")
                .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
                .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
            let out = if preload {
                run_preloaded(&mut c)
            } else {
                c.output().unwrap()
            };
            (
                out.status.code(),
                out.stdout,
                without_stats(&out.stderr),
                allocation_counts(&out.stderr),
            )
        })
        .collect()
}

#[test]
fn git_init_add_commit_log() {
    require("git");
    let plain = git_session(false);
    let pre = git_session(true);
    for (i, (a, b)) in plain.iter().zip(&pre).enumerate() {
        assert_eq!(a.0, Some(0), "plain git step {i} failed: {}", a.2);
        assert_eq!((a.0, &a.1, &a.2), (b.0, &b.1, &b.2), "git step {i} differs");
        assert!(
            b.3.iter().any(|&n| n > 0),
            "git step {i}: no statistics line: {:?}",
            b.3
        );
    }
    assert!(String::from_utf8_lossy(&pre[3].1).contains("200 files changed"));
}

#[test]
fn gcc_compiles_and_links() {
    require("gcc");
    let dir = TempDir::new("gcc");
    let src = dir.join("prog.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <stdlib.h>\nint main(void){long s=0;for(int i=0;i<1000;i++){int*p=malloc(4*i+4);p[0]=i;s+=p[0];free(p);}printf(\"%ld\\n\",s);return 0;}\n",
    )
    .unwrap();
    let exe = dir.join("prog");
    // gcc runs cc1, as and collect2/ld: every one of them is preloaded.
    same_with_and_without("gcc", 100, || {
        let mut c = Command::new("gcc");
        c.args(["-O2", "-o"]).arg(&exe).arg(&src);
        c
    });
    let run = Command::new(&exe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "499500\n");
}

#[test]
fn sort_of_a_multi_megabyte_file() {
    require("sort");
    let dir = TempDir::new("sort");
    let input = dir.join("input.txt");
    let mut text = String::new();
    let mut x: u64 = 88172645463325252;
    for _ in 0..500_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!("{:016x} {}\n", x, x % 1000));
    }
    std::fs::write(&input, &text).unwrap();
    assert!(text.len() > 8 << 20);
    same_with_and_without("sort", 10, || {
        let mut c = Command::new("sort");
        c.args(["--parallel=2", "-S", "4M"])
            .arg(&input)
            .env("LC_ALL", "C");
        c
    });
}

#[test]
fn cpp_threads_new_delete_and_map() {
    require("g++");
    let dir = TempDir::new("cpp");
    let exe = compile("containers.cpp", &dir, &[]);
    let pre = same_with_and_without("c++ program", 50_000, || Command::new(&exe));
    assert_eq!(String::from_utf8_lossy(&pre.stdout), "keys=3000\n");
}

#[test]
fn rust_program_cargo_metadata() {
    // cargo is a Rust program using the system allocator, so under the
    // preload its Rust allocations reach our malloc through std's System.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    same_with_and_without("cargo metadata", 1_000, || {
        let mut c = Command::new(env!("CARGO"));
        c.args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest);
        c
    });
}
