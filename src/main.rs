use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
