//! The profiler's error type: what can go wrong when reading and analysing a
//! trace, as an `Error { kind }` whose messages are lowercase and name the
//! bad value (the file, the byte offset), so that the CLI can print them as
//! they are after its `memtally: ` prefix.

use memtally_alloc::trace::DecodeError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a trace could not be read or analysed.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
}

/// The kinds of [`Error`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The trace file could not be opened or read.
    Open {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The decoder rejected the trace: not a trace, a future version, or a
    /// record that does not parse (corruption).
    Decode(DecodeError),
    /// The trace holds no complete HEADER record, so there is nothing to
    /// analyse (the process was killed before its first record was written,
    /// or the file is empty).
    NoHeader {
        /// How many bytes the file holds.
        file_bytes: u64,
    },
    /// Writing a report failed.
    Write(io::Error),
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// True when the error came from writing output into a closed pipe
    /// (a command line prints nothing and exits 0 then, as `head` expects).
    pub fn is_broken_pipe(&self) -> bool {
        match &self.kind {
            ErrorKind::Write(e) => e.kind() == io::ErrorKind::BrokenPipe,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Open { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ErrorKind::Decode(e) => e.fmt(f),
            ErrorKind::NoHeader { file_bytes } => write!(
                f,
                "trace has no header ({file_bytes} bytes): the process stopped before recording began"
            ),
            ErrorKind::Write(e) => write!(f, "cannot write the report: {e}"),
        }
    }
}

/// No `source()`: every message above already includes its cause, and a
/// chain would print it twice (`memtally: cannot read x: ENOENT: ENOENT`).
impl std::error::Error for Error {}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::new(ErrorKind::Decode(e))
    }
}
