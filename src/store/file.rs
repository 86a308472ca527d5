//! The file store: `results/<study>/trials.jsonl`, one JSON line per
//! finished trial, fsynced before the strategy hears of it. Reading
//! tolerates a torn last line (a crash mid-write) and cuts it off before
//! appending, so the file stays valid JSONL.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub use crate::trial::{Entry, TrialKind};

pub struct Journal {
    path: PathBuf,
    /// None: a journal that keeps nothing (a replay on simulated time).
    file: Option<File>,
}

#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {reason}", path = .path.display())]
pub struct JournalError {
    pub path: PathBuf,
    pub reason: String,
}

impl Journal {
    /// Opens (creating) the journal and returns the entries already in it.
    pub fn open(path: &Path) -> Result<(Self, Vec<Entry>), JournalError> {
        let fail = |reason: String| JournalError {
            path: path.to_path_buf(),
            reason,
        };
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(fail(e.to_string())),
        };
        let (entries, valid_len) = parse(&text).map_err(fail)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        if valid_len < text.len() {
            tracing::warn!("journal {}: dropping a torn last line", path.display());
            file.set_len(valid_len as u64).map_err(|e| fail(e.to_string()))?;
        }
        use std::io::Seek as _;
        let mut file = file;
        file.seek(std::io::SeekFrom::End(0)).map_err(|e| fail(e.to_string()))?;
        let journal = Self {
            path: path.to_path_buf(),
            file: Some(file),
        };
        Ok((journal, entries))
    }

    /// A journal that keeps nothing: the study's trials live in its memory
    /// alone (`servetune replay`, the loop's own tests).
    pub fn unkept() -> Self {
        Self {
            path: PathBuf::from("(not kept)"),
            file: None,
        }
    }

    /// Appends one entry and fsyncs it.
    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let fail = |e: std::io::Error| JournalError {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        #[cfg(feature = "failpoints")]
        fail::fail_point!("journal::append", |_| Err(fail(std::io::Error::other(
            "injected write failure"
        ))));
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(entry).expect("entries serialise");
        line.push(b'\n');
        file.write_all(&line).map_err(fail)?;
        file.sync_data().map_err(fail)
    }
}

/// Reads the entries of a journal without opening it for writing (a torn
/// last line, perhaps one being written, is left alone).
pub fn read(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let fail = |reason: String| JournalError {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    parse(&bytes).map(|(entries, _)| entries).map_err(fail)
}

/// Parses complete lines; a last line without newline that does not parse is
/// torn. Returns the entries and the length of the valid prefix.
fn parse(bytes: &[u8]) -> Result<(Vec<Entry>, usize), String> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i);
        let line = &bytes[at..end.unwrap_or(bytes.len())];
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) => entries.push(entry),
            Err(_) if end.is_none() || end == Some(bytes.len() - 1) => return Ok((entries, at)),
            Err(e) => return Err(format!("line {}: {e}", entries.len() + 1)),
        }
        at = end.map_or(bytes.len(), |e| e + 1);
    }
    Ok((entries, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: usize) -> Entry {
        Entry {
            number,
            kind: TrialKind::Screen,
            point: Some(vec![number, 1]),
            values: Default::default(),
            figures: None,
            failure: Some("x".into()),
            loss: 1.0,
            feasible: false,
            restarted: false,
            throughput_ci95: None,
            duration_s: 1.0,
            elapsed_s: 2.0,
            switch: Default::default(),
            switch_s: 0.0,
            warmup_s: 0.0,
            stability: None,
            round: None,
            latency_histogram: None,
            server_cpu_cores: None,
            observer_cpu_share: None,
            incidents: Vec::new(),
            server_lost: None,
            models: Default::default(),
            peak: None,
            window_of: None,
            worker: None,
        }
    }

    #[test]
    fn round_trip_and_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        let (mut journal, old) = Journal::open(&path).unwrap();
        assert!(old.is_empty());
        journal.append(&entry(0)).unwrap();
        journal.append(&entry(1)).unwrap();
        drop(journal);
        // A crash in the middle of the third line.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"number\":2,\"ki");
        std::fs::write(&path, &bytes).unwrap();
        let (mut journal, old) = Journal::open(&path).unwrap();
        assert_eq!(old, vec![entry(0), entry(1)]);
        journal.append(&entry(2)).unwrap();
        drop(journal);
        let (_, all) = Journal::open(&path).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], entry(2));
    }

    #[test]
    fn journals_of_the_first_release_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        std::fs::write(
            &path,
            "{\"number\":0,\"kind\":\"baseline\",\"point\":null,\"values\":{},\"figures\":null,\"failure\":\"x\",\
             \"loss\":1.0,\"feasible\":false,\"restarted\":false,\"throughput_ci95\":null,\"duration_s\":3.0,\"elapsed_s\":9.0}\n",
        )
        .unwrap();
        let (_, entries) = Journal::open(&path).unwrap();
        assert_eq!(entries[0].switch, crate::trial::Switch::None);
        assert_eq!(entries[0].round, None);
    }

    #[test]
    fn a_broken_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        assert!(Journal::open(&path).is_err());
    }
}
