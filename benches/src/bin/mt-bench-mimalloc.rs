//! Worker binary: runs the workload named by its argument with mimalloc (the
//! baseline of every ratio) as the global allocator. `alloc-bench` spawns it
//! once per run, so the peak RSS and CPU times it reads belong to this
//! allocator alone.

use std::process::ExitCode;

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    memtally_benches::worker_main("mimalloc")
}
