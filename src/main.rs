use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `servetune bench … | head`: a closed stdout ends the output quietly, as
    // for any Unix tool, instead of a panic in println!. Sockets are not
    // affected (Rust sends with MSG_NOSIGNAL).
    // SAFETY: restoring the default disposition of one signal, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Fault injection for the tests (`--features failpoints`, `FAILPOINTS=…`).
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let args = servetune::cli::Args::parse();
    match servetune::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("servetune: {error:#}");
            ExitCode::FAILURE
        }
    }
}
