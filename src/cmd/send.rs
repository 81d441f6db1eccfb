//! `brief send`: compile the edition once, freeze its audience into the journal (or
//! resume), deliver, and report ([`brief::send`] does the work). Exit 0 when every
//! recipient is settled, 3 when deferred or in-doubt recipients remain, 75 when another
//! send holds the lock, 1 when the relay refuses or keeps losing the session. A
//! PostgreSQL store that goes away mid-send for longer than brief waits for it stops
//! the run with exit 3: nothing is lost, a later run continues.

use crate::cli::SendArgs;
use anyhow::{bail, Result};
use brief::config::Config;
use brief::deliver::Report;
use brief::exit::{self, Outcome, Stopped};
use brief::send::{Execution, Plan, Request};
use std::io::IsTerminal;

pub(crate) fn run(config: Config, args: SendArgs) -> Result<Outcome> {
    let json = args.json;
    let resend_in_doubt = args.resend_in_doubt;
    let request = Request {
        edition: args.edition,
        test: args.test,
        to: args.to,
        resend_in_doubt,
        dry_run: args.dry_run,
        progress: std::io::stderr().is_terminal() && !json,
    };
    match send(&config, request).map_err(stopped_if_store_away)? {
        Execution::Locked(_) => Ok(Outcome::Locked),
        Execution::Ran(report) => {
            print_report(&report, json, resend_in_doubt)?;
            outcome(&report)
        }
    }
}

/// Prepares and runs one send, showing compile warnings and a held lock on stderr
/// (`brief dispatch` sends through here too).
pub(crate) fn send(config: &Config, request: Request) -> Result<Execution> {
    let plan = Plan::prepare(config, request)?;
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    let slug = plan.slug().to_string();
    let execution = plan.execute()?;
    if let Execution::Locked(lock) = &execution {
        eprintln!(
            "another `brief send` of {slug} is running (lock {}); not starting",
            lock.display()
        );
    }
    Ok(execution)
}

/// A database that went away mid-send and stayed away: every mark was committed
/// before its message went out, so the run stopped with nothing lost (exit 3).
pub(crate) fn stopped_if_store_away(e: anyhow::Error) -> anyhow::Error {
    let Some(away) = exit::store_away(&e) else {
        return e;
    };
    let why = format!(
        "the send stopped: the state store {} went away and stayed away longer than brief waits for it ({}s); nothing is lost: run it again once the database is back and it continues where this one stopped (recipients in doubt stay held)",
        away.name, away.waited_secs
    );
    e.context(Stopped(why))
}

/// The exit of a run: the relay refusing the session is an error (after the report).
pub(crate) fn outcome(report: &Report) -> Result<Outcome> {
    if let Some(why) = &report.session_failure {
        bail!("the send stopped: {why}");
    }
    Ok(if report.dry_run || report.counts.complete() {
        Outcome::Done
    } else {
        Outcome::Incomplete
    })
}

pub(crate) fn print_report(r: &Report, json: bool, resend_in_doubt: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let c = &r.counts;
    let what = match (r.test, r.dry_run) {
        (true, true) => " (test send, dry run)",
        (true, false) => " (test send)",
        (false, true) => " (dry run: nothing sent, nothing recorded)",
        (false, false) => "",
    };
    if r.nothing_due {
        if c.complete() {
            outln!("{}{what}: complete, nothing to send.", r.edition);
        } else {
            outln!("{}{what}: nothing due now.", r.edition);
        }
    } else if r.dry_run {
        outln!("{}{what}: {} messages rendered.", r.edition, r.attempted);
    }
    // A dry run hands nothing to a relay: its "sent" messages were only rendered.
    let handed = if r.dry_run { "rendered" } else { "sent" };
    let mut line = format!(
        "{}{what}: {} {handed}, {} deferred",
        r.edition, c.sent, c.deferred
    );
    if let Some(t) = c.next_retry {
        line.push_str(&format!(
            " (next attempt {})",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    line.push_str(&format!(
        ", {} bounced, {} in doubt, {} suppressed, {} invalid, {} expired, {} pending",
        c.bounced, c.in_doubt, c.suppressed, c.invalid, c.expired, c.pending
    ));
    outln!("{line}");
    if r.duplicates > 0 {
        outln!(
            "{} duplicate addresses in the lists were counted once.",
            r.duplicates
        );
    }
    if !r.in_doubt_addresses.is_empty() {
        let more = c.in_doubt.saturating_sub(r.in_doubt_addresses.len() as u64);
        let hint = if resend_in_doubt {
            ""
        } else {
            "; held, resend with --resend-in-doubt"
        };
        outln!(
            "in doubt (the relay may have delivered these{hint}): {}{}",
            r.in_doubt_addresses.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if let Some(s) = &r.stopped {
        outln!("stopped: {s}");
    }
    Ok(())
}
