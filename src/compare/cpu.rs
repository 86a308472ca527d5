//! CPU per request of each process tree of a path — TorchServe's frontend
//! (the JVM alone), its workers (every descendant of the JVM) and the
//! gateway (its launcher and everything under it) — from `/proc` CPU times
//! read at the start and the end of a window, divided by the requests
//! served in between. Unlike latency, this does not move with the model's
//! noise: it is what each process spends per request.
//!
//! Reads `/proc` twice per window (no sampling thread); `compare` calls it
//! around each fixed-load round.

use std::path::Path;

use serde::Serialize;

use crate::measure::process::{read_cpu_table, tree_cpu_ticks};

/// Ticks of each part at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuReading {
    pub frontend: u64,
    pub workers: u64,
    pub gateway: u64,
    /// Requests completed so far (answered or failed).
    pub completed: u64,
}

/// Reads the ticks of the JVM `frontend`, its descendants, and the
/// `gateway` tree (when there is one) from `proc_root`.
pub fn read_parts(proc_root: &Path, frontend: i32, gateway: Option<i32>, completed: u64) -> CpuReading {
    let table = read_cpu_table(proc_root);
    let (frontend_ticks, workers) = tree_cpu_ticks(&table, frontend).unwrap_or_default();
    let gateway = gateway
        .and_then(|root| tree_cpu_ticks(&table, root))
        .map_or(0, |(own, under)| own + under);
    CpuReading {
        frontend: frontend_ticks,
        workers,
        gateway,
        completed,
    }
}

/// CPU milliseconds per request of each part over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuPerRequest {
    pub frontend_ms: f64,
    pub workers_ms: f64,
    pub gateway_ms: f64,
    pub requests: u64,
}

impl CpuPerRequest {
    /// The whole path: frontend, workers and (through it) the gateway.
    pub fn total_ms(&self) -> f64 {
        self.frontend_ms + self.workers_ms + self.gateway_ms
    }
}

/// The CPU each part spent between `start` and `end`, per request completed
/// in between (None when no request was).
pub fn per_request(start: &CpuReading, end: &CpuReading, ticks_per_s: u64) -> Option<CpuPerRequest> {
    let requests = end.completed.checked_sub(start.completed).filter(|&n| n > 0)?;
    let ms_per_tick = 1000.0 / ticks_per_s.max(1) as f64;
    // A tree that lost a process between the readings (a worker restarted
    // and not yet reaped) can read lower: count it as nothing spent.
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 * ms_per_tick / requests as f64;
    Some(CpuPerRequest {
        frontend_ms: per(start.frontend, end.frontend),
        workers_ms: per(start.workers, end.workers),
        gateway_ms: per(start.gateway, end.gateway),
        requests,
    })
}

/// The share of a CPU-bound host's throughput a path costs over another:
/// with every core busy, throughput is inversely proportional to CPU per
/// request, so the change is `base / with − 1` (in percent).
pub fn cpu_bound_throughput_change_pct(base_ms: f64, with_ms: f64) -> Option<f64> {
    (base_ms > 0.0 && with_ms > 0.0).then(|| (base_ms / with_ms - 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_stat(root: &Path, pid: i32, ppid: i32, utime: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("writable");
        let text = format!("{pid} (p) S {ppid} 0 0 0 -1 0 0 0 0 0 {utime} 0 0 0 20 0 1 0 1 2 3\n");
        std::fs::write(dir.join("stat"), text).expect("writable");
    }

    #[test]
    fn cpu_per_request_comes_from_two_readings_of_a_proc_like_folder() {
        let proc_root = tempfile::tempdir().expect("a temporary folder");
        let root = proc_root.path();
        // JVM 10 with workers 11 and 12; a gateway 20 with a child 21.
        let write = |jvm, worker, gateway| {
            write_stat(root, 10, 1, jvm);
            write_stat(root, 11, 10, worker);
            write_stat(root, 12, 10, worker);
            write_stat(root, 20, 1, gateway);
            write_stat(root, 21, 20, gateway);
        };
        write(100, 1000, 50);
        let start = read_parts(root, 10, Some(20), 500);
        assert_eq!(
            start,
            CpuReading {
                frontend: 100,
                workers: 2000,
                gateway: 100,
                completed: 500
            }
        );
        // 1000 requests later: the JVM spent 200 ticks, each worker 500, the gateway 2 × 25.
        write(300, 1500, 75);
        let end = read_parts(root, 10, Some(20), 1500);
        let cpu = per_request(&start, &end, 100).expect("requests were served");
        // 200 ticks of 10 ms over 1000 requests: 2 ms each.
        assert_eq!(cpu.requests, 1000);
        assert!((cpu.frontend_ms - 2.0).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.workers_ms - 10.0).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.gateway_ms - 0.5).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.total_ms() - 12.5).abs() < 1e-9);
        assert_eq!(read_parts(root, 10, None, 0).gateway, 0);
        assert!(per_request(&end, &end, 100).is_none(), "no request, no figure");
    }

    #[test]
    fn a_cpu_bound_host_loses_throughput_in_proportion() {
        // 12.5 ms per request instead of 12: 4 % fewer requests per CPU second.
        let change = cpu_bound_throughput_change_pct(12.0, 12.5).expect("both measured");
        assert!((change + 4.0).abs() < 1e-9, "{change}");
        assert_eq!(cpu_bound_throughput_change_pct(0.0, 1.0), None);
    }
}
