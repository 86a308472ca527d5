//! What every command starts with: the log output (`-v`, `SERVETUNE_LOG`)
//! and, for the commands that talk to a server, the async runtime.

use anyhow::Context as _;

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "servetune=info",
        1 => "servetune=debug",
        _ => "servetune=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SERVETUNE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
