//! Recording end to end: a child process records itself in full mode
//! (`MEMTALLY=mode=full,...`, no rebuild), and the test decodes its trace
//! and checks every event the child made is there, with stacks.

use crate::util::{child_scenario, run_child};
use memtally_alloc::trace::{Decoder, EventKind, Record};
use std::collections::HashMap;

const N: usize = 5000;

/// The child: allocations of known sizes on two threads, frees of half of
/// them, a realloc and a marker.
#[test]
fn record_child() {
    if child_scenario().as_deref() != Some("record") {
        return;
    }
    let mut keep = Vec::new();
    for i in 0..N {
        let v: Vec<u8> = Vec::with_capacity(1000 + i % 7);
        if i % 2 == 0 {
            keep.push(v);
        }
    }
    memtally_alloc::mark("second phase");
    let t = std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(|| {
            let mut v: Vec<u64> = Vec::with_capacity(3);
            v.extend(0..100_000);
            v.len()
        })
        .unwrap();
    assert_eq!(t.join().unwrap(), 100_000);
    std::hint::black_box(&keep);
    std::mem::forget(keep);
}

#[test]
fn full_mode_records_every_event_with_stacks() {
    let dir = std::env::temp_dir().join(format!("memtally-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("t.%p.mtt");
    let setting = format!("mode=full,out={}", out.display());
    let (status, stderr) = run_child("record::record_child", "record", &[("MEMTALLY", &setting)]);
    assert!(status.success(), "{stderr}");
    let trace = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mtt"))
        .expect("a trace file");
    let file = std::fs::File::open(&trace).unwrap();
    let mut d = Decoder::new(std::io::BufReader::new(file));
    let mut header = None;
    let mut footer = None;
    let mut threads = HashMap::new();
    let mut frames = 0;
    let mut modules = 0;
    let mut strings = HashMap::new();
    let mut allocs_1000 = 0;
    let mut frees = 0;
    let mut reallocs = 0;
    let mut markers = Vec::new();
    let mut live: HashMap<u64, u64> = HashMap::new();
    let mut empty_stacks = 0;
    while let Some(r) = d.next_record().unwrap() {
        match r {
            Record::Header(h) => header = Some(h),
            Record::Footer {
                events,
                dropped,
                flags,
                ..
            } => footer = Some((events, dropped, flags)),
            Record::Thread { thread, name, .. } => {
                threads.insert(thread, name);
            }
            Record::Frame(_) => frames += 1,
            Record::Module(_) => modules += 1,
            Record::String { id, text } => {
                strings.insert(id, text);
            }
            Record::Events { events, .. } => {
                for e in events {
                    match e.kind {
                        EventKind::Alloc {
                            address,
                            size,
                            stack,
                            ..
                        } => {
                            if (1000..1007).contains(&size) {
                                allocs_1000 += 1;
                            }
                            if stack == 0 {
                                empty_stacks += 1;
                            }
                            live.insert(address, size);
                        }
                        EventKind::Free { address, .. } => {
                            frees += 1;
                            live.remove(&address);
                        }
                        EventKind::Realloc {
                            old_address,
                            new_address,
                            new_size,
                            ..
                        } => {
                            reallocs += 1;
                            live.remove(&old_address);
                            live.insert(new_address, new_size);
                        }
                        EventKind::Marker { string } => markers.push(string),
                    }
                }
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let header = header.expect("header");
    assert_eq!(header.mode, 1);
    assert!(header.exe.contains("integration"), "{}", header.exe);
    let (events, dropped, flags) = footer.expect("footer: the trace must be complete");
    assert_eq!(dropped, 0);
    assert_eq!(flags & 1, 1);
    assert!(events > N as u64);
    assert_eq!(
        allocs_1000, N,
        "every Vec::with_capacity(1000..1007) is recorded"
    );
    assert!(frees >= N / 2);
    assert!(reallocs >= 1, "the worker's Vec grew by realloc");
    assert!(modules >= 2, "executable and libc at least");
    assert!(frames > 0);
    assert_eq!(empty_stacks, 0, "every allocation has a stack");
    assert!(threads.values().any(|n| n == "worker-7"), "{threads:?}");
    let marker_texts: Vec<&str> = markers.iter().map(|id| strings[id].as_str()).collect();
    assert_eq!(marker_texts, ["second phase"]);
    // The kept half is still live at exit.
    let kept = live
        .values()
        .filter(|&&s| (1000..1007).contains(&s))
        .count();
    assert_eq!(kept, N / 2);
}
