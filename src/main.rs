//! `vswitchd`: parse the command line, validate it, run the instance.
//! Wiring only; see the library crate for everything else.

use clap::CommandFactory;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use vswitchd::config::Cli;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let (cli, origins) = match Cli::parse_with_file(&matches) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vswitchd: error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not into log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cfg = match cli.into_config().map_err(|e| origins.locate(e)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vswitchd: error: {e}");
            return ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "vswitchd: error: must run as root (it creates network namespaces and TAP devices)"
        );
        return ExitCode::from(1);
    }
    match vswitchd::daemon::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: error: {e}");
            ExitCode::from(1)
        }
    }
}
