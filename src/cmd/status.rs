//! `brief status`: per-edition counts from the journal. Reads only: a missing state
//! store means nothing was sent yet, and is not created.
//!
//! Without `--edition`, every edition in editions/ (and every send in the journal whose
//! file is gone) with its `send_at` and standing: unscheduled, scheduled, due, late,
//! sending, incomplete or complete (see `dispatch::Standing`).

use crate::cli::StatusArgs;
use anyhow::Result;
use brief::clock;
use brief::config::Config;
use brief::deliver::lock;
use brief::dispatch;
use brief::exit::{Outcome, UsageError};
use brief::store::{BounceCounts, Counts, State, Store, REAL, TEST};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use std::path::Path;

/// One edition's standing (the object `brief status --edition E --json` prints).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EditionStatus {
    pub edition: String,
    pub test: bool,
    /// When dispatch sends it (none: never by dispatch).
    pub send_at: Option<DateTime<FixedOffset>>,
    /// `unscheduled`, `scheduled`, `due`, `late`, `sending`, `incomplete` or
    /// `complete` (test sends: `not started` instead of the first four).
    pub state: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Recipients whose message bounced after the relay accepted it (`brief bounces`).
    pub bounced_async: u64,
    pub complained: u64,
    /// Addresses suppressed because of this edition's bounces and complaints.
    pub suppressed_by_bounces: u64,
    pub duplicates: u64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The status of one edition (real or test send), from an open store or none.
pub(crate) fn edition_status(
    store: Option<&Store>,
    config: &Config,
    slug: &str,
    send_at: Option<DateTime<FixedOffset>>,
    test: bool,
) -> Result<EditionStatus> {
    let state_path = config.state_path();
    let namespace = if test { TEST } else { REAL };
    let info = match store {
        Some(s) => s.send_info(slug, namespace)?,
        None => None,
    };
    let counts = match (store, &info) {
        (Some(s), Some(_)) => s.counts(slug, namespace)?,
        _ => Counts::default(),
    };
    let later = match (store, test) {
        (Some(s), false) => s.bounce_counts(slug)?,
        _ => BounceCounts::default(),
    };
    // Sending: the SQLite lock is held, or a shared store has live senders on it.
    let locked = lock::is_locked(&state_path, slug)
        || match store {
            Some(s) => s.senders_on(slug, namespace)? > 0,
            None => false,
        };
    let state = if test {
        if locked {
            "sending"
        } else if info.is_none() {
            "not started"
        } else if counts.complete() {
            "complete"
        } else {
            "incomplete"
        }
    } else {
        dispatch::standing(
            send_at,
            dispatch::progress(store, slug)?,
            locked,
            clock::now(),
            config.delivery.max_lateness,
        )
        .as_str()
    };
    Ok(EditionStatus {
        edition: slug.to_string(),
        test,
        send_at: if test { None } else { send_at },
        state: state.into(),
        counts,
        bounced_async: later.bounced,
        complained: later.complained,
        suppressed_by_bounces: later.suppressed,
        duplicates: info.as_ref().map_or(0, |i| i.duplicates),
        started_at: info.as_ref().map(|i| i.started_at),
        finished_at: info.and_then(|i| i.finished_at),
    })
}

/// The slug an `--edition` argument names: a slug as is, a path by its file stem.
pub(crate) fn slug_of(arg: &str) -> String {
    let p = Path::new(arg);
    if arg.contains('/') || arg.ends_with(".md") {
        p.file_stem()
            .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        arg.to_string()
    }
}

pub(crate) fn run(config: Config, args: StatusArgs) -> Result<Outcome> {
    let store = Store::existing_for_config(&config)?;
    let namespace = if args.test { TEST } else { REAL };
    if args.lists {
        let lists = list_counts(&config, store.as_ref())?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&lists)?);
        } else {
            print_lists(&lists)?;
        }
        return Ok(Outcome::Done);
    }
    if let Some(arg) = &args.edition {
        let slug = slug_of(arg);
        if let Some(which) = &args.recipients {
            let state = State::parse(which).ok_or_else(|| {
                UsageError(format!(
                    "--recipients: unknown state `{which}` (one of: {})",
                    State::ALL.map(State::as_str).join(", ")
                ))
            })?;
            let list = match &store {
                Some(s) => s.recipients(&slug, namespace, state)?,
                None => Vec::new(),
            };
            if args.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(a, r)| serde_json::json!({"address": a, "reply": r}))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (address, reply) in list {
                    outln!("{address}\t{}", reply.unwrap_or_default());
                }
            }
            return Ok(Outcome::Done);
        }
        let path = brief::edition::resolve(&config, arg);
        let send_at = brief::edition::load(&path).ok().and_then(|e| e.send_at);
        let status = edition_status(store.as_ref(), &config, &slug, send_at, args.test)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print_table(&[status])?;
        }
        return Ok(Outcome::Done);
    }
    let mut all = Vec::new();
    if !args.test {
        // Unreadable editions folder: the journal's sends are still worth showing.
        for e in dispatch::list(&config).unwrap_or_default() {
            all.push(edition_status(
                store.as_ref(),
                &config,
                &e.slug,
                e.send_at,
                false,
            )?);
        }
    }
    if let Some(s) = &store {
        for info in s.sends()? {
            if info.namespace == namespace && !all.iter().any(|e| e.edition == info.edition) {
                all.push(edition_status(
                    Some(s),
                    &config,
                    &info.edition,
                    None,
                    args.test,
                )?);
            }
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        outln!(
            "no {}",
            if args.test {
                "test sends yet"
            } else {
                "editions"
            }
        );
    } else {
        print_table(&all)?;
    }
    if !args.json && !args.test && !config.lists.is_empty() {
        outln!();
        print_lists(&list_counts(&config, store.as_ref())?)?;
    }
    Ok(Outcome::Done)
}

/// One managed list's counts (`brief status --lists --json`).
#[derive(Debug, Serialize)]
struct ListStatus {
    list: String,
    title: String,
    public: bool,
    #[serde(flatten)]
    counts: brief::store::ListCounts,
}

fn list_counts(config: &Config, store: Option<&Store>) -> Result<Vec<ListStatus>> {
    let store = store.filter(|s| s.manages_lists());
    config
        .lists
        .iter()
        .map(|(name, l)| {
            Ok(ListStatus {
                list: name.clone(),
                title: l.title.clone(),
                public: l.public,
                counts: match store {
                    Some(s) => s.list_counts(name, clock::now())?,
                    None => Default::default(),
                },
            })
        })
        .collect()
}

fn print_lists(lists: &[ListStatus]) -> Result<()> {
    let width = lists.iter().map(|l| l.list.len()).max().unwrap_or(0).max(4);
    outln!("{:<width$}  CONFIRMED  PENDING", "LIST");
    for l in lists {
        outln!(
            "{:<width$}  {:<9}  {}",
            l.list,
            l.counts.confirmed,
            l.counts.pending
        );
    }
    Ok(())
}

fn print_table(rows: &[EditionStatus]) -> Result<()> {
    let header = [
        "EDITION",
        "SEND_AT",
        "STATE",
        "SENT",
        "DEFERRED",
        "BOUNCED",
        "BOUNCED_LATER",
        "COMPLAINED",
        "IN_DOUBT",
        "SUPPRESSED",
        "INVALID",
        "PENDING",
        "EXPIRED",
        "NEXT_RETRY",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let c = &r.counts;
        table.push(vec![
            r.edition.clone(),
            r.send_at.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
            r.state.clone(),
            c.sent.to_string(),
            c.deferred.to_string(),
            c.bounced.to_string(),
            r.bounced_async.to_string(),
            r.complained.to_string(),
            c.in_doubt.to_string(),
            c.suppressed.to_string(),
            c.invalid.to_string(),
            c.pending.to_string(),
            c.expired.to_string(),
            c.next_retry.map_or_else(
                || "-".into(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
    Ok(())
}
