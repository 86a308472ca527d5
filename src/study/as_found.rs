//! Leaving the deployment as it was found. A study (and a worker) learns,
//! before it touches anything, whether TorchServe runs; the fact is kept in
//! the study lock, so that a resume after a kill knows it too (the server
//! it then finds may be the killed study's). On the way out a server that
//! ran is put back running and ready (`Runner::finish_on`); one that was
//! stopped gets its final config on disk and is stopped again
//! (`Runner::finish_stopped`). A server restarted by its service manager
//! (`restart_command`) counts as running: servetune never stops it.

use crate::apply::state::Deployment;
use crate::server::TorchServe;

use super::{lock, Study};

impl Study<'_> {
    /// Takes the deployment for the study: finds out whether its server
    /// runs (a resume: as its cut-short run found it) and locks the
    /// deployment with that fact; from here on every way out restores it.
    pub(super) async fn take_server(&mut self, resume: bool) -> anyhow::Result<()> {
        let running = match self.recorded_running(resume) {
            Some(running) => running,
            None => server_runs_now(&self.runner.server).await,
        };
        self.found_stopped = !running;
        if !running {
            tracing::info!("TorchServe is not running: the study starts it, and stops it again when it ends");
        }
        self.lock_server(running)
    }

    /// What the lock of this study's cut-short run says about the server
    /// before that run (None: not a resume, no such lock, or an older lock).
    fn recorded_running(&self, resume: bool) -> Option<bool> {
        if !resume {
            return None;
        }
        let holder = lock::holder(&self.runner.server.spec().config)?;
        (holder.study == self.settings.name)
            .then_some(holder.server_was_running)
            .flatten()
    }

    /// Puts `target` on disk and the server as it was found: running and
    /// ready on `target`, or stopped.
    pub(super) async fn leave_as_found(&mut self, target: &Deployment) -> anyhow::Result<()> {
        if self.found_stopped {
            tracing::info!("TorchServe was not running before the study: stopping it");
            self.runner.finish_stopped(target).await
        } else {
            self.runner.finish_on(target).await
        }
    }
}

/// Whether `server` runs now (a JVM in its work directory, or a server
/// answering ready on its ports).
async fn server_runs_now(server: &TorchServe) -> bool {
    // A service manager's TorchServe is its business: taken as running.
    !server.spec().control.starts_server() || server.running_jvm().is_some() || server.is_ready().await
}
