//! Replaying an access log: its inference requests, each at its recorded
//! instant (scaled by a speed), to its own path, with a body from its
//! model's sample folder (`BODY_DIR/<model>/`, round-robin in log order, so
//! every replay of a slice sends the very same requests).
//!
//! `ReplayLog` reads a log (unreadable lines are counted and skipped, never
//! fatal); `ReplayTraffic::build` cuts a slice out of it (`--from`/`--to`)
//! and attaches the bodies; the open loop in `run` sends it. A request
//! carries its model (its group), so a multi-model workload can pick by
//! model too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::access_log::{parse_timed_line, parse_timestamp};
use super::error::LoadError;
use super::request::read_bodies;

/// One inference request of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub at_ms: i64,
    pub method: String,
    pub path: String,
    pub model: String,
}

/// The inference requests of an access log, in time order.
#[derive(Debug, Clone)]
pub struct ReplayLog {
    pub path: PathBuf,
    pub requests: Vec<LoggedRequest>,
    /// Non-empty lines that are not access-log lines (or lack a timestamp).
    pub unreadable_lines: u64,
    /// Access-log lines that are not inference requests (ping, management).
    pub other_lines: u64,
}

impl ReplayLog {
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let bytes =
            std::fs::read(path).map_err(|e| LoadError::BadInput(format!("--replay {}: {e}", path.display())))?;
        Ok(Self::parse(path, &bytes))
    }

    /// Parses a log's bytes (a line that is not UTF-8 is unreadable).
    pub fn parse(path: &Path, bytes: &[u8]) -> Self {
        let mut log = Self {
            path: path.to_path_buf(),
            requests: Vec::new(),
            unreadable_lines: 0,
            other_lines: 0,
        };
        for raw in bytes.split(|&b| b == b'\n') {
            let Ok(text) = std::str::from_utf8(raw) else {
                log.unreadable_lines += 1;
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            let Some(timed) = parse_timed_line(text) else {
                log.unreadable_lines += 1;
                continue;
            };
            match timed.line.inference_model() {
                Some(model) => log.requests.push(LoggedRequest {
                    at_ms: timed.at_ms,
                    model: model.to_string(),
                    method: timed.line.method.clone(),
                    path: timed.line.path.clone(),
                }),
                None => log.other_lines += 1,
            }
        }
        // Lines are written as requests end: nearly, not strictly, in time
        // order. A stable sort keeps the logged order of equal instants.
        log.requests.sort_by_key(|request| request.at_ms);
        log
    }
}

/// A `--from`/`--to` bound: a timestamp of the log's clock, or an offset
/// from its first inference request (`+30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePoint {
    At(i64),
    After(Duration),
}

impl FromStr for TimePoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(offset) = text.strip_prefix('+') {
            return humantime::parse_duration(offset)
                .map(TimePoint::After)
                .map_err(|e| format!("'{text}': {e} (an offset like +30s)"));
        }
        parse_timestamp(text)
            .map(TimePoint::At)
            .ok_or_else(|| format!("'{text}': expected a log time like 2026-11-28T11:03:05,354 or an offset like +30s"))
    }
}

impl TimePoint {
    fn resolve(self, first_ms: i64) -> i64 {
        match self {
            TimePoint::At(ms) => ms,
            TimePoint::After(offset) => first_ms + offset.as_millis() as i64,
        }
    }
}

/// A replay speed: `4x`, `4` or `0.5x` (4 sends the log four times faster).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed(pub f64);

impl FromStr for Speed {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let number = text.trim().trim_end_matches(['x', 'X']);
        match number.parse::<f64>() {
            Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(Speed(speed)),
            _ => Err(format!("'{text}': expected a positive factor like 4x or 0.5x")),
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x", self.0)
    }
}

/// Which part of the log is replayed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    pub speed: Speed,
    pub from: Option<TimePoint>,
    pub to: Option<TimePoint>,
    /// Start the slice again when it ends (for a window longer than it).
    pub looped: bool,
}

/// Requests of one path (hence one model), with that model's bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayGroup {
    pub method: String,
    pub path: String,
    pub model: String,
    pub bodies: Vec<Vec<u8>>,
}

/// One request of the slice: when (after the slice's start, scaled) and
/// which rendered request (its group and body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayEntry {
    pub offset: Duration,
    pub group: u32,
    pub body: u32,
}

/// A slice of a log, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayTraffic {
    pub log: PathBuf,
    pub entries: Vec<ReplayEntry>,
    pub groups: Vec<ReplayGroup>,
    /// One pass of the slice at the replay's speed (the loop's period).
    pub period: Duration,
    pub speed: Speed,
    pub looped: bool,
    pub unreadable_lines: u64,
    pub other_lines: u64,
}

impl ReplayTraffic {
    /// The slice `options` asks for, with bodies from `body_dir/<model>/`.
    pub fn build(log: &ReplayLog, options: &ReplayOptions, body_dir: &Path) -> Result<Self, LoadError> {
        let Some(first) = log.requests.first() else {
            return Err(LoadError::BadInput(format!(
                "--replay {}: no inference requests in the log ({} unreadable lines, {} other requests)",
                log.path.display(),
                log.unreadable_lines,
                log.other_lines
            )));
        };
        let from_ms = options.from.map_or(first.at_ms, |point| point.resolve(first.at_ms));
        let to_ms = options.to.map(|point| point.resolve(first.at_ms));
        let slice: Vec<&LoggedRequest> = log
            .requests
            .iter()
            .filter(|r| r.at_ms >= from_ms && to_ms.is_none_or(|to| r.at_ms < to))
            .collect();
        if slice.is_empty() {
            return Err(LoadError::BadInput(format!(
                "--from/--to: no inference requests of {} in that window (the log's run from {} to {})",
                log.path.display(),
                describe_ms(first.at_ms),
                describe_ms(log.requests.last().map_or(first.at_ms, |r| r.at_ms)),
            )));
        }
        let groups = groups_of(&slice, body_dir)?;
        let entries = entries_of(&slice, &groups, from_ms, options.speed.0);
        let span_ms = match to_ms {
            Some(to) if options.to.is_some() => (to - from_ms) as f64,
            _ => {
                let last = slice.last().expect("not empty").at_ms - from_ms;
                last as f64 + mean_gap_ms(&slice)
            }
        };
        Ok(Self {
            log: log.path.clone(),
            entries,
            groups,
            period: Duration::from_secs_f64((span_ms / 1_000.0 / options.speed.0).max(0.001)),
            speed: options.speed,
            looped: options.looped,
            unreadable_lines: log.unreadable_lines,
            other_lines: log.other_lines,
        })
    }

    /// The models of the slice, in order of first appearance.
    pub fn models(&self) -> Vec<&str> {
        let mut models: Vec<&str> = Vec::new();
        for group in &self.groups {
            if !models.contains(&group.model.as_str()) {
                models.push(&group.model);
            }
        }
        models
    }

    /// How long one pass takes: the slice's period (to the next request
    /// had the log gone on, or to `--to`), and at least past its last request.
    pub fn pass_length(&self) -> Duration {
        let last = self.entries.last().map_or(Duration::ZERO, |e| e.offset);
        self.period.max(last + Duration::from_millis(1))
    }

    /// When request number `k` (counting over loops) is due after the start;
    /// None past the slice when not looping.
    pub fn due_offset(&self, k: u64) -> Option<(Duration, ReplayEntry)> {
        let n = self.entries.len() as u64;
        if n == 0 || (!self.looped && k >= n) {
            return None;
        }
        let entry = self.entries[(k % n) as usize];
        let pass = u32::try_from(k / n).ok()?;
        Some((self.period * pass + entry.offset, entry))
    }

    /// Requests due within `[from, to)` after the start.
    pub fn requests_between(&self, from: Duration, to: Duration) -> u64 {
        let mut count = 0;
        let mut k = 0;
        while let Some((offset, _)) = self.due_offset(k) {
            if offset >= to {
                break;
            }
            count += u64::from(offset >= from);
            k += 1;
        }
        count
    }
}

/// A log time for messages.
fn describe_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time)
        .to_string()
        .trim_end_matches('Z')
        .to_string()
}

fn mean_gap_ms(slice: &[&LoggedRequest]) -> f64 {
    match slice {
        [first, .., last] => (last.at_ms - first.at_ms) as f64 / (slice.len() - 1) as f64,
        _ => 1_000.0,
    }
}

/// One group per distinct method and path, with its model's bodies.
fn groups_of(slice: &[&LoggedRequest], body_dir: &Path) -> Result<Vec<ReplayGroup>, LoadError> {
    let mut bodies: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    let mut groups: Vec<ReplayGroup> = Vec::new();
    for request in slice {
        if groups
            .iter()
            .any(|g| g.path == request.path && g.method == request.method)
        {
            continue;
        }
        if !bodies.contains_key(request.model.as_str()) {
            bodies.insert(&request.model, model_bodies(body_dir, &request.model)?);
        }
        groups.push(ReplayGroup {
            method: request.method.clone(),
            path: request.path.clone(),
            model: request.model.clone(),
            bodies: bodies[request.model.as_str()].clone(),
        });
    }
    Ok(groups)
}

/// The files of `body_dir/<model>/`.
fn model_bodies(body_dir: &Path, model: &str) -> Result<Vec<Vec<u8>>, LoadError> {
    let folder = body_dir.join(model);
    if !folder.is_dir() {
        return Err(LoadError::BadInput(format!(
            "--body-dir: {} does not exist, but the log sends requests to model '{model}' (one folder of sample bodies per model)",
            folder.display()
        )));
    }
    read_bodies(&folder)
}

/// The slice's requests as entries: scaled offsets, and each model's
/// bodies dealt round-robin in log order.
fn entries_of(slice: &[&LoggedRequest], groups: &[ReplayGroup], from_ms: i64, speed: f64) -> Vec<ReplayEntry> {
    let mut next_body: BTreeMap<&str, u32> = BTreeMap::new();
    slice
        .iter()
        .map(|request| {
            let group = groups
                .iter()
                .position(|g| g.path == request.path && g.method == request.method)
                .expect("every request has its group");
            let body = next_body.entry(&request.model).or_insert(0);
            let entry = ReplayEntry {
                offset: Duration::from_secs_f64((request.at_ms - from_ms) as f64 / 1_000.0 / speed),
                group: group as u32,
                body: *body % groups[group].bodies.len().max(1) as u32,
            };
            *body += 1;
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, path: &str) -> String {
        format!("2026-11-28T{time} - /127.0.0.1:50886 \"POST {path} HTTP/1.1\" 200 3\n")
    }

    fn body_dir(models: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for model in models {
            std::fs::create_dir_all(dir.path().join(model)).unwrap();
            for body in ["a", "b"] {
                std::fs::write(dir.path().join(model).join(body), format!("{model}-{body}")).unwrap();
            }
        }
        dir
    }

    fn sample_log() -> ReplayLog {
        let text = [
            line("10:00:00,000", "/predictions/tiny"),
            "garbage\n".to_string(),
            line("10:00:00.500", "/predictions/other/1.0"),
            "2026-11-28T10:00:00,600 - /127.0.0.1:1 \"GET /ping HTTP/1.1\" 200 0\n".to_string(),
            line("10:00:01,000", "/predictions/tiny"),
            line("10:00:02,000", "/predictions/tiny"),
            "\n".to_string(),
        ]
        .concat();
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not utf-8\n");
        ReplayLog::parse(Path::new("access_log.log"), &bytes)
    }

    fn options(speed: f64) -> ReplayOptions {
        ReplayOptions {
            speed: Speed(speed),
            from: None,
            to: None,
            looped: false,
        }
    }

    #[test]
    fn reads_requests_counts_the_rest() {
        let log = sample_log();
        assert_eq!(log.requests.len(), 4);
        assert_eq!((log.unreadable_lines, log.other_lines), (2, 1));
        assert_eq!(log.requests[1].model, "other");
        assert_eq!(log.requests[3].at_ms - log.requests[0].at_ms, 2_000);
    }

    #[test]
    fn a_slice_keeps_instants_scaled_and_deals_bodies_per_model() {
        let bodies = body_dir(&["tiny", "other"]);
        let traffic = ReplayTraffic::build(&sample_log(), &options(2.0), bodies.path()).unwrap();
        let offsets: Vec<u128> = traffic.entries.iter().map(|e| e.offset.as_millis()).collect();
        assert_eq!(offsets, [0, 250, 500, 1_000]);
        assert_eq!(traffic.models(), ["tiny", "other"]);
        let tiny_bodies: Vec<u32> = traffic
            .entries
            .iter()
            .filter(|e| e.group == 0)
            .map(|e| e.body)
            .collect();
        assert_eq!(tiny_bodies, [0, 1, 0]);
        assert_eq!(traffic.groups[1].path, "/predictions/other/1.0");
        assert_eq!(traffic.requests_between(Duration::ZERO, Duration::from_millis(600)), 3);
        assert_eq!(traffic.due_offset(4), None);
        // Two seconds of log at 2x, and the mean gap after the last request.
        assert_eq!(traffic.pass_length().as_millis(), 1_000 + 333);
    }

    #[test]
    fn from_and_to_cut_the_slice_and_loop_repeats_it() {
        let bodies = body_dir(&["tiny", "other"]);
        let mut sliced = options(1.0);
        sliced.from = Some("2026-11-28T10:00:00.400".parse().unwrap());
        sliced.to = Some("+2s".parse().unwrap());
        sliced.looped = true;
        let traffic = ReplayTraffic::build(&sample_log(), &sliced, bodies.path()).unwrap();
        assert_eq!(traffic.entries.len(), 2);
        assert_eq!(traffic.period, Duration::from_millis(1_600));
        let (offset, entry) = traffic.due_offset(3).unwrap();
        assert_eq!((offset, entry.group), (Duration::from_millis(1_600 + 600), 1));
    }

    #[test]
    fn bad_input_is_named() {
        let bodies = body_dir(&["tiny"]);
        let missing = ReplayTraffic::build(&sample_log(), &options(1.0), bodies.path()).unwrap_err();
        assert!(
            missing.to_string().contains("--body-dir") && missing.to_string().contains("other"),
            "{missing}"
        );
        let mut empty = options(1.0);
        empty.from = Some("+10m".parse().unwrap());
        let window = ReplayTraffic::build(&sample_log(), &empty, bodies.path()).unwrap_err();
        assert!(window.to_string().contains("--from/--to"), "{window}");
        assert!("fast".parse::<Speed>().is_err() && "0x".parse::<Speed>().is_err());
        assert_eq!("4x".parse::<Speed>().unwrap(), Speed(4.0));
        assert!("yesterday".parse::<TimePoint>().is_err());
        let nothing = ReplayLog::parse(Path::new("l"), b"garbage\n");
        assert!(ReplayTraffic::build(&nothing, &options(1.0), bodies.path())
            .unwrap_err()
            .to_string()
            .contains("no inference requests"));
    }
}
