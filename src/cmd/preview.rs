//! `brief preview --edition E [--listen ADDR]`: see [`brief::preview`].

use crate::cli::PreviewArgs;
use anyhow::Result;
use brief::config::Config;
use brief::exit::Outcome;

pub(super) fn run(config: &Config, args: &PreviewArgs) -> Result<Outcome> {
    brief::preview::run(config, &args.edition, &args.listen)?;
    Ok(Outcome::Done)
}
