mod cli;
mod cmd;

use brief::diag::{Diagnostic, Diagnostics};
use brief::exit::{Outcome, Stopped, UsageError, ERROR, USAGE};
use clap::Parser;
use cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    if let Err(e) = brief::clock::check() {
        eprintln!("error: {e}");
        return ExitCode::from(USAGE);
    }
    match cmd::run(cli) {
        Ok(outcome) => outcome.into(),
        // A reader that stopped reading (`brief suppressions | head -1`) is not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // The error chain, once: "error: outer: cause: root cause". A located
            // diagnostic already reads "file:line:col: error: …".
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            let text = dedupe_chain(&chain).join(": ");
            if err.downcast_ref::<Diagnostic>().is_some()
                || err.downcast_ref::<Diagnostics>().is_some()
            {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(USAGE)
            } else if err.downcast_ref::<Stopped>().is_some() {
                Outcome::Incomplete.into()
            } else {
                ExitCode::from(ERROR)
            }
        }
    }
}

/// Whether the error is a write to a closed pipe (directly, or inside the CSV writer).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(broken)
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|e| matches!(e.kind(), csv::ErrorKind::Io(io) if broken(io)))
    })
}

/// Drops a cause whose text the previous message already contains (libraries often
/// repeat their source in their own Display).
fn dedupe_chain(chain: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for msg in chain {
        if out.last().is_some_and(|prev| prev.contains(msg.as_str())) {
            continue;
        }
        out.push(msg);
    }
    out
}

/// Logs go to stderr, plain (journald adds its own time stamps); `RUST_LOG` overrides.
fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("brief={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in journald or cron mail.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}
