//! The replay workers run a replay program on their allocator, in the
//! recorded global order across threads, and refuse a damaged program.

use memtally_profiler::replay::{Op, Timed, program};
use std::process::Command;

fn ops() -> Vec<Timed> {
    let mut v = Vec::new();
    let mut at = |op, thread| {
        v.push(Timed {
            op,
            ticks: v.len() as u64,
            stack: 0,
            thread,
        })
    };
    // Thread 0 allocates, thread 1 frees (a cross-thread free), both
    // reallocate, 2000 times.
    for i in 0..2000u64 {
        let a = 0x1000 + i * 0x100;
        at(
            Op::Alloc {
                addr: a,
                size: 24 + i % 500,
                align: 16,
            },
            0,
        );
        at(
            Op::Realloc {
                old: a,
                addr: a + 8,
                size: 700,
            },
            1,
        );
        if i % 3 != 0 {
            at(Op::Free { addr: a + 8 }, 1);
        }
    }
    v
}

fn run(worker: &str, path: &std::path::Path) -> std::process::Output {
    Command::new(worker).arg(path).output().unwrap()
}

#[test]
fn workers_replay_a_program_and_report_time_and_rss() {
    let dir = std::env::temp_dir().join(format!("memtally-replay-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.prog");
    let p = program::build(&ops());
    assert_eq!(p.threads, 2);
    std::fs::write(&path, program::encode(&p)).unwrap();
    for worker in [
        env!("CARGO_BIN_EXE_replay-worker-memtally"),
        env!("CARGO_BIN_EXE_replay-worker-system"),
        env!("CARGO_BIN_EXE_replay-worker-mimalloc"),
        env!("CARGO_BIN_EXE_replay-worker-jemalloc"),
    ] {
        let out = run(worker, &path);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{worker}: {out:?}");
        assert!(
            text.contains(&format!("steps={} threads=2", p.steps.len())),
            "{text}"
        );
        assert!(text.contains("peak_rss_kib="), "{text}");
        let field = |name: &str| -> u64 {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        // The time inside allocator calls is some of the replay's (the
        // threads take turns: their calls never overlap).
        let inside = field("alloc_ns=");
        assert!(inside > 0 && inside <= field("replay_ns="), "{text}");
        // A third of the 2000 reallocated blocks are never freed.
        assert!(text.contains("failed=0 leaked=667"), "{text}");
    }
    // A damaged program: refused with one line, nothing run.
    let mut bytes = program::encode(&p);
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let out = run(env!("CARGO_BIN_EXE_replay-worker-system"), &path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replay program cut short"), "{err}");
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
