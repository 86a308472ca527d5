//! The server's processes: the JVM named in TorchServe's pid file and its
//! Python workers, found through `/proc`; waiting for them to exit; killing.

use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::machine::process_tree;

/// The class TorchServe's JVM runs; a pid file naming another process is stale.
const MODEL_SERVER_CLASS: &str = "org.pytorch.serve.ModelServer";

/// The JVM pid from `$TMPDIR/.model_server.pid`, when that process is alive
/// and really is TorchServe.
pub fn running_jvm(tmp_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(tmp_dir.join(".model_server.pid")).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = procfs::process::Process::new(pid).ok()?.cmdline().ok()?;
    (is_alive(pid) && cmdline.iter().any(|arg| arg == MODEL_SERVER_CLASS)).then_some(pid)
}

/// A TorchServe JVM whose working directory is `work_dir`: found even when
/// its pid file is gone (`torchserve --stop` deletes the file at once, while
/// the JVM takes seconds to exit and still holds its ports).
pub fn jvm_in(work_dir: &Path) -> Option<i32> {
    let work_dir = work_dir.canonicalize().ok()?;
    procfs::process::all_processes()
        .ok()?
        .filter_map(Result::ok)
        .find_map(|process| {
            let is_server = process.cmdline().ok()?.iter().any(|arg| arg == MODEL_SERVER_CLASS);
            let here = process.cwd().ok()? == work_dir;
            (is_server && here && is_alive(process.pid)).then_some(process.pid)
        })
}

/// Every TorchServe JVM whose working directory lies under `dir` (a test's
/// temporary folder, with a production server, a study's and a shadow).
pub fn jvms_under(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    processes
        .filter_map(Result::ok)
        .filter_map(|process| {
            let is_server = process.cmdline().ok()?.iter().any(|arg| arg == MODEL_SERVER_CLASS);
            let under = process.cwd().ok()?.starts_with(&dir);
            (is_server && under && is_alive(process.pid)).then_some(process.pid)
        })
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .is_ok_and(|stat| stat.state != 'Z' && stat.state != 'X')
}

/// The process listening on TCP `port` (IPv4 or IPv6), if this user can see it.
pub fn listening_pid(port: u16) -> Option<i32> {
    const LISTEN: procfs::net::TcpState = procfs::net::TcpState::Listen;
    let mut entries = procfs::net::tcp().unwrap_or_default();
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    let inode = entries
        .iter()
        .find(|e| e.state == LISTEN && e.local_address.port() == port)?
        .inode;
    procfs::process::all_processes().ok()?.flatten().find_map(|process| {
        let holds = process
            .fd()
            .ok()?
            .flatten()
            .any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(i) if i == inode));
        holds.then_some(process.pid)
    })
}

/// The process group of `pid`.
pub fn process_group(pid: i32) -> Option<i32> {
    procfs::process::Process::new(pid)
        .ok()?
        .stat()
        .ok()
        .map(|stat| stat.pgrp)
}

pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only
    // yields ESRCH, which is fine here.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits until none of `pids` is alive; returns those still alive at the deadline.
pub async fn wait_all_exit(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&pid| is_alive(pid)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILLs the tree rooted at `root` and its process group (workers that
/// were re-parented are still in the group).
pub fn kill_tree(root: i32) {
    let tree = process_tree(root);
    if let Some(group) = process_group(root) {
        if group > 1 && group != std::process::id() as i32 && Some(group) != process_group(std::process::id() as i32) {
            signal(-group, libc::SIGKILL);
        }
    }
    for pid in tree {
        signal(pid, libc::SIGKILL);
    }
}

/// The last `lines` lines of a log file ("" when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
