//! Encoding primitives: varints, strings and events written into a caller's
//! byte buffer, with no allocation (the recorder runs inside the profiled
//! process, in the middle of allocator calls).

use super::tag;

/// A write position in a fixed byte buffer. Writes past the end are
/// recorded as an overflow instead of panicking, so a caller can size its
/// buffers for the worst case and check once.
pub struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Cursor {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when a write did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    #[inline]
    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    #[inline]
    fn extend(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= self.buf.len() {
            self.buf[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.overflow = true;
        }
    }
}

/// Writes one byte.
#[inline]
pub fn put_u8(c: &mut Cursor<'_>, v: u8) {
    c.push(v);
}

/// Writes an unsigned LEB128 varint.
#[inline]
pub fn put_uvar(c: &mut Cursor<'_>, mut v: u64) {
    while v >= 0x80 {
        c.push((v as u8) | 0x80);
        v >>= 7;
    }
    c.push(v as u8);
}

/// Writes a zigzag-encoded signed varint.
#[inline]
pub fn put_svar(c: &mut Cursor<'_>, v: i64) {
    put_uvar(c, ((v << 1) ^ (v >> 63)) as u64);
}

/// Writes a length-prefixed byte string.
pub fn put_bytes(c: &mut Cursor<'_>, bytes: &[u8]) {
    put_uvar(c, bytes.len() as u64);
    c.extend(bytes);
}

/// Writes a length-prefixed string.
pub fn put_str(c: &mut Cursor<'_>, s: &str) {
    put_bytes(c, s.as_bytes());
}

/// Writes a record's framing (kind and payload length); the payload follows.
pub fn put_record_header(c: &mut Cursor<'_>, kind: u8, payload_len: usize) {
    put_u8(c, kind);
    put_uvar(c, payload_len as u64);
}

/// A thread event to encode, with absolute times and addresses; the
/// encoder turns them into deltas against `state`.
#[derive(Clone, Copy, Debug)]
pub enum RawEvent {
    /// An allocation.
    Alloc {
        /// Ticks when it returned.
        time: u64,
        /// Block address.
        address: u64,
        /// Requested size.
        size: u64,
        /// Requested alignment.
        align: u64,
        /// Stack trie id.
        stack: u64,
        /// Ticks the call took.
        latency: u64,
    },
    /// A free.
    Free {
        /// Ticks when it returned.
        time: u64,
        /// Block address.
        address: u64,
        /// Ticks the call took.
        latency: u64,
    },
    /// A reallocation.
    Realloc {
        /// Ticks when it returned.
        time: u64,
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
        /// Ticks when it was set.
        time: u64,
        /// STRING id of its text.
        string: u64,
    },
}

/// Per-thread delta state, shared by encoder and decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeltaState {
    /// Time of the previous event.
    pub time: u64,
    /// Address of the previous event.
    pub address: u64,
}

/// The most bytes one encoded event can take.
pub const MAX_EVENT_BYTES: usize = 1 + 6 * 10 + 1;

/// Encodes `event` against `state` and updates `state`. Times must not go
/// backwards within a thread.
pub fn encode_event(c: &mut Cursor<'_>, state: &mut DeltaState, event: &RawEvent) {
    let dt = |state: &DeltaState, t: u64| t.saturating_sub(state.time);
    match *event {
        RawEvent::Alloc {
            time,
            address,
            size,
            align,
            stack,
            latency,
        } => {
            let aligned = align > 16;
            put_u8(
                c,
                if aligned {
                    tag::ALLOC_ALIGNED
                } else {
                    tag::ALLOC
                },
            );
            put_uvar(c, dt(state, time));
            put_svar(c, address.wrapping_sub(state.address) as i64);
            put_uvar(c, size);
            put_uvar(c, stack);
            put_uvar(c, latency);
            if aligned {
                put_u8(c, align.trailing_zeros() as u8);
            }
            state.time = time.max(state.time);
            state.address = address;
        }
        RawEvent::Free {
            time,
            address,
            latency,
        } => {
            put_u8(c, tag::FREE);
            put_uvar(c, dt(state, time));
            put_svar(c, address.wrapping_sub(state.address) as i64);
            put_uvar(c, latency);
            state.time = time.max(state.time);
            state.address = address;
        }
        RawEvent::Realloc {
            time,
            old_address,
            new_address,
            new_size,
            stack,
            latency,
        } => {
            put_u8(c, tag::REALLOC);
            put_uvar(c, dt(state, time));
            put_svar(c, old_address.wrapping_sub(state.address) as i64);
            put_svar(c, new_address.wrapping_sub(old_address) as i64);
            put_uvar(c, new_size);
            put_uvar(c, stack);
            put_uvar(c, latency);
            state.time = time.max(state.time);
            state.address = new_address;
        }
        RawEvent::Marker { time, string } => {
            put_u8(c, tag::MARKER);
            put_uvar(c, dt(state, time));
            put_uvar(c, string);
            state.time = time.max(state.time);
        }
    }
}
