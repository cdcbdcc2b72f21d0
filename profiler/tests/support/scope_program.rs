//! What the self-recording scope tests share (`profiler/tests/scopes.rs`,
//! and `tracing/tests/spans.rs` through a `#[path]` module): known
//! allocations, a future that allocates on each poll, polling it on
//! several threads, starting the recording and finding a scope.

use memtally_alloc::{Mode, Recorder};
use memtally_profiler::ScopeStats;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Allocates `n` bytes and keeps them for good.
#[inline(never)]
pub fn keep(n: usize) {
    std::mem::forget(std::hint::black_box(vec![1u8; n]));
}

/// Allocates `n` bytes and frees them.
#[inline(never)]
pub fn churn(n: usize) {
    drop(std::hint::black_box(vec![1u8; n]));
}

/// Allocates 100 bytes (kept) on every poll; ready on the fourth.
pub struct Steps(pub u32);

impl Future for Steps {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        keep(100);
        self.0 += 1;
        if self.0 == 4 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Polls a four-step future on this thread, two other threads in turn,
/// then this thread again, where it completes.
pub fn poll_on_three_threads<F: Future<Output = ()> + Send + 'static>(mut task: Pin<Box<F>>) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(task.as_mut().poll(&mut cx).is_pending());
    for _ in 0..2 {
        task = std::thread::spawn(move || {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(task.as_mut().poll(&mut cx).is_pending());
            task
        })
        .join()
        .unwrap();
    }
    assert!(task.as_mut().poll(&mut cx).is_ready());
}

/// Starts recording this process in full into a fresh `NAME.mtt`; its path.
pub fn start_recording(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memtally-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.mtt"));
    Recorder::new()
        .mode(Mode::Full)
        .output(path.to_str().unwrap())
        .start()
        .expect("recording starts");
    path
}

/// The scope named `name`.
pub fn find<'a>(scopes: &'a [ScopeStats], name: &str) -> &'a ScopeStats {
    scopes
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scope {name:?} in {scopes:#?}"))
}
