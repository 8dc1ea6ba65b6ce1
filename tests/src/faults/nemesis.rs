//! Seeded fault schedules: what goes wrong, to whom, when and for how long.
//!
//! A schedule is a pure function of its seed and the cluster's size, printed before it runs,
//! so a failing run is replayed with the same seed. Faults that target "the leader" are
//! resolved against the cluster when they start; everything else is fixed up front.

use std::fmt;
use std::time::Duration;

/// A small deterministic generator (SplitMix64): schedules must not change with a dependency's
/// version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Whom a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The registry leader when the fault starts (a random node if none is known).
    Leader,
    /// Node index.
    Node(usize),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => f.write_str("leader"),
            Target::Node(i) => write!(f, "n{i}"),
        }
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `kill -9`, restarted when the fault ends: on its data directory, or without it
    /// (`fresh`, a new Raft member) — in ephemeral mode every restart is fresh.
    Kill {
        /// Whom.
        target: Target,
        /// Restart without the data directory.
        fresh: bool,
    },
    /// `SIGSTOP`, then `SIGCONT` when the fault ends.
    Pause(Target),
    /// Cut every link between `target` and the rest, both directions.
    Isolate(Target),
    /// Split the cluster: `minority` nodes on one side, the rest on the other.
    Partition {
        /// The smaller side.
        minority: Vec<usize>,
    },
    /// Drop every packet from `from` to `to` (one direction only).
    CutOneWay {
        /// Sender side.
        from: usize,
        /// Receiver side.
        to: usize,
    },
    /// Drop a fraction of the packets between `a` and `b`, both directions.
    Loss {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Fraction dropped.
        p: f64,
    },
    /// Hold every byte between `a` and `b`, both directions, for `delay` (TCP only; the
    /// connections between them are reset once so that they go through the delay).
    Delay {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Added to each direction, so twice that to a round trip.
        delay: Duration,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { target, fresh } => {
                write!(f, "kill -9 {target}")?;
                if *fresh {
                    f.write_str(" (restart without its data)")?;
                }
                Ok(())
            }
            Fault::Pause(t) => write!(f, "SIGSTOP {t}"),
            Fault::Isolate(t) => write!(f, "isolate {t}"),
            Fault::Partition { minority } => write!(f, "partition {minority:?} | rest"),
            Fault::CutOneWay { from, to } => write!(f, "cut n{from} -> n{to}"),
            Fault::Loss { a, b, p } => write!(f, "loss {:.0}% n{a} <-> n{b}", p * 100.0),
            Fault::Delay { a, b, delay } => {
                write!(f, "delay {}ms n{a} <-> n{b}", delay.as_millis())
            }
        }
    }
}

/// One step of a schedule: a quiet spell, then a fault for a while, then healing.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Normal operation before the fault.
    pub quiet: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long it lasts before it is healed.
    pub lasts: Duration,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "after {:.1} s quiet: {} for {:.1} s",
            self.quiet.as_secs_f64(),
            self.fault,
            self.lasts.as_secs_f64()
        )
    }
}

/// `steps` faults for a cluster of `nodes` (at least 3). `durable`: a killed node may come
/// back on its data directory.
pub fn schedule(seed: u64, nodes: usize, durable: bool, steps: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let n = nodes as u64;
    (0..steps)
        .map(|_| {
            let node = |rng: &mut Rng| {
                if rng.chance(0.5) {
                    Target::Leader
                } else {
                    Target::Node(rng.below(n) as usize)
                }
            };
            let fault = match rng.below(7) {
                0 => Fault::Kill {
                    target: node(&mut rng),
                    fresh: !durable || rng.chance(0.25),
                },
                1 => Fault::Pause(node(&mut rng)),
                2 => Fault::Isolate(node(&mut rng)),
                3 => {
                    // A minority: one node up to just under half.
                    let size = 1 + rng.below((n - 1) / 2) as usize;
                    let mut all: Vec<usize> = (0..nodes).collect();
                    let mut minority = Vec::new();
                    for _ in 0..size {
                        let i = rng.below(all.len() as u64) as usize;
                        minority.push(all.swap_remove(i));
                    }
                    minority.sort_unstable();
                    Fault::Partition { minority }
                }
                4 => {
                    let from = rng.below(n) as usize;
                    let to = (from + 1 + rng.below(n - 1) as usize) % nodes;
                    Fault::CutOneWay { from, to }
                }
                5 => {
                    let a = rng.below(n) as usize;
                    let b = (a + 1 + rng.below(n - 1) as usize) % nodes;
                    Fault::Loss {
                        a,
                        b,
                        p: 0.2 + rng.below(30) as f64 / 100.0,
                    }
                }
                _ => {
                    let a = rng.below(n) as usize;
                    let b = (a + 1 + rng.below(n - 1) as usize) % nodes;
                    Fault::Delay {
                        a,
                        b,
                        delay: rng.millis(50, 400),
                    }
                }
            };
            Step {
                quiet: rng.millis(500, 2000),
                fault,
                lasts: rng.millis(1500, 5000),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_a_function_of_its_seed_and_stays_in_range() {
        let a = schedule(42, 5, true, 50);
        assert_eq!(a, schedule(42, 5, true, 50));
        assert_ne!(a, schedule(43, 5, true, 50));
        for step in &a {
            let node_ok =
                |t: &Target| matches!(t, Target::Leader) || matches!(t, Target::Node(i) if *i < 5);
            match &step.fault {
                Fault::Kill { target, .. } | Fault::Pause(target) | Fault::Isolate(target) => {
                    assert!(node_ok(target), "{step}");
                }
                Fault::Partition { minority } => {
                    assert!(!minority.is_empty() && minority.len() <= 2, "{step}");
                    assert!(minority.iter().all(|i| *i < 5), "{step}");
                }
                Fault::CutOneWay { from: a, to: b } | Fault::Loss { a, b, .. } => {
                    assert!(a != b && *a < 5 && *b < 5, "{step}");
                }
                Fault::Delay { a, b, delay } => {
                    assert!(a != b && *a < 5 && *b < 5, "{step}");
                    let ms = delay.as_millis();
                    assert!((50..=400).contains(&ms), "{step}");
                }
            }
        }
        assert!(
            a.iter().any(|s| matches!(s.fault, Fault::Delay { .. })),
            "50 steps include a delay"
        );
        // Ephemeral: every restart is without data.
        assert!(schedule(7, 3, false, 50).iter().all(|s| match s.fault {
            Fault::Kill { fresh, .. } => fresh,
            _ => true,
        }));
    }
}
