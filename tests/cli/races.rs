//! The race detector under the preload on C code (`tests/c/races.c`): a
//! plain store racing with a plain load is one race, its sides a write in
//! `update_word` and a read in `look_at_word` by their instructions, with
//! the block that holds the word (where main allocated it); an
//! atomic add racing with a relaxed atomic load is told apart as atomic
//! by the locked instruction, as C atomics leave no frame to tell them by.
//! Skipped, and said so, where `perf_event_open` is refused.

use std::path::PathBuf;

/// Records `races.c` built with `cc_args` under `--races`, up to three
/// times until the detector records a race (on a loaded machine the two
/// threads may not run at once in any window of a run); the trace, or
/// None when the test skips.
fn record_until_caught(test: &str, cc_args: &[&str]) -> Option<PathBuf> {
    let dir = super::scratch(test);
    let exe = super::build_c(&dir, "races", &[&["-pthread"], cc_args].concat());
    for attempt in 0..3 {
        let trace = dir.join(format!("t{attempt}.mtt"));
        let out = super::run_recorded(
            &format!("{test}-run"),
            &[
                "run",
                "--races",
                "-o",
                trace.to_str().unwrap(),
                "--",
                exe.to_str().unwrap(),
            ],
        )?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        if err.contains("perf_event_open refused") {
            eprintln!("races: skipped, perf_event_open is refused here: {err}");
            return None;
        }
        if !err.contains("memtally: races: 0 simultaneous") {
            return Some(trace);
        }
    }
    panic!("{test}: no race recorded in three runs");
}

#[test]
fn a_plain_store_racing_with_a_load_is_one_race_with_both_sides() {
    let Some(trace) = record_until_caught("races-plain", &[]) else {
        return;
    };
    let j = super::json_of(&["errors", trace.to_str().unwrap(), "--json"]);
    assert_eq!(j["total"], 1, "{j:#}");
    let g = &j["groups"][0];
    assert_eq!(g["kind"], "data race");
    let mut sides = [
        (
            g["call"].as_str().unwrap().to_owned(),
            super::functions(&g["site"]),
        ),
        (
            g["race"]["call"].as_str().unwrap().to_owned(),
            super::functions(&g["race"]["site"]),
        ),
    ];
    sides.sort();
    assert_eq!(sides[0].0, "read", "{sides:?}");
    assert_eq!(sides[0].1[0], "look_at_word", "{sides:?}");
    assert_eq!(sides[1].0, "write", "{sides:?}");
    assert_eq!(sides[1].1[0], "update_word", "{sides:?}");
    // The word's block, found from inside it: the 64 bytes main allocated.
    let block = &g["block"];
    assert_eq!(block["size"], 64, "{j:#}");
    assert_eq!(super::functions(&block["allocated_at"])[0], "main", "{j:#}");
    assert!(block["freed_by_thread"].is_null(), "{j:#}");
}

#[test]
fn c_atomics_are_told_apart_by_their_locked_instruction() {
    let Some(trace) = record_until_caught("races-atomic", &["-DATOMIC"]) else {
        return;
    };
    let j = super::json_of(&["errors", trace.to_str().unwrap(), "--json"]);
    assert_eq!(j["total"], 0, "{j:#}");
    assert!(j["atomic_races"].as_u64().unwrap() >= 1, "{j:#}");
}
