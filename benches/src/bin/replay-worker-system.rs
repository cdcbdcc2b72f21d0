//! Replay worker with system as the global allocator: runs a replay program
//! for `memtally replay --against` (see `replay_worker.rs`).

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() -> std::process::ExitCode {
    memtally_benches::replay_worker::replay_worker_main("system")
}
