//! Worker binary: runs the workload named by its argument with memtally (the
//! allocator under test) as the global allocator. `alloc-bench` spawns it once
//! per run, so the peak RSS and CPU times it reads belong to this allocator
//! alone.

use std::process::ExitCode;

use memtally_alloc::MemTally;

#[global_allocator]
static GLOBAL: MemTally = MemTally::new();

fn main() -> ExitCode {
    memtally_benches::worker_main("memtally")
}
