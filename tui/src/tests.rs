//! The dashboard drawn into ratatui's `TestBackend` from a synthetic trace
//! followed by the real [`Live`] model: what the screen says, and what
//! sorting, filtering, grouping, threads and drill-down change on it.

use super::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use memtally_profiler::ModelOptions;
use memtally_profiler::WriterWatch;
use memtally_profiler::synth::{TraceBuilder, alloc, free};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Three sites: 0x401000 allocates much and keeps little, 0x402000 keeps
/// the most (called from 0x403000), both on thread 0; 0x404000 on thread
/// 1 ("worker") keeps 64 bytes.
fn trace(dir: &std::path::Path) -> Target {
    let mut t = TraceBuilder::new();
    t.full_header()
        .clock(0, 0)
        .clock(1_000_000_000, 1_000_000_000);
    t.frame(1, 0, 0x401000)
        .frame(2, 0, 0x403000)
        .frame(3, 2, 0x402000)
        .frame(4, 0, 0x404000);
    t.thread(0, 100, "main", 0).thread(1, 101, "worker", 0);
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(alloc(10 + i * 2, 0x1000 + i * 0x100, 1000, 1));
        if i > 0 {
            events.push(free(11 + i * 2, 0x1000 + i * 0x100));
        }
    }
    events.push(alloc(100, 0x9000, 5000, 3));
    t.events(0, &events);
    t.events(1, &[alloc(50, 0xa000, 64, 4)]);
    t.memory(500_000_000, 8 << 20, 16 << 20);
    t.footer(1_000_000_000);
    let path = dir.join("t.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let options = ModelOptions {
        thread_sites: true,
        site_details: true,
        ..ModelOptions::default()
    };
    let live = Live::follow(&path, options, WriterWatch::HeaderPid);
    let start = std::time::Instant::now();
    while !live.status().state.is_final() {
        assert!(start.elapsed().as_secs() < 10, "{:?}", live.status());
        std::thread::sleep(Duration::from_millis(5));
    }
    Target {
        live: LiveSlot::new(live),
        process: None,
    }
}

fn screen(target: &Target, app: &mut App, width: u16, height: u16) -> String {
    screen_of(&mut View::default(), target, app, width, height)
}

fn screen_of(view: &mut View, target: &Target, app: &mut App, width: u16, height: u16) -> String {
    let (snap, status) = view.take(target, app);
    app.thread_numbers = snap.threads.iter().map(|t| t.info.thread).collect();
    let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
    term.draw(|f| ui::draw(f, app, &snap, &status, Theme { color: false }))
        .unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        for x in 0..width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn press(app: &mut App, code: KeyCode) {
    app.key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// The line holding `needle`, and its number.
fn line_of<'a>(screen: &'a str, needle: &str) -> (usize, &'a str) {
    screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on the screen:\n{screen}"))
}

#[test]
fn the_header_and_the_site_table_fit_80x24() {
    let dir = tempfile::tempdir().unwrap();
    let target = trace(dir.path());
    let mut app = App::default();
    let s = screen(&target, &mut app, 80, 24);
    assert!(s.contains("pid 4242  prog --flag"), "{s}");
    assert!(s.contains("exited"), "{s}");
    // 1000 + 5000 + 64 bytes live at the end; the peak was 6064 too.
    assert!(s.contains("heap 5.9 KiB  peak 5.9 KiB"), "{s}");
    assert!(s.contains("RSS 8.0 MiB"), "{s}");
    assert!(s.contains("threads 2"), "{s}");
    // Ended: the live column reads "at exit"; sorted by it, largest first.
    let (h, header) = line_of(&s, "at exit v");
    assert!(
        header.contains("%heap") && header.contains("allocated"),
        "{s}"
    );
    let (a, row) = line_of(&s, "0x402000");
    assert!(row.contains("4.9 KiB") && row.contains("82.5"), "{row}");
    let (b, row) = line_of(&s, "0x401000");
    assert!(
        row.contains("1000 B") && row.contains("9.8 KiB") && row.contains("10"),
        "{row}"
    );
    let (c, _) = line_of(&s, "0x404000");
    assert!(h < a && a < b && b < c, "{s}");
    assert!(s.lines().last().unwrap().contains("q quit"), "{s}");
    assert_eq!(s.lines().count(), 24);
}

#[test]
fn sorting_filtering_and_threads_change_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let target = trace(dir.path());
    let mut app = App::default();
    // By bytes allocated: 0x401000 (9.8 KiB) comes before 0x402000.
    press(&mut app, KeyCode::Char('s'));
    let s = screen(&target, &mut app, 100, 30);
    assert!(line_of(&s, "0x401000").0 < line_of(&s, "0x402000").0, "{s}");
    assert!(s.contains("sort allocated v"), "{s}");
    // Reversed: smallest first.
    press(&mut app, KeyCode::Char('r'));
    let s = screen(&target, &mut app, 100, 30);
    assert!(line_of(&s, "0x404000").0 < line_of(&s, "0x401000").0, "{s}");

    // A filter keeps matching rows only.
    press(&mut app, KeyCode::Char('/'));
    for c in "4040".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    let s = screen(&target, &mut app, 100, 30);
    assert!(s.contains("filter: 4040"), "{s}");
    assert!(s.contains("0x404000") && !s.contains("0x401000"), "{s}");
    press(&mut app, KeyCode::Esc);

    // One thread at a time: thread 1 ("worker") has 0x404000 only.
    press(&mut app, KeyCode::Char('t'));
    press(&mut app, KeyCode::Char('t'));
    let s = screen(&target, &mut app, 100, 30);
    assert!(s.contains("thread 1 worker"), "{s}");
    assert!(s.contains("0x404000") && !s.contains("0x402000"), "{s}");
}

#[test]
fn enter_shows_the_stack_of_the_selected_site() {
    let dir = tempfile::tempdir().unwrap();
    let target = trace(dir.path());
    let mut app = App::default();
    screen(&target, &mut app, 80, 24);
    assert_eq!(app.selected_key.as_deref(), Some("0x402000"));
    press(&mut app, KeyCode::Enter);
    let s = screen(&target, &mut app, 80, 24);
    let (inner, _) = line_of(&s, "#0  0x402000");
    let (outer, _) = line_of(&s, "#1  0x403000");
    assert!(inner < outer);
    assert!(s.contains("live 4.9 KiB in 1 blocks"), "{s}");
    // Wide enough, the site's details are beside the stack: its sizes
    // (one 5000-byte block), nothing freed yet, its live bytes over time.
    let s = screen(&target, &mut app, 110, 30);
    assert!(s.contains("live over time (max 4.9 KiB)"), "{s}");
    assert!(line_of(&s, "<=8.0 KiB").1.contains(" 1 #"), "{s}");
    assert!(s.contains("no block freed yet"), "{s}");
    press(&mut app, KeyCode::Esc);
    let s = screen(&target, &mut app, 80, 24);
    assert!(!s.contains("#0 "), "{s}");
}

#[test]
fn a_site_that_keeps_growing_is_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let path = growing_trace(dir.path());
    let options = model_options();
    let (model, _) = Live::follow(&path, options, WriterWatch::HeaderPid).wait();
    let mut symbolizer = memtally_profiler::Symbolizer::default();
    let mut frames = SiteFrames::default();
    let alerts = snapshot::alerts(&model, &mut symbolizer, &mut frames);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].key, "0x405000");
    assert!((alerts[0].bytes_per_second - 10_000.0).abs() < 200.0);

    let target = Target {
        live: LiveSlot::new(Live::follow(&path, options, WriterWatch::HeaderPid)),
        process: None,
    };
    while !target.live.get().status().state.is_final() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut app = App::default();
    press(&mut app, KeyCode::Char('5'));
    // The growth test runs over several frames.
    let mut view = View::default();
    let mut s = String::new();
    for _ in 0..10 {
        s = screen_of(&mut view, &target, &mut app, 80, 24);
    }
    assert!(s.contains("alerts (1)"), "{s}");
    let (_, row) = line_of(&s, "0x405000");
    assert!(
        row.contains("9.8 KiB/s") && row.contains("39.1 KiB"),
        "{row}"
    );
}

#[test]
fn the_other_tabs_and_help_draw() {
    let dir = tempfile::tempdir().unwrap();
    let target = trace(dir.path());
    let mut app = App::default();
    press(&mut app, KeyCode::Tab);
    let s = screen(&target, &mut app, 80, 24);
    let (_, worker) = line_of(&s, "worker");
    assert!(worker.contains("101") && worker.contains("64 B"), "{s}");
    press(&mut app, KeyCode::Tab);
    let s = screen(&target, &mut app, 80, 24);
    // 64 B, 1000 B and 5000 B requests: buckets [64,127], [512,1023],
    // [4096,8191].
    let (_, row) = line_of(&s, "512 B-1023 B");
    assert!(row.contains("10") && row.contains('%'), "{s}");
    assert!(s.contains("waste"), "{s}");
    press(&mut app, KeyCode::Tab);
    let s = screen(&target, &mut app, 80, 24);
    assert!(line_of(&s, "allocation call").1.contains("12"), "{s}");
    press(&mut app, KeyCode::Char('?'));
    let s = screen(&target, &mut app, 80, 24);
    assert!(s.contains("any key closes this help"), "{s}");
    // Tiny terminals still draw.
    screen(&target, &mut app, 20, 5);
}

#[test]
fn the_table_scrolls_to_keep_the_selection_on_screen() {
    let dir = tempfile::tempdir().unwrap();
    let target = trace(dir.path());
    let mut app = App::default();
    // 80x12 leaves room for two rows.
    let s = screen(&target, &mut app, 80, 12);
    assert!(s.contains("0x402000") && s.contains("0x401000"), "{s}");
    assert!(!s.contains("0x404000"), "{s}");
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    let s = screen(&target, &mut app, 80, 12);
    assert!(s.contains("0x404000") && s.contains("0x401000"), "{s}");
    assert!(!s.contains("0x402000"), "{s}");
    assert_eq!(app.selected_key.as_deref(), Some("0x404000"));
    press(&mut app, KeyCode::Home);
    let s = screen(&target, &mut app, 80, 12);
    assert!(s.contains("0x402000") && !s.contains("0x404000"), "{s}");
}

/// Four seconds: 0x405000 keeps 100 bytes every 10 ms, 0x406000 churns.
fn growing_trace(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("g.mtt");
    std::fs::write(&path, memtally_profiler::synth::steady_leak(400).bytes()).unwrap();
    path
}

#[test]
fn the_time_cursor_shows_the_heap_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = growing_trace(dir.path());
    let target = Target {
        live: LiveSlot::new(Live::follow(&path, model_options(), WriterWatch::HeaderPid)),
        process: None,
    };
    while !target.live.get().status().state.is_final() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut view = View::default();
    let mut app = App::default();
    let s = screen_of(&mut view, &target, &mut app, 80, 24);
    assert!(line_of(&s, "0x405000").1.contains("39.1 KiB"), "{s}");
    app.duration_ns = 4_000_000_000;
    // Back 7 tenths: 1.2 s, when 120 blocks of 100 bytes were live.
    for _ in 0..7 {
        press(&mut app, KeyCode::Char('<'));
    }
    assert_eq!(app.cursor_ns, Some(1_200_000_000));
    let start = std::time::Instant::now();
    let s = loop {
        let s = screen_of(&mut view, &target, &mut app, 80, 24);
        if s.contains("(time cursor; e: back to now)") {
            break s;
        }
        assert!(start.elapsed().as_secs() < 10, "{s}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(s.contains("at 1.200 s"), "{s}");
    assert!(line_of(&s, "0x405000").1.contains("11.7 KiB"), "{s}");
    assert!(s.contains("heap 11.7 KiB"), "{s}");
    // The chart still covers the whole recording, and the peak is the
    // whole recording's.
    assert!(s.contains("4.000 s"), "{s}");
    press(&mut app, KeyCode::Char('e'));
    let s = screen_of(&mut view, &target, &mut app, 80, 24);
    assert!(line_of(&s, "0x405000").1.contains("39.1 KiB"), "{s}");
}

#[test]
fn the_scopes_tab_shows_memory_by_scope() {
    use memtally_profiler::synth::{scope, scope_end};
    let dir = tempfile::tempdir().unwrap();
    let mut t = TraceBuilder::new();
    t.full_header()
        .clock(0, 0)
        .clock(2_000_000_000, 2_000_000_000);
    t.string(1, "GET /items").string(2, "POST /users");
    t.frame(1, 0, 0x401000);
    let mut events = Vec::new();
    for i in 0..40u64 {
        let at = i * 50_000_000;
        let (name, instance) = if i % 4 == 0 {
            (2, 100 + i)
        } else {
            (1, 100 + i)
        };
        events.push(scope(at, name, instance));
        events.push(alloc(at + 32, 0x10_0000 + i * 0x1000, 256, 1));
        if i % 8 != 1 {
            events.push(free(at + 64, 0x10_0000 + i * 0x1000));
        }
        events.push(scope(at + 96, 0, 0));
        events.push(scope_end(at + 96, instance));
    }
    t.events(0, &events).footer(2_000_000_000);
    let path = dir.path().join("s.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let target = Target {
        live: LiveSlot::new(Live::follow(&path, model_options(), WriterWatch::HeaderPid)),
        process: None,
    };
    while !target.live.get().status().state.is_final() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut app = App::default();
    press(&mut app, KeyCode::Char('6'));
    let s = screen(&target, &mut app, 80, 24);
    // 30 GET instances, 5 of which (i = 1, 9, 17, 25, 33) kept 256 bytes;
    // 10 POST instances, all freed. 40 instances over 2 s.
    let (_, get) = line_of(&s, "GET /items");
    assert!(get.contains("1.2 KiB") && get.contains(" 30 "), "{get}");
    assert!(get.contains("5 (1.2 KiB)"), "{get}");
    assert!(get.contains("15"), "30 instances in 2 s: {get}");
    let (_, post) = line_of(&s, "POST /users");
    assert!(
        post.contains("0 B") && post.contains(" 10 ") && post.contains("0 (0 B)"),
        "{post}"
    );
    assert!(line_of(&s, "GET /items").0 < line_of(&s, "POST /users").0);
}

#[test]
fn the_devices_tab_shows_device_memory_by_device_and_host_stack() {
    use memtally_profiler::synth::device;
    use memtally_profiler::trace_device::{HOST, memory, op};
    let dir = tempfile::tempdir().unwrap();
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.string(1, "cudaMalloc").string(2, "ibv_reg_mr");
    t.frame(1, 0, 0x401000)
        .frame(2, 0, 0x402000)
        .frame(3, 0, 0x403000);
    let mb = 1 << 20;
    let events = [
        // 3 MiB kept on device 0 by one site, 1 MiB allocated and freed
        // on device 1 by another; a failure; a registration on the host.
        device(10, op::ALLOC, memory::DEVICE, 0, 1, 0x7000_0000, 3 * mb, 1),
        device(20, op::ALLOC, memory::DEVICE, 1, 1, 0x7100_0000, mb, 2),
        device(30, op::FREE, memory::DEVICE, 0, 1, 0x7100_0000, 0, 0),
        device(40, op::FAILED, memory::DEVICE, 0, 1, 0, 64 * mb, 1),
        device(
            50,
            op::ALLOC,
            memory::REGISTERED,
            HOST,
            2,
            0x5000,
            64 << 10,
            3,
        ),
        device(60, op::GAUGE, memory::POOL, 0, 1, 0x99, 2 * mb, 0),
    ];
    t.events(0, &events).footer(1_000_000);
    let path = dir.path().join("d.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let target = Target {
        live: LiveSlot::new(Live::follow(&path, model_options(), WriterWatch::HeaderPid)),
        process: None,
    };
    while !target.live.get().status().state.is_final() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut app = App::default();
    press(&mut app, KeyCode::Char('7'));
    let s = screen(&target, &mut app, 100, 24);
    let (_, d0) = line_of(&s, "device 0 ");
    assert!(
        d0.contains("3.0 MiB") && d0.contains("pools reserve 2.0 MiB"),
        "{s}"
    );
    assert!(d0.split_whitespace().any(|w| w == "1"), "one failure: {d0}");
    let (_, d1) = line_of(&s, "device 1 ");
    assert!(d1.contains("0 B") && d1.contains("1.0 MiB"), "{d1}");
    let (_, host) = line_of(&s, "host ");
    assert!(host.contains("64.0 KiB"), "registered: {host}");
    // The sites: the kept one first, with its API.
    let (kept, row) = line_of(&s, "0x401000");
    assert!(
        row.contains("cudaMalloc") && row.contains("3.0 MiB"),
        "{row}"
    );
    assert!(kept < line_of(&s, "0x402000").0, "{s}");
    assert!(line_of(&s, "0x403000").1.contains("ibv_reg_mr"), "{s}");
}

/// The alerts tab, `width` columns wide, of the finished trace `t`.
fn alerts_tab(t: &TraceBuilder, width: u16) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.mtt");
    std::fs::write(&path, t.bytes()).unwrap();
    let live = Live::follow(&path, model_options(), WriterWatch::Told);
    live.writer_gone();
    let target = Target {
        live: LiveSlot::new(live),
        process: None,
    };
    while !target.live.get().status().state.is_final() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut app = App::default();
    press(&mut app, KeyCode::Char('5'));
    screen(&target, &mut app, width, 30)
}

#[test]
fn memory_errors_are_alerts() {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.string(1, "free")
        .frame(1, 0, 0x401000)
        .frame(2, 0, 0x402000);
    t.events(
        0,
        &[
            alloc(32, 0x1000, 64, 1),
            free(64, 0x1000),
            memtally_profiler::synth::memory_error(96, 0x1000, 1, 2),
        ],
    );
    let s = alerts_tab(&t, 100);
    assert!(s.contains("alerts (1)"), "{s}");
    assert!(s.contains("MEMORY ERRORS: 1"), "{s}");
    assert!(
        s.contains(
            "free() in 0x402000: invalid pointer 0x1000: double free or never allocated (thread"
        ),
        "{s}"
    );
}

#[test]
fn a_data_race_is_one_alert_naming_both_sides() {
    use memtally_profiler::synth::race_side;
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1_000_000, 1_000_000);
    t.string(1, "write")
        .string(2, "access")
        .frame(1, 0, 0x401000)
        .frame(2, 0, 0x402000);
    // The second access records its side first, during the first's stall.
    t.events(
        1,
        &[
            alloc(10, 0x2000, 64, 1),
            race_side(10_000, false, 0x2008, 1, 1),
        ],
    );
    t.events(0, &[race_side(20_000, true, 0x2008, 2, 2)]);
    let s = alerts_tab(&t, 140);
    assert!(s.contains("alerts (1)"), "{s}");
    assert!(s.contains("MEMORY ERRORS: 1"), "{s}");
    assert!(
        s.contains("data race on 0x2008: an access in 0x402000 (thread 0, at"),
        "{s}"
    );
    assert!(
        s.contains("overlapping a write in 0x401000 (thread 1)"),
        "{s}"
    );
    assert!(!s.contains("invalid pointer"), "{s}");
}

#[test]
fn grouping_by_library_and_by_callers_changes_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let target = trace(dir.path());
    let mut app = App::default();
    // Two callers deep: the site at 0x402000 is named with its caller.
    press(&mut app, KeyCode::Char('+'));
    let s = screen(&target, &mut app, 100, 24);
    assert!(s.contains("line <- 1 callers"), "{s}");
    assert!(s.contains("by line +1"), "{s}");
    let (_, row) = line_of(&s, "0x402000 <- 0x403000");
    assert!(row.contains("4.9 KiB"), "{row}");
    // The sites with no caller keep their one frame.
    line_of(&s, "0x401000");
    press(&mut app, KeyCode::Char('-'));
    press(&mut app, KeyCode::Char('-'));
    let s = screen(&target, &mut app, 100, 24);
    assert!(!s.contains("<- 0x403000") && !s.contains("callers"), "{s}");
    // By library: the synthetic trace has no modules, so every site is in
    // one row holding the whole heap.
    for _ in 0..3 {
        press(&mut app, KeyCode::Char('g'));
    }
    let s = screen(&target, &mut app, 100, 24);
    assert!(s.contains("by library"), "{s}");
    let (_, row) = line_of(&s, "<unknown module>");
    assert!(row.contains("5.9 KiB") && row.contains("100.0"), "{row}");
    assert!(!s.contains("0x401000"), "{s}");
}

#[test]
fn a_running_process_uptime_is_read_from_proc() {
    // Process 1 has run about as long as the machine (its start is the
    // clock tick the kernel started it in).
    let machine: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let init = process_uptime_ns(1).expect("/proc/1/stat");
    assert!(
        init > 0 && init as f64 <= machine * 1e9 + 1e8,
        "{init} {machine}"
    );
    // This test process started a moment ago (/proc counts in 10 ms
    // ticks, so it may read 0).
    let me = process_uptime_ns(std::process::id() as u64).expect("/proc/self");
    assert!(me < 3_600_000_000_000, "{me}");
    assert!(me <= init, "{me} {init}");
    assert_eq!(process_uptime_ns(u64::from(u32::MAX)), None);
}
