//! Memory and CPU of the server's whole process tree (JVM + Python workers),
//! sampled on a thread of its own while the load runs: RSS, and PSS from
//! `/proc/<pid>/smaps_rollup` (shared pages split among the processes that
//! map them, so workers forked from one parent are not counted twice).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::server::process::process_tree;

/// One sample of the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeSample {
    pub rss_bytes: u64,
    pub pss_bytes: u64,
    /// utime + stime of every process in the tree, in clock ticks.
    pub cpu_ticks: u64,
    pub processes: usize,
}

/// Reads the tree rooted at `root` once.
pub fn sample_tree(root: i32) -> TreeSample {
    let page_size = procfs::page_size();
    let mut sample = TreeSample::default();
    for pid in process_tree(root) {
        let Ok(process) = procfs::process::Process::new(pid) else {
            continue;
        };
        if let Ok(stat) = process.stat() {
            sample.rss_bytes += stat.rss * page_size;
            sample.cpu_ticks += stat.utime + stat.stime;
            sample.processes += 1;
        }
        if let Ok(rollup) = process.smaps_rollup() {
            if let Some(pss) = rollup
                .memory_map_rollup
                .iter()
                .find_map(|map| map.extension.map.get("Pss").copied())
            {
                sample.pss_bytes += pss;
            }
        }
    }
    sample
}

/// Peak and mean memory over a window, and CPU used, of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryReport {
    pub rss_peak: f64,
    pub rss_mean: f64,
    pub pss_peak: f64,
    pub pss_mean: f64,
    /// CPU time of the tree over the window, as cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub samples: usize,
}

/// Samples a process tree every `interval` until stopped.
pub struct TreeSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<TreeSample>, Duration)>,
}

impl TreeSampler {
    pub fn start(root: i32, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = vec![sample_tree(root)];
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                samples.push(sample_tree(root));
            }
            (samples, started.elapsed())
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> MemoryReport {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, elapsed) = self.handle.join().unwrap_or_default();
        summarize(&samples, elapsed)
    }
}

fn summarize(samples: &[TreeSample], elapsed: Duration) -> MemoryReport {
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let count = samples.len().max(1) as f64;
    let ticks_per_s = procfs::ticks_per_second() as f64;
    let cpu_ticks = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64,
        _ => 0.0,
    };
    MemoryReport {
        rss_peak: mb(samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0)),
        rss_mean: samples.iter().map(|s| mb(s.rss_bytes)).sum::<f64>() / count,
        pss_peak: mb(samples.iter().map(|s| s.pss_bytes).max().unwrap_or(0)),
        pss_mean: samples.iter().map(|s| mb(s.pss_bytes)).sum::<f64>() / count,
        cpu_cores: if elapsed.is_zero() {
            0.0
        } else {
            cpu_ticks / ticks_per_s / elapsed.as_secs_f64()
        },
        samples: samples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let sample = sample_tree(std::process::id() as i32);
        assert!(sample.processes >= 1);
        assert!(sample.rss_bytes > 1024 * 1024);
        assert!(sample.pss_bytes > 0);
        let sampler = TreeSampler::start(std::process::id() as i32, Duration::from_millis(20));
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(200) {
            std::hint::black_box(0u64);
        }
        let report = sampler.finish();
        assert!(report.samples >= 3);
        assert!(report.pss_peak >= report.pss_mean && report.pss_mean > 0.0);
        assert!(report.cpu_cores > 0.2, "a spinning thread shows up as CPU: {report:?}");
    }
}
