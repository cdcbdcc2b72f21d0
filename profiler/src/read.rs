//! Reading a whole trace into the model: the ordered stream from the
//! decoder, what to do when the trace was cut short, and how the trace
//! ended.
//!
//! A trace without a FOOTER was cut short (the process was killed, crashed
//! or is still running): everything before the cut is analysed, the events
//! the decoder was holding back for ordering are released, and the
//! [`Ending`] says where the cut was. A record that does not parse is
//! damage: what follows it cannot be trusted, so reading stops there, but
//! what came before was recorded and is analysed as for a trace cut short
//! at the damage, and the [`Ending`] says where and what the damage was
//! (every view prints it), so a partial answer is never taken for a whole
//! one. A file that is not a trace, or of an unknown version, is an
//! error.

use crate::clock::Clock;
use crate::error::{Error, ErrorKind};
use crate::model::{Model, ModelOptions};
use memtally_alloc::trace::{DecodeError, Decoder, Header, Ordered, Record};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// How a trace ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// With a FOOTER: the recording finished, at exit or at an exec.
    Complete {
        /// The process exited normally (the footer's flag; false when it
        /// ended through `abort` or a fatal signal and the recorder could
        /// still write the footer, or when it executed another program).
        clean_exit: bool,
        /// The process executed another program: this trace ends there.
        exec: bool,
    },
    /// Without a FOOTER: the trace was cut short at byte `at` (the start
    /// of the first incomplete record, or the end of the file when it ends
    /// on a record boundary).
    CutShort {
        /// Byte offset of the cut.
        at: u64,
    },
    /// A record did not parse: reading stopped there and everything
    /// before it was analysed.
    Damaged {
        /// Byte offset of the damaged record.
        at: u64,
        /// Its record kind.
        kind: u8,
        /// What was wrong with it.
        what: &'static str,
    },
}

impl Ending {
    /// True when the trace has its footer.
    pub fn is_complete(&self) -> bool {
        matches!(self, Ending::Complete { .. })
    }

    /// What a reader must be told about how the trace ended, if anything,
    /// as a sentence to follow the file's name: `was cut short at byte
    /// 123; everything before the cut is analysed`.
    pub fn warning(&self) -> Option<String> {
        match self {
            Ending::Complete { .. } => None,
            Ending::CutShort { at } => Some(format!(
                "was cut short at byte {at}; everything before the cut is analysed"
            )),
            Ending::Damaged { at, kind, what } => Some(format!(
                "is damaged at byte {at} (a record of kind {kind}: {what}); reading stopped there and everything before it is analysed"
            )),
        }
    }
}

/// A trace read into the model.
#[derive(Debug)]
pub struct Analysis {
    /// The trace's path, if it was read from a file.
    pub path: Option<PathBuf>,
    /// The model.
    pub model: Model,
    /// How the trace ended.
    pub ending: Ending,
    /// Bytes read.
    pub bytes: u64,
}

impl Analysis {
    /// Reads the trace file at `path`.
    pub fn open(path: &Path) -> Result<Analysis, Error> {
        Analysis::open_with(path, ModelOptions::default())
    }

    /// Reads the trace file at `path` with model options.
    pub fn open_with(path: &Path, options: ModelOptions) -> Result<Analysis, Error> {
        Analysis::open_into(path, Model::new(options))
    }

    /// Reads the trace file at `path` into `model` (new, perhaps set up to
    /// track groups of sites).
    pub fn open_into(path: &Path, model: Model) -> Result<Analysis, Error> {
        let open_err = |source| {
            Error::new(ErrorKind::Open {
                path: path.to_owned(),
                source,
            })
        };
        let file = File::open(path).map_err(open_err)?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(open_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a directory",
            )));
        }
        let mut a = Analysis::read_into(BufReader::with_capacity(1 << 16, file), model)?;
        a.path = Some(path.to_owned());
        Ok(a)
    }

    /// Reads a trace from `reader` to its end.
    ///
    /// Decoding and the model run on two threads: a helper decodes and
    /// orders events in batches, this thread feeds them to the model. Each
    /// half takes about as long as the other, so on two cores the reading
    /// takes about half the time. Both halves stream: memory does not grow
    /// with the trace.
    pub fn read<R: Read + Send>(reader: R, options: ModelOptions) -> Result<Analysis, Error> {
        Analysis::read_into(reader, Model::new(options))
    }

    /// Reads a trace from `reader` into `model` (see [`Analysis::read`]).
    pub fn read_into<R: Read + Send>(reader: R, model: Model) -> Result<Analysis, Error> {
        Analysis::read_visiting(reader, model, |_, _| {})
    }

    /// Reads the trace file at `path` with model options, showing `visit`
    /// every item of the ordered stream after the model has taken it (for
    /// views that need the events themselves, such as replay).
    pub fn open_visiting(
        path: &Path,
        options: ModelOptions,
        visit: impl FnMut(&Ordered, &Model),
    ) -> Result<Analysis, Error> {
        let open_err = |source| {
            Error::new(ErrorKind::Open {
                path: path.to_owned(),
                source,
            })
        };
        let file = File::open(path).map_err(open_err)?;
        let mut a = Analysis::read_visiting(
            BufReader::with_capacity(1 << 16, file),
            Model::new(options),
            visit,
        )?;
        a.path = Some(path.to_owned());
        Ok(a)
    }

    /// As [`Analysis::read_into`], showing `visit` every item after the
    /// model has taken it.
    pub fn read_visiting<R: Read + Send>(
        reader: R,
        mut model: Model,
        mut visit: impl FnMut(&Ordered, &Model),
    ) -> Result<Analysis, Error> {
        let decoded = std::thread::scope(|scope| {
            let (batches, received) = mpsc::sync_channel::<Vec<Ordered>>(BATCHES_IN_FLIGHT);
            let (recycle, recycled) = mpsc::channel::<Vec<Ordered>>();
            let decoding = scope.spawn(move || decode(reader, &batches, &recycled));
            for mut batch in received {
                for item in batch.drain(..) {
                    model.feed(&item);
                    visit(&item, &model);
                }
                // The decoder may have finished; then the batch is dropped.
                let _ = recycle.send(batch);
            }
            decoding.join()
        });
        let decoded = match decoded {
            Ok(d) => d?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let bytes = decoded.bytes;
        if model.header().is_none() {
            return Err(Error::new(ErrorKind::NoHeader { file_bytes: bytes }));
        }
        let ending = match (decoded.damage, model.footer()) {
            (Some(d), _) => d,
            (None, Some(f)) => Ending::Complete {
                clean_exit: f.clean_exit(),
                exec: f.exec(),
            },
            (None, None) => Ending::CutShort {
                at: decoded.cut.unwrap_or(bytes),
            },
        };
        Ok(Analysis {
            path: None,
            model,
            ending,
            bytes,
        })
    }
}

/// The header of the trace at `path`, reading no further than its first
/// record: which process wrote it, when, running what.
pub fn read_header(path: &Path) -> Result<Header, Error> {
    let file = File::open(path).map_err(|source| {
        Error::new(ErrorKind::Open {
            path: path.to_owned(),
            source,
        })
    })?;
    let mut decoder = Decoder::new(BufReader::with_capacity(4096, file));
    match decoder.next_record()? {
        Some(Record::Header(h)) => Ok(h),
        _ => Err(Error::new(ErrorKind::NoHeader {
            file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        })),
    }
}

/// The trace's clock calibration (its `CLOCK` records), reading the file
/// without decoding its events: to turn a time the user names ("1.5 s
/// in") into ticks before the real reading.
pub fn read_clock(path: &Path) -> Result<Clock, Error> {
    let file = File::open(path).map_err(|source| {
        Error::new(ErrorKind::Open {
            path: path.to_owned(),
            source,
        })
    })?;
    let mut decoder = Decoder::new(BufReader::with_capacity(1 << 16, file));
    decoder.skip_events();
    let mut clock = Clock::new();
    while let Some(r) = decoder.next_record()? {
        if let Record::Clock {
            ticks,
            monotonic_ns,
            ..
        } = r
        {
            clock.add(ticks, monotonic_ns);
        }
    }
    Ok(clock)
}

/// Items per batch handed from the decoding thread to the model: large
/// enough that the hand-over costs nothing per item (each can wake a
/// thread: 2,048 made 6,500 context switches on a 20 M-event trace, 8,192
/// make 1,700), small enough that a batch (768 KiB) stays in the cache.
const BATCH: usize = 8192;
/// Batches decoded ahead of the model.
const BATCHES_IN_FLIGHT: usize = 4;

/// What the decoding thread found besides the items.
struct Decoded {
    /// Bytes read.
    bytes: u64,
    /// Where the trace was cut short, if inside a record.
    cut: Option<u64>,
    /// The damage reading stopped at, if any.
    damage: Option<Ending>,
}

/// The decoding thread: the whole ordered stream into `batches`, then,
/// when the trace has no footer, what ordering held back. Stops early if
/// the model side has gone.
fn decode<R: Read>(
    reader: R,
    batches: &mpsc::SyncSender<Vec<Ordered>>,
    recycled: &mpsc::Receiver<Vec<Ordered>>,
) -> Result<Decoded, Error> {
    let mut counted = Counted {
        inner: reader,
        n: 0,
    };
    let mut decoder = Decoder::new(&mut counted);
    let mut batch = Vec::with_capacity(BATCH);
    let mut footer = false;
    let send = |batch: &mut Vec<Ordered>| -> bool {
        let next = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        batches.send(std::mem::replace(batch, next)).is_ok()
    };
    let mut cut = None;
    let mut damage = None;
    for pass in 0..2 {
        loop {
            let item = match decoder.next_ordered() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(DecodeError::Corrupt { kind, offset, what }) if damage.is_none() => {
                    // Stop at the damage; keep what came before.
                    damage = Some(Ending::Damaged {
                        at: offset,
                        kind,
                        what,
                    });
                    decoder.salvage();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            footer |= matches!(item, Ordered::Record(Record::Footer { .. }));
            batch.push(item);
            if batch.len() == BATCH && !send(&mut batch) {
                return Ok(Decoded {
                    bytes: 0,
                    cut,
                    damage,
                });
            }
        }
        if pass == 0 {
            cut = decoder.truncated_at();
            if footer || damage.is_some() {
                break;
            }
            // Release what ordering held back, as if the trace ended here.
            decoder.flush_ordered();
        }
    }
    if !batch.is_empty() {
        send(&mut batch);
    }
    drop(decoder);
    Ok(Decoded {
        bytes: counted.n,
        cut,
        damage,
    })
}

/// Counts the bytes read through it.
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
