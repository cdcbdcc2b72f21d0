//! Command-line options of the `alloc-bench` driver.
//!
//! Parsing lives in the library, not in the binary, so that the rules (which
//! flags exist, which names are valid) are unit tested, and so that every bad
//! invocation fails with one clear message before any benchmark starts.

use std::path::PathBuf;

use crate::{parse_scale, workload_names};

/// The allocators the driver knows, each with a worker binary
/// `mt-bench-<name>`; the default run uses all of them in this order.
pub const ALLOCATORS: [&str; 4] = ["memtally", "system", "mimalloc", "jemalloc"];

/// Allocators the driver knows besides [`ALLOCATORS`], run only when named:
/// `unchecked` is memtally built with `--cfg memtally_unchecked`, its
/// always-on checks compiled out, to measure what they cost
/// (`--allocators memtally,unchecked --baseline unchecked`).
pub const EXTRA_ALLOCATORS: [&str; 1] = ["unchecked"];

/// Extra `RUSTFLAGS` for each code layout `--layouts` builds memtally's
/// workers in; layout 0 is the normal build. A build's code alignment moves
/// its timings by several percent on single workloads, as much as a small
/// change costs (measured: on the two workloads where the checks change the
/// instruction count by under 0.3%, memtally / unchecked ranged from 0.85
/// to 1.26 over these four layouts); averaging over layouts measures the
/// change rather than where its code happened to land.
pub const LAYOUT_FLAGS: [&str; 4] = [
    "",
    "-C llvm-args=-align-all-functions=6",
    "-C llvm-args=-align-all-functions=6 -C llvm-args=-align-all-nofallthru-blocks=5",
    "-C llvm-args=-align-all-functions=5 -C llvm-args=-align-all-nofallthru-blocks=4",
];

/// Is `allocator` one of memtally's own builds, which `--layouts` builds in
/// every layout?
pub fn is_memtally_build(allocator: &str) -> bool {
    allocator == "memtally" || allocator == "unchecked"
}

/// The name a run of `allocator` in code layout `layout` is reported under:
/// the allocator's own name in layout 0, `memtally@2` in layout 2.
pub fn layout_name(allocator: &str, layout: usize) -> String {
    if layout == 0 {
        allocator.to_string()
    } else {
        format!("{allocator}@{layout}")
    }
}

/// The allocator every ratio is relative to, unless `--baseline` names another.
pub const BASELINE: &str = "mimalloc";

/// Help text for `--help`.
pub const USAGE: &str = "\
usage: alloc-bench [--reps N] [--only W1,W2] [--allocators A,B] [--baseline A]
                   [--csv FILE] [--json] [--scale F] [--timeout SECS] [--no-build]
                   [--layouts N] [--variant NAME=SETTINGS]...

Runs each workload under each allocator in a separate worker process and
reports median wall time and peak RSS, with ratios to mimalloc.

  --reps N           repetitions per workload and allocator (default 3)
  --only W1,W2       run only these workloads (default: all)
  --allocators A,B   memtally, system, mimalloc, jemalloc (default: all four),
                     and unchecked: memtally with its always-on checks
                     compiled out (built into target/unchecked)
  --baseline A       the allocator the ratios are to (default mimalloc); it
                     must be one of those run
  --csv FILE         also write the summary as CSV to FILE
  --json             print JSON instead of the text table on stdout
  --scale F          multiply every workload's iteration counts by F (default 1,
                     or MT_BENCH_SCALE from the environment)
  --timeout SECS     kill a worker after SECS seconds and report it FAILED (default 300)
  --no-build         do not run `cargo build` for the workers first
  --variant NAME=SETTINGS
                     also run memtally's worker with MEMTALLY=SETTINGS, under
                     NAME (repeatable; NAME can be the --baseline): e.g.
                     --variant races=mode=sampled,out=/tmp/r.mtt,races=on
  --layouts N        also build memtally and unchecked in N-1 other code
                     layouts (1-4, default 1; into target/layout-K) and add a
                     table of their time ratios per layout and over all N
  -h, --help         show this help
";

/// The parsed options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Repetitions per workload and allocator.
    pub reps: usize,
    /// Workloads to run, in report order.
    pub workloads: Vec<String>,
    /// Allocators to run, in the order given.
    pub allocators: Vec<String>,
    /// The allocator the ratios are to.
    pub baseline: String,
    /// Where to write the CSV summary, if anywhere.
    pub csv: Option<PathBuf>,
    /// Print JSON instead of the text table.
    pub json: bool,
    /// Scale factor to pass to the workers; `None` leaves the environment as it is.
    pub scale: Option<f64>,
    /// Seconds after which a worker is killed.
    pub timeout_secs: u64,
    /// Whether to build the workers first (only ever done when run by cargo).
    pub build: bool,
    /// Runs of memtally's worker with settings: (name, `MEMTALLY` value),
    /// reported under the name, after the allocators.
    pub variants: Vec<(String, String)>,
    /// How many code layouts to build memtally's workers in (1: only the
    /// normal build); see [`LAYOUT_FLAGS`].
    pub layouts: usize,
    /// `--help` was given.
    pub help: bool,
}

impl Options {
    /// The names the runs are reported under, in order: the allocators,
    /// then the variants (not the other code layouts' builds).
    pub fn names_run(&self) -> Vec<&str> {
        self.allocators
            .iter()
            .chain(self.variants.iter().map(|(name, _)| name))
            .map(String::as_str)
            .collect()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reps: 3,
            workloads: workload_names().into_iter().map(String::from).collect(),
            allocators: ALLOCATORS.iter().map(|a| a.to_string()).collect(),
            baseline: BASELINE.to_string(),
            csv: None,
            json: false,
            scale: None,
            timeout_secs: 300,
            build: true,
            variants: Vec::new(),
            layouts: 1,
            help: false,
        }
    }
}

/// Parses the arguments after the program name. Both `--flag value` and
/// `--flag=value` are accepted. The error is one line, without the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut options = Options::default();
    let mut baseline_given = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => Err(format!("{flag} needs {what}")),
            }
        };
        match flag.as_str() {
            "--reps" => {
                let text = value("a number")?;
                options.reps = match text.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "--reps needs a positive whole number, not {text:?}"
                        ));
                    }
                };
            }
            "--only" => {
                let known = workload_names();
                options.workloads = parse_list(&value("workload names")?, "workload", &known)?;
                // Keep report order regardless of the order given.
                options
                    .workloads
                    .sort_by_key(|w| known.iter().position(|k| k == w));
            }
            "--allocators" => {
                let known: Vec<&str> = ALLOCATORS
                    .iter()
                    .chain(&EXTRA_ALLOCATORS)
                    .copied()
                    .collect();
                options.allocators = parse_list(&value("allocator names")?, "allocator", &known)?;
            }
            "--baseline" => {
                options.baseline = value("an allocator name")?;
                baseline_given = true;
            }
            "--csv" => {
                let path = value("a file name")?;
                if path.is_empty() {
                    return Err("--csv needs a file name".to_string());
                }
                options.csv = Some(PathBuf::from(path));
            }
            "--scale" => {
                let text = value("a number")?;
                options.scale = Some(parse_scale(&text).map_err(|e| format!("--scale: {e}"))?);
            }
            "--timeout" => {
                let text = value("a number of seconds")?;
                options.timeout_secs = match text.parse::<u64>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "--timeout needs a positive whole number, not {text:?}"
                        ));
                    }
                };
            }
            "--variant" => {
                let text = value("NAME=SETTINGS")?;
                let variant = parse_variant(&text)?;
                if options.variants.iter().any(|(n, _)| *n == variant.0) {
                    return Err(format!("--variant {:?} is given twice", variant.0));
                }
                options.variants.push(variant);
            }
            "--layouts" => {
                let text = value("a number")?;
                options.layouts = match text.parse::<usize>() {
                    Ok(n) if (1..=LAYOUT_FLAGS.len()).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "--layouts needs a number from 1 to {}, not {text:?}",
                            LAYOUT_FLAGS.len()
                        ));
                    }
                };
            }
            "--json" | "--no-build" | "--help" | "-h" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--json" => options.json = true,
            "--no-build" => options.build = false,
            "--help" | "-h" => options.help = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    // Without --baseline, a run without mimalloc just has no ratios.
    let run = options.names_run();
    if baseline_given && !run.contains(&options.baseline.as_str()) {
        return Err(format!(
            "the baseline {:?} is not among the allocators run ({}); name it in --allocators or pick another --baseline",
            options.baseline,
            run.join(", ")
        ));
    }
    if options.layouts > 1 && !options.allocators.iter().any(|a| is_memtally_build(a)) {
        return Err(
            "--layouts builds memtally and unchecked in other code layouts; name one of them in --allocators"
                .to_string(),
        );
    }
    Ok(options)
}

/// Parses `NAME=SETTINGS` of `--variant`: a name of lower-case letters,
/// digits and `-` that is no allocator's, and a non-empty `MEMTALLY` value
/// (which memtally's worker checks itself, failing the run if it is bad).
fn parse_variant(text: &str) -> Result<(String, String), String> {
    let Some((name, settings)) = text.split_once('=') else {
        return Err(format!(
            "--variant needs NAME=SETTINGS (the MEMTALLY value), not {text:?}"
        ));
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "--variant name {name:?} must be lower-case letters, digits and '-'"
        ));
    }
    if ALLOCATORS.contains(&name) || EXTRA_ALLOCATORS.contains(&name) {
        return Err(format!(
            "--variant name {name:?} is an allocator's; pick another"
        ));
    }
    if settings.is_empty() {
        return Err(format!("--variant {name:?} has no settings"));
    }
    Ok((name.to_string(), settings.to_string()))
}

/// Splits a comma-separated list, checks every name against `known`, and drops
/// repeats while keeping the order.
fn parse_list(text: &str, kind: &str, known: &[&str]) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!("empty {kind} name in {text:?}"));
        }
        if !known.contains(&name) {
            return Err(format!(
                "unknown {kind} {name:?}; known: {}",
                known.join(", ")
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::{Options, parse_args};

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn defaults_cover_everything() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.reps, 3);
        assert_eq!(
            options.allocators,
            ["memtally", "system", "mimalloc", "jemalloc"]
        );
        assert_eq!(options.workloads.len(), crate::WORKLOADS.len());
        assert!(options.build && !options.json && options.csv.is_none());
    }

    #[test]
    fn flags_take_values_in_both_spellings() {
        let options = parse(&[
            "--reps=5",
            "--only",
            "sh6bench,larson,larson",
            "--allocators",
            "system,memtally",
            "--csv",
            "out.csv",
            "--json",
            "--scale=0.5",
            "--no-build",
            "--layouts=3",
            "--variant",
            "races=mode=sampled,races=on",
            "--variant=g-1=guard=on",
        ])
        .unwrap();
        assert_eq!(options.reps, 5);
        assert_eq!(options.workloads, ["larson", "sh6bench"]);
        assert_eq!(options.allocators, ["system", "memtally"]);
        assert_eq!(
            options.csv.as_deref(),
            Some(std::path::Path::new("out.csv"))
        );
        assert!(options.json && !options.build);
        assert_eq!(options.scale, Some(0.5));
        assert_eq!(options.layouts, 3);
        assert_eq!(
            options.variants,
            [
                ("races".to_string(), "mode=sampled,races=on".to_string()),
                ("g-1".to_string(), "guard=on".to_string())
            ]
        );
        assert_eq!(parse(&[]).unwrap().layouts, 1);
    }

    #[test]
    fn the_unchecked_build_is_run_only_when_named_and_can_be_the_baseline() {
        assert!(
            !parse(&[])
                .unwrap()
                .allocators
                .iter()
                .any(|a| a == "unchecked")
        );
        let options =
            parse(&["--allocators", "memtally,unchecked", "--baseline=unchecked"]).unwrap();
        assert_eq!(options.allocators, ["memtally", "unchecked"]);
        assert_eq!(options.baseline, "unchecked");
        // Without --baseline, a run that leaves mimalloc out has no ratios.
        assert_eq!(
            parse(&["--allocators", "memtally"]).unwrap().baseline,
            "mimalloc"
        );
    }

    #[test]
    fn a_variant_can_be_the_baseline() {
        let options = parse(&[
            "--allocators=memtally",
            "--variant=off=guard=off",
            "--baseline=off",
        ])
        .unwrap();
        assert_eq!(options.baseline, "off");
        assert_eq!(options.variants[0].0, "off");
    }

    #[test]
    fn bad_flags_are_rejected_with_a_reason() {
        for (args, expected) in [
            (&["--reps", "0"][..], "--reps"),
            (&["--reps"][..], "--reps needs"),
            (&["--only", "nope"][..], "unknown workload"),
            (&["--allocators", "tcmalloc"][..], "unknown allocator"),
            (&["--only", "larson,,xmalloc"][..], "empty"),
            (&["--frobnicate"][..], "unknown argument"),
            (&["--json=yes"][..], "takes no value"),
            (&["--scale", "-1"][..], "--scale"),
            (&["--layouts", "0"][..], "--layouts needs"),
            (&["--variant", "races"][..], "NAME=SETTINGS"),
            (&["--variant", "Races=races=on"][..], "lower-case"),
            (&["--variant", "=races=on"][..], "lower-case"),
            (&["--variant", "mimalloc=guard=on"][..], "an allocator's"),
            (&["--variant", "g="][..], "no settings"),
            (
                &["--variant", "g=guard=on", "--variant", "g=guard=4m"][..],
                "twice",
            ),
            (
                &["--baseline", "g", "--variant", "h=guard=on"][..],
                "not among",
            ),
            (&["--layouts", "5"][..], "--layouts needs"),
            (
                &["--layouts", "2", "--allocators", "mimalloc,system"][..],
                "name one of them",
            ),
            (
                &[
                    "--baseline",
                    "jemalloc",
                    "--allocators",
                    "memtally,unchecked",
                ][..],
                "not among",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(expected), "{args:?} gave {err:?}");
            assert!(!err.contains('\n'));
        }
    }
}
