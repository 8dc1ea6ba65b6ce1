//! A table that takes registrations until it is sealed, then is only read, without a lock.
//!
//! Subsystems plug into a node by registering before it starts (channel handlers in the
//! transport, system request handlers in the remote layer); once the node starts, the table
//! is sealed. A registration after that is refused, never silently ignored, and the hot path
//! reads the sealed table with no synchronisation beyond a `OnceLock` load.

use std::sync::{Mutex, OnceLock};

/// Registrations of type `T` (a map, a list): open until [`seal`](Self::seal).
pub(crate) struct Registrations<T> {
    open: Mutex<Option<T>>,
    sealed: OnceLock<T>,
}

impl<T: Default> Registrations<T> {
    pub(crate) fn new() -> Self {
        Self {
            open: Mutex::new(Some(T::default())),
            sealed: OnceLock::new(),
        }
    }

    /// Runs `f` on the open table; `None` once it is sealed.
    pub(crate) fn register<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        // A panic inside `f` cannot leave the table half-updated in a way later readers
        // depend on: registrations happen once, at start-up, and a failed start is abandoned.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.as_mut().map(f)
    }

    /// Ends registration. Later calls do nothing.
    pub(crate) fn seal(&self) {
        let table = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let _ = self.sealed.set(table);
    }

    /// The sealed table; `None` before [`seal`](Self::seal).
    pub(crate) fn get(&self) -> Option<&T> {
        self.sealed.get()
    }
}

impl<T> std::fmt::Debug for Registrations<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrations")
            .field("sealed", &self.sealed.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_end_at_the_seal_and_the_sealed_table_is_what_was_registered() {
        let r: Registrations<Vec<u8>> = Registrations::new();
        assert_eq!(r.register(|t| t.push(1)), Some(()));
        assert!(r.get().is_none(), "not readable before the seal");
        r.seal();
        assert_eq!(r.register(|t| t.push(2)), None);
        assert_eq!(r.get().map(Vec::as_slice), Some(&[1][..]));
        r.seal();
        assert_eq!(
            r.get().map(Vec::as_slice),
            Some(&[1][..]),
            "a second seal changes nothing"
        );
    }
}
