//! The recording clock: cheap ticks for event times and call latencies.
//!
//! On x86_64 the ticks are the CPU's time-stamp counter (`rdtsc`, about
//! 20 cycles, no system call, invariant and synchronised across cores on the
//! CPUs of the last decade); elsewhere they are nanoseconds of
//! `CLOCK_MONOTONIC`. The writer thread pairs ticks with monotonic and
//! wall-clock time in `CLOCK` records, so readers convert ticks to time
//! without the recorder ever calibrating anything.

/// The current tick count.
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions and no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic_ns()
    }
}

/// Nanoseconds of `clock_id`.
fn clock_ns(clock_id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock_id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}
