//! `brief preview --edition E [--listen ADDR]`: see [`crate::preview`].

use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::exit::Outcome;
use anyhow::Result;

pub fn run(config: &Config, args: &PreviewArgs) -> Result<Outcome> {
    crate::preview::run(config, &args.edition, &args.listen)?;
    Ok(Outcome::Done)
}
