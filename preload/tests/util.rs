//! Helpers: locating the library, compiling C test programs, running commands
//! with and without the preload, reading the statistics line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Path of the `libmemtally.so` built alongside this test binary.
pub fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // The test binary is target/<profile>/deps/preload-<hash>; cargo leaves
    // the cdylib built for tests beside it, and `cargo build` puts it one
    // level up.
    let deps = exe.parent().expect("deps directory");
    let candidates = [deps.join("libmemtally.so"), deps.join("../libmemtally.so")];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| panic!("libmemtally.so not found beside {}", deps.display()))
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system temporary directory.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memtally-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles `tests/c/<source>` with the C (or C++) compiler into `dir`.
pub fn compile(source: &str, dir: &TempDir, extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(source);
    let cxx = source.ends_with(".cpp");
    let out = dir.join(source.split('.').next().unwrap());
    let status = Command::new(if cxx { "g++" } else { "cc" })
        .args(["-O2", "-g", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .args(extra)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the {} compiler: {e}",
                if cxx { "C++" } else { "C" }
            )
        });
    assert!(status.success(), "compiling {source} failed");
    out
}

/// Runs `cmd` with the library preloaded and `MEMTALLY_STATS=1`.
pub fn run_preloaded(cmd: &mut Command) -> Output {
    cmd.env("LD_PRELOAD", library()).env("MEMTALLY_STATS", "1");
    output_within(cmd, TIMEOUT)
}

/// How long any program a test runs may take: a hang (a deadlock in a
/// forked child, say) fails the test instead of stalling the suite.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `cmd` in a process group of its own and collects its output; if it
/// has not finished within `limit`, the whole group (its children too) is
/// killed and the test fails.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let child = cmd
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let pgid = child.id() as i32;
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, timed_out) = (done.clone(), timed_out.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !done.load(Ordering::Acquire) {
                if start.elapsed() > limit {
                    timed_out.store(true, Ordering::Release);
                    // SAFETY: signalling the process group we created.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let out = child.wait_with_output().expect("wait for the command");
    done.store(true, Ordering::Release);
    watchdog.join().unwrap();
    assert!(
        !timed_out.load(Ordering::Acquire),
        "{:?} did not finish within {limit:?}; stderr:\n{}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `memtally:` statistics lines in `stderr` (one per process that exited
/// normally), as the number of allocations each reports.
pub fn allocation_counts(stderr: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("memtally: allocations="))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("allocations="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// `stderr` without the statistics lines.
pub fn without_stats(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("memtally: allocations="))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `make()` twice, plain and preloaded, and checks: same exit status,
/// same stdout, same stderr apart from the statistics, and at least one
/// statistics line with at least `min_allocs` allocations.
pub fn same_with_and_without(what: &str, min_allocs: u64, make: impl Fn() -> Command) -> Output {
    let plain = make()
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let pre = run_preloaded(&mut make());
    assert_eq!(
        plain.status.code(),
        pre.status.code(),
        "{what}: exit status differs; preloaded stderr:\n{}",
        String::from_utf8_lossy(&pre.stderr)
    );
    assert!(
        plain.stdout == pre.stdout,
        "{what}: stdout differs:\n--- plain\n{}\n--- preloaded\n{}",
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&pre.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&plain.stderr).trim_end(),
        without_stats(&pre.stderr).trim_end(),
        "{what}: stderr differs"
    );
    let counts = allocation_counts(&pre.stderr);
    assert!(
        counts.iter().any(|&n| n >= min_allocs),
        "{what}: no process reported {min_allocs}+ allocations: {counts:?}\n{}",
        String::from_utf8_lossy(&pre.stderr)
    );
    pre
}

/// Is `program` on the PATH?
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Panics with a clear message when a program the test needs is missing;
/// `.ci/run` installs them, so a missing one is a broken set-up, not a skip.
pub fn require(program: &str) {
    assert!(
        have(program),
        "{program} is not installed; .ci/run installs it (apt-get)"
    );
}
