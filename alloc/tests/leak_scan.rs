//! The leak scan against a corpus of live Rust data kept everywhere a
//! program keeps pointers (statics, the stacks and registers of parked
//! threads, thread-locals, memory of the C library's malloc), with planted
//! leaks of each kind: every planted leak must be found, with its class,
//! and nothing else may be reported.
//!
//! Its own binary without the test harness, so that the totals are exact:
//! no other test runs meanwhile.

use memtally_alloc::{Leak, MemTally};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};

#[global_allocator]
static A: MemTally = MemTally::new();

/// Addresses of planted leaks, hidden (xor) so that this table does not
/// itself keep them alive.
static PLANTED: Mutex<Vec<(usize, bool)>> = Mutex::new(Vec::new());
const HIDE: usize = 0x5a5a_5a5a_5a5a_5a5a;

fn plant(p: *const u8, direct: bool) {
    PLANTED.lock().unwrap().push((p as usize ^ HIDE, direct));
}

static WORDS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
static TABLE: OnceLock<HashMap<String, Vec<u64>>> = OnceLock::new();
static mut C_HELD: *mut usize = std::ptr::null_mut();

trait Shape {
    fn area(&self) -> f64;
}
struct Square(f64, #[allow(dead_code)] Vec<u8>);
#[allow(dead_code)]
impl Shape for Square {
    fn area(&self) -> f64 {
        self.0 * self.0
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Box<dyn Shape>>> = const { RefCell::new(None) };
}

struct Node {
    _next: Option<Box<Node>>,
    _payload: [u64; 4],
}

struct RcNode {
    other: RefCell<Option<Rc<RcNode>>>,
}

/// Leaks a two-node list: the head directly, the tail indirectly.
#[inline(never)]
fn leak_list() {
    let tail = Box::new(Node {
        _next: None,
        _payload: [1; 4],
    });
    plant(&*tail as *const Node as *const u8, false);
    let head = Box::new(Node {
        _next: Some(tail),
        _payload: [2; 4],
    });
    plant(&*head as *const Node as *const u8, true);
    std::mem::forget(head);
}

/// Leaks an `Rc` cycle: one member direct, the other indirect.
#[inline(never)]
fn leak_rc_cycle() {
    let a = Rc::new(RcNode {
        other: RefCell::new(None),
    });
    let b = Rc::new(RcNode {
        other: RefCell::new(Some(a.clone())),
    });
    *a.other.borrow_mut() = Some(b.clone());
    // The direct member is whichever has the lower address.
    let (pa, pb) = (Rc::as_ptr(&a) as usize, Rc::as_ptr(&b) as usize);
    PLANTED
        .lock()
        .unwrap()
        .extend([(pa ^ HIDE, pa < pb), (pb ^ HIDE, pb < pa)]);
}

/// Leaks a `Vec<String>` with `mem::forget`: the buffer directly, each
/// string indirectly.
#[inline(never)]
fn leak_vec_of_strings() {
    let v: Vec<String> = (0..3)
        .map(|i| format!("leaked string number {i}"))
        .collect();
    plant(v.as_ptr() as *const u8, true);
    for s in &v {
        plant(s.as_ptr(), false);
    }
    std::mem::forget(v);
}

/// Leaks a plain boxed buffer.
#[inline(never)]
fn leak_box() {
    let b = Box::new([7u8; 300]);
    plant(b.as_ptr(), true);
    Box::leak(b);
}

/// Live data the corpus keeps on the main thread's stack.
type OnStack = (BTreeMap<u64, Vec<u8>>, Rc<RefCell<Vec<Rc<String>>>>);

#[inline(never)]
fn fill_corpus() -> OnStack {
    WORDS.get_or_init(|| Mutex::new((0..100).map(|i| format!("word {i}")).collect()));
    TABLE.get_or_init(|| {
        (0..200)
            .map(|i| (format!("key {i}"), vec![i; (i % 7) as usize + 1]))
            .collect()
    });
    LOCAL.with(|l| *l.borrow_mut() = Some(Box::new(Square(2.0, vec![1; 64]))));
    // A Rust string kept alive only by a pointer in C-malloc'ed memory.
    let s: &'static mut String = Box::leak(Box::new(String::from("held by C")));
    // SAFETY: malloc of one word, written once; the static is only read by
    // the check below.
    unsafe {
        let c = libc::malloc(8) as *mut usize;
        *c = s as *mut String as usize;
        C_HELD = c;
    }
    // `Box::leak` into a static is not a leak: the static holds it.
    static KEEP: OnceLock<&'static [u32]> = OnceLock::new();
    KEEP.get_or_init(|| Box::leak(vec![5u32; 1000].into_boxed_slice()));
    let tree: BTreeMap<u64, Vec<u8>> = (0..500).map(|i| (i, vec![i as u8; 40])).collect();
    let shared = Rc::new(RefCell::new(
        (0..50)
            .map(|i| Rc::new(format!("shared {i}")))
            .collect::<Vec<_>>(),
    ));
    (tree, shared)
}

fn main() {
    let (tree, shared) = fill_corpus();
    // An Arc graph held only by a parked thread (and a Box<dyn Trait> in
    // its own thread-local).
    let ready = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let (r, d) = (ready.clone(), done.clone());
    let worker = std::thread::spawn(move || {
        let graph: Vec<Arc<Vec<u64>>> = (0..20).map(|i| Arc::new(vec![i; 10])).collect();
        let cross: Vec<Arc<Vec<u64>>> = graph.iter().rev().cloned().collect();
        LOCAL.with(|l| *l.borrow_mut() = Some(Box::new(Square(3.0, vec![2; 128]))));
        r.wait();
        d.wait();
        black_box((&graph, &cross));
        LOCAL.with(|l| l.borrow().as_ref().map(|s| s.area()))
    });
    ready.wait();

    leak_list();
    leak_rc_cycle();
    leak_vec_of_strings();
    leak_box();
    let planted = PLANTED.lock().unwrap().clone();

    let mut found: Vec<Leak> = Vec::new();
    let summary = memtally_alloc::leak_check_with(|l| found.push(l)).expect("the scan runs");

    done.wait();
    assert_eq!(worker.join().unwrap(), Some(9.0));
    black_box((&tree, &shared));
    // SAFETY: written once in fill_corpus.
    black_box(unsafe { C_HELD });

    let mut missing = Vec::new();
    for &(hidden, direct) in &planted {
        let p = hidden ^ HIDE;
        match found.iter().find(|l| l.start <= p && p < l.start + l.size) {
            Some(l) if l.direct == direct => {}
            Some(l) => missing.push(format!(
                "{p:#x}: found as {} leak, planted {}",
                if l.direct { "a direct" } else { "an indirect" },
                if direct { "direct" } else { "indirect" }
            )),
            None => missing.push(format!("{p:#x}: planted leak not found")),
        }
    }
    let extra: Vec<String> = found
        .iter()
        .filter(|l| {
            !planted
                .iter()
                .any(|&(h, _)| (l.start..l.start + l.size).contains(&(h ^ HIDE)))
        })
        .map(|l| format!("{:#x} ({} bytes, direct {})", l.start, l.size, l.direct))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "planted leaks not found right: {missing:?}\nfalse leaks: {extra:?}\n{summary:?}"
    );
    let direct = planted.iter().filter(|p| p.1).count() as u64;
    assert_eq!(summary.direct[0], direct, "{summary:?}");
    assert_eq!(
        summary.indirect[0],
        planted.len() as u64 - direct,
        "{summary:?}"
    );
    assert!(summary.reachable[0] > 1000, "{summary:?}");
    assert_eq!(summary.threads_missed, 0);
    assert!(summary.threads_stopped >= 1, "{summary:?}");
    eprintln!(
        "leak scan: {} planted leaks found, {} reachable blocks, {} KiB scanned, paused {} us",
        planted.len(),
        summary.reachable[0],
        summary.scanned_bytes / 1024,
        summary.pause_us
    );
}
