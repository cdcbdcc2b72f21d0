//! A minimal writer of Python's pickle format (protocol 2): the values a
//! PyTorch memory snapshot is made of (dicts, lists, strings, integers,
//! None), so that PyTorch's own tools (`torch.cuda._memory_viz`, the
//! pytorch.org/memory_viz page) read what memtally recorded.

use std::io::{self, Write};

/// A pickled value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// An integer (any width Python's `int` holds; here 64 bits).
    Int(i128),
    /// A `str`.
    Str(String),
    /// A `list`.
    List(Vec<Value>),
    /// A `dict`, in insertion order.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// A dict from string keys.
    pub fn dict(items: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, v)| (Value::Str(k.to_owned()), v))
                .collect(),
        )
    }

    /// A string.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// An integer.
    pub fn int(i: impl Into<i128>) -> Value {
        Value::Int(i.into())
    }
}

/// Writes `v` as a complete pickle (protocol 2).
pub fn write(v: &Value, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&[0x80, 2])?;
    value(v, out)?;
    out.write_all(b".")
}

/// Items are appended in batches of this many (as Python's pickler does).
const BATCH: usize = 1000;

fn value(v: &Value, out: &mut dyn Write) -> io::Result<()> {
    match v {
        Value::None => out.write_all(b"N"),
        Value::Int(i) => int(*i, out),
        Value::Str(s) => {
            out.write_all(b"X")?;
            out.write_all(&(s.len() as u32).to_le_bytes())?;
            out.write_all(s.as_bytes())
        }
        Value::List(items) => {
            out.write_all(b"]")?;
            for chunk in items.chunks(BATCH) {
                out.write_all(b"(")?;
                for item in chunk {
                    value(item, out)?;
                }
                out.write_all(b"e")?;
            }
            Ok(())
        }
        Value::Dict(items) => {
            out.write_all(b"}")?;
            for chunk in items.chunks(BATCH) {
                out.write_all(b"(")?;
                for (k, item) in chunk {
                    value(k, out)?;
                    value(item, out)?;
                }
                out.write_all(b"u")?;
            }
            Ok(())
        }
    }
}

/// BININT for what fits 32 signed bits, else LONG1 (little-endian two's
/// complement, the fewest bytes).
fn int(i: i128, out: &mut dyn Write) -> io::Result<()> {
    if let Ok(small) = i32::try_from(i) {
        out.write_all(b"J")?;
        return out.write_all(&small.to_le_bytes());
    }
    let bytes = i.to_le_bytes();
    let mut n = bytes.len();
    // Drop redundant sign bytes, keeping the sign bit right.
    while n > 1 {
        let top = bytes[n - 1];
        let next_sign = bytes[n - 2] & 0x80;
        if (top == 0 && next_sign == 0) || (top == 0xff && next_sign != 0) {
            n -= 1;
        } else {
            break;
        }
    }
    out.write_all(&[0x8a, n as u8])?;
    out.write_all(&bytes[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pickled(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write(v, &mut out).unwrap();
        out
    }

    #[test]
    fn small_and_large_integers_take_their_opcodes() {
        assert_eq!(pickled(&Value::int(5)), b"\x80\x02J\x05\x00\x00\x00.");
        // 2^40: LONG1 with 6 bytes.
        assert_eq!(
            pickled(&Value::int(1i64 << 40)),
            b"\x80\x02\x8a\x06\x00\x00\x00\x00\x00\x01."
        );
        // 2^63 needs a ninth byte for the sign.
        assert_eq!(pickled(&Value::int(1u64 << 63))[3], 9);
        assert_eq!(pickled(&Value::int(-1i64 << 40))[3], 6);
    }

    #[test]
    fn containers_nest() {
        let v = Value::dict(vec![
            ("a", Value::List(vec![Value::int(1), Value::None])),
            ("b", Value::str("x")),
        ]);
        assert_eq!(
            pickled(&v),
            b"\x80\x02}(X\x01\x00\x00\x00a](J\x01\x00\x00\x00NeX\x01\x00\x00\x00bX\x01\x00\x00\x00xu."
        );
    }
}
