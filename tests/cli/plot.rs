//! `memtally plot`: a recorded C program in three marked phases drawn as a
//! timeline, and the errors of the command.

use super::{fails_with, memtally, record_c_program, sample_trace, scratch};
use std::process::Command;

#[test]
fn plot_stacks_the_holding_functions_and_draws_the_markers() {
    let Some(trace) = record_c_program("plot", "phases", &[], &[]) else {
        return;
    };
    let dir = trace.parent().unwrap().to_owned();

    let svg_path = dir.join("phases.svg");
    let out = memtally(&[
        "plot",
        "-o",
        svg_path.to_str().unwrap(),
        trace.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("timeline written to"), "{err}");
    assert!(err.contains("3 markers"), "{err}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    // The table (400 x 1000 B) and the request buffer live at the peak are
    // the two layers named, each with the most it held.
    assert!(
        svg.contains("<title>load_table (at most 390.6 KiB live)</title>"),
        "{svg}"
    );
    assert!(
        svg.contains("<title>handle_request (at most 19.7 KiB live)</title>"),
        "{svg}"
    );
    // Nothing else allocated: the rest of the heap is empty throughout.
    assert!(
        svg.contains("<title>other sites (at most 0 B live)</title>"),
        "{svg}"
    );
    // The peak: the table plus the last request's 20199 bytes.
    assert!(svg.contains(">peak 410.4 KiB at "), "{svg}");
    for marker in ["load", "serve", "shutdown"] {
        assert!(
            svg.contains(&format!(">{marker}</text>")),
            "{marker}: {svg}"
        );
    }
    // The command is named under the title.
    assert!(svg.contains("phases"), "{svg}");
}

#[test]
fn plot_writes_beside_the_cwd_or_to_stdout_and_says_what_is_wrong() {
    let dir = scratch("plot-errors");
    let trace = sample_trace(&dir);
    fails_with(&memtally(&["plot"]), "no trace given");
    fails_with(&memtally(&["plot", "/no/such.mtt"]), "/no/such.mtt");
    fails_with(
        &memtally(&["plot", trace.to_str().unwrap(), "--top", "0"]),
        "invalid --top 0",
    );
    fails_with(
        &memtally(&["plot", "a.mtt", "b.mtt"]),
        "unexpected argument b.mtt",
    );
    let out = memtally(&["plot", trace.to_str().unwrap(), "-o", "-"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_memtally"))
        .args(["plot", "sample.mtt"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("written to sample.timeline.svg"), "{err}");
    assert!(dir.join("sample.timeline.svg").is_file());
}
