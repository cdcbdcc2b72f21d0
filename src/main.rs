//! The `memtally` command line: a thin layer of subcommands over the
//! `memtally-profiler` crate, as ripgrep's root package is over its crates.
//!
//! Errors are printed once, as `memtally: <what is wrong>`, and exit with
//! status 2; `memtally run` otherwise exits with its command's status. A
//! closed output pipe (`memtally report t.mtt | head`) exits 0 silently.

/// `eprintln!` that never panics: after `memtally run --live` the terminal
/// may be gone (its window closed), and a message that cannot be shown is
/// no reason to lose the command's exit status.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod attach;
mod errors;
mod export;
mod flame;
mod leaks;
mod live;
mod output;
mod pack;
mod plot;
mod replay;
mod report;
mod run;

use args::Command;
use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let code = err.downcast_ref::<run::SpawnError>().map_or(2, |e| e.code);
            // `{:#}` prints the whole chain of context on one line.
            let msg = format!("{err:#}").replace('\n', " ");
            let _ = writeln!(io::stderr(), "memtally: {msg}");
            ExitCode::from(code)
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    match args::parse(std::env::args_os().skip(1))? {
        Command::Help(text) => {
            io::stdout().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            writeln!(io::stdout(), "memtally {}", env!("CARGO_PKG_VERSION"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(a) => run::run(&a),
        Command::Report(a) => {
            report::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Flame(a) => {
            flame::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Leaks(a) => leaks::run(&a),
        Command::Errors(a) => errors::run(&a),
        Command::Plot(a) => {
            plot::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Top(a) => live::top(&a),
        Command::Attach(a) => attach::attach(&a),
        Command::Replay(a) => {
            replay::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(a) => {
            export::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pack(a) => {
            pack::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// True when the error comes from writing into a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<memtally_profiler::Error>()
                .is_some_and(memtally_profiler::Error::is_broken_pipe)
    })
}
