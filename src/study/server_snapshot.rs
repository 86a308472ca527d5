//! The server's processes before and after a measurement window, and what
//! it lost in between (the JVM or a worker died or was replaced): the
//! runner takes the snapshots, `server_loss` decides what the trial becomes.

/// The server's processes at one moment: the JVM (a managed server's, from
/// its pid file or work directory) and each worker of the model as the
/// management API lists it (pid, status), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub jvm: Option<i32>,
    pub workers: Vec<(i64, String)>,
}

/// What the server lost between `before` and `after`, in words for the
/// journal: the JVM gone or replaced, a worker gone, replaced or not READY.
/// None when nothing was lost, or when nothing was known before (a worker
/// list that could not be read proves nothing).
pub fn what_was_lost(before: &Snapshot, after: &Snapshot) -> Option<String> {
    if let Some(jvm) = before.jvm {
        if after.jvm != Some(jvm) {
            return Some(match after.jvm {
                Some(new) => format!("the JVM (pid {jvm}) was replaced by pid {new} during the window"),
                None => format!("the JVM (pid {jvm}) died during the window"),
            });
        }
    }
    if before.workers.is_empty() {
        return None;
    }
    let pids = |workers: &[(i64, String)]| workers.iter().map(|(pid, _)| *pid).collect::<Vec<_>>();
    let unready = after.workers.iter().any(|(_, status)| status != "READY");
    if pids(&before.workers) != pids(&after.workers) || unready {
        return Some(format!(
            "a worker restarted during the window (workers {:?} -> {:?})",
            before.workers, after.workers
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(jvm: Option<i32>, workers: &[(i64, &str)]) -> Snapshot {
        Snapshot {
            jvm,
            workers: workers.iter().map(|(pid, s)| (*pid, s.to_string())).collect(),
        }
    }

    #[test]
    fn a_dead_jvm_or_worker_is_a_loss_and_a_steady_server_is_not() {
        let before = snapshot(Some(10), &[(11, "READY"), (12, "READY")]);
        assert_eq!(what_was_lost(&before, &before.clone()), None);
        let jvm_gone = what_was_lost(&before, &snapshot(None, &[])).unwrap();
        assert!(jvm_gone.contains("JVM (pid 10) died"), "{jvm_gone}");
        let jvm_new = what_was_lost(&before, &snapshot(Some(20), &[(21, "READY")])).unwrap();
        assert!(jvm_new.contains("replaced by pid 20"), "{jvm_new}");
        let replaced = what_was_lost(&before, &snapshot(Some(10), &[(11, "READY"), (13, "READY")])).unwrap();
        assert!(replaced.contains("worker restarted"), "{replaced}");
        // A killed worker shows first as UNLOADING with its old pid.
        let unloading = what_was_lost(&before, &snapshot(Some(10), &[(11, "READY"), (12, "UNLOADING")]));
        assert!(unloading.is_some());
        let scaled_down = what_was_lost(&before, &snapshot(Some(10), &[(11, "READY")]));
        assert!(scaled_down.is_some(), "a worker that vanished is lost");
    }

    #[test]
    fn nothing_known_before_proves_nothing() {
        let unknown = snapshot(None, &[]);
        assert_eq!(what_was_lost(&unknown, &snapshot(Some(5), &[(6, "READY")])), None);
        // A server without a JVM pid of its own (a service) still shows its workers.
        let service = snapshot(None, &[(6, "READY")]);
        assert!(what_was_lost(&service, &snapshot(None, &[])).is_some());
    }
}
