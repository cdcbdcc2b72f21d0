//! The dashboard from the command line: `memtally top FILE` over a trace
//! another process writes (or wrote), and `memtally run --live`, which
//! starts the command, captures its output for the output tab and a `.out`
//! file, and follows its trace while it runs.

use crate::args::{AttachArgs, TopArgs, TopSource};
use crate::attach::Session;
use anyhow::{Context, Result, bail};
use memtally_profiler::{Live, LiveState, ModelOptions, WriterWatch};
use memtally_tui::{LiveSlot, Outcome, Process, Target};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn options() -> ModelOptions {
    memtally_tui::model_options()
}

/// Fails early, with one line, when there is no terminal to draw on.
fn need_terminal() -> Result<()> {
    // SAFETY: isatty only inspects the descriptors.
    let tty = unsafe { libc::isatty(0) == 1 && libc::isatty(1) == 1 };
    if !tty {
        bail!("the dashboard needs a terminal (standard input and output are not one)");
    }
    Ok(())
}

/// Runs `memtally top` (and `memtally view`).
pub fn top(args: &TopArgs) -> Result<ExitCode> {
    let file = match &args.source {
        TopSource::File(file) => file,
        TopSource::Pid(attach) => return top_pid(attach),
    };
    if !file.exists() {
        bail!("cannot open {}: no such file", file.display());
    }
    // A file that is not a trace (or of a newer version) is refused here,
    // in one line; one without a header yet may be a trace being started.
    if let Err(e) = memtally_profiler::read_header(file)
        && !matches!(e.kind(), memtally_profiler::ErrorKind::NoHeader { .. })
    {
        bail!("{}: {e}", file.display());
    }
    need_terminal()?;
    let live = LiveSlot::new(Live::follow(file, options(), WriterWatch::HeaderPid));
    dashboard(live)
}

/// `memtally top --pid`: attaches to the process, shows the dashboard over
/// the trace it writes for us, and detaches when the user quits.
fn top_pid(args: &AttachArgs) -> Result<ExitCode> {
    need_terminal()?;
    let session = Session::open(args)?;
    let (pid, trace, attached) = (session.pid, session.trace.clone(), session.attached);
    let live = if attached {
        let live = LiveSlot::new(Live::follow(&trace, options(), WriterWatch::Told));
        // The connection closes when the process exits or executes: the
        // trace then grows no more.
        let watch = session.watcher()?;
        let slot = live.clone();
        std::thread::spawn(move || {
            watch();
            slot.get().writer_gone();
        });
        live
    } else {
        LiveSlot::new(Live::follow(&trace, options(), WriterWatch::HeaderPid))
    };
    let code = dashboard(live);
    if attached {
        session.detach();
        say!(
            "memtally: detached from process {pid}; the trace is {}",
            trace.display()
        );
    }
    code
}

fn dashboard(live: LiveSlot) -> Result<ExitCode> {
    let target = Target {
        live,
        process: None,
    };
    let outcome = memtally_tui::run(&target).context("the dashboard failed")?;
    Ok(match outcome {
        Outcome::Quit => ExitCode::SUCCESS,
        Outcome::Signal(sig) => ExitCode::from(128 + sig as u8),
    })
}

/// The trace a process with `pid` writes for the pattern.
fn trace_of(pattern: &Path, pid: u32) -> PathBuf {
    PathBuf::from(pattern.to_string_lossy().replace("%p", &pid.to_string()))
}

/// Runs the dashboard over `child` (spawned with its output piped), which
/// writes its trace to `pattern`. Returns how the child ended; when the
/// user quits first, the child is stopped (SIGINT, then SIGKILL after 3 s).
pub fn run_child(mut child: Child, pattern: &Path) -> Result<ExitStatus> {
    need_terminal().inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
    })?;
    let pid = child.id();
    let trace = trace_of(pattern, pid);
    let out_path = trace.with_extension("out");
    let out_file = std::fs::File::create(&out_path)
        .with_context(|| format!("cannot create {}", out_path.display()))?;
    let out_file = Arc::new(Mutex::new(out_file));
    let process = Arc::new(Process::default());
    let live = LiveSlot::new(Live::follow(&trace, options(), WriterWatch::Told));
    let gone = Arc::new(AtomicBool::new(false));
    follow_execs(live.clone(), trace.clone(), gone.clone());

    let mut readers = Vec::new();
    let streams: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for stream in streams {
        let process = process.clone();
        let out_file = out_file.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let _ = out_file
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write_all(&line);
                let text = String::from_utf8_lossy(&line);
                process.push_output(text.trim_end_matches(['\n', '\r']).to_owned());
                line.clear();
            }
        }));
    }
    let (exited, exit) = mpsc::channel();
    {
        let process = process.clone();
        let live = live.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            if let Ok(s) = &status {
                *process.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(describe(s));
            }
            gone.store(true, Ordering::SeqCst);
            live.get().writer_gone();
            let _ = exited.send(status);
        });
    }
    let target = Target {
        live,
        process: Some(process),
    };
    let outcome = memtally_tui::run(&target);
    let status = match exit.try_recv() {
        Ok(status) => status,
        Err(_) => {
            // The user quit while the command runs: stop it as Ctrl-C would.
            // SAFETY: kill sends a signal to our own child, still unreaped
            // (the waiter has not returned), so the pid is still its.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            match exit.recv_timeout(Duration::from_secs(3)) {
                Ok(status) => status,
                Err(_) => {
                    // SAFETY: as above; the child has not been reaped.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    exit.recv().context("lost the command")?
                }
            }
        }
    }
    .context("cannot wait for the command")?;
    for r in readers {
        let _ = r.join();
    }
    outcome.context("the dashboard failed")?;
    say!(
        "memtally: the command {}; its output is in {}",
        describe(&status),
        shown(&out_path)
    );
    Ok(status)
}

/// The trace a program writes after `n` execs: `t.mtt`, `t.1.mtt`,
/// `t.2.mtt`... (the recorder's names: it never overwrites a trace).
fn nth_trace(first: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return first.to_owned();
    }
    let name = first
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{}.{n}{}", &name[..i], &name[i..]),
        None => format!("{name}.{n}"),
    };
    first.with_file_name(renamed)
}

/// Follows the command into the programs it executes: when the trace
/// followed ends with an exec, the dashboard moves to the next one. `gone`
/// says the command has exited (a trace followed after that is told so).
fn follow_execs(slot: LiveSlot, first: PathBuf, gone: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut n = 0;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let live = slot.get();
            match live.status().state {
                LiveState::Complete { exec: true, .. } => {
                    n += 1;
                    let next = Arc::new(Live::follow(
                        &nth_trace(&first, n),
                        options(),
                        WriterWatch::Told,
                    ));
                    slot.set(next.clone());
                    if gone.load(Ordering::SeqCst) {
                        next.writer_gone();
                    }
                }
                s if s.is_final() => return,
                _ => {}
            }
        }
    });
}

fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `exited with status 0`, `was killed by signal 9`.
fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_of_executed_programs_are_named_as_the_recorder_names_them() {
        let first = Path::new("/d/memtally.12.mtt");
        assert_eq!(nth_trace(first, 0), first);
        assert_eq!(nth_trace(first, 1), Path::new("/d/memtally.12.1.mtt"));
        assert_eq!(nth_trace(Path::new("t"), 2), Path::new("t.2"));
    }
}
