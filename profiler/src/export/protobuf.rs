//! Just enough of the protocol buffers wire format to write a message: the
//! pprof exporter needs varints, length-delimited fields and packed
//! repeated integers, and nothing of protobuf's reflection or code
//! generation, so it is written by hand rather than pulled in with a
//! build-time compiler.
//!
//! Fields are written in the order they are added; proto3 readers accept
//! any order. Scalar fields equal to zero are left out (proto3's default
//! values), but elements of repeated fields are always written, because
//! their position carries meaning (pprof's string table starts with "").

/// Wire type of varint fields.
const VARINT: u64 = 0;
/// Wire type of length-delimited fields (bytes, strings, messages, packed
/// repeated scalars).
const LEN: u64 = 2;

/// A message being written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Message {
    buf: Vec<u8>,
}

impl Message {
    /// An empty message.
    pub(crate) fn new() -> Self {
        Message::default()
    }

    /// The encoded message.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// A `uint64` field (left out when zero).
    pub(crate) fn uint(&mut self, field: u32, value: u64) -> &mut Self {
        if value != 0 {
            self.key(field, VARINT);
            put_varint(&mut self.buf, value);
        }
        self
    }

    /// An `int64` field (left out when zero; negative values take ten
    /// bytes, as protobuf encodes them).
    pub(crate) fn int(&mut self, field: u32, value: i64) -> &mut Self {
        self.uint(field, value as u64)
    }

    /// A `bool` field (left out when false).
    pub(crate) fn bool(&mut self, field: u32, value: bool) -> &mut Self {
        self.uint(field, u64::from(value))
    }

    /// One element of a repeated `bytes` or `string` field (always
    /// written, even when empty).
    pub(crate) fn bytes(&mut self, field: u32, value: &[u8]) -> &mut Self {
        self.key(field, LEN);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
        self
    }

    /// An embedded message (always written, even when empty).
    pub(crate) fn message(&mut self, field: u32, value: &Message) -> &mut Self {
        self.bytes(field, &value.buf)
    }

    /// A packed repeated `uint64` or `int64` field (left out when empty).
    pub(crate) fn packed(&mut self, field: u32, values: &[u64]) -> &mut Self {
        if values.is_empty() {
            return self;
        }
        let mut body = Vec::with_capacity(values.len() * 2);
        for &v in values {
            put_varint(&mut body, v);
        }
        self.bytes(field, &body)
    }

    fn key(&mut self, field: u32, wire_type: u64) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | wire_type);
    }
}

/// Appends `v` as a base-128 varint, least significant group first.
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A field read back by [`fields`] (for tests of the writers).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field<'a> {
    /// A varint field.
    Varint(u64),
    /// A length-delimited field.
    Bytes(&'a [u8]),
}

/// Reads a message's fields in order: a minimal decoder so that tests can
/// check what the writers produce without trusting them.
#[cfg(test)]
pub(crate) fn fields(mut data: &[u8]) -> Vec<(u32, Field<'_>)> {
    fn varint(data: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = data[0];
            *data = &data[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let key = varint(&mut data);
        let field = (key >> 3) as u32;
        match key & 7 {
            VARINT => out.push((field, Field::Varint(varint(&mut data)))),
            LEN => {
                let n = varint(&mut data) as usize;
                out.push((field, Field::Bytes(&data[..n])));
                data = &data[n..];
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

/// The varints of a packed repeated field.
#[cfg(test)]
pub(crate) fn unpack(mut data: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = data[0];
            data = &data[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_documentation() {
        // The examples of protobuf's encoding guide: 1 and 150.
        let mut m = Message::new();
        m.uint(1, 150);
        assert_eq!(m.clone().into_bytes(), [0x08, 0x96, 0x01]);
        let mut m = Message::new();
        m.bytes(2, b"testing");
        assert_eq!(
            m.into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        // Negative int64: ten bytes.
        let mut m = Message::new();
        m.int(1, -1);
        assert_eq!(m.into_bytes().len(), 11);
    }

    #[test]
    fn zero_scalars_are_left_out_and_fields_read_back() {
        let mut inner = Message::new();
        inner.uint(1, 7);
        let mut m = Message::new();
        m.uint(1, 0)
            .bool(2, true)
            .bytes(3, b"")
            .packed(4, &[1, 300, u64::MAX])
            .packed(5, &[])
            .message(6, &inner);
        let bytes = m.into_bytes();
        let f = fields(&bytes);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], (2, Field::Varint(1)));
        assert_eq!(f[1], (3, Field::Bytes(b"")));
        let Field::Bytes(packed) = f[2].1 else {
            panic!()
        };
        assert_eq!(unpack(packed), [1, 300, u64::MAX]);
        assert_eq!(f[3], (6, Field::Bytes(&[0x08, 7])));
    }
}
