//! Captures what in-process nodes log at INFO and above, for tests of the lines an operator
//! reads.
//!
//! Nodes log from their own threads, so a thread-local subscriber would miss them: the capture
//! is the process-wide subscriber of the test binary, installed on first use. Tests running in
//! parallel tell their lines apart by something unique to them, such as a node's address.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

fn buffer() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| Mutex::new(Vec::new()))
}

/// Installs the capture as the global subscriber, once per test binary. Call before starting
/// the nodes whose lines a test checks. Does nothing if another global subscriber was set.
pub fn capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        buffer()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captured WARN lines that contain every one of `texts`.
pub fn warnings(texts: &[&str]) -> Vec<String> {
    lines(&[&[" WARN "], texts].concat())
}

/// Captured lines (any level) that contain every one of `texts`.
pub fn lines(texts: &[&str]) -> Vec<String> {
    let log = buffer().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| texts.iter().all(|t| l.contains(t)))
        .map(str::to_owned)
        .collect()
}
