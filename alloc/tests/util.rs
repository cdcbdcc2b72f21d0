//! Helpers shared by the integration tests.

use memtally_alloc::{debug, raw};

/// Panics with the violation if the calling thread's heap is inconsistent.
pub fn check_heap() {
    if let Err(v) = debug::validate_current_heap() {
        panic!("{v}");
    }
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
pub fn fill(p: *mut u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8).wrapping_mul(31);
    }
}

/// Checks the pattern written by [`fill`] on the first `len` bytes.
pub fn verify(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == seed.wrapping_add(i as u8).wrapping_mul(31))
}

/// Allocates through the raw API and checks the basic contract.
pub fn alloc_checked(size: usize, align: usize) -> *mut u8 {
    // SAFETY: tests pass powers of two.
    let p = unsafe { raw::alloc(size, align) };
    assert!(!p.is_null(), "alloc({size}, {align}) failed");
    assert_eq!(
        p as usize % align,
        0,
        "alloc({size}, {align}) misaligned: {p:p}"
    );
    // SAFETY: `p` is live.
    let usable = unsafe { raw::usable_size(p) };
    assert!(usable >= size, "usable {usable} < size {size}");
    p
}

/// Runs this test binary again with `MEMTALLY_TEST_CHILD=<scenario>`, only the
/// test named `test`, and returns its exit status and stderr. Used for
/// scenarios that must abort the process.
pub fn run_child(
    test: &str,
    scenario: &str,
    extra_env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("MEMTALLY_TEST_CHILD", scenario);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn child test");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The scenario this process should run as a child, if any.
pub fn child_scenario() -> Option<String> {
    std::env::var("MEMTALLY_TEST_CHILD").ok()
}
