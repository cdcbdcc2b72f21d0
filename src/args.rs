//! Command-line parsing (with `lexopt`, as ripgrep does) into a
//! [`Command`], and the help texts. Parsing does no I/O: checking that
//! files exist and finding the library are the subcommands' business.

use anyhow::{Context, Result, bail};
use lexopt::prelude::*;
use memtally_profiler::flame::Metric;
use std::ffi::OsString;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print this help text and exit 0.
    Help(&'static str),
    /// Print the version and exit 0.
    Version,
    /// `memtally run`.
    Run(RunArgs),
    /// `memtally report`.
    Report(ReportArgs),
    /// `memtally flame`.
    Flame(FlameArgs),
    /// `memtally leaks`.
    Leaks(LeaksArgs),
    /// `memtally errors`.
    Errors(ErrorsArgs),
    /// `memtally export`.
    Export(ExportArgs),
    /// `memtally plot`.
    Plot(PlotArgs),
    /// `memtally top`.
    Top(TopArgs),
    /// `memtally attach`.
    Attach(AttachArgs),
    /// `memtally replay`.
    Replay(ReplayArgs),
    /// `memtally pack`.
    Pack(PackArgs),
}

/// `memtally pack` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct PackArgs {
    /// The trace.
    pub file: PathBuf,
    /// Where the packed trace goes (default: beside it, `.packed.mtt`).
    pub output: Option<PathBuf>,
}

/// `memtally replay` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayArgs {
    /// The trace.
    pub file: PathBuf,
    /// The embedded models.
    pub models: Vec<memtally_profiler::replay::ModelKind>,
    /// Arena and model settings.
    pub config: memtally_profiler::replay::Config,
    /// Real allocators to replay against.
    pub against: Vec<String>,
    /// Runs per real allocator (the median is shown).
    pub runs: usize,
    /// The distributed model.
    pub distributed: Option<memtally_profiler::replay::distributed::Setup>,
    /// Print JSON.
    pub json: bool,
}

/// The recording modes `memtally run` can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every event with its stack.
    Full,
    /// A Poisson sample of allocations by bytes.
    Sampled,
    /// Counters only; no trace.
    Stats,
    /// The allocator alone (with `--control`: until a client attaches).
    Off,
}

impl Mode {
    /// The name the recorder's settings use.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Sampled => "sampled",
            Mode::Stats => "stats",
            Mode::Off => "off",
        }
    }

    /// Does the mode write a trace?
    pub fn writes_trace(self) -> bool {
        matches!(self, Mode::Full | Mode::Sampled)
    }
}

/// `memtally run` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// The recording mode.
    pub mode: Mode,
    /// Mean sampling interval in bytes (sampled mode).
    pub interval: Option<u64>,
    /// Most frames per stack.
    pub depth: Option<u32>,
    /// The trace path pattern (`%p` is the process id).
    pub output: Option<PathBuf>,
    /// Record child processes too.
    pub follow_children: bool,
    /// `--no-compress`: plain event records (`compress=off`).
    pub no_compress: bool,
    /// Print the report of the command's trace when it has exited.
    pub report: bool,
    /// Show the dashboard while the command runs.
    pub live: bool,
    /// Run a leak scan (reachability) when the command exits.
    pub leak_scan: bool,
    /// `--on-error report`: invalid frees are reported and ignored instead
    /// of stopping the program.
    pub report_errors: bool,
    /// `--guard`: guarded allocations at the default rate.
    pub guard: bool,
    /// `--guard-every N`: guard one allocation in N.
    pub guard_every: Option<u64>,
    /// `--races`: the watchpoint race detector.
    pub races: bool,
    /// Open a control socket (`control=on`) so that `memtally attach` and
    /// `memtally top --pid` can switch recording on later.
    pub control: bool,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// `memtally report` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct ReportArgs {
    /// The trace.
    pub file: PathBuf,
    /// Write JSON instead of text.
    pub json: bool,
    /// Frames shown per site.
    pub frames: usize,
    /// Sites shown per section.
    pub top: usize,
    /// Show memory by scope only (`--by scope`).
    pub by_scope: bool,
}

/// `memtally flame` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct FlameArgs {
    /// The trace.
    pub file: PathBuf,
    /// What the boxes measure.
    pub metric: Metric,
    /// Where the SVG (or folded stacks) go; `-` is standard output.
    pub output: Option<PathBuf>,
    /// Write folded stacks instead of an SVG.
    pub folded: bool,
    /// Draw the change from this trace to `file`.
    pub diff: Option<PathBuf>,
    /// Each scope as the root frame (`--by scope`).
    pub by_scope: bool,
    /// Draw this device's memory instead of the heap (`--device N|host`).
    pub device: Option<u32>,
}

/// `memtally errors` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorsArgs {
    /// The trace.
    pub file: PathBuf,
    /// Write JSON instead of text.
    pub json: bool,
    /// Exit with status 1 when the trace has a memory error.
    pub fail: bool,
    /// Frames shown per stack.
    pub frames: usize,
}

/// `memtally leaks` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct LeaksArgs {
    /// The trace.
    pub file: PathBuf,
    /// Write JSON instead of text.
    pub json: bool,
    /// A LeakSanitizer-style suppressions file.
    pub suppressions: Option<PathBuf>,
    /// Exit with status 1 when a leak remains.
    pub fail: bool,
    /// Program frames shown per site.
    pub frames: usize,
    /// Also list the sites whose live bytes kept growing.
    pub growth: bool,
    /// Also list, by scope, what outlived its scope instance.
    pub by_scope: bool,
}

/// The formats `memtally export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Go's heap-profile protobuf, gzipped.
    Pprof,
    /// Folded stacks of one metric.
    Folded,
    /// The JSON export document.
    Json,
    /// A RAPIDS RMM logging_resource_adaptor CSV log.
    RmmCsv,
    /// A PyTorch memory snapshot (pickle) of one device.
    TorchSnapshot,
}

impl ExportFormat {
    /// The file name extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Pprof => "pb.gz",
            ExportFormat::Folded => "folded",
            ExportFormat::Json => "json",
            ExportFormat::RmmCsv => "rmm.csv",
            ExportFormat::TorchSnapshot => "pickle",
        }
    }
}

/// `memtally export` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct ExportArgs {
    /// The trace.
    pub file: PathBuf,
    /// What to write.
    pub format: ExportFormat,
    /// Where it goes; `-` is standard output.
    pub output: Option<PathBuf>,
    /// The metric of folded stacks.
    pub metric: Metric,
    /// For rmm-csv: this device's memory instead of the heap.
    pub device: Option<u32>,
}

/// `memtally top` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct TopArgs {
    /// What the dashboard shows.
    pub source: TopSource,
}

/// What `memtally top` follows.
#[derive(Debug, PartialEq, Eq)]
pub enum TopSource {
    /// A trace file.
    File(PathBuf),
    /// A running process, attached to through its control socket.
    Pid(AttachArgs),
}

/// `memtally attach` arguments (and `memtally top --pid`'s).
#[derive(Debug, PartialEq, Eq)]
pub struct AttachArgs {
    /// The process.
    pub pid: u32,
    /// Full or sampled.
    pub mode: Mode,
    /// Mean sampling interval in bytes (sampled mode).
    pub interval: Option<u64>,
    /// Most frames per stack.
    pub depth: Option<u32>,
    /// Where the trace goes (default: a new `memtally.PID.attach.mtt`).
    pub output: Option<PathBuf>,
    /// Detach after this long (`memtally attach`; default: at Ctrl-C or
    /// when the process exits).
    pub duration: Option<std::time::Duration>,
    /// Print the trace's report after detaching (`memtally attach`).
    pub report: bool,
}

/// `memtally plot` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct PlotArgs {
    /// The trace.
    pub file: PathBuf,
    /// Where the SVG goes; `-` is standard output.
    pub output: Option<PathBuf>,
    /// Functions stacked (the rest is one layer).
    pub top: usize,
}

pub const MAIN_HELP: &str = "\
memtally: record a program's allocations and report where its memory went

Usage:
  memtally run [OPTIONS] -- COMMAND [ARGS...]   record COMMAND into a trace
  memtally attach [OPTIONS] PID                 record a running process (one
                                                started with --control)
  memtally report [OPTIONS] FILE                analyse a trace
  memtally flame [OPTIONS] FILE                 draw a flamegraph of a trace
  memtally leaks [OPTIONS] FILE                 what a trace never freed
  memtally errors [OPTIONS] FILE                its memory errors, with stacks
  memtally plot [OPTIONS] FILE                  draw the heap over time
  memtally top FILE                             the dashboard over a trace that
                                                is being written (or is done)
  memtally top --pid PID                        the dashboard, attached to a
                                                running process
  memtally view FILE                            the dashboard over a finished
                                                trace, with a time cursor
  memtally replay FILE --embedded MODELS        would it fit an embedded heap?
  memtally replay FILE --against ALLOCATORS     which allocator suits it?
  memtally replay FILE --distributed nodes=N    how would it spread over nodes?
  memtally export --format FMT [OPTIONS] FILE   pprof, folded stacks or JSON
  memtally pack FILE [-o OUT]                   compress a trace written plain

Options:
  -h, --help       print help (also: memtally COMMAND --help)
  -V, --version    print the version

Exit status: 0 on success; 2 when memtally itself fails (bad arguments, a
missing or unreadable trace); `memtally run` exits with its command's status.
";

pub const RUN_HELP: &str = "\
memtally run: run a command with libmemtally.so preloaded and record a trace

Usage:
  memtally run [OPTIONS] [--] COMMAND [ARGS...]

Options:
  --mode MODE          full (every event, the default), sampled (a Poisson
                       sample by bytes: cheap enough for production), stats
                       (counters printed at exit, no trace) or off (the
                       allocator alone: with --control, nothing is recorded
                       until a client attaches)
  --interval BYTES     mean sampling interval for --mode sampled (suffixes
                       K, M, G; the recorder's default is 512K)
  --depth N            most frames recorded per stack (1 to 256; default 64)
  -o, --output FILE    where the trace goes; %p is replaced by the process
                       id (default: memtally.%p.mtt in this directory)
  --follow-children    record forked child processes too (each writes its
                       own trace)
  --no-compress        write events as they are recorded, not regrouped by
                       field and compressed with zstd by the writer thread
                       (which it does with CPU the program leaves spare;
                       plain traces of real programs are 1.8-6x larger)
  --report             when the command has exited, print the report of its
                       trace (as `memtally report` does)
  --live               show the dashboard while the command runs (its output
                       goes to the dashboard's output tab and to a .out file
                       beside the trace; quitting the dashboard stops it)
  --leak-scan          when the command exits, find its leaks by reachability
                       (LeakSanitizer's semantics: the other threads are
                       stopped and every root scanned; blocks nothing points
                       to are direct leaks, blocks only leaks point to are
                       indirect); `memtally leaks` then classifies them
  --on-error WHAT      what an invalid free (double free, foreign or interior
                       pointer, mismatched Rust dealloc layout) does: abort
                       (default, as glibc does) or report (print it, record
                       it, ignore the call and run on)
  --guard              guarded allocations (GWP-ASan style): a sample of
                       allocations (one per 64 MiB allocated on average) sits
                       between inaccessible pages, so an overflow, underflow
                       or use after free faults at the access and is
                       reported with the access, allocation and free stacks
  --guard-every N      guard one allocation in N instead (1: every one that
                       fits one of the 32 slots)
  --races              the race detector: every 50 ms a hardware watchpoint
                       watches a word of a sampled heap block for 10 ms; two
                       threads touching it within 80 us, one writing, are
                       recorded as a data race with both stacks (memtally
                       errors shows them); its traps and stalls take at
                       most 1% of a core (MEMTALLY's race_budget). Needs
                       perf_event_open
  --control            open a control socket, private to your user, through
                       which `memtally attach PID` and `memtally top --pid
                       PID` switch recording on in the running command (and
                       off again when they detach); see docs/control.md
  -h, --help           print this help

A command that executes another program (env, nice, a shell's exec, pyenv's
shims) goes on recording it, in a trace of its own: FILE with .1, .2, ...
before the extension. --report reports the last program the command ran.

PYTHONMALLOC=malloc is set unless the environment sets PYTHONMALLOC, so that
a Python program's objects are seen: CPython otherwise takes small objects
from arenas it maps itself.

The library is found through the MEMTALLY_LIB environment variable, then next
to the memtally executable, then in ../lib/memtally/ relative to it. Build it
with `cargo build --release -p memtally-preload`.

Exit status: the command's own (128+N if a signal N killed it); 127 if the
command was not found, 126 if it could not be run; 2 for bad arguments.
";

pub const FLAME_HELP: &str = "\
memtally flame: draw an interactive SVG flamegraph of where memory went

Usage:
  memtally flame [OPTIONS] FILE

Options:
  --metric METRIC   what the boxes measure: allocated (bytes, the default),
                    count (allocations), peak (bytes live at the heap's
                    peak), leaked (bytes live when the trace ends), temporary
                    (allocations freed at once), live-at=TIME (bytes live at
                    TIME after the recording started: 1.5s, 250ms)
  -o, --output FILE where the SVG goes (default: the trace's name with
                    .METRIC.svg, in this directory; - for standard output)
  --folded          write the folded stacks (one `frames value` line per
                    stack, outermost frame first) instead of an SVG; to
                    standard output unless -o is given
  --diff BASE       draw the change from the trace BASE to FILE: boxes sized
                    by FILE's values, red where a stack grew, blue where it
                    shrank
  --by WHAT         site (the default) or scope: each scope the program
                    entered is a root frame ([scope NAME]) over the stacks
                    that allocated in it, the rest under [no scope]
  --device N        draw device N's memory (or host: pinned host memory)
                    seen by the gpu-shim instead of the heap, by the host
                    stacks that allocated it, each under a leaf naming the
                    API called ([cudaMalloc]); metrics allocated, count
                    and leaked
  -h, --help        print this help
";

pub const ERRORS_HELP: &str = "\
memtally errors: every memory error a trace recorded, grouped, with stacks

Usage:
  memtally errors [OPTIONS] FILE

Options:
  --json        print a JSON document instead of text (see docs/errors-json.md)
  --frames N    frames shown per stack (default 12)
  --fail        exit with status 1 when the trace has a memory error (for CI)
  -h, --help    print this help

The errors: double and invalid frees (a pointer not from the allocator or
into the middle of a block), Rust deallocations whose layout does not
match the block, and faults on guarded allocations (memtally run --guard):
use after free, buffer overflow and underflow. Errors of one kind, by one
call, from one stack form a group: its count, threads, first time, the
offending stack and, where the trace tells, the block's allocation stack
and the thread that first freed it.
";

pub const LEAKS_HELP: &str = "\
memtally leaks: what the recorded process never freed, by allocation stack

Usage:
  memtally leaks [OPTIONS] FILE

Options:
  --json               print a JSON document instead of text (see
                       docs/leaks-json.md)
  --suppressions FILE  leave out leaks matching FILE's leak:PATTERN lines
                       (LeakSanitizer's format: a pattern matches a frame's
                       function, source file or module; * is a wildcard,
                       ^ and $ anchor)
  --fail               exit with status 1 when a leak remains (for CI)
  --frames N           program frames shown per site (default 5)
  --growth             also list the sites whose live bytes kept growing
                       (a Mann-Kendall trend test over each site's live
                       bytes, with the growth rate): leaks of a long-running
                       process that has not exited
  --by scope           also list, by scope (request, task, span), the blocks
                       that outlived their scope instance (docs/scopes.md)
  -h, --help           print this help

Exit status: 0, or 1 with --fail when leaks remain; 2 when memtally itself
fails (bad arguments, a missing or unreadable trace or suppressions file).
";

pub const REPORT_HELP: &str = "\
memtally report: analyse a trace and print where the memory went

Usage:
  memtally report [OPTIONS] FILE

Options:
  --json        print a JSON document instead of text (see docs/report-json.md)
  --frames N    frames shown per site (default 5)
  --top N       sites shown per section (default 5)
  --by WHAT     site (the default: every section) or scope (the summary and
                memory by scope: request, task or span; see docs/scopes.md)
  -h, --help    print this help

The report gives totals, the heap's peak and the sites holding memory then,
what was still live at exit, the top sites by bytes, count and own peak,
temporary allocations, a size histogram, allocation latency and block
lifetimes, per-thread totals, and memory by scope when the program entered
scopes (memtally_alloc::scope, .in_scope on a future, memtally_scope_enter).
";

pub const EXPORT_HELP: &str = "\
memtally export: write a trace's analysis in a format other tools read

Usage:
  memtally export --format FORMAT [OPTIONS] FILE

Options:
  --format FORMAT   pprof: a gzipped pprof profile with Go's heap sample
                    types (alloc_objects, alloc_space, inuse_objects,
                    inuse_space; inuse = live when the trace ends), for
                    `go tool pprof`, Pyroscope or Grafana;
                    folded: folded stacks of one metric (see --metric), for
                    flamegraph tools;
                    json: every site with its whole stack and counters,
                    threads, timelines and markers (docs/export-json.md);
                    rmm-csv: every allocation and free as a RAPIDS RMM
                    log (Thread,Time,Action,Pointer,Size,Stream), which
                    RMM's REPLAY_BENCH and memtally replay read
                    torch-snapshot: a device's memory as a PyTorch memory
                    snapshot (pickle), for pytorch.org/memory_viz
  --device N        for rmm-csv and torch-snapshot (default 0 for the
                    latter): device N's memory seen by the gpu-shim
                    (allocations, frees and failed allocations) instead
                    of the heap, as RMM logs one device per file (default
                    name: the trace's name with .devN.rmm.csv)
  -o, --output FILE where it goes (default: the trace's name with .pb.gz,
                    .folded, .json or .rmm.csv, in this directory; - for
                    standard output)
  --metric METRIC   the metric of folded stacks, as for memtally flame
                    (default allocated)
  -h, --help        print this help
";

pub const TOP_HELP: &str = "\
memtally top: the dashboard over a trace

Follows a trace that another `memtally run` (or a program with MEMTALLY set)
is still writing, or shows a finished one: the program's heap, RSS and rates,
its allocation sites (sortable, filterable, by line, function, file or
library, all threads or one), each site's stack, threads, sizes and latency.
Press ? in the dashboard for the keys; , . < > move a time cursor through the
recording (the tables then show the heap as it was), P jumps to the peak, e
back to now. `memtally run --live -- COMMAND` runs a command with the
dashboard open.

With --pid, attaches to a running process that uses memtally (preloaded
with MEMTALLY=control=on, e.g. started by `memtally run --control`, or a Rust
program using MemTally with that setting): recording is switched on in it
from that moment, into a trace of your own, and off again when you quit. A
process that records already is followed through its own trace.

Usage:
  memtally top FILE
  memtally top --pid PID [OPTIONS]

Options (with --pid):
  --mode MODE        full (every event, the default) or sampled
  --interval BYTES   mean sampling interval for --mode sampled (suffixes K,
                     M, G; default 512K)
  --depth N          most frames recorded per stack (1 to 256; default 64)
  -o, --output FILE  where the trace goes (default: a new
                     memtally.PID.attach.mtt in this directory)
  -h, --help         print this help

Set NO_COLOR to draw without colours.
";

pub const ATTACH_HELP: &str = "\
memtally attach: record a running process from now on

Switches recording on in a process that uses memtally and has a control
socket (preloaded with MEMTALLY=control=on, e.g. started by `memtally run
--control --mode off -- COMMAND`, or a Rust program using MemTally with that
setting), into a trace you own, until Ctrl-C, --duration or the process's
exit; then recording is switched off and the process runs on as before.
Only the process's own user may attach. Blocks allocated before the attach
are not in the trace (their frees are counted as such).

Usage:
  memtally attach [OPTIONS] PID

Options:
  --mode MODE        full (every event, the default) or sampled (a Poisson
                     sample by bytes: cheap enough for production)
  --interval BYTES   mean sampling interval for --mode sampled (suffixes K,
                     M, G; default 512K)
  --depth N          most frames recorded per stack (1 to 256; default 64)
  -o, --output FILE  where the trace goes (default: a new
                     memtally.PID.attach.mtt in this directory)
  --duration SECS    detach after this many seconds
  --report           print the trace's report (as `memtally report` does)
                     after detaching
  -h, --help         print this help
";

pub const REPLAY_HELP: &str = "\
memtally replay: run a trace's allocations again through embedded allocators

Replays the recorded allocations, frees and reallocations, in the recorded
order, through models of embedded heaps over a fixed arena, and says for each
whether the workload fits (or the first allocation that fails: when, what
size, from where, and how much was free), the smallest arena that never
fails, the peak footprint, fragmentation (1 - largest free / total free,
maximum and mean over time; Johnstone and Wilson's peak footprint / peak live
bytes) and the cost of each operation in deterministic steps and nanoseconds.
Models are listed best first.

Usage:
  memtally replay FILE --embedded MODEL[,MODEL...]|all [OPTIONS]
  memtally replay FILE --against ALLOCATOR[,ALLOCATOR...] [--runs N]
  memtally replay FILE --distributed nodes=N[,placement=P][,key=K] [--churn C]

With --distributed the trace's memory is spread over N nodes: placement
ring:VNODES (consistent hashing, default ring:100), jump (jump consistent
hash) or rendezvous (highest random weight); key site (the allocation
stack, the default), thread or address. It reports each node's peak and
final live bytes, their imbalance (max/mean and coefficient of variation),
frees by a thread of a block homed on another node (messages), and with
--churn add@TIME,remove@TIME (1.5s, 250ms) the bytes each membership change
moves (nodes join with the next number; the highest-numbered leaves).

With --against (memtally, system, mimalloc, jemalloc) the operations are
replayed on each real allocator in a process of its own (one thread per
recorded thread, in the recorded global order; every block touched once per
page), and the replay time and peak RSS are compared, as memtally / that
allocator (the median of --runs runs, default 3). The workers are built by
`cargo build --release -p memtally-benches` and found next to memtally (or
in $MEMTALLY_REPLAY_WORKERS).

Models:
  tlsf             two-level segregated fit (O(1), good fit, merges at once)
  first-fit        first fit, address-ordered, merges at once
  next-fit         next fit (roving), address-ordered, merges at once
  best-fit         best fit, merges at once
  worst-fit        worst fit, merges at once
  buddy            binary buddy
  slab:S,S,...     fixed-block pools of sizes S sharing the arena (Zephyr
                   k_mem_slab-like; a full pool fails, no borrowing)
  freertos-heap2   FreeRTOS heap_2: best fit, never merges
  freertos-heap4   FreeRTOS heap_4: first fit, address-ordered, merges
  freertos-heap5   heap_4 over several regions (--regions)
  all              every model but slab

Options:
  --arena SIZE     the arena to replay against (K, M, G suffixes); without it
                   each model runs at the smallest arena it fits
  --align N        block alignment in bytes (default 8)
  --header N       header bytes per block (default 8)
  --regions S,S    heap_5's region sizes (their proportions when the arena is
                   searched; default two equal regions)
  --json           print a JSON document
  -h, --help       print this help

The trace must be recorded in full mode (a sampled trace has only a sample
of the allocations).
";

pub const VIEW_HELP: &str = "\
memtally view: the dashboard over a finished trace, post-mortem

The heap, RSS and sites as at the end of the recording; move the time cursor
with , and . (a fiftieth of the recording) or < and > (a tenth) to see the
heap as it was at any moment (the trace is read again up to it), P jumps to
the heap's peak, e returns to the end. Every other key is as in `memtally
top` (press ? for them all).

Usage:
  memtally view FILE

Options:
  -h, --help        print this help

Set NO_COLOR to draw without colours.
";

pub const PLOT_HELP: &str = "\
memtally plot: draw the heap over time as an SVG

The heap is stacked by the functions that held the most of it at its peak
(the rest in grey), with the resident set size as a dashed line, the peak
marked, and markers set with memtally_alloc::mark or memtally_mark drawn as
labelled lines. Hover over a layer for its name.

Usage:
  memtally plot [OPTIONS] FILE

Options:
  -o, --output FILE where the SVG goes (default: the trace's name with
                    .timeline.svg, in this directory; - for standard output)
  --top N           functions stacked (default 8)
  -h, --help        print this help
";

pub const PACK_HELP: &str = "\
memtally pack: compress a trace whose events were written plain

The recorder packs events (regrouped by field, compressed with zstd) with
CPU time the program leaves spare, so a program that kept every CPU busy,
or one recorded with --no-compress, has a plain trace. This writes a copy
with every event record that packing makes smaller packed: 1.8 to 6 times
smaller for most programs. Every analysis reads both alike.

Usage:
  memtally pack [OPTIONS] FILE

Options:
  -o, --output FILE where the packed trace goes (default: the trace's name
                    with .packed.mtt, in its directory); never the input,
                    never an existing file
  -h, --help        print this help
";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut p = lexopt::Parser::from_args(args);
    match p.next()? {
        None => bail!("no command given (try memtally --help)"),
        Some(Short('h') | Long("help")) => Ok(Command::Help(MAIN_HELP)),
        Some(Short('V') | Long("version")) => Ok(Command::Version),
        Some(Value(cmd)) => match cmd.to_str() {
            Some("run") => parse_run(&mut p).context("run"),
            Some("report") => parse_report(&mut p).context("report"),
            Some("flame") => parse_flame(&mut p).context("flame"),
            Some("leaks") => parse_leaks(&mut p).context("leaks"),
            Some("errors") => parse_errors(&mut p).context("errors"),
            Some("export") => parse_export(&mut p).context("export"),
            Some("plot") => parse_plot(&mut p).context("plot"),
            Some("top") => parse_top(&mut p, TOP_HELP).context("top"),
            Some("replay") => parse_replay(&mut p).context("replay"),
            Some("attach") => parse_attach(&mut p).context("attach"),
            Some("view") => parse_top(&mut p, VIEW_HELP).context("view"),
            Some("pack") => parse_pack(&mut p).context("pack"),
            Some("help") => Ok(Command::Help(match p.next()? {
                Some(Value(v)) if v == "run" => RUN_HELP,
                Some(Value(v)) if v == "report" => REPORT_HELP,
                Some(Value(v)) if v == "flame" => FLAME_HELP,
                Some(Value(v)) if v == "leaks" => LEAKS_HELP,
                Some(Value(v)) if v == "errors" => ERRORS_HELP,
                Some(Value(v)) if v == "export" => EXPORT_HELP,
                Some(Value(v)) if v == "plot" => PLOT_HELP,
                Some(Value(v)) if v == "top" => TOP_HELP,
                Some(Value(v)) if v == "replay" => REPLAY_HELP,
                Some(Value(v)) if v == "view" => VIEW_HELP,
                Some(Value(v)) if v == "attach" => ATTACH_HELP,
                Some(Value(v)) if v == "pack" => PACK_HELP,
                _ => MAIN_HELP,
            })),
            _ => bail!(
                "unknown command {} (the commands are run, attach, report, flame, leaks, errors, plot, top, view, replay, export and pack)",
                cmd.to_string_lossy()
            ),
        },
        Some(other) => Err(other.unexpected().into()),
    }
}

fn parse_run(p: &mut lexopt::Parser) -> Result<Command> {
    let mut mode = Mode::Full;
    let mut interval = None;
    let mut depth = None;
    let mut output = None;
    let mut follow_children = false;
    let mut no_compress = false;
    let mut report = false;
    let mut live = false;
    let mut leak_scan = false;
    let mut report_errors = false;
    let mut guard = false;
    let mut guard_every = None;
    let mut races = false;
    let mut control = false;
    let mut command = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(RUN_HELP)),
            Long("mode") => {
                let v = p.value()?;
                mode = match v.to_str() {
                    Some("full") => Mode::Full,
                    Some("sampled") => Mode::Sampled,
                    Some("stats") => Mode::Stats,
                    Some("off") => Mode::Off,
                    _ => bail!(
                        "invalid --mode {} (expected full, sampled, stats or off)",
                        v.to_string_lossy()
                    ),
                };
            }
            Long("interval") => interval = Some(parse_bytes(&p.value()?.string()?)?),
            Long("depth") => depth = Some(parse_depth(&p.value()?.string()?)?),
            Short('o') | Long("output") => output = Some(PathBuf::from(p.value()?)),
            Long("follow-children") => follow_children = true,
            Long("no-compress") => no_compress = true,
            Long("report") => report = true,
            Long("live") => live = true,
            Long("leak-scan") => leak_scan = true,
            Long("guard") => guard = true,
            Long("races") => races = true,
            Long("control") => control = true,
            Long("guard-every") => {
                let v = p.value()?.string()?;
                let n: u64 = v.parse().ok().filter(|&n| n >= 1).with_context(|| {
                    format!("invalid --guard-every {v} (expected a count of at least 1)")
                })?;
                guard_every = Some(n);
            }
            Long("on-error") => {
                let v = p.value()?;
                report_errors = match v.to_str() {
                    Some("report") => true,
                    Some("abort") => false,
                    _ => bail!(
                        "invalid --on-error {} (expected abort or report)",
                        v.to_string_lossy()
                    ),
                };
            }
            Value(v) => {
                command.push(v);
                command.extend(p.raw_args()?);
                break;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if report && !mode.writes_trace() {
        bail!(
            "--report needs a trace, which --mode {} does not write",
            mode.name()
        );
    }
    if live && !mode.writes_trace() {
        bail!(
            "--live needs a trace, which --mode {} does not write",
            mode.name()
        );
    }
    if races && !mode.writes_trace() {
        bail!("--races needs a trace to report into (--mode full or sampled)");
    }
    if command.is_empty() {
        bail!("no command to run (usage: memtally run [OPTIONS] -- COMMAND [ARGS...])");
    }
    if interval.is_some() && mode != Mode::Sampled {
        bail!("--interval applies only to --mode sampled");
    }
    if let Some(out) = &output
        && follow_children
        && !out.as_os_str().to_string_lossy().contains("%p")
    {
        bail!(
            "with --follow-children the output path must contain %p (each process writes its own trace), not {}",
            out.display()
        );
    }
    Ok(Command::Run(RunArgs {
        mode,
        interval,
        depth,
        output,
        follow_children,
        no_compress,
        report,
        live,
        leak_scan,
        report_errors,
        guard,
        guard_every,
        races,
        control,
        command,
    }))
}

fn parse_flame(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut metric = Metric::Allocated;
    let mut output = None;
    let mut folded = false;
    let mut diff = None;
    let mut by_scope = false;
    let mut device = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(FLAME_HELP)),
            Long("by") => by_scope = parse_by(&p.value()?)?,
            Long("device") => device = Some(parse_device(&p.value()?.string()?)?),
            Long("metric") => {
                metric = Metric::parse(&p.value()?.string()?).map_err(anyhow::Error::msg)?;
            }
            Short('o') | Long("output") => output = Some(PathBuf::from(p.value()?)),
            Long("folded") => folded = true,
            Long("diff") => diff = Some(PathBuf::from(p.value()?)),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (flame reads one trace; compare two with --diff BASE)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("no trace given (usage: memtally flame [OPTIONS] FILE)")?;
    if folded && diff.is_some() {
        bail!("--folded and --diff do not go together (fold each trace, then compare)");
    }
    if device.is_some() {
        if by_scope {
            bail!("--device and --by scope do not go together (device memory has no scopes)");
        }
        if !matches!(metric, Metric::Allocated | Metric::Count | Metric::Leaked) {
            bail!(
                "--device draws the metrics allocated, count and leaked only (not {})",
                metric.name()
            );
        }
    }
    Ok(Command::Flame(FlameArgs {
        file,
        metric,
        output,
        folded,
        diff,
        by_scope,
        device,
    }))
}

/// A device: its ordinal, or `host` (pinned host memory).
fn parse_device(text: &str) -> Result<u32> {
    if text == "host" {
        return Ok(memtally_alloc::trace::device::HOST);
    }
    match text.parse::<u32>() {
        Ok(n) if n != memtally_alloc::trace::device::HOST => Ok(n),
        _ => bail!("invalid --device {text:?} (expected a device number such as 0, or host)"),
    }
}

fn parse_replay(p: &mut lexopt::Parser) -> Result<Command> {
    use memtally_profiler::replay::{Config, ModelKind};
    let mut file = None;
    let mut models = None;
    let mut config = Config::default();
    let mut json = false;
    let mut against = Vec::new();
    let mut runs = 3;
    let mut distributed = None;
    let mut churn = Vec::new();
    let number = |flag: &str, v: &str| -> Result<u64> {
        v.parse::<u64>()
            .ok()
            .filter(|n| (1..=1 << 20).contains(n))
            .with_context(|| format!("invalid {flag} {v} (expected 1 to 1048576 bytes)"))
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(REPLAY_HELP)),
            Long("embedded") => {
                let v = p.value()?.string()?;
                let list = if v == "all" {
                    ModelKind::all()
                } else {
                    // Commas separate models, but a slab's sizes use them
                    // too: a part that is a number belongs to the slab.
                    let mut list: Vec<String> = Vec::new();
                    for part in v.split(',') {
                        match list.last_mut() {
                            Some(last)
                                if last.starts_with("slab:")
                                    && part.chars().all(|c| c.is_ascii_digit())
                                    && !part.is_empty() =>
                            {
                                last.push(',');
                                last.push_str(part);
                            }
                            _ => list.push(part.to_owned()),
                        }
                    }
                    let mut models = Vec::new();
                    for m in &list {
                        if m == "all" {
                            models.extend(ModelKind::all());
                        } else {
                            models.push(ModelKind::parse(m).map_err(anyhow::Error::msg)?);
                        }
                    }
                    models
                };
                models = Some(list);
            }
            Long("arena") => {
                let text = p.value()?.string()?;
                let arena = parse_bytes(&text)?;
                if arena > memtally_profiler::replay::MAX_ARENA {
                    bail!("--arena {text} is larger than the 1T a model can replay over");
                }
                config.arena = Some(arena);
            }
            Long("align") => {
                let v = p.value()?.string()?;
                let n = number("--align", &v)?;
                if !n.is_power_of_two() {
                    bail!("invalid --align {v} (expected a power of two)");
                }
                config.align = n;
            }
            Long("header") => {
                let v = p.value()?.string()?;
                config.header = v
                    .parse()
                    .ok()
                    .filter(|n: &u64| *n <= 4096)
                    .with_context(|| format!("invalid --header {v} (expected 0 to 4096 bytes)"))?;
            }
            Long("regions") => {
                let v = p.value()?.string()?;
                config.regions = v
                    .split(',')
                    .map(parse_bytes)
                    .collect::<Result<Vec<_>>>()
                    .with_context(|| format!("invalid --regions {v}"))?;
            }
            Long("json") => json = true,
            Long("against") => {
                let v = p.value()?.string()?;
                for a in v.split(',') {
                    match a {
                        "memtally" | "system" | "mimalloc" | "jemalloc" => {
                            against.push(a.to_owned())
                        }
                        _ => bail!(
                            "unknown allocator {a:?} in --against (expected memtally, system, mimalloc or jemalloc)"
                        ),
                    }
                }
            }
            Long("runs") => runs = parse_count("--runs", &p.value()?.string()?)?,
            Long("distributed") => {
                distributed = Some(
                    memtally_profiler::replay::distributed::Setup::parse(&p.value()?.string()?)
                        .map_err(anyhow::Error::msg)?,
                )
            }
            Long("churn") => {
                churn = memtally_profiler::replay::distributed::Setup::parse_churn(
                    &p.value()?.string()?,
                )
                .map_err(anyhow::Error::msg)?
            }
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (replay reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("no trace given (usage: memtally replay FILE --embedded MODELS)")?;
    if !churn.is_empty() {
        match &mut distributed {
            Some(d) => d.churn = churn,
            None => bail!("--churn applies only to --distributed"),
        }
    }
    if models.is_none() && against.is_empty() && distributed.is_none() {
        bail!(
            "nothing to replay against: --embedded tlsf,first-fit,...|all, --against memtally,system,mimalloc,jemalloc and/or --distributed nodes=N,..."
        );
    }
    Ok(Command::Replay(ReplayArgs {
        file,
        models: models.unwrap_or_default(),
        config,
        json,
        against,
        runs,
        distributed,
    }))
}

fn parse_top(p: &mut lexopt::Parser, help: &'static str) -> Result<Command> {
    let view = help == VIEW_HELP;
    let mut file = None;
    let mut attach = AttachParser::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(help)),
            Long("pid") if !view => {
                let v = p.value()?.string()?;
                attach.pid = Some(parse_pid(&v)?);
            }
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (top reads one trace)",
                v.to_string_lossy()
            ),
            Short(c) if !view && AttachParser::takes(&format!("-{c}")) => {
                attach.option(p, &format!("-{c}"))?;
            }
            Long(l) if !view && AttachParser::takes(l) => {
                let name = l.to_owned();
                attach.option(p, &name)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if attach.pid.is_some() || attach.any_option {
        if let Some(f) = file {
            bail!(
                "give a trace or --pid, not both ({} and --pid)",
                f.display()
            );
        }
        if attach.duration.is_some() {
            bail!("--duration applies to memtally attach (the dashboard detaches when you quit)");
        }
        let args = attach.finish("usage: memtally top --pid PID")?;
        return Ok(Command::Top(TopArgs {
            source: TopSource::Pid(args),
        }));
    }
    let file = file.context(if view {
        "no trace given (usage: memtally view FILE)"
    } else {
        "no trace given (usage: memtally top FILE, or memtally top --pid PID)"
    })?;
    Ok(Command::Top(TopArgs {
        source: TopSource::File(file),
    }))
}

fn parse_attach(p: &mut lexopt::Parser) -> Result<Command> {
    let mut attach = AttachParser::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(ATTACH_HELP)),
            Long("report") => attach.report = true,
            Value(v) if attach.pid.is_none() => {
                attach.pid = Some(parse_pid(&v.string()?)?);
            }
            Value(v) => bail!(
                "unexpected argument {} (attach takes one process id)",
                v.to_string_lossy()
            ),
            Short(c) if AttachParser::takes(&format!("-{c}")) => {
                attach.option(p, &format!("-{c}"))?;
            }
            Long(l) if AttachParser::takes(l) => {
                let name = l.to_owned();
                attach.option(p, &name)?;
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Command::Attach(
        attach.finish("usage: memtally attach [OPTIONS] PID")?,
    ))
}

/// The options `memtally attach` and `memtally top --pid` share.
#[derive(Default)]
struct AttachParser {
    pid: Option<u32>,
    mode: Option<Mode>,
    interval: Option<u64>,
    depth: Option<u32>,
    output: Option<PathBuf>,
    duration: Option<std::time::Duration>,
    report: bool,
    /// An option other than --pid was given.
    any_option: bool,
}

impl AttachParser {
    /// Is `name` (a long option's name, or `-o`) one of the shared options?
    fn takes(name: &str) -> bool {
        matches!(
            name,
            "mode" | "interval" | "depth" | "-o" | "output" | "duration"
        )
    }

    /// Takes the value of the shared option `name` (see [`Self::takes`]).
    fn option(&mut self, p: &mut lexopt::Parser, name: &str) -> Result<()> {
        match name {
            "mode" => {
                let v = p.value()?;
                self.mode = Some(match v.to_str() {
                    Some("full") => Mode::Full,
                    Some("sampled") => Mode::Sampled,
                    _ => bail!(
                        "invalid --mode {} (expected full or sampled)",
                        v.to_string_lossy()
                    ),
                });
            }
            "interval" => self.interval = Some(parse_bytes(&p.value()?.string()?)?),
            "depth" => self.depth = Some(parse_depth(&p.value()?.string()?)?),
            "duration" => {
                let v = p.value()?.string()?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
                    .with_context(|| {
                        format!("invalid --duration {v} (expected seconds, more than 0)")
                    })?;
                self.duration = Some(std::time::Duration::from_secs_f64(secs));
            }
            _ => self.output = Some(PathBuf::from(p.value()?)),
        }
        self.any_option = true;
        Ok(())
    }

    fn finish(self, usage: &str) -> Result<AttachArgs> {
        let pid = self
            .pid
            .with_context(|| format!("no process id given ({usage})"))?;
        let mode = self.mode.unwrap_or(Mode::Full);
        if self.interval.is_some() && mode != Mode::Sampled {
            bail!("--interval applies only to --mode sampled");
        }
        if let Some(out) = &self.output
            && out.as_os_str().as_encoded_bytes().contains(&b'\n')
        {
            bail!("the output path {} contains a newline", out.display());
        }
        Ok(AttachArgs {
            pid,
            mode,
            interval: self.interval,
            depth: self.depth,
            output: self.output,
            duration: self.duration,
            report: self.report,
        })
    }
}

fn parse_pid(v: &str) -> Result<u32> {
    v.parse::<u32>()
        .ok()
        .filter(|&n| n > 0 && n <= i32::MAX as u32)
        .with_context(|| format!("invalid process id {v}"))
}

fn parse_depth(v: &str) -> Result<u32> {
    v.parse()
        .ok()
        .filter(|n| (1..=256).contains(n))
        .with_context(|| format!("invalid --depth {v} (expected 1 to 256)"))
}

fn parse_pack(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut output = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(PACK_HELP)),
            Short('o') | Long("output") => output = Some(PathBuf::from(p.value()?)),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (pack reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("no trace given (usage: memtally pack [OPTIONS] FILE)")?;
    Ok(Command::Pack(PackArgs { file, output }))
}

fn parse_plot(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut output = None;
    let mut top = 8;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(PLOT_HELP)),
            Short('o') | Long("output") => output = Some(PathBuf::from(p.value()?)),
            Long("top") => top = parse_count("--top", &p.value()?.string()?)?,
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (plot reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("no trace given (usage: memtally plot [OPTIONS] FILE)")?;
    Ok(Command::Plot(PlotArgs { file, output, top }))
}

fn parse_export(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut format = None;
    let mut output = None;
    let mut metric = None;
    let mut device = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(EXPORT_HELP)),
            Long("device") => device = Some(parse_device(&p.value()?.string()?)?),
            Long("format") => {
                format = Some(match p.value()?.string()?.as_str() {
                    "pprof" => ExportFormat::Pprof,
                    "folded" => ExportFormat::Folded,
                    "json" => ExportFormat::Json,
                    "rmm-csv" => ExportFormat::RmmCsv,
                    "torch-snapshot" => ExportFormat::TorchSnapshot,
                    other => {
                        bail!(
                            "unknown format {other:?} (expected pprof, folded, json, rmm-csv or torch-snapshot)"
                        )
                    }
                });
            }
            Short('o') | Long("output") => output = Some(PathBuf::from(p.value()?)),
            Long("metric") => {
                metric = Some(Metric::parse(&p.value()?.string()?).map_err(anyhow::Error::msg)?);
            }
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (export reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("no trace given (usage: memtally export --format FORMAT FILE)")?;
    let format = format.context("no --format given (pprof, folded or json)")?;
    if metric.is_some() && format != ExportFormat::Folded {
        bail!("--metric applies to --format folded only (pprof and json carry every metric)");
    }
    if device.is_some() && !matches!(format, ExportFormat::RmmCsv | ExportFormat::TorchSnapshot) {
        bail!("--device applies to --format rmm-csv and torch-snapshot only (one device per file)");
    }
    if format == ExportFormat::TorchSnapshot && device == Some(memtally_alloc::trace::device::HOST)
    {
        bail!("--format torch-snapshot is of a device (--device N), not of host memory");
    }
    Ok(Command::Export(ExportArgs {
        file,
        format,
        output,
        metric: metric.unwrap_or(Metric::Allocated),
        device,
    }))
}

fn parse_leaks(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut json = false;
    let mut suppressions = None;
    let mut fail = false;
    let mut frames = 5;
    let mut growth = false;
    let mut by_scope = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(LEAKS_HELP)),
            Long("by") => by_scope = parse_by(&p.value()?)?,
            Long("growth") => growth = true,
            Long("json") => json = true,
            Long("suppressions") => suppressions = Some(PathBuf::from(p.value()?)),
            Long("fail") => fail = true,
            Long("frames") => frames = parse_count("--frames", &p.value()?.string()?)?,
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (leaks reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let file = file.context("no trace given (usage: memtally leaks [OPTIONS] FILE)")?;
    Ok(Command::Leaks(LeaksArgs {
        file,
        json,
        suppressions,
        fail,
        frames,
        growth,
        by_scope,
    }))
}

fn parse_errors(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut json = false;
    let mut fail = false;
    let mut frames = 12;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(ERRORS_HELP)),
            Long("json") => json = true,
            Long("fail") => fail = true,
            Long("frames") => frames = parse_count("--frames", &p.value()?.string()?)?,
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (errors reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(file) = file else {
        bail!("no trace file given (usage: memtally errors [OPTIONS] FILE)");
    };
    Ok(Command::Errors(ErrorsArgs {
        file,
        json,
        fail,
        frames,
    }))
}

fn parse_report(p: &mut lexopt::Parser) -> Result<Command> {
    let mut file = None;
    let mut json = false;
    let mut frames = 5;
    let mut top = 5;
    let mut by_scope = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(REPORT_HELP)),
            Long("by") => by_scope = parse_by(&p.value()?)?,
            Long("json") => json = true,
            Long("frames") => frames = parse_count("--frames", &p.value()?.string()?)?,
            Long("top") => top = parse_count("--top", &p.value()?.string()?)?,
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) => bail!(
                "unexpected argument {} (report reads one trace)",
                v.to_string_lossy()
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(file) = file else {
        bail!("no trace file given (usage: memtally report [OPTIONS] FILE)");
    };
    Ok(Command::Report(ReportArgs {
        file,
        json,
        frames,
        top,
        by_scope,
    }))
}

/// `--by site` (false) or `--by scope` (true).
fn parse_by(v: &std::ffi::OsStr) -> Result<bool> {
    match v.to_str() {
        Some("scope") => Ok(true),
        Some("site") => Ok(false),
        _ => bail!(
            "invalid --by {} (expected site or scope)",
            v.to_string_lossy()
        ),
    }
}

fn parse_count(flag: &str, v: &str) -> Result<usize> {
    v.parse()
        .ok()
        .filter(|&n| n > 0)
        .with_context(|| format!("invalid {flag} {v} (expected a positive number)"))
}

/// A byte count with an optional binary suffix: `4096`, `512K`, `2MiB`.
pub fn parse_bytes(v: &str) -> Result<u64> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => bail!("invalid byte count {v} (expected a number with an optional K, M or G)"),
    };
    let n: u64 = digits.parse().with_context(|| {
        format!("invalid byte count {v} (expected a number with an optional K, M or G)")
    })?;
    match n.checked_mul(1 << shift) {
        Some(b) if b > 0 => Ok(b),
        _ => bail!("invalid byte count {v} (must be between 1 and 2^64 - 1)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Result<Command> {
        parse(s.iter().map(OsString::from))
    }

    #[test]
    fn run_takes_options_then_the_command() {
        let Command::Run(r) = args(&[
            "run",
            "--mode",
            "sampled",
            "--interval",
            "64K",
            "--depth=32",
            "-o",
            "out.%p.mtt",
            "--follow-children",
            "--",
            "ls",
            "-l",
            "--color",
        ])
        .unwrap() else {
            panic!("not run");
        };
        assert_eq!(r.mode, Mode::Sampled);
        assert_eq!(r.interval, Some(65536));
        assert_eq!(r.depth, Some(32));
        assert_eq!(r.output, Some(PathBuf::from("out.%p.mtt")));
        assert!(r.follow_children);
        assert_eq!(r.command, ["ls", "-l", "--color"]);
        // Without `--`, options after the command belong to it.
        let Command::Run(r) = args(&["run", "ls", "--mode", "x"]).unwrap() else {
            panic!("not run");
        };
        assert_eq!(r.command, ["ls", "--mode", "x"]);
        assert_eq!(r.mode, Mode::Full);
    }

    #[test]
    fn attach_and_top_pid_parse() {
        let Command::Attach(a) = args(&[
            "attach",
            "--mode",
            "sampled",
            "--interval",
            "64k",
            "--duration",
            "2.5",
            "-o",
            "x.mtt",
            "4242",
        ])
        .unwrap() else {
            panic!("not attach");
        };
        assert_eq!(a.pid, 4242);
        assert_eq!(a.mode, Mode::Sampled);
        assert_eq!(a.interval, Some(64 << 10));
        assert_eq!(a.duration, Some(std::time::Duration::from_millis(2500)));
        assert_eq!(a.output, Some(PathBuf::from("x.mtt")));
        assert!(!a.report);
        let Command::Attach(a) = args(&["attach", "--report", "9"]).unwrap() else {
            panic!("not attach");
        };
        assert!(a.report);
        let Command::Top(t) = args(&["top", "--pid", "7", "--depth", "16"]).unwrap() else {
            panic!("not top");
        };
        let TopSource::Pid(a) = t.source else {
            panic!("not --pid");
        };
        assert_eq!((a.pid, a.mode, a.depth), (7, Mode::Full, Some(16)));
        let Command::Top(t) = args(&["top", "t.mtt"]).unwrap() else {
            panic!("not top");
        };
        assert_eq!(t.source, TopSource::File(PathBuf::from("t.mtt")));
        let err = |a: &[&str]| format!("{:#}", args(a).unwrap_err());
        assert_eq!(
            err(&["top", "--pid", "7", "--duration", "3"]),
            "top: --duration applies to memtally attach (the dashboard detaches when you quit)"
        );
        assert_eq!(
            err(&["top", "--mode", "full"]),
            "top: no process id given (usage: memtally top --pid PID)"
        );
        assert_eq!(err(&["attach", "0"]), "attach: invalid process id 0");
        assert_eq!(
            err(&["attach", "1", "2"]),
            "attach: unexpected argument 2 (attach takes one process id)"
        );
        assert_eq!(
            err(&["run", "--mode", "off", "--live", "ls"]),
            "run: --live needs a trace, which --mode off does not write"
        );
        let Command::Run(r) = args(&["run", "--control", "--mode", "off", "ls"]).unwrap() else {
            panic!("not run");
        };
        assert!(r.control);
        assert_eq!(r.mode, Mode::Off);
    }

    #[test]
    fn bad_run_arguments_say_what_is_wrong() {
        let err = |a: &[&str]| format!("{:#}", args(a).unwrap_err());
        assert_eq!(
            err(&["run", "--mode", "fast", "ls"]),
            "run: invalid --mode fast (expected full, sampled, stats or off)"
        );
        assert_eq!(
            err(&["run", "--interval", "4K", "ls"]),
            "run: --interval applies only to --mode sampled"
        );
        assert!(err(&["run"]).contains("no command to run"));
        assert_eq!(err(&["run", "--bogus"]), "run: invalid option '--bogus'");
        assert_eq!(
            err(&["run", "--depth", "300", "ls"]),
            "run: invalid --depth 300 (expected 1 to 256)"
        );
        assert!(
            err(&["run", "--follow-children", "-o", "x.mtt", "ls"]).contains("must contain %p")
        );
        assert!(err(&["frobnicate"]).starts_with("unknown command frobnicate"));
    }

    #[test]
    fn report_arguments() {
        assert_eq!(
            args(&["report", "t.mtt", "--json", "--frames", "9", "--top=3"]).unwrap(),
            Command::Report(ReportArgs {
                file: "t.mtt".into(),
                json: true,
                frames: 9,
                top: 3,
                by_scope: false
            })
        );
        assert!(
            format!("{:#}", args(&["report", "--frames", "x", "t"]).unwrap_err())
                .contains("invalid --frames x")
        );
        assert_eq!(
            args(&["report", "--help"]).unwrap(),
            Command::Help(REPORT_HELP)
        );
        assert_eq!(args(&["help", "run"]).unwrap(), Command::Help(RUN_HELP));
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("512K").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("K").is_err());
    }
}
