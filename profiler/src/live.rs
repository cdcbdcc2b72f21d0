//! Following a trace while it is being written: the model of a live view
//! (`memtally run --live`, `memtally top FILE`).
//!
//! [`Live::follow`] starts an ingest thread that reads whatever the
//! recorder has written so far, feeds the decoder's ordered stream into a
//! [`Model`] behind a mutex, and at the end of the available data waits a
//! little and reads again, as `tail -f` does. The recorder's writer
//! completes a round of records every 10 ms and emits a watermark with it,
//! so the model trails the program by a few tens of milliseconds.
//!
//! How following ends:
//! - the trace's FOOTER arrives: the recording finished (exit or exec);
//! - the writer is gone without a footer (killed, or its trace ends in a
//!   crash): the events ordering held back are released and the trace is
//!   analysed up to the cut, as [`crate::Analysis`] does for a file;
//! - a record does not parse: following stops and says where; what was
//!   read before the damage stays in the model (nothing already recorded
//!   is lost from the view);
//! - the view asks it to stop.
//!
//! The lock is taken once per batch of decoded items, never while reading
//! or decoding, so a view holding it to draw a frame delays ingest by at
//! most that frame.

use crate::error::{Error, ErrorKind};
use crate::model::{Model, ModelOptions};
use crate::read::Counted;
use memtally_alloc::trace::{Decoder, Ordered, Record};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Items decoded between two takings of the model's lock.
const BATCH: usize = 4096;
/// How long the ingest thread sleeps at the end of the available data.
const POLL: Duration = Duration::from_millis(20);

/// Where a followed trace stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveState {
    /// The trace file does not exist yet (the program has not started
    /// recording).
    Waiting,
    /// The recording goes on.
    Following,
    /// The trace has its footer.
    Complete {
        /// The process exited normally (see [`crate::Ending`]).
        clean_exit: bool,
        /// The process executed another program.
        exec: bool,
        /// The client that attached to the running process detached; the
        /// process ran on.
        detached: bool,
        /// The status it exited with, when the trace says.
        exit_status: Option<u8>,
    },
    /// The writer went away without a footer; the trace was analysed up
    /// to byte `at`.
    CutShort {
        /// Byte offset of the cut.
        at: u64,
    },
    /// Following stopped on an error (a damaged record, an unreadable
    /// file); the model holds what came before it.
    Failed(String),
}

impl LiveState {
    /// True once nothing more will be read.
    pub fn is_final(&self) -> bool {
        !matches!(self, LiveState::Waiting | LiveState::Following)
    }
}

/// How the ingest thread learns that the writer is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterWatch {
    /// The process named in the trace's header: gone when it no longer
    /// exists (or is a zombie).
    HeaderPid,
    /// The caller says so with [`Live::writer_gone`] (it spawned the
    /// process and waits for it).
    Told,
}

/// The ingest thread's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveStatus {
    /// Where the trace stands.
    pub state: LiveState,
    /// Bytes of the trace read.
    pub bytes: u64,
}

struct Shared {
    model: Mutex<Model>,
    status: Mutex<LiveStatus>,
    stop: AtomicBool,
    writer_gone: AtomicBool,
}

/// A model following a growing trace.
pub struct Live {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Live {
    /// Starts following the trace at `path` (which may not exist yet).
    pub fn follow(path: &Path, options: ModelOptions, watch: WriterWatch) -> Live {
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(options)),
            status: Mutex::new(LiveStatus {
                state: LiveState::Waiting,
                bytes: 0,
            }),
            stop: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            let path = path.to_owned();
            std::thread::Builder::new()
                .name("memtally-ingest".into())
                .spawn(move || ingest(&path, &shared, watch))
                .expect("spawn the ingest thread")
        };
        Live {
            path: path.to_owned(),
            shared,
            thread: Some(thread),
        }
    }

    /// The trace followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model, locked: hold it briefly (ingest waits meanwhile).
    pub fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.shared.model)
    }

    /// The ingest thread's progress.
    pub fn status(&self) -> LiveStatus {
        lock(&self.shared.status).clone()
    }

    /// Tells the ingest thread (with [`WriterWatch::Told`]) that the
    /// writer is gone: once it has read everything there is, it ends.
    pub fn writer_gone(&self) {
        self.shared.writer_gone.store(true, Ordering::Release);
    }

    /// Waits until nothing more will be read (for tests and batch use).
    pub fn wait(mut self) -> (Model, LiveStatus) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let status = self.status();
        let model = std::mem::take(&mut *self.model());
        (model, status)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A poisoned lock still holds a usable model: ingest never leaves it
/// half-updated across a panic that matters to a view.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_state(shared: &Shared, state: LiveState, bytes: u64) {
    let mut s = lock(&shared.status);
    s.state = state;
    s.bytes = bytes;
}

/// Is the process that writes the trace gone?
fn writer_gone(shared: &Shared, watch: WriterWatch, writer: Option<&(u64, String)>) -> bool {
    match watch {
        WriterWatch::Told => shared.writer_gone.load(Ordering::Acquire),
        WriterWatch::HeaderPid => match writer {
            Some((pid, exe)) => !process_running(*pid, exe),
            // No header yet: wait for one.
            None => false,
        },
    }
}

/// True while process `pid` exists, is not a zombie, and (when that can be
/// read) runs the executable `exe`: a pid reused by another program since
/// the trace was written is not the writer.
pub(crate) fn process_running(pid: u64, exe: &str) -> bool {
    if let Ok(running) = std::fs::read_link(format!("/proc/{pid}/exe"))
        && !exe.is_empty()
        && running != std::path::Path::new(exe)
    {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may
        // itself hold parentheses: take the last one.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

fn ingest(path: &Path, shared: &Shared, watch: WriterWatch) {
    let stopped = || shared.stop.load(Ordering::Acquire);
    // Wait for the file.
    let file = loop {
        if stopped() {
            return;
        }
        let gone = shared.writer_gone.load(Ordering::Acquire);
        match File::open(path) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if gone {
                    set_state(
                        shared,
                        LiveState::Failed(format!(
                            "{}: the program ended without writing a trace",
                            path.display()
                        )),
                        0,
                    );
                    return;
                }
                std::thread::sleep(POLL);
            }
            Err(source) => {
                let e = Error::new(ErrorKind::Open {
                    path: path.to_owned(),
                    source,
                });
                set_state(shared, LiveState::Failed(e.to_string()), 0);
                return;
            }
        }
    };
    set_state(shared, LiveState::Following, 0);
    let mut decoder = Decoder::new(Counted { inner: file, n: 0 });
    let mut batch: Vec<Ordered> = Vec::with_capacity(BATCH);
    let mut pid = None;
    let mut footer = None;
    let mut flushed = false;
    loop {
        if stopped() {
            return;
        }
        // Whether the writer was gone is asked before reading, so that
        // everything it wrote before going is read before giving up.
        let gone = writer_gone(shared, watch, pid.as_ref());
        let mut failed = None;
        loop {
            match decoder.next_ordered() {
                Ok(Some(item)) => {
                    if let Ordered::Record(r) = &item {
                        match r {
                            Record::Header(h) => pid = Some((h.pid, h.exe.clone())),
                            Record::Footer { flags, .. } => footer = Some(*flags),
                            _ => {}
                        }
                    }
                    batch.push(item);
                    if batch.len() == BATCH {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(Error::from(e));
                    break;
                }
            }
        }
        let more = batch.len() == BATCH;
        if !batch.is_empty() {
            let mut model = lock(&shared.model);
            for item in batch.drain(..) {
                model.feed(&item);
            }
        }
        let cut = decoder.truncated_at();
        let bytes = decoder.get_ref().n;
        if let Some(e) = failed {
            let where_ = path.display();
            set_state(shared, LiveState::Failed(format!("{where_}: {e}")), bytes);
            return;
        }
        if more {
            set_state(shared, LiveState::Following, bytes);
            continue;
        }
        if footer.is_some() {
            let model = lock(&shared.model);
            let f = model.footer().expect("the footer was fed");
            let state = LiveState::Complete {
                clean_exit: f.clean_exit(),
                exec: f.exec(),
                detached: f.detached(),
                exit_status: f.exit_status,
            };
            drop(model);
            set_state(shared, state, bytes);
            return;
        }
        if gone && flushed {
            set_state(
                shared,
                LiveState::CutShort {
                    at: cut.unwrap_or(bytes),
                },
                bytes,
            );
            return;
        }
        if gone {
            // Release what ordering held back and take one more turn.
            decoder.flush_ordered();
            flushed = true;
            continue;
        }
        set_state(shared, LiveState::Following, bytes);
        std::thread::sleep(POLL);
    }
}
