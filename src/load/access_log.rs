//! TorchServe's access log (`access_log.log`), line by line: the request
//! each line records (method, path, status, time taken) and when it was
//! logged. The daemon follows the log with it; a replay (`load::replay`)
//! reads a whole log with it.
//!
//! A line (TorchServe 0.12, log4j2 pattern `%d{ISO8601} - %m%n`) looks like
//! `2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 200 75`:
//! the local time, the client, the quoted request line, the HTTP status and
//! the time taken in milliseconds.

/// One request as the access log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub millis: u64,
}

impl AccessLine {
    /// The model an inference request is for: `/predictions/M[/V]`,
    /// `/v1/models/M[/versions/V]:predict`, `/v2/models/M[/versions/V]/infer`;
    /// None for other paths (management, ping, metrics).
    pub fn inference_model(&self) -> Option<&str> {
        let segments: Vec<&str> = path_without_query(&self.path)
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        let model = match segments.as_slice() {
            ["predictions", model] | ["predictions", model, _] => Some(*model),
            ["v1", "models", model_predict] => model_predict.strip_suffix(":predict"),
            ["v1", "models", model, "versions", version_predict] if version_predict.ends_with(":predict") => {
                Some(*model)
            }
            ["v2", "models", model, "infer"] | ["v2", "models", model, "versions", _, "infer"] => Some(*model),
            _ => None,
        };
        model.filter(|name| !name.is_empty())
    }

    /// A server-side failure: 5xx, or 429 / 503 / 507 (TorchServe's overload
    /// answers). 4xx client errors are not.
    pub fn is_error(&self) -> bool {
        self.status >= 500 || self.status == 429
    }
}

fn path_without_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Parses one access-log line; None for anything else. Never panics.
pub fn parse_line(line: &str) -> Option<AccessLine> {
    let line = line.trim_end();
    let open = line.find('"')?;
    let close = line.rfind('"')?;
    if close <= open || !line[..open].contains(" - ") {
        return None;
    }
    let (method, path) = parse_request_line(&line[open + 1..close])?;
    let (status, millis) = parse_outcome(&line[close + 1..])?;
    Some(AccessLine {
        method: method.to_string(),
        path: path.to_string(),
        status,
        millis,
    })
}

/// `METHOD PATH [PROTOCOL]` into the method and the path.
fn parse_request_line(request: &str) -> Option<(&str, &str)> {
    let mut parts = request.split_whitespace();
    let method = parts.next()?;
    let path = parts.next()?;
    let _protocol = parts.next();
    let is_method = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    (is_method && path.starts_with('/') && parts.next().is_none()).then_some((method, path))
}

/// `STATUS MILLIS` into the HTTP status and the time taken.
fn parse_outcome(rest: &str) -> Option<(u16, u64)> {
    let mut parts = rest.split_whitespace();
    let status: u16 = parts.next()?.parse().ok()?;
    let millis: u64 = parts.next()?.parse().ok()?;
    ((100..=599).contains(&status) && parts.next().is_none()).then_some((status, millis))
}

/// An access-log line with the local time it was logged at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedLine {
    /// Milliseconds since 1970-01-01T00:00 of the log's local clock (no
    /// time zone: only differences and comparisons mean anything).
    pub at_ms: i64,
    pub line: AccessLine,
}

/// Parses one access-log line with its timestamp; None for anything else.
pub fn parse_timed_line(text: &str) -> Option<TimedLine> {
    let line = parse_line(text)?;
    let (stamp, _) = text.split_once(" - ")?;
    Some(TimedLine {
        at_ms: parse_timestamp(stamp.trim())?,
        line,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[,fff|.fff]` (a space may stand for the `T`) into
/// milliseconds since 1970-01-01T00:00 of the same clock. None when malformed.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date_parts = date.split('-');
    let year: i64 = number(date_parts.next()?, 4)?;
    let month: i64 = number(date_parts.next()?, 2)?;
    let day: i64 = number(date_parts.next()?, 2)?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, fraction) = match time.split_once([',', '.']) {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let mut clock_parts = clock.split(':');
    let hour: i64 = number(clock_parts.next()?, 2)?;
    let minute: i64 = number(clock_parts.next()?, 2)?;
    let second: i64 = number(clock_parts.next()?, 2)?;
    if clock_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = match fraction {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{digits:0<3}");
            padded[..3].parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000 + millis)
}

/// A field of exactly `width` ASCII digits.
fn number(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_timestamps_with_a_comma_or_a_dot() {
        let comma = parse_timestamp("2026-11-28T11:03:05,354").unwrap();
        let dot = parse_timestamp("2026-11-28T11:03:05.354").unwrap();
        assert_eq!(comma, dot);
        assert_eq!(parse_timestamp("2026-11-28 11:03:05,354"), Some(comma));
        assert_eq!(parse_timestamp("2026-11-28T11:03:06").unwrap() - comma, 646);
        assert_eq!(parse_timestamp("2026-11-28T11:03:05,5").unwrap() - comma, 146);
        assert_eq!(parse_timestamp("1970-01-01T00:00:01,000"), Some(1_000));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00"), Some(951_868_800_000));
        // Across midnight and a month's end.
        let before = parse_timestamp("2026-02-28T23:59:59,900").unwrap();
        assert_eq!(parse_timestamp("2026-03-01T00:00:00,100").unwrap() - before, 200);
        for bad in [
            "",
            "2026-11-28",
            "2026-11-28T11:03",
            "2026-13-28T11:03:05",
            "2026-11-28T25:03:05",
            "2026-11-28T11:03:05,",
            "2026-11-28T11:03:05,3x",
            "26-11-28T11:03:05",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_timed_line_carries_its_request_and_its_instant() {
        let text = r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 200 75"#;
        let timed = parse_timed_line(text).expect("a real line");
        assert_eq!(timed.at_ms, parse_timestamp("2026-11-28T11:03:05,354").unwrap());
        assert_eq!((timed.line.inference_model(), timed.line.status), (Some("tiny"), 200));
        let undated = r#"yesterday - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 200 75"#;
        assert!(parse_line(undated).is_some() && parse_timed_line(undated).is_none());
    }

    proptest! {
        #[test]
        fn timestamps_order_like_their_text(a in 0i64..4_000_000_000_000, b in 0i64..4_000_000_000_000) {
            let text = |ms: i64| {
                let days = ms.div_euclid(86_400_000);
                let (y, m, d) = civil_from_days(days);
                let rest = ms.rem_euclid(86_400_000);
                format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02},{:03}", rest / 3_600_000, rest / 60_000 % 60, rest / 1_000 % 60, rest % 1_000)
            };
            prop_assert_eq!(parse_timestamp(&text(a)), Some(a));
            prop_assert_eq!(parse_timestamp(&text(b)), Some(b));
        }

        #[test]
        fn parse_timed_line_never_panics(text in "[0-9T:,. /\"A-Z\\-a-z]{0,80}") {
            let _ = parse_timed_line(&text);
        }
    }

    /// The inverse of `days_from_civil`, for the property above.
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }
}
