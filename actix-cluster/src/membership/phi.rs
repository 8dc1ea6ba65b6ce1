//! The phi-accrual failure detector (Hayashibara et al., 2004), sans-IO.
//!
//! Instead of a yes/no timeout it reports *phi*, the suspicion level: `phi = -log10(P)`, where
//! `P` is the probability, under the distribution of heartbeat intervals seen so far, that the
//! next heartbeat is still merely late. phi 1 means a 10% chance the peer is fine, phi 8 a
//! 0.000001% chance. Intervals are assumed normally distributed; the CDF is evaluated with the
//! logistic approximation of Bowling et al. (2009), which is monotone and needs no `erf`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tuning of the failure detector. See [`FailureDetectorConfig::lan`] and
/// [`FailureDetectorConfig::conservative`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FailureDetectorConfig {
    /// phi above which a member is suspected.
    pub threshold: f64,
    /// Heartbeat intervals kept to estimate the distribution.
    pub window: usize,
    /// Floor of the standard deviation, so that a perfectly regular link does not turn one
    /// late heartbeat into certainty.
    pub min_std_deviation: Duration,
    /// Extra delay tolerated on top of the mean interval (GC pauses, scheduling hiccups).
    pub acceptable_pause: Duration,
    /// Interval assumed before any heartbeat has been measured.
    pub first_heartbeat_estimate: Duration,
    /// How often a monitored member is asked for a heartbeat.
    pub heartbeat_interval: Duration,
}

impl FailureDetectorConfig {
    /// LAN: with quarter-second heartbeats, a silent peer crosses the threshold about 1 s
    /// after its last heartbeat, so that with the membership preset a crash is seen Down
    /// everywhere in about 2 s.
    pub fn lan() -> Self {
        Self {
            threshold: 8.0,
            window: 200,
            min_std_deviation: Duration::from_millis(100),
            acceptable_pause: Duration::from_millis(250),
            first_heartbeat_estimate: Duration::from_millis(250),
            heartbeat_interval: Duration::from_millis(250),
        }
    }

    /// Slow or shared links: tolerates multi-second pauses.
    pub fn conservative() -> Self {
        Self {
            threshold: 10.0,
            window: 1000,
            min_std_deviation: Duration::from_millis(500),
            acceptable_pause: Duration::from_secs(3),
            first_heartbeat_estimate: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
        }
    }
}

impl Default for FailureDetectorConfig {
    fn default() -> Self {
        Self::lan()
    }
}

/// Heartbeat history of one peer.
///
/// Call order: [`heartbeat`](Self::heartbeat) on every heartbeat received, in time order;
/// [`phi`](Self::phi) whenever the suspicion level is wanted. Both take `now` from the caller.
#[derive(Debug, Clone)]
pub(crate) struct PhiAccrual {
    config: FailureDetectorConfig,
    /// Intervals in milliseconds, oldest first.
    intervals: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    pushes: u64,
    last: Option<Instant>,
}

impl PhiAccrual {
    pub(crate) fn new(config: FailureDetectorConfig) -> Self {
        let mut d = Self {
            config,
            intervals: VecDeque::with_capacity(config.window.min(1024)),
            sum: 0.0,
            sum_sq: 0.0,
            pushes: 0,
            last: None,
        };
        // Seed with the estimate (mean m, deviation m/4) so that phi is meaningful from the
        // second heartbeat on instead of swinging wildly on a sample of one.
        let m = ms(config.first_heartbeat_estimate);
        d.push(m - m / 4.0);
        d.push(m + m / 4.0);
        d
    }

    /// Records a heartbeat received at `now`. A `now` earlier than the previous heartbeat
    /// (clock misuse by the caller) is treated as simultaneous.
    pub(crate) fn heartbeat(&mut self, now: Instant) {
        if let Some(last) = self.last {
            self.push(ms(now.saturating_duration_since(last)));
        }
        self.last = Some(now);
    }

    /// When the last heartbeat (or restart) was recorded.
    pub(crate) fn last(&self) -> Option<Instant> {
        self.last
    }

    /// A new connection proves the peer alive at `now`; the gap before it is downtime, not a
    /// heartbeat interval, so it is not recorded.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.last = Some(now);
    }

    fn push(&mut self, interval: f64) {
        if self.intervals.len() >= self.config.window.max(2)
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        self.sum_sq += interval * interval;
        self.pushes += 1;
        // Running sums drift as intervals are added and subtracted; recomputing once per
        // window keeps the error bounded at O(1) amortised cost.
        if self.pushes.is_multiple_of(self.intervals.len() as u64) {
            self.sum = self.intervals.iter().sum();
            self.sum_sq = self.intervals.iter().map(|x| x * x).sum();
        }
    }

    /// Suspicion level at `now`; 0 before the first heartbeat (nothing to suspect yet).
    pub(crate) fn phi(&self, now: Instant) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let n = self.intervals.len() as f64;
        let mean = self.sum / n;
        let variance = (self.sum_sq / n - mean * mean).max(0.0);
        let std_dev = variance.sqrt().max(ms(self.config.min_std_deviation));
        let elapsed = ms(now.saturating_duration_since(last));
        phi(elapsed, mean + ms(self.config.acceptable_pause), std_dev)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `-log10(P(X > elapsed))` for `X ~ N(mean, std_dev)`, with the logistic approximation
/// `P(X <= x) ~ 1 / (1 + e^-z)`, `z = y (1.5976 + 0.070566 y^2)`, `y = (x - mean) / std_dev`.
/// Written in the two forms that stay finite: for large `z`, `P(X > x) = e^-z / (1 + e^-z)`
/// underflows, but its logarithm does not.
fn phi(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (elapsed - mean) / std_dev;
    let z = y * (1.5976 + 0.070566 * y * y);
    let ln_p_later = if z > 0.0 {
        -z - (-z).exp().ln_1p()
    } else {
        -z.exp().ln_1p()
    };
    -ln_p_later / std::f64::consts::LN_10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(interval: Duration, beats: u32) -> (PhiAccrual, Instant) {
        let mut d = PhiAccrual::new(FailureDetectorConfig::lan());
        let start = Instant::now();
        let mut t = start;
        for _ in 0..beats {
            d.heartbeat(t);
            t += interval;
        }
        (d, t - interval)
    }

    #[test]
    fn nothing_is_suspected_before_the_first_heartbeat() {
        let d = PhiAccrual::new(FailureDetectorConfig::lan());
        assert_eq!(d.phi(Instant::now() + Duration::from_secs(60)), 0.0);
    }

    #[test]
    fn phi_is_low_on_time_and_grows_with_silence() {
        let (d, last) = regular(Duration::from_millis(500), 50);
        let on_time = d.phi(last + Duration::from_millis(500));
        assert!(
            on_time < 1.0,
            "phi {on_time} for a heartbeat that is not late"
        );
        let mut previous = on_time;
        for ms in [1000, 1500, 2000, 3000, 5000] {
            let p = d.phi(last + Duration::from_millis(ms));
            assert!(
                p > previous,
                "phi must grow with silence: {p} after {previous}"
            );
            previous = p;
        }
        assert!(previous.is_finite());
    }

    #[test]
    fn lan_preset_suspects_a_silent_peer_within_about_two_seconds() {
        let (d, last) = regular(Duration::from_millis(500), 50);
        let threshold = FailureDetectorConfig::lan().threshold;
        assert!(d.phi(last + Duration::from_millis(1000)) <= threshold);
        assert!(d.phi(last + Duration::from_millis(2500)) > threshold);
    }

    #[test]
    fn irregular_heartbeats_widen_the_tolerance() {
        let cfg = FailureDetectorConfig::lan();
        let start = Instant::now();
        let (mut steady, mut jittery) = (PhiAccrual::new(cfg), PhiAccrual::new(cfg));
        let (mut ts, mut tj) = (start, start);
        for i in 0..100u64 {
            steady.heartbeat(ts);
            jittery.heartbeat(tj);
            ts += Duration::from_millis(500);
            tj += Duration::from_millis(if i % 2 == 0 { 100 } else { 900 });
        }
        let probe = Duration::from_millis(1600);
        assert!(jittery.phi(tj + probe) < steady.phi(ts + probe));
    }

    #[test]
    fn window_bounds_the_history() {
        let cfg = FailureDetectorConfig {
            window: 10,
            ..FailureDetectorConfig::lan()
        };
        let mut d = PhiAccrual::new(cfg);
        let mut t = Instant::now();
        for _ in 0..1000 {
            d.heartbeat(t);
            t += Duration::from_millis(1);
        }
        assert_eq!(d.intervals.len(), 10);
        // Only recent, fast heartbeats remain: a 1-second silence is suspicious.
        assert!(d.phi(t + Duration::from_secs(1)) > 1.0);
    }

    #[test]
    fn phi_stays_finite_for_huge_silences() {
        let (d, last) = regular(Duration::from_millis(500), 10);
        let p = d.phi(last + Duration::from_secs(86_400));
        assert!(p.is_finite() && p > 100.0, "phi {p}");
    }
}
