//! fork() in a multi-threaded process: the child must be able to allocate,
//! free and exit cleanly while other threads of the parent were allocating
//! at the moment of the fork.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn child_of_multithreaded_parent_allocates_and_exits() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    keep.push(vec![t as u8; 16 + i % 5000]);
                    if keep.len() > 1000 {
                        keep.clear();
                    }
                    // Huge blocks too, so the fork may hit the huge cache lock.
                    if i % 500 == 0 {
                        keep.push(vec![1u8; 1 << 20]);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..20 {
        // SAFETY: the child only allocates, frees and calls _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut ok = true;
            let v: Vec<String> = (0..20_000).map(|i| format!("child {i}")).collect();
            ok &= v[19_999] == "child 19999";
            let big = vec![7u8; 30 << 20];
            ok &= big[(30 << 20) - 1] == 7;
            drop(big);
            let t = std::thread::spawn(|| (0..10_000).map(Box::new).collect::<Vec<_>>());
            ok &= t.join().map(|v| v.len() == 10_000).unwrap_or(false);
            ok &= memtally_alloc::debug::validate_current_heap().is_ok();
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit
            // handlers and test harness state.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed with status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
