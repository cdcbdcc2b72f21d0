//! Replay worker with memtally as the global allocator: runs a replay program
//! for `memtally replay --against` (see `replay_worker.rs`).

#[global_allocator]
static GLOBAL: memtally_alloc::MemTally = memtally_alloc::MemTally::new();

fn main() -> std::process::ExitCode {
    memtally_benches::replay_worker::replay_worker_main("memtally")
}
