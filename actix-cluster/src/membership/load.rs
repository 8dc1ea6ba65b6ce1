//! Measuring this node's load for its reports.

use std::sync::Mutex;
use std::time::Instant;

use super::driver::LoadSource;
use super::types::LoadReport;

/// Linux reports process CPU time in clock ticks of `USER_HZ`, which is 100 on every
/// mainstream architecture (the kernel ABI fixes it for user space).
const USER_HZ: f64 = 100.0;

/// Load reports: `count` says how many actors this node hosts and how many requests they
/// have not answered yet (the layer that hosts them knows; membership only reports), CPU
/// comes from the OS.
pub(crate) fn load_source(count: impl Fn() -> (u64, u64) + Send + Sync + 'static) -> LoadSource {
    let last: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    Box::new(move || {
        let (count, backlog) = count();
        let cpu = process_cpu_ticks().and_then(|ticks| {
            let now = Instant::now();
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let prev = last.replace((now, ticks));
            let (at, before) = prev?;
            let wall = now.saturating_duration_since(at).as_secs_f64();
            (wall > 0.0).then(|| ((ticks.saturating_sub(before)) as f64 / USER_HZ / wall) as f32)
        });
        LoadReport::new(count, backlog, cpu)
    })
}

/// User plus system CPU time of this process, in clock ticks; `None` off Linux.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after the last
    // ')' are plain numbers. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_ticks().is_some());
        }
    }
}
