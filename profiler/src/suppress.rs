//! Leak suppressions, in LeakSanitizer's file format, so that a project's
//! existing `lsan.supp` works here too: one `leak:PATTERN` a line, `#`
//! comments and blank lines ignored. A pattern suppresses a leak when it
//! matches the function, the source file or the module of any frame of
//! the leak's stack. `*` matches any run of characters; a pattern matches
//! anywhere in the name unless it starts with `^` or ends with `$`.

use crate::symbols::Location;

/// A set of suppressions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suppressions {
    patterns: Vec<String>,
}

impl Suppressions {
    /// Parses a suppressions file's text; an error names the line.
    pub fn parse(text: &str) -> Result<Suppressions, String> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((kind, pattern)) = line.split_once(':') else {
                return Err(format!(
                    "line {}: expected leak:PATTERN, found {line:?}",
                    i + 1
                ));
            };
            if kind.trim() != "leak" {
                return Err(format!(
                    "line {}: {:?} suppressions are not memtally's (only leak:PATTERN)",
                    i + 1,
                    kind.trim()
                ));
            }
            let pattern = pattern.trim();
            if pattern.is_empty() {
                return Err(format!("line {}: empty pattern", i + 1));
            }
            patterns.push(pattern.to_owned());
        }
        Ok(Suppressions { patterns })
    }

    /// True when there are no suppressions.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first pattern that matches a frame of `frames`, if any.
    pub fn matching(&self, frames: &[Location]) -> Option<&str> {
        self.patterns
            .iter()
            .find(|p| {
                frames.iter().any(|f| {
                    [
                        f.function.as_deref(),
                        f.file.as_deref(),
                        f.module.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .any(|name| matches(p, name))
                })
            })
            .map(String::as_str)
    }
}

/// Does `pattern` match `name` (see the module's description)?
fn matches(pattern: &str, name: &str) -> bool {
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    let parts: Vec<&str> = p.split('*').collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        let first = i == 0;
        let last = i == parts.len() - 1;
        if part.is_empty() {
            continue;
        }
        if first && anchored_start {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if last && anchored_end {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    // An anchored end whose last part was empty (`...*$`) or absent.
    !anchored_end || parts.last().is_some_and(|p| p.is_empty()) || rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_lsan() {
        assert!(matches("open_session", "leaky_server::open_session"));
        assert!(matches("^leaky_server::", "leaky_server::open_session"));
        assert!(!matches("^open_session", "leaky_server::open_session"));
        assert!(matches("session$", "leaky_server::open_session"));
        assert!(!matches("leaky$", "leaky_server::open_session"));
        assert!(matches("leaky*open", "leaky_server::open_session"));
        assert!(matches("^leaky*session$", "leaky_server::open_session"));
        assert!(!matches("^server*", "leaky_server::open_session"));
        assert!(matches("libfoo.so", "/usr/lib/libfoo.so.1"));
        assert!(matches("*", "anything"));
        assert!(matches("^a*$", "abc"));
        assert!(!matches("^a*b$", "abc"));
    }

    #[test]
    fn files_parse_with_line_numbers_in_errors() {
        let s = Suppressions::parse("# comment\n\nleak:open_session\n  leak: ^libfoo \n").unwrap();
        assert_eq!(s.patterns, ["open_session", "^libfoo"]);
        assert_eq!(
            Suppressions::parse("leak:a\nrace:b").unwrap_err(),
            "line 2: \"race\" suppressions are not memtally's (only leak:PATTERN)"
        );
        assert!(
            Suppressions::parse("oops")
                .unwrap_err()
                .starts_with("line 1: expected")
        );
        assert!(
            Suppressions::parse("leak:")
                .unwrap_err()
                .contains("empty pattern")
        );
    }

    #[test]
    fn any_frame_by_function_file_or_module() {
        let s = Suppressions::parse("leak:parse_config\nleak:libssl").unwrap();
        let mut f = Location::unknown(0x10);
        f.function = Some("app::parse_config".into());
        assert_eq!(s.matching(&[Location::unknown(1), f]), Some("parse_config"));
        let mut m = Location::unknown(0x20);
        m.module = Some("/usr/lib/x86_64-linux-gnu/libssl.so.3".into());
        assert_eq!(s.matching(&[m]), Some("libssl"));
        assert_eq!(s.matching(&[Location::unknown(3)]), None);
    }
}
