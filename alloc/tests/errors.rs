//! Bad input must be caught, not corrupt memory: invalid frees abort with a
//! one-line message naming the call and the address; a bad setting prints one
//! line and the program runs on. Each scenario runs in a child process.

use crate::util::{child_scenario, run_child};
use memtally_alloc::raw;

/// Entry point of the child processes: does nothing in a normal test run.
#[test]
fn scenario_child() {
    let Some(scenario) = child_scenario() else {
        return;
    };
    match scenario.as_str() {
        "stack" => {
            let x = 5u64;
            // SAFETY: deliberately invalid, to provoke the report.
            unsafe { raw::free(&x as *const u64 as *mut u8, "free") };
        }
        "interior" => {
            // SAFETY: 8 is a power of two; the free is deliberately invalid.
            unsafe {
                let p = raw::alloc(64, 8);
                raw::free(p.add(8), "free");
            }
        }
        "double" => {
            // SAFETY: deliberately frees twice. Nothing else in this process
            // uses the 7 KiB class, so the block is alone in its page, which
            // stays (retained, empty) after the first free; the second free
            // finds no live block there.
            unsafe {
                let p = raw::alloc(7000, 8);
                raw::free(p, "free");
                raw::free(p, "free");
            }
        }
        "foreign" => {
            // SAFETY: the pointer comes from glibc's malloc, not ours.
            unsafe {
                let p = libc::malloc(100) as *mut u8;
                raw::free(p, "free");
            }
        }
        "usable" => {
            let x = 5u64;
            // SAFETY: deliberately invalid.
            unsafe { raw::usable_size(&x as *const u64 as *mut u8) };
        }
        "stats" => {
            let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![0; i]).collect();
            drop(v);
            return;
        }
        other => panic!("unknown scenario {other}"),
    }
    // Reaching here means the bad pointer went unnoticed.
    std::process::exit(3);
}

fn expect_abort(scenario: &str, message: &str) {
    let (status, stderr) = run_child("errors::scenario_child", scenario, &[]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "{scenario}: {status:?}, stderr: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("memtally: "))
        .unwrap_or_else(|| panic!("{scenario}: no memtally line in {stderr}"));
    assert!(line.contains(message), "{scenario}: {line}");
}

#[test]
fn free_of_a_stack_address_aborts() {
    expect_abort("stack", "free(): invalid pointer 0x");
    expect_abort("stack", "not allocated by memtally");
}

#[test]
fn free_of_an_interior_pointer_aborts() {
    expect_abort("interior", "points 8 bytes into the 64-byte block at 0x");
}

#[test]
fn double_free_of_a_lone_block_aborts() {
    expect_abort("double", "no live block there");
}

#[test]
fn free_of_another_allocators_pointer_aborts() {
    expect_abort("foreign", "not allocated by memtally");
}

#[test]
fn usable_size_of_a_bad_pointer_aborts() {
    expect_abort("usable", "malloc_usable_size(): invalid pointer");
}

#[test]
fn stats_line_at_exit() {
    let (status, stderr) = run_child(
        "errors::scenario_child",
        "stats",
        &[("MEMTALLY_STATS", "1")],
    );
    assert!(status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("memtally: allocations="))
        .unwrap_or_else(|| panic!("no stats line in {stderr}"));
    let allocs: u64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("allocations="))
        .and_then(|v| v.parse().ok())
        .expect("allocations=N");
    assert!(allocs >= 1000, "{line}");
}

#[test]
fn bad_setting_warns_and_runs_on() {
    let (status, stderr) = run_child(
        "errors::scenario_child",
        "stats",
        &[("MEMTALLY_STATS", "banana")],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "memtally: MEMTALLY_STATS: expected 1 or 0, got 'banana'; statistics stay off"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("allocations="), "{stderr}");
}
