//! `memtally report`: what a trace says about a program's memory, as text
//! for people or as JSON for programs (the schema is in
//! `docs/report-json.md` and `schema.rs`).
//!
//! The report is built once from the analysis model and a symboliser
//! ([`build`]), then rendered ([`text::render`] or [`write_json`]).

mod build;
mod schema;
mod text;

pub(crate) use build::{
    SiteBuilder, device_sites, notes, summary, thread_reports, timeline, trace_info,
};
pub use build::{build, error_list};
pub use schema::*;
pub(crate) use text::{Fmt as TextFmt, article, frame as frame_text, site_table};
pub use text::{
    bytes as text_bytes, command_line, count as text_count, error_line, ns as text_ns,
    plain_table as text_table, render as render_text, render_view as render_text_view,
    write as write_text,
};

use crate::error::{Error, ErrorKind};
use std::io::Write;

/// What the report shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// Sites listed per section.
    pub top: usize,
    /// Frames shown per site.
    pub frames: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { top: 5, frames: 5 }
    }
}

/// What the text report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextView {
    /// Everything (scopes too, when the program entered any).
    #[default]
    Full,
    /// The summary and memory by scope only (`--by scope`).
    Scopes,
}

/// Writes `report` as pretty-printed JSON followed by a newline.
pub fn write_json(report: &Report, out: &mut dyn Write) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, report)
        .map_err(|e| Error::new(ErrorKind::Write(e.into())))?;
    out.write_all(b"\n")
        .map_err(|e| Error::new(ErrorKind::Write(e)))
}
