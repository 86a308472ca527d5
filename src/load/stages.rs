//! Closed-loop stages: how many virtual users run at each moment.
//!
//! Syntax: comma-separated `[FROM:]TO@DURATION`. `0:100@60s,100@300s` ramps
//! linearly from 0 to 100 users over 60 s, then holds 100 for 300 s. A stage
//! without FROM starts where the previous one ended (the first holds TO).

use std::str::FromStr;
use std::time::Duration;

/// One stage: users move linearly from `from` to `to` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub from: u32,
    pub to: u32,
    pub duration: Duration,
}

/// A sequence of stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages(Vec<Stage>);

impl Stages {
    /// A constant number of users for `duration`.
    pub fn constant(users: u32, duration: Duration) -> Self {
        Self(vec![Stage {
            from: users,
            to: users,
            duration,
        }])
    }

    pub fn stages(&self) -> &[Stage] {
        &self.0
    }

    pub fn total_duration(&self) -> Duration {
        self.0.iter().map(|stage| stage.duration).sum()
    }

    /// The largest number of users at any time.
    pub fn peak_users(&self) -> u32 {
        self.0.iter().map(|stage| stage.from.max(stage.to)).max().unwrap_or(0)
    }

    /// Users wanted `elapsed` after the start (the last stage's end value after the end).
    pub fn users_at(&self, elapsed: Duration) -> u32 {
        let mut start = Duration::ZERO;
        for stage in &self.0 {
            let end = start + stage.duration;
            if elapsed < end {
                let progress = (elapsed - start).as_secs_f64() / stage.duration.as_secs_f64().max(1e-9);
                let users = f64::from(stage.from) + (f64::from(stage.to) - f64::from(stage.from)) * progress;
                return users.round() as u32;
            }
            start = end;
        }
        self.0.last().map_or(0, |stage| stage.to)
    }
}

impl FromStr for Stages {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut stages = Vec::new();
        let mut previous: Option<u32> = None;
        for item in text.split(',').map(str::trim) {
            let (users, duration) = item
                .split_once('@')
                .ok_or_else(|| format!("stage '{item}': expected [FROM:]TO@DURATION, e.g. 0:100@60s"))?;
            let duration = humantime::parse_duration(duration.trim())
                .map_err(|e| format!("stage '{item}': duration '{}': {e}", duration.trim()))?;
            if duration.is_zero() {
                return Err(format!("stage '{item}': duration must be positive"));
            }
            let count = |text: &str| {
                text.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("stage '{item}': '{}' is not a number of users", text.trim()))
            };
            let (from, to) = match users.split_once(':') {
                Some((from, to)) => (count(from)?, count(to)?),
                None => {
                    let to = count(users)?;
                    (previous.unwrap_or(to), to)
                }
            };
            previous = Some(to);
            stages.push(Stage { from, to, duration });
        }
        if stages.iter().all(|stage| stage.from == 0 && stage.to == 0) {
            return Err("stages never have a user".to_string());
        }
        Ok(Self(stages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ramp_then_hold() {
        let stages: Stages = "0:100@60s,100@300s".parse().unwrap();
        assert_eq!(stages.total_duration(), Duration::from_secs(360));
        assert_eq!(stages.users_at(Duration::ZERO), 0);
        assert_eq!(stages.users_at(Duration::from_secs(30)), 50);
        assert_eq!(stages.users_at(Duration::from_secs(200)), 100);
        assert_eq!(stages.users_at(Duration::from_secs(999)), 100);
        assert_eq!(stages.peak_users(), 100);
        let down: Stages = "10@5s, 2@5s".parse().unwrap();
        assert_eq!(down.users_at(Duration::from_millis(7500)), 6);
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "", "100", "a@1s", "10@", "10@soon", "0:x@1s", "10@0s", "0@5s", "1:2:3@1s",
        ] {
            assert!(bad.parse::<Stages>().is_err(), "{bad:?} was accepted");
        }
    }
}
