//! `vswitchd`: parse the command line, validate it, run the instance.
//! Wiring only; see the library crate for everything else.

use clap::CommandFactory;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt, reload};
use vswitchd::config::Cli;

fn main() -> ExitCode {
    fixed_mmap_threshold();
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
    // The filter can be swapped at run time (`vswitchctl log-level`).
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                // Colour only for a person at a terminal, not into log files.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    let log = vswitchd::control::LogControl(std::sync::Arc::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| format!("log level {level}: {e}"))?;
        handle
            .reload(f)
            .map_err(|e| format!("log level {level}: {e}"))
    }));

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
    match vswitchd::daemon::run(cfg, Some(log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Large blocks (128 KiB and more: a capture's buffer as it grows, the
/// tables' arrays) are mmapped and unmapped when freed, for the whole run.
/// glibc's default threshold moves: the first such block freed raises it to
/// that block's size, and later blocks below it come from the heap, which
/// keeps them resident once freed (in the soak, a capture's 4 MiB buffer
/// left 6 MB so held and RSS 3.3 MB higher for good). Setting it fixes it.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter (under its lock);
    // nothing else runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
