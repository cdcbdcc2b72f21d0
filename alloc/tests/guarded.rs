//! Planted memory errors in unsafe Rust, caught by guarded allocations
//! (`MEMTALLY=guard_every=1`): an overflow by one byte, an underflow by one
//! byte, a read and a write after free. Each runs in a child process (this
//! binary again), which must die of SIGSEGV after one report line naming
//! the fault and the block; a Vec/String/HashMap workload under the same
//! setting must run clean.
//!
//! Its own binary without the test harness: with every allocation guarded,
//! the harness's own blocks would take the slots first.

use memtally_alloc::{MemTally, raw};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[global_allocator]
static A: MemTally = MemTally::new();

const SIZE: usize = 64;

/// A block placed at the end of its slot (`at_end`) or at its start, so
/// that the planted access reaches a guard page. Blocks are placed at random.
fn placed(at_end: bool) -> *mut u8 {
    for _ in 0..24 {
        // SAFETY: 16 is a power of two.
        let p = unsafe { raw::alloc(SIZE, 16) };
        let a = p as usize;
        if (at_end && (a + SIZE) % 4096 == 0) || (!at_end && a % 4096 == 0) {
            return p;
        }
    }
    std::process::exit(4)
}

fn scenario(name: &str) {
    // SAFETY: each arm is a deliberate out-of-bounds or after-free access.
    unsafe {
        match name {
            "overflow" => std::ptr::write_volatile(placed(true).add(SIZE), 1u8),
            "underflow" => {
                std::ptr::read_volatile(placed(false).sub(1));
            }
            "uaf-read" => {
                let p = raw::alloc(SIZE, 16);
                raw::free(p, "free");
                std::ptr::read_volatile(p.add(8));
            }
            "uaf-write" => {
                let p = raw::alloc(SIZE, 16);
                raw::free(p, "free");
                std::ptr::write_volatile(p, 7u8);
            }
            "builder" => {
                // The same through the builder API, with on_error=report:
                // the fault is reported and the program runs on.
                memtally_alloc::Recorder::new()
                    .guard_every(1)
                    .on_error(memtally_alloc::OnError::Report)
                    .start()
                    .expect("valid settings");
                let p = raw::alloc(SIZE, 16);
                raw::free(p, "free");
                std::ptr::write_volatile(p, 7u8);
                println!("survived");
                return;
            }
            "clean" => {
                let mut m = std::collections::HashMap::new();
                for i in 0..20_000u32 {
                    let mut v: Vec<u32> = (0..i % 100).collect();
                    v.push(i);
                    m.insert(i.to_string(), v);
                    if i % 3 == 0 {
                        m.remove(&(i / 2).to_string());
                    }
                }
                assert!(m.len() > 1000);
                return;
            }
            other => panic!("unknown scenario {other}"),
        }
    }
    // Reaching here means the access went unnoticed.
    std::process::exit(3);
}

fn main() {
    if let Ok(name) = std::env::var("GUARDED_SCENARIO") {
        scenario(&name);
        return;
    }
    let me = std::env::current_exe().unwrap();
    let run = |name: &str| {
        Command::new(&me)
            .env("GUARDED_SCENARIO", name)
            .env("MEMTALLY", "guard_every=1")
            .output()
            .unwrap()
    };
    for (name, line) in [
        ("overflow", "memtally: heap-buffer-overflow: write at 0x"),
        ("underflow", "memtally: heap-buffer-underflow: read at 0x"),
        ("uaf-read", "memtally: heap-use-after-free: read at 0x"),
        ("uaf-write", "memtally: heap-use-after-free: write at 0x"),
    ] {
        let out = run(name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{name}: {out:?}");
        assert!(err.contains(line), "{name}: {err}");
        assert!(err.contains("the 64-byte block at 0x"), "{name}: {err}");
        assert!(err.contains("memtally:   allocated: "), "{name}: {err}");
        println!("guarded {name}: caught");
    }
    let out = Command::new(&me)
        .env("GUARDED_SCENARIO", "builder")
        .env_remove("MEMTALLY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "builder: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("survived"));
    assert!(
        err.contains("memtally: heap-use-after-free: write at 0x"),
        "{err}"
    );
    println!("guarded builder: reported, ran on");

    let out = run("clean");
    assert!(out.status.success(), "clean: {out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("memtally:"),
        "clean: {out:?}"
    );
    println!("guarded clean: no report");
}
