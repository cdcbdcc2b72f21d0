//! The trace decoder: turns the bytes of a trace back into records and
//! events, as a stream.
//!
//! It reads incrementally from any `Read`, so it can follow a file that is
//! still being written: at the end of the available data it returns
//! `Ok(None)` and can be called again once more bytes have arrived. A record
//! cut short by the end of the data is reported by [`Decoder::truncated_at`]
//! rather than as an error; a record that does not parse is a
//! [`DecodeError`] naming the record kind and byte offset. The decoder never
//! panics on bad input.
//!
//! Per-thread delta state (times and addresses) lives here, so callers see
//! absolute values. [`Decoder::next_ordered`] additionally merges the
//! threads' events into one time order using the trace's watermarks.

use super::events::{FieldReader, RawEvent, ThreadCodec};
use super::{MAGIC, MIN_VERSION, VERSION, kind};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read};

/// Why a trace could not be decoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The file does not start with the trace magic.
    NotATrace,
    /// The trace was written by a newer, incompatible version.
    UnsupportedVersion(u64),
    /// A record's payload is malformed.
    Corrupt {
        /// The record kind.
        kind: u8,
        /// Byte offset of the record in the file.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotATrace => f.write_str("not a memtally trace (bad magic bytes)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "trace format version {v} is not supported (this build reads version {VERSION})"
                )
            }
            DecodeError::Corrupt { kind, offset, what } => {
                write!(
                    f,
                    "corrupt trace: record of kind {kind} at byte {offset}: {what}"
                )
            }
            DecodeError::Io(e) => write!(f, "cannot read trace: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<io::Error> for DecodeError {
    fn from(e: io::Error) -> Self {
        DecodeError::Io(e)
    }
}

/// The trace header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Process id.
    pub pid: u64,
    /// Parent process id.
    pub parent_pid: u64,
    /// Recording mode (`trace::mode`).
    pub mode: u8,
    /// Mean sampling interval in bytes (0 in full mode).
    pub sample_bytes: u64,
    /// Most frames recorded per stack.
    pub stack_depth: u64,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_realtime_ns: u64,
    /// Executable path.
    pub exe: String,
    /// Command line.
    pub argv: Vec<String>,
}

/// One executable segment of a module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Runtime start address.
    pub start: u64,
    /// Runtime end address (exclusive).
    pub end: u64,
    /// File offset of the segment.
    pub offset: u64,
}

/// A loaded module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Module {
    /// Load bias.
    pub base: u64,
    /// STRING id of its path.
    pub path: u64,
    /// GNU build id.
    pub build_id: Vec<u8>,
    /// Executable segments.
    pub segments: Vec<Segment>,
}

/// A call-stack trie node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Node id.
    pub id: u64,
    /// Parent node id (0: the root).
    pub parent: u64,
    /// Return address of the inner frame this node adds.
    pub address: u64,
}

/// A memory sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Ticks.
    pub ticks: u64,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Bytes the allocator had mapped.
    pub mapped_bytes: u64,
}

/// What a thread event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An allocation.
    Alloc {
        /// Block address.
        address: u64,
        /// Requested size.
        size: u64,
        /// Requested alignment (16 when the event did not say).
        align: u64,
        /// Stack trie id.
        stack: u64,
        /// Ticks the call took.
        latency: u64,
    },
    /// A free.
    Free {
        /// Block address.
        address: u64,
        /// Ticks the call took.
        latency: u64,
    },
    /// A reallocation.
    Realloc {
        /// Old block address.
        old_address: u64,
        /// New block address.
        new_address: u64,
        /// New requested size.
        new_size: u64,
        /// Stack trie id.
        stack: u64,
        /// Ticks the call took.
        latency: u64,
    },
    /// A user marker.
    Marker {
        /// STRING id.
        string: u64,
    },
    /// From here on the thread's events belong to scope `string` (a
    /// STRING id, 0 for none), instance `instance` (0 for none).
    Scope {
        /// STRING id of the scope's name.
        string: u64,
        /// The scope instance (a request, a task).
        instance: u64,
    },
    /// Scope instance `instance` ended.
    ScopeEnd {
        /// The instance.
        instance: u64,
    },
    /// An access annotation.
    Access {
        /// The address.
        address: u64,
        /// A write (else a read).
        write: bool,
    },
    /// Device or network memory (see `trace::device`).
    Device {
        /// `trace::device::op::*`.
        op: u8,
        /// `trace::device::memory::*`.
        memory: u8,
        /// The device's ordinal (`trace::device::HOST`: host memory).
        device: u32,
        /// STRING id of the API called.
        api: u64,
        /// The address (0 for a failure).
        address: u64,
        /// Bytes (asked for, for a failure; 0 for a free).
        size: u64,
        /// Stack trie id (0 for a free).
        stack: u64,
        /// The physical allocation a map or retain refers to (0 for other
        /// operations).
        handle: u64,
    },
    /// A block a leak scan found unreachable.
    Leak {
        /// Start of memtally's block.
        address: u64,
        /// Its bytes.
        size: u64,
        /// Direct (else indirect).
        direct: bool,
    },
    /// A leak scan ended (after its `Leak` events).
    LeakScan {
        /// Ticks when the world was stopped.
        stopped_at: u64,
        /// `trace::leak_status::*`.
        status: u8,
        /// Directly leaked blocks and bytes (all, sampled or not).
        direct: [u64; 2],
        /// Indirectly leaked blocks and bytes.
        indirect: [u64; 2],
    },
    /// A memory error (see `trace::error`).
    Error {
        /// What was wrong.
        error: u8,
        /// The pointer.
        address: u64,
        /// STRING id of the call's name.
        call: u64,
        /// The offending call's stack.
        stack: u64,
    },
}

/// A thread event with its absolute time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Ticks.
    pub time: u64,
    /// What happened.
    pub kind: EventKind,
}

/// An event and the thread that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadEvent {
    /// Thread number (as in `THREAD` records).
    pub thread: u64,
    /// The event.
    pub event: Event,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The header.
    Header(Header),
    /// A clock calibration point.
    Clock {
        /// Ticks.
        ticks: u64,
        /// Monotonic nanoseconds.
        monotonic_ns: u64,
        /// Wall-clock nanoseconds since the epoch.
        realtime_ns: u64,
    },
    /// An interned string.
    String {
        /// Id.
        id: u64,
        /// Text.
        text: String,
    },
    /// A stack trie node.
    Frame(Frame),
    /// A loaded module.
    Module(Module),
    /// An unloaded module.
    ModuleGone {
        /// Its load bias.
        base: u64,
    },
    /// A thread's first recorded call.
    Thread {
        /// Thread number.
        thread: u64,
        /// OS thread id.
        os_tid: u64,
        /// Thread name.
        name: String,
        /// Ticks.
        ticks: u64,
    },
    /// A thread ended.
    ThreadEnd {
        /// Thread number.
        thread: u64,
        /// Ticks.
        ticks: u64,
    },
    /// A stretch of one thread's events (absolute times and addresses).
    Events {
        /// Thread number.
        thread: u64,
        /// The events, in the thread's order.
        events: Vec<Event>,
    },
    /// Every event older than `ticks` has been written.
    Watermark {
        /// Ticks.
        ticks: u64,
    },
    /// A memory sample.
    Memory(Memory),
    /// A sampled level of kernel-held memory (`kind::GAUGE`).
    Gauge {
        /// Ticks.
        ticks: u64,
        /// `trace::device::memory::*` (`SOCKET`, `IO_URING`).
        memory: u8,
        /// The object (a file descriptor).
        key: u64,
        /// Bytes it holds now (0: gone).
        bytes: u64,
    },
    /// The end of a complete trace.
    Footer {
        /// Ticks.
        ticks: u64,
        /// Events written.
        events: u64,
        /// Events lost.
        dropped: u64,
        /// Flags (`FOOTER_CLEAN_EXIT`).
        flags: u64,
        /// The status the process exited with, when it exited through
        /// `exit` or `_exit` and the recorder saw it (traces before this
        /// field have none).
        exit_status: Option<u8>,
    },
    /// A record of a kind this version does not know.
    Unknown {
        /// Its kind.
        kind: u8,
    },
}

/// Reads a trace as a stream of records.
pub struct Decoder<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    started: bool,
    /// The format version the trace declares (0 until read).
    version: u64,
    threads: HashMap<u64, ThreadCodec>,
    truncated_at: Option<u64>,
    records: u64,
    ordered: Ordering,
    skipping_events: bool,
    /// Stopped at damage: nothing more is read, held events are released
    /// as far as they decode.
    salvaging: bool,
    /// The payload of the last `EVENTS_PACKED` record, unpacked.
    packed: Packed,
}

/// Events held back until a watermark allows them out in time order.
///
/// `EVENTS` payloads are kept as bytes and decoded one event at a time as
/// the merge reaches them: between two watermarks a busy process writes
/// tens of thousands of events per thread, and holding them decoded (56
/// bytes each, against about 6 encoded) made the reader memory-bound.
#[derive(Default)]
struct Ordering {
    /// Per thread, by thread number: events not yet released.
    held: Vec<HeldThread>,
    /// Non-event records waiting to be returned.
    records: VecDeque<Record>,
    /// Events before this time may be released.
    limit: u64,
    /// The `FOOTER`, returned once every held event has been: it ends the
    /// trace in the ordered stream too.
    footer: Option<Record>,
}

/// One thread's held events: encoded chunks, and the next event decoded.
struct HeldThread {
    thread: u64,
    codec: ThreadCodec,
    chunks: VecDeque<Chunk>,
    front: Option<Event>,
}

/// The events of one `EVENTS` record, still encoded.
struct Chunk {
    bytes: Vec<u8>,
    pos: usize,
    /// File offset of the record, for errors.
    offset: u64,
}

impl HeldThread {
    /// Decodes the thread's next event into `front`, if it has one.
    fn fill_front(&mut self) -> Result<(), DecodeError> {
        while self.front.is_none() {
            let Some(chunk) = self.chunks.front_mut() else {
                return Ok(());
            };
            if chunk.pos >= chunk.bytes.len() {
                self.chunks.pop_front();
                continue;
            }
            let mut p = Payload {
                bytes: &chunk.bytes,
                pos: chunk.pos,
                kind: kind::EVENTS,
                offset: chunk.offset,
            };
            let event = parse_event(&mut p, &mut self.codec)?;
            chunk.pos = p.pos;
            self.front = Some(event);
        }
        Ok(())
    }
}

/// An item of the ordered stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ordered {
    /// A record other than `EVENTS`.
    Record(Record),
    /// One event, in global time order.
    Event(ThreadEvent),
}

impl<R: Read> Decoder<R> {
    /// A decoder over `reader`. Nothing is read until the first call to
    /// [`Decoder::next_record`].
    pub fn new(reader: R) -> Self {
        Decoder {
            reader,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            started: false,
            version: 0,
            threads: HashMap::new(),
            truncated_at: None,
            records: 0,
            ordered: Ordering::default(),
            skipping_events: false,
            salvaging: false,
            packed: Packed::default(),
        }
    }

    /// Where the available data ended in the middle of a record, if it did:
    /// the byte offset of that incomplete record. `None` while the data ends
    /// on a record boundary.
    pub fn truncated_at(&self) -> Option<u64> {
        self.truncated_at
    }

    /// Records decoded so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The reader the decoder reads from.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// Reads more bytes into the buffer; false at the end of the data.
    fn fill(&mut self) -> Result<bool, DecodeError> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            }
        };
        self.buf.truncate(old + n);
        Ok(n > 0)
    }

    /// Ensures `n` bytes are buffered after `pos`; false if the data ends
    /// first.
    fn want(&mut self, n: usize) -> Result<bool, DecodeError> {
        while self.buf.len() - self.pos < n {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next record's framing, `Ok(None)` at the end of the available
    /// data; an `EVENTS_PACKED` record comes unpacked, as the `EVENTS`
    /// record it stands for.
    fn next_raw(&mut self) -> Result<Option<RawRecord>, DecodeError> {
        let Some(raw) = self.next_framed()? else {
            return Ok(None);
        };
        if raw.kind != kind::EVENTS_PACKED {
            return Ok(Some(raw));
        }
        self.packed
            .unpack(&self.buf[raw.payload])
            .map_err(|what| corrupt(raw.kind, raw.offset, what))?;
        Ok(Some(RawRecord {
            kind: kind::EVENTS,
            payload: 0..self.packed.events.len(),
            offset: raw.offset,
            unpacked: true,
        }))
    }

    /// The next record as it is in the file, `Ok(None)` at the end of the
    /// available data (see [`Decoder::truncated_at`]). Packed records come
    /// packed. For tools that copy or rewrite records (`repack.rs`); use
    /// either this or the other readers on a decoder, not both.
    pub fn next_raw_record(&mut self) -> Result<Option<FileRecord<'_>>, DecodeError> {
        let Some(raw) = self.next_framed()? else {
            return Ok(None);
        };
        Ok(Some(FileRecord {
            kind: raw.kind,
            // A framed record's payload is a range of the buffer, which
            // starts at file offset `base`.
            end: self.base + raw.payload.end as u64,
            payload: &self.buf[raw.payload],
            offset: raw.offset,
        }))
    }

    /// The format version the trace declares, once a record has been read
    /// (0 before).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The next record's framing, as it is in the file.
    fn next_framed(&mut self) -> Result<Option<RawRecord>, DecodeError> {
        if self.salvaging {
            return Ok(None);
        }
        if !self.started {
            if !self.want(MAGIC.len())? {
                let have = &self.buf[self.pos..];
                if !MAGIC.starts_with(have) {
                    return Err(DecodeError::NotATrace);
                }
                if !have.is_empty() {
                    self.truncated_at = Some(0);
                }
                return Ok(None);
            }
            if &self.buf[self.pos..self.pos + MAGIC.len()] != MAGIC {
                return Err(DecodeError::NotATrace);
            }
            let mut p = self.pos + MAGIC.len();
            // The version varint follows; it is at most 10 bytes.
            self.want(MAGIC.len() + 10)?;
            let version = match read_uvar(&self.buf, &mut p) {
                Some(v) => v,
                None => {
                    self.truncated_at = Some(0);
                    return Ok(None);
                }
            };
            if !(MIN_VERSION..=VERSION).contains(&version) {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            self.pos = p;
            self.started = true;
            self.version = version;
        }
        // Framing: kind byte and length varint (at most 11 bytes). `want`
        // may move the buffered bytes, so positions are taken after it.
        if !self.want(1)? {
            self.truncated_at = None;
            return Ok(None);
        }
        self.want(11)?;
        let start = self.pos;
        let offset = self.base + start as u64;
        let kind = self.buf[start];
        let mut p = start + 1;
        let Some(len) = read_uvar(&self.buf, &mut p) else {
            if self.buf.len() - start >= 11 {
                return Err(corrupt(kind, offset, "bad record length"));
            }
            self.truncated_at = Some(offset);
            return Ok(None);
        };
        if len > (1 << 32) {
            return Err(corrupt(kind, offset, "record length over 4 GiB"));
        }
        let header_len = p - start;
        if !self.want(header_len + len as usize)? {
            self.truncated_at = Some(offset);
            return Ok(None);
        }
        self.truncated_at = None;
        let payload_start = self.pos + header_len;
        let payload_end = payload_start + len as usize;
        self.pos = payload_end;
        self.records += 1;
        Ok(Some(RawRecord {
            kind,
            payload: payload_start..payload_end,
            offset,
            unpacked: false,
        }))
    }

    /// From now on, [`Decoder::next_record`] returns `EVENTS` records
    /// without their events (an empty list), for readers that want only
    /// the other records (clock, threads, modules) of a large trace fast.
    /// Events are not decoded at all after this, so it cannot be undone.
    pub fn skip_events(&mut self) {
        self.skipping_events = true;
    }

    /// The next record, `Ok(None)` at the end of the available data.
    pub fn next_record(&mut self) -> Result<Option<Record>, DecodeError> {
        // After `skip_events`, records come as they are in the file, and an
        // `EVENTS` record (a packed one too, not unpacked: its payload
        // starts with the thread number as well) comes without its events.
        let next = if self.skipping_events {
            self.next_framed()?
        } else {
            self.next_raw()?
        };
        let Some(raw) = next else {
            return Ok(None);
        };
        if self.skipping_events && (raw.kind == kind::EVENTS || raw.kind == kind::EVENTS_PACKED) {
            let mut p = Payload {
                bytes: &self.buf[raw.payload],
                pos: 0,
                kind: raw.kind,
                offset: raw.offset,
            };
            let thread = p.uvar("thread")?;
            return Ok(Some(Record::Events {
                thread,
                events: Vec::new(),
            }));
        }
        let payload = raw.bytes(&self.buf, &self.packed);
        Ok(Some(parse(
            raw.kind,
            payload,
            raw.offset,
            &mut self.threads,
            self.version,
        )?))
    }

    /// The next item in global time order: records other than `EVENTS` as
    /// they come, and events merged across threads, each released once a
    /// watermark (or the end of the trace) guarantees nothing older follows.
    /// `Ok(None)` at the end of the available data; when following a growing
    /// file, events newer than the last watermark are held until more data
    /// arrives. Use either this or [`Decoder::next_record`] on a decoder,
    /// not both.
    pub fn next_ordered(&mut self) -> Result<Option<Ordered>, DecodeError> {
        loop {
            if let Some(r) = self.ordered.records.pop_front() {
                return Ok(Some(Ordered::Record(r)));
            }
            if let Some(e) = self.next_released()? {
                return Ok(Some(Ordered::Event(e)));
            }
            if let Some(f) = self.ordered.footer.take() {
                return Ok(Some(Ordered::Record(f)));
            }
            let Some(raw) = self.next_raw()? else {
                return Ok(None);
            };
            if raw.kind == kind::EVENTS {
                self.hold(raw)?;
                continue;
            }
            let payload = raw.bytes(&self.buf, &self.packed);
            match parse(
                raw.kind,
                payload,
                raw.offset,
                &mut self.threads,
                self.version,
            )? {
                Record::Watermark { ticks } => {
                    self.ordered.limit = self.ordered.limit.max(ticks);
                    self.ordered.records.push_back(Record::Watermark { ticks });
                }
                r @ Record::Footer { .. } => {
                    self.ordered.limit = u64::MAX;
                    self.ordered.footer = Some(r);
                }
                r => self.ordered.records.push_back(r),
            }
        }
    }

    /// Releases everything held, in time order, as if the trace had ended
    /// here (for a trace that was cut short).
    pub fn flush_ordered(&mut self) {
        self.ordered.limit = u64::MAX;
    }

    /// After [`DecodeError::Corrupt`] from [`Decoder::next_ordered`]: stops
    /// reading at the damage and releases the events held back for
    /// ordering, as for a trace cut short there. A thread whose held
    /// events are themselves damaged loses those from the damage on; the
    /// rest of the ordered stream then comes from `next_ordered` until it
    /// returns `Ok(None)`.
    pub fn salvage(&mut self) {
        self.salvaging = true;
        self.flush_ordered();
    }

    /// Keeps an `EVENTS` record's events, encoded, for the merge.
    fn hold(&mut self, raw: RawRecord) -> Result<(), DecodeError> {
        let mut p = Payload {
            bytes: raw.bytes(&self.buf, &self.packed),
            pos: 0,
            kind: kind::EVENTS,
            offset: raw.offset,
        };
        let thread = p.uvar("thread")?;
        let bytes = p.bytes[p.pos..].to_vec();
        let held = &mut self.ordered.held;
        let i = match held.binary_search_by_key(&thread, |h| h.thread) {
            Ok(i) => i,
            Err(i) => {
                held.insert(
                    i,
                    HeldThread {
                        thread,
                        codec: ThreadCodec::for_version(self.version),
                        chunks: VecDeque::new(),
                        front: None,
                    },
                );
                i
            }
        };
        held[i].chunks.push_back(Chunk {
            bytes,
            pos: 0,
            offset: raw.offset,
        });
        Ok(())
    }

    /// The earliest held event, if it is before the release limit (ties
    /// go to the lower thread number).
    fn next_released(&mut self) -> Result<Option<ThreadEvent>, DecodeError> {
        let mut best: Option<(u64, usize)> = None;
        for (i, h) in self.ordered.held.iter_mut().enumerate() {
            // (Only the thread whose event went last has an empty front
            // and events left, usually: the call is skipped for the others,
            // and for threads whose events are all out.)
            if h.front.is_none()
                && !h.chunks.is_empty()
                && let Err(e) = h.fill_front()
            {
                if !self.salvaging {
                    return Err(e);
                }
                // Damaged events of a thread: keep what came before.
                h.chunks.clear();
                h.front = None;
            }
            if let Some(e) = &h.front
                && e.time < self.ordered.limit
                && best.is_none_or(|(t, _)| e.time < t)
            {
                best = Some((e.time, i));
            }
        }
        let Some((_, i)) = best else { return Ok(None) };
        let h = &mut self.ordered.held[i];
        let event = h.front.take().expect("front event");
        Ok(Some(ThreadEvent {
            thread: h.thread,
            event,
        }))
    }
}

/// A record as it is in the file ([`Decoder::next_raw_record`]).
#[derive(Clone, Copy, Debug)]
pub struct FileRecord<'a> {
    /// Its kind (`trace::kind`).
    pub kind: u8,
    /// Its payload.
    pub payload: &'a [u8],
    /// The file offset of its first byte.
    pub offset: u64,
    /// The file offset just past it.
    pub end: u64,
}

/// A record's kind, payload and offset. The payload is a range of the
/// decoder's buffer, or of the unpacked payload of an `EVENTS_PACKED`
/// record (`unpacked`), which then reads as `EVENTS`.
struct RawRecord {
    kind: u8,
    payload: core::ops::Range<usize>,
    offset: u64,
    unpacked: bool,
}

impl RawRecord {
    fn bytes<'a>(&self, buf: &'a [u8], packed: &'a Packed) -> &'a [u8] {
        if self.unpacked {
            &packed.events[self.payload.clone()]
        } else {
            &buf[self.payload.clone()]
        }
    }
}

/// Unpacks `EVENTS_PACKED` records (`columns.rs`), reusing its buffers and
/// its zstd context from one record to the next.
#[derive(Default)]
struct Packed {
    /// The last one's plain `EVENTS` payload.
    events: Vec<u8>,
    columns: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Packed {
    fn unpack(&mut self, payload: &[u8]) -> Result<(), &'static str> {
        let zstd = match &mut self.zstd {
            Some(z) => z,
            None => self.zstd.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|_| "cannot start zstd to unpack events")?,
            ),
        };
        self.events.clear();
        super::columns::unpack(payload, &mut self.events, &mut self.columns, zstd)
    }
}

fn corrupt(kind: u8, offset: u64, what: &'static str) -> DecodeError {
    DecodeError::Corrupt { kind, offset, what }
}

/// An unsigned varint at `*p`, advancing past it; `None` if it is cut
/// short or longer than 64 bits. Most fields of an event are a single byte,
/// read inline; the loop is out of line.
#[inline(always)]
pub(super) fn read_uvar(buf: &[u8], p: &mut usize) -> Option<u64> {
    if let Some(&b) = buf.get(*p)
        && b < 0x80
    {
        *p += 1;
        return Some(u64::from(b));
    }
    read_long_uvar(buf, p)
}

#[inline(never)]
fn read_long_uvar(buf: &[u8], p: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*p)?;
        *p += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// A cursor over one record's payload; every read fails cleanly at the end.
struct Payload<'a> {
    bytes: &'a [u8],
    pos: usize,
    kind: u8,
    offset: u64,
}

impl Payload<'_> {
    fn err(&self, what: &'static str) -> DecodeError {
        corrupt(self.kind, self.offset, what)
    }

    fn uvar(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        read_uvar(self.bytes, &mut self.pos).ok_or_else(|| self.err(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| self.err(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&[u8], DecodeError> {
        let n = self.uvar(what)? as usize;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.err(what))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes(what)?).into_owned())
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// A count of items that each take at least `min_bytes`, bounded by the
    /// remaining payload so that a corrupt count cannot make us allocate.
    fn count(&mut self, min_bytes: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.uvar(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(self.err(what));
        }
        Ok(n as usize)
    }
}

/// Parses a record of `kind` (`version`: the trace's, for the event model
/// a thread's first `EVENTS` record starts from).
fn parse(
    kind: u8,
    bytes: &[u8],
    offset: u64,
    threads: &mut HashMap<u64, ThreadCodec>,
    version: u64,
) -> Result<Record, DecodeError> {
    let mut p = Payload {
        bytes,
        pos: 0,
        kind,
        offset,
    };
    let record = match kind {
        kind::HEADER => {
            let version = p.uvar("header version")?;
            if !(MIN_VERSION..=VERSION).contains(&version) {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            let pid = p.uvar("pid")?;
            let parent_pid = p.uvar("parent pid")?;
            let mode = p.u8("mode")?;
            let sample_bytes = p.uvar("sample interval")?;
            let stack_depth = p.uvar("stack depth")?;
            let start_realtime_ns = p.uvar("start time")?;
            let exe = p.string("executable path")?;
            let argc = p.count(1, "argument count")?;
            let mut argv = Vec::with_capacity(argc);
            for _ in 0..argc {
                argv.push(p.string("argument")?);
            }
            Record::Header(Header {
                pid,
                parent_pid,
                mode,
                sample_bytes,
                stack_depth,
                start_realtime_ns,
                exe,
                argv,
            })
        }
        kind::CLOCK => Record::Clock {
            ticks: p.uvar("ticks")?,
            monotonic_ns: p.uvar("monotonic time")?,
            realtime_ns: p.uvar("wall-clock time")?,
        },
        kind::STRING => Record::String {
            id: p.uvar("string id")?,
            text: p.string("string text")?,
        },
        kind::FRAME => Record::Frame(Frame {
            id: p.uvar("frame id")?,
            parent: p.uvar("frame parent")?,
            address: p.uvar("frame address")?,
        }),
        kind::MODULE => {
            let base = p.uvar("module base")?;
            let path = p.uvar("module path")?;
            let build_id = p.bytes("build id")?.to_vec();
            let n = p.count(3, "segment count")?;
            let mut segments = Vec::with_capacity(n);
            for _ in 0..n {
                segments.push(Segment {
                    start: p.uvar("segment start")?,
                    end: p.uvar("segment end")?,
                    offset: p.uvar("segment offset")?,
                });
            }
            Record::Module(Module {
                base,
                path,
                build_id,
                segments,
            })
        }
        kind::MODULE_GONE => Record::ModuleGone {
            base: p.uvar("module base")?,
        },
        kind::THREAD => Record::Thread {
            thread: p.uvar("thread")?,
            os_tid: p.uvar("os thread id")?,
            name: p.string("thread name")?,
            ticks: p.uvar("ticks")?,
        },
        kind::THREAD_END => Record::ThreadEnd {
            thread: p.uvar("thread")?,
            ticks: p.uvar("ticks")?,
        },
        kind::EVENTS => {
            let thread = p.uvar("thread")?;
            let state = threads
                .entry(thread)
                .or_insert_with(|| ThreadCodec::for_version(version));
            let mut events = Vec::new();
            while !p.done() {
                events.push(parse_event(&mut p, state)?);
            }
            Record::Events { thread, events }
        }
        kind::WATERMARK => Record::Watermark {
            ticks: p.uvar("ticks")?,
        },
        kind::MEMORY => Record::Memory(Memory {
            ticks: p.uvar("ticks")?,
            rss_bytes: p.uvar("rss")?,
            mapped_bytes: p.uvar("mapped bytes")?,
        }),
        kind::GAUGE => Record::Gauge {
            ticks: p.uvar("ticks")?,
            memory: p.u8("memory kind")?,
            key: p.uvar("key")?,
            bytes: p.uvar("bytes")?,
        },
        kind::FOOTER => Record::Footer {
            ticks: p.uvar("ticks")?,
            events: p.uvar("event count")?,
            dropped: p.uvar("dropped count")?,
            flags: p.uvar("flags")?,
            // Added later at the payload's end: absent in older traces.
            exit_status: if p.pos < p.bytes.len() {
                match p.uvar("exit status")? {
                    0 => None,
                    s => Some(((s - 1) & 0xff) as u8),
                }
            } else {
                None
            },
        },
        other => return Ok(Record::Unknown { kind: other }),
    };
    Ok(record)
}

impl FieldReader for Payload<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn uvar(&mut self) -> Option<u64> {
        read_uvar(self.bytes, &mut self.pos)
    }

    fn svar(&mut self) -> Option<i64> {
        let v = read_uvar(self.bytes, &mut self.pos)?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
}

fn parse_event(p: &mut Payload<'_>, state: &mut ThreadCodec) -> Result<Event, DecodeError> {
    let raw = state.decode(p).ok_or_else(|| p.err("malformed event"))?;
    Ok(event_of(raw))
}

/// The reader's view of a decoded event.
pub(crate) fn event_of(raw: RawEvent) -> Event {
    match raw {
        RawEvent::Alloc {
            time,
            address,
            size,
            align,
            stack,
            latency,
        } => Event {
            time,
            kind: EventKind::Alloc {
                address,
                size,
                align,
                stack,
                latency,
            },
        },
        RawEvent::Free {
            time,
            address,
            latency,
        } => Event {
            time,
            kind: EventKind::Free { address, latency },
        },
        RawEvent::Realloc {
            time,
            old_address,
            new_address,
            new_size,
            stack,
            latency,
        } => Event {
            time,
            kind: EventKind::Realloc {
                old_address,
                new_address,
                new_size,
                stack,
                latency,
            },
        },
        RawEvent::Marker { time, string } => Event {
            time,
            kind: EventKind::Marker { string },
        },
        RawEvent::Scope {
            time,
            string,
            instance,
        } => Event {
            time,
            kind: EventKind::Scope { string, instance },
        },
        RawEvent::ScopeEnd { time, instance } => Event {
            time,
            kind: EventKind::ScopeEnd { instance },
        },
        RawEvent::Access {
            time,
            address,
            write,
        } => Event {
            time,
            kind: EventKind::Access { address, write },
        },
        RawEvent::Device {
            time,
            op,
            memory,
            device,
            api,
            address,
            size,
            stack,
            handle,
        } => Event {
            time,
            kind: EventKind::Device {
                op,
                memory,
                device,
                api,
                address,
                size,
                stack,
                handle,
            },
        },
        RawEvent::Leak {
            time,
            address,
            size,
            direct,
        } => Event {
            time,
            kind: EventKind::Leak {
                address,
                size,
                direct,
            },
        },
        RawEvent::LeakScan {
            time,
            stopped_at,
            status,
            direct,
            indirect,
        } => Event {
            time,
            kind: EventKind::LeakScan {
                stopped_at,
                status,
                direct,
                indirect,
            },
        },
        RawEvent::Error {
            time,
            error,
            address,
            call,
            stack,
        } => Event {
            time,
            kind: EventKind::Error {
                error,
                address,
                call,
                stack,
            },
        },
    }
}
