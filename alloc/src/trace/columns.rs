//! Packed events: a thread's event bytes regrouped by field into columns,
//! each compressed with zstd (the `EVENTS_PACKED` record).
//!
//! Why columns: in the event stream of `events.rs`, every event's time
//! difference and address sits between its kind, size and stack, and those
//! two are close to noise (nanosecond clock jitter, heap addresses), while
//! kinds, sizes and stacks repeat: a program allocates the same sizes from
//! the same call sites over and over. Interleaved, the noise hides the
//! repeats from a compressor; grouped by field, each column compresses on
//! its own statistics, and the repeating ones to almost nothing. Measured
//! on real programs, `cc1`, `python3` and `sqlite3` (BENCHMARKS.md): zstd
//! on a whole plain trace saves 24 to 69%, on its columns 66 to 90%; as
//! the writer packs them, one ring drain at a time, traces come out 1.8
//! to 6 times smaller.
//!
//! The transform is a lossless regrouping of bytes, not a second encoding:
//! [`split`] walks the event stream by its grammar (the field layout of
//! each event kind, as `ThreadCodec::decode` reads it) and moves each field's
//! bytes to its column; [`merge`] walks the same grammar over the columns
//! and rebuilds the stream byte for byte, which the ordinary decoder then
//! reads. So the model and every event kind stay defined in one place; this
//! file knows only where each field goes. A stream that does not parse (an
//! event kind this code does not know) is not packed: the writer then
//! writes a plain `EVENTS` record, which is always allowed.
//!
//! The head byte is split in two: its low nibble (kind and latency flag)
//! goes to the head column, its high nibble (the short time difference) to
//! the time column, so that the kinds' sequence repeats untouched by the
//! clock; longer time differences have a column of their own.

use super::decode::read_uvar;
use super::encode::{Cursor, put_uvar};
use super::events::kind;

/// Columns of a packed record.
pub const COLUMNS: usize = 9;

/// Column numbers, in the order the record stores them.
pub mod col {
    /// Each event's kind and latency flag (the head byte's low nibble).
    pub const HEAD: usize = 0;
    /// Short time differences: the head byte's high nibble (15: longer,
    /// see `TIME_LONG`).
    pub const TIME: usize = 1;
    /// Allocation and reallocation sizes.
    pub const SIZE: usize = 2;
    /// Allocation and reallocation stack ids.
    pub const STACK: usize = 3;
    /// Allocated addresses (an allocation's, a reallocation's new block).
    pub const ADDRESS: usize = 4;
    /// What a free names: an address difference or a recent rank (and a
    /// reallocation's old block).
    pub const FREE: usize = 5;
    /// Latencies.
    pub const LATENCY: usize = 6;
    /// Everything else: alignments, markers, extended events.
    pub const OTHER: usize = 7;
    /// The `uvar` that follows a head byte whose time nibble is 15. Apart
    /// from the nibbles, which repeat more than these: 3-6% smaller
    /// traces of real programs (BENCHMARKS.md).
    pub const TIME_LONG: usize = 8;
}

/// Moves an event's fields from wherever they are to wherever they go:
/// from the stream to the columns ([`split`]) or back ([`merge`]).
trait Mover {
    /// The head byte, moved (split into its two nibbles, or rebuilt).
    fn head(&mut self) -> Option<u8>;
    /// One byte, moved to or from `column`.
    fn byte(&mut self, column: usize) -> Option<u8>;
    /// One varint (`uvar` or `svar`: the same bytes), moved to or from
    /// `column`, a byte at a time until one without the continuation bit.
    #[inline(always)]
    fn varint(&mut self, column: usize) -> Option<()> {
        for _ in 0..MAX_VARINT {
            if self.byte(column)? < 0x80 {
                return Some(());
            }
        }
        None
    }

    /// `n` varints, moved to or from `column`.
    #[inline(always)]
    fn varints(&mut self, column: usize, n: usize) -> Option<()> {
        (0..n).try_for_each(|_| self.varint(column))
    }
}

/// Moves one event by the event grammar (`docs/trace-format.md`, "Thread
/// events"; `ThreadCodec::decode` reads the same fields in the same order).
/// None where the bytes do not parse.
fn move_event(m: &mut impl Mover) -> Option<()> {
    use col::*;
    let head = m.head()?;
    if head >> 4 == 15 {
        m.varint(TIME_LONG)?;
    }
    match head & 7 {
        kind::ALLOC => {
            m.varint(SIZE)?;
            m.varint(STACK)?;
            m.varint(ADDRESS)?;
        }
        kind::ALLOC_ALIGNED => {
            m.varint(SIZE)?;
            m.varint(STACK)?;
            m.varint(ADDRESS)?;
            m.byte(OTHER)?;
        }
        kind::FREE | kind::FREE_RECENT => m.varint(FREE)?,
        kind::REALLOC => {
            m.varint(FREE)?;
            m.varint(ADDRESS)?;
            m.varint(SIZE)?;
            m.varint(STACK)?;
        }
        // Markers and extended events carry no latency.
        kind::MARKER => return m.varint(OTHER),
        kind::EXTENDED => return move_extended(m),
        _ => return None,
    }
    if head & 8 != 0 {
        m.varint(LATENCY)?;
    }
    Some(())
}

/// The rest of an extended event, after its head: every field to `OTHER`.
fn move_extended(m: &mut impl Mover) -> Option<()> {
    const O: usize = col::OTHER;
    match m.byte(O)? {
        kind::EXT_SCOPE => m.varints(O, 2),
        kind::EXT_SCOPE_END => m.varint(O),
        kind::EXT_ACCESS => {
            m.varint(O)?;
            m.byte(O).map(drop)
        }
        kind::EXT_ERROR => {
            m.byte(O)?;
            m.varints(O, 3)
        }
        kind::EXT_LEAK => {
            m.varints(O, 2)?;
            m.byte(O).map(drop)
        }
        kind::EXT_LEAK_SCAN => {
            m.varint(O)?;
            m.byte(O)?;
            m.varints(O, 4)
        }
        kind::EXT_DEVICE => {
            let op = m.byte(O)?;
            m.byte(O)?;
            m.varints(O, 5 + usize::from(super::device::op::carries_handle(op)))
        }
        _ => None,
    }
}

/// The longest varint: 64 bits in 7-bit groups.
const MAX_VARINT: usize = 10;

/// A column being filled, in a buffer the caller provides.
pub struct ColumnBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> ColumnBuf<'a> {
    /// An empty column over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        ColumnBuf { buf, len: 0 }
    }

    /// The bytes moved into the column.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The splitting [`Mover`]: from `src` into columns that each have room
/// for `src.len()` bytes, which no column can exceed (each takes a subset
/// of the source's bytes, or one of the head's nibbles per head byte), so
/// its writes need no checks. Cursors rather than indexes: the loop keeps
/// nine columns and the source in flight, more than x86_64's registers
/// hold, and a cursor is one word where an index needs a base beside it.
struct Splitter<'s> {
    src: core::marker::PhantomData<&'s [u8]>,
    at: *const u8,
    end: *const u8,
    cols: [*mut u8; COLUMNS],
}

impl Splitter<'_> {
    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        if self.at == self.end {
            return None;
        }
        // SAFETY: `at` lies in the source (before `end`).
        let b = unsafe { *self.at };
        // SAFETY: at most `end`, one past the source.
        self.at = unsafe { self.at.add(1) };
        Some(b)
    }

    #[inline(always)]
    fn push(&mut self, column: usize, b: u8) {
        // SAFETY: the column has room for `src.len()` bytes and receives
        // at most one byte per source byte read (see the type).
        unsafe {
            *self.cols[column] = b;
            self.cols[column] = self.cols[column].add(1);
        }
    }
}

impl Mover for Splitter<'_> {
    #[inline(always)]
    fn head(&mut self) -> Option<u8> {
        let h = self.next()?;
        self.push(col::HEAD, h & 0x0f);
        self.push(col::TIME, h >> 4);
        Some(h)
    }

    #[inline(always)]
    fn byte(&mut self, column: usize) -> Option<u8> {
        let b = self.next()?;
        self.push(column, b);
        Some(b)
    }
}

/// Splits a thread's encoded events into `cols` (all empty; each needs
/// room for `events.len()` bytes, which no column can exceed: the head and
/// time columns take one byte each of every head byte). False when the
/// bytes do not parse as whole events (then the columns hold a part).
pub fn split(events: &[u8], cols: &mut [ColumnBuf<'_>; COLUMNS]) -> bool {
    assert!(
        cols.iter()
            .all(|c| c.len == 0 && c.buf.len() >= events.len()),
        "columns must be empty, with room for the events"
    );
    let range = events.as_ptr_range();
    let starts: [*mut u8; COLUMNS] = core::array::from_fn(|i| cols[i].buf.as_mut_ptr());
    let mut s = Splitter {
        src: core::marker::PhantomData,
        at: range.start,
        end: range.end,
        cols: starts,
    };
    let mut whole = true;
    while s.at != s.end {
        if move_event(&mut s).is_none() {
            whole = false;
            break;
        }
    }
    for ((c, start), cur) in cols.iter_mut().zip(starts).zip(s.cols) {
        // SAFETY: each cursor moved forward from its start in one buffer.
        c.len = unsafe { cur.offset_from(start) } as usize;
    }
    whole
}

/// The merging [`Mover`]: from the columns into `out`, which has room
/// for exactly the bytes the columns make (every column byte but each head
/// byte's second nibble); a corrupt record that would write past it fails.
struct Merger<'a> {
    cols: [(&'a [u8], usize); COLUMNS],
    out: &'a mut [u8],
    at: usize,
}

impl Merger<'_> {
    #[inline(always)]
    fn take(&mut self, column: usize) -> Option<u8> {
        let (bytes, pos) = &mut self.cols[column];
        let b = *bytes.get(*pos)?;
        *pos += 1;
        Some(b)
    }

    #[inline(always)]
    fn put(&mut self, b: u8) -> Option<()> {
        *self.out.get_mut(self.at)? = b;
        self.at += 1;
        Some(())
    }
}

impl Mover for Merger<'_> {
    #[inline(always)]
    fn head(&mut self) -> Option<u8> {
        let (low, high) = (self.take(col::HEAD)?, self.take(col::TIME)?);
        if low > 0x0f || high > 0x0f {
            return None;
        }
        let h = low | high << 4;
        self.put(h)?;
        Some(h)
    }

    #[inline(always)]
    fn byte(&mut self, column: usize) -> Option<u8> {
        let b = self.take(column)?;
        self.put(b)?;
        Some(b)
    }
}

/// Rebuilds a thread's encoded events from its columns, appending them to
/// `out`. An error names what is wrong: columns that do not parse, or
/// bytes left over in one when the events end.
pub fn merge(cols: [&[u8]; COLUMNS], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let total = cols.iter().map(|c| c.len()).sum::<usize>() - cols[col::HEAD].len();
    let start = out.len();
    out.resize(start + total, 0);
    let mut m = Merger {
        cols: cols.map(|c| (c, 0)),
        out: &mut out[start..],
        at: 0,
    };
    while m.cols[col::HEAD].1 < m.cols[col::HEAD].0.len() {
        move_event(&mut m).ok_or("packed events do not parse")?;
    }
    if m.cols.iter().any(|(bytes, pos)| *pos != bytes.len()) {
        return Err("packed events leave bytes unused in a column");
    }
    debug_assert_eq!(m.at, total, "every column byte was used");
    Ok(())
}

/// The most event bytes one packed record may unpack to. The writer packs
/// at most one ring's worth (256 KiB); a larger claim is corruption, and
/// a reader must not allocate for it.
pub const MAX_UNPACKED: usize = 16 << 20;

/// Compresses its first argument into one zstd frame in its second;
/// the frame's length, or None when that fails or does not fit.
pub type Compress<'a> = dyn FnMut(&[u8], &mut [u8]) -> Option<usize> + 'a;

/// Packs a thread's encoded `events` into an `EVENTS_PACKED` payload in
/// `out`: `thread`, then each column's length before and after
/// compression and its bytes (a packed length of 0: stored as is, where
/// zstd would not make it smaller). `compress(src, dst)` writes one zstd
/// frame of `src` into `dst` and returns its length (None when it fails
/// or does not fit: see [`compress_with`]). `scratch` must hold
/// `COLUMNS * events.len()` bytes. Returns the payload's length, or None
/// when the events do not parse or `out` is too small: the caller then
/// writes a plain `EVENTS` (as it should when the packed payload is not
/// smaller than the events).
pub fn pack(
    thread: u64,
    events: &[u8],
    scratch: &mut [u8],
    out: &mut [u8],
    compress: &mut Compress<'_>,
) -> Option<usize> {
    let n = events.len();
    if n == 0 || scratch.len() < COLUMNS * n {
        return None;
    }
    let mut parts = scratch[..COLUMNS * n].chunks_exact_mut(n);
    let mut cols: [ColumnBuf<'_>; COLUMNS] =
        core::array::from_fn(|_| ColumnBuf::new(parts.next().expect("COLUMNS parts")));
    if !split(events, &mut cols) {
        return None;
    }
    let mut at = put_uvar_at(out, 0, thread)?;
    for c in &cols {
        let raw = c.bytes();
        at = put_uvar_at(out, at, raw.len() as u64)?;
        if raw.is_empty() {
            continue;
        }
        // The packed length comes first but is known only after
        // compressing: compress after room for its longest varint, then
        // move the frame down to follow the varint's real length.
        let frame = at + MAX_VARINT;
        let packed = match compress(raw, out.get_mut(frame..)?) {
            Some(p) if p < raw.len() => p,
            _ => 0,
        };
        at = put_uvar_at(out, at, packed as u64)?;
        if packed > 0 {
            out.copy_within(frame..frame + packed, at);
            at += packed;
        } else {
            out.get_mut(at..at + raw.len())?.copy_from_slice(raw);
            at += raw.len();
        }
    }
    Some(at)
}

/// The `compress` of [`pack`] for a `zstd` compressor (the recorder's
/// writer uses a static context of its own instead).
pub fn compress_with<'z>(
    zstd: &'z mut zstd::bulk::Compressor<'_>,
) -> impl FnMut(&[u8], &mut [u8]) -> Option<usize> + 'z {
    |src, dst| zstd.compress_to_buffer(src, dst).ok()
}

/// Writes `v` as a `uvar` at `out[at..]`; the position after it, or None
/// when it does not fit.
fn put_uvar_at(out: &mut [u8], at: usize, v: u64) -> Option<usize> {
    let mut c = Cursor::new(out.get_mut(at..)?);
    put_uvar(&mut c, v);
    (!c.overflowed()).then(|| at + c.len())
}

/// Unpacks an `EVENTS_PACKED` payload into the plain `EVENTS` payload it
/// stands for (the thread, then the encoded events), appended to `out`;
/// `scratch` holds the decompressed columns meanwhile. An error names what
/// is wrong with the payload.
pub fn unpack(
    payload: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    zstd: &mut zstd::bulk::Decompressor<'_>,
) -> Result<(), &'static str> {
    let mut at = 0;
    let thread = read_uvar(payload, &mut at).ok_or("bad thread number")?;
    scratch.clear();
    let mut ends = [0usize; COLUMNS];
    for end in &mut ends {
        let raw = read_uvar(payload, &mut at).ok_or("bad column length")?;
        let raw = usize::try_from(raw)
            .ok()
            .filter(|&r| scratch.len() + r <= MAX_UNPACKED)
            .ok_or("columns longer than a packed record can be")?;
        if raw > 0 {
            let packed = read_uvar(payload, &mut at).ok_or("bad packed column length")?;
            let stored = if packed == 0 { raw } else { packed as usize };
            let bytes = at
                .checked_add(stored)
                .and_then(|e| payload.get(at..e))
                .ok_or("column runs past the record")?;
            at += stored;
            let start = scratch.len();
            if packed == 0 {
                scratch.extend_from_slice(bytes);
            } else {
                scratch.resize(start + raw, 0);
                let got = zstd
                    .decompress_to_buffer(bytes, &mut scratch[start..])
                    .map_err(|_| "a column does not decompress")?;
                if got != raw {
                    return Err("a column decompresses to another length than its own");
                }
            }
        }
        *end = scratch.len();
    }
    if at != payload.len() {
        return Err("bytes after the last column");
    }
    let mut start = 0;
    let cols: [&[u8]; COLUMNS] = core::array::from_fn(|i| {
        let c = &scratch[start..ends[i]];
        start = ends[i];
        c
    });
    let mut t = [0u8; MAX_VARINT];
    let tl = put_uvar_at(&mut t, 0, thread).expect("a u64 fits ten bytes");
    out.extend_from_slice(&t[..tl]);
    merge(cols, out)
}
