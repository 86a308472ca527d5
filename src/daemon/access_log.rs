//! Following TorchServe's access log (`access_log.log`) without adding load:
//! reading the new lines as they are written, across rotation and
//! truncation. Each line is parsed by `load::access_log` (the parser a
//! replay uses too), re-exported here.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use crate::load::access_log::{parse_line, AccessLine};

/// Most bytes one poll reads, so memory stays bounded however far behind we are.
const MAX_POLL_BYTES: u64 = 8 * 1024 * 1024;

/// Longest line kept; a longer one is dropped (and counted as skipped).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// The file being read and how far.
struct OpenLog {
    file: File,
    identity: (u64, u64),
    offset: u64,
}

impl OpenLog {
    fn open(path: &Path) -> io::Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let identity = file_identity(&file.metadata()?);
        Ok(Some(OpenLog {
            file,
            identity,
            offset: 0,
        }))
    }

    fn current_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Up to `budget` bytes from the offset on, advancing it.
    fn read_from_offset(&mut self, budget: u64) -> io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        (&mut self.file).take(budget).read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }

    /// Whether the byte just before the offset ends a line (or there is none).
    fn offset_is_at_line_start(&mut self) -> io::Result<bool> {
        if self.offset == 0 {
            return Ok(true);
        }
        self.file.seek(SeekFrom::Start(self.offset - 1))?;
        let mut last = [0u8; 1];
        self.file.read_exact(&mut last)?;
        Ok(last[0] == b'\n')
    }
}

fn file_identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

/// Reads the complete lines appended to an access log since the last poll.
pub struct Follower {
    path: PathBuf,
    open: Option<OpenLog>,
    pending: Vec<u8>,
    discarding_to_newline: bool,
    skipped: u64,
}

impl Follower {
    /// Starts at the end of the file as it is now (history is not replayed);
    /// a missing file is fine (waits for it, then reads it from its start).
    pub fn new(path: PathBuf) -> Self {
        let mut follower = Follower {
            path,
            open: None,
            pending: Vec::new(),
            discarding_to_newline: false,
            skipped: 0,
        };
        follower.open_at_end();
        follower
    }

    /// Opens the file at its end; on any failure the file is treated as
    /// missing, to be read from its start once it can be opened.
    fn open_at_end(&mut self) {
        let Ok(Some(mut open)) = OpenLog::open(&self.path) else {
            return;
        };
        let Ok(len) = open.current_len() else { return };
        open.offset = len;
        let Ok(at_line_start) = open.offset_is_at_line_start() else {
            return;
        };
        self.discarding_to_newline = !at_line_start;
        self.open = Some(open);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines that were not access lines (or too long), skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Complete new lines since the last poll, parsed (unparseable lines are
    /// skipped and counted in [`Follower::skipped`]). Handles rotation (the
    /// old open file is finished first, then the new one read from its
    /// start), truncation (read again from the start), a missing file (no
    /// lines) and a partial last line (kept until its newline arrives).
    /// Reads at most 8 MiB per poll.
    pub fn poll(&mut self) -> io::Result<Vec<AccessLine>> {
        let mut lines = Vec::new();
        let mut budget = MAX_POLL_BYTES;
        if self.open.is_none() {
            self.open = OpenLog::open(&self.path)?;
        }
        while self.open.is_some() {
            // Looked at before reading, so that lines written to the old file
            // just before it was replaced are read below, not lost.
            let replacement = self.replacement()?;
            self.restart_if_truncated()?;
            let bytes = self.read_current(budget)?;
            budget -= bytes.len() as u64;
            self.absorb(&bytes, &mut lines);
            if budget == 0 {
                break;
            }
            let Some(next) = replacement else { break };
            self.finish_partial_line(&mut lines);
            self.open = Some(next);
        }
        Ok(lines)
    }

    /// The file the path names now, when it is not the one being read.
    fn replacement(&self) -> io::Result<Option<OpenLog>> {
        let Some(current) = &self.open else { return Ok(None) };
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        if file_identity(&metadata) == current.identity {
            return Ok(None);
        }
        OpenLog::open(&self.path)
    }

    fn restart_if_truncated(&mut self) -> io::Result<()> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        if open.current_len()? < open.offset {
            open.offset = 0;
            self.drop_partial_line();
        }
        Ok(())
    }

    fn read_current(&mut self, budget: u64) -> io::Result<Vec<u8>> {
        match self.open.as_mut() {
            Some(open) => open.read_from_offset(budget),
            None => Ok(Vec::new()),
        }
    }

    /// Splits new bytes into lines, keeping an unfinished last one.
    fn absorb(&mut self, bytes: &[u8], lines: &mut Vec<AccessLine>) {
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.keep_partial(&rest[..newline]);
            self.complete_line(lines);
            rest = &rest[newline + 1..];
        }
        self.keep_partial(rest);
    }

    fn keep_partial(&mut self, bytes: &[u8]) {
        if self.discarding_to_newline {
            return;
        }
        if self.pending.len() + bytes.len() > MAX_LINE_BYTES {
            self.pending.clear();
            self.discarding_to_newline = true;
            self.skipped += 1;
            return;
        }
        self.pending.extend_from_slice(bytes);
    }

    fn complete_line(&mut self, lines: &mut Vec<AccessLine>) {
        if std::mem::take(&mut self.discarding_to_newline) {
            self.pending.clear();
            return;
        }
        let text = String::from_utf8_lossy(&self.pending);
        match parse_line(&text) {
            Some(line) => lines.push(line),
            None if text.trim().is_empty() => {}
            None => self.skipped += 1,
        }
        self.pending.clear();
    }

    /// At rotation: the old file's unterminated last line is taken as it is.
    fn finish_partial_line(&mut self, lines: &mut Vec<AccessLine>) {
        if !self.pending.is_empty() || self.discarding_to_newline {
            self.complete_line(lines);
        }
    }

    /// At truncation: a half-read line will never be completed.
    fn drop_partial_line(&mut self) {
        if !self.pending.is_empty() {
            self.skipped += 1;
        }
        self.pending.clear();
        self.discarding_to_newline = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const REAL: &str = r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 200 75"#;

    fn line(path: &str, status: u16, millis: u64) -> String {
        format!("2026-11-28T11:03:05,354 - /127.0.0.1:50886 \"POST {path} HTTP/1.1\" {status} {millis}\n")
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open for append");
        file.write_all(text.as_bytes()).expect("append");
    }

    fn paths_of(lines: &[AccessLine]) -> Vec<&str> {
        lines.iter().map(|line| line.path.as_str()).collect()
    }

    #[test]
    fn parses_the_real_lines() {
        let parsed = parse_line(REAL).expect("real line parses");
        assert_eq!(
            parsed,
            AccessLine {
                method: "POST".into(),
                path: "/predictions/tiny".into(),
                status: 200,
                millis: 75
            }
        );
        assert_eq!(parsed.inference_model(), Some("tiny"));

        let missing =
            parse_line(r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "GET /predictions/tiny/9.9 HTTP/1.1" 404 1"#)
                .expect("404 line parses");
        assert_eq!(
            (missing.method.as_str(), missing.status, missing.millis),
            ("GET", 404, 1)
        );
        assert_eq!(missing.inference_model(), Some("tiny"));
        assert!(!missing.is_error());

        let management = parse_line(r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "GET /models/tiny HTTP/1.1" 200 3"#)
            .expect("management line parses");
        assert_eq!(management.inference_model(), None);
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "garbage",
            "2026-11-28T11:03:05,354 [INFO ] W-9000-tiny_1.0 Backend response time: 3",
            r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 200"#,
            r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" abc 75"#,
            r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 200 75 extra"#,
            r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "post predictions HTTP/1.1" 200 75"#,
            r#"2026-11-28T11:03:05,354 - /127.0.0.1:50886 "POST /predictions/tiny HTTP/1.1" 999 75"#,
            r#"no separator "POST /predictions/tiny HTTP/1.1" 200 75"#,
            r#"a - b " 200 75"#,
        ] {
            assert_eq!(parse_line(text), None, "{text:?}");
        }
    }

    #[test]
    fn finds_the_model_of_every_inference_api() {
        let model_of = |path: &str| {
            AccessLine {
                method: "POST".into(),
                path: path.into(),
                status: 200,
                millis: 1,
            }
            .inference_model()
            .map(str::to_string)
        };
        assert_eq!(model_of("/predictions/tiny").as_deref(), Some("tiny"));
        assert_eq!(model_of("/predictions/tiny/2.0?x=1").as_deref(), Some("tiny"));
        assert_eq!(model_of("/v1/models/tiny:predict").as_deref(), Some("tiny"));
        assert_eq!(model_of("/v1/models/tiny/versions/2:predict").as_deref(), Some("tiny"));
        assert_eq!(model_of("/v2/models/tiny/infer").as_deref(), Some("tiny"));
        assert_eq!(model_of("/v2/models/tiny/versions/2/infer").as_deref(), Some("tiny"));
        for other in [
            "/ping",
            "/metrics",
            "/models",
            "/models/tiny",
            "/v1/models/tiny",
            "/v1/models/:predict",
            "/",
        ] {
            assert_eq!(model_of(other), None, "{other}");
        }
    }

    #[test]
    fn server_failures_and_overload_are_errors_client_errors_are_not() {
        let with_status = |status| AccessLine {
            method: "POST".into(),
            path: "/".into(),
            status,
            millis: 1,
        };
        for status in [500, 503, 507, 429] {
            assert!(with_status(status).is_error(), "{status}");
        }
        for status in [200, 400, 404, 413] {
            assert!(!with_status(status).is_error(), "{status}");
        }
    }

    #[test]
    fn follower_skips_history_and_reads_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        append(&log, &line("/old", 200, 1));
        let mut follower = Follower::new(log.clone());
        assert_eq!(follower.path(), log.as_path());
        assert!(follower.poll().expect("poll").is_empty());
        append(&log, &line("/a", 200, 1));
        append(&log, "not an access line\n");
        append(&log, &line("/b", 503, 2));
        let lines = follower.poll().expect("poll");
        assert_eq!(paths_of(&lines), ["/a", "/b"]);
        assert_eq!(follower.skipped(), 1);
        assert!(follower.poll().expect("poll").is_empty());
    }

    #[test]
    fn follower_starting_mid_line_drops_the_fragment_silently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        append(&log, "2026-11-28T11:03:05,354 - /127.0.0.1:50886 \"POST /pre");
        let mut follower = Follower::new(log.clone());
        append(&log, "dictions/tiny HTTP/1.1\" 200 75\n");
        append(&log, &line("/a", 200, 1));
        assert_eq!(paths_of(&follower.poll().expect("poll")), ["/a"]);
        assert_eq!(follower.skipped(), 0);
    }

    #[test]
    fn follower_keeps_a_partial_line_until_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        let mut follower = Follower::new(log.clone());
        let whole = line("/a", 200, 7);
        let (head, tail) = whole.split_at(30);
        append(&log, head);
        assert!(follower.poll().expect("poll").is_empty());
        append(&log, tail);
        let lines = follower.poll().expect("poll");
        assert_eq!(paths_of(&lines), ["/a"]);
        assert_eq!(lines[0].millis, 7);
        assert_eq!(follower.skipped(), 0);
    }

    #[test]
    fn follower_finishes_the_old_file_after_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        append(&log, &line("/old", 200, 1));
        let mut follower = Follower::new(log.clone());
        append(&log, &line("/before-rotation", 200, 1));
        std::fs::rename(&log, dir.path().join("access_log.2026-11-28.log")).expect("rotate");
        // Rotated but not yet re-created: the old file is still read.
        assert_eq!(paths_of(&follower.poll().expect("poll")), ["/before-rotation"]);
        append(
            &dir.path().join("access_log.2026-11-28.log"),
            &line("/last-in-old", 200, 1),
        );
        append(&log, &line("/first-in-new", 200, 1));
        append(&log, &line("/second-in-new", 200, 1));
        assert_eq!(
            paths_of(&follower.poll().expect("poll")),
            ["/last-in-old", "/first-in-new", "/second-in-new"]
        );
        append(&log, &line("/later", 200, 1));
        assert_eq!(paths_of(&follower.poll().expect("poll")), ["/later"]);
    }

    #[test]
    fn follower_rereads_a_truncated_file_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        let mut follower = Follower::new(log.clone());
        append(&log, &line("/a-long-path-before-truncation", 200, 1));
        assert_eq!(follower.poll().expect("poll").len(), 1);
        std::fs::write(&log, line("/after", 200, 1)).expect("truncate and write");
        assert_eq!(paths_of(&follower.poll().expect("poll")), ["/after"]);
    }

    #[test]
    fn follower_waits_for_a_missing_file_then_reads_it_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        let mut follower = Follower::new(log.clone());
        assert!(follower.poll().expect("missing file is no error").is_empty());
        append(&log, &line("/a", 200, 1));
        append(&log, &line("/b", 200, 1));
        assert_eq!(paths_of(&follower.poll().expect("poll")), ["/a", "/b"]);
    }

    #[test]
    fn follower_reads_a_backlog_in_bounded_polls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        let mut follower = Follower::new(log.clone());
        let one = line("/a", 200, 1);
        let count = (MAX_POLL_BYTES as usize / one.len()) + 100;
        append(&log, &one.repeat(count));
        let first = follower.poll().expect("poll").len();
        assert!(first < count, "one poll read {first} of {count} lines");
        let second = follower.poll().expect("poll").len();
        assert_eq!(first + second, count);
        assert_eq!(follower.skipped(), 0);
    }

    #[test]
    fn follower_drops_an_overlong_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("access_log.log");
        let mut follower = Follower::new(log.clone());
        append(&log, &"x".repeat(MAX_LINE_BYTES + 1));
        assert!(follower.poll().expect("poll").is_empty());
        append(&log, &format!("more\n{}", line("/a", 200, 1)));
        assert_eq!(paths_of(&follower.poll().expect("poll")), ["/a"]);
        assert_eq!(follower.skipped(), 1);
    }

    proptest! {
        #[test]
        fn parse_line_never_panics(text in "\\PC*") {
            let _ = parse_line(&text).map(|line| (line.inference_model().map(str::len), line.is_error()));
        }

        #[test]
        fn parse_line_never_panics_on_near_misses(text in "[0-9a-zA-Z /:.,\"\\-]{0,80}") {
            let _ = parse_line(&text).map(|line| line.inference_model().map(str::len));
        }
    }
}
