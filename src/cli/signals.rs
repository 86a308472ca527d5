//! Ctrl-C and SIGTERM for the commands that move a server (`tune`,
//! `worker`, `bench`, `compare`): the first signal cancels the command's
//! token, so it stops its load, puts the server back and exits on its own;
//! a second one ends the process at once, after printing what it leaves
//! undone and how to recover (what `study::way_out` recorded). The daemon
//! has its own `select!` over signals.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first Ctrl-C or SIGTERM (logging `message`);
/// ends the process on the second. Call inside the runtime.
pub(super) fn cancel_on_signals(token: CancellationToken, message: &'static str) {
    let terminate = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    tokio::spawn(async move {
        let (mut terminate, mut interrupt) = (terminate, interrupt);
        next_signal(&mut terminate, &mut interrupt).await;
        tracing::warn!("{message}");
        token.cancel();
        let code = next_signal(&mut terminate, &mut interrupt).await;
        eprintln!("{}", second_signal_text());
        // The user asked twice: nothing on the way out may keep the process.
        std::process::exit(code);
    });
}

/// Waits for SIGTERM or SIGINT; returns the exit code the shell gives a
/// process ended by it (128 + the signal's number).
async fn next_signal(terminate: &mut Option<Signal>, interrupt: &mut Option<Signal>) -> i32 {
    tokio::select! {
        () = received(terminate) => 128 + libc::SIGTERM,
        () = received(interrupt) => 128 + libc::SIGINT,
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

/// What the process says as it ends on a second signal.
fn second_signal_text() -> String {
    let undone = crate::study::way_out::undone().unwrap_or_else(|| {
        "left undone: stopping what this command started (a server it started may still run: stop it by hand)".into()
    });
    format!("servetune: a second signal: ending now, without finishing the way out.\n{undone}")
}
