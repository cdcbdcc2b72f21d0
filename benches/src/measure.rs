//! Running a command and measuring it: wall time, and the kernel's resource
//! usage of the child and its waited-for descendants (`wait4`), with a
//! watchdog that kills it after a timeout. Shared by the benchmark drivers.

use std::io;
use std::mem;
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::report::Outcome;

/// What one run of a command cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from spawn to exit, in seconds.
    pub wall_s: f64,
    /// User CPU time, in seconds.
    pub user_s: f64,
    /// System CPU time, in seconds.
    pub sys_s: f64,
    /// Peak resident set size in KiB (Linux `ru_maxrss`).
    pub max_rss_kib: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
}

/// Spawns `command`, waits for it (killing it after `timeout`) and measures
/// it. The caller sets up its arguments, environment and standard streams.
pub fn run_measured(command: &mut Command, timeout: Duration) -> Result<Measurement, String> {
    let start = Instant::now();
    // The `Child` is never waited on through std: `wait4` below reaps it, and
    // dropping a `Child` neither waits nor kills.
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    let pid =
        libc::pid_t::try_from(child.id()).map_err(|_| "child pid out of range".to_string())?;

    let (finished, watchdog_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if watchdog_rx.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout) {
            // SAFETY: the child is reaped only after this thread has been
            // joined, so `pid` still names it (at worst as a zombie, for which
            // the signal is harmless) and cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });
    let exited = wait_exited(pid);
    let wall_s = start.elapsed().as_secs_f64();
    drop(finished);
    let timed_out = watchdog
        .join()
        .map_err(|_| "the watchdog thread panicked".to_string())?;
    exited?;
    let (status, usage) = reap(pid)?;
    drop(child);

    let outcome = if timed_out {
        Outcome::TimedOut
    } else if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Outcome::Success,
            code => Outcome::Exit(code),
        }
    } else if libc::WIFSIGNALED(status) {
        Outcome::Signal(libc::WTERMSIG(status))
    } else {
        Outcome::Exit(-1)
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measurement {
        outcome,
        wall_s,
        user_s: seconds(usage.ru_utime),
        sys_s: seconds(usage.ru_stime),
        // On Linux `ru_maxrss` is in KiB.
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        minor_faults: u64::try_from(usage.ru_minflt).unwrap_or(0),
        major_faults: u64::try_from(usage.ru_majflt).unwrap_or(0),
    })
}

/// Blocks until the child has exited, without reaping it: a zombie keeps its
/// pid, so the watchdog can never signal an unrelated process.
fn wait_exited(pid: libc::pid_t) -> Result<(), String> {
    let id = libc::id_t::try_from(pid).map_err(|_| "negative pid".to_string())?;
    loop {
        // SAFETY: `siginfo_t` is a plain C struct for which all-zero bytes are valid.
        let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
        // SAFETY: `info` is valid for writes, and WNOWAIT leaves the child for `reap`.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(format!("waitid: {err}"));
        }
    }
}

/// Reaps the exited child, returning its wait status and resource usage.
fn reap(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage), String> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `rusage` is a plain C struct for which all-zero bytes are valid.
        let mut usage: libc::rusage = unsafe { mem::zeroed() };
        // SAFETY: both out-pointers are valid for writes and `pid` is our own child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if rc != -1 || err.kind() != io::ErrorKind::Interrupted {
            return Err(format!("wait4: {err}"));
        }
    }
}
