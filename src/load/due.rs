//! When open-loop requests are due, and which request each one is: a
//! constant or Poisson rate, a rate profile, or a replayed log. One source
//! per load thread; the thread's connections take due times from it in
//! turn, so the open loop in `run` is the same for all three.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::profile::Profile;
use super::replay::ReplayTraffic;
use super::schedule::Arrival;

/// Which request a due slot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The next body of the single request, round-robin.
    Next,
    /// A replayed request: its group (path and model) and body.
    Entry { group: u32, body: u32 },
}

impl Pick {
    pub fn group(self) -> Option<usize> {
        match self {
            Pick::Next => None,
            Pick::Entry { group, .. } => Some(group as usize),
        }
    }
}

/// One request to send at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    pub at: Instant,
    pub pick: Pick,
}

/// How the next due time is found.
enum Source {
    Rate {
        period: Duration,
        arrival: Arrival,
        rate_per_s: f64,
    },
    Profile {
        profile: Profile,
        arrival: Arrival,
        threads: f64,
    },
    Replay {
        traffic: Arc<ReplayTraffic>,
        next: u64,
        step: u64,
    },
}

/// Due times of one thread's open-loop requests.
pub struct DueTimes {
    start: Instant,
    next_due: Instant,
    source: Source,
    rng: SmallRng,
}

fn thread_rng(seed: u64, thread_index: usize) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (thread_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl DueTimes {
    /// A constant rate or Poisson arrivals, shared out between the threads.
    pub fn rate(
        start: Instant,
        rate_per_s: f64,
        arrival: Arrival,
        threads: usize,
        thread_index: usize,
        seed: u64,
    ) -> Self {
        let thread_rate = rate_per_s / threads as f64;
        let mut rng = thread_rng(seed, thread_index);
        // Threads interleave their constant schedules; Poisson starts at a random gap.
        let first = match arrival {
            Arrival::Constant => Duration::from_secs_f64(thread_index as f64 / rate_per_s),
            Arrival::Poisson => exponential(&mut rng, thread_rate),
        };
        Self {
            start,
            next_due: start + first,
            source: Source::Rate {
                period: Duration::from_secs_f64(1.0 / thread_rate),
                arrival,
                rate_per_s: thread_rate,
            },
            rng,
        }
    }

    /// A rate that follows `profile`, shared out between the threads.
    pub fn profile(
        start: Instant,
        profile: Profile,
        arrival: Arrival,
        threads: usize,
        thread_index: usize,
        seed: u64,
    ) -> Self {
        let mut rng = thread_rng(seed, thread_index);
        let rate = profile.rate_at(Duration::ZERO);
        let first = match arrival {
            Arrival::Constant => Duration::from_secs_f64(thread_index as f64 / rate),
            Arrival::Poisson => exponential(&mut rng, rate / threads as f64),
        };
        Self {
            start,
            next_due: start + first,
            source: Source::Profile {
                profile,
                arrival,
                threads: threads as f64,
            },
            rng,
        }
    }

    /// This thread's share of a replay: requests `thread_index`,
    /// `thread_index + threads`, … of the slice (and of its loops).
    pub fn replay(start: Instant, traffic: Arc<ReplayTraffic>, threads: usize, thread_index: usize) -> Self {
        let next_due = match traffic.due_offset(thread_index as u64) {
            Some((offset, _)) => start + offset,
            None => start + Duration::from_secs(365 * 86_400),
        };
        Self {
            start,
            next_due,
            source: Source::Replay {
                traffic,
                next: thread_index as u64,
                step: threads as u64,
            },
            rng: thread_rng(0, thread_index),
        }
    }

    /// The next due request before `end`, if any.
    pub fn take(&mut self, end: Instant) -> Option<Due> {
        let at = self.next_due;
        if at >= end {
            return None;
        }
        let pick = match &mut self.source {
            Source::Rate {
                period,
                arrival,
                rate_per_s,
            } => {
                self.next_due += match arrival {
                    Arrival::Constant => *period,
                    Arrival::Poisson => exponential(&mut self.rng, *rate_per_s),
                };
                Pick::Next
            }
            Source::Profile {
                profile,
                arrival,
                threads,
            } => {
                let rate = profile.rate_at(at.saturating_duration_since(self.start)) / *threads;
                self.next_due += match arrival {
                    Arrival::Constant => Duration::from_secs_f64(1.0 / rate),
                    Arrival::Poisson => exponential(&mut self.rng, rate),
                };
                Pick::Next
            }
            Source::Replay { traffic, next, step } => {
                let (_, entry) = traffic.due_offset(*next)?;
                *next += *step;
                self.next_due = match traffic.due_offset(*next) {
                    Some((offset, _)) => self.start + offset,
                    None => end,
                };
                Pick::Entry {
                    group: entry.group,
                    body: entry.body,
                }
            }
        };
        Some(Due { at, pick })
    }
}

fn exponential(rng: &mut SmallRng, rate_per_s: f64) -> Duration {
    let uniform: f64 = rng.random::<f64>();
    Duration::from_secs_f64(-(1.0 - uniform).ln() / rate_per_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(mut due: DueTimes, start: Instant, end: Instant) -> Vec<u128> {
        std::iter::from_fn(|| due.take(end))
            .map(|d| (d.at - start).as_millis())
            .collect()
    }

    #[test]
    fn a_profile_spaces_requests_by_its_rate() {
        let start = Instant::now();
        let profile: Profile = "step:10,100@1s".parse().unwrap();
        let due = DueTimes::profile(start, profile, Arrival::Constant, 1, 0, 1);
        let sent = offsets(due, start, start + Duration::from_secs(2));
        assert_eq!(sent.iter().filter(|&&ms| ms < 1_000).count(), 10);
        let second = sent.iter().filter(|&&ms| ms >= 1_000).count();
        assert!((99..=101).contains(&second), "{second}");
    }

    #[test]
    fn threads_share_a_rate_without_overlap() {
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let mut all: Vec<u128> = (0..2)
            .flat_map(|i| offsets(DueTimes::rate(start, 10.0, Arrival::Constant, 2, i, 1), start, end))
            .collect();
        all.sort();
        assert_eq!(all, (0..10).map(|i| i * 100).collect::<Vec<_>>());
    }
}
