//! The time cursor: the model as it stood at a chosen moment, read again
//! from the trace up to that moment on a helper thread.
//!
//! The model streams and keeps no history of the live map, so "what was
//! live at 1.5 s, by site" is answered the way `memtally flame --metric
//! live-at=1.5s` answers it: the trace is read again with
//! [`ModelOptions::until_ticks`]. That takes as long as reading the trace
//! up to the moment (about a second per 50 MiB here), so it runs on a
//! thread of its own and the dashboard keeps drawing meanwhile; when the
//! cursor moves again before a reading ends, only the latest moment asked
//! for is read next.

use memtally_profiler::{Analysis, Model, ModelOptions};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A model read up to a moment.
#[derive(Clone)]
pub struct Moment {
    /// The moment, in ticks.
    pub ticks: u64,
    /// The model then.
    pub model: Arc<Model>,
}

#[derive(Default)]
struct State {
    /// The latest moment asked for and not yet read.
    wanted: Option<u64>,
    /// The last moment read (or the error reading it).
    done: Option<Result<Moment, String>>,
    /// The moment being read.
    reading: Option<u64>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Reads the trace up to moments asked for.
pub struct History {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl History {
    /// A reader of the trace at `path` with the dashboard's `options`.
    pub fn new(path: PathBuf, options: ModelOptions) -> History {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("memtally-history".into())
                .spawn(move || read_moments(&path, options, &shared))
                .expect("spawn the history thread")
        };
        History {
            shared,
            thread: Some(thread),
        }
    }

    /// Asks for the model at `ticks` (replacing any moment asked for and
    /// not yet started).
    pub fn ask(&self, ticks: u64) {
        let mut s = lock(&self.shared.state);
        let known = matches!(&s.done, Some(Ok(m)) if m.ticks == ticks);
        if !known && s.reading != Some(ticks) {
            s.wanted = Some(ticks);
            self.shared.wake.notify_one();
        }
    }

    /// The last moment read, if any, and whether a reading is under way.
    pub fn latest(&self) -> (Option<Result<Moment, String>>, bool) {
        let s = lock(&self.shared.state);
        (s.done.clone(), s.reading.is_some() || s.wanted.is_some())
    }
}

impl Drop for History {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            // A reading under way finishes first (it cannot be cut short);
            // detach rather than make quitting wait for it.
            drop(t);
        }
    }
}

fn read_moments(path: &std::path::Path, options: ModelOptions, shared: &Shared) {
    loop {
        let ticks = {
            let mut s = lock(&shared.state);
            loop {
                if s.stop {
                    return;
                }
                if let Some(t) = s.wanted.take() {
                    s.reading = Some(t);
                    break t;
                }
                s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        let options = ModelOptions {
            until_ticks: Some(ticks),
            ..options
        };
        let result = Analysis::open_with(path, options)
            .map(|a| Moment {
                ticks,
                model: Arc::new(a.model),
            })
            .map_err(|e| e.to_string());
        let mut s = lock(&shared.state);
        s.reading = None;
        s.done = Some(result);
    }
}
