//! `memtally pack`: a copy of a trace with its plain event records packed
//! (`memtally_alloc::trace::pack_trace`).

use crate::args::PackArgs;
use anyhow::{Context, Result, bail};
use memtally_alloc::trace::pack_trace;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// Where the packed trace goes by default: `NAME.packed.mtt` beside it.
fn default_output(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .unwrap_or(file.as_os_str())
        .to_string_lossy();
    file.with_file_name(format!("{stem}.packed.mtt"))
}

pub fn run(a: &PackArgs) -> Result<()> {
    let out = a.output.clone().unwrap_or_else(|| default_output(&a.file));
    let input = File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))?;
    if let (Ok(i), Ok(o)) = (fs::canonicalize(&a.file), fs::canonicalize(&out))
        && i == o
    {
        bail!(
            "the output {} is the input: choose another with -o",
            out.display()
        );
    }
    // Written under a temporary name and renamed when complete, so that a
    // failure leaves no half-written trace; never over an existing file.
    if out.exists() {
        bail!("{} exists; choose another output with -o", out.display());
    }
    let tmp = out.with_file_name(format!(
        ".{}.partial",
        out.file_name().unwrap_or_default().to_string_lossy()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let result = pack_trace(BufReader::new(input), &mut w);
    drop(w);
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("{}", a.file.display()));
        }
    };
    fs::rename(&tmp, &out).with_context(|| format!("cannot create {}", out.display()))?;
    let mb = |b: u64| b as f64 / 1e6;
    say!(
        "memtally: {} ({:.1} MB) packed into {} ({:.1} MB): {} of {} event records packed",
        a.file.display(),
        mb(stats.bytes_in),
        out.display(),
        mb(stats.bytes_out),
        stats.packed,
        stats.event_records
    );
    if let Some(at) = stats.truncated_at {
        say!(
            "memtally: {} ends inside a record at byte {at} (cut short): everything before it was packed",
            a.file.display()
        );
    }
    Ok(())
}
