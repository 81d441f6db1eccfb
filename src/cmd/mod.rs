//! One module per command. Each takes its parsed arguments and returns an [`Outcome`];
//! errors go up to `main`, which prints the chain once and exits 1.

/// `println!` that returns a failed write (a closed pipe) as an error instead of
/// panicking, so `main` can end quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod archive;
mod bounces;
pub(crate) mod build;
pub(crate) mod check;
mod correct;
mod dispatch;
mod doctor;
pub(crate) mod init;
mod preview;
mod report;
pub(crate) mod send;
mod serve;
pub(crate) mod status;
mod store;
mod subscribers;
mod suppress;

use crate::cli::{Cli, Command};
use anyhow::Result;
use brief::config::Config;
use brief::exit::Outcome;

pub(crate) fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Check(args) => with_config(&cli.config, |c| check::run(&c, args)),
        Command::Build(args) => with_config(&cli.config, |c| build::run(&c, args)),
        Command::Send(args) => with_config(&cli.config, |c| send::run(c, args)),
        Command::Dispatch(args) => with_config(&cli.config, |c| dispatch::run(c, args)),
        Command::Status(args) => with_config(&cli.config, |c| status::run(c, args)),
        Command::Serve(args) => with_config(&cli.config, |c| serve::run(&c, &args)),
        Command::Unsubscribe(args) => {
            with_config(&cli.config, |c| suppress::unsubscribe(&c, &args))
        }
        Command::Resubscribe(args) => {
            with_config(&cli.config, |c| suppress::resubscribe(&c, &args))
        }
        Command::Suppressions(args) => {
            with_config(&cli.config, |c| suppress::suppressions(&c, &args))
        }
        Command::Subscribers(args) => with_config(&cli.config, |c| subscribers::run(&c, args)),
        Command::Bounces(args) => with_config(&cli.config, |c| bounces::run(&c, &args)),
        Command::Archive(args) => with_config(&cli.config, |c| archive::run(&c, &args)),
        Command::Preview(args) => with_config(&cli.config, |c| preview::run(&c, &args)),
        Command::Correct(args) => with_config(&cli.config, |c| correct::run(&c, args)),
        Command::Doctor(args) => with_config(&cli.config, |c| doctor::run(&c, &args)),
        Command::Store(crate::cli::StoreCommand::Copy(args)) => {
            with_config(&cli.config, |c| store::copy(&c, &args))
        }
        Command::Report(crate::cli::ReportCommand::Sponsors(args)) => {
            with_config(&cli.config, |c| report::sponsors(&c, &args))
        }
    }
}

fn with_config(
    path: &std::path::Path,
    f: impl FnOnce(Config) -> Result<Outcome>,
) -> Result<Outcome> {
    f(Config::load(path)?)
}
