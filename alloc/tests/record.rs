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

/// The sampled child: two sites with known byte totals, kept live.
#[test]
fn sampled_child() {
    if child_scenario().as_deref() != Some("sampled") {
        return;
    }
    // Each 256-byte block is its own allocation, as the test needs.
    #[allow(clippy::vec_box)]
    #[inline(never)]
    fn small_site() -> Vec<Box<[u8; 256]>> {
        (0..100_000).map(|_| Box::new([1u8; 256])).collect()
    }
    #[inline(never)]
    fn big_site() -> Vec<Vec<u8>> {
        (0..200).map(|_| vec![2u8; 64 * 1024]).collect()
    }
    let a = small_site();
    let b = big_site();
    // Freed again: sampled frees must be recorded too.
    let c: Vec<Vec<u8>> = (0..50).map(|_| vec![3u8; 100_000]).collect();
    drop(c);
    std::hint::black_box((&a, &b));
    std::mem::forget((a, b));
}

/// The trace in `dir`, in global time order: records, and every event as
/// a one-event `Events` record.
fn read_trace(dir: &std::path::Path) -> Vec<Record> {
    let trace = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mtt"))
        .expect("a trace file");
    let file = std::fs::File::open(&trace).unwrap();
    let mut d = Decoder::new(std::io::BufReader::new(file));
    let mut out = Vec::new();
    while let Some(item) = d.next_ordered().unwrap() {
        out.push(match item {
            memtally_alloc::trace::Ordered::Record(r) => r,
            memtally_alloc::trace::Ordered::Event(e) => Record::Events {
                thread: e.thread,
                events: vec![e.event],
            },
        });
    }
    out
}

#[test]
fn sampled_mode_estimates_are_unbiased() {
    let dir = std::env::temp_dir().join(format!("memtally-smp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let interval = 4096.0f64;
    let setting = format!("mode=sampled,interval=4k,out={}/s.mtt", dir.display());
    let (status, stderr) = run_child(
        "record::sampled_child",
        "sampled",
        &[("MEMTALLY", &setting)],
    );
    assert!(status.success(), "{stderr}");
    let records = read_trace(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let header = records
        .iter()
        .find_map(|r| {
            if let Record::Header(h) = r {
                Some(h.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!((header.mode, header.sample_bytes), (2, 4096));
    // Live estimated bytes by size: sampled allocations minus sampled frees.
    let mut live: HashMap<u64, u64> = HashMap::new();
    let mut freed_sampled = 0;
    for r in &records {
        if let Record::Events { events, .. } = r {
            for e in events {
                match e.kind {
                    EventKind::Alloc { address, size, .. } => {
                        live.insert(address, size);
                    }
                    EventKind::Free { address, .. } => {
                        assert!(
                            live.remove(&address).is_some(),
                            "free of an unsampled block"
                        );
                        freed_sampled += 1;
                    }
                    EventKind::Realloc {
                        old_address,
                        new_address,
                        new_size,
                        ..
                    } => {
                        assert!(
                            live.remove(&old_address).is_some(),
                            "realloc of an unsampled block"
                        );
                        live.insert(new_address, new_size);
                    }
                    _ => {}
                }
            }
        }
    }
    let estimate = |size: u64| -> f64 {
        let s = size as f64;
        let w = s / (1.0 - (-s / interval).exp());
        live.values().filter(|&&v| v == size).count() as f64 * w
    };
    // 100,000 x 256 B = 6,250 intervals: the estimate's standard deviation
    // is about 1.3%, so 10% is a wide (7 sigma) margin.
    let small = estimate(256);
    let truth = 100_000.0 * 256.0;
    assert!(
        (small - truth).abs() / truth < 0.10,
        "estimated {small}, true {truth}"
    );
    // Blocks much larger than the interval are always sampled.
    let big = estimate(64 * 1024);
    let truth = 200.0 * 65536.0;
    assert!(
        (big - truth).abs() / truth < 0.01,
        "estimated {big}, true {truth}"
    );
    assert!(
        freed_sampled >= 45,
        "sampled frees are recorded: {freed_sampled}"
    );
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
                        EventKind::Scope { .. }
                        | EventKind::ScopeEnd { .. }
                        | EventKind::Access { .. }
                        | EventKind::Device { .. }
                        | EventKind::Error { .. }
                        | EventKind::Leak { .. }
                        | EventKind::LeakScan { .. } => {}
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

/// The busy child: two threads that do nothing but allocate and free.
#[test]
fn busy_child() {
    if child_scenario().as_deref() != Some("busy") {
        return;
    }
    let work = || {
        for i in 0..400_000u64 {
            let b = std::hint::black_box(Box::new([i; 6]));
            drop(b);
        }
    };
    let t = std::thread::spawn(work);
    work();
    t.join().unwrap();
}

/// Threads that are nearly always inside the recorder must not keep the
/// writer from emitting watermarks: without them a reader holds every
/// event until the end of the trace (hundreds of megabytes on a long run).
#[test]
fn watermarks_advance_while_threads_are_busy() {
    let dir = std::env::temp_dir().join(format!("memtally-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setting = format!("mode=full,out={}/b.mtt", dir.display());
    let (status, stderr) = run_child("record::busy_child", "busy", &[("MEMTALLY", &setting)]);
    assert!(status.success(), "{stderr}");
    let records = read_trace(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    // Events released per watermark: the ordered stream returns each
    // watermark, then the events it let out.
    let mut releases = vec![0usize];
    for r in &records {
        match r {
            Record::Watermark { .. } | Record::Footer { .. } => releases.push(0),
            Record::Events { events, .. } => *releases.last_mut().unwrap() += events.len(),
            _ => {}
        }
    }
    let total: usize = releases.iter().sum();
    let largest = releases.iter().copied().max().unwrap();
    assert!(total >= 1_600_000, "{total} events");
    assert!(
        largest * 4 < total,
        "{largest} of {total} events were released at once ({} watermarks)",
        releases.len() - 2
    );
}
