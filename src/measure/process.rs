//! Memory and CPU of the server's whole process tree (JVM + Python workers),
//! sampled on a thread of its own while the load runs: RSS and CPU from
//! `/proc/<pid>/stat`, and PSS from `/proc/<pid>/smaps_rollup` (shared pages
//! split among the processes that map them, so workers forked from one
//! parent are not counted twice).
//!
//! The observer must not move what it observes: `smaps_rollup` makes the
//! kernel walk every mapping of a process (measured here: 3–7 ms per process
//! of a TorchServe tree, a JVM and torch workers), and finding the tree reads
//! every `/proc/*/stat`. So RSS and CPU (cheap) are read every
//! `SAMPLE_INTERVAL`, PSS only every `PSS_INTERVAL` (a steady server's PSS
//! moves slowly), the tree is looked up again every `TREE_REFRESH`, and the
//! sampler's own CPU time is measured and reported (`ObserverCost`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::machine::process_tree;

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
    sample_processes(&process_tree(root), true)
}

/// PSS of one process (not its children), in bytes; 0 when unreadable.
pub fn process_pss_bytes(pid: i32) -> u64 {
    sample_processes(&[pid], true).pss_bytes
}

/// Reads `pids` once; PSS only when `with_pss` (it is the costly part).
fn sample_processes(pids: &[i32], with_pss: bool) -> TreeSample {
    let page_size = procfs::page_size();
    let mut sample = TreeSample::default();
    for &pid in pids {
        let Ok(process) = procfs::process::Process::new(pid) else {
            continue;
        };
        if let Ok(stat) = process.stat() {
            sample.rss_bytes += stat.rss * page_size;
            sample.cpu_ticks += stat.utime + stat.stime;
            sample.processes += 1;
        }
        if !with_pss {
            continue;
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

/// What watching the server cost, measured on the sampler thread itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ObserverCost {
    /// CPU seconds the sampler thread used.
    pub cpu_s: f64,
    /// That CPU as a share of one core over the window.
    pub cpu_share: f64,
    pub samples: usize,
    pub pss_samples: usize,
}

/// How often the sampler reads RSS and CPU.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// How often it reads PSS (and on its first sample).
const PSS_INTERVAL: Duration = Duration::from_secs(5);
/// How often the tree (new workers) is looked up again.
const TREE_REFRESH: Duration = Duration::from_secs(2);

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// Samples a process tree every `interval` until stopped.
pub struct TreeSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<TreeSample>, Duration, ObserverCost)>,
}

impl TreeSampler {
    pub fn start(root: i32, interval: Duration) -> Self {
        Self::start_trees(vec![root], interval)
    }

    /// Samples the trees of several roots as one (a gateway and the
    /// TorchServe behind it: memory is their sum).
    pub fn start_trees(roots: Vec<i32>, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let cpu_before = thread_cpu_time();
            let started = Instant::now();
            let trees = || -> Vec<i32> { roots.iter().flat_map(|&root| process_tree(root)).collect() };
            let mut tree = trees();
            let mut tree_read = Instant::now();
            let mut pss_read: Option<Instant> = None;
            let mut samples = Vec::new();
            let mut cost = ObserverCost::default();
            loop {
                if tree_read.elapsed() >= TREE_REFRESH {
                    tree = trees();
                    tree_read = Instant::now();
                }
                let with_pss = pss_read.is_none_or(|at| at.elapsed() >= PSS_INTERVAL);
                if with_pss {
                    pss_read = Some(Instant::now());
                }
                samples.push(sample_processes(&tree, with_pss));
                cost.pss_samples += usize::from(with_pss);
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                // Parked, not slept: `finish` wakes it at once.
                std::thread::park_timeout(interval);
            }
            let elapsed = started.elapsed();
            cost.samples = samples.len();
            cost.cpu_s = thread_cpu_time().saturating_sub(cpu_before).as_secs_f64();
            cost.cpu_share = cost.cpu_s / elapsed.as_secs_f64().max(1e-9);
            (samples, elapsed, cost)
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> (MemoryReport, ObserverCost) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        let (samples, elapsed, cost) = self.handle.join().unwrap_or_default();
        (summarize(&samples, elapsed), cost)
    }
}

fn summarize(samples: &[TreeSample], elapsed: Duration) -> MemoryReport {
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let count = samples.len().max(1) as f64;
    let pss: Vec<u64> = samples.iter().map(|s| s.pss_bytes).filter(|&b| b > 0).collect();
    let pss_count = pss.len().max(1) as f64;
    let ticks_per_s = procfs::ticks_per_second() as f64;
    let cpu_ticks = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64,
        _ => 0.0,
    };
    MemoryReport {
        rss_peak: mb(samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0)),
        rss_mean: samples.iter().map(|s| mb(s.rss_bytes)).sum::<f64>() / count,
        pss_peak: mb(pss.iter().copied().max().unwrap_or(0)),
        pss_mean: pss.iter().map(|&b| mb(b)).sum::<f64>() / pss_count,
        cpu_cores: if elapsed.is_zero() {
            0.0
        } else {
            cpu_ticks / ticks_per_s / elapsed.as_secs_f64()
        },
        samples: samples.len(),
    }
}

/// CPU time one process used, in clock ticks: its own (`utime + stime`)
/// and that of its children it has reaped (`cutime + cstime`: a worker that
/// exited and was waited for still counts with its parent). Summing these
/// over a live tree counts every tick once: a reaped child is no longer in
/// the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub own: u64,
    pub reaped_children: u64,
}

impl CpuTicks {
    pub fn total(&self) -> u64 {
        self.own + self.reaped_children
    }
}

/// The parent pid and CPU ticks in the text of a `/proc/<pid>/stat` file
/// (fields 4 and 14–17; the command name, field 2, may hold spaces and
/// parentheses, so fields are counted after its last `)`).
pub fn parse_stat_cpu(text: &str) -> Option<(i32, CpuTicks)> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state): field N is fields[N - 3].
    let number = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ppid = fields.get(1)?.parse::<i32>().ok()?;
    Some((
        ppid,
        CpuTicks {
            own: number(14)? + number(15)?,
            reaped_children: number(16)? + number(17)?,
        },
    ))
}

/// CPU ticks of every process under `proc_root` (`/proc`, or a folder laid
/// out like it), with its parent: one read of the process table.
pub fn read_cpu_table(proc_root: &std::path::Path) -> Vec<(i32, i32, CpuTicks)> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let text = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (ppid, ticks) = parse_stat_cpu(&text)?;
            Some((pid, ppid, ticks))
        })
        .collect()
}

/// CPU ticks of `root` alone and of its descendants, from a table
/// `read_cpu_table` gave (None when `root` is not in it).
pub fn tree_cpu_ticks(table: &[(i32, i32, CpuTicks)], root: i32) -> Option<(u64, u64)> {
    let root_ticks = table.iter().find(|(pid, _, _)| *pid == root)?.2.total();
    let mut tree = vec![root];
    let mut index = 0;
    let mut descendants = 0;
    while index < tree.len() {
        let parent = tree[index];
        for (pid, _, ticks) in table.iter().filter(|(_, ppid, _)| *ppid == parent) {
            tree.push(*pid);
            descendants += ticks.total();
        }
        index += 1;
    }
    Some((root_ticks, descendants))
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
        let me = std::process::id() as i32;
        let ticks = || sample_tree(me).cpu_ticks;
        let (before, started) = (ticks(), Instant::now());
        let sampler = TreeSampler::start(me, Duration::from_millis(20));
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(600) {
            std::hint::black_box(0u64);
        }
        let (report, cost) = sampler.finish();
        let used = (ticks() - before) as f64 / procfs::ticks_per_second() as f64 / started.elapsed().as_secs_f64();
        assert!(report.samples >= 3);
        assert!(report.pss_peak >= report.pss_mean && report.pss_mean > 0.0);
        // However busy the machine, the spinner's CPU is what the sampler saw.
        assert!(used > 0.0, "the spinner ran");
        assert!(
            (report.cpu_cores - used).abs() < 0.15,
            "a spinning thread shows up as CPU: sampled {report:?}, used {used:.2} cores"
        );
        assert_eq!(cost.samples, report.samples);
        assert!(cost.pss_samples >= 1 && cost.pss_samples < cost.samples, "{cost:?}");
        assert!(cost.cpu_s > 0.0 && cost.cpu_share < 0.5, "{cost:?}");
    }

    #[test]
    fn several_trees_are_sampled_as_one() {
        // A second process holding 64 MiB (touched, so resident): what a
        // gateway in front of TorchServe adds.
        let mut other = std::process::Command::new("python3")
            .args(["-c", "x = bytearray(64 << 20); import sys; sys.stdin.read()"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let pid = other.id() as i32;
        let started = Instant::now();
        while sample_tree(pid).rss_bytes < 64 << 20 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the allocation never showed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let me = std::process::id() as i32;
        let alone = TreeSampler::start(me, Duration::from_millis(20)).finish().0;
        let both = TreeSampler::start_trees(vec![me, pid], Duration::from_millis(20))
            .finish()
            .0;
        drop(other.stdin.take());
        let _ = other.wait();
        assert!(
            both.pss_mean > alone.pss_mean + 60.0,
            "{} MB with the other tree, {} MB alone",
            both.pss_mean,
            alone.pss_mean
        );
    }

    #[test]
    fn cpu_ticks_are_read_from_stat_text_and_summed_over_a_tree() {
        // A command name with spaces and a parenthesis, as a JVM's thread name can be.
        let jvm = "100 (java (main) x) S 1 100 100 0 -1 4194560 5 0 0 0 700 300 40 20 20 0 30 0 1 2 3";
        assert_eq!(
            parse_stat_cpu(jvm),
            Some((
                1,
                CpuTicks {
                    own: 1000,
                    reaped_children: 60
                }
            ))
        );
        assert_eq!(parse_stat_cpu("7 (short) S 1 2"), None);
        let proc_root = tempfile::tempdir().expect("a temporary folder");
        let stat = |pid: i32, ppid: i32, utime: u64, stime: u64, cutime: u64| {
            let dir = proc_root.path().join(pid.to_string());
            std::fs::create_dir_all(&dir).expect("writable");
            let text =
                format!("{pid} (p {pid}) S {ppid} 0 0 0 -1 0 0 0 0 0 {utime} {stime} {cutime} 0 20 0 1 0 1 2 3\n");
            std::fs::write(dir.join("stat"), text).expect("writable");
        };
        stat(100, 1, 700, 300, 60); // the JVM, which reaped a worker of 60 ticks
        stat(200, 100, 50, 50, 0); // a worker
        stat(300, 200, 10, 0, 0); // a worker's child
        stat(400, 1, 999, 999, 0); // another tree
        std::fs::create_dir_all(proc_root.path().join("self")).expect("writable");
        let table = read_cpu_table(proc_root.path());
        assert_eq!(table.len(), 4);
        assert_eq!(tree_cpu_ticks(&table, 100), Some((1060, 110)));
        assert_eq!(tree_cpu_ticks(&table, 200), Some((100, 10)));
        assert_eq!(tree_cpu_ticks(&table, 999), None);
    }

    #[test]
    fn a_real_process_shows_the_cpu_it_spent() {
        let me = std::process::id() as i32;
        let read = || {
            tree_cpu_ticks(&read_cpu_table(std::path::Path::new("/proc")), me)
                .expect("this process is in /proc")
                .0
        };
        let before = read();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(300) {
            std::hint::black_box(0u64);
        }
        let spent = read() - before;
        // However loaded the machine, 300 ms of wall time spinning is some CPU.
        assert!(spent > 0, "{spent} ticks");
    }
}
