//! Memory of each process of the server over time: the resident set (RSS,
//! from `/proc/<pid>/stat`, cheap) of every process of the trees, read once
//! per interval on a thread of its own, kept per process and as the trees'
//! total. The timeline draws the total; the soak fits a slope to each
//! process.
//!
//! It reads only RSS: PSS (`smaps_rollup`) costs milliseconds per process
//! and the sampler of `measure::process` already takes it for the
//! window's figures. Called by `bench::timeline`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::machine::process_tree;

/// How often the trees are looked up again (new or restarted workers).
const TREE_REFRESH: Duration = Duration::from_secs(5);

/// One process's memory over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessSeries {
    pub pid: i32,
    /// `frontend` (the tree's root: TorchServe's JVM), `worker` (a model
    /// worker), or the process's command name.
    pub role: String,
    /// (seconds since the run started, RSS in MB).
    pub rss_mb: Vec<(f64, f64)>,
}

/// Every process's memory over a run, and the trees' total per sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryTrack {
    pub processes: Vec<ProcessSeries>,
    /// (seconds since the run started, total RSS in MB).
    pub total_mb: Vec<(f64, f64)>,
}

/// What a process is, from its command line: a worker runs TorchServe's
/// `model_service_worker`, a root is the frontend (or the gateway).
fn role_of(pid: i32, roots: &[i32]) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if cmdline.contains("model_service_worker") {
        return "worker".into();
    }
    if roots.first() == Some(&pid) {
        return "frontend".into();
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    match comm.trim() {
        "" => "process".into(),
        name => name.to_string(),
    }
}

/// RSS of `pid` in MB (None when it is gone).
fn rss_mb(pid: i32) -> Option<f64> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    Some((stat.rss * procfs::page_size()) as f64 / (1024.0 * 1024.0))
}

/// Samples the trees of `roots` every interval until finished.
pub struct MemoryTracker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<MemoryTrack>,
}

impl MemoryTracker {
    /// Starts sampling; times are counted from `started`.
    pub fn start(roots: Vec<i32>, interval: Duration, started: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || sample_until(&roots, interval, started, &flag));
        Self { stop, handle }
    }

    pub fn finish(self) -> MemoryTrack {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        self.handle.join().unwrap_or_default()
    }
}

fn sample_until(roots: &[i32], interval: Duration, started: Instant, stop: &AtomicBool) -> MemoryTrack {
    let trees = || -> Vec<i32> { roots.iter().flat_map(|&root| process_tree(root)).collect() };
    let mut tree = trees();
    let mut tree_read = Instant::now();
    let mut series: BTreeMap<i32, ProcessSeries> = BTreeMap::new();
    let mut total_mb = Vec::new();
    loop {
        if tree_read.elapsed() >= TREE_REFRESH {
            tree = trees();
            tree_read = Instant::now();
        }
        let at = started.elapsed().as_secs_f64();
        let mut total = 0.0;
        for &pid in &tree {
            let Some(mb) = rss_mb(pid) else { continue };
            total += mb;
            series
                .entry(pid)
                .or_insert_with(|| ProcessSeries {
                    pid,
                    role: role_of(pid, roots),
                    rss_mb: Vec::new(),
                })
                .rss_mb
                .push((at, mb));
        }
        if total > 0.0 {
            total_mb.push((at, total));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::park_timeout(interval);
    }
    MemoryTrack {
        processes: series.into_values().collect(),
        total_mb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_this_process_over_time() {
        let me = std::process::id() as i32;
        let tracker = MemoryTracker::start(vec![me], Duration::from_millis(20), Instant::now());
        std::thread::sleep(Duration::from_millis(200));
        let track = tracker.finish();
        let mine = track
            .processes
            .iter()
            .find(|p| p.pid == me)
            .expect("the root is tracked");
        assert_eq!(mine.role, "frontend", "the root is the frontend");
        assert!(mine.rss_mb.len() >= 3, "{mine:?}");
        assert!(mine.rss_mb.iter().all(|&(_, mb)| mb > 1.0));
        assert!(mine.rss_mb.windows(2).all(|w| w[1].0 > w[0].0), "times grow");
        assert_eq!(track.total_mb.len(), mine.rss_mb.len());
    }
}
