//! The C API under LD_PRELOAD: semantics of every function, threads and fork,
//! allocation before main, and invalid frees.

use crate::util::{
    TIMEOUT, TempDir, allocation_counts, compile, library, output_within, require, run_preloaded,
};
use std::process::Command;

#[test]
fn c_semantics_of_the_malloc_family() {
    require("cc");
    let dir = TempDir::new("api");
    let exe = compile("api.c", &dir, &[]);
    let out = run_preloaded(&mut Command::new(&exe));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert!(
        allocation_counts(&out.stderr).iter().any(|&n| n >= 5000),
        "{stderr}"
    );
}

#[test]
fn threads_exit_and_fork_in_a_multithreaded_process() {
    require("cc");
    let dir = TempDir::new("fork");
    let exe = compile("threads_fork.c", &dir, &[]);
    let out = run_preloaded(&mut Command::new(&exe));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done 1\n");
    // The children leave with _exit (no statistics); the parent reports.
    assert!(
        allocation_counts(&out.stderr)
            .iter()
            .any(|&n| n > 1_000_000),
        "{stderr}"
    );
}

#[test]
fn allocation_before_main_and_in_dlsym() {
    require("cc");
    let dir = TempDir::new("early");
    let exe = compile("early.c", &dir, &["-ldl"]);
    let out = run_preloaded(&mut Command::new(&exe));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "constructed 1\n");
}

#[test]
fn invalid_free_aborts_with_a_message() {
    require("cc");
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("bad");
    let exe = compile("bad_free.c", &dir, &["-O0"]);
    for (args, expect) in [
        (&[][..], "not allocated by memtally"),
        (&["interior"][..], "points 16 bytes into the 64-byte block"),
    ] {
        let out = output_within(
            Command::new(&exe).args(args).env("LD_PRELOAD", library()),
            TIMEOUT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("memtally: free(): invalid pointer 0x"));
        assert!(line.is_some_and(|l| l.contains(expect)), "{stderr}");
    }
}

#[test]
fn bad_setting_prints_one_line_and_runs_on() {
    let out = output_within(
        Command::new("true")
            .env("LD_PRELOAD", library())
            .env("MEMTALLY_STATS", "sometimes"),
        TIMEOUT,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "memtally: MEMTALLY_STATS: expected 1 or 0, got 'sometimes'; statistics stay off"
    );
}
