//! RDMA memory registration (libibverbs): memory a program pins and maps
//! for a network adapter, a classic leak (a region never deregistered
//! keeps its pages pinned). Each registration is an event of memory kind
//! `REGISTERED` on the host, keyed by its `struct ibv_mr *`, with the
//! registering stack and the region's length; deregistration frees it.
//! The bytes are a gauge of pinned memory, not new memory (the buffer was
//! allocated elsewhere, usually on the heap), so they never add to a
//! total.
//!
//! rdma-core versions its exports: `ibv_reg_mr@IBVERBS_1.0` (a legacy ABI)
//! and `ibv_reg_mr@@IBVERBS_1.1`, `ibv_reg_mr_iova@@IBVERBS_1.7`,
//! `ibv_reg_mr_iova2@@IBVERBS_1.8`, `ibv_reg_dmabuf_mr@@IBVERBS_1.12`;
//! `verbs.h`'s `ibv_reg_mr` is a macro that calls `ibv_reg_mr`,
//! `ibv_reg_mr_iova` or `ibv_reg_mr_iova2` depending on the access flags. A program linked against the library binds to the default
//! versions, which our unversioned exports interpose; NCCL finds them with
//! `dlvsym(handle, "ibv_reg_mr", "IBVERBS_1.1")`, which the `dlvsym` hook
//! answers from the slot of that version, the legacy 1.0 ABI included
//! (its wrappers are handed out, never exported). Not seen: a program
//! linked against the 1.0 ABI (it binds to our default-ABI export), and
//! `ibv_alloc_dm`/`ibv_reg_dm_mr` and vendor `mlx5dv_*` calls, which are
//! inline functions over the provider's operation table.

#![allow(non_snake_case)]

use core::ffi::{c_int, c_uint, c_void};

use memtally_alloc::device::{DeviceEvent, HOST, memory, op};

use crate::call::DriverCall;
use crate::slot::{next_or, slots};

/// The start of `struct ibv_mr`.
#[repr(C)]
struct IbvMr {
    context: *mut c_void,
    pd: *mut c_void,
    addr: *mut c_void,
    length: usize,
}

/// `IBV_REREG_MR_CHANGE_TRANSLATION`: the region moves to a new range.
const CHANGE_TRANSLATION: c_int = 1 << 1;

/// What our wrappers return when the library is missing: null for a
/// registration, `ENOSYS` for the rest (as the real calls return errno
/// values).
const MISSING: c_int = libc::ENOSYS;

slots! {
    RegMr = c"ibv_reg_mr" in b"libibverbs.so" [b"", b"IBVERBS_1.1"] => ibv_reg_mr;
    RegMr_1_0 = c"ibv_reg_mr" in b"libibverbs.so" [b"IBVERBS_1.0"] => ibv_reg_mr_1_0;
    RegMrIova = c"ibv_reg_mr_iova" in b"libibverbs.so" [b"", b"IBVERBS_1.7"] => ibv_reg_mr_iova;
    RegMrIova2 = c"ibv_reg_mr_iova2" in b"libibverbs.so" [b"", b"IBVERBS_1.8"] => ibv_reg_mr_iova2;
    RegDmabufMr = c"ibv_reg_dmabuf_mr" in b"libibverbs.so" [b"", b"IBVERBS_1.12"] => ibv_reg_dmabuf_mr;
    ReregMr = c"ibv_rereg_mr" in b"libibverbs.so" [b"", b"IBVERBS_1.1"] => ibv_rereg_mr;
    DeregMr = c"ibv_dereg_mr" in b"libibverbs.so" [b"", b"IBVERBS_1.1"] => ibv_dereg_mr;
    DeregMr_1_0 = c"ibv_dereg_mr" in b"libibverbs.so" [b"IBVERBS_1.0"] => ibv_dereg_mr_1_0;
}

/// Records a registration (`mr` null: a failure of `length` bytes).
fn registered(call: &DriverCall, mr: *mut IbvMr, length: usize) {
    if !call.records() {
        return;
    }
    memtally_alloc::device::record(&DeviceEvent {
        op: if mr.is_null() { op::FAILED } else { op::ALLOC },
        memory: memory::REGISTERED,
        device: HOST,
        api: call.api(),
        address: mr as u64,
        size: length as u64,
        handle: 0,
    });
}

/// Records a deregistration of `mr`.
fn deregistered(call: &DriverCall, mr: *mut IbvMr) {
    if !call.records() || mr.is_null() {
        return;
    }
    let event = DeviceEvent {
        op: op::FREE,
        memory: memory::REGISTERED,
        device: HOST,
        api: call.api(),
        address: mr as u64,
        size: 0,
        handle: 0,
    };
    memtally_alloc::device::record_at(&event, call.released());
}

type RegMr = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, c_int) -> *mut IbvMr;
type DeregMr = unsafe extern "C" fn(*mut IbvMr) -> c_int;

/// `ibv_reg_mr` (the `IBVERBS_1.1` ABI).
///
/// # Safety
/// As libibverbs'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ibv_reg_mr(
    pd: *mut c_void,
    addr: *mut c_void,
    length: usize,
    access: c_int,
) -> *mut c_void {
    let next = next_or!(Id::RegMr, RegMr, core::ptr::null_mut());
    let call = DriverCall::enter("ibv_reg_mr");
    // SAFETY: the caller's arguments, passed on.
    let mr = unsafe { next(pd, addr, length, access) };
    registered(&call, mr, length);
    mr.cast()
}

/// `ibv_reg_mr@IBVERBS_1.0`, handed out to `dlvsym` callers of that
/// version only.
///
/// # Safety
/// As libibverbs'.
unsafe extern "C" fn ibv_reg_mr_1_0(
    pd: *mut c_void,
    addr: *mut c_void,
    length: usize,
    access: c_int,
) -> *mut c_void {
    let next = next_or!(Id::RegMr_1_0, RegMr, core::ptr::null_mut());
    let call = DriverCall::enter("ibv_reg_mr");
    // SAFETY: the caller's arguments, passed on.
    let mr = unsafe { next(pd, addr, length, access) };
    registered(&call, mr, length);
    mr.cast()
}

/// `ibv_reg_mr_iova2`.
///
/// # Safety
/// As libibverbs'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ibv_reg_mr_iova2(
    pd: *mut c_void,
    addr: *mut c_void,
    length: usize,
    iova: u64,
    access: c_uint,
) -> *mut c_void {
    let next = next_or!(
        Id::RegMrIova2,
        unsafe extern "C" fn(*mut c_void, *mut c_void, usize, u64, c_uint) -> *mut IbvMr,
        core::ptr::null_mut()
    );
    let call = DriverCall::enter("ibv_reg_mr_iova2");
    // SAFETY: the caller's arguments, passed on.
    let mr = unsafe { next(pd, addr, length, iova, access) };
    registered(&call, mr, length);
    mr.cast()
}

/// `ibv_reg_mr_iova` (`IBVERBS_1.7`): a region at an I/O virtual address
/// of the caller's choosing, the export `verbs.h`'s macro calls when the
/// access flags are a constant without the optional-range bit.
///
/// # Safety
/// As libibverbs'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ibv_reg_mr_iova(
    pd: *mut c_void,
    addr: *mut c_void,
    length: usize,
    iova: u64,
    access: c_int,
) -> *mut c_void {
    let next = next_or!(
        Id::RegMrIova,
        unsafe extern "C" fn(*mut c_void, *mut c_void, usize, u64, c_int) -> *mut IbvMr,
        core::ptr::null_mut()
    );
    let call = DriverCall::enter("ibv_reg_mr_iova");
    // SAFETY: the caller's arguments, passed on.
    let mr = unsafe { next(pd, addr, length, iova, access) };
    registered(&call, mr, length);
    mr.cast()
}

/// `ibv_reg_dmabuf_mr`: a region of a dma-buf (device memory, often).
///
/// # Safety
/// As libibverbs'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ibv_reg_dmabuf_mr(
    pd: *mut c_void,
    offset: u64,
    length: usize,
    iova: u64,
    fd: c_int,
    access: c_int,
) -> *mut c_void {
    let next = next_or!(
        Id::RegDmabufMr,
        unsafe extern "C" fn(*mut c_void, u64, usize, u64, c_int, c_int) -> *mut IbvMr,
        core::ptr::null_mut()
    );
    let call = DriverCall::enter("ibv_reg_dmabuf_mr");
    // SAFETY: the caller's arguments, passed on.
    let mr = unsafe { next(pd, offset, length, iova, fd, access) };
    registered(&call, mr, length);
    mr.cast()
}

/// `ibv_rereg_mr`: when the region moves (`CHANGE_TRANSLATION`), its old
/// registration ends and a new one of the new length begins, at this
/// stack.
///
/// # Safety
/// As libibverbs'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ibv_rereg_mr(
    mr: *mut c_void,
    flags: c_int,
    pd: *mut c_void,
    addr: *mut c_void,
    length: usize,
    access: c_int,
) -> c_int {
    let next = next_or!(
        Id::ReregMr,
        unsafe extern "C" fn(*mut c_void, c_int, *mut c_void, *mut c_void, usize, c_int) -> c_int,
        MISSING
    );
    let call = DriverCall::enter("ibv_rereg_mr");
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { next(mr, flags, pd, addr, length, access) };
    if r == 0 && flags & CHANGE_TRANSLATION != 0 && !mr.is_null() {
        let mr = mr.cast::<IbvMr>();
        deregistered(&call, mr);
        // SAFETY: a registered region, which the library just updated.
        let length = unsafe { (*mr).length };
        registered(&call, mr, length);
    }
    r
}

/// `ibv_dereg_mr`.
///
/// # Safety
/// As libibverbs'.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ibv_dereg_mr(mr: *mut c_void) -> c_int {
    let next = next_or!(Id::DeregMr, DeregMr, MISSING);
    let call = DriverCall::enter_release("ibv_dereg_mr");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(mr.cast()) };
    if r == 0 {
        deregistered(&call, mr.cast());
    }
    r
}

/// `ibv_dereg_mr@IBVERBS_1.0`, for `dlvsym` callers of that version.
///
/// # Safety
/// As libibverbs'.
unsafe extern "C" fn ibv_dereg_mr_1_0(mr: *mut c_void) -> c_int {
    let next = next_or!(Id::DeregMr_1_0, DeregMr, MISSING);
    let call = DriverCall::enter_release("ibv_dereg_mr");
    // SAFETY: the caller's argument, passed on.
    let r = unsafe { next(mr.cast()) };
    if r == 0 {
        deregistered(&call, mr.cast());
    }
    r
}
