//! Replay worker with jemalloc as the global allocator: runs a replay program
//! for `memtally replay --against` (see `replay_worker.rs`).

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    memtally_benches::replay_worker::replay_worker_main("jemalloc")
}
