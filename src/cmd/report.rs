//! `brief report sponsors [--edition E | --since DATE] [--json | --csv | --html]`.
//! It closes the reporting windows that have ended before reading (docs/tracking.md).

use crate::cli::SponsorsArgs;
use anyhow::{Context, Result};
use brief::config::Config;
use brief::exit::{Outcome, UsageError};
use brief::store::{Location, Store};
use brief::tracking::report::{self, Selection};
use chrono::{DateTime, NaiveDate, Utc};

pub(crate) fn sponsors(config: &Config, args: &SponsorsArgs) -> Result<Outcome> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let selection = Selection {
        edition: args.edition.as_deref().map(super::status::slug_of),
        since,
    };
    // Reading closes the windows that ended, so the store is opened for writing, but
    // a report never creates one.
    let store = match config.state_location()? {
        Location::Sqlite(path) if !path.exists() => anyhow::bail!(
            "there is no state store at {} yet: nothing has been sent",
            path.display()
        ),
        _ => Store::for_config(config)?,
    };
    let report = report::build(config, &store, &selection, brief::clock::now())?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.csv {
        use std::io::Write as _;
        std::io::stdout()
            .lock()
            .write_all(report::csv(&report)?.as_bytes())?;
    } else if args.html {
        use std::io::Write as _;
        std::io::stdout()
            .lock()
            .write_all(report::html(&report, &config.newsletter.name).as_bytes())?;
    } else {
        use std::io::Write as _;
        std::io::stdout()
            .lock()
            .write_all(report::text(&report).as_bytes())?;
    }
    Ok(Outcome::Done)
}

/// `2026-11-20` (midnight UTC) or an RFC 3339 instant.
fn parse_since(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .context("midnight exists")?
            .and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            UsageError(format!(
                "--since `{s}` is not a date (2026-11-20) or an RFC 3339 time (2026-11-20T09:00:00Z)"
            ))
            .into()
        })
}
