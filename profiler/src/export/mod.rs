//! `memtally export`: a trace's analysis in formats other tools read.
//!
//! - [`pprof`]: Go's heap-profile format, for `go tool pprof`, Pyroscope
//!   and Grafana (gzip-compressed protobuf, written by hand in
//!   [`protobuf`](self) rather than through a code generator).
//! - [`json`]: every site with its whole stack and counters, threads,
//!   timelines and markers, for scripts (documented in
//!   `docs/export-json.md`).
//! - folded stacks are the flamegraph's ([`crate::flame::folded`]).
//!
//! Like every view, the exports only read the analysis model.

pub mod json;
pub mod pickle;
pub mod pprof;
mod protobuf;
pub mod torch;

#[cfg(test)]
mod tests;
