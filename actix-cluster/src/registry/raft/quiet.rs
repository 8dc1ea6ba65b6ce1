//! openraft's log output, made fit for an application's log.
//!
//! openraft logs every failed heartbeat at WARN (ten lines a second per unreachable member with
//! the default heartbeat interval) and dumps whole Raft states at INFO. Every openraft task
//! runs on the registry's own thread, so that thread gets a dispatcher of its own in front of
//! the application's: it drops openraft's INFO events, lets each openraft WARN or ERROR
//! callsite through once per [`WINDOW`] and counts the rest, which the registry then reports
//! in one line of its own ([`Quiet::take_report`]). Everything else (openraft's DEBUG and
//! TRACE, which only a filter that asks for them shows, and every other crate's events and
//! spans) goes to the application's dispatcher unchanged.
//!
//! [`RegistryConfig::verbose_raft_logs`](crate::RegistryConfig::verbose_raft_logs) turns this
//! off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Dispatch, Event, Level, Metadata};
use tracing_core::span::Current;

/// How often one openraft warning callsite may log.
const WINDOW: Duration = Duration::from_secs(10);

/// Counters shared between the filter and the registry, which reports them.
#[derive(Debug, Default)]
pub(crate) struct Quiet {
    suppressed: AtomicU64,
    /// When each warning callsite last got through.
    last: Mutex<HashMap<Identifier, Instant>>,
    reported: Mutex<Option<Instant>>,
}

impl Quiet {
    /// A dispatcher for the registry thread in front of `inner` (the application's), and the
    /// counters it fills.
    pub(crate) fn install(inner: Dispatch) -> (Dispatch, Arc<Quiet>) {
        let quiet = Arc::new(Quiet::default());
        let filter = Filter {
            inner,
            // What the application's subscribers enable, as of now.
            hint: LevelFilter::current(),
            quiet: Arc::clone(&quiet),
        };
        (Dispatch::new(filter), quiet)
    }

    /// Whether to pass an openraft event at `level` from `callsite`, now.
    fn admit(&self, level: Level, callsite: Identifier, now: Instant) -> bool {
        if level > Level::WARN {
            // INFO (DEBUG and TRACE never get here: see `drops`).
            return false;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(&callsite) {
            Some(at) if now.duration_since(*at) < WINDOW => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => {
                last.insert(callsite, now);
                true
            }
        }
    }

    /// Warnings suppressed since the last report, at most once per [`WINDOW`]: `None` when
    /// there is nothing to report yet.
    pub(crate) fn take_report(&self, now: Instant) -> Option<u64> {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.is_some_and(|at| now.duration_since(at) < WINDOW) {
            return None;
        }
        let n = self.suppressed.swap(0, Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        *reported = Some(now);
        Some(n)
    }
}

fn is_openraft(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    target == "openraft" || target.starts_with("openraft::")
}

/// The dispatcher itself: the application's, with openraft's events filtered.
struct Filter {
    inner: Dispatch,
    hint: LevelFilter,
    quiet: Arc<Quiet>,
}

impl Filter {
    /// openraft's INFO events, which are never passed on.
    fn drops(metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() == Level::INFO && is_openraft(metadata)
    }
}

impl Subscriber for Filter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::drops(metadata) {
            Interest::never()
        } else {
            self.inner.register_callsite(metadata)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.hint)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !Self::drops(metadata) && self.inner.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if is_openraft(metadata)
            && *metadata.level() <= Level::INFO
            && !self
                .quiet
                .admit(*metadata.level(), metadata.callsite(), Instant::now())
        {
            return;
        }
        self.inner.event(event);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> Current {
        self.inner.current_span()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Site;
    static SITE: Site = Site;
    impl tracing::Callsite for Site {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("not registered")
        }
    }

    #[test]
    fn a_warning_callsite_passes_once_per_window_and_the_rest_are_counted() {
        let quiet = Quiet::default();
        let site = Identifier(&SITE);
        let t0 = Instant::now();
        assert!(quiet.admit(Level::WARN, site.clone(), t0));
        for i in 1..=5 {
            assert!(!quiet.admit(Level::WARN, site.clone(), t0 + Duration::from_secs(i)));
        }
        assert!(
            !quiet.admit(Level::INFO, site.clone(), t0),
            "INFO never passes"
        );
        assert_eq!(quiet.take_report(t0 + Duration::from_secs(6)), Some(5));
        assert_eq!(quiet.take_report(t0 + Duration::from_secs(7)), None);
        assert!(quiet.admit(Level::WARN, site.clone(), t0 + WINDOW));
        assert!(!quiet.admit(Level::ERROR, site, t0 + WINDOW));
        assert_eq!(
            quiet.take_report(t0 + Duration::from_secs(15)),
            None,
            "once per window"
        );
        assert_eq!(quiet.take_report(t0 + Duration::from_secs(16)), Some(1));
    }
}
