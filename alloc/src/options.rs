//! Settings read from the environment when the allocator initialises.
//!
//! Read with `getenv`, which does not allocate, at the first allocation of
//! the process (or when the preloaded library loads). A bad value prints one
//! line naming the variable and the value and is ignored: a setting can never
//! take the program down; with a bad `MEMTALLY`, the program runs on
//! uninstrumented.
//!
//! | variable | values | effect |
//! | --- | --- | --- |
//! | `MEMTALLY_STATS` | `1`/`true`/`yes`/`on`, `0`/`false`/`no`/`off`/empty | print allocator statistics to stderr at exit |
//! | `MEMTALLY` | comma-separated `key=value` settings, below | recording |
//!
//! `MEMTALLY` keys:
//!
//! | key | values | default |
//! | --- | --- | --- |
//! | `mode` | `off`, `stats`, `sampled`, `full` | `off` |
//! | `out` | trace path; `%p` becomes the process id | `memtally.%p.mtt` |
//! | `interval` | mean bytes between samples in `sampled` mode (suffixes `k`, `m`) | `512k` |
//! | `depth` | most frames per stack, 1 to 256 | `64` |
//! | `children` | `1` to record forked children (and what they execute) too | `0` |
//! | `compress` | `on`: the writer thread regroups each thread's events by field and compresses them with zstd (`EVENTS_PACKED` records: traces of real programs 1.8 to 6 times smaller in BENCHMARKS.md), with CPU time the program's busy threads leave spare (a round where they keep every CPU busy is written plain); `off`: plain event records | `on` |
//! | `on_error` | `abort`: an invalid free (double free, a pointer not from the allocator or into the middle of a block, a Rust `dealloc` whose layout does not match the block) prints one line and aborts, as glibc does; `report`: prints the line and ignores the call, and the program runs on. Recorded in the trace either way | `abort` |
//! | `guard` | guarded allocations (GWP-ASan style: a sample of allocations placed between inaccessible pages, so overflows, underflows and uses after free fault at the access and are reported with the access, allocation and free stacks): `off`, `on` (one per 64 MiB allocated on average), or the mean bytes between them (suffixes `k`, `m`, `g`) | `off` |
//! | `guard_every` | guard one allocation in N instead (1: every one that fits a slot; for tests and hunting) | off |
//! | `guard_slots` | guarded blocks live at once, 1 to 256 (each a 4 KiB page and a guard page) | `32` |
//! | `races` | `on`: the race detector (a hardware watchpoint on a sampled heap word; two threads touching it within a stall of 80 µs are a proven race), recorded in the trace; needs `mode=full` or `sampled`, and `perf_event_open`; `off` | `off` |
//! | `race_period` | milliseconds between watch windows at the most frequent (each at most 10 ms, one trap and one stall each) | `50` |
//! | `race_stall` | microseconds the first thread to touch a watched word is stalled, 1 to 100000 | `80` |
//! | `race_budget` | the share of one core the detector's traps and stalls may take, in percent (`0.1` to `100`): windows are spaced so that their trap time stays within it | `1` |
//! | `leaks` | `scan` to run a leak scan (reachability, LeakSanitizer's semantics) at exit, into the trace and one line on stderr; `off` | `off` |
//! | `control` | `on`: open a control socket (private to the user: `$XDG_RUNTIME_DIR/memtally/PID.sock`, else `/tmp/memtally-UID/PID.sock`) through which `memtally attach PID` and `memtally top --pid PID` switch recording on in the running process, until they detach (`docs/control.md`); `off` | `off` |
//! | `descendant` | set by the recorder in the environment it hands on: `1` in a process another recorded one started or executed, whose trace then never replaces an existing file | `0` |
//!
//! A recorded process that executes another program goes on recording it,
//! in a trace of its own; `children` is about forked processes.
//!
//! Example: `MEMTALLY=mode=full,out=app.mtt`.

use core::ffi::CStr;

/// How much the allocator records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The allocator alone.
    #[default]
    Off,
    /// Per-thread counters, no trace.
    Stats,
    /// A Poisson sample of allocations by bytes, with stacks.
    Sampled,
    /// Every allocation, free and reallocation, with stacks.
    Full,
}

/// Longest output path accepted (with `%p` expanded).
pub const MAX_PATH: usize = 512;

/// Recording settings (the parsed `MEMTALLY` variable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// What to record.
    pub mode: Mode,
    /// Output path template, NUL-padded.
    pub out: [u8; MAX_PATH],
    /// Mean sampling interval in bytes.
    pub interval: u64,
    /// Most frames per stack.
    pub depth: usize,
    /// Record child processes too.
    pub children: bool,
    /// Started or executed by a recorded process (see the table above).
    pub descendant: bool,
    /// Run a leak scan at exit.
    pub leak_scan: bool,
    /// `on_error=report`: invalid pointers are reported, not fatal.
    pub report_errors: bool,
    /// Mean bytes between guarded allocations (0: off).
    pub guard_interval: u64,
    /// Guard one allocation in this many (0: off).
    pub guard_every: u64,
    /// Guard slots.
    pub guard_slots: usize,
    /// The race detector.
    pub races: bool,
    /// Milliseconds between race-watch windows.
    pub race_period_ms: u64,
    /// Microseconds a race watch stalls the first accessing thread.
    pub race_stall_us: u64,
    /// The race detector's trap budget, in parts per million of one core.
    pub race_budget_ppm: u64,
    /// Open a control socket (`control.rs`).
    pub control: bool,
    /// Pack event records (`trace::columns`).
    pub compress: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let mut out = [0u8; MAX_PATH];
        out[..DEFAULT_OUT.len()].copy_from_slice(DEFAULT_OUT);
        Settings {
            mode: Mode::Off,
            out,
            interval: 512 * 1024,
            depth: 64,
            children: false,
            descendant: false,
            leak_scan: false,
            report_errors: false,
            guard_interval: 0,
            guard_every: 0,
            guard_slots: crate::guard::DEFAULT_SLOTS,
            races: false,
            race_period_ms: 50,
            race_stall_us: 80,
            race_budget_ppm: 10_000,
            control: false,
            compress: true,
        }
    }
}

const DEFAULT_OUT: &[u8] = b"memtally.%p.mtt";

impl Settings {
    /// The output path template as bytes (without padding).
    pub fn out_template(&self) -> &[u8] {
        let n = self.out.iter().position(|&b| b == 0).unwrap_or(MAX_PATH);
        &self.out[..n]
    }
}

/// Why a `MEMTALLY` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingError {
    /// The offending `key=value` item (or key).
    pub item_start: usize,
    /// Its length.
    pub item_len: usize,
    /// What is wrong with it.
    pub what: &'static str,
}

/// Parses a `MEMTALLY` value. On error, nothing is applied.
pub fn parse_settings(value: &[u8]) -> Result<Settings, SettingError> {
    let mut s = Settings::default();
    let mut start = 0;
    for item in value.split(|&b| b == b',') {
        let item_start = start;
        start += item.len() + 1;
        if item.is_empty() {
            continue;
        }
        let err = |what| SettingError {
            item_start,
            item_len: item.len(),
            what,
        };
        let Some(eq) = item.iter().position(|&b| b == b'=') else {
            return Err(err("expected key=value"));
        };
        let (key, val) = (&item[..eq], &item[eq + 1..]);
        match key {
            b"mode" => {
                s.mode = match val {
                    b"off" => Mode::Off,
                    b"stats" => Mode::Stats,
                    b"sampled" => Mode::Sampled,
                    b"full" => Mode::Full,
                    _ => return Err(err("mode must be off, stats, sampled or full")),
                }
            }
            b"out" => {
                if val.is_empty() || val.len() >= MAX_PATH - 16 {
                    return Err(err("out must be a non-empty path shorter than 496 bytes"));
                }
                s.out = [0; MAX_PATH];
                s.out[..val.len()].copy_from_slice(val);
            }
            b"interval" => {
                s.interval = parse_bytes(val).filter(|&n| n >= 1).ok_or(err(
                    "interval must be a positive byte count (suffixes k, m)",
                ))?;
            }
            b"depth" => {
                s.depth = parse_bytes(val)
                    .filter(|&n| (1..=256).contains(&n))
                    .ok_or(err("depth must be 1 to 256"))? as usize;
            }
            b"children" => {
                s.children = parse_flag(val).ok_or(err("children must be 0 or 1"))?;
            }
            b"leaks" => {
                s.leak_scan = match val {
                    b"scan" => true,
                    b"off" => false,
                    _ => return Err(err("leaks must be scan or off")),
                }
            }
            b"guard" => {
                s.guard_interval = match val {
                    b"off" => 0,
                    b"on" => crate::guard::DEFAULT_INTERVAL,
                    _ => parse_bytes(val).filter(|&n| n >= 1).ok_or(err(
                        "guard must be off, on or a positive byte count (suffixes k, m, g)",
                    ))?,
                }
            }
            b"guard_every" => {
                s.guard_every = parse_bytes(val)
                    .filter(|&n| n >= 1)
                    .ok_or(err("guard_every must be a positive count"))?;
            }
            b"guard_slots" => {
                s.guard_slots = parse_bytes(val)
                    .filter(|&n| (1..=crate::guard::MAX_SLOTS as u64).contains(&n))
                    .ok_or(err("guard_slots must be 1 to 256"))?
                    as usize;
            }
            b"races" => {
                s.races = match val {
                    b"on" => true,
                    b"off" => false,
                    _ => return Err(err("races must be on or off")),
                }
            }
            b"race_period" => {
                s.race_period_ms = parse_bytes(val)
                    .filter(|&n| (1..=60_000).contains(&n))
                    .ok_or(err("race_period must be 1 to 60000 (milliseconds)"))?;
            }
            b"race_stall" => {
                s.race_stall_us = parse_bytes(val)
                    .filter(|&n| (1..=100_000).contains(&n))
                    .ok_or(err("race_stall must be 1 to 100000 (microseconds)"))?;
            }
            b"race_budget" => {
                s.race_budget_ppm = parse_percent_ppm(val)
                    .filter(|&n| (1_000..=1_000_000).contains(&n))
                    .ok_or(err("race_budget must be a percentage from 0.1 to 100"))?;
            }
            b"on_error" => {
                s.report_errors = match val {
                    b"abort" => false,
                    b"report" => true,
                    _ => return Err(err("on_error must be abort or report")),
                }
            }
            b"control" => {
                s.control = parse_flag(val).ok_or(err("control must be on or off"))?;
            }
            b"compress" => {
                s.compress = parse_flag(val).ok_or(err("compress must be on or off"))?;
            }
            b"descendant" => {
                s.descendant = parse_flag(val).ok_or(err("descendant must be 0 or 1"))?;
            }
            _ => {
                return Err(err(
                    "unknown key (expected mode, out, interval, depth, children, compress, leaks, on_error, guard, guard_every, guard_slots, races, race_period, race_stall, race_budget or control)",
                ));
            }
        }
    }
    Ok(s)
}

/// Parses a yes/no value.
fn parse_flag(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

/// Parses a percentage with at most three decimals (`1`, `0.5`, `12.25`)
/// into parts per million.
fn parse_percent_ppm(v: &[u8]) -> Option<u64> {
    let (whole, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if whole.is_empty() || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut ppm = parse_bytes(whole)?.checked_mul(10_000)?;
    let mut scale = 1_000;
    for &d in frac {
        ppm += u64::from(d - b'0') * scale;
        scale /= 10;
    }
    Some(ppm)
}

/// Parses a byte count with an optional `k`/`m`/`g` suffix (powers of 1024).
fn parse_bytes(v: &[u8]) -> Option<u64> {
    let (digits, mult) = match v.last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    n.checked_mul(mult)
}

/// Reads every setting and applies it.
pub fn load() {
    if let Some(value) = get(c"MEMTALLY_STATS") {
        match parse_bool(value) {
            Some(true) => crate::stats::enable(),
            Some(false) => {}
            None => crate::report::warn(format_args!(
                "MEMTALLY_STATS: expected 1 or 0, got '{}'; statistics stay off",
                value.to_str().unwrap_or("(not UTF-8)")
            )),
        }
    }
    if let Some(value) = get(c"MEMTALLY") {
        let bytes = value.to_bytes();
        match parse_settings(bytes) {
            Ok(settings) => {
                crate::report::set_report_only(settings.report_errors);
                crate::guard::configure(
                    settings.guard_interval,
                    settings.guard_every,
                    settings.guard_slots,
                );
                if settings.races {
                    if matches!(settings.mode, Mode::Full | Mode::Sampled) {
                        crate::races::configure(
                            settings.race_period_ms,
                            10,
                            settings.race_stall_us,
                            settings.race_budget_ppm,
                        );
                    } else {
                        crate::report::warn(format_args!(
                            "MEMTALLY: races=on needs a trace (mode=full or sampled) to report into; race detection is off"
                        ));
                    }
                }
                crate::record::configure(settings);
                crate::control::configure(settings.control);
            }
            Err(e) => {
                let item = &bytes[e.item_start..e.item_start + e.item_len];
                crate::report::warn(format_args!(
                    "MEMTALLY: '{}': {}; the program runs without recording",
                    core::str::from_utf8(item).unwrap_or("(not UTF-8)"),
                    e.what
                ));
            }
        }
    }
}

fn get(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into
    // the environment block, which outlives the allocator's use of it (we
    // copy nothing and keep the reference only while parsing).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) })
    }
}

/// Parses a boolean setting.
pub fn parse_bool(value: &CStr) -> Option<bool> {
    match value.to_bytes() {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"" | b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(c"1"), Some(true));
        assert_eq!(parse_bool(c"on"), Some(true));
        assert_eq!(parse_bool(c""), Some(false));
        assert_eq!(parse_bool(c"0"), Some(false));
        assert_eq!(parse_bool(c"2"), None);
        assert_eq!(parse_bool(c"maybe"), None);
    }

    #[test]
    fn settings_parse() {
        let s = parse_settings(b"mode=full,out=/tmp/x.%p.mtt,depth=32").unwrap();
        assert_eq!(s.mode, Mode::Full);
        assert_eq!(s.out_template(), b"/tmp/x.%p.mtt");
        assert_eq!(s.depth, 32);
        assert_eq!(s.interval, 512 * 1024);
        let s = parse_settings(b"mode=sampled,interval=2m,children=1").unwrap();
        assert_eq!(
            (s.mode, s.interval, s.children),
            (Mode::Sampled, 2 << 20, true)
        );
        assert_eq!(parse_settings(b"").unwrap(), Settings::default());
        assert!(parse_settings(b"leaks=scan").unwrap().leak_scan);
        let s = parse_settings(b"race_budget=0.5,race_stall=200").unwrap();
        assert_eq!((s.race_budget_ppm, s.race_stall_us), (5_000, 200));
        assert_eq!(
            parse_settings(b"race_budget=12.25")
                .unwrap()
                .race_budget_ppm,
            122_500
        );
        assert!(parse_settings(b"race_budget=0.01").is_err());
        assert!(parse_settings(b"race_budget=1.").is_ok());
        assert!(parse_settings(b"race_budget=x").is_err());
        assert!(parse_settings(b"race_stall=0").is_err());
        assert!(parse_settings(b"on_error=report").unwrap().report_errors);
        assert!(!parse_settings(b"on_error=abort").unwrap().report_errors);
        assert_eq!(
            parse_settings(b"on_error=ignore").unwrap_err().what,
            "on_error must be abort or report"
        );
        assert_eq!(
            parse_settings(b"leaks=later").unwrap_err().what,
            "leaks must be scan or off"
        );
        assert!(Settings::default().compress);
        assert!(!parse_settings(b"compress=off").unwrap().compress);
        assert_eq!(
            parse_settings(b"compress=zstd").unwrap_err().what,
            "compress must be on or off"
        );
    }

    #[test]
    fn bad_settings_name_the_item() {
        let e = parse_settings(b"mode=full,depth=9999").unwrap_err();
        assert_eq!((e.item_start, e.item_len), (10, 10));
        assert_eq!(e.what, "depth must be 1 to 256");
        assert!(parse_settings(b"mode=fast").is_err());
        assert!(parse_settings(b"colour=blue").is_err());
        assert!(parse_settings(b"full").is_err());
        assert!(parse_settings(b"interval=0").is_err());
        assert!(parse_settings(b"interval=12q").is_err());
    }
}
