//! The signals that ask servetune to stop: SIGTERM (the service manager, a
//! `kill`) and SIGINT (Ctrl-C), received as one stream. The daemon breaks
//! its main `select!` on them; the commands that move a server cancel their
//! token on the first and end on the second (`cli::signals`).
//!
//! A leaf: tokio's signal handling only, nothing from the crate.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT handlers, installed once and read as one stream.
pub struct StopSignals {
    terminate: Option<Signal>,
    interrupt: Option<Signal>,
}

impl StopSignals {
    /// Both handlers; one that cannot be installed never fires. Call inside
    /// the runtime.
    pub fn install() -> Self {
        Self {
            terminate: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Both handlers, or the error that kept one from being installed.
    pub fn try_install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: Some(signal(SignalKind::terminate())?),
            interrupt: Some(signal(SignalKind::interrupt())?),
        })
    }

    /// Waits for the next SIGTERM or SIGINT; returns the exit code the shell
    /// gives a process ended by it (128 + the signal's number).
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            () = received(&mut self.terminate) => 128 + libc::SIGTERM,
            () = received(&mut self.interrupt) => 128 + libc::SIGINT,
        }
    }
}

/// The next delivery of `signal` (never, when it could not be installed).
async fn received(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
