//! Integration tests of the allocator, run with `MemTally` as the global
//! allocator of the test binary itself, so the test harness, proptest and
//! std's threads all allocate through it too.

#[global_allocator]
static GLOBAL: memtally_alloc::MemTally = memtally_alloc::MemTally::new();

mod basic;
mod errors;
mod fork;
mod props;
mod record;
mod threads;
mod util;
