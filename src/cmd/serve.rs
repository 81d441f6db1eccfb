//! `brief serve`: see [`brief::serve`].

use crate::cli::ServeArgs;
use anyhow::Result;
use brief::config::Config;
use brief::exit::Outcome;

pub(super) fn run(config: &Config, args: &ServeArgs) -> Result<Outcome> {
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.unsubscribe.listen.clone());
    brief::serve::run(config, &listen)?;
    Ok(Outcome::Done)
}
