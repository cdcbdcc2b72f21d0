//! `memtally replay`: a trace's allocations run again through models of
//! embedded allocators, as a table (best first) or JSON.

use crate::args::ReplayArgs;
use anyhow::{Result, anyhow, bail};
use memtally_profiler::Symbolizer;
use memtally_profiler::replay::{self, ModelReport};
use memtally_profiler::report::{text_bytes, text_count, text_ns};
use serde::Serialize;
use std::io::{self, BufWriter, Write};

#[derive(Serialize)]
struct Document<'a> {
    trace: String,
    operations: u64,
    arena: Option<u64>,
    align: u64,
    header: u64,
    models: &'a [ModelReport],
    /// For each model's first failure: when and where, for people.
    failures: Vec<Option<String>>,
    /// The real allocators (`--against`).
    allocators: &'a [RealRun],
    /// The distributed model (`--distributed`).
    distributed: Option<&'a replay::distributed::Outcome>,
    /// What every replay skipped.
    skipped: replay::Skipped,
}

/// One real allocator's replay (medians over the runs).
#[derive(Serialize)]
struct RealRun {
    allocator: String,
    runs: usize,
    replay_ns: u64,
    /// The time inside the allocator's calls and a new block's first
    /// writes (the replay's time less the harness's turn-taking).
    alloc_ns: u64,
    peak_rss_kib: u64,
    /// The peak RSS above the worker's RSS before the replay (the program
    /// loaded): what the allocator needed for the workload.
    replay_rss_kib: u64,
    /// Allocations that returned null.
    failed: u64,
    /// Blocks still allocated at the end (never freed in the trace).
    leaked: u64,
    /// memtally's replay time / this allocator's (below 1: memtally faster).
    time_ratio: Option<f64>,
    /// memtally's time inside allocator calls / this allocator's.
    alloc_time_ratio: Option<f64>,
    /// memtally's replay RSS / this allocator's.
    rss_ratio: Option<f64>,
}

/// The directory of the replay workers.
fn worker(name: &str) -> Result<std::path::PathBuf> {
    let file = format!("replay-worker-{name}");
    let dirs = std::env::var_os("MEMTALLY_REPLAY_WORKERS")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|p| p.to_owned())),
        );
    for d in dirs {
        let p = d.join(&file);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the replay worker for {name} is not built ({file}: build it with cargo build --release -p memtally-benches)"
    )
}

/// What one run of a worker measured.
struct WorkerRun {
    replay_ns: u64,
    alloc_ns: u64,
    peak_rss_kib: u64,
    /// The RSS before the replay (the program loaded).
    base_rss_kib: u64,
    failed: u64,
    leaked: u64,
}

/// Runs `exe program` and returns what the worker measured (its peak RSS
/// is its `VmHWM`: `wait4`'s `ru_maxrss` would carry this process's own
/// RSS over the exec).
fn run_worker(exe: &std::path::Path, program: &std::path::Path) -> Result<WorkerRun> {
    let out = std::process::Command::new(exe)
        .arg(program)
        .output()
        .map_err(|e| anyhow!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Result<u64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("{} printed no {name}: {text}", exe.display()))
    };
    Ok(WorkerRun {
        replay_ns: field("replay_ns=")?,
        alloc_ns: field("alloc_ns=")?,
        peak_rss_kib: field("peak_rss_kib=")?,
        base_rss_kib: field("base_rss_kib=")?,
        failed: field("failed=")?,
        leaked: field("leaked=")?,
    })
}

/// Replays the trace on each real allocator asked for.
fn against(args: &ReplayArgs, ops: &[replay::Timed]) -> Result<Vec<RealRun>> {
    let workers: Vec<(String, std::path::PathBuf)> = args
        .against
        .iter()
        .map(|a| Ok((a.clone(), worker(a)?)))
        .collect::<Result<_>>()?;
    let program = replay::program::build(ops);
    let path = std::env::temp_dir().join(format!("memtally-replay-{}.prog", std::process::id()));
    std::fs::write(&path, replay::program::encode(&program))
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mut runs = Vec::new();
    let result = (|| -> Result<()> {
        for (name, exe) in &workers {
            let mut times = Vec::new();
            let mut inside = Vec::new();
            let mut rss = Vec::new();
            let mut added = Vec::new();
            let (mut failed, mut leaked) = (0, 0);
            for _ in 0..args.runs {
                let w = run_worker(exe, &path)?;
                failed = w.failed;
                leaked = w.leaked;
                times.push(w.replay_ns);
                inside.push(w.alloc_ns);
                rss.push(w.peak_rss_kib);
                added.push(w.peak_rss_kib.saturating_sub(w.base_rss_kib));
            }
            runs.push(RealRun {
                allocator: name.clone(),
                runs: args.runs,
                replay_ns: median(times),
                alloc_ns: median(inside),
                peak_rss_kib: median(rss),
                replay_rss_kib: median(added),
                failed,
                leaked,
                time_ratio: None,
                alloc_time_ratio: None,
                rss_ratio: None,
            });
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result?;
    if let Some((t, a, r)) = runs
        .iter()
        .find(|x| x.allocator == "memtally")
        .map(|m| (m.replay_ns, m.alloc_ns, m.replay_rss_kib))
    {
        for x in &mut runs {
            x.time_ratio = Some(t as f64 / x.replay_ns.max(1) as f64);
            x.alloc_time_ratio = Some(a as f64 / x.alloc_ns.max(1) as f64);
            x.rss_ratio = Some(r as f64 / x.replay_rss_kib.max(1) as f64);
        }
    }
    Ok(runs)
}

/// Values from 0 to 1 as block characters, eight levels (a space for 0).
fn sparkline(values: &[f64]) -> String {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .iter()
        .map(|v| LEVELS[((v.clamp(0.0, 1.0) * 8.0).ceil() as usize).min(8)])
        .collect()
}

/// Runs `memtally replay`.
pub fn run(args: &ReplayArgs) -> Result<()> {
    let recorded = replay::read(&args.file).map_err(crate::output::named(&args.file))?;
    if let Some(a) = &recorded.analysis {
        crate::output::warn_ending(&args.file, &a.ending, true);
    }
    let model = recorded.analysis.as_ref().map(|a| &a.model);
    let operations = recorded.ops.iter().filter(|t| t.op.is_allocation()).count() as u64;
    if model.is_some_and(|m| m.is_estimate()) {
        bail!(
            "{} was recorded in sampled mode: it holds a sample of the allocations, which cannot be replayed (record with --mode full)",
            args.file.display()
        );
    }
    if let Some(arena) = args.config.arena
        && arena < args.config.align.max(8) + args.config.header
    {
        bail!(
            "--arena {arena} is smaller than one block ({} bytes with its header)",
            args.config.align.max(8) + args.config.header
        );
    }
    let skipped = replay::skipped(&recorded.ops);
    if skipped.unknown_frees > 0 {
        eprintln!(
            "memtally replay: note: {}: {} frees of addresses not allocated in the trace are skipped",
            args.file.display(),
            text_count(skipped.unknown_frees)
        );
    }
    if skipped.recorded_failures > 0 {
        eprintln!(
            "memtally replay: note: {}: {} allocations that failed when recorded are not replayed",
            args.file.display(),
            text_count(skipped.recorded_failures)
        );
    }
    if let Some(d) = &args.distributed {
        let end = match model {
            Some(m) => m.duration_ns(),
            None => {
                let first = recorded.ops.first().map_or(0, |t| t.ticks);
                recorded.ops.last().map_or(0, |t| t.ticks - first)
            }
        };
        for c in d.churn.iter().filter(|c| c.at_ns > end) {
            eprintln!(
                "memtally replay: note: --churn {}@{} falls after the trace's end ({}): not applied",
                if c.add { "add" } else { "remove" },
                text_ns(c.at_ns),
                text_ns(end)
            );
        }
    }
    let real = if args.against.is_empty() {
        Vec::new()
    } else {
        against(args, &recorded.ops)?
    };
    let spread = args.distributed.as_ref().map(|d| {
        // Churn times are nanoseconds since the recording began (an
        // RMM log's times are nanoseconds already).
        let first = recorded.ops.first().map_or(0, |t| t.ticks);
        replay::distributed::run(d, &recorded.ops, |ticks| match model {
            Some(m) => m.since_start_ns(ticks),
            None => ticks.saturating_sub(first),
        })
    });
    let reports = replay::compare(&args.models, &args.config, &recorded.ops);
    let mut symbolizer = Symbolizer::default();
    let failures: Vec<Option<String>> = reports
        .iter()
        .map(|r| {
            r.outcome.failure.map(|f| {
                format!(
                    "{} at {}: {} asked for by {}, with {} free (largest block {})",
                    if f.free_bytes >= f.size {
                        "fragmentation"
                    } else {
                        "exhaustion"
                    },
                    text_ns(model.map_or(f.ticks, |m| m.since_start_ns(f.ticks))),
                    text_bytes(f.size),
                    model.map_or_else(
                        || "the log's thread".to_owned(),
                        |m| replay::describe_stack(m, &mut symbolizer, f.stack)
                    ),
                    text_bytes(f.free_bytes),
                    text_bytes(f.largest_free)
                )
            })
        })
        .collect();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let doc = Document {
            trace: args.file.display().to_string(),
            operations,
            arena: args.config.arena,
            align: args.config.align,
            header: args.config.header,
            models: &reports,
            failures,
            allocators: &real,
            distributed: spread.as_ref(),
            skipped,
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    if let (Some(d), Some(o)) = (&args.distributed, &spread) {
        writeln!(
            out,
            "memtally replay: {}: {} operations over {} nodes, placement {:?}, key {:?}",
            args.file.display(),
            text_count(operations),
            d.nodes,
            d.placement,
            d.key
        )?;
        writeln!(out, "  node        peak      at end")?;
        for (i, (p, l)) in o.peak.iter().zip(&o.last).enumerate() {
            writeln!(
                out,
                "  {i:>4}  {:>10}  {:>10}",
                text_bytes(*p),
                text_bytes(*l)
            )?;
        }
        writeln!(
            out,
            "  imbalance: peaks max/mean {:.2}, CV {:.3}; at the end max/mean {:.2}, CV {:.3}",
            o.peak_spread.max_over_mean,
            o.peak_spread.cv,
            o.last_spread.max_over_mean,
            o.last_spread.cv
        )?;
        writeln!(
            out,
            "  frees across nodes (a thread freeing a block homed on another node): {} of {} ({:.1}%)",
            text_count(o.remote_frees),
            text_count(o.frees),
            100.0 * o.remote_frees as f64 / o.frees.max(1) as f64
        )?;
        if let Some(c) = &o.coherence {
            writeln!(
                out,
                "  coherence (MSI directory, {} reads and {} writes annotated{}): {} data messages; sequential consistency {} invalidations, {} messages; release consistency ({} sync points) {} invalidations, {} messages",
                text_count(c.reads),
                text_count(c.writes),
                if c.unresolved > 0 {
                    format!(", {} to no live block left out", text_count(c.unresolved))
                } else {
                    String::new()
                },
                text_count(c.data_messages),
                text_count(c.sc_invalidations),
                text_count(c.sc_messages),
                text_count(c.sync_points),
                text_count(c.rc_invalidations),
                text_count(c.rc_messages)
            )?;
        }
        for m in &o.moves {
            writeln!(
                out,
                "  at {}: {} nodes, {} moved ({:.1}% of the live bytes)",
                text_ns(m.at_ns),
                m.nodes,
                text_bytes(m.bytes),
                m.share * 100.0
            )?;
        }
        if real.is_empty() && reports.is_empty() {
            out.flush()?;
            return Ok(());
        }
        writeln!(out)?;
    }
    if !real.is_empty() {
        writeln!(
            out,
            "memtally replay: {}: {} operations on real allocators, each in a process of its own (median of {} runs)",
            args.file.display(),
            text_count(operations),
            args.runs
        )?;
        writeln!(
            out,
            "  allocator  replay time  in allocator  replay RSS  peak RSS  memtally/this: time  in allocator    RSS"
        )?;
        let ratio = |r: Option<f64>| r.map_or("-".into(), |x| format!("{x:.3}"));
        for r in &real {
            writeln!(
                out,
                "  {:<9}  {:>11}  {:>12}  {:>10}  {:>8}  {:>19}  {:>12}  {:>5}",
                r.allocator,
                text_ns(r.replay_ns),
                text_ns(r.alloc_ns),
                text_bytes(r.replay_rss_kib * 1024),
                text_bytes(r.peak_rss_kib * 1024),
                ratio(r.time_ratio),
                ratio(r.alloc_time_ratio),
                ratio(r.rss_ratio)
            )?;
        }
        writeln!(
            out,
            "  (in allocator: the time inside its calls and a new block's first writes, without the threads' turn-taking; replay RSS: the peak above the worker's RSS before the replay; ratios below 1: memtally faster or smaller)"
        )?;
        if let Some(r) = real.first() {
            writeln!(
                out,
                "  {} blocks never freed in the trace were left at the end; {} allocations failed",
                text_count(r.leaked),
                text_count(r.failed)
            )?;
        }
        if reports.is_empty() {
            out.flush()?;
            return Ok(());
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "memtally replay: {}: {} operations through {} {}, best first",
        args.file.display(),
        text_count(operations),
        reports.len(),
        if reports.len() == 1 {
            "model"
        } else {
            "models"
        }
    )?;
    match args.config.arena {
        Some(a) => writeln!(
            out,
            "arena {} ({} bytes), blocks aligned to {}, {} bytes of header",
            text_bytes(a),
            a,
            args.config.align,
            args.config.header
        )?,
        None => writeln!(
            out,
            "each model at the smallest arena it fits; blocks aligned to {}, {} bytes of header",
            args.config.align, args.config.header
        )?,
    }
    let heads = [
        "model",
        "fits",
        "smallest arena",
        "peak",
        "J&W #4",
        "frag max",
        "frag mean",
        "steps mean",
        "p99",
        "max",
        "ns mean",
        "p99",
        "max",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let o = &r.outcome;
            vec![
                o.model.clone(),
                match &o.failure {
                    None => "yes".into(),
                    Some(f) => format!("no: op {}", text_count(f.index)),
                },
                r.smallest_arena.map_or("none".into(), text_bytes),
                text_bytes(o.peak_footprint),
                format!("{:.2}", o.jw4),
                format!("{:.1}%", o.frag_max * 100.0),
                format!("{:.1}%", o.frag_mean * 100.0),
                format!("{:.1}", o.steps_mean),
                o.steps_p99.to_string(),
                o.steps_max.to_string(),
                format!("{:.0}", o.ns_mean),
                o.ns_p99.to_string(),
                o.ns_max.to_string(),
            ]
        })
        .collect();
    let mut table = String::new();
    memtally_profiler::report::text_table(&mut table, &heads, &[0, 1], &rows);
    out.write_all(table.as_bytes())?;
    let duration = model.map_or(0, |m| m.duration_ns());
    writeln!(
        out,
        "fragmentation over time ({} stretches of {} each; each the largest in it, 0 to 100%):",
        replay::FRAG_POINTS,
        text_ns(duration / replay::FRAG_POINTS as u64)
    )?;
    let width = reports
        .iter()
        .map(|r| r.outcome.model.len())
        .max()
        .unwrap_or(0);
    for r in &reports {
        writeln!(
            out,
            "  {:<width$}  {}",
            r.outcome.model,
            sparkline(&r.outcome.frag_series)
        )?;
    }
    for (r, f) in reports.iter().zip(&failures) {
        if let Some(f) = f {
            writeln!(out, "{}: first failure by {f}", r.outcome.model)?;
        }
    }
    if let Some(r) = reports.first()
        && r.outcome.leaked_blocks > 0
    {
        writeln!(
            out,
            "note: {} blocks were never freed in the trace",
            text_count(r.outcome.leaked_blocks)
        )?;
    }
    writeln!(
        out,
        "steps: free-list nodes visited, bitmap searches, list insertions and removals, splits, merges, words copied by realloc; ns p99/max over every 16th operation"
    )?;
    out.flush()?;
    Ok(())
}
