//! The dashboard's state and what each key does to it. No terminal here:
//! keys in, state out, so that every key is testable without one.

use crate::snapshot::{Column, TableSpec};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use memtally_profiler::{GroupBy, MAX_GROUP_DEPTH};

/// The tabs, in the order shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Allocation sites.
    Sites,
    /// Threads.
    Threads,
    /// Requested sizes.
    Sizes,
    /// Call latency and block lifetimes.
    Latency,
    /// Sites growing without bound.
    Alerts,
    /// Memory by scope (request, task, span).
    Scopes,
    /// Device and network memory (the gpu-shim's).
    Devices,
    /// The program's own output (`memtally run --live`).
    Output,
}

impl Tab {
    /// Every tab, in the order shown.
    pub const ALL: [Tab; 8] = [
        Tab::Sites,
        Tab::Threads,
        Tab::Sizes,
        Tab::Latency,
        Tab::Alerts,
        Tab::Scopes,
        Tab::Devices,
        Tab::Output,
    ];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Sites => "sites",
            Tab::Threads => "threads",
            Tab::Sizes => "sizes",
            Tab::Latency => "latency",
            Tab::Alerts => "alerts",
            Tab::Scopes => "scopes",
            Tab::Devices => "devices",
            Tab::Output => "output",
        }
    }
}

/// The groupings `g` cycles through.
const GROUPINGS: [GroupBy; 4] = [
    GroupBy::InnermostFrame,
    GroupBy::Function,
    GroupBy::File,
    GroupBy::Library,
];

/// The dashboard's state.
#[derive(Clone, Debug)]
pub struct App {
    /// The tab shown.
    pub tab: Tab,
    /// How the site table is asked for (grouping, thread, filter, sort,
    /// drill-down).
    pub spec: TableSpec,
    /// The filter is being typed.
    pub editing_filter: bool,
    /// The selected row of the tab's table.
    pub selected: usize,
    /// The first row of the site table on screen.
    pub offset: usize,
    /// The help overlay is shown.
    pub help: bool,
    /// Drawing is paused (the model goes on following the trace).
    pub paused: bool,
    /// The user asked to quit.
    pub quit: bool,
    /// The threads `t` cycles through (filled in from each snapshot).
    pub thread_numbers: Vec<u64>,
    /// Rows in the current table, to keep the selection inside it.
    pub rows: usize,
    /// The name of the selected site row, for the drill-down.
    pub selected_key: Option<String>,
    /// The output tab exists (the program's output is captured).
    pub has_output: bool,
    /// The time cursor, in nanoseconds since the recording started: the
    /// tables show the heap as it was then. None: now (or the end).
    pub cursor_ns: Option<u64>,
    /// The recording's length and the peak's time, from the last
    /// snapshot, for moving the cursor.
    pub duration_ns: u64,
    /// See `duration_ns`.
    pub peak_ns: u64,
}

impl Default for App {
    fn default() -> Self {
        App {
            tab: Tab::Sites,
            spec: TableSpec {
                group: GroupBy::InnermostFrame,
                depth: 1,
                thread: None,
                filter: String::new(),
                sort: Column::Live,
                descending: true,
                detail: None,
            },
            editing_filter: false,
            selected: 0,
            offset: 0,
            help: false,
            paused: false,
            quit: false,
            thread_numbers: Vec::new(),
            rows: 0,
            selected_key: None,
            has_output: false,
            cursor_ns: None,
            duration_ns: 0,
            peak_ns: 0,
        }
    }
}

impl App {
    /// The tabs shown.
    pub fn tabs(&self) -> Vec<Tab> {
        Tab::ALL
            .into_iter()
            .filter(|t| *t != Tab::Output || self.has_output)
            .collect()
    }

    /// Applies a key.
    pub fn key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            self.quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.spec.filter.clear();
                }
                KeyCode::Backspace => {
                    self.spec.filter.pop();
                }
                KeyCode::Char(c) if !ctrl => self.spec.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            if key.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Esc => {
                if self.spec.detail.is_some() {
                    self.spec.detail = None;
                } else if !self.spec.filter.is_empty() {
                    self.spec.filter.clear();
                }
            }
            KeyCode::Tab | KeyCode::Right => self.switch_tab(1),
            KeyCode::BackTab | KeyCode::Left => self.switch_tab(-1),
            KeyCode::Char(c @ '1'..='9') => {
                let tabs = self.tabs();
                if let Some(t) = tabs.get(c as usize - '1' as usize) {
                    self.tab = *t;
                    self.selected = 0;
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.move_down(1),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::PageDown => self.move_down(10),
            KeyCode::Char(',') => self.move_cursor(-1, 50),
            KeyCode::Char('.') => self.move_cursor(1, 50),
            KeyCode::Char('<') => self.move_cursor(-1, 10),
            KeyCode::Char('>') => self.move_cursor(1, 10),
            KeyCode::Char('P') => self.cursor_ns = Some(self.peak_ns),
            KeyCode::Char('e') => self.cursor_ns = None,
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = self.rows.saturating_sub(1),
            _ if self.tab != Tab::Sites => {}
            KeyCode::Enter => {
                self.spec.detail = match &self.spec.detail {
                    Some(_) => None,
                    None => self.selected_key.clone(),
                }
            }
            KeyCode::Char('/') => {
                self.editing_filter = true;
                self.spec.detail = None;
            }
            KeyCode::Char('s') => {
                let i = Column::ALL.iter().position(|c| *c == self.spec.sort);
                let next = Column::ALL[(i.unwrap_or(0) + 1) % Column::ALL.len()];
                self.spec.sort = next;
                // Names read best A to Z, numbers largest first.
                self.spec.descending = next != Column::Name;
                self.selected = 0;
            }
            KeyCode::Char('r') => {
                self.spec.descending = !self.spec.descending;
                self.selected = 0;
            }
            KeyCode::Char('g') => {
                let i = GROUPINGS.iter().position(|g| *g == self.spec.group);
                self.spec.group = GROUPINGS[(i.unwrap_or(0) + 1) % GROUPINGS.len()];
                self.spec.detail = None;
                self.selected = 0;
            }
            KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Char('-') => {
                let deeper = key.code != KeyCode::Char('-');
                let depth = if deeper {
                    (self.spec.depth + 1).min(MAX_GROUP_DEPTH)
                } else {
                    self.spec.depth.saturating_sub(1).max(1)
                };
                if depth != self.spec.depth {
                    self.spec.depth = depth;
                    self.spec.detail = None;
                    self.selected = 0;
                }
            }
            KeyCode::Char('t') => {
                // All threads, then each thread in turn.
                let next = match self.spec.thread {
                    None => self.thread_numbers.first().copied(),
                    Some(t) => self
                        .thread_numbers
                        .iter()
                        .position(|n| *n == t)
                        .and_then(|i| self.thread_numbers.get(i + 1).copied()),
                };
                self.spec.thread = next;
                self.spec.detail = None;
                self.selected = 0;
            }
            _ => {}
        }
    }

    /// Moves the time cursor by a `1/parts` of the recording (from the
    /// end when it is not set); past the end, it goes back to now.
    fn move_cursor(&mut self, direction: i64, parts: u64) {
        let step = (self.duration_ns / parts).max(1);
        let at = self.cursor_ns.unwrap_or(self.duration_ns);
        let next = if direction < 0 {
            at.saturating_sub(step)
        } else {
            at.saturating_add(step)
        };
        self.cursor_ns = (next < self.duration_ns).then_some(next);
    }

    fn switch_tab(&mut self, by: isize) {
        let tabs = self.tabs();
        let i = tabs.iter().position(|t| *t == self.tab).unwrap_or(0) as isize;
        let n = tabs.len() as isize;
        self.tab = tabs[((i + by).rem_euclid(n)) as usize];
        self.selected = 0;
    }

    fn move_down(&mut self, by: usize) {
        self.selected = (self.selected + by).min(self.rows.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(app: &mut App, code: KeyCode) {
        app.key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    #[test]
    fn sorting_cycles_the_columns_and_reverses() {
        let mut app = App::default();
        assert_eq!(app.spec.sort, Column::Live);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.spec.sort, Column::Allocated);
        assert!(app.spec.descending);
        press(&mut app, KeyCode::Char('r'));
        assert!(!app.spec.descending);
        for _ in 0..4 {
            press(&mut app, KeyCode::Char('s'));
        }
        assert_eq!(app.spec.sort, Column::Name);
        assert!(!app.spec.descending);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.spec.sort, Column::Live);
    }

    #[test]
    fn the_filter_is_typed_applied_and_cleared() {
        let mut app = App::default();
        press(&mut app, KeyCode::Char('/'));
        for c in "Sess".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        // While typing, q is text, not quit.
        press(&mut app, KeyCode::Char('q'));
        assert!(!app.quit);
        press(&mut app, KeyCode::Backspace);
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.spec.filter, "Sess");
        assert!(!app.editing_filter);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.spec.filter, "");
    }

    #[test]
    fn threads_cycle_from_all_through_each_and_back() {
        let mut app = App {
            thread_numbers: vec![0, 3],
            ..App::default()
        };
        let mut seen = Vec::new();
        for _ in 0..3 {
            press(&mut app, KeyCode::Char('t'));
            seen.push(app.spec.thread);
        }
        assert_eq!(seen, [Some(0), Some(3), None]);
    }

    #[test]
    fn enter_opens_the_selected_row_and_escape_closes_it() {
        let mut app = App {
            selected_key: Some("main".into()),
            ..App::default()
        };
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.spec.detail.as_deref(), Some("main"));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.spec.detail, None);
    }

    #[test]
    fn the_time_cursor_steps_jumps_to_the_peak_and_returns_to_the_end() {
        let mut app = App {
            duration_ns: 1000,
            peak_ns: 300,
            ..App::default()
        };
        press(&mut app, KeyCode::Char(','));
        assert_eq!(app.cursor_ns, Some(980));
        press(&mut app, KeyCode::Char('<'));
        assert_eq!(app.cursor_ns, Some(880));
        press(&mut app, KeyCode::Char('P'));
        assert_eq!(app.cursor_ns, Some(300));
        press(&mut app, KeyCode::Char('>'));
        assert_eq!(app.cursor_ns, Some(400));
        for _ in 0..6 {
            press(&mut app, KeyCode::Char('>'));
        }
        assert_eq!(app.cursor_ns, None, "past the end is now");
        press(&mut app, KeyCode::Char('P'));
        press(&mut app, KeyCode::Char('e'));
        assert_eq!(app.cursor_ns, None);
    }

    #[test]
    fn help_closes_on_any_key_and_ctrl_c_quits() {
        let mut app = App::default();
        press(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        press(&mut app, KeyCode::Char('x'));
        assert!(!app.help && !app.quit);
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }
}
