//! Drawing one frame: header, chart, tabs, the tab's table (or a site's
//! drill-down), footer, and the help overlay. Pure: a [`Snapshot`], the
//! [`App`] state and a [`Status`] in, ratatui widgets out.

use crate::app::{App, Tab};
use crate::snapshot::{Column, Percentiles, Row, Snapshot};
use memtally_profiler::report::{text_bytes, text_count, text_ns};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row as TableRow,
    Table, TableState, Tabs, Wrap,
};

/// What the header says about the program beyond the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// `running`, `exited with status 0`, `disconnected`...
    pub state: String,
    /// The state is final (nothing more will come).
    pub ended: bool,
    /// Allocations and frees per second, recently.
    pub rates: Option<(f64, f64)>,
    /// The program's latest output lines (`memtally run --live`).
    pub output: Vec<String>,
    /// How long the process has run, while it runs and this machine can
    /// say (`/proc`): more than the recording's length when recording
    /// began after the start (`top --pid`).
    pub uptime_ns: Option<u64>,
}

/// Colours, or none at all when `NO_COLOR` is set.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    /// Use colours.
    pub color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to anything non-empty
    /// (<https://no-color.org>).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn selected(self) -> Style {
        if self.color {
            Style::default().bg(Color::Blue).fg(Color::White)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
}

/// Draws a frame.
pub fn draw(f: &mut Frame<'_>, app: &mut App, snap: &Snapshot, status: &Status, theme: Theme) {
    let area = f.area();
    let chart_height = (area.height / 4).clamp(3, 12);
    let [header, chart, tabs, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(chart_height),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, header, snap, status, app, theme);
    draw_chart(f, chart, snap, theme);
    draw_tabs(f, tabs, app, snap, theme);
    match app.tab {
        Tab::Sites => match &snap.detail {
            Some(_) if app.spec.detail.is_some() => draw_detail(f, body, snap, theme),
            _ => draw_sites(f, body, app, snap, status.ended, theme),
        },
        Tab::Threads => draw_threads(f, body, app, snap, theme),
        Tab::Sizes => draw_sizes(f, body, app, snap, theme),
        Tab::Latency => draw_latency(f, body, snap, theme),
        Tab::Alerts => draw_alerts(f, body, app, snap, theme),
        Tab::Scopes => draw_scopes(f, body, app, snap, theme),
        Tab::Devices => draw_devices(f, body, app, snap, theme),
        Tab::Output => draw_output(f, body, status),
    }
    draw_footer(f, footer, app, theme);
    if app.help {
        draw_help(f, area, theme);
    }
}

fn draw_header(
    f: &mut Frame<'_>,
    area: Rect,
    snap: &Snapshot,
    status: &Status,
    app: &App,
    theme: Theme,
) {
    let estimate = if snap.estimate { "~" } else { "" };
    let mut state = status.state.clone();
    if app.paused {
        state.push_str(" (paused)");
    }
    let first = Line::from(vec![
        Span::styled("memtally ", theme.title()),
        Span::raw(format!("pid {}  ", snap.pid)),
        Span::styled(
            snap.command.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
    ]);
    if let Some(c) = &snap.cursor {
        state = match (&c.error, c.reading, c.shown_ns) {
            (Some(e), _, _) => format!("time cursor: {e}"),
            (None, true, Some(shown)) => format!(
                "at {} (reading up to {}...; e: back to now)",
                text_ns(shown),
                text_ns(c.at_ns)
            ),
            (None, true, None) => format!("reading up to {}... (e: back to now)", text_ns(c.at_ns)),
            (None, false, _) => format!("at {} (time cursor; e: back to now)", text_ns(c.at_ns)),
        };
    }
    let uptime = match status.uptime_ns {
        // Said only when it tells more than the recording's length.
        Some(up) if up > snap.duration_ns + 1_000_000_000 => {
            format!(" recorded, process up {}", text_ns(up))
        }
        _ => String::new(),
    };
    let mut second = vec![
        Span::styled(
            format!("{state}  {}{uptime}", text_ns(snap.duration_ns)),
            theme.fg(if status.ended {
                Color::Yellow
            } else {
                Color::Green
            }),
        ),
        Span::raw(format!("  threads {}", snap.threads.len())),
    ];
    if let Some((allocs, frees)) = status.rates {
        second.push(Span::raw(format!(
            "  allocs {}/s  frees {}/s",
            short_count(allocs),
            short_count(frees)
        )));
    }
    let third = Line::from(format!(
        "heap {estimate}{}  peak {estimate}{} at {}  RSS {}",
        text_bytes(snap.totals.live_bytes),
        text_bytes(snap.peak.0),
        text_ns(snap.peak.1),
        snap.rss.map_or("-".into(), text_bytes)
    ));
    f.render_widget(Paragraph::new(vec![first, Line::from(second), third]), area);
}

fn draw_chart(f: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: Theme) {
    let x_max = (snap.duration_ns as f64 / 1e9).max(1e-3);
    let y_max = snap
        .heap_points
        .iter()
        .chain(&snap.rss_points)
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let cursor: Vec<(f64, f64)> = snap.cursor.as_ref().map_or(Vec::new(), |c| {
        let x = c.at_ns as f64 / 1e9;
        vec![(x, 0.0), (x, y_max)]
    });
    let mut datasets = vec![
        Dataset::default()
            .name("heap")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.fg(Color::Cyan))
            .data(&snap.heap_points),
        Dataset::default()
            .name("RSS")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(theme.fg(Color::Red))
            .data(&snap.rss_points),
    ];
    if !cursor.is_empty() {
        datasets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.fg(Color::Yellow))
                .data(&cursor),
        );
    }
    let chart = Chart::new(datasets)
        .x_axis(
            Axis::default()
                .bounds([0.0, x_max])
                .labels(["0 s".to_owned(), text_ns(snap.duration_ns)]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, y_max])
                .labels(["0".to_owned(), text_bytes(y_max as u64)]),
        )
        .legend_position(Some(ratatui::widgets::LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Percentage(50), Constraint::Percentage(60)));
    f.render_widget(chart, area);
}

fn draw_tabs(f: &mut Frame<'_>, area: Rect, app: &App, snap: &Snapshot, theme: Theme) {
    let tabs = app.tabs();
    let titles: Vec<String> = tabs
        .iter()
        .map(|t| match t {
            Tab::Alerts if !snap.alerts.is_empty() || !snap.errors.is_empty() => {
                format!("alerts ({})", snap.alerts.len() + snap.errors.len())
            }
            _ => t.title().to_owned(),
        })
        .collect();
    let tabs_width = titles.iter().map(|t| t.len() + 1).sum::<usize>() as u16;
    let selected = tabs.iter().position(|t| *t == app.tab).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(theme.title().add_modifier(Modifier::REVERSED))
            .divider("|")
            .padding("", ""),
        area,
    );
    if app.tab == Tab::Sites {
        // How the table is asked for, on the right when it fits (the
        // table's headings say it too).
        let arrow = if app.spec.descending { "v" } else { "^" };
        let depth = match app.spec.depth {
            1 => String::new(),
            d => format!(" +{}", d - 1),
        };
        let text = format!(
            "by {}{depth} | {} | sort {} {arrow}",
            app.spec.group.name(),
            thread_name(app, snap),
            app.spec.sort.heading(false)
        );
        let room = area.width.saturating_sub(tabs_width + 1);
        if text.len() as u16 <= room {
            let right = Rect {
                x: area.x + area.width - room,
                width: room,
                ..area
            };
            f.render_widget(Paragraph::new(text).alignment(Alignment::Right), right);
        }
    }
}

/// `all threads`, or the chosen thread's number and name.
fn thread_name(app: &App, snap: &Snapshot) -> String {
    match app.spec.thread {
        None => "all threads".to_owned(),
        Some(t) => snap
            .threads
            .iter()
            .find(|r| r.info.thread == t)
            .map(|r| match r.info.name.as_str() {
                "" => format!("thread {t}"),
                name => format!("thread {t} {name}"),
            })
            .unwrap_or_else(|| format!("thread {t}")),
    }
}

/// The site table's columns that fit in `width`, besides the name.
fn site_columns(width: u16) -> Vec<Column> {
    let mut cols = vec![Column::Live, Column::Allocated, Column::Allocations];
    if width >= 100 {
        cols.push(Column::AtPeak);
    }
    if width >= 112 {
        cols.push(Column::MaxLive);
    }
    cols
}

fn draw_sites(
    f: &mut Frame<'_>,
    area: Rect,
    app: &mut App,
    snap: &Snapshot,
    ended: bool,
    theme: Theme,
) {
    let [filter_line, table_area] = if app.editing_filter || !app.spec.filter.is_empty() {
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area)
    } else {
        [Rect::default(), area]
    };
    if filter_line.height > 0 {
        let cursor = if app.editing_filter { "_" } else { "" };
        f.render_widget(
            Paragraph::new(format!(
                "filter: {}{cursor}   ({} matching; Esc clears)",
                app.spec.filter,
                snap.rows.len()
            ))
            .style(theme.fg(Color::Yellow)),
            filter_line,
        );
    }
    let cols = site_columns(area.width);
    let sort_mark = |c: Column| {
        if c == app.spec.sort {
            if app.spec.descending { " v" } else { " ^" }
        } else {
            ""
        }
    };
    let mut heading: Vec<Cell> = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        heading.push(Cell::from(format!("{}{}", c.heading(ended), sort_mark(*c))));
        if i == 0 {
            heading.push(Cell::from("%heap"));
        }
    }
    let thread = match app.spec.thread {
        Some(_) => format!("  [{}]", thread_name(app, snap)),
        None => String::new(),
    };
    let depth = match app.spec.depth {
        1 => String::new(),
        d => format!(" <- {} callers", d - 1),
    };
    heading.push(Cell::from(format!(
        "{}{depth}{}{thread}",
        app.spec.group.name(),
        sort_mark(Column::Name)
    )));
    app.rows = snap.rows.len();
    app.selected = app.selected.min(app.rows.saturating_sub(1));
    app.selected_key = snap.rows.get(app.selected).map(|r| r.key.clone());
    // Only the rows on screen are built: a table of ten thousand sites
    // formatted in full took most of a frame.
    let (first, shown) = window(app, table_area.height.saturating_sub(2));
    let rows: Vec<TableRow> = snap.rows[first..first + shown]
        .iter()
        .map(|r| site_row(r, &cols, snap.rows_live))
        .collect();
    let mut widths: Vec<Constraint> = Vec::new();
    for i in 0..cols.len() {
        widths.push(Constraint::Length(10));
        if i == 0 {
            widths.push(Constraint::Length(6));
        }
    }
    widths.push(Constraint::Min(10));
    let empty = if snap.rows.is_empty() {
        if app.spec.filter.is_empty() {
            "no allocations yet"
        } else {
            "no site matches the filter"
        }
    } else {
        ""
    };
    let table = Table::new(rows, widths)
        .header(TableRow::new(heading).style(theme.title()))
        .row_highlight_style(theme.selected())
        .block(Block::default().title_bottom(Line::from(empty)));
    let mut state = TableState::default().with_selected(Some(app.selected - first));
    f.render_stateful_widget(table, table_area, &mut state);
}

/// The rows to build for a table `height` rows high (its heading
/// included): the first, and how many. Scrolls as little as keeps the
/// selection on screen.
fn window(app: &mut App, height: u16) -> (usize, usize) {
    let height = usize::from(height).max(1);
    if app.selected < app.offset {
        app.offset = app.selected;
    } else if app.selected >= app.offset + height {
        app.offset = app.selected + 1 - height;
    }
    app.offset = app.offset.min(app.rows.saturating_sub(height));
    (app.offset, height.min(app.rows - app.offset))
}

fn site_row<'a>(r: &'a Row, cols: &[Column], heap: u64) -> TableRow<'a> {
    let mut cells: Vec<Cell> = Vec::new();
    let c = &r.counters;
    for (i, col) in cols.iter().enumerate() {
        let text = match col {
            Column::Live => text_bytes(c.live_bytes),
            Column::Allocated => text_bytes(c.bytes_allocated),
            Column::Allocations => text_count(c.allocations),
            Column::AtPeak => text_bytes(c.at_peak_bytes),
            Column::MaxLive => text_bytes(c.max_live_bytes),
            Column::Name => String::new(),
        };
        cells.push(Cell::from(Line::from(text).alignment(Alignment::Right)));
        if i == 0 {
            let pct = if heap == 0 {
                0.0
            } else {
                100.0 * c.live_bytes as f64 / heap as f64
            };
            cells.push(Cell::from(
                Line::from(format!("{pct:.1}")).alignment(Alignment::Right),
            ));
        }
    }
    let name = if r.sites > 1 {
        format!("{} ({} stacks)", r.key, r.sites)
    } else {
        r.key.clone()
    };
    cells.push(Cell::from(name));
    TableRow::new(cells)
}

fn draw_detail(f: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: Theme) {
    let Some(d) = &snap.detail else { return };
    let c = &d.row.counters;
    let head = vec![
        Line::from(Span::styled(d.row.key.clone(), theme.title())),
        Line::from(format!(
            "live {} in {} blocks  allocated {} in {} calls  frees {}",
            text_bytes(c.live_bytes),
            text_count(c.live_blocks),
            text_bytes(c.bytes_allocated),
            text_count(c.allocations),
            text_count(c.frees)
        )),
        Line::from(format!(
            "at the heap's peak {}  most live at once {}  temporary {} ({} blocks)",
            text_bytes(c.at_peak_bytes),
            text_bytes(c.max_live_bytes),
            text_bytes(c.temporary_bytes),
            text_count(c.temporary)
        )),
    ];
    let [top, rest] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(area);
    f.render_widget(Paragraph::new(head), top);
    let has_details = !d.live.is_empty();
    let [left, right] = if has_details && rest.width >= 70 {
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)])
            .spacing(2)
            .areas(rest)
    } else {
        [rest, Rect::default()]
    };

    let mut lines = vec![Line::from(Span::styled(
        if d.row.sites > 1 {
            format!("{} stacks; the one holding the most:", d.row.sites)
        } else {
            "stack:".to_owned()
        },
        theme.fg(Color::DarkGray),
    ))];
    for (i, frame) in d.frames.iter().enumerate() {
        lines.push(Line::from(format!("#{i:<2} {frame}")));
    }
    if d.trimmed > 0 {
        lines.push(Line::from(format!(
            "({} allocator frames not shown)",
            d.trimmed
        )));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::TOP)),
        left,
    );
    if right.width == 0 {
        return;
    }
    let [spark, sizes, lifetimes] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(3),
        Constraint::Min(3),
    ])
    .areas(right);
    f.render_widget(
        ratatui::widgets::Sparkline::default()
            .block(Block::default().borders(Borders::TOP).title(format!(
                "live over time (max {})",
                text_bytes(d.live.iter().copied().max().unwrap_or(0))
            )))
            .data(&d.live)
            .style(theme.fg(Color::Cyan)),
        spark,
    );
    let bar = |n: u64, most: u64, width: u16| {
        "#".repeat((n * u64::from(width)).div_ceil(most.max(1)) as usize)
    };
    let width = right.width.saturating_sub(24).max(1);
    let most = d.sizes.iter().map(|b| b.blocks).max().unwrap_or(0);
    let size_lines: Vec<Line> = d
        .sizes
        .iter()
        .filter(|b| b.blocks > 0)
        .map(|b| {
            Line::from(format!(
                "{:>10} {:>9} {}",
                format!("<={}", text_bytes(b.max)),
                text_count(b.blocks),
                bar(b.blocks, most, width)
            ))
        })
        .collect();
    f.render_widget(
        Paragraph::new(size_lines).block(
            Block::default()
                .borders(Borders::TOP)
                .title("requested sizes"),
        ),
        sizes,
    );
    let most = d.lifetimes.iter().map(|b| b.2).max().unwrap_or(0);
    let life_lines: Vec<Line> = if d.lifetimes.is_empty() {
        vec![Line::from("no block freed yet")]
    } else {
        d.lifetimes
            .iter()
            .filter(|b| b.2 > 0)
            .map(|b| {
                Line::from(format!(
                    "{:>10} {:>9} {}",
                    format!("<={}", text_ns(b.1)),
                    text_count(b.2),
                    bar(b.2, most, width)
                ))
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(life_lines).block(
            Block::default()
                .borders(Borders::TOP)
                .title("lifetimes of freed blocks"),
        ),
        lifetimes,
    );
}

fn draw_scopes(f: &mut Frame<'_>, area: Rect, app: &mut App, snap: &Snapshot, theme: Theme) {
    if snap.scopes.is_empty() {
        f.render_widget(
            Paragraph::new(
                "no scope entered: wrap requests or tasks in memtally_alloc::scope(name), .in_scope(name) on a future, or memtally_scope_enter/exit from C (docs/scopes.md)",
            )
            .wrap(Wrap { trim: true }),
            area,
        );
        app.rows = 0;
        return;
    }
    let seconds = (snap.duration_ns as f64 / 1e9).max(1e-9);
    let right = |t: String| Cell::from(Line::from(t).alignment(Alignment::Right));
    let rows: Vec<TableRow> = snap
        .scopes
        .iter()
        .map(|s| {
            TableRow::new(vec![
                right(text_bytes(s.counters.live_bytes)),
                right(text_count(s.instances)),
                right(short_count(s.instances as f64 / seconds)),
                right(text_bytes(s.p99)),
                right(format!(
                    "{} ({})",
                    text_count(s.outlived),
                    text_bytes(s.outlived_bytes)
                )),
                Cell::from(s.name.clone()),
            ])
        })
        .collect();
    app.rows = rows.len();
    app.selected = app.selected.min(app.rows.saturating_sub(1));
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(16),
            Constraint::Min(10),
        ],
    )
    .header(
        TableRow::new(vec![
            "live",
            "instances",
            "inst/s",
            "p99/inst",
            "outlived",
            "scope",
        ])
        .style(theme.title()),
    )
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_devices(f: &mut Frame<'_>, area: Rect, app: &mut App, snap: &Snapshot, theme: Theme) {
    if snap.devices.is_empty() {
        f.render_widget(
            Paragraph::new(
                "no device or network memory: the program made no call the gpu-shim intercepts (CUDA driver and runtime, NCCL, RDMA registration)",
            )
            .wrap(Wrap { trim: true }),
            area,
        );
        app.rows = 0;
        return;
    }
    let right = |t: String| Cell::from(Line::from(t).alignment(Alignment::Right));
    let n = (snap.devices.len() as u16 + 1).min(area.height / 2).max(2);
    let [top, rest] = Layout::vertical([Constraint::Length(n), Constraint::Min(1)]).areas(area);
    let devices: Vec<TableRow> = snap
        .devices
        .iter()
        .map(|d| {
            let mut other: Vec<String> = d
                .others
                .iter()
                .map(|(kind, bytes)| format!("{kind} {}", text_bytes(*bytes)))
                .collect();
            if d.pool_reserved > 0 {
                other.insert(0, format!("pools reserve {}", text_bytes(d.pool_reserved)));
            }
            TableRow::new(vec![
                Cell::from(d.name.clone()),
                right(text_bytes(d.live_bytes)),
                right(text_bytes(d.peak_bytes)),
                right(text_count(d.allocations)),
                right(text_count(d.failures)),
                Cell::from(other.join(", ")),
            ])
        })
        .collect();
    let table = Table::new(
        devices,
        [
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(
        TableRow::new(vec!["", "live", "peak", "allocs", "failed", "also"]).style(theme.title()),
    );
    f.render_widget(table, top);
    let rows: Vec<TableRow> = snap
        .device_sites
        .iter()
        .map(|s| {
            TableRow::new(vec![
                Cell::from(s.device.clone()),
                right(text_bytes(s.live_bytes)),
                right(text_bytes(s.bytes_allocated)),
                right(text_count(s.allocations)),
                Cell::from(s.api.clone()),
                Cell::from(s.site.clone()),
            ])
        })
        .collect();
    app.rows = rows.len();
    app.selected = app.selected.min(app.rows.saturating_sub(1));
    let table = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(14),
            Constraint::Min(10),
        ],
    )
    .header(
        TableRow::new(vec!["", "live", "allocated", "allocs", "api", "site"]).style(theme.title()),
    )
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, rest, &mut state);
}

fn draw_alerts(f: &mut Frame<'_>, area: Rect, app: &mut App, snap: &Snapshot, theme: Theme) {
    let area = if snap.errors.is_empty() {
        area
    } else {
        // Memory errors first: an invalid pointer stops the program (or,
        // with on_error=report, it runs on past each); races and faults on
        // guarded blocks are listed as they come.
        let n = (snap.errors.len() as u16 + 1).min(area.height / 2);
        let [top, rest] = Layout::vertical([Constraint::Length(n), Constraint::Min(1)]).areas(area);
        let mut lines = vec![Line::from(Span::styled(
            format!("MEMORY ERRORS: {}", snap.errors.len()),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        ))];
        lines.extend(snap.errors.iter().map(|e| Line::from(e.clone())));
        f.render_widget(Paragraph::new(lines), top);
        rest
    };
    if snap.alerts.is_empty() {
        f.render_widget(
            Paragraph::new(
                "no site is growing without bound (a Mann-Kendall trend test over each site's live bytes, from its first allocation to now, re-run every 2 s)",
            )
            .wrap(Wrap { trim: true }),
            area,
        );
        app.rows = 0;
        return;
    }
    let rows: Vec<TableRow> = snap
        .alerts
        .iter()
        .map(|a| {
            TableRow::new(vec![
                Cell::from(
                    Line::from(format!(
                        "{}/s",
                        text_bytes(a.bytes_per_second.round() as u64)
                    ))
                    .alignment(Alignment::Right),
                ),
                Cell::from(Line::from(text_bytes(a.live_bytes)).alignment(Alignment::Right)),
                Cell::from(Line::from(format!("{:.1}", a.z)).alignment(Alignment::Right)),
                Cell::from(a.key.clone()),
            ])
        })
        .collect();
    app.rows = rows.len();
    app.selected = app.selected.min(app.rows.saturating_sub(1));
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Min(10),
        ],
    )
    .header(TableRow::new(vec!["growing", "live", "trend", "site"]).style(theme.title()))
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_threads(f: &mut Frame<'_>, area: Rect, app: &mut App, snap: &Snapshot, theme: Theme) {
    let rows: Vec<TableRow> = snap
        .threads
        .iter()
        .map(|t| {
            let c = &t.counters;
            let state = if t.info.end_ticks.is_some() {
                "ended"
            } else {
                "running"
            };
            TableRow::new(vec![
                Cell::from(t.info.thread.to_string()),
                Cell::from(t.info.os_tid.to_string()),
                Cell::from(t.info.name.clone()),
                Cell::from(Line::from(text_bytes(c.live_bytes)).alignment(Alignment::Right)),
                Cell::from(Line::from(text_bytes(c.bytes_allocated)).alignment(Alignment::Right)),
                Cell::from(Line::from(text_count(c.allocations)).alignment(Alignment::Right)),
                Cell::from(Line::from(text_count(c.frees)).alignment(Alignment::Right)),
                Cell::from(Line::from(text_count(c.remote_frees)).alignment(Alignment::Right)),
                Cell::from(
                    Line::from(text_count(t.info.foreign_frees)).alignment(Alignment::Right),
                ),
                Cell::from(state),
            ])
        })
        .collect();
    app.rows = rows.len();
    app.selected = app.selected.min(app.rows.saturating_sub(1));
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(6),
            Constraint::Min(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(7),
        ],
    )
    .header(
        TableRow::new(vec![
            "#",
            "tid",
            "name",
            "live",
            "allocated",
            "allocs",
            "frees",
            "handed",
            "taken",
            "state",
        ])
        .style(theme.title()),
    )
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_sizes(f: &mut Frame<'_>, area: Rect, app: &mut App, snap: &Snapshot, theme: Theme) {
    let most = snap
        .sizes
        .iter()
        .map(|b| b.blocks)
        .max()
        .unwrap_or(0)
        .max(1);
    let bar_width = area.width.saturating_sub(56).max(4) as u64;
    let rows: Vec<TableRow> = snap
        .sizes
        .iter()
        .map(|b| {
            let range = if b.min == b.max {
                text_bytes(b.min)
            } else {
                format!("{}-{}", text_bytes(b.min), text_bytes(b.max))
            };
            let bar = "#".repeat((b.blocks * bar_width).div_ceil(most) as usize);
            let waste = if b.served == 0 {
                0.0
            } else {
                100.0 * b.served.saturating_sub(b.bytes) as f64 / b.served as f64
            };
            TableRow::new(vec![
                Cell::from(range),
                Cell::from(Line::from(text_count(b.blocks)).alignment(Alignment::Right)),
                Cell::from(Line::from(text_bytes(b.bytes)).alignment(Alignment::Right)),
                Cell::from(Line::from(format!("{waste:.1}%")).alignment(Alignment::Right)),
                Cell::from(bar),
            ])
        })
        .collect();
    app.rows = rows.len();
    app.selected = app.selected.min(app.rows.saturating_sub(1));
    let table = Table::new(
        rows,
        [
            Constraint::Length(20),
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Min(4),
        ],
    )
    .header(
        TableRow::new(vec!["requested size", "blocks", "bytes", "waste", ""]).style(theme.title()),
    )
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_latency(f: &mut Frame<'_>, area: Rect, snap: &Snapshot, theme: Theme) {
    let row = |name: &'static str, p: &Percentiles| {
        let cell = |v: u64| Cell::from(Line::from(text_ns(v)).alignment(Alignment::Right));
        TableRow::new(vec![
            Cell::from(name),
            Cell::from(Line::from(text_count(p.count)).alignment(Alignment::Right)),
            cell(p.p50),
            cell(p.p99),
            cell(p.p999),
            cell(p.max),
        ])
    };
    let table = Table::new(
        vec![
            row("allocation call", &snap.alloc_latency),
            row("free call", &snap.free_latency),
            row("block lifetime", &snap.lifetimes),
        ],
        [
            Constraint::Length(16),
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(11),
        ],
    )
    .header(TableRow::new(vec!["", "measured", "p50", "p99", "p99.9", "max"]).style(theme.title()));
    f.render_widget(table, area);
}

fn draw_output(f: &mut Frame<'_>, area: Rect, status: &Status) {
    let skip = status.output.len().saturating_sub(area.height as usize);
    let lines: Vec<Line> = status.output[skip..]
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

fn draw_footer(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let text = if app.editing_filter {
        "type to filter  Enter: keep  Esc: clear"
    } else if app.spec.detail.is_some() && app.tab == Tab::Sites {
        "Esc back  q quit  ? help"
    } else if app.tab == Tab::Sites {
        "q quit ? help s sort r reverse g group t thread / filter Enter stack Tab tabs"
    } else {
        "q quit  ? help  Tab next tab  p pause"
    };
    f.render_widget(Paragraph::new(text).style(theme.fg(Color::DarkGray)), area);
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit (memtally run --live stops the program)"),
    ("?", "this help"),
    ("p, Space", "pause or resume drawing"),
    (
        "Tab, 1-8",
        "switch tabs (1 sites ... 5 alerts, 6 scopes, 7 devices, 8 output)",
    ),
    ("Up, Down, PgUp, PgDn", "move the selection"),
    ("s / r", "sort by the next column / reverse the order"),
    ("g", "group sites by line, function, file, library"),
    (
        "+ / -",
        "group by more / fewer callers of each site's frame",
    ),
    ("t", "all threads, or one thread at a time"),
    ("/", "filter sites by name (Enter keeps, Esc clears)"),
    ("Enter", "the selected site's stack and counters"),
    (
        ", / .",
        "time cursor back / forward (1/50 of the recording)",
    ),
    ("< / >", "time cursor back / forward (1/10)"),
    ("P / e", "time cursor to the heap's peak / back to now"),
    ("Esc", "back from a stack; clear the filter"),
];

fn draw_help(f: &mut Frame<'_>, area: Rect, theme: Theme) {
    let width = area.width.min(72);
    let height = (HELP.len() as u16 + 4).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<22}"), theme.title()),
                Span::raw(*v),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("any key closes this help"));
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
        rect,
    );
}

/// `950`, `12.3k`, `4.5M`.
fn short_count(v: f64) -> String {
    if v < 1_000.0 {
        format!("{v:.0}")
    } else if v < 1_000_000.0 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{:.1}M", v / 1e6)
    }
}
