//! The async example service, driven on loopback by its own bounded load
//! loop and recording itself: memory by route, with the leaking route and
//! its stack found.

use memtally_profiler::{Analysis, ModelOptions, Symbolizer};
use std::process::Command;

#[test]
fn the_leaking_route_and_its_stack_are_found() {
    let dir = std::env::temp_dir().join(format!("memtally-scoped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("scoped.mtt");
    let out = Command::new(env!("CARGO_BIN_EXE_scoped-server"))
        .args(["--requests", "400"])
        .env("MEMTALLY", format!("mode=full,out={}", trace.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("served 400 of 400 requests in ")
            && stdout.contains("; 100 searches cached for good"),
        "{stdout}"
    );

    let a = Analysis::open_with(&trace, ModelOptions::default()).unwrap();
    // memtally as the global allocator (no preloaded library): the trace
    // still says how the process exited.
    assert_eq!(a.model.footer().and_then(|f| f.exit_status), Some(0));
    let scopes = a.model.scopes();
    let scope = |name: &str| {
        scopes
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scope {name}: {scopes:#?}"))
    };
    let items = scope("GET /items");
    let users = scope("POST /users");
    let search = scope("GET /search");
    assert_eq!((items.instances, items.ended), (200, 200));
    assert_eq!((users.instances, users.ended), (100, 100));
    assert_eq!((search.instances, search.ended), (100, 100));
    // Every search leaves its results behind; the other routes keep
    // nothing.
    assert_eq!(search.outlived, 100, "{search:#?}");
    assert!(search.counters.live_bytes >= 100 * 4 * 10, "{search:#?}");
    assert_eq!(items.outlived, 0, "{items:#?}");
    assert_eq!(users.outlived, 0, "{users:#?}");

    // The blocks that outlived their request were allocated in `search`.
    let mut symbolizer = Symbolizer::default();
    let mut in_search = 0;
    let mut outlived = 0;
    for (_, block) in a.model.live().iter() {
        if let Some((name, true)) = a.model.block_scope(block) {
            outlived += 1;
            assert_eq!(a.model.strings().get(name), Some("GET /search"));
            let stack = symbolizer.stack(&a.model, block.stack);
            if stack.frames.iter().any(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|n| n.ends_with("scoped_server::search"))
            }) {
                in_search += 1;
            }
        }
    }
    assert!(outlived >= 400, "{outlived} blocks outlived");
    assert_eq!(
        in_search, outlived,
        "every outliving block comes from search()"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
