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
        "double_among_others" => {
            // SAFETY: deliberately frees `p` twice while its page holds other
            // live blocks, so only the liveness bits can tell.
            unsafe {
                let keep = raw::alloc(48, 8);
                let p = raw::alloc(48, 8);
                raw::free(p, "free");
                raw::free(p, "free");
                raw::free(keep, "free");
            }
        }
        "double_remote" => {
            // Another thread frees the block twice before its owner collects.
            // SAFETY: 8 is a power of two.
            let (keep, p) = unsafe { (raw::alloc(48, 8) as usize, raw::alloc(48, 8) as usize) };
            std::thread::spawn(move || {
                // SAFETY: deliberately invalid second free.
                unsafe {
                    raw::free(p as *mut u8, "free");
                    raw::free(p as *mut u8, "free");
                }
            })
            .join()
            .ok();
            // SAFETY: `keep` is live.
            unsafe { raw::free(keep as *mut u8, "free") };
        }
        "remote_then_local" => {
            // SAFETY: 8 is a power of two.
            let (keep, p) = unsafe { (raw::alloc(48, 8) as usize, raw::alloc(48, 8) as usize) };
            // SAFETY: the first free, from another thread, is valid.
            std::thread::spawn(move || unsafe { raw::free(p as *mut u8, "free") })
                .join()
                .ok();
            // SAFETY: deliberately invalid: the block is already free.
            unsafe { raw::free(p as *mut u8, "free") };
            // SAFETY: `keep` is live.
            unsafe { raw::free(keep as *mut u8, "free") };
        }
        "local_then_remote" => {
            // SAFETY: 8 is a power of two.
            let (keep, p) = unsafe { (raw::alloc(48, 8) as usize, raw::alloc(48, 8) as usize) };
            // SAFETY: valid first free.
            unsafe { raw::free(p as *mut u8, "free") };
            // SAFETY: deliberately invalid second free, from another thread.
            std::thread::spawn(move || unsafe { raw::free(p as *mut u8, "free") })
                .join()
                .ok();
            // SAFETY: `keep` is live.
            unsafe { raw::free(keep as *mut u8, "free") };
        }
        "report_and_run_on" => {
            // With on_error=report every invalid call is reported and
            // ignored; the heap stays consistent and the program goes on.
            let x = 5u64;
            // SAFETY: deliberately invalid calls, each ignored.
            unsafe {
                let keep = raw::alloc(48, 8);
                let p = raw::alloc(48, 8);
                raw::free(p, "free");
                raw::free(p, "free");
                raw::free(&x as *const u64 as *mut u8, "free");
                raw::free(keep.add(8), "free");
                assert_eq!(raw::usable_size(p), 0);
                assert!(raw::realloc(p, 100, 8, usize::MAX).is_null());
                let q = raw::alloc(48, 8);
                raw::free(q, "free");
                raw::free(keep, "free");
            }
            let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
            drop(v);
            memtally_alloc::debug::validate_current_heap().expect("heap consistent");
            return;
        }
        "layout_size" | "layout_align" | "layout_realloc_ok" => {
            use std::alloc::{GlobalAlloc, Layout};
            let a = memtally_alloc::MemTally;
            let l = Layout::from_size_align(100, 8).unwrap();
            // SAFETY: a valid layout; the dealloc below is deliberately wrong
            // (except in the last scenario).
            unsafe {
                let p = a.alloc(l);
                match scenario.as_str() {
                    "layout_size" => a.dealloc(p, Layout::from_size_align(1000, 8).unwrap()),
                    "layout_align" => {
                        // 24-byte blocks alternate between 16- and 8-byte
                        // alignment: take one of the latter, claim 16.
                        let l24 = Layout::from_size_align(24, 8).unwrap();
                        let mut q = a.alloc(l24);
                        while q as usize % 16 == 0 {
                            q = a.alloc(l24);
                        }
                        a.dealloc(q, Layout::from_size_align(24, 16).unwrap());
                    }
                    _ => {
                        // Shrunk in place, then freed with the new size.
                        let q = a.realloc(p, l, 60);
                        a.dealloc(q, Layout::from_size_align(60, 8).unwrap());
                        let v: Vec<u8> = Vec::with_capacity(1000);
                        drop(v);
                        return;
                    }
                }
            }
        }
        "layout_remote" | "layout_remote_double" | "layout_full_page" | "layout_huge" => {
            // The layout check on the paths other than the owner's fast
            // one: a free by another thread, into a page in the full list,
            // of a huge block. Each dealloc names 1000 bytes for a block of
            // 104 (or a 2 MiB block for the huge one), which must abort; a
            // second free by another thread must be told as a double free
            // first.
            use std::alloc::{GlobalAlloc, Layout};
            let a = memtally_alloc::MemTally;
            let l = Layout::from_size_align(100, 8).unwrap();
            let wrong = Layout::from_size_align(1000, 8).unwrap();
            // SAFETY: valid layouts; the deallocs are deliberately wrong.
            unsafe {
                match scenario.as_str() {
                    "layout_remote" | "layout_remote_double" => {
                        let keep = a.alloc(l);
                        let p = a.alloc(l) as usize;
                        let double = scenario == "layout_remote_double";
                        std::thread::spawn(move || {
                            let a = memtally_alloc::MemTally;
                            if double {
                                a.dealloc(p as *mut u8, l);
                            }
                            a.dealloc(p as *mut u8, wrong);
                        })
                        .join()
                        .unwrap();
                        a.dealloc(keep, l);
                    }
                    "layout_full_page" => {
                        // 7 KiB blocks fill a page in a few allocations;
                        // the allocations after that move it to the full
                        // list, whose frees take the owner's slow path.
                        let l7 = Layout::from_size_align(7000, 8).unwrap();
                        let blocks: Vec<usize> = (0..64).map(|_| a.alloc(l7) as usize).collect();
                        a.dealloc(
                            blocks[0] as *mut u8,
                            Layout::from_size_align(1000, 8).unwrap(),
                        );
                    }
                    _ => {
                        let big = Layout::from_size_align(1 << 20, 8).unwrap();
                        let p = a.alloc(big);
                        a.dealloc(p, Layout::from_size_align(2 << 20, 8).unwrap());
                    }
                }
            }
        }
        "new_freed_by_another_thread" | "new_deleted_by_another_thread" => {
            // A `new[]` block released by another thread: `free` is a
            // mismatch, `delete[]` is right (and `free` of a malloc block
            // by another thread is the common hand-off, done first).
            // SAFETY: valid calls but the deliberately mismatched one.
            let (m, p) = unsafe {
                (
                    raw::alloc(48, 8) as usize,
                    raw::alloc_new(48, 8, true) as usize,
                )
            };
            let right = scenario == "new_deleted_by_another_thread";
            std::thread::spawn(move || {
                // SAFETY: as above.
                unsafe {
                    raw::free(raw::alloc(16, 8), "free");
                    raw::free(m as *mut u8, "free");
                    if right {
                        raw::free_delete(p as *mut u8, true, "operator delete[]");
                    } else {
                        raw::free(p as *mut u8, "free");
                    }
                }
            })
            .join()
            .unwrap();
            if right {
                return;
            }
        }
        "double_huge" => {
            // SAFETY: deliberately frees a huge block (its own mapping) twice.
            unsafe {
                let p = raw::alloc(1 << 20, 8);
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
fn double_free_among_live_blocks_aborts() {
    expect_abort("double_among_others", "free(): invalid pointer 0x");
    expect_abort("double_among_others", "no live block there");
}

#[test]
fn double_free_of_a_huge_block_says_so() {
    expect_abort("double_huge", "no live block there (freed twice");
}

#[test]
fn double_free_by_another_thread_aborts() {
    expect_abort("double_remote", "no live block there");
}

#[test]
fn double_free_split_between_threads_aborts_either_way() {
    expect_abort("remote_then_local", "no live block there");
    expect_abort("local_then_remote", "no live block there");
}

#[test]
fn on_error_report_reports_each_call_and_runs_on() {
    let (status, stderr) = run_child(
        "errors::scenario_child",
        "report_and_run_on",
        &[("MEMTALLY", "on_error=report")],
    );
    assert!(status.success(), "{status:?}: {stderr}");
    // Each report is a line and the call's stack on the next.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memtally: ") && !l.starts_with("memtally:   at: "))
        .collect();
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("memtally:   at: "))
            .count(),
        lines.len(),
        "{stderr}"
    );
    let expected = [
        "free(): invalid pointer",
        "free(): invalid pointer",
        "free(): invalid pointer",
        "malloc_usable_size(): invalid pointer",
        "realloc(): invalid pointer",
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, what) in lines.iter().zip(expected) {
        assert!(line.contains(what), "{line}");
        assert!(line.ends_with("; the call is ignored"), "{line}");
    }
    assert!(lines[0].contains("no live block there"), "{}", lines[0]);
    assert!(
        lines[1].contains("not allocated by memtally"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("points 8 bytes into"), "{}", lines[2]);
}

#[test]
fn dealloc_with_a_mismatched_layout_aborts() {
    expect_abort("layout_size", "dealloc(): invalid pointer 0x");
    expect_abort(
        "layout_size",
        "layout (size 1000, align 8) that does not match the block (104 usable bytes",
    );
    expect_abort("layout_align", "layout (size 24, align 16)");
}

#[test]
fn dealloc_with_a_mismatched_layout_aborts_on_every_path() {
    // Another thread's free: its layout is checked where the general free
    // path finds the block.
    expect_abort(
        "layout_remote",
        "layout (size 1000, align 8) that does not match the block (104 usable bytes",
    );
    // A double free is told as one, whatever layout the second names.
    expect_abort("layout_remote_double", "no live block there");
    expect_abort("layout_full_page", "layout (size 1000, align 8)");
    expect_abort("layout_huge", "layout (size 2097152, align 8)");
    // An instrumented heap's own free (statistics on: no free token).
    let (status, stderr) = run_child(
        "errors::scenario_child",
        "layout_size",
        &[("MEMTALLY_STATS", "1")],
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(stderr.contains("layout (size 1000, align 8)"), "{stderr}");
}

#[test]
fn family_mismatch_by_another_thread_aborts() {
    expect_abort("new_freed_by_another_thread", "free(): invalid pointer 0x");
    expect_abort(
        "new_freed_by_another_thread",
        "the block was allocated with new[]",
    );
    let (status, stderr) = run_child(
        "errors::scenario_child",
        "new_deleted_by_another_thread",
        &[],
    );
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("memtally:"), "{stderr}");
}

#[test]
fn dealloc_after_a_shrink_in_place_is_fine() {
    let (status, stderr) = run_child("errors::scenario_child", "layout_realloc_ok", &[]);
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("memtally:"), "{stderr}");
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
