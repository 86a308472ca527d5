//! A recorded landscape as a testbed: the study loop runs on it exactly as
//! on a server, on simulated time. A move costs what the landscape's header
//! says (`restart_s` when a cold parameter changes, `hot_s` when only hot
//! ones do, nothing when the point already runs); a window costs its
//! length; each measurement is one recorded repeat of the point, drawn by
//! the seed, the point and how often the point was measured before (common
//! random numbers: two studies with one seed that measure a config for the
//! n-th time see the same repeat, whatever else each measured, so a
//! comparison of strategies is paired and a skipped window shifts no other
//! draw). The baseline is the landscape's first row (the space's
//! default point, so TorchServe's defaults are the same config). The
//! restore moves back to the baseline (or onto the recommendation the
//! study applies) and is recorded, so tests can see that every way out
//! restored.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::bench::soak::SoakReport;
use crate::bench::Measurement;
use crate::landscape::{Landscape, Sample};
use crate::measure::process::MemoryReport;
use crate::measure::recorder::{ErrorCounts, LatencySummary, LoadReport};
use crate::search::SwitchCosts;
use crate::space::{Point, Space};
use crate::trial::Switch;

use super::clock::{Clock, Timeline};
use super::testbed::{values_of_subject, Subject, Testbed, TrialResult, Window};

/// A fault to inject at a trial (tests of the loop's ways out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The testbed reports an infrastructure error.
    Error,
    /// The testbed panics.
    Panic,
    /// The server is lost during this many windows in a row.
    ServerLost(usize),
}

/// A recorded landscape under a study.
pub struct Recorded<'a> {
    landscape: &'a Landscape,
    costs: SwitchCosts,
    clock: Clock,
    /// The seed the repeats are drawn with (`draw_seed`).
    seed: u64,
    /// How often each point was measured so far.
    draws: HashMap<Point, u64>,
    /// The point running now (the baseline until the first move).
    running: Point,
    /// Moves that restarted.
    pub restarts: usize,
    /// Windows measured.
    pub measured: usize,
    /// Times the testbed was put back on the baseline.
    pub restores: usize,
    fault: Option<(usize, Fault)>,
}

impl<'a> Recorded<'a> {
    /// The landscape on the baseline, its moves charged `costs`, its noise drawn with `seed`.
    pub fn new(landscape: &'a Landscape, costs: SwitchCosts, seed: u64) -> Self {
        Self {
            landscape,
            costs,
            clock: Clock::simulated(),
            seed,
            draws: HashMap::new(),
            running: landscape.space.default_point(),
            restarts: 0,
            measured: 0,
            restores: 0,
            fault: None,
        }
    }

    /// Runs on `timeline`, shared with other studies (a simulated shared study).
    #[must_use]
    pub fn on_timeline(mut self, timeline: &Timeline) -> Self {
        self.clock = Clock::Shared(timeline.clone());
        self
    }

    /// Injects `fault` when window number `at` (from 0) is asked for.
    #[must_use]
    pub fn with_fault(mut self, at: usize, fault: Fault) -> Self {
        self.fault = Some((at, fault));
        self
    }

    /// The point running now.
    pub fn running_point(&self) -> &Point {
        &self.running
    }

    /// Whether the baseline runs now.
    pub fn on_baseline(&self) -> bool {
        self.running == self.landscape.space.default_point()
    }

    /// Moves to `point`: how, and what it costs.
    fn move_to(&mut self, point: &Point) -> (Switch, f64) {
        let space = &self.landscape.space;
        let (switch, seconds) = if *point == self.running {
            (Switch::None, 0.0)
        } else if space.cold_key(point) == space.cold_key(&self.running) {
            (Switch::Scale, self.costs.hot_s)
        } else {
            self.restarts += 1;
            (Switch::Restart, self.costs.restart_s)
        };
        self.running = point.clone();
        (switch, seconds)
    }
}

impl Testbed for Recorded<'_> {
    fn running(&self, _space: &Space) -> Option<Vec<Option<usize>>> {
        Some(self.running.iter().map(|&l| Some(l)).collect())
    }

    fn baseline_levels(&self, _space: &Space) -> Vec<Option<usize>> {
        self.landscape.space.default_point().into_iter().map(Some).collect()
    }

    fn clock(&self) -> Clock {
        self.clock.clone()
    }

    fn values(&self, space: &Space, subject: &Subject) -> BTreeMap<String, String> {
        values_of_subject(space, subject, &self.baseline_levels(space))
    }

    async fn start(&mut self, _resumed: bool) -> anyhow::Result<bool> {
        Ok(false)
    }

    async fn run(&mut self, _space: &Space, subject: &Subject, window: Window) -> anyhow::Result<TrialResult> {
        let mut server_lost = None;
        match self.fault {
            Some((at, Fault::Error)) if at == self.measured => anyhow::bail!("injected fault at window {at}"),
            Some((at, Fault::Panic)) if at == self.measured => panic!("injected panic at window {at}"),
            Some((at, Fault::ServerLost(windows))) if (at..at + windows).contains(&self.measured) => {
                server_lost = Some(format!("injected: a worker died in window {}", self.measured));
            }
            _ => {}
        }
        let point = subject
            .point()
            .cloned()
            .unwrap_or_else(|| self.landscape.space.default_point());
        let (switch, switch_s) = self.move_to(&point);
        let seconds = (window.warmup + window.duration).as_secs_f64();
        self.clock
            .pass(Duration::from_secs_f64(switch_s) + window.warmup + window.duration)
            .await;
        self.measured += 1;
        let measurement = match self.landscape.samples_at(&point) {
            Some(samples) => {
                let nth = self.draws.entry(point.clone()).or_insert(0);
                let mut noise = SmallRng::seed_from_u64(draw_seed(self.seed, &point, *nth));
                *nth += 1;
                let sample = samples[noise.random_range(0..samples.len())];
                Ok(measurement_of(&sample, window, seconds))
            }
            None => Err("this config was not recorded".to_string()),
        };
        Ok(TrialResult {
            switch,
            switch_s,
            measurement,
            incidents: server_lost.iter().cloned().collect(),
            server_lost,
            models: BTreeMap::new(),
            peak: None,
        })
    }

    /// A landscape records no memory over time: nothing to soak.
    async fn soak(&mut self, _space: &Space, _point: &Point, _length: Duration) -> anyhow::Result<Option<SoakReport>> {
        Ok(None)
    }

    async fn restore(&mut self, _space: &Space, onto: Option<&Point>) -> anyhow::Result<()> {
        let last = onto.cloned().unwrap_or_else(|| self.landscape.space.default_point());
        let (_, seconds) = self.move_to(&last);
        self.clock.pass(Duration::from_secs_f64(seconds)).await;
        self.restores += 1;
        Ok(())
    }
}

/// The seed of the `nth` draw of `point` (from 0) under `seed`: splitmix64
/// over the three, so nearby seeds and points draw unrelated repeats.
fn draw_seed(seed: u64, point: &Point, nth: u64) -> u64 {
    fn mix(state: u64, x: u64) -> u64 {
        let mut z = (state ^ x).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let at = point
        .iter()
        .fold(mix(seed, 0x5e7e_7e5e), |state, &level| mix(state, level as u64));
    mix(mix(at, point.len() as u64), nth)
}

/// A recorded repeat as the measurement of a window.
fn measurement_of(sample: &Sample, window: Window, seconds: f64) -> Measurement {
    let latency = LatencySummary {
        p50: sample.p50_ms,
        p90: sample.p99_ms,
        p95: sample.p99_ms,
        p99: sample.p99_ms,
        p999: sample.p99_ms,
        max: sample.p99_ms,
        mean: sample.p50_ms,
    };
    let requests = (sample.throughput_rps * window.duration.as_secs_f64()).round() as u64;
    Measurement {
        load: LoadReport {
            requests,
            ok: requests,
            throughput_rps: sample.throughput_rps,
            error_rate: sample.error_rate,
            latency_ms: latency,
            latency_uncorrected_ms: latency,
            errors: ErrorCounts::default(),
            late_sends: 0,
            dropped_sends: 0,
            unfinished_at_end: 0,
            duration_s: seconds - window.warmup.as_secs_f64(),
            warmup_s: window.warmup.as_secs_f64(),
            timeline: Vec::new(),
            stability: None,
            histogram: Histogram::new(3).expect("three significant digits are valid"),
        },
        memory_mb: Some(MemoryReport {
            rss_peak: sample.memory_mb,
            rss_mean: sample.memory_mb,
            pss_peak: sample.memory_mb,
            pss_mean: sample.memory_mb,
            cpu_cores: 0.0,
            samples: 1,
        }),
        server: None,
        observer: None,
    }
}
