//! Worker binary: runs the workload named by its argument with jemalloc (the
//! second established peer) as the global allocator. `alloc-bench` spawns it
//! once per run, so the peak RSS and CPU times it reads belong to this
//! allocator alone.

use std::process::ExitCode;

use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

fn main() -> ExitCode {
    memtally_benches::worker_main("jemalloc")
}
