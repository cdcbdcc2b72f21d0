//! Fixed-block pools, as Zephyr's `k_mem_slab`: one pool per block size,
//! the arena shared equally between them; a request takes a block of the
//! smallest size that holds it, and fails when that pool is empty (a slab
//! does not borrow from another). Allocation and free are O(1): one step.

use super::{Allocation, Heap, HeapStats};

struct Pool {
    block: u64,
    start: u64,
    blocks: u64,
    /// Freed block indices (LIFO, as a slab's free list); blocks from
    /// `fresh` on were never handed out.
    free: Vec<u64>,
    fresh: u64,
    used_max: u64,
}

/// The slab heap.
pub struct SlabHeap {
    pools: Vec<Pool>,
    steps: u64,
}

impl SlabHeap {
    /// Pools of `sizes` (each rounded up to `align`) sharing `arena`.
    pub fn new(arena: u64, sizes: &[u64], align: u64) -> Self {
        let align = align.max(1);
        let mut sizes: Vec<u64> = sizes
            .iter()
            .map(|s| s.max(&1).div_ceil(align) * align)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let share = if sizes.is_empty() {
            0
        } else {
            arena / sizes.len() as u64
        };
        let mut start = 0;
        let pools = sizes
            .into_iter()
            .map(|block| {
                let blocks = share / block;
                let p = Pool {
                    block,
                    start,
                    blocks,
                    free: Vec::new(),
                    fresh: 0,
                    used_max: 0,
                };
                start += share;
                p
            })
            .collect();
        SlabHeap { pools, steps: 0 }
    }
}

impl Heap for SlabHeap {
    fn alloc(&mut self, size: u64, align: u64) -> Option<Allocation> {
        self.steps += 1;
        let i = self
            .pools
            .iter()
            .position(|p| p.block >= size.max(1) && p.block % align.max(1) == 0)?;
        let p = &mut self.pools[i];
        let k = match p.free.pop() {
            Some(k) => k,
            None if p.fresh < p.blocks => {
                p.fresh += 1;
                p.fresh - 1
            }
            None => return None,
        };
        p.used_max = p.used_max.max(p.fresh - p.free.len() as u64);
        let at = p.start + k * p.block;
        Some(Allocation {
            user: at,
            inner: (i as u64, k),
        })
    }

    fn free(&mut self, block: Allocation) {
        self.steps += 1;
        let (i, k) = block.inner;
        self.pools[i as usize].free.push(k);
    }

    fn take_steps(&mut self) -> u64 {
        std::mem::take(&mut self.steps)
    }

    fn stats(&mut self) -> HeapStats {
        HeapStats {
            free_total: self
                .pools
                .iter()
                .map(|p| (p.blocks - p.fresh + p.free.len() as u64) * p.block)
                .sum(),
            largest_free: self
                .pools
                .iter()
                .filter(|p| !p.free.is_empty() || p.fresh < p.blocks)
                .map(|p| p.block)
                .max()
                .unwrap_or(0),
            // The memory the pools needed: each pool's most blocks in use.
            high_water: self.pools.iter().map(|p| p.used_max * p.block).sum(),
        }
    }

    fn check(&self, live: &[Allocation]) -> Result<(), String> {
        for (i, p) in self.pools.iter().enumerate() {
            let used = live.iter().filter(|b| b.inner.0 == i as u64).count() as u64;
            if used + p.free.len() as u64 != p.fresh {
                return Err(format!(
                    "pool of {} B: {used} used + {} freed != {} handed out",
                    p.block,
                    p.free.len(),
                    p.fresh
                ));
            }
        }
        Ok(())
    }
}
