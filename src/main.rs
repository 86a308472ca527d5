use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = servetune::cli::Args::parse();
    match servetune::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("servetune: {error:#}");
            ExitCode::FAILURE
        }
    }
}
