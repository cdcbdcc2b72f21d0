//! Scopes from C through `libmemtally.so`'s C ABI, reported by
//! `memtally report --by scope` as text and JSON.

use super::{json_of, memtally, record_c_program};

#[test]
fn c_scopes_are_reported_by_scope_with_what_outlived_its_request() {
    let Some(trace) = record_c_program("scopes", "scopes", &[], &[]) else {
        return;
    };
    let t = trace.to_str().unwrap();

    let doc = json_of(&["report", "--json", t]);
    let scope = |name: &str| {
        doc["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no scope {name}: {}", doc["scopes"]))
            .clone()
    };
    let get = scope("GET /items");
    assert_eq!(get["instances"], 50);
    assert_eq!(get["ended"], 50);
    assert_eq!(get["allocations"], 55);
    assert_eq!(get["bytes_allocated"], 50 * 256 + 5 * 1000);
    assert_eq!(get["live_bytes"], 5000);
    assert_eq!(get["outlived_instances"], 5);
    assert_eq!(get["outlived_bytes"], 5000);
    assert_eq!(get["bytes_per_instance_max"], 1256);
    let post = scope("POST /users");
    assert_eq!(post["instances"], 20);
    assert_eq!(post["bytes_allocated"], 20 * 512);
    assert_eq!(post["outlived_instances"], 0);
    // The batch holds only what it allocated itself: the nested requests'
    // blocks are theirs.
    let batch = scope("batch");
    assert_eq!(batch["instances"], 1);
    assert_eq!(batch["bytes_allocated"], 64);
    assert_eq!(batch["outlived_instances"], 0);
    assert_eq!(doc["scopes"].as_array().unwrap().len(), 3);

    let out = memtally(&["report", "--by", "scope", t]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nSCOPES"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("GET /items"))
        .expect(&text);
    let cols: Vec<&str> = line.split_whitespace().collect();
    // name (2 words), instances, allocated (2), live (2), max live (2),
    // outlived, outlived bytes (2), p50 (2), p99 (2).
    assert_eq!(cols[2], "50", "{line}");
    assert_eq!(cols[9], "5", "{line}");
    assert!(!text.contains("TOP SITES"), "--by scope shows scopes only");
    // The flamegraph with each scope as its root frame.
    let out = memtally(&["flame", "--by", "scope", "--folded", t]);
    let folded = String::from_utf8_lossy(&out.stdout);
    let line = |root: &str| {
        folded
            .lines()
            .find(|l| l.starts_with(root))
            .unwrap_or_else(|| panic!("no {root} in {folded}"))
            .to_owned()
    };
    assert!(line("[scope GET /items];").ends_with(";main;get_items 17800"));
    assert!(line("[scope POST /users];").ends_with(";post_users 10240"));
    // What outlived its request: the five cache entries, by stack.
    let out = memtally(&["leaks", "--json", "--by", "scope", t]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outlived = doc["outlived"].as_array().unwrap();
    assert_eq!(outlived.len(), 1, "{outlived:?}");
    assert_eq!(outlived[0]["scope"], "GET /items");
    assert_eq!(outlived[0]["bytes"], 5000);
    assert_eq!(outlived[0]["blocks"], 5);
    assert_eq!(
        outlived[0]["sites"][0]["frames"][0]["function"],
        "get_items"
    );
    let out = memtally(&["report", "--by", "thread", t]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --by thread"));
}
