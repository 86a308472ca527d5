//! Which config is a study's original: the config the study measures as
//! the baseline and puts back at the end.
//!
//! servetune's backup (`.servetune/<config>.orig`) holds the file as it was
//! before servetune's first change, whoever made it: a study cut short, or
//! an operator's `servetune apply --set` with no study involved. Only the
//! first is a study's original, and only the study lock (`lock`) tells them
//! apart: a run resumes from what a cut-short run left only when the lock
//! beside the config names this study and its process is gone (it was cut
//! short on this deployment). It then reads the original the study kept
//! beside its lock (`study.original`; the backup may be older, an
//! operator's edit before the study), or the backup for a lock without it.
//! Otherwise the config as it is now is the original, and the older backup
//! is left for `servetune restore` to offer. Called by `Study::open` (tune,
//! tune --resume, the daemon's resume, worker) and by the study's final
//! restore.

use std::path::Path;

use super::lock::{self, Holder};
use crate::config::{self, Properties};

/// Where a study's original config comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalSource {
    /// servetune's backup: this study was cut short here and resumes.
    Backup,
    /// The config file as it is now.
    Current,
}

/// The decision: the backup only for a resume of the study the lock says
/// was cut short on this deployment.
pub fn original_source(study: &str, resume: bool, holder: Option<&Holder>) -> OriginalSource {
    match holder {
        Some(holder) if resume && holder.study == study && !lock::running(holder) => OriginalSource::Backup,
        _ => OriginalSource::Current,
    }
}

/// A study's original config, read.
pub struct Original {
    pub bytes: Vec<u8>,
    pub props: Properties,
    /// It is servetune's backup (this study was cut short and resumes).
    pub from_backup: bool,
}

/// Reads `study`'s original of the deployment of `config`: the backup when
/// the lock on disk says this study was cut short here, else the file.
pub fn read(config: &Path, study: &str, resume: bool) -> anyhow::Result<Original> {
    let backup = config::file::BackupPaths::of(config).original;
    let from_backup = original_source(study, resume, lock::holder(config).as_ref()) == OriginalSource::Backup;
    let (_, current) = config::read_properties(config)?;
    let left = || lock::kept_original(config).or_else(|| std::fs::read(&backup).ok());
    let bytes = from_backup
        .then(left)
        .flatten()
        .unwrap_or_else(|| current.as_bytes().to_vec());
    let props = if bytes == current.as_bytes() {
        current
    } else {
        Properties::parse(bytes.clone())
            .map_err(|e| anyhow::anyhow!("{}: the original study '{study}' left: {e}", config.display()))?
    };
    Ok(Original {
        bytes,
        props,
        from_backup,
    })
}

/// Once the study has put `original` back on `config`, drops servetune's
/// backup when it is that original (nothing of servetune's remains); an
/// older backup, of an edit made before this study, stays for `restore`.
pub fn forget_backup_if_original(config: &Path, original: &[u8]) {
    let backup = config::file::BackupPaths::of(config).original;
    if std::fs::read(backup).is_ok_and(|bytes| bytes == original) {
        let _ = config::restore(config, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn holder(study: &str, pid: u32) -> Holder {
        Holder {
            study: study.into(),
            results_dir: PathBuf::from("/srv/results"),
            pid,
            server_was_running: None,
        }
    }

    #[test]
    fn a_backup_is_the_original_only_for_the_study_the_lock_says_was_cut_short() {
        let dead = 999_999_999;
        let cut_short = holder("tiny", dead);
        assert_eq!(original_source("tiny", true, Some(&cut_short)), OriginalSource::Backup);
        // An operator's `apply --set` left a backup, and no lock: the config now is the original.
        assert_eq!(original_source("tiny", true, None), OriginalSource::Current);
        // Another study's lock, or a fresh (not resumed) start.
        assert_eq!(
            original_source("other", true, Some(&cut_short)),
            OriginalSource::Current
        );
        assert_eq!(
            original_source("tiny", false, Some(&cut_short)),
            OriginalSource::Current
        );
        // A lock whose study still runs was not cut short.
        assert_eq!(
            original_source("tiny", true, Some(&holder("tiny", 1))),
            OriginalSource::Current
        );
    }

    #[test]
    fn a_resume_reads_the_original_its_study_kept_before_an_older_backup() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.properties");
        std::fs::write(&config, "job_queue_size=100\n").unwrap();
        // An operator's apply (backup of 100), then a study of 200, killed on a candidate (300).
        let mut file = config::ConfigFile::read(&config).unwrap();
        file.write(b"job_queue_size=200\n").unwrap();
        lock::acquire(&config, &holder("s", 999_999_999)).unwrap();
        lock::keep_original(&config, b"job_queue_size=200\n").unwrap();
        file.write(b"job_queue_size=300\n").unwrap();
        assert_eq!(read(&config, "s", true).unwrap().bytes, b"job_queue_size=200\n");
        // Another study, or a fresh start: the config as it is.
        assert_eq!(read(&config, "t", true).unwrap().bytes, b"job_queue_size=300\n");
        assert_eq!(read(&config, "s", false).unwrap().bytes, b"job_queue_size=300\n");
        // A lock without a kept original (an older servetune's): the backup.
        std::fs::remove_file(lock::original_path(&config)).unwrap();
        assert_eq!(read(&config, "s", true).unwrap().bytes, b"job_queue_size=100\n");
        lock::keep_original(&config, b"job_queue_size=200\n").unwrap();
        lock::release(&config);
        assert!(!lock::original_path(&config).exists(), "released with the lock");
        assert_eq!(read(&config, "s", true).unwrap().bytes, b"job_queue_size=300\n");
    }

    #[test]
    fn an_older_backup_survives_the_end_of_a_study() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.properties");
        std::fs::write(&config, "job_queue_size=100\n").unwrap();
        // An operator's apply: backup of 100, file now 200.
        let mut file = config::ConfigFile::read(&config).unwrap();
        file.write(b"job_queue_size=200\n").unwrap();
        let backup = config::file::BackupPaths::of(&config).original;
        forget_backup_if_original(&config, b"job_queue_size=200\n");
        assert_eq!(std::fs::read(&backup).unwrap(), b"job_queue_size=100\n");
        assert_eq!(std::fs::read(&config).unwrap(), b"job_queue_size=200\n");
        // A backup that is the study's original (put back on the file) is dropped.
        std::fs::write(&config, "job_queue_size=100\n").unwrap();
        forget_backup_if_original(&config, b"job_queue_size=100\n");
        assert_eq!(std::fs::read(&config).unwrap(), b"job_queue_size=100\n");
        assert!(!backup.exists());
    }
}
