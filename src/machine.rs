//! Facts about the machine servetune runs on, read from the OS: logical
//! CPUs, the CPU model, memory, and a process's tree of descendants.
//!
//! A leaf: it reads `/proc` and the standard library, and imports nothing
//! from the crate. `space` resolves `"cpus"` with it, `server` and `measure`
//! find a server's processes with it, `compare` and the study's findings
//! describe the machine with it.

/// Logical CPUs of this machine.
pub fn logical_cpus() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
}

/// The CPU's model name (`/proc/cpuinfo`), or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Total memory in GiB (`/proc/meminfo`), 0 when unknown.
pub fn memory_gb() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0)
}

/// `root` and all its descendants (e.g. a JVM and its workers), `root` first.
pub fn process_tree(root: i32) -> Vec<i32> {
    let Ok(processes) = procfs::process::all_processes() else {
        return vec![root];
    };
    let parents: Vec<(i32, i32)> = processes
        .filter_map(|p| p.ok()?.stat().ok())
        .map(|stat| (stat.pid, stat.ppid))
        .collect();
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        index += 1;
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_the_root_of_its_tree_and_the_machine_has_cpus() {
        let me = std::process::id() as i32;
        assert_eq!(process_tree(me).first(), Some(&me));
        assert!(logical_cpus() >= 1);
        assert!(memory_gb() >= 0.0);
        assert!(!cpu_model().is_empty());
    }
}
