//! `brief serve`: see [`crate::serve`].

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::exit::Outcome;
use anyhow::Result;

pub fn run(config: &Config, args: &ServeArgs) -> Result<Outcome> {
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.unsubscribe.listen.clone());
    crate::serve::run(config, &listen)?;
    Ok(Outcome::Done)
}
