//! Encoding primitives: varints, strings and events written into a caller's
//! byte buffer, with no allocation (the recorder runs inside the profiled
//! process, in the middle of allocator calls).

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
