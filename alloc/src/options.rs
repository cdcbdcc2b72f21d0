//! Settings read from the environment when the allocator initialises.
//!
//! Read with `getenv`, which does not allocate, at the first allocation of
//! the process. A bad value prints one line naming the variable and the value
//! and is ignored: a setting can never take the program down.
//!
//! | variable | values | effect |
//! | --- | --- | --- |
//! | `MEMTALLY_STATS` | `1`/`true`/`yes`/`on`, `0`/`false`/`no`/`off`/empty | print allocator statistics to stderr at exit |

use core::ffi::CStr;

/// Reads every setting and applies it.
pub fn load() {
    if let Some(value) = get(c"MEMTALLY_STATS") {
        match parse_bool(value) {
            Some(true) => crate::stats::enable(),
            Some(false) => {}
            None => crate::report::warn(format_args!(
                "MEMTALLY_STATS: expected 1 or 0, got '{}'; statistics stay off",
                value.to_str().unwrap_or("(not UTF-8)")
            )),
        }
    }
}

fn get(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into
    // the environment block, which outlives the allocator's use of it (we
    // copy nothing and keep the reference only while parsing).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) })
    }
}

/// Parses a boolean setting.
pub fn parse_bool(value: &CStr) -> Option<bool> {
    match value.to_bytes() {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"" | b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(c"1"), Some(true));
        assert_eq!(parse_bool(c"on"), Some(true));
        assert_eq!(parse_bool(c""), Some(false));
        assert_eq!(parse_bool(c"0"), Some(false));
        assert_eq!(parse_bool(c"2"), None);
        assert_eq!(parse_bool(c"maybe"), None);
    }
}
