//! The process's CPU time, for the `cpu_per_message` figures.
//!
//! User plus system time of every thread of this process, running or exited: the quantity
//! `getrusage(RUSAGE_SELF)` reports as `ru_utime + ru_stime`. rustix 1.x has no `getrusage`
//! (and the workspace forbids `unsafe`, so no `libc`), but it offers the same total through
//! `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, which the kernel computes from its
//! nanosecond-resolution per-thread runtime accounting (`/proc/self/stat` would give the same
//! total in 10 ms ticks, too coarse for a local `do_send` run of a few tens of milliseconds).

use std::time::Duration;

/// The CPU time (user plus system, all threads) this process has used so far; `None` where the
/// harness cannot read it (platforms other than Linux, Android, macOS and FreeBSD).
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
))]
pub fn process_cpu_time() -> Option<Duration> {
    use rustix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::ProcessCPUTime);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

/// The CPU time this process has used so far; `None` on this platform.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
)))]
pub fn process_cpu_time() -> Option<Duration> {
    None
}

/// Why [`process_cpu_time`] returned `None`, for the JSON's error string.
pub const UNAVAILABLE: &str =
    "process CPU time (CLOCK_PROCESS_CPUTIME_ID) is not read on this platform";

/// CPU time used from `before` until now; `None` if either reading is missing.
pub fn since(before: Option<Duration>) -> Option<Duration> {
    Some(process_cpu_time()?.saturating_sub(before?))
}

/// Nanoseconds of CPU per message; `None` without a reading or without messages.
pub fn per_message_ns(cpu: Option<Duration>, messages: u64) -> Option<f64> {
    let cpu = cpu?;
    (messages > 0).then(|| cpu.as_nanos() as f64 / messages as f64)
}
