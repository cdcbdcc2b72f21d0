//! Leak detection by reachability, with LeakSanitizer's semantics, in the
//! allocator itself.
//!
//! A scan stops the other threads (`stop.rs`), builds the table of every
//! allocated block from the allocator's metadata (`chunks.rs`), scans the
//! roots conservatively (`roots.rs`: data and bss of every module, the live
//! part of every stack, the registers of every thread, TLS, mappings that
//! are not ours) for words that point into a block, at its start or
//! anywhere inside it (Rust's `HashMap` keeps a pointer into the middle of
//! its allocation), and floods from there. What is not reached is leaked:
//!
//! - *indirect* when another leaked block points into it (it is lost
//!   because that one is);
//! - *direct* otherwise, and for a leaked cycle, which every member of
//!   points into, its first member (by address) is the direct leak and the
//!   rest hang off it. LeakSanitizer leaves such a cycle all indirect; a
//!   lost cycle is still a lost allocation, so we report one direct leak.
//!
//! Everything runs in the scanning thread with the world stopped, from
//! scratch mappings (`scratch.rs`): nothing is allocated from the heap being
//! scanned, and no lock is taken that a stopped thread could hold. The
//! world is released before the results are handed out.

mod chunks;
mod roots;
mod scratch;
mod stop;

use chunks::{Chunk, Chunks};
use core::sync::atomic::{AtomicBool, Ordering};
use scratch::{Bits, ScratchVec};

/// A leaked block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leak {
    /// The block's first byte (memtally's block: an over-aligned pointer
    /// handed out inside it may be further on).
    pub start: usize,
    /// The block's bytes (its size class).
    pub size: usize,
    /// A direct leak (else indirect).
    pub direct: bool,
    /// A sampled allocation (sampled recording), whose stack the trace has.
    pub sampled: bool,
}

/// What a leak scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakSummary {
    /// Directly leaked blocks and their bytes.
    pub direct: [u64; 2],
    /// Indirectly leaked blocks and their bytes.
    pub indirect: [u64; 2],
    /// Blocks still reachable and their bytes.
    pub reachable: [u64; 2],
    /// Threads that did not stop (their registers were not seen).
    pub threads_missed: u32,
    /// Threads stopped.
    pub threads_stopped: u32,
    /// Bytes of roots and blocks read.
    pub scanned_bytes: u64,
    /// Microseconds the other threads were stopped.
    pub pause_us: u64,
    /// `trace::leak_status::*`.
    pub status: u8,
    /// Recorder ticks when the world was stopped.
    pub stopped_at: u64,
}

impl LeakSummary {
    /// Were any blocks leaked (directly or not)?
    pub fn leaked(&self) -> bool {
        self.direct[0] + self.indirect[0] > 0
    }
}

static RUNNING: AtomicBool = AtomicBool::new(false);

/// Runs a leak scan and calls `on_leak` for each leaked block (after the
/// other threads run again, so `on_leak` may allocate). Fails with a
/// one-line reason when the scan cannot run.
#[inline(never)]
pub fn scan(mut on_leak: impl FnMut(Leak)) -> Result<LeakSummary, &'static str> {
    // The caller's values held in callee-saved registers are roots too:
    // take them before this function's own code can spill and reuse them.
    let (own_regs, own_sp) = own_registers();
    if RUNNING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return Err("a leak scan is already running");
    }
    let result = scan_stopped(&own_regs, own_sp);
    RUNNING.store(false, Ordering::Release);
    let (summary, leaks) = result?;
    for leak in leaks.as_slice() {
        on_leak(*leak);
    }
    Ok(summary)
}

/// Stops the world, scans and classifies; the world runs again when this
/// returns. Never inlined: `scan`'s own frame, the only part of this
/// thread's stack below the caller's that is scanned, stays small.
#[inline(never)]
fn scan_stopped(
    own_regs: &[usize],
    own_sp: usize,
) -> Result<(LeakSummary, ScratchVec<Leak>), &'static str> {
    // The caches of empty segments and huge mappings hold memory of ours
    // that is in no map: it must not be read as roots (stale blocks in it
    // would keep leaks alive). Locked throughout, as LeakSanitizer locks
    // its allocator, so that no stopped thread holds them and their
    // contents stay what the scan excludes. The fork handlers' order.
    crate::segment::with_cache_locked(|segments| {
        crate::huge::with_cache_locked(|huge| scan_locked(own_regs, own_sp, &[segments, huge]))
    })
}

fn scan_locked(
    own_regs: &[usize],
    own_sp: usize,
    cached: &[&[(usize, usize)]],
) -> Result<(LeakSummary, ScratchVec<Leak>), &'static str> {
    let started = now_us();
    let world = stop::World::stop().ok_or("cannot stop the other threads (is /proc mounted?)")?;
    let stopped_at = crate::record::clock::ticks();
    let chunks = Chunks::build().ok_or("out of memory for the scan's tables")?;

    let mut excluded = ScratchVec::new();
    let mut ok = true;
    crate::os::for_each_internal(|lo, len| ok &= excluded.push((lo, lo + len)));
    chunks.for_each_segment(|lo, hi| ok &= excluded.push((lo, hi)));
    for &(lo, len) in cached.iter().copied().flatten() {
        ok &= excluded.push((lo, lo + len));
    }
    let (map, len) = crate::segmap::static_range();
    ok &= excluded.push((map, map + len));
    let mut sps = ScratchVec::new();
    ok &= sps.push(own_sp);
    let mut threads_stopped = 0;
    world.for_each_stopped(|s| {
        ok &= sps.push(s.sp());
        threads_stopped += 1;
    });
    if !ok {
        return Err("out of memory for the scan's tables");
    }
    let roots = roots::Roots::collect(&mut excluded, sps.as_slice())
        .ok_or("cannot read /proc/self/maps")?;

    let mut m = Marker::new(&chunks).ok_or("out of memory for the scan's tables")?;
    for &(lo, hi) in roots.ranges.as_slice() {
        m.scan_foreign(lo, hi);
    }
    for &w in own_regs {
        m.visit(w);
    }
    world.for_each_stopped(|s| {
        for w in s.regs() {
            m.visit(w);
        }
    });
    m.flood()?;
    let leaks = m.classify()?;
    let mut summary = LeakSummary {
        threads_missed: world.missed,
        threads_stopped,
        scanned_bytes: m.scanned as u64,
        stopped_at,
        ..LeakSummary::default()
    };
    chunks.for_each(|c, _| {
        summary.reachable[0] += 1;
        summary.reachable[1] += c.size as u64;
    });
    for l in leaks.as_slice() {
        let class = if l.direct {
            &mut summary.direct
        } else {
            &mut summary.indirect
        };
        class[0] += 1;
        class[1] += l.size as u64;
        summary.reachable[0] -= 1;
        summary.reachable[1] -= l.size as u64;
    }
    drop(world);
    summary.pause_us = now_us() - started;
    summary.status = if summary.threads_missed > 0 {
        crate::trace::leak_status::THREADS_MISSED
    } else if !crate::os::internal_complete() {
        crate::trace::leak_status::METADATA_UNKNOWN
    } else {
        crate::trace::leak_status::COMPLETE
    };
    Ok((summary, leaks))
}

/// The flood fill and the classification of what it did not reach.
struct Marker<'a> {
    chunks: &'a Chunks,
    /// Reached from the roots.
    reach: Bits,
    stack: ScratchVec<Chunk>,
    /// The stack could not grow: a chunk was marked but not scanned.
    overflow: bool,
    /// Bytes read.
    scanned: usize,
    /// Copy buffer for memory that is not ours (read with
    /// `process_vm_readv`, which fails instead of faulting).
    buf: ScratchVec<usize>,
    /// `process_vm_readv` is refused here (seccomp): read directly.
    direct_reads: bool,
}

const BUF_WORDS: usize = 8192;

impl<'a> Marker<'a> {
    fn new(chunks: &'a Chunks) -> Option<Marker<'a>> {
        let mut buf = ScratchVec::with_capacity(BUF_WORDS)?;
        // SAFETY: the buffer is only ever read after `process_vm_readv`
        // filled it; zero-filled memory is a valid `usize` array anyway.
        unsafe { buf.set_len(BUF_WORDS) };
        Some(Marker {
            chunks,
            reach: Bits::new(chunks.total)?,
            stack: ScratchVec::with_capacity(1024)?,
            overflow: false,
            scanned: 0,
            buf,
            direct_reads: false,
        })
    }

    /// Marks the chunk `w` points into, if any, and queues it.
    #[inline(always)]
    fn visit(&mut self, w: usize) {
        if self.chunks.outside(w) {
            return;
        }
        if let Some(c) = self.chunks.find(w)
            && !self.reach.set(c.n)
            && !self.stack.push(c)
        {
            self.overflow = true;
        }
    }

    /// Scans memory that is not ours, page by page where a page cannot be
    /// read (unmapped meanwhile, or a file mapping beyond its end).
    fn scan_foreign(&mut self, lo: usize, hi: usize) {
        let mut at = lo.next_multiple_of(8);
        while at + 8 <= hi {
            let want = (hi - at).min(BUF_WORDS * 8) & !7;
            let got = match self.read_foreign(at, want) {
                Some(n) => {
                    for i in 0..n / 8 {
                        let w = self.buf.as_slice()[i];
                        self.visit(w);
                    }
                    n
                }
                None => {
                    // SAFETY: a private mapping of the process listed in
                    // /proc/self/maps, with the other threads stopped.
                    unsafe { scan_words(at, want, |w| self.visit(w)) };
                    want
                }
            };
            self.scanned += got;
            // A short read: skip the page that could not be read.
            at = if got == 0 {
                (at + 1).next_multiple_of(crate::os::OS_PAGE)
            } else {
                at + got
            };
        }
    }

    /// Copies `len` bytes at `addr` into the buffer; how many could be
    /// read, or None when `process_vm_readv` is refused here (seccomp) and
    /// the memory must be read directly.
    fn read_foreign(&mut self, addr: usize, len: usize) -> Option<usize> {
        if self.direct_reads {
            return None;
        }
        let local = libc::iovec {
            iov_base: self.buf.as_mut_slice().as_mut_ptr().cast(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: the local iovec is our buffer of `len <= BUF_WORDS * 8`
        // bytes; the kernel checks the remote range and fails rather than
        // faulting.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n < 0 {
            // SAFETY: errno of this thread, just set.
            let e = unsafe { *libc::__errno_location() };
            if e == libc::ENOSYS || e == libc::EPERM {
                self.direct_reads = true;
                return None;
            }
            return Some(0);
        }
        Some((n as usize) & !7)
    }

    /// Scans every queued chunk until the queue is empty.
    fn flood(&mut self) -> Result<(), &'static str> {
        while let Some(c) = self.stack.pop() {
            self.scanned += c.size;
            // SAFETY: a chunk is an allocated block of a live segment.
            unsafe { scan_words(c.start, c.size, |w| self.visit(w)) };
        }
        if self.overflow {
            return Err("out of memory for the scan's mark stack");
        }
        Ok(())
    }

    /// Classifies the chunks the flood did not reach (see the module
    /// comment): those no other leaked chunk points into are direct; the
    /// rest are indirect, but each leaked structure with no such root (a
    /// cycle) gets its first chunk made direct.
    fn classify(&mut self) -> Result<ScratchVec<Leak>, &'static str> {
        let oom = "out of memory for the scan's tables";
        let chunks = self.chunks;
        let total = chunks.total;
        let reach = &self.reach;
        let leaked = |c: &Chunk| !reach.get(c.n);
        // Pass 1: which leaked chunks another leaked chunk points into.
        let mut referenced = Bits::new(total).ok_or(oom)?;
        chunks.for_each(|c, _| {
            if leaked(&c) {
                // SAFETY: an allocated block of a live segment.
                unsafe {
                    scan_words(c.start, c.size, |w| {
                        if let Some(t) = chunks.find(w)
                            && t.n != c.n
                            && leaked(&t)
                        {
                            referenced.set(t.n);
                        }
                    })
                };
            }
        });
        // Passes 2 and 3: direct chunks, then cycle representatives, each
        // flooding the leaked chunks it reaches.
        let mut seen = Bits::new(total).ok_or(oom)?;
        let mut direct = Bits::new(total).ok_or(oom)?;
        let mut stack: ScratchVec<Chunk> = ScratchVec::with_capacity(1024).ok_or(oom)?;
        let mut ok = true;
        for cycles in [false, true] {
            chunks.for_each(|c, _| {
                if !leaked(&c) {
                    return;
                }
                let root = if cycles {
                    !seen.get(c.n)
                } else {
                    !referenced.get(c.n)
                };
                if !root || seen.set(c.n) {
                    return;
                }
                direct.set(c.n);
                ok &= stack.push(c);
                while let Some(p) = stack.pop() {
                    // SAFETY: an allocated block of a live segment.
                    unsafe {
                        scan_words(p.start, p.size, |w| {
                            if let Some(t) = chunks.find(w)
                                && leaked(&t)
                                && !seen.set(t.n)
                            {
                                ok &= stack.push(t);
                            }
                        })
                    };
                }
            });
        }
        if !ok {
            return Err(oom);
        }
        let mut leaks = ScratchVec::new();
        chunks.for_each(|c, sampled| {
            if leaked(&c) {
                ok &= leaks.push(Leak {
                    start: c.start,
                    size: c.size,
                    direct: direct.get(c.n),
                    sampled,
                });
            }
        });
        ok.then_some(leaks).ok_or(oom)
    }
}

/// Microseconds of the monotonic clock (the coarse one ticks in 4 ms).
fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Calls `f` with every aligned word of `[start, start + len)`.
///
/// # Safety
/// The range must be mapped and readable.
#[inline(always)]
unsafe fn scan_words(start: usize, len: usize, mut f: impl FnMut(usize)) {
    let first = start.next_multiple_of(8);
    let end = (start + len) & !7;
    let mut p = first;
    while p < end {
        // SAFETY: guaranteed by the caller; volatile because the memory is
        // the program's and may be written by a thread that did not stop.
        f(unsafe { core::ptr::read_volatile(p as *const usize) });
        p += 8;
    }
}

/// The calling code's callee-saved registers and stack pointer.
#[inline(always)]
fn own_registers() -> ([usize; 12], usize) {
    let mut regs = [0usize; 12];
    let sp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: stores six registers into `regs`, which has room for twelve.
    unsafe {
        core::arch::asm!(
            "mov [{r}], rbx",
            "mov [{r} + 8], rbp",
            "mov [{r} + 16], r12",
            "mov [{r} + 24], r13",
            "mov [{r} + 32], r14",
            "mov [{r} + 40], r15",
            "mov {sp}, rsp",
            r = in(reg) regs.as_mut_ptr(),
            sp = out(reg) sp,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: stores eleven registers into `regs`, which has room for twelve.
    unsafe {
        core::arch::asm!(
            "stp x19, x20, [{r}]",
            "stp x21, x22, [{r}, #16]",
            "stp x23, x24, [{r}, #32]",
            "stp x25, x26, [{r}, #48]",
            "stp x27, x28, [{r}, #64]",
            "str x29, [{r}, #80]",
            "mov {sp}, sp",
            r = in(reg) regs.as_mut_ptr(),
            sp = out(reg) sp,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let probe = 0u8;
        sp = &probe as *const u8 as usize;
    }
    (regs, sp)
}
