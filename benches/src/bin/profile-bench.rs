//! `profile-bench`: what recording costs, against heaptrack.
//!
//! It builds the C workload in `benches/profiler/workload.c` (two threads,
//! 5 million allocations each, sizes 16 B to 4 KiB, stacks 6 to 13 frames
//! deep), then runs it, each configuration in turn and repeatedly:
//! - `bare`: under `libmemtally.so` with recording off;
//! - `full`: `MEMTALLY=mode=full` (event records packed: `compress=on`);
//! - `full-plain`: `MEMTALLY=mode=full,compress=off`;
//! - `sampled`: `MEMTALLY=mode=sampled` (512 KiB mean interval);
//! - `heaptrack`: Debian's heaptrack, which records every event;
//!
//! and reports the median wall and CPU time of each as a ratio to `bare`,
//! the trace sizes, and how long `memtally report`, `flame` and `leaks`
//! take on the full trace against `heaptrack_print` on heaptrack's.
//!
//! With `--programs` it then measures the same configurations on real
//! programs, where allocations come between real work: GCC's `cc1`
//! compiling a generated C file, `python3` building, serialising and
//! storing a few hundred thousand objects, and `sqlite3` running a
//! generated script (each where installed). The workload above is the
//! recording issue's yardstick and a worst case (an allocation every 50 ns
//! or so); these say what a user pays. Run through cargo it first builds
//! what it needs:
//!
//! ```text
//! cargo run --release -p memtally-benches --bin profile-bench -- [--reps N] [--iters N] [--programs]
//! ```

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use memtally_benches::measure::{Measurement, run_measured};
use memtally_benches::report::median;

const USAGE: &str = "\
usage: profile-bench [--reps N] [--iters N] [--programs] [--no-workload]
                     [--no-heaptrack] [--no-build] [--keep DIR]

  --reps N        repetitions of each configuration (default 3)
  --iters N       operations per thread (default 5000000)
  --programs      also measure real programs (cc1, python3, sqlite3, where
                  installed)
  --no-workload   skip the synthetic workload and its analysis timings
  --no-heaptrack  skip heaptrack even if it is installed
  --no-build      do not run cargo build first
  --keep DIR      write the traces to DIR and keep them (default: a temporary
                  directory, removed at the end)
";

struct Options {
    reps: usize,
    iters: u64,
    heaptrack: bool,
    build: bool,
    keep: Option<PathBuf>,
    programs: bool,
    workload: bool,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        reps: 3,
        iters: 5_000_000,
        heaptrack: true,
        build: true,
        keep: None,
        programs: false,
        workload: true,
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--reps" => {
                o.reps = value("--reps")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--reps must be a positive integer")?
            }
            "--iters" => {
                o.iters = value("--iters")?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--iters must be a positive integer")?
            }
            "--no-heaptrack" => o.heaptrack = false,
            "--programs" => o.programs = true,
            "--no-workload" => o.workload = false,
            "--no-build" => o.build = false,
            "--keep" => o.keep = Some(PathBuf::from(value("--keep")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let options = match parse(env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("profile-bench: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("profile-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn exe_dir() -> Result<PathBuf, String> {
    let exe = env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    Ok(exe
        .parent()
        .ok_or("executable has no directory")?
        .to_path_buf())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The medians of a configuration's runs.
struct Row {
    name: &'static str,
    wall: f64,
    cpu: f64,
    rss_kib: u64,
    trace_bytes: u64,
}

fn run(o: &Options) -> Result<(), String> {
    if o.build {
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "memtally-preload",
                "-p",
                "memtally",
            ])
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("cargo build failed".into());
        }
    }
    let dir = exe_dir()?;
    let lib = dir.join("libmemtally.so");
    let cli = dir.join("memtally");
    if !lib.exists() {
        return Err(format!(
            "{} is missing (cargo build --release -p memtally-preload)",
            lib.display()
        ));
    }
    let work = match &o.keep {
        Some(d) => d.clone(),
        None => env::temp_dir().join(format!("memtally-profile-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let heaptrack = o.heaptrack && have("heaptrack") && have("heaptrack_print");
    if o.heaptrack && !heaptrack {
        eprintln!("profile-bench: heaptrack is not installed; its rows are skipped");
    }
    let mut configs: Vec<&'static str> = vec!["bare", "full", "full-plain", "sampled"];
    if heaptrack {
        configs.push("heaptrack");
    }
    if o.workload {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiler/workload.c");
        let program = work.join("workload");
        let status = Command::new("cc")
            .args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&program)
            .arg(&source)
            .status()
            .map_err(|e| format!("cannot run cc: {e}"))?;
        if !status.success() {
            return Err("compiling the workload failed".into());
        }
        let subject = Subject {
            name: "workload",
            argv: vec![program.into_os_string(), o.iters.to_string().into()],
        };
        let rows = measure(&subject, &configs, o.reps, &work, &lib)?;
        println!(
            "profile-bench: {} operations x 2 threads, median of {} runs; ratios are config / bare\n",
            o.iters, o.reps
        );
        print_rows(&rows);
        analyse(&work, &cli, heaptrack)?;
    }
    if o.programs {
        let subjects = programs(&work)?;
        if subjects.is_empty() {
            eprintln!("profile-bench: none of cc1, python3 and sqlite3 is installed");
        }
        for subject in &subjects {
            let rows = measure(subject, &configs, o.reps, &work, &lib)?;
            println!(
                "\nprofile-bench: {}, median of {} runs; ratios are config / bare\n",
                subject.describe(&work),
                o.reps
            );
            print_rows(&rows);
        }
    }
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// A program to measure, and the command line that runs it.
struct Subject {
    name: &'static str,
    argv: Vec<std::ffi::OsString>,
}

impl Subject {
    /// The name and command line, with paths into the work directory
    /// `work` given relative to it (its name says nothing).
    fn describe(&self, work: &Path) -> String {
        let prefix = format!("{}/", work.display());
        let words: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().replace(&prefix, ""))
            .collect();
        format!("{} (`{}`)", self.name, words.join(" "))
    }
}

/// Runs `subject` under each configuration in turn, `reps` times (the
/// order rotating from one repetition to the next), and returns each
/// configuration's medians.
fn measure(
    subject: &Subject,
    configs: &[&'static str],
    reps: usize,
    work: &Path,
    lib: &Path,
) -> Result<Vec<Row>, String> {
    let timeout = Duration::from_secs(600);
    let mut runs: Vec<(&'static str, Measurement, u64)> = Vec::new();
    for rep in 0..reps {
        for i in 0..configs.len() {
            let name = configs[(i + rep) % configs.len()];
            let stem = format!("{}.{name}.{rep}", subject.name);
            let trace = work.join(&stem);
            let mut cmd = match name {
                "heaptrack" => {
                    let mut c = Command::new("heaptrack");
                    c.arg("-o").arg(&trace).args(&subject.argv);
                    c
                }
                _ => {
                    let mut c = Command::new(&subject.argv[0]);
                    c.args(&subject.argv[1..]).env("LD_PRELOAD", lib);
                    let settings = match name {
                        "full" => Some("mode=full"),
                        "full-plain" => Some("mode=full,compress=off"),
                        "sampled" => Some("mode=sampled"),
                        _ => None,
                    };
                    if let Some(settings) = settings {
                        c.env(
                            "MEMTALLY",
                            format!("{settings},out={}.mtt", trace.display()),
                        );
                    }
                    c
                }
            };
            cmd.current_dir(work)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let m = run_measured(&mut cmd, timeout)?;
            if !m.outcome.is_success() {
                return Err(format!(
                    "{} under {name}, run {rep}, failed: {}",
                    subject.name,
                    m.outcome.describe()
                ));
            }
            let bytes = trace_files(work, &stem).iter().map(|p| file_size(p)).sum();
            eprintln!(
                "profile-bench: {} {name:<9} rep {rep}: {:.2} s wall, {:.2} s CPU, trace {:.2} MB",
                subject.name,
                m.wall_s,
                m.user_s + m.sys_s,
                bytes as f64 / 1e6
            );
            runs.push((name, m, bytes));
        }
    }
    Ok(configs
        .iter()
        .map(|&name| {
            let of = |f: fn(&Measurement) -> f64| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.0 == name)
                    .map(|r| f(&r.1))
                    .collect();
                median(&v).unwrap_or(f64::NAN)
            };
            let bytes: Vec<f64> = runs
                .iter()
                .filter(|r| r.0 == name)
                .map(|r| r.2 as f64)
                .collect();
            Row {
                name,
                wall: of(|m| m.wall_s),
                cpu: of(|m| m.user_s + m.sys_s),
                rss_kib: of(|m| m.max_rss_kib as f64) as u64,
                trace_bytes: median(&bytes).unwrap_or(0.0) as u64,
            }
        })
        .collect())
}

fn print_rows(rows: &[Row]) {
    let bare = rows.iter().find(|r| r.name == "bare").expect("bare row");
    println!("| config | wall (s) | x bare | CPU (s) | x bare CPU | peak RSS (MiB) | trace (MB) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {:.3} | {:.2} | {:.3} | {:.2} | {:.1} | {:.2} |",
            r.name,
            r.wall,
            r.wall / bare.wall,
            r.cpu,
            r.cpu / bare.cpu,
            r.rss_kib as f64 / 1024.0,
            r.trace_bytes as f64 / 1e6
        );
    }
}

/// Times `memtally report`, `flame` and `leaks` on the workload's full
/// trace against `heaptrack_print` on heaptrack's.
fn analyse(work: &Path, cli: &Path, heaptrack: bool) -> Result<(), String> {
    let timeout = Duration::from_secs(600);
    let full_trace = trace_files(work, "workload.full.0").into_iter().next();
    let mut analysis = Vec::new();
    if let Some(t) = &full_trace
        && cli.exists()
    {
        let svg = work.join("flame.svg");
        for (name, args) in [
            ("memtally report", vec!["report".as_ref(), t.as_os_str()]),
            (
                "memtally flame",
                vec![
                    "flame".as_ref(),
                    t.as_os_str(),
                    "-o".as_ref(),
                    svg.as_os_str(),
                ],
            ),
            ("memtally leaks", vec!["leaks".as_ref(), t.as_os_str()]),
        ] {
            let mut c = Command::new(cli);
            c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            let m = run_measured(&mut c, timeout)?;
            analysis.push((name, m, file_size(t)));
        }
    }
    if heaptrack && let Some(t) = trace_files(work, "workload.heaptrack.0").into_iter().next() {
        let mut c = Command::new("heaptrack_print");
        c.arg(&t).stdout(Stdio::null()).stderr(Stdio::null());
        let m = run_measured(&mut c, timeout)?;
        analysis.push(("heaptrack_print", m, file_size(&t)));
    }
    if !analysis.is_empty() {
        println!("\n| analysis | wall (s) | CPU (s) | peak RSS (MiB) | input (MB) | outcome |");
        println!("| --- | ---: | ---: | ---: | ---: | --- |");
        for (name, m, bytes) in &analysis {
            println!(
                "| {name} | {:.3} | {:.3} | {:.1} | {:.1} | {} |",
                m.wall_s,
                m.user_s + m.sys_s,
                m.max_rss_kib as f64 / 1024.0,
                *bytes as f64 / 1e6,
                m.outcome.describe()
            );
        }
    }
    Ok(())
}

/// The traces a run wrote, its stem followed by an extension (heaptrack's
/// `.zst`; memtally's `.mtt`, and `.1.mtt`... for programs it executed),
/// first the one named by the stem alone.
fn trace_files(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .and_then(|f| f.strip_prefix(stem))
                        .is_some_and(|rest| rest.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| p.as_os_str().len());
    found
}

/// The path `program args` prints, when it runs and names an existing
/// file by its absolute path.
fn printed_path(program: &str, args: &[&str]) -> Option<PathBuf> {
    let out = Command::new(program).args(args).output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_absolute() && path.exists()).then_some(path)
}

/// The real programs installed here, with their inputs written to `work`.
fn programs(work: &Path) -> Result<Vec<Subject>, String> {
    let write = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = work.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let mut subjects = Vec::new();
    // cc1 on a preprocessed file: the compiler proper, one process (the
    // `gcc` driver would add a fork and exec per stage).
    if let Some(cc1) = printed_path("gcc", &["-print-prog-name=cc1"]) {
        let source = write("compile.c", generated_c(400))?;
        let pre = work.join("compile.i");
        let status = Command::new("gcc")
            .arg("-E")
            .arg(&source)
            .arg("-o")
            .arg(&pre)
            .status()
            .map_err(|e| format!("cannot run gcc: {e}"))?;
        if status.success() {
            subjects.push(Subject {
                name: "cc1",
                argv: vec![
                    cc1.into_os_string(),
                    "-quiet".into(),
                    "-O2".into(),
                    "-fpreprocessed".into(),
                    pre.into_os_string(),
                    "-o".into(),
                    work.join("compile.s").into_os_string(),
                ],
            });
        }
    }
    // python3 itself, not a wrapper script in front of it (pyenv's shims
    // are shell scripts: they would be measured and traced too).
    if let Some(python) = printed_path("python3", &["-c", "import sys; print(sys.executable)"]) {
        let script = write("objects.py", PYTHON_SCRIPT.to_string())?;
        subjects.push(Subject {
            name: "python3",
            argv: vec![python.into_os_string(), script.into_os_string()],
        });
    }
    if have("sqlite3") {
        let script = write("script.sql", generated_sql(100_000))?;
        subjects.push(Subject {
            name: "sqlite3",
            argv: vec![
                "sqlite3".into(),
                ":memory:".into(),
                format!(".read {}", script.display()).into(),
            ],
        });
    }
    Ok(subjects)
}

/// A C file of `n` small functions that format numbers, and a `main`
/// calling them all: enough code to keep `cc1`'s optimiser allocating.
fn generated_c(n: usize) -> String {
    let mut c = String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n");
    for i in 1..=n {
        c.push_str(&format!(
            "static int f{i}(int x) {{ char b[64]; snprintf(b, sizeof b, \"%d:%d\", x * {i}, x ^ {i}); \
             return (int)strlen(b) + (x > {i} ? f{}(x - 1) : x); }}\n",
            if i > 1 { i - 1 } else { 1 }
        ));
    }
    c.push_str("int main(void) {\n    int s = 0;\n");
    for i in 1..=n {
        c.push_str(&format!("    s += f{i}(s & 1023);\n"));
    }
    c.push_str("    printf(\"%d\\n\", s);\n    return 0;\n}\n");
    c
}

/// Builds, serialises, parses and stores a few hundred thousand objects.
const PYTHON_SCRIPT: &str = "\
import json, sqlite3
rows = [{'id': i, 'name': str(i) * 3, 'tags': [i % 7, i % 11]} for i in range(200000)]
text = json.dumps(rows)
back = json.loads(text)
db = sqlite3.connect(':memory:')
db.execute('create table t (id integer, name text)')
db.executemany('insert into t values (?, ?)', ((r['id'], r['name']) for r in back))
print(len(text), db.execute('select count(*), sum(length(name)) from t').fetchone())
";

/// A SQL script: a table of `n` rows filled, indexed, grouped and sorted.
fn generated_sql(n: usize) -> String {
    format!(
        "create table t (id integer primary key, k integer, v text);\n\
         with recursive c(i) as (select 1 union all select i + 1 from c where i < {n})\n\
         insert into t (k, v) select i % 97, printf('%08d-%s', i, hex(randomblob(12))) from c;\n\
         create index tk on t (k, v);\n\
         select k, count(*), max(v) from t group by k order by 3 desc limit 5;\n\
         select count(distinct substr(v, 10, 4)) from t;\n\
         update t set v = upper(v) where k % 3 = 0;\n\
         delete from t where k % 5 = 0;\n"
    )
}
