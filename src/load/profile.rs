//! Open-loop rate profiles: a target rate that varies over time, without a
//! log to replay. Three shapes, one syntax each (durations as `20s`, `10m`):
//!
//! - `step:50,200,50@20s` — each rate held for 20 s in turn;
//! - `burst:base=50,peak=400,every=30s,for=5s` — `base`, with `peak` for
//!   the last `for` of every `every`;
//! - `diurnal:min=20,max=300,period=10m` — a cosine from `min` up to `max`
//!   (at half the period) and back, like a day's traffic compressed.
//!
//! Time counts from the start of the run (the warm-up included). The
//! *peak* of a profile is where the figures at peak are taken: the step
//! or burst at the highest rate, or the seconds where a diurnal rate is in
//! the top tenth of its range.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A target rate over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    Step {
        rates: Vec<f64>,
        hold: Duration,
    },
    Burst {
        base: f64,
        peak: f64,
        every: Duration,
        length: Duration,
    },
    Diurnal {
        min: f64,
        max: f64,
        period: Duration,
    },
}

/// Share of a diurnal range that counts as its peak (the top tenth).
const DIURNAL_PEAK_SHARE: f64 = 0.9;

impl Profile {
    /// Requests per second wanted `elapsed` after the start.
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        let t = elapsed.as_secs_f64();
        match self {
            Profile::Step { rates, hold } => {
                let index = (t / hold.as_secs_f64()) as usize;
                rates[index.min(rates.len() - 1)]
            }
            Profile::Burst {
                base,
                peak,
                every,
                length,
            } => {
                let phase = t % every.as_secs_f64();
                if phase >= (every.as_secs_f64() - length.as_secs_f64()) {
                    *peak
                } else {
                    *base
                }
            }
            Profile::Diurnal { min, max, period } => {
                let angle = std::f64::consts::TAU * t / period.as_secs_f64();
                min + (max - min) * (1.0 - angle.cos()) / 2.0
            }
        }
    }

    /// The highest rate the profile asks for.
    pub fn peak_rate(&self) -> f64 {
        match self {
            Profile::Step { rates, .. } => rates.iter().copied().fold(f64::MIN, f64::max),
            Profile::Burst { base, peak, .. } => base.max(*peak),
            Profile::Diurnal { max, .. } => *max,
        }
    }

    /// Whether `elapsed` falls in the profile's peak.
    pub fn is_peak(&self, elapsed: Duration) -> bool {
        let rate = self.rate_at(elapsed);
        match self {
            Profile::Step { .. } | Profile::Burst { .. } => rate >= self.peak_rate(),
            Profile::Diurnal { min, max, .. } => rate >= min + (max - min) * DIURNAL_PEAK_SHARE,
        }
    }

    /// One pass of the profile: every step, or one period.
    pub fn natural_length(&self) -> Duration {
        match self {
            Profile::Step { rates, hold } => *hold * rates.len() as u32,
            Profile::Burst { every, .. } => *every,
            Profile::Diurnal { period, .. } => *period,
        }
    }

    /// Seconds of peak within `[from, to)` (sampled every 10 ms).
    pub fn peak_seconds(&self, from: Duration, to: Duration) -> f64 {
        let tick = Duration::from_millis(10);
        let mut at = from;
        let mut ticks = 0u64;
        while at < to {
            if self.is_peak(at) {
                ticks += 1;
            }
            at += tick;
        }
        ticks as f64 * tick.as_secs_f64()
    }

    /// Requests the profile asks for within `[from, to)` (sampled every 10 ms).
    pub fn requests_between(&self, from: Duration, to: Duration) -> f64 {
        let tick = Duration::from_millis(10);
        let mut at = from;
        let mut requests = 0.0;
        while at < to {
            requests += self.rate_at(at) * tick.min(to - at).as_secs_f64();
            at += tick;
        }
        requests
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Profile::Step { rates, hold } => {
                let rates: Vec<String> = rates.iter().map(|r| r.to_string()).collect();
                write!(f, "step:{}@{}", rates.join(","), secs(hold))
            }
            Profile::Burst {
                base,
                peak,
                every,
                length,
            } => {
                write!(
                    f,
                    "burst:base={base},peak={peak},every={},for={}",
                    secs(every),
                    secs(length)
                )
            }
            Profile::Diurnal { min, max, period } => {
                write!(f, "diurnal:min={min},max={max},period={}", secs(period))
            }
        }
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("'{text}': expected KIND:…, KIND one of step, burst, diurnal"))?;
        match kind.trim() {
            "step" => parse_step(rest),
            "burst" => parse_burst(rest),
            "diurnal" => parse_diurnal(rest),
            other => Err(format!("'{other}' is not a profile: step, burst or diurnal")),
        }
    }
}

fn parse_rate(name: &str, text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{name} '{}' must be a positive rate (requests per second)",
            text.trim()
        )),
    }
}

fn parse_length(name: &str, text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(length) if !length.is_zero() => Ok(length),
        Ok(_) => Err(format!("{name} must be longer than 0s")),
        Err(e) => Err(format!("{name} '{}': {e} (give a duration like 20s)", text.trim())),
    }
}

/// `R1,R2,…@HOLD`.
fn parse_step(rest: &str) -> Result<Profile, String> {
    let (rates, hold) = rest
        .split_once('@')
        .ok_or("step: expected RATE,RATE,…@HOLD, e.g. step:50,200,50@20s")?;
    let rates = rates
        .split(',')
        .map(|rate| parse_rate("step rate", rate))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Profile::Step {
        rates,
        hold: parse_length("step hold", hold)?,
    })
}

/// `KEY=VALUE,…` with exactly the keys `names`.
fn fields<'a>(kind: &str, rest: &'a str, names: &[&str]) -> Result<Vec<&'a str>, String> {
    let mut values = vec![None; names.len()];
    for pair in rest.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{kind}: '{pair}' is not KEY=VALUE"))?;
        let index = names
            .iter()
            .position(|name| *name == key.trim())
            .ok_or_else(|| format!("{kind}: unknown key '{}' (keys: {})", key.trim(), names.join(", ")))?;
        if values[index].replace(value).is_some() {
            return Err(format!("{kind}: '{}' given twice", key.trim()));
        }
    }
    names
        .iter()
        .zip(values)
        .map(|(name, value)| value.ok_or_else(|| format!("{kind}: '{name}' is missing")))
        .collect()
}

/// `base=R,peak=R,every=D,for=D`.
fn parse_burst(rest: &str) -> Result<Profile, String> {
    let values = fields("burst", rest, &["base", "peak", "every", "for"])?;
    let (every, length) = (parse_length("every", values[2])?, parse_length("for", values[3])?);
    if length >= every {
        return Err(format!(
            "burst: for ({}) must be shorter than every ({})",
            values[3].trim(),
            values[2].trim()
        ));
    }
    Ok(Profile::Burst {
        base: parse_rate("base", values[0])?,
        peak: parse_rate("peak", values[1])?,
        every,
        length,
    })
}

/// `min=R,max=R,period=D`.
fn parse_diurnal(rest: &str) -> Result<Profile, String> {
    let values = fields("diurnal", rest, &["min", "max", "period"])?;
    let (min, max) = (parse_rate("min", values[0])?, parse_rate("max", values[1])?);
    if max < min {
        return Err(format!("diurnal: max ({max}) is below min ({min})"));
    }
    Ok(Profile::Diurnal {
        min,
        max,
        period: parse_length("period", values[2])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn parses_the_three_shapes_and_prints_them_back() {
        for text in [
            "step:50,200,50@20s",
            "burst:base=50,peak=400,every=30s,for=5s",
            "diurnal:min=20,max=300,period=10m",
        ] {
            let profile: Profile = text.parse().unwrap();
            assert_eq!(profile.to_string(), text);
        }
        let burst: Profile = "burst:for=5s,every=30s,peak=400,base=50".parse().unwrap();
        assert_eq!(burst.to_string(), "burst:base=50,peak=400,every=30s,for=5s");
    }

    #[test]
    fn malformed_profiles_say_what_is_wrong() {
        for (text, says) in [
            ("steady:50", "not a profile"),
            ("50", "expected KIND"),
            ("step:50,200", "expected RATE"),
            ("step:50,x@20s", "'x' must be a positive rate"),
            ("step:50,0@20s", "'0' must be a positive rate"),
            ("step:50@0s", "longer than 0s"),
            ("step:50@soon", "give a duration"),
            ("burst:base=50,peak=400,every=30s", "'for' is missing"),
            ("burst:base=50,peak=400,every=30s,for=30s", "shorter than every"),
            (
                "burst:base=50,peak=400,every=30s,for=5s,jitter=1",
                "unknown key 'jitter'",
            ),
            ("burst:base=50,base=60,peak=400,every=30s,for=5s", "given twice"),
            ("diurnal:min=300,max=20,period=10m", "below min"),
            ("diurnal:min=20,max300,period=10m", "not KEY=VALUE"),
            ("diurnal:min=20,max=3OO,period=10m", "must be a positive rate"),
        ] {
            let error = text.parse::<Profile>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn rates_follow_the_shapes() {
        let step: Profile = "step:50,200,50@20s".parse().unwrap();
        assert_eq!(
            [0.0, 19.9, 20.0, 39.9, 40.0, 99.0].map(|t| step.rate_at(s(t))),
            [50.0, 50.0, 200.0, 200.0, 50.0, 50.0]
        );
        assert!(step.is_peak(s(25.0)) && !step.is_peak(s(45.0)));
        assert_eq!(step.natural_length(), s(60.0));
        assert!((step.peak_seconds(s(0.0), s(60.0)) - 20.0).abs() < 0.02);
        assert!((step.requests_between(s(0.0), s(60.0)) - 6_000.0).abs() < 1.0);

        let burst: Profile = "burst:base=50,peak=400,every=30s,for=5s".parse().unwrap();
        assert_eq!(
            [0.0, 24.9, 25.0, 29.9, 30.0, 55.0].map(|t| burst.rate_at(s(t))),
            [50.0, 50.0, 400.0, 400.0, 50.0, 400.0]
        );
        assert!((burst.peak_seconds(s(0.0), s(60.0)) - 10.0).abs() < 0.02);

        let diurnal: Profile = "diurnal:min=20,max=300,period=10m".parse().unwrap();
        assert!((diurnal.rate_at(s(0.0)) - 20.0).abs() < 1e-9);
        assert!((diurnal.rate_at(s(300.0)) - 300.0).abs() < 1e-9);
        assert!((diurnal.rate_at(s(150.0)) - 160.0).abs() < 1e-9);
        assert!(diurnal.is_peak(s(300.0)) && !diurnal.is_peak(s(150.0)));
        // The top tenth: cos(2πt/period) ≤ −0.8, about 20.5 % of the period.
        let peak = diurnal.peak_seconds(s(0.0), s(600.0));
        assert!((peak - 122.9).abs() < 1.0, "{peak}");
    }

    proptest! {
        #[test]
        fn rates_stay_within_the_profile(
            base in 1.0f64..500.0, extra in 0.0f64..500.0, every in 2u64..100, t in 0.0f64..1_000.0
        ) {
            let every = Duration::from_secs(every);
            for profile in [
                Profile::Step { rates: vec![base, base + extra, base], hold: every },
                Profile::Burst { base, peak: base + extra, every, length: every / 2 },
                Profile::Diurnal { min: base, max: base + extra, period: every },
            ] {
                let rate = profile.rate_at(s(t));
                prop_assert!(rate >= base - 1e-9 && rate <= profile.peak_rate() + 1e-9);
                prop_assert_eq!(profile.to_string().parse::<Profile>().ok().map(|p| p.natural_length()), Some(profile.natural_length()));
            }
        }
    }
}
