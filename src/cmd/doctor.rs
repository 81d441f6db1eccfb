//! `brief doctor [--online] [--nameserver ADDR:PORT] [--json]`: see [`brief::doctor`].
//! Prints every finding; exit 1 if any is an error.

use crate::cli::DoctorArgs;
use anyhow::{bail, Context, Result};
use brief::config::Config;
use brief::doctor::{self, Options, Status};
use brief::exit::Outcome;
use std::io::Write;

pub(super) fn run(config: &Config, args: &DoctorArgs) -> Result<Outcome> {
    let options = Options {
        nameserver: args.nameserver,
        online: args.online,
    };
    let findings = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(doctor::examine(config, &options))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            outln!("{f}");
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    let (errors, warnings) = (count(Status::Error), count(Status::Warning));
    if !args.json {
        outln!("doctor: {errors} error(s), {warnings} warning(s)");
    }
    std::io::stdout().flush()?;
    if errors > 0 {
        bail!("doctor found {errors} error(s)");
    }
    Ok(Outcome::Done)
}
