//! Tests of `libmemtally.so` under `LD_PRELOAD`: the C semantics of the malloc
//! family, and real programs (python3, git, gcc, sort, a C++ program) whose
//! output must be identical with and without the library, while
//! `MEMTALLY_STATS=1` proves the library served their allocations.

mod c_api;
mod programs;
mod record;
mod util;
