//! Packing a finished trace: every plain `EVENTS` record that packing
//! makes smaller rewritten as `EVENTS_PACKED` (`columns.rs`), every other
//! record copied as it is (`memtally pack`).
//!
//! Why: the writer packs with CPU time the program leaves spare, so a
//! program that kept every CPU busy is recorded plain; this packs its trace
//! afterwards, to the size the writer would have given it. A record's
//! events are packed as that record, where they are, so the file keeps its
//! order (events before the watermarks that follow them).

use super::columns;
use super::decode::{DecodeError, Decoder, read_uvar};
use super::encode::{Cursor, put_record_header, put_uvar};
use super::{MAGIC, VERSION, kind};
use std::io::{self, Read, Write};

/// What packing a trace did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Records read (and written).
    pub records: u64,
    /// Plain `EVENTS` records read.
    pub event_records: u64,
    /// Of those, the ones written packed.
    pub packed: u64,
    /// Bytes of the input up to the end of its last complete record (all
    /// of it, unless it was cut short).
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Where the input ended in the middle of a record (its offset): the
    /// records before it were packed, the rest is not in the output.
    pub truncated_at: Option<u64>,
}

/// Why a trace could not be packed.
#[derive(Debug)]
pub enum PackError {
    /// The input is not a trace, or not one this version reads.
    Decode(DecodeError),
    /// Writing the output failed.
    Write(io::Error),
}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackError::Decode(e) => write!(f, "{e}"),
            PackError::Write(e) => write!(f, "cannot write the packed trace: {e}"),
        }
    }
}

impl std::error::Error for PackError {}

/// Packs the trace read from `input` into `output` (see the module docs).
/// A truncated input is packed up to its last complete record and says so
/// in [`PackStats::truncated_at`]; a corrupt one is an error.
pub fn pack_trace(input: impl Read, output: &mut impl Write) -> Result<PackStats, PackError> {
    let mut d = Decoder::new(input);
    let mut stats = PackStats::default();
    let mut out = Output {
        w: output,
        written: 0,
    };
    let mut zstd = None;
    let (mut scratch, mut packed) = (Vec::new(), Vec::new());
    let mut started = false;
    while let Some(r) = d.next_raw_record().map_err(PackError::Decode)? {
        let (kind, payload) = (r.kind, r.payload);
        if !started {
            out.start()?;
            started = true;
        }
        stats.records += 1;
        stats.bytes_in = r.end;
        let mut as_packed = None;
        if kind == kind::EVENTS {
            stats.event_records += 1;
            as_packed = pack_record(payload, &mut zstd, &mut scratch, &mut packed);
        }
        match as_packed {
            Some(p) => {
                stats.packed += 1;
                out.record(kind::EVENTS_PACKED, p)?;
            }
            None => out.record(kind, payload)?,
        }
    }
    if !started {
        if d.version() == 0 {
            // Empty, or cut inside its magic and version.
            return Err(PackError::Decode(DecodeError::NotATrace));
        }
        // A trace of no records: its magic and version.
        out.start()?;
    }
    stats.truncated_at = d.truncated_at();
    stats.bytes_out = out.written;
    out.w.flush().map_err(PackError::Write)?;
    Ok(stats)
}

/// The packed payload of an `EVENTS` record's `payload`, when packing
/// parses it and makes it smaller.
fn pack_record<'a>(
    payload: &[u8],
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
    scratch: &mut Vec<u8>,
    packed: &'a mut Vec<u8>,
) -> Option<&'a [u8]> {
    let mut at = 0;
    let thread = read_uvar(payload, &mut at)?;
    let events = &payload[at..];
    if events.is_empty() {
        return None;
    }
    let z = match zstd {
        Some(z) => z,
        None => zstd.insert(zstd::bulk::Compressor::new(1).ok()?),
    };
    scratch.resize(columns::COLUMNS * events.len(), 0);
    packed.resize(2 * events.len() + 1024, 0);
    let len = columns::pack(
        thread,
        events,
        scratch,
        packed,
        &mut columns::compress_with(z),
    )?;
    (len < payload.len()).then(|| &packed[..len])
}

struct Output<'w, W: Write> {
    w: &'w mut W,
    written: u64,
}

impl<W: Write> Output<'_, W> {
    /// The magic and the version this code writes: the output may hold
    /// packed records, which older versions do not have.
    fn start(&mut self) -> Result<(), PackError> {
        let mut v = [0u8; 10];
        let mut c = Cursor::new(&mut v);
        put_uvar(&mut c, VERSION);
        let n = c.len();
        self.put(MAGIC)?;
        self.put(&v[..n])
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), PackError> {
        self.w.write_all(bytes).map_err(PackError::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn record(&mut self, kind: u8, payload: &[u8]) -> Result<(), PackError> {
        let mut head = [0u8; 16];
        let mut c = Cursor::new(&mut head);
        put_record_header(&mut c, kind, payload.len());
        let n = c.len();
        self.put(&head[..n])?;
        self.put(payload)
    }
}
