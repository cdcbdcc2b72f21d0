//! `memtally attach PID`: recording switched on in a running process
//! through its control socket, and off again, repeatedly, while its
//! threads allocate, free across threads and fork; the socket's privacy;
//! the errors. (`memtally top --pid` is in live.rs.)

use super::{build_c, built_library, fails_with, memtally, scratch};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program started with the library preloaded and `MEMTALLY` set, its
/// stdout read up to its "ready" line; killed on drop if still running.
struct Target {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Target {
    fn start(mut command: Command, lib: &Path, setting: &str) -> Target {
        let mut child = command
            .env("LD_PRELOAD", lib)
            .env("MEMTALLY", setting)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the target");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        Target { child, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the program's end; its exit code, the rest of its
    /// stdout, and its stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut out).unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status = self.child.wait().unwrap();
        (status.code(), out, err)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a process of ours (no `XDG_RUNTIME_DIR`) puts its socket.
fn socket_of(pid: u32) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    PathBuf::from(format!("/tmp/memtally-{uid}/{pid}.sock"))
}

/// Waits up to 10 s for `path` to exist.
fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn attach_target(dir: &Path) -> Command {
    let exe = build_c(dir, "attach_target", &["-pthread"]);
    let mut c = Command::new(exe);
    c.current_dir(dir).env_remove("XDG_RUNTIME_DIR");
    c
}

/// The report of `trace`, which must read cleanly.
fn report(trace: &Path) -> String {
    let out = memtally(&["report", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn attach_records_a_running_program_from_then_until_it_detaches_again_and_again() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("attach-busy");
    let mut command = attach_target(&dir);
    command.args(["120", "4"]);
    let target = Target::start(command, &lib, "mode=off,control=on");
    let pid = target.pid();
    let socket = socket_of(pid);
    wait_for_file(&socket);
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // Five sessions in a row, full and sampled, while four threads churn,
    // hand blocks to each other and the main thread forks.
    for i in 0..5 {
        let trace = dir.join(format!("a{i}.mtt"));
        let mut args = vec![
            "attach".to_string(),
            pid.to_string(),
            "--duration".into(),
            "0.4".into(),
            "-o".into(),
            trace.to_str().unwrap().into(),
        ];
        if i % 2 == 1 {
            args.extend(["--mode", "sampled", "--interval", "64k"].map(String::from));
        }
        if i == 0 {
            args.push("--report".into());
        }
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = memtally(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains(&format!("detached from process {pid}")),
            "{err}"
        );
        if i == 0 {
            let printed = String::from_utf8_lossy(&out.stdout);
            assert!(
                printed.contains("SUMMARY") && printed.contains("churn_block"),
                "{printed}"
            );
        }
        let text = report(&trace);
        assert!(text.contains("churn_block"), "session {i}:\n{text}");
        assert!(
            text.contains("recorded from an attach to the running process"),
            "{text}"
        );
        assert!(!text.contains("damaged"), "{text}");
        assert!(!text.contains("cut short"), "{text}");
        assert!(!text.contains("lost"), "{text}");
        let mode = if i % 2 == 1 { "sampled" } else { "full" };
        assert!(text.contains(&format!("recorded  {mode} mode")), "{text}");
    }
    // The program ran on, unharmed, and removed its socket at exit.
    std::fs::write(dir.join("stop"), "").unwrap();
    let (code, out, err) = target.finish();
    assert_eq!(code, Some(0), "stdout {out}\nstderr {err}");
    assert!(out.contains("done"), "{out}");
    assert!(!err.contains("memtally:"), "{err}");
    assert!(!socket.exists());
}

#[test]
fn attach_finds_the_socket_under_the_processs_runtime_directory() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("attach-xdg");
    let runtime = dir.join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    // A socket left by a process that was killed: removed by the next one.
    let sockets = runtime.join("memtally");
    std::fs::create_dir(&sockets).unwrap();
    std::fs::set_permissions(
        &sockets,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = sockets.join(format!("{dead_pid}.sock"));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let mut command = attach_target(&dir);
    command.args(["60", "1"]).env("XDG_RUNTIME_DIR", &runtime);
    let target = Target::start(command, &lib, "mode=off,control=on");
    let pid = target.pid();
    let socket = runtime.join("memtally").join(format!("{pid}.sock"));
    wait_for_file(&socket);
    assert!(!stale.exists(), "the stale socket of {dead_pid} stayed");
    let private = std::fs::metadata(runtime.join("memtally")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&private.permissions()) & 0o777,
        0o700
    );
    // The client, without XDG_RUNTIME_DIR itself, reads the process's.
    let trace = dir.join("x.mtt");
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["attach", &pid.to_string(), "--duration", "0.3", "-o"])
        .arg(&trace)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(report(&trace).contains("churn_block"));
    std::fs::write(dir.join("stop"), "").unwrap();
    let (code, _, err) = target.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(!socket.exists());
}

#[test]
fn attach_to_a_process_that_records_already_names_its_trace() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("attach-recording");
    let mut command = attach_target(&dir);
    command.args(["60", "1"]);
    let target = Target::start(command, &lib, "mode=full,out=own.mtt,control=on");
    let pid = target.pid();
    wait_for_file(&socket_of(pid));
    let out = memtally(&["attach", &pid.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let own = dir.join("own.mtt");
    assert!(
        err.contains(&format!("records already, into {}", own.display())),
        "{err}"
    );
    // No file of ours was left behind.
    assert!(!Path::new(&format!("memtally.{pid}.attach.mtt")).exists());
    std::fs::write(dir.join("stop"), "").unwrap();
    let (code, _, err) = target.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(report(&own).contains("churn_block"));
}

#[test]
fn attach_errors_are_one_line() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("attach-errors");
    // Preloaded, but no control socket asked for.
    let mut command = attach_target(&dir);
    command.args(["3", "1"]);
    let target = Target::start(command, &lib, "mode=off");
    let out = memtally(&["attach", &target.pid().to_string()]);
    fails_with(&out, "has no memtally control socket");
    fails_with(&out, "MEMTALLY=control=on");
    drop(target);
    fails_with(
        &memtally(&["attach", "2147483646"]),
        "no process 2147483646",
    );
    fails_with(&memtally(&["attach", "12x"]), "invalid process id 12x");
    fails_with(&memtally(&["attach"]), "no process id given");
    fails_with(
        &memtally(&["attach", "1", "--mode", "stats"]),
        "invalid --mode stats (expected full or sampled)",
    );
    fails_with(
        &memtally(&["attach", "1", "--interval", "4k"]),
        "--interval applies only to --mode sampled",
    );
    fails_with(
        &memtally(&["attach", "1", "--duration", "-1"]),
        "invalid --duration -1",
    );
    fails_with(
        &memtally(&["top", "--pid", "1", "t.mtt"]),
        "give a trace or --pid, not both",
    );
    fails_with(&memtally(&["view", "--pid", "1"]), "invalid option '--pid'");
    // A stale socket: nothing listens on it.
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let stale_dir = PathBuf::from(format!("/tmp/memtally-{uid}"));
    std::fs::create_dir_all(&stale_dir).unwrap();
    let me = std::process::id();
    let stale = stale_dir.join(format!("{me}.sock"));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = memtally(&["attach", &me.to_string()]);
    let _ = std::fs::remove_file(&stale);
    fails_with(&out, "does not answer");
}

#[test]
fn a_client_of_another_user_is_refused() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the target as another user");
        return;
    }
    let dir = scratch("attach-other-user");
    let mut command = attach_target(&dir);
    command.args(["60", "1"]);
    std::os::unix::process::CommandExt::uid(&mut command, 65534);
    std::os::unix::process::CommandExt::gid(&mut command, 65534);
    let target = Target::start(command, &lib, "mode=off,control=on");
    let pid = target.pid();
    let socket = PathBuf::from(format!("/tmp/memtally-65534/{pid}.sock"));
    wait_for_file(&socket);
    // Root reaches the socket (directory permissions do not stop it); the
    // process's own check of the peer's uid does.
    let trace = dir.join("refused.mtt");
    let out = memtally(&["attach", &pid.to_string(), "-o", trace.to_str().unwrap()]);
    fails_with(&out, "refused: permission denied");
    assert!(!trace.exists());
    std::fs::write(dir.join("stop"), "").unwrap();
    let (code, _, err) = target.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("memtally: control socket: refused a client of uid 0"),
        "{err}"
    );
}

#[test]
fn a_rust_program_with_memtally_as_its_allocator_can_be_attached_to() {
    // The examples' scoped-server (tokio, MemTally as global allocator),
    // built beside this test by `cargo test --workspace`.
    let exe = Path::new(env!("CARGO_BIN_EXE_memtally")).with_file_name("scoped-server");
    if !exe.is_file() {
        eprintln!("skipped: scoped-server not built (run cargo test --workspace)");
        return;
    }
    let dir = scratch("attach-rust");
    let mut server = Command::new(&exe)
        .args(["--requests", "100000000"])
        .env("MEMTALLY", "mode=off,control=on")
        .env_remove("XDG_RUNTIME_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let socket = socket_of(pid);
    wait_for_file(&socket);
    let trace = dir.join("rust.mtt");
    let out = memtally(&[
        "attach",
        &pid.to_string(),
        "--duration",
        "1",
        "-o",
        trace.to_str().unwrap(),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&socket);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = report(&trace);
    assert!(text.contains("scoped_server::"), "{text}");
    assert!(text.contains("recorded  full mode"), "{text}");
}

#[test]
fn threads_that_come_and_go_are_recorded_whole_in_every_session() {
    let Some(lib) = built_library() else {
        eprintln!("skipped: libmemtally.so not built (run cargo test --workspace)");
        return;
    };
    let dir = scratch("attach-churn");
    let exe = build_c(&dir, "attach_churn", &["-pthread"]);
    let mut command = Command::new(exe);
    command
        .arg("120")
        .current_dir(&dir)
        .env_remove("XDG_RUNTIME_DIR");
    let target = Target::start(command, &lib, "mode=off,control=on");
    let pid = target.pid();
    wait_for_file(&socket_of(pid));
    // Each detach ends the trace writer's thread, whose heap a new thread
    // then adopts: a heap passed on still marked busy left that thread
    // unrecorded (hundreds of thousands of unknown frees from the second
    // session on).
    for i in 0..4 {
        let trace = dir.join(format!("s{i}.mtt"));
        let t = trace.to_str().unwrap();
        let out = memtally(&["attach", &pid.to_string(), "--duration", "0.3", "-o", t]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let out = memtally(&["report", "--json", t]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = &doc["summary"];
        assert!(
            s["allocations"].as_u64().unwrap() > 10_000,
            "session {i}: {s}"
        );
        // Unknown frees are blocks allocated before a thread switched to
        // recording, freed after by one that had: the 32 in the slots at
        // the attach, and those a thread allocated after the attach but
        // before its next slow path (where it switches), which a loaded
        // machine stretches (once over 64 in a full suite run). A thread
        // left unrecorded for the session gives hundreds of thousands.
        assert!(
            s["unknown_frees"].as_u64().unwrap() <= 2_000,
            "session {i}: {s}"
        );
        assert_eq!(s["lost_frees"], 0, "session {i}: {s}");
        let _ = std::fs::remove_file(&trace);
    }
    std::fs::write(dir.join("stop"), "").unwrap();
    let (code, out, err) = target.finish();
    assert_eq!(code, Some(0), "{out} {err}");
}
