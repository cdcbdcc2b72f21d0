//! `memtally run`: runs a command with `libmemtally.so` preloaded and the
//! recorder's settings in the environment, waits for it, passes its exit
//! status on, and says where the traces went.
//!
//! The recorder reads one variable, `MEMTALLY`, of comma-separated
//! `key=value` settings (`mode`, `out`, `interval`, `depth`, `children`);
//! `out` may hold `%p`, which each recorded process replaces with its pid.
//! The output path is made absolute here so that a child that changes
//! directory still writes where the user asked.

use crate::args::RunArgs;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::SystemTime;

/// The library's file name.
const LIBRARY: &str = "libmemtally.so";

/// The command could not be started; `code` is the exit status to use
/// (127 when it does not exist, 126 otherwise, as `env` and shells do).
#[derive(Debug)]
pub struct SpawnError {
    /// Exit status for memtally.
    pub code: u8,
    program: String,
    source: io::Error,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source.kind() {
            io::ErrorKind::NotFound => write!(f, "cannot run {}: command not found", self.program),
            io::ErrorKind::PermissionDenied => {
                write!(f, "cannot run {}: permission denied", self.program)
            }
            _ => write!(f, "cannot run {}: {}", self.program, self.source),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Runs `memtally run`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let library = find_library()?;
    let cwd = std::env::current_dir().context("cannot find the current directory")?;
    let pattern = cwd.join(
        args.output
            .clone()
            .unwrap_or_else(|| PathBuf::from("memtally.%p.mtt")),
    );
    let settings = settings(args, &pattern)?;
    let mut preload = OsString::from(library.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let before = matching_traces(&pattern);
    let program = &args.command[0];
    let mut command = Command::new(program);
    command
        .args(&args.command[1..])
        .env("LD_PRELOAD", &preload)
        .env("MEMTALLY", &settings);
    if std::env::var_os("PYTHONMALLOC").is_none() {
        // CPython serves small objects from arenas it maps itself, which
        // no malloc profiler sees (a list of 300,000 strings showed as a
        // 4 MiB peak instead of 37 MiB); with this its objects are malloc
        // calls. Programs other than Python ignore the variable.
        command.env("PYTHONMALLOC", "malloc");
    }
    if args.live {
        // The terminal is the dashboard's: the command reads nothing from
        // it and its output is captured (see live.rs).
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !pattern.to_string_lossy().contains("%p") && pattern.exists() {
            // The recorder truncates a fixed path; remove it first so that
            // the dashboard cannot read the old trace before that.
            std::fs::remove_file(&pattern)
                .with_context(|| format!("cannot replace {}", pattern.display()))?;
        }
    }
    let mut child = command.spawn().map_err(|source| SpawnError {
        code: if source.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        },
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    ignore_terminal_signals();
    let pid = child.id();
    let status = if args.live {
        crate::live::run_child(child, &pattern)?
    } else {
        child
            .wait()
            .with_context(|| format!("cannot wait for {}", program.to_string_lossy()))?
    };

    if args.mode.writes_trace() {
        let mut written: Vec<PathBuf> = matching_traces(&pattern)
            .into_iter()
            .filter(|(path, modified)| before.get(path).is_none_or(|old| old != modified))
            .map(|(path, _)| path)
            .collect();
        written.sort();
        let own = announce(&written, &pattern, pid, &cwd);
        if args.report {
            match own.last() {
                Some(trace) => crate::report::run(&crate::args::ReportArgs {
                    file: trace.clone(),
                    json: false,
                    frames: 5,
                    top: 5,
                    by_scope: false,
                })?,
                None => bail!("no trace to report on"),
            }
        }
    }
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code))
}

/// Says on stderr where the traces went: the command's own first (one
/// per program it ran: a process that executes another program goes on
/// recording it in a new trace), then those of its children (listed when
/// few, summarised when many). Returns the command's own traces in the
/// order the programs ran: the last one is the program the command ended
/// up as (`env python3 app.py` ends as python3).
fn announce(written: &[PathBuf], pattern: &Path, pid: u32, cwd: &Path) -> Vec<PathBuf> {
    if written.is_empty() {
        say!(
            "memtally: no trace was written (expected {}): the command made no allocation through the C library while recorded (a statically linked program, or one that never calls malloc, is not seen)",
            shown(pattern, cwd)
        );
        return Vec::new();
    }
    // Which process wrote each trace, and when it started: from the
    // traces' headers (a name alone cannot tell a fork child's `.N` trace
    // from an executed program's).
    let mut own: Vec<(u64, &PathBuf)> = Vec::new();
    let mut children: Vec<&PathBuf> = Vec::new();
    for path in written {
        match memtally_profiler::read_header(path) {
            Ok(h) if h.pid == u64::from(pid) => own.push((h.start_realtime_ns, path)),
            _ => children.push(path),
        }
    }
    own.sort();
    match own.as_slice() {
        [] => {}
        [.., (_, last)] if own.len() > 3 => {
            // An exec chain (wrappers, shims): the program it ended as is
            // the one the user asked about.
            say!(
                "memtally: {} earlier programs the command executed: traces {} ... {}",
                own.len() - 1,
                shown(own[0].1, cwd),
                shown(own[own.len() - 2].1, cwd)
            );
            say!("memtally: trace written to {}", shown(last, cwd));
        }
        few => {
            for (_, p) in few {
                say!("memtally: trace written to {}", shown(p, cwd));
            }
        }
    }
    match children.as_slice() {
        [] => {}
        few if few.len() <= 3 => {
            for p in few {
                say!(
                    "memtally: trace of a child process written to {}",
                    shown(p, cwd)
                );
            }
        }
        many => say!(
            "memtally: {} traces of child processes written too ({} ... {})",
            many.len(),
            shown(many[0], cwd),
            shown(many[many.len() - 1], cwd)
        ),
    }
    own.into_iter().map(|(_, p)| p.clone()).collect()
}

/// The `MEMTALLY` settings for `args`, writing to `pattern`.
fn settings(args: &RunArgs, pattern: &Path) -> Result<OsString> {
    let mut s = OsString::from(format!("mode={}", args.mode.name()));
    if args.mode.writes_trace() {
        let bytes = pattern.as_os_str().as_encoded_bytes();
        if bytes.contains(&b',') {
            bail!(
                "output path {} contains a comma, which the MEMTALLY setting cannot hold",
                pattern.display()
            );
        }
        s.push(",out=");
        s.push(pattern);
    }
    if let Some(i) = args.interval {
        s.push(format!(",interval={i}"));
    }
    if let Some(d) = args.depth {
        s.push(format!(",depth={d}"));
    }
    if args.follow_children {
        s.push(",children=1");
    }
    if args.no_compress && args.mode.writes_trace() {
        s.push(",compress=off");
    }
    if args.leak_scan {
        s.push(",leaks=scan");
    }
    if args.report_errors {
        s.push(",on_error=report");
    }
    if let Some(n) = args.guard_every {
        s.push(format!(",guard_every={n}"));
    } else if args.guard {
        s.push(",guard=on");
    }
    if args.races {
        s.push(",races=on");
    }
    if args.control {
        s.push(",control=on");
    }
    Ok(s)
}

/// Finds `libmemtally.so`: `$MEMTALLY_LIB`, then beside this executable,
/// then in `../lib/memtally/` relative to it.
fn find_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MEMTALLY_LIB") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "MEMTALLY_LIB={} is not a file (build the library with `cargo build --release -p memtally-preload`)",
                p.display()
            );
        }
        return absolute(&p);
    }
    let exe = std::env::current_exe().context("cannot find the memtally executable")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [dir.join(LIBRARY), dir.join("../lib/memtally").join(LIBRARY)];
    for c in &candidates {
        if c.is_file() {
            return absolute(c);
        }
    }
    bail!(
        "{LIBRARY} not found (looked in {} and {}); build it with `cargo build --release -p memtally-preload` or set MEMTALLY_LIB",
        dir.display(),
        dir.join("../lib/memtally").display()
    )
}

fn absolute(p: &Path) -> Result<PathBuf> {
    p.canonicalize()
        .with_context(|| format!("cannot resolve {}", p.display()))
}

/// Files that match the trace pattern (`%p` standing for digits) with
/// their modification times.
fn matching_traces(pattern: &Path) -> HashMap<PathBuf, Option<SystemTime>> {
    let mut out = HashMap::new();
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return out;
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        if matches_pattern(&name, &file.to_string_lossy()) {
            let modified = e.metadata().and_then(|m| m.modified()).ok();
            out.insert(e.path(), modified);
        }
    }
    out
}

/// True when `file` is a name the recorder may give a trace for
/// `pattern`: the pattern with every `%p` replaced by a number, or, when
/// the name was taken (a process that execs keeps its pid; descendants of
/// the command never replace a trace), with `.N` inserted before the
/// extension.
fn matches_pattern(pattern: &str, file: &str) -> bool {
    if matches_exactly(pattern, file) {
        return true;
    }
    let ext = match pattern.rfind('.') {
        Some(d) if d > 0 => &pattern[d..],
        _ => "",
    };
    let Some(stem) = file.strip_suffix(ext) else {
        return false;
    };
    match stem.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            matches_exactly(&pattern[..pattern.len() - ext.len()], base)
        }
        _ => false,
    }
}

/// True when `file` is `pattern` with every `%p` replaced by a number.
fn matches_exactly(pattern: &str, file: &str) -> bool {
    let mut parts = pattern.split("%p");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = file.strip_prefix(first) else {
        return false;
    };
    for part in parts {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        match rest.strip_prefix(part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// `path` relative to `cwd` when it is inside it.
fn shown(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// While the command runs, a Ctrl-C or Ctrl-\ at the terminal goes to it
/// (it is in the same process group); memtally ignores them so that it
/// outlives the command and reports its status, as `system(3)` does.
fn ignore_terminal_signals() {
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no
        // handler and touches no memory; the child was already spawned, so
        // it keeps the default dispositions.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Mode;

    #[test]
    fn trace_names_match_the_pattern() {
        assert!(matches_pattern("memtally.%p.mtt", "memtally.1234.mtt"));
        assert!(!matches_pattern("memtally.%p.mtt", "memtally..mtt"));
        assert!(!matches_pattern("memtally.%p.mtt", "memtally.12a.mtt"));
        assert!(!matches_pattern("memtally.%p.mtt", "memtally.12.mtt.bak"));
        assert!(matches_pattern("run-%p-%p", "run-1-22"));
        assert!(matches_pattern("fixed.mtt", "fixed.mtt"));
        // A process that execs keeps its pid: the new image's trace gets a
        // number before the extension.
        assert!(matches_pattern("memtally.%p.mtt", "memtally.1234.1.mtt"));
        assert!(matches_pattern("memtally.%p.mtt", "memtally.1234.12.mtt"));
        assert!(!matches_pattern("memtally.%p.mtt", "memtally.1234.x.mtt"));
        // Descendants of the command never replace a trace of a fixed name.
        assert!(matches_pattern("fixed.mtt", "fixed.1.mtt"));
        assert!(matches_pattern("fixed", "fixed.3"));
        assert!(!matches_pattern("fixed.mtt", "fixed.x.mtt"));
        assert!(!matches_pattern("fixed.mtt", "fixed2.mtt"));
    }

    #[test]
    fn settings_name_every_option() {
        let args = RunArgs {
            mode: Mode::Sampled,
            interval: Some(4096),
            depth: Some(16),
            output: None,
            follow_children: true,
            no_compress: true,
            report: false,
            live: false,
            leak_scan: true,
            report_errors: true,
            guard: false,
            guard_every: Some(7),
            races: true,
            control: true,
            command: vec!["true".into()],
        };
        let s = settings(&args, Path::new("/tmp/memtally.%p.mtt")).unwrap();
        assert_eq!(
            s,
            "mode=sampled,out=/tmp/memtally.%p.mtt,interval=4096,depth=16,children=1,compress=off,leaks=scan,on_error=report,guard_every=7,races=on,control=on"
        );
        let e = settings(&args, Path::new("/tmp/a,b")).unwrap_err();
        assert!(e.to_string().contains("contains a comma"));
        let stats = RunArgs {
            mode: Mode::Stats,
            interval: None,
            depth: None,
            follow_children: false,
            leak_scan: false,
            report_errors: false,
            guard_every: None,
            races: false,
            control: false,
            ..args
        };
        assert_eq!(settings(&stats, Path::new("/x")).unwrap(), "mode=stats");
        let off = RunArgs {
            mode: Mode::Off,
            control: true,
            ..stats
        };
        assert_eq!(
            settings(&off, Path::new("/x")).unwrap(),
            "mode=off,control=on"
        );
    }
}
