//! `brief dispatch`, for cron or a systemd timer: sends (or resumes) every edition whose
//! `send_at` has passed and which is not complete, one at a time, oldest first.
//!
//! Quiet when there is nothing to do (cron mails any output). One dispatch at a time
//! (a lock beside the state store: a second one exits 75 at once, or waits with
//! `--wait`); each send also takes its edition's lock, as `brief send` does.
//! Exit 1 if an edition was refused (late, failing its checks) or its send failed;
//! else 75 if a manual `brief send` held an edition's lock; else 3 if recipients are
//! left for a later run (or a PostgreSQL store went away mid-send and stayed away:
//! nothing is lost, the next dispatch continues); else 0.

use crate::cli::DispatchArgs;
use crate::cmd::send;
use anyhow::{bail, Context, Result};
use brief::check;
use brief::clock;
use brief::config::Config;
use brief::deliver::lock;
use brief::deliver::notify::Notifier;
use brief::dispatch::{self, Progress};
use brief::exit::Outcome;
use brief::report;
use brief::send::{Execution, Request};
use brief::store::ReportKind;
use brief::store::{Store, REAL};
use std::fs::File;
use std::io::IsTerminal;

/// Name of the dispatch lock in the locks folder (a slug never starts with a dot).
const DISPATCH_LOCK: &str = ".dispatch";

pub(super) fn run(config: Config, args: DispatchArgs) -> Result<Outcome> {
    // A shared store (PostgreSQL): a second dispatch joins the sends of the first,
    // on this machine or another, instead of waiting for it.
    let _lock = if args.dry_run || config.state.url.is_some() {
        None
    } else {
        match dispatch_lock(&config, args.wait)? {
            Some(l) => Some(l),
            None => return Ok(Outcome::Locked),
        }
    };
    let now = clock::now();
    let editions_dir = config.editions_dir();
    let due: Vec<_> = dispatch::list(&config)
        .with_context(|| format!("cannot list the editions in {}", editions_dir.display()))?
        .into_iter()
        .filter(|e| e.send_at.is_some_and(|t| t <= now))
        .collect();
    if due.is_empty() {
        return Ok(Outcome::Done);
    }
    // A dry run writes nothing, not even a new state store.
    let store = if args.dry_run {
        Store::existing_for_config(&config)?
    } else {
        Some(Store::for_config(&config)?)
    };

    let notifier = Notifier::from_config(&config);
    let mut failed: Vec<String> = Vec::new();
    let mut locked = false;
    let mut incomplete = false;
    for listed in due {
        let slug = listed.slug.clone();
        let Some(send_at) = listed.send_at else {
            continue;
        };
        match dispatch::progress(store.as_ref(), &slug)? {
            Progress::Complete => continue,
            Progress::Incomplete => {
                let Some(store) = &store else { continue };
                // Started: resumed whatever its lateness (half an audience must not
                // be left without the edition the other half got). Nothing due now
                // (deferred not yet due, or only in doubt): leave it, quietly.
                if !store.any_due(&slug, REAL, now)? {
                    let c = store.counts(&slug, REAL)?;
                    incomplete |= !c.complete();
                    if !args.dry_run {
                        report::unreported(&config, &notifier, store, &slug);
                    }
                    continue;
                }
            }
            Progress::NotStarted => {
                let late = dispatch::lateness(send_at, now);
                if late > config.delivery.max_lateness && !args.allow_late {
                    let why = format!(
                        "send_at {} was {} ago, more than delivery.max_lateness ({})",
                        send_at.to_rfc3339(),
                        clock::format_duration(std::time::Duration::from_secs(late.as_secs())),
                        clock::format_duration(config.delivery.max_lateness)
                    );
                    eprintln!(
                        "{slug}: not sent: {why}; send it anyway with `brief dispatch --allow-late` (or `brief send --edition {slug}`), or remove its send_at"
                    );
                    if let (Some(store), false) = (&store, args.dry_run) {
                        report::refused(
                            &config,
                            &notifier,
                            store,
                            &slug,
                            ReportKind::Late,
                            "too late",
                            // No elapsed time here: the report is once per send_at.
                            &format!(
                                "Its send_at, {}, is more than delivery.max_lateness ({}) ago.\nTo send it anyway: brief dispatch --allow-late\nTo drop it from the schedule: remove send_at from {}",
                                send_at.to_rfc3339(),
                                clock::format_duration(config.delivery.max_lateness),
                                listed.path.display()
                            ),
                        );
                    }
                    failed.push(format!("{slug} (late)"));
                    continue;
                }
            }
        }

        // The same checks as `brief check --edition`, lists included.
        let path = listed.path.to_string_lossy().into_owned();
        let problems: Vec<String> = check::check(&config, Some(&path))
            .problems
            .iter()
            .filter(|p| p.is_error())
            .map(ToString::to_string)
            .collect();
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{slug}: not sent: it fails its checks ({} errors)",
                problems.len()
            );
            if let (Some(store), false) = (&store, args.dry_run) {
                report::refused(
                    &config,
                    &notifier,
                    store,
                    &slug,
                    ReportKind::Check,
                    "it fails its checks",
                    &problems.join("\n"),
                );
            }
            failed.push(format!("{slug} (fails its checks)"));
            continue;
        }
        if let (Some(store), false) = (&store, args.dry_run) {
            report::cleared(store, &slug, ReportKind::Check)
                .and_then(|()| report::cleared(store, &slug, ReportKind::Late))
                .with_context(|| format!("cannot write the state store {}", store.name()))?;
        }

        let request = Request {
            edition: path,
            dry_run: args.dry_run,
            progress: std::io::stderr().is_terminal(),
            ..Request::default()
        };
        let outcome = send::send(&config, request).and_then(|execution| match execution {
            Execution::Locked(_) => Ok(Outcome::Locked),
            Execution::Ran(report) => {
                send::print_report(&report, false, false)?;
                send::outcome(&report)
            }
        });
        match outcome.map_err(send::stopped_if_store_away) {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Incomplete) => incomplete = true,
            Ok(Outcome::Locked) => locked = true,
            // The database is gone: no later edition could be sent either.
            Err(e) if e.downcast_ref::<brief::exit::Stopped>().is_some() => {
                eprintln!("{slug}: {e:#}");
                incomplete = true;
                break;
            }
            Err(e) => {
                eprintln!("{slug}: {e:#}");
                failed.push(slug);
            }
        }
    }
    if !failed.is_empty() {
        bail!("not sent: {}", failed.join(", "));
    }
    Ok(if locked {
        Outcome::Locked
    } else if incomplete {
        Outcome::Incomplete
    } else {
        Outcome::Done
    })
}

/// The dispatch lock: `None` if another dispatch holds it (unless `wait`).
fn dispatch_lock(config: &Config, wait: bool) -> Result<Option<File>> {
    lock::acquire(&config.state_path(), DISPATCH_LOCK, wait)
}
