//! RAPIDS RMM's `logging_resource_adaptor` CSV log, read as replay
//! operations (and written from a trace, for the round trip and for RMM's
//! own `REPLAY_BENCH`).
//!
//! Format: the header `Thread,Time,Action,Pointer,Size,Stream`, then one
//! row per event: the OS thread id (decimal); the wall-clock time
//! `HH:MM:SS.ffffff` (older logs: `HH:MM:SS:ffffff`); `allocate`, `free`
//! or `allocate failure`; the pointer in hex (`(nil)` for none); the size
//! in bytes; the stream. Failed allocations are skipped, as RMM's replay
//! does. Times are taken as microseconds since midnight, and a time
//! earlier than the previous row's (a log crossing midnight) adds a day.

use super::{Op, Timed};
use std::io::Write;

/// The header row.
pub const HEADER: &str = "Thread,Time,Action,Pointer,Size,Stream";

/// True when `bytes` start like an RMM log.
pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.starts_with(HEADER.as_bytes())
}

fn parse_time(t: &str) -> Option<u64> {
    let mut parts = t.splitn(3, ':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let (s, frac) = rest.split_once(['.', ':']).unwrap_or((rest, "0"));
    let s: u64 = s.parse().ok()?;
    let digits = frac.len().min(9);
    let f: u64 = frac[..digits].parse().ok()?;
    let ns = f * 10u64.pow(9 - digits as u32);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(((h * 60 + m) * 60 + s) * 1_000_000_000 + ns)
}

fn parse_pointer(p: &str) -> Option<u64> {
    if p == "(nil)" || p == "0" {
        return Some(0);
    }
    u64::from_str_radix(p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))?, 16).ok()
}

/// The operations of an RMM log, times in nanoseconds since the first row;
/// an error names the line and what is wrong.
pub fn read(text: &str) -> Result<Vec<Timed>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end() == HEADER => {}
        _ => return Err(format!("not an RMM log (the first line must be {HEADER})")),
    }
    let mut ops = Vec::new();
    let mut first = None;
    let mut day = 0u64;
    let mut last = 0u64;
    for (i, line) in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return Err(format!("line {n}: expected 6 fields, found {}", f.len()));
        }
        let thread: u64 = f[0]
            .parse()
            .map_err(|_| format!("line {n}: bad thread {:?}", f[0]))?;
        let mut time = parse_time(f[1]).ok_or_else(|| format!("line {n}: bad time {:?}", f[1]))?;
        if time + day < last {
            day += 86_400_000_000_000;
        }
        time += day;
        last = time;
        let base = *first.get_or_insert(time);
        let pointer =
            parse_pointer(f[3]).ok_or_else(|| format!("line {n}: bad pointer {:?}", f[3]))?;
        let size: u64 = f[4]
            .parse()
            .map_err(|_| format!("line {n}: bad size {:?}", f[4]))?;
        let op = match f[2] {
            "allocate" if pointer != 0 => Op::Alloc {
                addr: pointer,
                size,
                align: 256,
            },
            "allocate failure" => Op::Failed { size },
            "allocate" => continue,
            "free" => Op::Free { addr: pointer },
            a => return Err(format!("line {n}: unknown action {a:?}")),
        };
        ops.push(Timed {
            op,
            ticks: time - base,
            stack: 0,
            thread,
        });
    }
    Ok(ops)
}

/// Writes `ops` as an RMM log (reallocations as a free and an allocation,
/// stream 0; `os_tid` maps trace threads to OS thread ids).
pub fn write(
    ops: &[Timed],
    ns_since_midnight: impl Fn(u64) -> u64,
    os_tid: impl Fn(u64) -> u64,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "{HEADER}")?;
    let mut sizes = std::collections::HashMap::new();
    for t in ops {
        let ns = ns_since_midnight(t.ticks) % 86_400_000_000_000;
        let us = ns / 1000;
        let time = format!(
            "{:02}:{:02}:{:02}.{:06}",
            us / 3_600_000_000,
            us / 60_000_000 % 60,
            us / 1_000_000 % 60,
            us % 1_000_000
        );
        let tid = os_tid(t.thread);
        match t.op {
            Op::Alloc { addr, size, .. } => {
                sizes.insert(addr, size);
                writeln!(out, "{tid},{time},allocate,{addr:#x},{size},0")?;
            }
            Op::Free { addr } => {
                let size = sizes.remove(&addr).unwrap_or(0);
                writeln!(out, "{tid},{time},free,{addr:#x},{size},0")?;
            }
            Op::Failed { size } => {
                writeln!(out, "{tid},{time},allocate failure,(nil),{size},0")?;
            }
            Op::Access { .. } | Op::Sync => {}
            Op::Realloc { old, addr, size } => {
                if old != 0 {
                    let s = sizes.remove(&old).unwrap_or(0);
                    writeln!(out, "{tid},{time},free,{old:#x},{s},0")?;
                }
                sizes.insert(addr, size);
                writeln!(out, "{tid},{time},allocate,{addr:#x},{size},0")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_as_operations() {
        let log = "Thread,Time,Action,Pointer,Size,Stream\n\
            2342727,15:47:02.841961,allocate,0x10012400000,1048576,0\n\
            2342728,15:47:02:841970,allocate failure,(nil),99999999999,0\n\
            2342727,15:47:02.841977,free,0x10012400000,1048576,0\n";
        let ops = read(log).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1].op, Op::Failed { size: 99999999999 });
        let ops = [ops[0], ops[2]];
        assert_eq!(
            ops[0].op,
            Op::Alloc {
                addr: 0x10012400000,
                size: 1048576,
                align: 256
            }
        );
        assert_eq!(
            ops[1].op,
            Op::Free {
                addr: 0x10012400000
            }
        );
        assert_eq!(ops[1].ticks, 16_000);
        assert_eq!(ops[0].thread, 2342727);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let e = read("Thread,Time,Action,Pointer,Size,Stream\n1,00:00:00.0,allocate,0x10,x,0\n")
            .unwrap_err();
        assert_eq!(e, "line 2: bad size \"x\"");
        assert!(read("a,b\n").unwrap_err().contains("not an RMM log"));
        let e = read("Thread,Time,Action,Pointer,Size,Stream\n1,00:00:00.0,grow,0x10,1,0\n")
            .unwrap_err();
        assert!(e.contains("unknown action \"grow\""), "{e}");
    }

    #[test]
    fn a_log_round_trips() {
        let ops = vec![
            Timed {
                op: Op::Alloc {
                    addr: 0x1000,
                    size: 64,
                    align: 256,
                },
                ticks: 0,
                stack: 0,
                thread: 7,
            },
            Timed {
                op: Op::Alloc {
                    addr: 0x2000,
                    size: 128,
                    align: 256,
                },
                ticks: 1_000,
                stack: 0,
                thread: 8,
            },
            Timed {
                op: Op::Free { addr: 0x1000 },
                ticks: 5_000,
                stack: 0,
                thread: 8,
            },
        ];
        let mut out = Vec::new();
        write(&ops, |t| 3_600_000_000_000 + t, |t| t, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(HEADER));
        assert!(
            text.contains("7,01:00:00.000000,allocate,0x1000,64,0"),
            "{text}"
        );
        assert_eq!(read(&text).unwrap(), ops);
    }
}
