//! Ctrl-C and SIGTERM for the commands that move a server (`tune`,
//! `worker`, `bench`, `compare`): the first signal cancels the command's
//! token, so it stops its load, puts the server back and exits on its own;
//! a second one ends the process at once, after printing what it leaves
//! undone and how to recover (what `study::way_out` recorded). The daemon
//! reads the same `signals::StopSignals` in its own `select!`.

use tokio_util::sync::CancellationToken;

use crate::signals::StopSignals;

/// Cancels `token` on the first Ctrl-C or SIGTERM (logging `message`);
/// ends the process on the second. Call inside the runtime.
pub(super) fn cancel_on_signals(token: CancellationToken, message: &'static str) {
    let mut signals = StopSignals::install();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::warn!("{message}");
        token.cancel();
        let code = signals.recv().await;
        eprintln!("{}", second_signal_text());
        // The user asked twice: nothing on the way out may keep the process.
        std::process::exit(code);
    });
}

/// What the process says as it ends on a second signal.
fn second_signal_text() -> String {
    let undone = crate::study::exit_steps::undone().unwrap_or_else(|| {
        "left undone: stopping what this command started (a server it started may still run: stop it by hand)".into()
    });
    format!("servetune: a second signal: ending now, without finishing the way out.\n{undone}")
}
