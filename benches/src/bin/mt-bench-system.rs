//! Worker binary: runs the workload named by its argument with the system
//! allocator (glibc malloc) as the global allocator. `alloc-bench` spawns it
//! once per run, so the peak RSS and CPU times it reads belong to this
//! allocator alone.

use std::process::ExitCode;

use std::alloc::System;

#[global_allocator]
static GLOBAL: System = System;

fn main() -> ExitCode {
    memtally_benches::worker_main("system")
}
