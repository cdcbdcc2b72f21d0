//! DWARF call-frame unwinding for x86_64, in-process, with a rule cache.
//!
//! Why our own: code built without frame pointers (C at `-O2`, Rust release
//! builds, Debian's libraries) can only be unwound with the call-frame
//! information in `.eh_frame`, and libgcc's unwinder costs about 100 ns per
//! frame (research notes E.3) — 10 million allocations would spend 15 s in
//! it. This unwinder computes, for a return address, the three rules an
//! x86_64 frame step needs (where the canonical frame address is, where the
//! return address and the caller's `rbp` were saved), caches them per
//! address in a per-thread table, and applies them with a few loads: a
//! cached frame step costs a few nanoseconds. It never allocates and never
//! takes a lock on the common path.
//!
//! Lookups go through `.eh_frame_hdr`'s sorted table (binary search), which
//! every module linked by GNU ld, gold or lld carries. A frame whose CFI
//! marks the return address undefined (a thread's outermost) ends the walk.
//! Where no usable rule exists (a module without `.eh_frame_hdr`, DWARF
//! expressions, signal frames), the frame-pointer step is tried when `rbp`
//! points into the stack, and the walk ends otherwise.
//!
//! The walk's loop is the hot path of full recording (every allocation,
//! about 13 frames each on the allocator workload): a cached rule is one
//! packed word, the registers stay in locals, and a stack read is one
//! unsigned comparison: about 55 instructions a frame with the rule
//! lookups (callgrind, BENCHMARKS), and a few for the frames the previous
//! walk's rsp prefix covers.
//!
//! The module table is rebuilt from `dl_iterate_phdr` when a return address
//! falls outside every known module and the loader's counters show a load
//! or unload since the table was built, and when the writer notices one;
//! old tables are kept (never freed), so a thread that still reads one is
//! safe. (An address outside every module with no change, JIT-compiled code
//! for one, is cached as having no rule, and costs no table.)

use super::modules;
use crate::os;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Most modules tracked.
const MAX_MODULES: usize = 1024;

#[derive(Clone, Copy)]
#[repr(C)]
struct Range {
    start: u64,
    end: u64,
    /// Address of `.eh_frame_hdr`, or 0.
    hdr: u64,
}

#[repr(C)]
struct Table {
    len: usize,
    generation: u64,
    /// The loader's (adds, removes) counters when the table was built.
    loader: (u64, u64),
    ranges: [Range; MAX_MODULES],
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());
/// Bumped when modules change; a table older than this is rebuilt.
static GENERATION: AtomicU64 = AtomicU64::new(1);
static REBUILD_LOCK: crate::lock::SpinLock<()> = crate::lock::SpinLock::new(());

/// The module-table rebuild lock, for the fork handlers.
pub fn rebuild_lock() -> &'static crate::lock::SpinLock<()> {
    &REBUILD_LOCK
}

/// Tells the unwinder that modules were loaded or unloaded.
pub fn modules_changed() {
    GENERATION.fetch_add(1, Ordering::Release);
}

fn rebuild() -> *mut Table {
    let _g = REBUILD_LOCK.lock();
    let generation = GENERATION.load(Ordering::Acquire);
    let cur = TABLE.load(Ordering::Acquire);
    // SAFETY: tables are never freed.
    if !cur.is_null() && unsafe { (*cur).generation } == generation {
        return cur;
    }
    let t = os::map(core::mem::size_of::<Table>()) as *mut Table;
    if t.is_null() {
        return cur;
    }
    // SAFETY: freshly mapped, zeroed, large enough; only we use it until it
    // is published below.
    let table = unsafe { &mut *t };
    table.generation = generation;
    table.loader = modules::generation();
    modules::scan_unwind(|start, end, hdr| {
        if table.len < MAX_MODULES {
            table.ranges[table.len] = Range { start, end, hdr };
            table.len += 1;
        }
    });
    let len = table.len;
    table.ranges[..len].sort_unstable_by_key(|r| r.start);
    TABLE.store(t, Ordering::Release);
    t
}

fn current_table() -> &'static Table {
    let mut t = TABLE.load(Ordering::Acquire);
    // SAFETY: tables are never freed.
    if t.is_null() || unsafe { (*t).generation } != GENERATION.load(Ordering::Relaxed) {
        t = rebuild();
    }
    // SAFETY: non-null after rebuild unless mapping failed, in which case
    // the static empty table is used.
    if t.is_null() {
        static EMPTY: Table = Table {
            len: 0,
            generation: 0,
            loader: (0, 0),
            ranges: [Range {
                start: 0,
                end: 0,
                hdr: 0,
            }; MAX_MODULES],
        };
        return &EMPTY;
    }
    // SAFETY: tables are never freed.
    unsafe { &*t }
}

fn find_range(t: &Table, pc: u64) -> Option<Range> {
    let ranges = &t.ranges[..t.len];
    let i = ranges.partition_point(|r| r.start <= pc);
    if i == 0 {
        return None;
    }
    let r = ranges[i - 1];
    (pc < r.end).then_some(r)
}

/// How to step from a frame to its caller: the canonical frame address is
/// `(rbp if CFA_RBP else rsp) + cfa_offset`, the return address is at
/// `cfa + ra_offset`, the caller's `rbp` at `cfa + rbp_offset` (or unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    cfa_rbp: bool,
    cfa_offset: i32,
    ra_offset: i32,
    rbp_offset: Option<i32>,
}

/// A packed rule, as the caches hold it: the CFA offset in bits 0..32, the
/// `rbp` offset (an i16) in bits 32..48, and the flags below. The return
/// address is at CFA - 8, where every x86_64 compiler saves it: rules that
/// say otherwise are not packed (`Rule::packable`). A value without
/// `PACKED` is not a rule: `NO_RULE` (no CFI covers the address),
/// `OUTERMOST`, or 0 (a rule that does not pack, computed again at each
/// use).
const PACKED: u64 = 1 << 50;
/// The CFA is `rbp`-based (else `rsp`-based).
const CFA_RBP: u64 = 1 << 48;
/// The caller's `rbp` was saved (else `rbp` is unchanged).
const HAS_RBP: u64 = 1 << 49;
/// Cached "no rule here".
const NO_RULE: u64 = 1 << 51;
/// Cached "the outermost frame": the walk ends.
const OUTERMOST: u64 = 1 << 52;

impl Rule {
    /// The frame-pointer convention: `push rbp; mov rbp, rsp`.
    const FRAME_POINTER: Rule = Rule {
        cfa_rbp: true,
        cfa_offset: 16,
        ra_offset: -8,
        rbp_offset: Some(-16),
    };

    /// Can this rule be packed without loss?
    fn packable(self) -> bool {
        self.ra_offset == -8 && self.rbp_offset.is_none_or(|o| i16::try_from(o).is_ok())
    }

    /// The packed form; only for a packable rule.
    fn pack(self) -> u64 {
        debug_assert!(self.packable());
        let mut v = (self.cfa_offset as u32 as u64) | PACKED;
        if self.cfa_rbp {
            v |= CFA_RBP;
        }
        if let Some(o) = self.rbp_offset {
            v |= HAS_RBP | ((o as i16 as u16 as u64) << 32);
        }
        v
    }

    #[cfg(test)]
    fn unpack(v: u64) -> Rule {
        Rule {
            cfa_rbp: v & CFA_RBP != 0,
            cfa_offset: v as u32 as i32,
            ra_offset: -8,
            rbp_offset: (v & HAS_RBP != 0).then_some((v >> 32) as u16 as i16 as i32),
        }
    }
}

/// One frame step: the CFA from `rbp` or `rsp`, the return address and the
/// caller's `rbp` (when saved) read from beside it. None when a read leaves
/// the stack, the CFA does not move outwards (a corrupt or final frame), or
/// the return address is 0 (the outermost frame).
#[inline(always)]
fn step(
    regs: Regs,
    cfa_rbp: bool,
    cfa_offset: i64,
    ra_offset: i64,
    rbp_offset: Option<i64>,
    read: &impl Fn(u64) -> Option<u64>,
) -> Option<Regs> {
    let base = if cfa_rbp { regs.rbp } else { regs.rsp };
    let cfa = base.wrapping_add(cfa_offset as u64);
    if cfa <= regs.rsp {
        return None;
    }
    let ra = read(cfa.wrapping_add(ra_offset as u64))?;
    if ra == 0 {
        return None;
    }
    let rbp = match rbp_offset {
        Some(o) => read(cfa.wrapping_add(o as u64))?,
        None => regs.rbp,
    };
    Some(Regs {
        rip: ra,
        rsp: cfa,
        rbp,
    })
}

/// A cache from code address to its rule: a thread's own (in its ring),
/// or one shared by threads (the signal handlers' static one).
#[repr(C)]
pub struct RuleCache {
    /// Shared by threads: entries are read as a seqlock (the tag checked
    /// again after the value), and the table of the latest walk, which
    /// every walk rewrites, is not used. Rings' caches are zeroed
    /// mappings: not shared.
    shared: bool,
    entries: [(AtomicU64, AtomicU64); RULE_ENTRIES],
    /// The address looked up at each depth of the thread's latest walk and
    /// its rule: consecutive stacks share their inner frames (the
    /// allocator's own, the allocating function's), and this small table
    /// stays in L1 where the big one may not.
    recent: [(AtomicU64, AtomicU64); RECENT_ENTRIES],
    /// The latest walk's *rsp prefix*: its first frames while each one's
    /// CFA was `rsp`-based, as each frame's code address (looked up) and
    /// `Frame` (where its CFA and the last saved `rbp` lay, from the
    /// starting `rsp`). A frame's rule, hence these offsets, is a function
    /// of its address alone; so a walk that meets the same addresses finds
    /// each next return address at the same offset from its start, and
    /// steps through them with one read each (see [`walk`]). The
    /// allocator's and recorder's own frames, four or five at the inner end
    /// of every stack, are such a prefix.
    prefix: [(AtomicU64, AtomicU64); RECENT_ENTRIES],
    /// Frames in `prefix`.
    prefix_len: AtomicU64,
    /// The module generation (`GENERATION`) the entries were cached in: a
    /// module unloaded since may have left its addresses to another, whose
    /// rules differ, so a walk that finds the generation changed forgets
    /// everything first.
    generation: AtomicU64,
}

/// A frame of the rsp prefix, packed: its CFA's offset from the walk's
/// starting `rsp` (low 32 bits) and, above, 1 + the offset of the last
/// `rbp` saved up to it (0: none saved, `rbp` is the starting one).
#[derive(Clone, Copy)]
struct Frame(u64);

impl Frame {
    const START: Frame = Frame(0);

    fn cfa(self) -> u64 {
        self.0 as u32 as u64
    }

    fn rbp_slot(self) -> Option<u64> {
        (self.0 >> 32).checked_sub(1)
    }

    /// The next frame's, from a step by an `rsp`-based rule from this one
    /// (offsets from the walk's start): None when an offset does not fit,
    /// or the saved `rbp` does not lie below the return address (compilers
    /// save it there; elsewhere the walk goes on frame by frame).
    #[inline(never)]
    fn after(self, cfa: u64, rbp_slot: Option<u64>) -> Option<Frame> {
        if cfa > u32::MAX as u64 {
            return None;
        }
        let slot = match rbp_slot {
            // Below the return address (at cfa - 8), so below u32::MAX.
            Some(o) if o < cfa && cfa - o >= 16 => o + 1,
            Some(_) => return None,
            None => self.0 >> 32,
        };
        Some(Frame(cfa | (slot << 32)))
    }
}

/// Depths remembered from the latest walk.
const RECENT_ENTRIES: usize = 64;
/// Entries in a thread's rule cache.
pub const RULE_ENTRIES: usize = 1024;

impl RuleCache {
    /// An empty cache shared by threads (for statics; rings get theirs,
    /// per thread, zeroed by the mapping).
    pub const fn new() -> Self {
        RuleCache {
            shared: true,
            entries: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; RULE_ENTRIES],
            recent: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; RECENT_ENTRIES],
            prefix: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; RECENT_ENTRIES],
            prefix_len: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The packed rule for `pc`, looked up at `depth` of a walk of a
    /// thread's own cache: from the latest walk's rule at that depth when
    /// its address matches, else from the cache (and remembered for the
    /// next walk).
    #[inline(always)]
    fn own_rule(&self, depth: usize, pc: u64) -> u64 {
        let r = &self.recent[depth % RECENT_ENTRIES];
        if r.0.load(Ordering::Relaxed) == pc {
            return r.1.load(Ordering::Relaxed);
        }
        let e = &self.entries[Self::slot(pc)];
        let v = if e.0.load(Ordering::Relaxed) == pc {
            e.1.load(Ordering::Relaxed)
        } else {
            self.miss(pc)
        };
        store_entry(r, pc, v);
        v
    }

    /// The packed rule for `pc` from a cache that other threads may be
    /// writing: a value counts only if its entry's tag still names `pc`
    /// after the value was read (a writer clears the tag first:
    /// `store_entry`).
    #[inline(never)]
    fn shared_rule(&self, pc: u64) -> u64 {
        let e = &self.entries[Self::slot(pc)];
        if e.0.load(Ordering::Acquire) == pc {
            let v = e.1.load(Ordering::Acquire);
            if e.0.load(Ordering::Acquire) == pc {
                return v;
            }
        }
        self.miss(pc)
    }

    /// Forgets every cached rule and the latest walk, as of module
    /// generation `generation`. Entries of a cache shared by threads are
    /// cleared tag first, as `store_entry` writes them, so a concurrent
    /// reader misses rather than reading a stale rule; one that read a rule
    /// just before is no worse off than before the change.
    #[cold]
    #[inline(never)]
    fn forget(&self, generation: u64) {
        for e in self.entries.iter().chain(&self.recent) {
            e.0.store(0, Ordering::Release);
        }
        self.prefix_len.store(0, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Release);
    }

    #[inline(always)]
    fn slot(pc: u64) -> usize {
        ((pc ^ (pc >> 12)) as usize) % RULE_ENTRIES
    }

    /// Computes the rule for `pc` from its module's CFI and caches it
    /// packed (a rule that does not pack is cached as 0 and computed again
    /// at each use: none of the compilers we know emits one).
    #[cold]
    #[inline(never)]
    fn miss(&self, pc: u64) -> u64 {
        let v = match find_rule(pc) {
            Some(Found::Rule(r)) if r.packable() => r.pack(),
            Some(Found::Rule(_)) => 0,
            Some(Found::Outermost) => OUTERMOST,
            None => NO_RULE,
        };
        store_entry(&self.entries[Self::slot(pc)], pc, v);
        v
    }
}

/// Stores a (tag, packed rule) entry. The tag is cleared while the value
/// changes, so that a reader of a cache shared by threads (the signal
/// handlers'), which checks the tag again after the value
/// ([`RuleCache::shared_rule`]), never pairs a tag with another address's
/// rule.
#[inline(always)]
fn store_entry(e: &(AtomicU64, AtomicU64), pc: u64, v: u64) {
    e.0.store(0, Ordering::Relaxed);
    e.1.store(v, Ordering::Release);
    e.0.store(pc, Ordering::Release);
}

/// Registers at the point of capture.
#[derive(Clone, Copy, Debug)]
pub struct Regs {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Frame pointer register.
    pub rbp: u64,
}

/// Walks the stack from `regs`, writing return addresses (innermost first)
/// to `out`; returns how many. `read` must return the word at an address
/// inside the thread's stack, or None outside it.
pub fn unwind(
    regs: Regs,
    cache: &RuleCache,
    out: &mut [u64],
    read: impl Fn(u64) -> Option<u64>,
) -> usize {
    let generation = GENERATION.load(Ordering::Acquire);
    if cache.generation.load(Ordering::Relaxed) != generation {
        cache.forget(generation);
    }
    // Two copies of the walk, so that the per-frame lookup does not ask
    // which kind of cache it reads.
    if cache.shared {
        walk(regs, out, &read, |_, pc| cache.shared_rule(pc), None)
    } else {
        walk(
            regs,
            out,
            &read,
            |depth, pc| cache.own_rule(depth, pc),
            Some(cache),
        )
    }
}

/// The walk: per frame, a packed rule from `rule_at` applied in a few
/// loads; anything else (no CFI, a rule that does not pack) goes through
/// [`slow_step`]. The registers live in locals, not a `Regs` in memory,
/// so that the loop keeps them in machine registers.
///
/// With a thread's own cache (`memo`), the walk first steps along the
/// previous walk's rsp prefix for as long as the code addresses match,
/// reading only each return address, then goes on frame by frame,
/// recording its own rsp prefix for the next walk. Either way it finds the
/// same return addresses and registers: a frame's rule depends on its
/// address alone, so each return address and the last saved `rbp` lie at
/// the offsets the previous walk found, and are read again now. The checks
/// it skips held then and still hold: each CFA lies above the one before
/// (the rules' offsets are positive), and each saved `rbp` lies between
/// the start and its frame's return address (`Frame::after`), inside the
/// stack when that return address is.
#[inline(always)]
fn walk(
    regs: Regs,
    out: &mut [u64],
    read: &impl Fn(u64) -> Option<u64>,
    rule_at: impl Fn(usize, u64) -> u64,
    memo: Option<&RuleCache>,
) -> usize {
    let Regs {
        rip: mut ip,
        rsp: mut sp,
        rbp: mut bp,
    } = regs;
    let start = sp;
    let mut n = 0;
    // The first lookup uses the current instruction itself; later ones use
    // return address - 1, which lies inside the call instruction.
    let mut lookup = ip;
    let mut frame = Frame::START;
    if let Some(memo) = memo {
        let known = (memo.prefix_len.load(Ordering::Relaxed) as usize).min(out.len());
        while n < known && memo.prefix[n].0.load(Ordering::Relaxed) == lookup {
            let f = Frame(memo.prefix[n].1.load(Ordering::Relaxed));
            let at = start.wrapping_add(f.cfa()).wrapping_sub(8);
            let ra = match read(at) {
                Some(ra) if ra != 0 => ra,
                // The step by the rule fails the same way: leave it to it.
                _ => break,
            };
            out[n] = ra;
            n += 1;
            (frame, ip, lookup) = (f, ra, ra - 1);
        }
        if n > 0 {
            sp = start.wrapping_add(frame.cfa());
            if let Some(slot) = frame.rbp_slot() {
                let Some(v) = read(start.wrapping_add(slot)) else {
                    return n;
                };
                bp = v;
            }
        }
        // Frame by frame while the rsp prefix goes on, recording it for
        // the next walk (which usually met it all above).
        let mut len = n;
        loop {
            let regs = Regs {
                rip: ip,
                rsp: sp,
                rbp: bp,
            };
            let next = if n < out.len() {
                step_at(&rule_at, n, lookup, regs, read)
            } else {
                None
            };
            let Some((v, next)) = next else {
                memo.prefix_len.store(len as u64, Ordering::Relaxed);
                return n;
            };
            let slot = (v & HAS_RBP != 0).then(|| {
                let off = (v >> 32) as u16 as i16 as i64 as u64;
                next.rsp.wrapping_add(off).wrapping_sub(start)
            });
            let extended = if v & (PACKED | CFA_RBP) == PACKED && len < RECENT_ENTRIES {
                frame.after(next.rsp.wrapping_sub(start), slot)
            } else {
                None
            };
            if let Some(f) = extended {
                memo.prefix[len].0.store(lookup, Ordering::Relaxed);
                memo.prefix[len].1.store(f.0, Ordering::Relaxed);
                frame = f;
                len += 1;
            }
            (ip, sp, bp) = (next.rip, next.rsp, next.rbp);
            out[n] = ip;
            n += 1;
            lookup = ip - 1;
            if extended.is_none() {
                memo.prefix_len.store(len as u64, Ordering::Relaxed);
                break;
            }
        }
    }
    // The rest, frame by frame. `step_at` written out: returning the rule
    // beside the registers, which only the loop above needs, cost this
    // loop 2 instructions a frame (callgrind).
    while n < out.len() {
        let v = rule_at(n, lookup);
        let next = if v & PACKED != 0 {
            let regs = Regs {
                rip: ip,
                rsp: sp,
                rbp: bp,
            };
            step_packed(regs, v, read)
        } else if v == OUTERMOST {
            break;
        } else {
            slow_step(v, lookup, sp, bp, read)
        };
        let Some(next) = next else { break };
        (ip, sp, bp) = (next.rip, next.rsp, next.rbp);
        out[n] = ip;
        n += 1;
        lookup = ip - 1;
    }
    n
}

/// A step by the packed rule `v`.
#[inline(always)]
fn step_packed(regs: Regs, v: u64, read: &impl Fn(u64) -> Option<u64>) -> Option<Regs> {
    step(
        regs,
        v & CFA_RBP != 0,
        v as u32 as i32 as i64,
        -8,
        (v & HAS_RBP != 0).then_some((v >> 32) as u16 as i16 as i64),
        read,
    )
}

/// A step by the rule of the frame at depth `n` (looked up at `lookup`):
/// the rule's packed value and the caller's registers.
#[inline(always)]
fn step_at(
    rule_at: &impl Fn(usize, u64) -> u64,
    n: usize,
    lookup: u64,
    regs: Regs,
    read: &impl Fn(u64) -> Option<u64>,
) -> Option<(u64, Regs)> {
    let v = rule_at(n, lookup);
    let next = if v & PACKED != 0 {
        step_packed(regs, v, read)
    } else if v == OUTERMOST {
        None
    } else {
        slow_step(v, lookup, regs.rsp, regs.rbp, read)
    };
    next.map(|next| (v, next))
}

/// A frame step without a packed rule: the frame-pointer convention where
/// no CFI covers `pc` and `rbp` looks like a frame pointer, or the rule
/// computed again when it does not pack.
#[cold]
#[inline(never)]
fn slow_step(
    v: u64,
    pc: u64,
    rsp: u64,
    rbp: u64,
    read: &impl Fn(u64) -> Option<u64>,
) -> Option<Regs> {
    let rule = if v == NO_RULE {
        // A frame pointer is aligned: anything else is data in `rbp`.
        (rbp > rsp && rbp % 8 == 0 && read(rbp).is_some()).then_some(Rule::FRAME_POINTER)?
    } else {
        match find_rule(pc)? {
            Found::Rule(rule) => rule,
            Found::Outermost => return None,
        }
    };
    let regs = Regs { rip: pc, rsp, rbp };
    step(
        regs,
        rule.cfa_rbp,
        rule.cfa_offset as i64,
        rule.ra_offset as i64,
        rule.rbp_offset.map(|o| o as i64),
        read,
    )
}

// ----------------------------------------------------------------------
// .eh_frame_hdr and CFI parsing
// ----------------------------------------------------------------------

/// What the CFI says of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// How to step to the caller.
    Rule(Rule),
    /// The return address is marked undefined: the thread's outermost
    /// frame (glibc's `clone3` and `_start` say so), where the walk ends.
    Outermost,
}

/// Finds the rule for `pc` from the CFI of its module; None where the CFI
/// says nothing this unwinder can use.
fn find_rule(pc: u64) -> Option<Found> {
    let table = current_table();
    let mut range = find_range(table, pc);
    if range.is_none() && modules::generation() != table.loader {
        // A module loaded since the table was built. (Not for every
        // address outside the modules: JIT-compiled code has no module,
        // and a table is never freed.)
        modules_changed();
        range = find_range(current_table(), pc);
    }
    let r = range?;
    if r.hdr == 0 {
        return None;
    }
    // SAFETY: `hdr` is the module's mapped .eh_frame_hdr (module loaded).
    let fde = unsafe { search_hdr(r.hdr, pc)? };
    // SAFETY: `fde` points into the module's mapped .eh_frame.
    unsafe { rule_from_fde(fde, pc) }
}

/// A reader over mapped CFI bytes. Unsafe to construct: the caller vouches
/// that the bytes it walks are mapped.
struct Reader {
    p: u64,
}

impl Reader {
    /// # Safety
    /// Every byte read must be mapped.
    unsafe fn u8(&mut self) -> u8 {
        // SAFETY: guaranteed by the caller.
        let v = unsafe { *(self.p as *const u8) };
        self.p += 1;
        v
    }

    /// # Safety
    /// As [`Reader::u8`].
    unsafe fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for x in &mut b {
            // SAFETY: guaranteed by the caller.
            *x = unsafe { self.u8() };
        }
        b
    }

    /// # Safety
    /// As [`Reader::u8`].
    unsafe fn uleb(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            // SAFETY: guaranteed by the caller.
            let b = unsafe { self.u8() };
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    }

    /// # Safety
    /// As [`Reader::u8`].
    unsafe fn sleb(&mut self) -> i64 {
        let mut v = 0i64;
        let mut shift = 0;
        loop {
            // SAFETY: guaranteed by the caller.
            let b = unsafe { self.u8() };
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return v;
            }
        }
    }

    /// Reads a pointer in DWARF EH encoding `enc`; `data_base` is the base
    /// for `DW_EH_PE_datarel`. None for encodings this reader does not know.
    ///
    /// # Safety
    /// As [`Reader::u8`].
    unsafe fn pointer(&mut self, enc: u8, data_base: u64) -> Option<u64> {
        if enc == 0xff {
            return Some(0);
        }
        let here = self.p;
        // SAFETY: guaranteed by the caller.
        let v = unsafe {
            match enc & 0x0f {
                0x00 => u64::from_le_bytes(self.bytes::<8>()),
                0x01 => self.uleb(),
                0x02 => u16::from_le_bytes(self.bytes::<2>()) as u64,
                0x03 => u32::from_le_bytes(self.bytes::<4>()) as u64,
                0x04 => u64::from_le_bytes(self.bytes::<8>()),
                0x09 => self.sleb() as u64,
                0x0a => i16::from_le_bytes(self.bytes::<2>()) as i64 as u64,
                0x0b => i32::from_le_bytes(self.bytes::<4>()) as i64 as u64,
                0x0c => i64::from_le_bytes(self.bytes::<8>()) as u64,
                _ => return None,
            }
        };
        let base = match enc & 0x70 {
            0x00 => 0,
            0x10 => here,
            0x30 => data_base,
            _ => return None,
        };
        Some(v.wrapping_add(base))
    }
}

/// Binary-searches `.eh_frame_hdr` for the FDE covering `pc`.
///
/// # Safety
/// `hdr` must point at a mapped `.eh_frame_hdr`.
unsafe fn search_hdr(hdr: u64, pc: u64) -> Option<u64> {
    let mut r = Reader { p: hdr };
    // SAFETY: reading the mapped header (caller).
    unsafe {
        let version = r.u8();
        let eh_frame_ptr_enc = r.u8();
        let count_enc = r.u8();
        let table_enc = r.u8();
        if version != 1 || table_enc != 0x3b {
            // Only the datarel|sdata4 table is searchable in place; every
            // mainstream linker writes that.
            return None;
        }
        r.pointer(eh_frame_ptr_enc, hdr)?;
        let count = r.pointer(count_enc, hdr)? as usize;
        let table = r.p;
        // Entries: (initial location, FDE address), each an i32 relative to
        // the header.
        let entry = |i: usize| -> (u64, u64) {
            let e = (table + i as u64 * 8) as *const i32;
            (
                hdr.wrapping_add(*e as i64 as u64),
                hdr.wrapping_add(*e.add(1) as i64 as u64),
            )
        };
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry(mid).0 <= pc {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return None;
        }
        Some(entry(lo - 1).1)
    }
}

/// Register numbers in DWARF for x86_64.
const RSP: u64 = 7;
const RBP: u64 = 6;
const RA: u64 = 16;

#[derive(Clone, Copy)]
struct State {
    cfa_reg: u64,
    cfa_offset: i64,
    cfa_expr: bool,
    rbp: Option<i64>,
    ra: Option<i64>,
    rbp_unknown: bool,
    /// The return address is marked undefined: the outermost frame.
    ra_undefined: bool,
}

/// Computes the rule at `pc` from the FDE at `fde`.
///
/// # Safety
/// `fde` must point at a mapped FDE of a loaded module.
unsafe fn rule_from_fde(fde: u64, pc: u64) -> Option<Found> {
    let mut r = Reader { p: fde };
    // SAFETY: all reads are inside the module's mapped .eh_frame (caller);
    // lengths come from the CFI itself.
    unsafe {
        let len = u32::from_le_bytes(r.bytes::<4>()) as u64;
        if len == 0 || len == 0xffff_ffff {
            return None;
        }
        let fde_end = r.p + len;
        let cie_ptr_pos = r.p;
        let cie_offset = u32::from_le_bytes(r.bytes::<4>()) as u64;
        if cie_offset == 0 {
            return None; // a CIE, not an FDE
        }
        let cie = cie_ptr_pos - cie_offset;
        let cie = parse_cie(cie)?;
        let pc_begin = r.pointer(cie.fde_enc, 0)?;
        let pc_range = r.pointer(cie.fde_enc & 0x0f, 0)?;
        if pc < pc_begin || pc >= pc_begin.wrapping_add(pc_range) {
            return None;
        }
        if cie.has_z {
            let aug_len = r.uleb();
            r.p += aug_len;
        }
        if cie.signal_frame {
            return None;
        }
        let mut state = State {
            cfa_reg: RSP,
            cfa_offset: 8,
            cfa_expr: false,
            rbp: None,
            ra: None,
            rbp_unknown: false,
            ra_undefined: false,
        };
        let initial = run_cfa(
            cie.instructions,
            cie.instructions_end,
            &cie,
            u64::MAX,
            0,
            &mut state,
            None,
        )?;
        run_cfa(r.p, fde_end, &cie, pc, pc_begin, &mut state, Some(initial))?;
        if state.ra_undefined {
            return Some(Found::Outermost);
        }
        if state.cfa_expr || state.rbp_unknown {
            return None;
        }
        let cfa_rbp = match state.cfa_reg {
            RSP => false,
            RBP => true,
            _ => return None,
        };
        Some(Found::Rule(Rule {
            cfa_rbp,
            cfa_offset: i32::try_from(state.cfa_offset).ok()?,
            ra_offset: i32::try_from(state.ra.unwrap_or(-8)).ok()?,
            rbp_offset: match state.rbp {
                Some(o) => Some(i32::try_from(o).ok()?),
                None => None,
            },
        }))
    }
}

struct Cie {
    code_align: u64,
    data_align: i64,
    fde_enc: u8,
    has_z: bool,
    signal_frame: bool,
    instructions: u64,
    instructions_end: u64,
}

/// # Safety
/// `at` must point at a mapped CIE.
unsafe fn parse_cie(at: u64) -> Option<Cie> {
    let mut r = Reader { p: at };
    // SAFETY: reads inside the mapped CIE (caller).
    unsafe {
        let len = u32::from_le_bytes(r.bytes::<4>()) as u64;
        if len == 0 || len == 0xffff_ffff {
            return None;
        }
        let end = r.p + len;
        let id = u32::from_le_bytes(r.bytes::<4>());
        if id != 0 {
            return None;
        }
        let version = r.u8();
        let mut aug = [0u8; 8];
        let mut aug_len = 0;
        loop {
            let c = r.u8();
            if c == 0 {
                break;
            }
            if aug_len < aug.len() {
                aug[aug_len] = c;
                aug_len += 1;
            } else {
                return None;
            }
        }
        let aug = &aug[..aug_len];
        let code_align = r.uleb();
        let data_align = r.sleb();
        let _ra_reg = if version == 1 {
            r.u8() as u64
        } else {
            r.uleb()
        };
        let mut cie = Cie {
            code_align,
            data_align,
            fde_enc: 0,
            has_z: false,
            signal_frame: false,
            instructions: 0,
            instructions_end: end,
        };
        if aug.first() == Some(&b'z') {
            cie.has_z = true;
            let aug_data_len = r.uleb();
            let aug_end = r.p + aug_data_len;
            for &c in &aug[1..] {
                match c {
                    b'R' => cie.fde_enc = r.u8(),
                    b'P' => {
                        let enc = r.u8();
                        r.pointer(enc & 0x7f, 0)?;
                    }
                    b'L' => {
                        r.u8();
                    }
                    b'S' => cie.signal_frame = true,
                    _ => return None,
                }
            }
            r.p = aug_end;
        } else if !aug.is_empty() {
            return None;
        }
        cie.instructions = r.p;
        Some(cie)
    }
}

/// Runs CFA instructions from `p` to `end`, stopping once the location
/// passes `target`. `initial` is the state after the CIE's instructions
/// (for `DW_CFA_restore`). Returns the state reached.
///
/// # Safety
/// `[p, end)` must be mapped.
unsafe fn run_cfa(
    p: u64,
    end: u64,
    cie: &Cie,
    target: u64,
    mut loc: u64,
    state: &mut State,
    initial: Option<State>,
) -> Option<State> {
    let mut saved = [*state; 8];
    let mut depth = 0usize;
    let mut steps = 0u32;
    let mut r = Reader { p };
    let restore = |state: &mut State, reg: u64| {
        let init = initial.unwrap_or(*state);
        match reg {
            RBP => {
                state.rbp = init.rbp;
                state.rbp_unknown = init.rbp_unknown;
            }
            RA => {
                state.ra = init.ra;
                state.ra_undefined = init.ra_undefined;
            }
            _ => {}
        }
    };
    let set_offset = |state: &mut State, reg: u64, off: i64| match reg {
        RBP => {
            state.rbp = Some(off);
            state.rbp_unknown = false;
        }
        RA => {
            state.ra = Some(off);
            state.ra_undefined = false;
        }
        _ => {}
    };
    let set_unknown = |state: &mut State, reg: u64| match reg {
        RBP => state.rbp_unknown = true,
        RA => state.ra_undefined = true,
        _ => {}
    };
    // SAFETY: reads stay inside [p, end) (caller), checked per instruction.
    unsafe {
        while r.p < end {
            steps += 1;
            if steps > 10_000 {
                return None;
            }
            let op = r.u8();
            let (high, low) = (op >> 6, (op & 0x3f) as u64);
            match high {
                1 => {
                    loc += low * cie.code_align;
                    if loc > target {
                        break;
                    }
                    continue;
                }
                2 => {
                    let off = r.uleb() as i64 * cie.data_align;
                    set_offset(state, low, off);
                    continue;
                }
                3 => {
                    restore(state, low);
                    continue;
                }
                _ => {}
            }
            match op {
                0x00 => {}
                0x01 => {
                    loc = r.pointer(cie.fde_enc, 0)?;
                    if loc > target {
                        break;
                    }
                }
                0x02..=0x04 => {
                    let delta = match op {
                        0x02 => r.u8() as u64,
                        0x03 => u16::from_le_bytes(r.bytes::<2>()) as u64,
                        _ => u32::from_le_bytes(r.bytes::<4>()) as u64,
                    };
                    loc += delta * cie.code_align;
                    if loc > target {
                        break;
                    }
                }
                0x05 => {
                    let reg = r.uleb();
                    let off = r.uleb() as i64 * cie.data_align;
                    set_offset(state, reg, off);
                }
                0x06 => {
                    let reg = r.uleb();
                    restore(state, reg);
                }
                0x07 => {
                    let reg = r.uleb();
                    set_unknown(state, reg);
                }
                0x08 => {
                    let reg = r.uleb();
                    if reg == RBP {
                        state.rbp = None;
                        state.rbp_unknown = false;
                    }
                }
                0x09 => {
                    let reg = r.uleb();
                    let _other = r.uleb();
                    set_unknown(state, reg);
                }
                0x0a => {
                    if depth >= saved.len() {
                        return None;
                    }
                    saved[depth] = *state;
                    depth += 1;
                }
                0x0b => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    let s = saved[depth];
                    // The CFA rule is part of the saved state too.
                    *state = s;
                }
                0x0c => {
                    state.cfa_reg = r.uleb();
                    state.cfa_offset = r.uleb() as i64;
                    state.cfa_expr = false;
                }
                0x0d => {
                    state.cfa_reg = r.uleb();
                }
                0x0e => {
                    state.cfa_offset = r.uleb() as i64;
                }
                0x0f => {
                    let len = r.uleb();
                    r.p += len;
                    state.cfa_expr = true;
                }
                0x10 | 0x16 => {
                    let reg = r.uleb();
                    let len = r.uleb();
                    r.p += len;
                    set_unknown(state, reg);
                }
                0x11 => {
                    let reg = r.uleb();
                    let off = r.sleb() * cie.data_align;
                    set_offset(state, reg, off);
                }
                0x12 => {
                    state.cfa_reg = r.uleb();
                    state.cfa_offset = r.sleb() * cie.data_align;
                    state.cfa_expr = false;
                }
                0x13 => {
                    state.cfa_offset = r.sleb() * cie.data_align;
                }
                0x14 | 0x15 => {
                    let reg = r.uleb();
                    if op == 0x14 {
                        r.uleb();
                    } else {
                        r.sleb();
                    }
                    set_unknown(state, reg);
                }
                0x2e => {
                    r.uleb();
                }
                0x2f => {
                    let reg = r.uleb();
                    let off = -(r.uleb() as i64) * cie.data_align;
                    set_offset(state, reg, off);
                }
                _ => return None,
            }
        }
    }
    Some(*state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pack_and_unpack() {
        let rules = [
            Rule::FRAME_POINTER,
            Rule {
                cfa_rbp: false,
                cfa_offset: 4096 + 56,
                ra_offset: -8,
                rbp_offset: None,
            },
            Rule {
                cfa_rbp: false,
                cfa_offset: 8,
                ra_offset: -8,
                rbp_offset: Some(-48),
            },
        ];
        for r in rules {
            assert!(r.packable());
            assert_eq!(Rule::unpack(r.pack()), r);
        }
        // The return address elsewhere than CFA - 8, or an rbp slot beyond
        // an i16: computed at each use instead.
        let odd_ra = Rule {
            ra_offset: -16,
            ..Rule::FRAME_POINTER
        };
        let far_rbp = Rule {
            rbp_offset: Some(-40_000),
            ..Rule::FRAME_POINTER
        };
        assert!(!odd_ra.packable() && !far_rbp.packable());
    }

    /// A private cache, as rings hold theirs: a fresh zeroed mapping
    /// (`shared` false, every entry empty). Never unmapped (tests only).
    fn private_cache() -> &'static RuleCache {
        let cache = crate::os::map(core::mem::size_of::<RuleCache>()) as *const RuleCache;
        assert!(!cache.is_null());
        // SAFETY: zeroed memory is a valid, empty private cache, and the
        // mapping is never unmapped.
        unsafe { &*cache }
    }

    /// The stack from here, walked with `cache`, and the same stack walked
    /// frame by frame (with a cache whose rsp prefix is forgotten first):
    /// from one call site, so that the two stacks must be equal.
    #[inline(never)]
    fn both_walks(cache: &RuleCache, fresh: &RuleCache) -> (Vec<u64>, Vec<u64>) {
        let bounds = super::super::stack::Bounds::of_current_thread();
        let mut walks = Vec::new();
        for (c, forget) in [(cache, false), (fresh, true)] {
            if forget {
                c.prefix_len.store(0, Ordering::Relaxed);
            }
            let mut out = [0u64; 64];
            let n = super::super::stack::capture(&mut out, bounds, c);
            walks.push(out[..n].to_vec());
        }
        let fresh_walk = walks.pop().unwrap();
        (walks.pop().unwrap(), fresh_walk)
    }

    #[inline(never)]
    fn descend_a(path: &[bool], cache: &RuleCache, fresh: &RuleCache) -> (Vec<u64>, Vec<u64>) {
        let r = match path.split_first() {
            None => both_walks(cache, fresh),
            Some((true, rest)) => descend_a(rest, cache, fresh),
            Some((false, rest)) => descend_b(rest, cache, fresh),
        };
        std::hint::black_box(r)
    }

    #[inline(never)]
    fn descend_b(path: &[bool], cache: &RuleCache, fresh: &RuleCache) -> (Vec<u64>, Vec<u64>) {
        // A frame of another size than descend_a's.
        let pad = std::hint::black_box([path.len() as u64; 9]);
        let r = match path.split_first() {
            None => both_walks(cache, fresh),
            Some((true, rest)) => descend_a(rest, cache, fresh),
            Some((false, rest)) => descend_b(rest, cache, fresh),
        };
        std::hint::black_box(pad);
        std::hint::black_box(r)
    }

    #[test]
    fn a_walk_along_the_last_walks_prefix_finds_what_a_fresh_walk_finds() {
        let (cache, fresh) = (private_cache(), private_cache());
        // Random paths of random depths, so that each walk shares a part
        // of the previous one's frames, from none to all.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut fast = 0;
        for round in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let depth = (x % 12) as usize;
            let path: Vec<bool> = (0..depth).map(|i| (x >> (i + 8)) & 1 == 1).collect();
            let (walk, fresh_walk) = descend_a(&path, cache, fresh);
            assert_eq!(walk, fresh_walk, "round {round}, path {path:?}");
            assert!(walk.len() > depth, "round {round}: {} frames", walk.len());
            fast += cache.prefix_len.load(Ordering::Relaxed);
        }
        // The prefix was used: the capture's own frame at least, every time.
        assert!(fast >= 400, "prefix frames {fast}");
    }

    /// A synthetic thread stack for walks whose rules the test chooses:
    /// functions at made-up code addresses, frames built into one memory
    /// that each new stack overwrites only where its frames lie (what a
    /// previous, deeper stack left beyond stays, as on a real stack).
    struct FakeStack {
        words: Vec<u64>,
        /// (size, kind) of each function: kind 0 keeps a frame pointer
        /// (CFA = rbp + 16), 1 is rsp-based and leaves rbp alone, 2 is
        /// rsp-based, saves rbp below its return address and uses rbp as
        /// a scratch register.
        functions: Vec<(u64, u8)>,
    }

    const FAKE_TOP: u64 = 0x7000_0000;
    const FAKE_WORDS: usize = 4096;
    const FAKE_CODE: u64 = 0x40_0000;

    impl FakeStack {
        fn lo() -> u64 {
            FAKE_TOP - 8 * FAKE_WORDS as u64
        }

        fn read(&self, a: u64) -> Option<u64> {
            (a >= Self::lo() && a < FAKE_TOP && a % 8 == 0)
                .then(|| self.words[((a - Self::lo()) / 8) as usize])
        }

        fn write(&mut self, a: u64, v: u64) {
            self.words[((a - Self::lo()) / 8) as usize] = v;
        }

        /// The return address in function `f` of its call to `child`.
        fn call_site(f: usize, child: usize) -> u64 {
            FAKE_CODE + 0x1000 * f as u64 + 0x10 * child as u64 + 5
        }

        /// The packed rule of the code at `pc`.
        fn rule(&self, pc: u64) -> u64 {
            let f = ((pc - FAKE_CODE) / 0x1000) as usize;
            let (size, kind) = self.functions[f];
            let rule = match kind {
                0 => Rule::FRAME_POINTER,
                1 => Rule {
                    cfa_rbp: false,
                    cfa_offset: size as i32,
                    ra_offset: -8,
                    rbp_offset: None,
                },
                _ => Rule {
                    cfa_rbp: false,
                    cfa_offset: size as i32,
                    ra_offset: -8,
                    rbp_offset: Some(-16),
                },
            };
            rule.pack()
        }

        /// Builds the frames of `chain` (outermost first, function 0 its
        /// root) and returns the registers in its innermost function.
        fn build(&mut self, chain: &[usize], scratch: u64) -> Regs {
            let mut cfa = FAKE_TOP - 64;
            // The root's return address: 0 ends the walk.
            self.write(cfa - 8, 0);
            let mut rbp = 0x1234_5670;
            for (i, &f) in chain.iter().enumerate() {
                let (size, kind) = self.functions[f];
                match kind {
                    0 => {
                        self.write(cfa - 16, rbp);
                        rbp = cfa - 16;
                    }
                    2 => {
                        self.write(cfa - 16, rbp);
                        rbp = scratch ^ (i as u64) << 4;
                    }
                    _ => {}
                }
                let sp = cfa - size;
                if let Some(&child) = chain.get(i + 1) {
                    self.write(sp - 8, Self::call_site(f, child));
                }
                cfa = sp;
            }
            let leaf = *chain.last().unwrap();
            Regs {
                rip: FAKE_CODE + 0x1000 * leaf as u64 + 0x800,
                rsp: cfa,
                rbp,
            }
        }
    }

    /// Walks of random call chains over functions of a few frame sizes and
    /// kinds, into one memory: consecutive stacks share inner functions
    /// over different outer ones, and stale words of earlier stacks lie
    /// beyond. A walk with the thread's memory of its last walk (the rsp
    /// prefix) must find what a walk without it finds.
    #[test]
    fn a_walk_with_memory_finds_what_a_walk_without_it_finds() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for trial in 0..40 {
            let cache = private_cache();
            let mut stack = FakeStack {
                words: (0..FAKE_WORDS).map(|_| next()).collect(),
                // Function 1 keeps a frame pointer, function 2 does not:
                // the rsp prefix (frames of rsp-based rules at the inner
                // end) is the run of 2s (and 3s) at the chain's end.
                functions: (0..4)
                    .map(|f| {
                        let kind = match f {
                            1 => 0,
                            2 => 1 + (next() % 2) as u8,
                            _ => (next() % 3) as u8,
                        };
                        (16 * (2 + next() % 6), kind)
                    })
                    .collect(),
            };
            let mut prefixed = 0;
            for round in 0..300 {
                let depth = 1 + (next() % 24) as usize;
                // Function 0 is the root; below it, mostly two functions.
                let chain: Vec<usize> = std::iter::once(0)
                    .chain(
                        (1..depth)
                            .map(|_| 1 + (next() % 100 > 90) as usize + (next() & 1) as usize),
                    )
                    .collect();
                let regs = stack.build(&chain, next());
                let read = |a: u64| stack.read(a);
                let rule_at = |_: usize, pc: u64| stack.rule(pc);
                let mut joined = [0u64; 64];
                let n = walk(regs, &mut joined, &read, rule_at, Some(cache));
                let mut plain = [0u64; 64];
                let m = walk(regs, &mut plain, &read, rule_at, None);
                assert_eq!(
                    joined[..n],
                    plain[..m],
                    "trial {trial}, round {round}, chain {chain:?}, functions {:?}",
                    stack.functions
                );
                // A return address for every frame but the root's.
                assert_eq!(m, chain.len() - 1, "chain {chain:?}");
                prefixed += cache.prefix_len.load(Ordering::Relaxed);
            }
            assert!(prefixed > 0, "trial {trial}: the rsp prefix was never used");
        }
    }

    #[test]
    fn the_rsp_prefix_keeps_only_rbp_slots_below_the_return_address() {
        let f = Frame::START.after(48, Some(32)).expect("push rbp's slot");
        assert_eq!((f.cfa(), f.rbp_slot()), (48, Some(32)));
        // No new save: the last one carries on.
        let g = f.after(96, None).expect("no save");
        assert_eq!((g.cfa(), g.rbp_slot()), (96, Some(32)));
        // At or above the return address, or above the CFA: not a prefix.
        assert!(f.after(96, Some(88)).is_none());
        assert!(f.after(96, Some(104)).is_none());
        // Offsets past 32 bits: not a prefix.
        assert!(Frame::START.after(1 << 32, None).is_none());
    }

    #[test]
    fn a_threads_walk_ends_at_its_outermost_frame() {
        // glibc's clone3 marks the return address undefined: a walk from a
        // spawned thread reaches it, caches it as the end, and stops there
        // rather than trying the frame-pointer step beyond it.
        let walk = std::thread::spawn(|| {
            let cache = private_cache();
            let mut out = [0u64; 64];
            let bounds = super::super::stack::Bounds::of_current_thread();
            let n = super::super::stack::capture(&mut out, bounds, cache);
            let outermost = cache
                .entries
                .iter()
                .any(|e| e.1.load(Ordering::Relaxed) == OUTERMOST);
            (n, outermost)
        })
        .join()
        .unwrap();
        assert!(walk.0 > 2 && walk.0 < 64, "{walk:?}");
        assert!(walk.1, "no outermost frame found: {walk:?}");
    }

    #[test]
    fn a_module_change_makes_a_cache_forget_its_rules() {
        let cache = private_cache();
        let bounds = super::super::stack::Bounds::of_current_thread();
        let mut out = [0u64; 64];
        super::super::stack::capture(&mut out, bounds, cache);
        // A rule cached for an address that an unloaded module may have
        // left to another.
        let pc = 0x1234_5678u64;
        let slot = &cache.entries[RuleCache::slot(pc)];
        store_entry(slot, pc, Rule::FRAME_POINTER.pack());
        modules_changed();
        let n = super::super::stack::capture(&mut out, bounds, cache);
        assert!(n > 0);
        assert_ne!(
            slot.0.load(Ordering::Relaxed),
            pc,
            "kept across a module change"
        );
    }

    #[test]
    fn addresses_outside_every_module_build_no_table() {
        // Code with no module (a JIT's): each address is looked up once
        // and builds no table (a table is never freed). Other tests may
        // load modules meanwhile: a few rebuilds are theirs.
        let anon = crate::os::map(1 << 16) as u64;
        assert_ne!(anon, 0);
        let mut table = current_table() as *const Table;
        let mut rebuilt = 0;
        for i in 0..200 {
            assert_eq!(find_rule(anon + i * 64), None);
            let now = current_table() as *const Table;
            if now != table {
                rebuilt += 1;
                table = now;
            }
        }
        assert!(
            rebuilt < 5,
            "{rebuilt} tables built for addresses outside every module"
        );
    }

    #[test]
    fn finds_rules_for_this_function_and_libc() {
        let here = finds_rules_for_this_function_and_libc as *const () as usize as u64;
        assert!(find_rule(here + 16).is_some(), "no CFI for test code");
        let malloc = libc::malloc as *const () as usize as u64;
        assert!(find_rule(malloc + 4).is_some(), "no CFI for libc");
    }
}
