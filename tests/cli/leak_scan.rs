//! `memtally run --leak-scan` on a C program (`tests/c/reachability.c`)
//! keeping blocks alive from every kind of root, with planted leaks of
//! each class: the scan at exit reports exactly those, and `memtally leaks`
//! classifies them by allocation stack.

use super::*;

#[test]
fn the_leak_scan_finds_exactly_the_planted_leaks_and_classifies_them() {
    let Some(trace) =
        record_c_program("leak-scan", "reachability", &["-pthread"], &["--leak-scan"])
    else {
        return;
    };
    let t = trace.to_str().unwrap();
    let v = json_of(&["leaks", t, "--json"]);
    assert_eq!(v["classified"], true, "{v:#}");
    let classes = &v["classes"];
    assert_eq!(classes["complete"], true, "{classes:#}");
    // Each class as (function that allocated, blocks), sorted.
    let class = |name: &str| {
        let mut sites: Vec<(String, u64)> = classes[name]["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let frame = &s["frames"][s["library_frames"].as_u64().unwrap() as usize];
                (
                    frame["function"].as_str().unwrap_or("?").to_owned(),
                    s["live_blocks"].as_u64().unwrap(),
                )
            })
            .collect();
        sites.sort();
        sites
    };
    let owned = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|&(f, n)| (f.to_owned(), n)).collect()
    };
    assert_eq!(
        class("direct"),
        owned(&[("leak_direct", 1), ("leak_tree", 1), ("make_cycle", 1)]),
        "{classes:#}"
    );
    // (the tree's two children come from two call sites of tree_child)
    assert_eq!(
        class("indirect"),
        owned(&[("make_cycle", 1), ("tree_child", 1), ("tree_child", 1)]),
        "{classes:#}"
    );
    // Reachable blocks by function (new_node is called from three places).
    let mut reachable: Vec<(String, u64)> = Vec::new();
    for (f, n) in class("reachable") {
        match reachable.iter_mut().find(|r| r.0 == f) {
            Some(r) => r.1 += n,
            None => reachable.push((f, n)),
        }
    }
    for kept in [
        ("new_node", 3),
        ("keep_interior", 1),
        ("keep_tls", 1),
        ("keep_in_mapping", 1),
        ("thread_keeper", 1),
    ] {
        assert!(
            reachable.contains(&(kept.0.to_owned(), kept.1)),
            "{kept:?} not reachable: {classes:#}"
        );
    }
    // The text report shows the classes; --fail fails on the direct leaks.
    let out = memtally(&["leaks", t, "--fail"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("DIRECT LEAKS (nothing points to them): ")
            && text.contains(" in 3 blocks, at 3 sites"),
        "{text}"
    );
    assert!(
        text.contains("INDIRECT LEAKS (only leaks point to them): "),
        "{text}"
    );
    // Suppressing the direct leaks' sites passes --fail: indirect leaks go
    // with their direct ones, reachable blocks are not leaks.
    let supp = trace.with_file_name("lsan.supp");
    std::fs::write(&supp, "leak:leak_direct\nleak:leak_tree\nleak:make_cycle\n").unwrap();
    let out = memtally(&[
        "leaks",
        t,
        "--fail",
        "--suppressions",
        supp.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
