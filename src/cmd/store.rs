//! `brief store copy --to URL|PATH`: moves the configured state (every table) into
//! another store, SQLite → PostgreSQL or back, so a newsroom can switch engines without
//! losing history or suppressions. The target must be empty unless `--replace`.

use crate::cli::StoreCopyArgs;
use anyhow::{bail, Result};
use brief::config::Config;
use brief::exit::{Outcome, UsageError};
use brief::store::{Location, Store};
use std::path::PathBuf;

pub(crate) fn copy(config: &Config, args: &StoreCopyArgs) -> Result<Outcome> {
    let source_location = config.state_location()?;
    let target_location = if args.to.contains("://") {
        brief::store::check_url(&args.to).map_err(|why| UsageError(format!("--to {why}")))?;
        let password_env = args
            .password_env
            .as_ref()
            .or(config.state.password_env.as_ref());
        let password = match password_env {
            Some(name) => Some(std::env::var(name).map_err(|_| {
                UsageError(format!("--password-env names ${name}, which is not set"))
            })?),
            None => None,
        };
        Location::Postgres {
            url: args.to.clone(),
            password,
        }
    } else {
        Location::Sqlite(PathBuf::from(&args.to))
    };
    if same(&source_location, &target_location) {
        bail!("--to names the configured store itself: nothing to copy");
    }
    if Store::existing_for_config(config)?.is_none() {
        bail!("the configured state store holds nothing yet: nothing to copy");
    }
    // Writable: the copy reads in one write transaction, so no sender changes the
    // source meanwhile.
    let source = Store::for_config(config)?;
    let target = Store::connect(&target_location)?;
    let copied = source.copy_to(&target, args.replace)?;
    for (table, rows) in &copied {
        outln!("{table}: {rows}");
    }
    outln!("copied {} to {}", source.name(), target.name());
    Ok(Outcome::Done)
}

fn same(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Sqlite(a), Location::Sqlite(b)) => {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        }
        (Location::Postgres { url: a, .. }, Location::Postgres { url: b, .. }) => a == b,
        _ => false,
    }
}
