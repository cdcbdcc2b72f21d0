//! The dashboard in a real terminal: tmux runs `memtally run --live` on a
//! C program, the test types keys with `send-keys` and reads the screen
//! with `capture-pane` (.ci/run installs tmux). Also `memtally top` on a
//! finished trace, and the errors of both.

use super::{build_c, built_library, fails_with, memtally, sample_trace, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of one test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached session of
    /// `width` x `height`.
    fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!("memtally-test-{}-{name}", std::process::id()),
        };
        let ok = t
            .tmux()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("tmux is not installed; .ci/run installs it (apt-get install tmux)");
        assert!(ok.success());
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let ok = self
            .tmux()
            .args(["send-keys", "-t", "t", keys])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits up to 60 s for the screen to satisfy `f`; returns it.
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// Builds tests/c/live_target.c into `dir`.
fn live_target(dir: &Path) -> PathBuf {
    build_c(dir, "live_target", &[])
}

/// The shell command line that runs the dashboard on `live_target
/// SECONDS` in `dir`, then records the exit status and the terminal's
/// modes in files.
fn live_command(dir: &Path, lib: &Path, seconds: &str) -> String {
    format!(
        "cd '{dir}' && MEMTALLY_LIB='{lib}' '{memtally}' run --live -o t.mtt -- ./live_target {seconds}; \
         echo $? > status.txt; stty -a > stty.txt; echo DONE; sleep 60",
        dir = dir.display(),
        lib = lib.display(),
        memtally = env!("CARGO_BIN_EXE_memtally"),
    )
}

/// The line of `screen` holding `needle` and its number.
fn line_of<'a>(screen: &'a str, needle: &str) -> Option<(usize, &'a str)> {
    screen.lines().enumerate().find(|(_, l)| l.contains(needle))
}

/// The first number of a table line with a unit (`12.0 KiB`), in bytes.
fn first_bytes(line: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let value: f64 = words[0].parse().unwrap();
    let unit = match words[1] {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        other => panic!("unit {other} in {line}"),
    };
    (value * unit) as u64
}

#[test]
fn run_live_shows_the_program_sorts_shows_its_exit_and_restores_the_terminal() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("live-run");
    live_target(&dir);
    let tmux = Tmux::start("run", &live_command(&dir, &lib, "3"), 100, 30);

    // While it runs: grow_cache holds 4 KiB per tick, churn holds nothing.
    let s = tmux.wait_for("grow_cache holding 40 KiB or more", |s| {
        s.contains("running")
            && line_of(s, "grow_cache").is_some_and(|(_, l)| first_bytes(l) >= 40 << 10)
    });
    let (grow, row) = line_of(&s, "grow_cache").unwrap();
    assert!(first_bytes(row) <= 3 * 100 * 4096, "{s}");
    let (churn, _) = line_of(&s, "churn").expect("churn listed");
    assert!(grow < churn, "sorted by live bytes:\n{s}");
    // By bytes allocated churn comes first (16 x 4 KiB a tick).
    tmux.keys("s");
    let s = tmux.wait_for("the allocated sort", |s| s.contains("sort allocated v"));
    let (grow, _) = line_of(&s, "grow_cache").unwrap();
    let (churn, _) = line_of(&s, "churn").unwrap();
    assert!(churn < grow, "sorted by bytes allocated:\n{s}");
    // Its output is in the output tab.
    tmux.keys("8");
    tmux.wait_for("the program's output", |s| s.contains("tick 10"));
    tmux.keys("1");

    // It exits; the dashboard stays on the final state.
    let s = tmux.wait_for("the exit", |s| s.contains("exited with status 0"));
    assert!(line_of(&s, "grow_cache").is_some(), "{s}");
    std::thread::sleep(Duration::from_millis(600));
    assert!(tmux.screen().contains("exited with status 0"));

    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
    let status = std::fs::read_to_string(dir.join("status.txt")).unwrap();
    assert_eq!(status.trim(), "0");
    let stty = std::fs::read_to_string(dir.join("stty.txt")).unwrap();
    assert!(
        stty.split_whitespace().any(|w| w == "icanon")
            && stty.split_whitespace().any(|w| w == "echo"),
        "the terminal was left in raw mode: {stty}"
    );
    let s = tmux.screen();
    assert!(
        s.contains("memtally: the command exited with status 0"),
        "{s}"
    );
    assert!(s.contains("trace written to t.mtt"), "{s}");
    let out = std::fs::read_to_string(dir.join("t.out")).unwrap();
    assert!(out.starts_with("tick 0\n"), "{out}");
}

#[test]
fn quitting_run_live_stops_the_program_and_keeps_its_trace() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("live-quit");
    live_target(&dir);
    let tmux = Tmux::start("quit", &live_command(&dir, &lib, "60"), 80, 24);
    tmux.wait_for("grow_cache", |s| {
        s.contains("grow_cache") && s.contains("running")
    });
    tmux.keys("q");
    let s = tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
    assert!(s.contains("the command was killed by signal 2"), "{s}");
    let status = std::fs::read_to_string(dir.join("status.txt")).unwrap();
    assert_eq!(status.trim(), "130");
    // The trace is kept and reads.
    let out = memtally(&["report", dir.join("t.mtt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("grow_cache"));
}

#[test]
fn top_shows_a_finished_trace_and_says_what_is_wrong() {
    let dir = scratch("top");
    let trace = sample_trace(&dir);
    fails_with(&memtally(&["top"]), "no trace given");
    fails_with(&memtally(&["top", "/no/such.mtt"]), "/no/such.mtt");
    let not_a_trace = dir.join("notes.txt");
    std::fs::write(&not_a_trace, "hello, this is not a trace").unwrap();
    fails_with(
        &memtally(&["view", not_a_trace.to_str().unwrap()]),
        "not a memtally trace",
    );
    // Without a terminal it says so rather than drawing into a pipe.
    fails_with(
        &memtally(&["top", trace.to_str().unwrap()]),
        "the dashboard needs a terminal",
    );
    let command = format!(
        "'{}' top '{}'; echo DONE; sleep 60",
        env!("CARGO_BIN_EXE_memtally"),
        trace.display()
    );
    let tmux = Tmux::start("top", &command, 80, 24);
    let s = tmux.wait_for("the finished trace", |s| s.contains("exited"));
    assert!(s.contains("pid 4242"), "{s}");
    assert!(s.contains("0x1000"), "{s}");
    tmux.keys("?");
    tmux.wait_for("the help", |s| s.contains("any key closes this help"));
    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
}

/// CPU ticks (user + system) `pid` has used.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_resized_dashboard_redraws_takes_the_next_key_at_once_and_stays_idle() {
    let dir = scratch("top-resize");
    let trace = sample_trace(&dir);
    let command = format!(
        "NO_COLOR=1 '{}' top '{}'; echo DONE; sleep 60",
        env!("CARGO_BIN_EXE_memtally"),
        trace.display()
    );
    let tmux = Tmux::start("resize", &command, 80, 24);
    tmux.wait_for("the finished trace", |s| s.contains("exited"));
    let pane = tmux
        .tmux()
        .args(["list-panes", "-t", "t", "-F", "#{pane_pid}"])
        .output()
        .unwrap();
    let shell = String::from_utf8_lossy(&pane.stdout).trim().to_string();
    let children = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    let pid = String::from_utf8_lossy(&children.stdout)
        .lines()
        .next()
        .expect("memtally runs under the pane's shell")
        .to_string();
    for (width, height) in [(120, 40), (80, 24)] {
        // A key right behind the resize: it used to be lost until the
        // next key came, while the dashboard spun a core.
        let ok = tmux
            .tmux()
            .args(["resize-window", "-t", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        tmux.keys("?");
        let start = Instant::now();
        loop {
            let s = tmux.screen();
            if s.contains("any key closes this help") {
                // Drawn at the new size: the frame's border reaches the
                // last column.
                assert!(
                    s.lines().any(|l| l.chars().count() == width),
                    "not redrawn at {width} columns:\n{s}"
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the key after a resize was not taken:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        tmux.keys("Escape");
        tmux.wait_for("the help closed", |s| {
            !s.contains("any key closes this help")
        });
    }
    // Idle, it sleeps: a spinning dashboard takes about 100 ticks a second.
    let before = cpu_ticks(&pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(&pid) - before;
    assert!(used < 60, "{used} CPU ticks in 2 s while idle");
    // NO_COLOR: attributes (bold, reverse) but no colours.
    let coloured = tmux
        .tmux()
        .args(["capture-pane", "-p", "-e", "-t", "t"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&coloured.stdout);
    let mut attributes = 0;
    for sequence in text.split('\x1b').skip(1) {
        let Some(params) = sequence.strip_prefix('[') else {
            continue;
        };
        let Some(end) = params.find('m') else {
            continue;
        };
        attributes += 1;
        for p in params[..end].split(';') {
            let n: u32 = p.parse().unwrap_or(0);
            assert!(
                !matches!(n, 30..=38 | 40..=48 | 90..=97 | 100..=107),
                "a colour (SGR {n}) under NO_COLOR:\n{text}"
            );
        }
    }
    assert!(attributes > 0, "no attributes at all:\n{text}");
    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
}

#[test]
fn closing_the_terminal_ends_run_live_and_its_program() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("live-hangup");
    live_target(&dir);
    // A trace name no other test uses, to find the processes by.
    let name = format!("hangup-{}.mtt", std::process::id());
    let command = format!(
        "cd '{dir}' && MEMTALLY_LIB='{lib}' '{memtally}' run --live -o {name} -- ./live_target 60",
        dir = dir.display(),
        lib = lib.display(),
        memtally = env!("CARGO_BIN_EXE_memtally"),
    );
    let tmux = Tmux::start("hangup", &command, 80, 24);
    tmux.wait_for("grow_cache", |s| s.contains("grow_cache"));
    let running = || {
        Command::new("pgrep")
            .args(["-f", &name])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    assert!(running());
    // The window closes: the terminal hangs up.
    drop(tmux);
    let start = Instant::now();
    while running() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "memtally or its program still runs after the terminal closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What was recorded is kept.
    let out = memtally(&["report", dir.join(&name).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn run_live_follows_the_command_into_the_program_it_executes() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("live-exec");
    live_target(&dir);
    let command = format!(
        "cd '{dir}' && MEMTALLY_LIB='{lib}' '{memtally}' run --live -o t.mtt -- sh -c 'exec ./live_target 2'; echo DONE; sleep 60",
        dir = dir.display(),
        lib = lib.display(),
        memtally = env!("CARGO_BIN_EXE_memtally"),
    );
    let tmux = Tmux::start("exec", &command, 100, 30);
    // sh's trace ends at the exec; the dashboard moves on to live_target's.
    let s = tmux.wait_for("live_target's sites", |s| s.contains("grow_cache"));
    assert!(
        s.contains("./live_target 2"),
        "the header names the new program:\n{s}"
    );
    tmux.wait_for("the exit", |s| s.contains("exited with status 0"));
    tmux.keys("q");
    let s = tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
    assert!(s.contains("t.1.mtt"), "{s}");
}

#[test]
fn view_moves_a_time_cursor_through_a_finished_trace() {
    let dir = scratch("view");
    // Four seconds: 0x405000 keeps 100 bytes every 10 ms (40 KiB at the
    // end), 0x406000 churns.
    let path = dir.join("g.mtt");
    std::fs::write(&path, memtally_profiler::synth::steady_leak(400).bytes()).unwrap();
    let command = format!(
        "'{}' view '{}'; echo DONE; sleep 60",
        env!("CARGO_BIN_EXE_memtally"),
        path.display()
    );
    let tmux = Tmux::start("view", &command, 80, 24);
    tmux.wait_for("the end of the recording", |s| {
        s.contains("exited") && s.contains("39.1 KiB")
    });
    // Back seven tenths: 1.2 s, when 120 blocks of 100 bytes were live.
    for _ in 0..7 {
        tmux.keys("<");
    }
    let s = tmux.wait_for("the heap at 1.2 s", |s| {
        s.contains("at 1.200 s (time cursor")
    });
    assert!(s.contains("heap 11.7 KiB"), "{s}");
    tmux.keys("e");
    tmux.wait_for("back to the end", |s| {
        s.contains("exited") && s.contains("heap 39.1 KiB")
    });
    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
}

#[test]
fn top_attaches_to_a_running_process_detaches_on_quit_and_shows_its_exit() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("top-pid");
    let exe = live_target(&dir);
    // Started as a service would be: preloaded, recording nothing, with a
    // control socket.
    let mut program = Command::new(&exe)
        .arg("12")
        .current_dir(&dir)
        .env("LD_PRELOAD", &lib)
        .env("MEMTALLY", "mode=off,control=on")
        .env_remove("XDG_RUNTIME_DIR")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = program.id();
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let socket = PathBuf::from(format!("/tmp/memtally-{uid}/{pid}.sock"));
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let top = |name: &str, out: &str| {
        let command = format!(
            "cd '{dir}' && '{memtally}' top --pid {pid} -o {out}; echo $? > status.txt; stty -a > stty.txt; echo DONE; sleep 60",
            dir = dir.display(),
            memtally = env!("CARGO_BIN_EXE_memtally"),
        );
        Tmux::start(name, &command, 100, 30)
    };

    // It has run a while when the dashboard attaches: the header says how
    // long, beside what was recorded.
    std::thread::sleep(Duration::from_millis(1500));
    // First session: the program's allocations from the attach on.
    let tmux = top("pid-1", "first.mtt");
    let s = tmux.wait_for("grow_cache holding 20 KiB or more", |s| {
        s.contains("running")
            && line_of(s, "grow_cache").is_some_and(|(_, l)| first_bytes(l) >= 20 << 10)
    });
    assert!(s.contains(&format!("pid {pid}")), "{s}");
    assert!(s.contains("recorded, process up"), "{s}");
    let (_, row) = line_of(&s, "grow_cache").unwrap();
    assert!(first_bytes(row) <= 12 * 100 * 4096, "{s}");
    tmux.keys("q");
    let s = tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
    assert!(s.contains(&format!("detached from process {pid}")), "{s}");
    let status = std::fs::read_to_string(dir.join("status.txt")).unwrap();
    assert_eq!(status.trim(), "0");
    let stty = std::fs::read_to_string(dir.join("stty.txt")).unwrap();
    assert!(
        stty.split_whitespace().any(|w| w == "icanon"),
        "the terminal was left in raw mode: {stty}"
    );
    drop(tmux);
    // The program runs on; the trace of the session reads.
    assert!(program.try_wait().unwrap().is_none(), "the program ended");
    let out = memtally(&["report", dir.join("first.mtt").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("grow_cache"), "{text}");
    assert!(text.contains("until the client detached"), "{text}");

    // Second session: the program exits while the dashboard shows it.
    let tmux = top("pid-2", "second.mtt");
    tmux.wait_for("grow_cache", |s| s.contains("grow_cache"));
    let s = tmux.wait_for("the exit", |s| s.contains("exited"));
    assert!(line_of(&s, "grow_cache").is_some(), "{s}");
    assert!(program.wait().unwrap().success());
    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
    assert!(!socket.exists());
}

#[test]
fn the_exit_status_is_in_the_trace_report_and_dashboard() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("exit-status");
    let exe = build_c(&dir, "exit_status", &[]);
    for (args, status) in [(&["7"][..], 7), (&["5", "_exit"][..], 5)] {
        let trace = dir.join(format!("s{status}.mtt"));
        let mut run = vec![
            "run",
            "-o",
            trace.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
        ];
        run.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
            .args(&run)
            .env("MEMTALLY_LIB", &lib)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(status), "{out:?}");
        let t = trace.to_str().unwrap();
        let report = memtally(&["report", t]);
        let text = String::from_utf8_lossy(&report.stdout);
        assert!(
            text.contains(&format!("exited with status {status}")),
            "{text}"
        );
        let doc = super::json_of(&["report", "--json", t]);
        assert_eq!(doc["trace"]["exit_status"], status, "{}", doc["trace"]);
        // Through exit, the exit handler's free comes before the trace's
        // end; _exit runs no handler.
        let live = doc["live_at_exit"]["bytes"].as_u64();
        let expected = if args.len() == 1 { 0 } else { 4096 };
        assert_eq!(live, Some(expected), "{}", doc["live_at_exit"]);
    }
    let command = format!(
        "'{}' top '{}'; echo DONE; sleep 60",
        env!("CARGO_BIN_EXE_memtally"),
        dir.join("s7.mtt").display()
    );
    let tmux = Tmux::start("exit-status", &command, 80, 24);
    tmux.wait_for("the exit status", |s| s.contains("exited with status 7"));
    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
}

/// The race detector live: `run --live --races` on tests/c/races.c (a
/// plain store racing with a plain load); the alerts tab shows the race
/// as it is recorded, one line naming both accesses by their
/// instructions. Skipped, and said so, where `perf_event_open` is refused
/// (the detector says so in the program's output).
#[test]
fn run_live_shows_a_data_race_in_the_alerts_tab() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("live-races");
    build_c(&dir, "races", &["-pthread"]);
    let command = format!(
        "cd '{dir}' && RACES_SECONDS=30 MEMTALLY_LIB='{lib}' '{memtally}' run --live --races -o t.mtt -- ./races; \
         echo DONE; sleep 60",
        dir = dir.display(),
        lib = lib.display(),
        memtally = env!("CARGO_BIN_EXE_memtally"),
    );
    let tmux = Tmux::start("races", &command, 160, 30);
    tmux.wait_for("the dashboard", |s| s.contains("running"));
    tmux.keys("5");
    let start = Instant::now();
    let line = loop {
        let s = tmux.screen();
        if let Some((_, l)) = line_of(&s, "data race on") {
            break l.to_owned();
        }
        if start.elapsed() > Duration::from_secs(25) {
            tmux.keys("q");
            tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
            let out = std::fs::read_to_string(dir.join("t.out")).unwrap_or_default();
            if out.contains("perf_event_open refused") {
                eprintln!("skipped: perf_event_open is refused here: {out}");
                return;
            }
            panic!("no race on the alerts tab in 25 s:\n{s}\noutput: {out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        line.contains("write in update_word") && line.contains("read in look_at_word"),
        "{line}"
    );
    assert!(line.contains("overlapping"), "{line}");
    let s = tmux.screen();
    assert!(s.contains("MEMORY ERRORS: 1"), "{s}");
    assert!(!s.contains("invalid pointer"), "{s}");
    tmux.keys("q");
    tmux.wait_for("the shell after memtally", |s| s.contains("DONE"));
}
