//! memtally's terminal dashboard: a view over the profiler's analysis
//! model, live or post-mortem.
//!
//! As in tokio-console, the parts are kept apart: the profiled process
//! only writes its trace; [`memtally_profiler::Live`] follows that trace
//! into the one analysis model; this crate only draws. Each frame:
//!
//! 1. takes the model's lock and copies what the frame shows into a
//!    [`Snapshot`] (the site table grouped and sorted by the profiler's
//!    grouping, the series, the threads, the distributions), then lets go;
//! 2. draws the snapshot with ratatui ([`ui::draw`]);
//! 3. waits up to a quarter of a second for a key ([`App::key`]).
//!
//! The terminal is restored on every way out ([`terminal`]).
//!
//! Files: `app.rs` (state and keys), `snapshot.rs` (model to frame),
//! `ui.rs` (drawing), `terminal.rs` (raw mode, panics, signals),
//! `keys.rs` (the terminal's bytes decoded into keys).

#![deny(missing_docs)]

pub mod app;
pub mod history;
pub mod keys;
pub mod snapshot;
pub mod terminal;
pub mod ui;

pub use app::{App, Tab};
pub use snapshot::{Column, Snapshot, TableSpec};
pub use ui::{Status, Theme};

use memtally_profiler::{Live, LiveState, ModelOptions, SiteFrames, Symbolizer};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the dashboard redraws when no key is pressed.
const REFRESH: Duration = Duration::from_millis(250);
/// Output lines of the program kept for the output tab.
pub const OUTPUT_LINES: usize = 500;

/// What `memtally run --live` knows about the program beyond its trace.
#[derive(Debug, Default)]
pub struct Process {
    /// How it ended (`exited with status 0`), once it has.
    pub exit: Mutex<Option<String>>,
    /// Its latest output lines.
    pub output: Mutex<VecDeque<String>>,
}

impl Process {
    /// Adds a line of the program's output, forgetting the oldest beyond
    /// [`OUTPUT_LINES`].
    pub fn push_output(&self, line: String) {
        let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        if out.len() == OUTPUT_LINES {
            out.pop_front();
        }
        out.push_back(line);
    }
}

/// The model the dashboard shows, which its owner may replace (when the
/// program executes another, the next trace is followed).
#[derive(Clone)]
pub struct LiveSlot(Arc<Mutex<Arc<Live>>>);

impl LiveSlot {
    /// A slot holding `live`.
    pub fn new(live: Live) -> Self {
        LiveSlot(Arc::new(Mutex::new(Arc::new(live))))
    }

    /// The model now.
    pub fn get(&self) -> Arc<Live> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Shows `live` from now on.
    pub fn set(&self, live: Arc<Live>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = live;
    }
}

/// What the dashboard shows.
pub struct Target {
    /// The model following the trace.
    pub live: LiveSlot,
    /// The program, when the dashboard started it.
    pub process: Option<Arc<Process>>,
}

/// Why the dashboard ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The user quit.
    Quit,
    /// A terminating signal arrived.
    Signal(i32),
}

/// Runs the dashboard in this terminal until the user quits.
pub fn run(target: &Target) -> io::Result<Outcome> {
    let mut guard = terminal::enter()?;
    let theme = Theme::from_env();
    let mut app = App {
        has_output: target.process.is_some(),
        ..App::default()
    };
    let mut view = View::default();
    let mut snap = Snapshot::default();
    let mut status = Status::default();
    loop {
        if let Some(sig) = terminal::signalled() {
            return Ok(Outcome::Signal(sig));
        }
        if !app.paused || snap.pid == 0 {
            (snap, status) = view.take(target, &app);
            app.thread_numbers = snap.threads.iter().map(|t| t.info.thread).collect();
            app.duration_ns = snap.duration_ns;
            app.peak_ns = snap.peak.1;
        }
        guard
            .terminal
            .draw(|f| ui::draw(f, &mut app, &snap, &status, theme))?;
        match terminal::wait_for_input(REFRESH) {
            terminal::Input::Ready => {
                // Everything the terminal sent (a paste or a burst of
                // keys arrives in one read).
                for key in keys::read()? {
                    app.key(key);
                }
            }
            terminal::Input::None => {}
            terminal::Input::HungUp => return Ok(Outcome::Signal(libc::SIGHUP)),
        }
        if app.quit {
            return Ok(Outcome::Quit);
        }
    }
}

/// What one dashboard remembers between frames: the symboliser, each
/// site's frame, and recent totals for the rates.
#[derive(Default)]
pub struct View {
    symbolizer: Symbolizer,
    frames: SiteFrames,
    /// (nanoseconds recorded, allocations, frees) at recent frames.
    recent: VecDeque<(u64, u64, u64)>,
    /// The growth test in progress: the sites of this pass, how many are
    /// done, what they found.
    scan: Vec<memtally_profiler::StackId>,
    scanned: usize,
    found: Vec<memtally_profiler::growth::Growth>,
    /// The last finished pass's alerts.
    alerts: Vec<snapshot::Alert>,
    /// A pass over the final model has started, or ended: then nothing
    /// more needs testing.
    final_started: bool,
    final_pass: bool,
    /// Reads the trace up to the time cursor (made when first needed).
    history: Option<history::History>,
    /// The memory errors' lines, and how many error events they were made
    /// from (the list only grows while one trace is followed).
    errors: (usize, Vec<String>),
    /// The model the caches above belong to.
    following: Option<Arc<Live>>,
}

/// The model options of a dashboard: per-thread sites for the thread
/// filter, site details for the drill-down and the alerts.
pub fn model_options() -> ModelOptions {
    ModelOptions {
        thread_sites: true,
        site_details: true,
        ..ModelOptions::default()
    }
}

/// Frames per pass of the growth test: each frame tests this fraction of
/// the sites, so no frame stalls on it (testing ten thousand sites at once
/// took 50 ms), and a pass takes about two seconds.
const ALERT_FRAMES_PER_PASS: usize = 8;

impl View {
    /// Takes a frame's snapshot and status.
    pub fn take(&mut self, target: &Target, app: &App) -> (Snapshot, Status) {
        let live = target.live.get();
        if !self
            .following
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &live))
        {
            // Another trace (the program executed another): stack ids and
            // modules are its own, so nothing remembered still holds.
            *self = View {
                following: Some(live.clone()),
                ..View::default()
            };
        }
        let live_status = live.status();
        let snap = {
            let model = live.model();
            let mut snap =
                Snapshot::take(&model, &mut self.symbolizer, &mut self.frames, &app.spec);
            let is_final = live_status.state.is_final();
            if is_final && !self.final_started {
                // Start a pass over the final model, which no longer
                // changes: when it ends, nothing more needs testing.
                self.final_started = true;
                self.scan.clear();
                self.scanned = 0;
            }
            if !self.final_pass {
                let published = self.scan_some(&model, ALERT_FRAMES_PER_PASS);
                self.final_pass = published && self.final_started;
            }
            snap.alerts = self.alerts.clone();
            if self.errors.0 != model.errors().len() {
                self.errors = (
                    model.errors().len(),
                    snapshot::error_lines(&model, &mut self.symbolizer),
                );
            }
            snap.errors = self.errors.1.clone();
            if let Some(ns) = app.cursor_ns {
                let ticks = model.ticks_after_start(ns);
                drop(model);
                snap = self.at_cursor(target, app, snap, ns, ticks);
            }
            snap
        };
        let exit = target
            .process
            .as_ref()
            .and_then(|p| p.exit.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let output = target.process.as_ref().map_or(Vec::new(), |p| {
            p.output
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect()
        });
        let ended = live_status.state.is_final();
        let uptime_ns = (live_status.state == LiveState::Following && snap.pid != 0)
            .then(|| process_uptime_ns(snap.pid))
            .flatten();
        let status = Status {
            state: state_text(&live_status.state, exit.as_deref()),
            ended,
            uptime_ns,
            rates: if snap.cursor.is_some() {
                None
            } else {
                self.rates(&snap, ended)
            },
            output,
        };
        (snap, status)
    }

    /// The snapshot at the time cursor: the tables from the model read up
    /// to it (or, while that reading runs, the last one read), the chart
    /// and the alerts from `now` (the whole recording).
    fn at_cursor(
        &mut self,
        target: &Target,
        app: &App,
        now: Snapshot,
        ns: u64,
        ticks: u64,
    ) -> Snapshot {
        let history = self.history.get_or_insert_with(|| {
            history::History::new(target.live.get().path().to_owned(), model_options())
        });
        history.ask(ticks);
        let (latest, reading) = history.latest();
        let (mut snap, shown_ns, error) = match latest {
            Some(Ok(m)) => {
                let snap =
                    Snapshot::take(&m.model, &mut self.symbolizer, &mut self.frames, &app.spec);
                let shown = m.model.since_start_ns(m.ticks);
                (snap, Some(shown), None)
            }
            Some(Err(e)) => (now.clone(), None, Some(e)),
            None => (now.clone(), None, None),
        };
        snap.heap_points = now.heap_points;
        snap.rss_points = now.rss_points;
        snap.duration_ns = now.duration_ns;
        snap.peak = now.peak;
        snap.alerts = now.alerts;
        snap.errors = now.errors;
        snap.threads = now.threads;
        snap.cursor = Some(snapshot::Cursor {
            at_ns: ns,
            shown_ns,
            reading: reading || shown_ns != Some(ns),
            error,
        });
        snap
    }

    /// Tests the next share of the sites for growth; at the end of a pass
    /// publishes its alerts and starts the next.
    /// Returns whether a pass was published.
    fn scan_some(&mut self, model: &memtally_profiler::Model, frames_per_pass: usize) -> bool {
        let mut published = false;
        if self.scanned >= self.scan.len() {
            if !self.scan.is_empty() {
                published = true;
                memtally_profiler::growth::sort_fastest_first(&mut self.found);
                self.alerts = self
                    .found
                    .iter()
                    .map(|g| snapshot::alert(model, &mut self.symbolizer, &mut self.frames, g))
                    .collect();
            }
            self.found.clear();
            self.scan = model.sites().map(|s| s.stack).collect();
            self.scanned = 0;
        }
        let n = self.scan.len().div_ceil(frames_per_pass);
        let end = (self.scanned + n).min(self.scan.len());
        for &stack in &self.scan[self.scanned..end] {
            if let Some(g) =
                memtally_profiler::growth::site_growth(model, stack, snapshot::ALERT_MIN_SPAN_NS)
            {
                self.found.push(g);
            }
        }
        self.scanned = end;
        published
    }

    /// Allocations and frees per second over about the last two seconds
    /// of the recording (over all of it when it is shorter or has ended).
    fn rates(&mut self, snap: &Snapshot, ended: bool) -> Option<(f64, f64)> {
        let now = (snap.duration_ns, snap.totals.allocations, snap.totals.frees);
        if self.recent.back() != Some(&now) {
            self.recent.push_back(now);
        }
        while self
            .recent
            .front()
            .is_some_and(|f| now.0.saturating_sub(f.0) > 2_000_000_000)
        {
            self.recent.pop_front();
        }
        let (t0, a0, f0) = match self.recent.front() {
            Some(&first) if !ended && now.0.saturating_sub(first.0) >= 250_000_000 => first,
            _ => (0, 0, 0),
        };
        let seconds = now.0.saturating_sub(t0) as f64 / 1e9;
        (seconds > 0.0).then(|| {
            (
                now.1.saturating_sub(a0) as f64 / seconds,
                now.2.saturating_sub(f0) as f64 / seconds,
            )
        })
    }
}

/// How long process `pid` of this machine has run: its start in
/// `/proc/PID/stat` (clock ticks after boot) against `/proc/uptime`.
fn process_uptime_ns(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis: state is the 3rd
    // field of the line, starttime the 22nd.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let start_ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let since_boot_s: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let started_s = start_ticks as f64 / hz as f64;
    Some(((since_boot_s - started_s).max(0.0) * 1e9) as u64)
}

/// The header's state word.
pub fn state_text(state: &LiveState, exit: Option<&str>) -> String {
    match (state, exit) {
        (LiveState::Waiting, None) => "starting".into(),
        (LiveState::Following, None) => "running".into(),
        (LiveState::Waiting | LiveState::Following, Some(e)) => e.into(),
        (LiveState::Complete { exec: true, .. }, _) => "executed another program".into(),
        (LiveState::Complete { detached: true, .. }, _) => "detached (the process runs on)".into(),
        (LiveState::Complete { .. }, Some(e)) => e.into(),
        (
            LiveState::Complete {
                exit_status: Some(status),
                ..
            },
            None,
        ) => format!("exited with status {status}"),
        (
            LiveState::Complete {
                clean_exit: true, ..
            },
            None,
        ) => "exited".into(),
        (LiveState::Complete { .. }, None) => "ended abnormally".into(),
        (LiveState::CutShort { .. }, Some(e)) => format!("{e}; trace cut short"),
        (LiveState::CutShort { .. }, None) => "disconnected (trace cut short)".into(),
        (LiveState::Failed(why), _) => format!("stopped reading: {why}"),
    }
}

#[cfg(test)]
mod tests;
