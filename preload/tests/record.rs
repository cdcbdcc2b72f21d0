//! Recording under LD_PRELOAD: exact accounting for a C program built
//! without frame pointers, stacks unwound through its frames, fork and
//! exec children, and a trace that survives SIGTERM.

use crate::util::{TIMEOUT, TempDir, compile, library, output_within, require};
use memtally_alloc::trace::{Decoder, EventKind, Ordered, Record};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Decoded essentials of one trace.
#[derive(Default)]
struct Summary {
    pid: u64,
    parent_pid: u64,
    allocs: u64,
    frees: u64,
    reallocs: u64,
    live: HashMap<u64, (u64, u64)>,
    frames: HashMap<u64, (u64, u64)>,
    modules: Vec<(u64, String)>,
    strings: HashMap<u64, String>,
    footer: Option<(u64, u64)>,
    truncated: Option<u64>,
    sizes: HashMap<u64, u64>,
}

fn summarise(path: &Path) -> Summary {
    let file = std::fs::File::open(path).unwrap();
    let mut d = Decoder::new(std::io::BufReader::new(file));
    let mut s = Summary::default();
    let mut modules = Vec::new();
    while let Some(item) = d.next_ordered().unwrap() {
        match item {
            Ordered::Record(Record::Header(h)) => {
                s.pid = h.pid;
                s.parent_pid = h.parent_pid;
            }
            Ordered::Record(Record::Frame(f)) => {
                s.frames.insert(f.id, (f.parent, f.address));
            }
            Ordered::Record(Record::Module(m)) => modules.push((m.base, m.path)),
            Ordered::Record(Record::String { id, text }) => {
                s.strings.insert(id, text);
            }
            Ordered::Record(Record::Footer {
                events, dropped, ..
            }) => s.footer = Some((events, dropped)),
            Ordered::Event(e) => match e.event.kind {
                EventKind::Alloc {
                    address,
                    size,
                    stack,
                    ..
                } => {
                    s.allocs += 1;
                    *s.sizes.entry(size).or_default() += 1;
                    s.live.insert(address, (size, stack));
                }
                EventKind::Free { address, .. } => {
                    s.frees += 1;
                    s.live.remove(&address);
                }
                EventKind::Realloc {
                    old_address,
                    new_address,
                    new_size,
                    stack,
                    ..
                } => {
                    s.reallocs += 1;
                    s.live.remove(&old_address);
                    s.live.insert(new_address, (new_size, stack));
                }
                EventKind::Marker { .. }
                | EventKind::Scope { .. }
                | EventKind::ScopeEnd { .. }
                | EventKind::Access { .. }
                | EventKind::Device { .. }
                | EventKind::Error { .. }
                | EventKind::Leak { .. }
                | EventKind::LeakScan { .. } => {}
            },
            Ordered::Record(_) => {}
        }
    }
    d.flush_ordered();
    while let Some(Ordered::Event(e)) = d.next_ordered().unwrap() {
        if let EventKind::Alloc {
            address,
            size,
            stack,
            ..
        } = e.event.kind
        {
            s.allocs += 1;
            s.live.insert(address, (size, stack));
        }
    }
    s.truncated = d.truncated_at();
    s.modules = modules
        .into_iter()
        .map(|(base, path)| (base, s.strings.get(&path).cloned().unwrap_or_default()))
        .collect();
    s
}

impl Summary {
    fn stack(&self, mut id: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while id != 0 {
            let (parent, address) = self.frames[&id];
            out.push(address);
            id = parent;
        }
        out // innermost first: each node adds an inner frame to its parent
    }
}

/// Runtime address ranges of functions named in `names`, from `nm -S`.
fn function_ranges(exe: &Path, base: u64, names: &[&str]) -> HashMap<String, (u64, u64)> {
    let out = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(exe)
        .output()
        .unwrap();
    let mut ranges = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 && names.contains(&f[3]) {
            let start = u64::from_str_radix(f[0], 16).unwrap() + base;
            let size = u64::from_str_radix(f[1], 16).unwrap();
            ranges.insert(f[3].to_string(), (start, start + size));
        }
    }
    ranges
}

fn traces_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mtt"))
        .collect();
    v.sort();
    v
}

#[test]
fn full_mode_accounts_for_every_event_of_a_c_program() {
    require("cc");
    require("nm");
    let dir = TempDir::new("known");
    let exe = compile(
        "known.c",
        &dir,
        &["-fomit-frame-pointer", "-fno-optimize-sibling-calls"],
    );
    let out = output_within(
        Command::new(&exe)
            .arg("500")
            .env("LD_PRELOAD", library())
            .env(
                "MEMTALLY",
                format!("mode=full,out={}/t.%p.mtt", dir.0.display()),
            ),
        TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let own: HashMap<&str, u64> = stdout
        .trim()
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    let traces = traces_in(&dir.0);
    assert_eq!(traces.len(), 1, "{traces:?}");
    let s = summarise(&traces[0]);
    assert_eq!(
        s.footer.map(|f| f.1),
        Some(0),
        "complete trace, nothing dropped"
    );
    // The program's own allocations are those of its sizes (16..520 + depth).
    let mine: u64 = s
        .sizes
        .iter()
        .filter(|&(&k, _)| (16..=530).contains(&k))
        .map(|(_, &n)| n)
        .sum();
    assert!(mine >= own["allocs"], "recorded {mine} < {}", own["allocs"]);
    assert!(s.allocs >= own["allocs"] && s.frees >= own["frees"]);
    // Leaked: every block still live at exit whose stack runs through
    // leaf_alloc is one of the program's deliberate leaks.
    let exe_base = s
        .modules
        .iter()
        .find(|(_, p)| p.ends_with("/known"))
        .map(|&(b, _)| b)
        .expect("the executable's MODULE record");
    let fns = function_ranges(&exe, exe_base, &["leaf_alloc", "middle", "outer", "main"]);
    assert_eq!(fns.len(), 4, "symbols of the test program: {fns:?}");
    let within = |a: u64, name: &str| {
        let (lo, hi) = fns[name];
        lo < a && a <= hi
    };
    let mut leaked = 0;
    let mut leaked_blocks = 0;
    for &(size, stack) in s.live.values() {
        let frames = s.stack(stack);
        if frames.iter().any(|&a| within(a, "leaf_alloc")) {
            leaked += size;
            leaked_blocks += 1;
            // The unwinder went through every frame of the program, built
            // without frame pointers: leaf_alloc, middle (recursive),
            // outer, main, in that order.
            let names: Vec<&str> = frames
                .iter()
                .filter_map(|&a| {
                    ["leaf_alloc", "middle", "outer", "main"]
                        .into_iter()
                        .find(|n| within(a, n))
                })
                .collect();
            let mut dedup = names.clone();
            dedup.dedup();
            assert_eq!(
                dedup,
                ["leaf_alloc", "middle", "outer", "main"],
                "stack {frames:x?}"
            );
        }
    }
    assert_eq!(leaked_blocks, 4);
    assert_eq!(
        leaked, own["leaked_bytes"],
        "leaked bytes: recorded vs the program's own count"
    );
}

#[test]
fn fork_and_exec_children_write_their_own_traces() {
    require("cc");
    let dir = TempDir::new("forkexec");
    let exe = compile("fork_exec.c", &dir, &[]);
    let out = output_within(
        Command::new(&exe).env("LD_PRELOAD", library()).env(
            "MEMTALLY",
            format!("mode=full,children=1,out={}/t.%p.mtt", dir.0.display()),
        ),
        TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "child status 0\n");
    let traces = traces_in(&dir.0);
    assert_eq!(
        traces.len(),
        3,
        "parent, forked child, exec'd image: {traces:?}"
    );
    let summaries: Vec<Summary> = traces.iter().map(|t| summarise(t)).collect();
    let by_size = |size: u64| {
        summaries
            .iter()
            .filter(|s| s.sizes.get(&size).copied().unwrap_or(0) > 0)
            .count()
    };
    // 555 only in the parent, 666 only in the forked child, 777 only after
    // exec (same pid as the forked child: its trace gets a `.1` suffix).
    assert_eq!(by_size(555), 1);
    assert_eq!(by_size(666), 1);
    assert_eq!(by_size(777), 1);
    for s in &summaries {
        assert!(s.footer.is_some(), "pid {} trace incomplete", s.pid);
    }
    // Without children=1 only the parent records.
    let dir2 = TempDir::new("forkexec-nochildren");
    let out = output_within(
        Command::new(&exe).env("LD_PRELOAD", library()).env(
            "MEMTALLY",
            format!("mode=full,out={}/t.%p.mtt", dir2.0.display()),
        ),
        TIMEOUT,
    );
    assert!(out.status.success());
    assert_eq!(traces_in(&dir2.0).len(), 1);
}

#[test]
fn sigterm_leaves_a_readable_trace() {
    require("cc");
    let dir = TempDir::new("sigterm");
    let exe = compile("sleeper.c", &dir, &[]);
    let mut child = Command::new(&exe)
        .env("LD_PRELOAD", library())
        .env(
            "MEMTALLY",
            format!("mode=full,out={}/t.%p.mtt", dir.0.display()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    std::thread::sleep(std::time::Duration::from_millis(50));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let traces = traces_in(&dir.0);
    assert_eq!(traces.len(), 1);
    let s = summarise(&traces[0]);
    assert!(s.footer.is_none(), "a killed process writes no footer");
    assert!(
        s.allocs >= 100_000,
        "the prefix holds the events before the kill: {}",
        s.allocs
    );
}

/// Runs `exe` with the library and `MEMTALLY=<settings>,out=<dir>/<out>`,
/// asserts that it succeeded, and returns the traces in `dir`.
fn record_run(exe: &Path, dir: &TempDir, settings: &str, out: &str) -> Vec<PathBuf> {
    let output = output_within(
        Command::new(exe).env("LD_PRELOAD", library()).env(
            "MEMTALLY",
            format!("{settings},out={}/{out}", dir.0.display()),
        ),
        TIMEOUT,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    traces_in(&dir.0)
}

#[test]
fn underscore_exit_ends_the_trace_and_a_vfork_child_leaves_it_alone() {
    require("cc");
    let dir = TempDir::new("quickexit");
    let exe = compile("quick_exit.c", &dir, &[]);
    let traces = record_run(&exe, &dir, "mode=full,children=1", "t.%p.mtt");
    assert_eq!(
        traces.len(),
        1,
        "the vfork child allocates nothing: {traces:?}"
    );
    let s = summarise(&traces[0]);
    assert!(s.footer.is_some(), "_exit must end the trace");
    assert_eq!(s.sizes.get(&4242), Some(&1000));
    assert_eq!(
        s.sizes.get(&4343),
        Some(&500),
        "events after the vfork child's _exit are recorded"
    );
    let leaked = s.live.values().filter(|(size, _)| *size == 4242).count();
    assert_eq!(leaked, 10);
}

#[test]
fn an_executed_program_records_into_a_trace_of_its_own() {
    require("cc");
    let dir = TempDir::new("execchain");
    let exe = compile("exec_chain.c", &dir, &[]);
    // A fixed name: the executed program must not replace the trace.
    let traces = record_run(&exe, &dir, "mode=full", "t.mtt");
    let names: Vec<String> = traces
        .iter()
        .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["t.1.mtt", "t.mtt"],
        "the fork child is not recorded"
    );
    let first = summarise(&dir.join("t.mtt"));
    let second = summarise(&dir.join("t.1.mtt"));
    assert_eq!(first.pid, second.pid);
    assert_eq!(first.sizes.get(&555), Some(&100));
    assert_eq!(first.sizes.get(&777), None);
    assert_eq!(second.sizes.get(&777), Some(&300));
    assert_eq!(second.sizes.get(&666), None);
    assert!(first.footer.is_some() && second.footer.is_some());
}

#[test]
fn commands_run_by_bash_are_not_recorded_unless_asked() {
    // bash defines its own unsetenv (for shell variables); the recorder
    // must still keep the setting from the commands a script runs.
    require("bash");
    let dir = TempDir::new("bash");
    let out = output_within(
        Command::new("bash")
            .args(["-c", "x=$(cat /proc/self/environ | tr '\\0' '\\n'); echo \"$x\" | grep -c MEMTALLY; true"])
            .env("LD_PRELOAD", library())
            .env(
                "MEMTALLY",
                format!("mode=full,out={}/b.%p.mtt", dir.0.display()),
            ),
        TIMEOUT,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert_eq!(traces_in(&dir.0).len(), 1, "{:?}", traces_in(&dir.0));
    // With children=1 every process records, each in a trace of its own:
    // bash, and for each `$(...)` the forked subshell and the cat it
    // executes (which keeps the subshell's pid: a `.N` name).
    let dir = TempDir::new("bash-children");
    let out = output_within(
        Command::new("bash")
            .args(["-c", "x=$(cat /etc/hostname); y=$(cat /etc/hostname); true"])
            .env("LD_PRELOAD", library())
            .env(
                "MEMTALLY",
                format!("mode=full,children=1,out={}/b.mtt", dir.0.display()),
            ),
        TIMEOUT,
    );
    assert!(out.status.success());
    assert_eq!(traces_in(&dir.0).len(), 5, "{:?}", traces_in(&dir.0));
}
