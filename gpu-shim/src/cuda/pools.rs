//! Stream-ordered pools: what they hold from the device, beside what is
//! allocated from them.
//!
//! `cuMemAllocAsync` and `cuMemAllocFromPoolAsync` take memory from a
//! pool, and `cuMemFreeAsync` gives it back to the pool, not to the
//! device: the pool keeps reserved memory until it is trimmed (explicitly,
//! or at a synchronisation past its release threshold). The allocation
//! events are the pools' logical bytes; this module adds their physical
//! side, a level (`op::GAUGE`) per pool: after every pool operation of a
//! recorded call, each pool seen so far is asked for
//! `CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT`, and a level is recorded when it
//! changed. The question is asked from the application's thread, inside
//! its call, where its context is current, as the driver requires.
//!
//! A pool the driver no longer knows (destroyed) gets a last level of 0
//! and is forgotten. At most [`MAX_POOLS`] pools are followed; more are
//! rare (one default pool per device, and a few created ones), and the
//! rest keep their logical bytes only.

#![allow(non_snake_case)]

use core::ffi::{c_int, c_void};
use std::sync::Mutex;

use memtally_alloc::device::{DeviceEvent, memory, op};

use super::driver::{CUresult, current_device, driver_fn, out};
use super::vmm::location_device;
use super::{CUDA_ERROR_NOT_INITIALIZED, Id, SLOTS, next_or};
use crate::call::DriverCall;

/// Pools followed at most.
pub const MAX_POOLS: usize = 64;

/// `CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT`.
const RESERVED_MEM_CURRENT: c_int = 5;

/// A pool followed: its handle, device and last recorded level.
#[derive(Clone, Copy)]
struct Followed {
    pool: usize,
    device: u32,
    level: u64,
}

const NONE: Followed = Followed {
    pool: 0,
    device: 0,
    level: 0,
};

/// The pools followed (pool 0: a free entry). A lock, not atomics: two
/// threads sampling at once must record their levels in the order they
/// read them. Only ever tried, never waited for: a thread that finds it
/// held skips its sample (the holder is sampling the same pools), and a
/// child forked while another thread held it never blocks on it (it then
/// records no pool levels).
static FOLLOWED: Mutex<[Followed; MAX_POOLS]> = Mutex::new([NONE; MAX_POOLS]);

/// Follows `pool` (of `device`) from now on.
pub(super) fn follow(pool: usize, device: u32) {
    if pool == 0 {
        return;
    }
    let Ok(mut pools) = FOLLOWED.try_lock() else {
        return;
    };
    if pools.iter().any(|p| p.pool == pool) {
        return;
    }
    if let Some(free) = pools.iter_mut().find(|p| p.pool == 0) {
        *free = Followed {
            pool,
            device,
            level: 0,
        };
    }
}

/// The current device's current pool (what `cuMemAllocAsync` takes from).
pub(super) fn current_pool() -> (usize, u32) {
    let device = current_device();
    let Some(get) = driver_fn!(
        c"cuDeviceGetMemPool",
        unsafe extern "C" fn(*mut *mut c_void, c_int) -> CUresult
    ) else {
        return (0, device);
    };
    let mut pool: *mut c_void = core::ptr::null_mut();
    // SAFETY: a valid out pointer and a device the driver named.
    let r = unsafe { get(&mut pool, device as c_int) };
    (out(&pool, r) as usize, device)
}

/// Asks every followed pool for its reserved bytes; records the levels
/// that changed.
pub(super) fn sample(call: &DriverCall) {
    if !call.records() {
        return;
    }
    let Some(get) = driver_fn!(
        c"cuMemPoolGetAttribute",
        unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> CUresult
    ) else {
        return;
    };
    let Ok(mut pools) = FOLLOWED.try_lock() else {
        return;
    };
    for p in pools.iter_mut().filter(|p| p.pool != 0) {
        let mut reserved: u64 = 0;
        // SAFETY: a pool the driver handed out, and a u64 out value, as
        // the attribute takes.
        let r = unsafe {
            get(
                p.pool as *mut c_void,
                RESERVED_MEM_CURRENT,
                (&mut reserved as *mut u64).cast(),
            )
        };
        let gone = r != 0;
        let level = if gone { 0 } else { reserved };
        if level != p.level {
            memtally_alloc::device::record(&DeviceEvent {
                op: op::GAUGE,
                memory: memory::POOL,
                device: p.device,
                api: call.api(),
                address: p.pool as u64,
                size: level,
                handle: 0,
            });
            p.level = level;
        }
        if gone {
            *p = NONE;
        }
    }
}

/// `cuMemPoolCreate`: the new pool is followed.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolCreate(pool: *mut *mut c_void, props: *const c_void) -> CUresult {
    let next = next_or!(
        Id::MemPoolCreate,
        unsafe extern "C" fn(*mut *mut c_void, *const c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemPoolCreate");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(pool, props) };
    if r == 0 && call.records() {
        follow(out(pool, r) as usize, location_device(props));
    }
    r
}

/// `cuMemPoolDestroy`: what the pool still holds, sampled.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolDestroy(pool: *mut c_void) -> CUresult {
    let next = next_or!(
        Id::MemPoolDestroy,
        unsafe extern "C" fn(*mut c_void) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemPoolDestroy");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(pool) };
    sample(&call);
    r
}

/// `cuMemPoolTrimTo`: the reserved bytes after the trim, sampled.
///
/// # Safety
/// As the driver's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolTrimTo(pool: *mut c_void, keep: usize) -> CUresult {
    let next = next_or!(
        Id::MemPoolTrimTo,
        unsafe extern "C" fn(*mut c_void, usize) -> CUresult,
        CUDA_ERROR_NOT_INITIALIZED
    );
    let call = DriverCall::enter("cuMemPoolTrimTo");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(pool, keep) };
    sample(&call);
    r
}
