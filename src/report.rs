//! Report mails to the editors: when a send finishes or stops with recipients left,
//! and when `brief dispatch` refuses an edition (late, or failing its checks).
//!
//! Each report is sent once per state: the last reported state of every (edition,
//! kind) is kept in the state store, so a cron job that runs every five minutes does
//! not mail the same news every five minutes. This module decides what to say and to
//! whom; `deliver::notify` sends it the way the editions go (plain text, From the
//! newsletter, one message To each editor). A report that cannot be sent is
//! logged and never changes the outcome of the send it reports on.

use crate::audience::ListReader;
use crate::clock;
use crate::config::Config;
use crate::deliver::notify::{Notice, Notifier};
use crate::deliver::Report;
use crate::store::{Counts, ReportKind, State, Store, REAL};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

/// At most this many addresses per list in one report.
const MAX_ADDRESSES: usize = 50;

/// After a real send: reports how it went, if this state was not reported yet.
/// Never fails: a report problem is logged.
pub fn after_send(config: &Config, notifier: &Notifier, store: &Store, report: &Report) {
    if !config.delivery.report || report.test || report.dry_run {
        return;
    }
    let run = Run {
        slug: &report.edition,
        counts: &report.counts,
        started_at: report.started_at,
        finished_at: report.finished_at,
        stopped: report.stopped.as_ref().or(report.session_failure.as_ref()),
    };
    if let Err(e) = send_report(config, notifier, store, &run) {
        tracing::warn!(
            "{}: the report to the editors was not sent: {e:#}",
            report.edition
        );
    }
}

/// For a started edition that a run left alone (nothing due): reports its state if it
/// was never reported (a report that failed earlier, e.g. while the relay was down).
pub fn unreported(config: &Config, notifier: &Notifier, store: &Store, slug: &str) {
    if !config.delivery.report {
        return;
    }
    let attempt = || -> Result<()> {
        let Some(info) = store.send_info(slug, REAL)? else {
            return Ok(());
        };
        let counts = store.counts(slug, REAL)?;
        let run = Run {
            slug,
            counts: &counts,
            started_at: Some(info.started_at),
            finished_at: info.finished_at,
            stopped: None,
        };
        send_report(config, notifier, store, &run)
    };
    if let Err(e) = attempt() {
        tracing::warn!("{slug}: the report to the editors was not sent: {e:#}");
    }
}

/// What a send report tells.
struct Run<'a> {
    slug: &'a str,
    counts: &'a Counts,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    stopped: Option<&'a String>,
}

fn send_report(config: &Config, notifier: &Notifier, store: &Store, run: &Run) -> Result<()> {
    let slug = run.slug;
    let c = run.counts;
    let finished = c.complete() && run.stopped.is_none();
    let state = format!(
        "{} sent={} deferred={} bounced={} in_doubt={} expired={} suppressed={} pending={}",
        if finished { "complete" } else { "incomplete" },
        c.sent,
        c.deferred,
        c.bounced,
        c.in_doubt,
        c.expired,
        c.suppressed,
        c.pending
    );
    if !claim(store, slug, ReportKind::Send, &state)? {
        return Ok(());
    }
    let subject = format!(
        "[{}] {slug}: {}, {} sent, {} bounced{}",
        config.newsletter.name,
        if finished { "complete" } else { "incomplete" },
        c.sent,
        c.bounced,
        if c.in_doubt > 0 {
            format!(", {} in doubt", c.in_doubt)
        } else {
            String::new()
        }
    );
    let mut body = String::new();
    body.push_str(&format!(
        "Edition {slug}: {}.\n\n",
        if finished {
            "every recipient is settled"
        } else {
            "the send stopped with recipients left; a later run continues"
        }
    ));
    for (label, n) in [
        ("sent", c.sent),
        ("deferred", c.deferred),
        ("bounced", c.bounced),
        ("in doubt", c.in_doubt),
        ("expired", c.expired),
        ("suppressed", c.suppressed),
        ("invalid rows", c.invalid),
        ("pending", c.pending),
    ] {
        body.push_str(&format!("{label:>13}: {n}\n"));
    }
    // Bounces after acceptance arrive later (`brief bounces`, provider webhooks).
    let later = store.bounce_counts(slug)?;
    body.push_str(&format!(
        "\nBounced after acceptance so far: {}\nComplaints: {}\nSuppressed by bounces and complaints: {}\n\n",
        later.bounced, later.complained, later.suppressed
    ));
    if let Some(started) = run.started_at {
        let end = run.finished_at.unwrap_or_else(clock::now);
        let took = (end - started).to_std().unwrap_or_default();
        body.push_str(&format!(
            "Started {}, {} {}.\n",
            started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if run.finished_at.is_some() {
                "took"
            } else {
                "running for"
            },
            clock::format_duration(took)
        ));
    }
    if let Some(t) = c.next_retry {
        body.push_str(&format!(
            "Next retry of deferred recipients: {}.\n",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if let Some(why) = run.stopped {
        body.push_str(&format!("Stopped: {why}\n"));
    }
    let resend = format!(
        " (the relay may have delivered these;\nresend them with: brief send --edition {slug} --resend-in-doubt)"
    );
    for (state, title, hint) in [
        (State::Bounced, "Bounced", ""),
        (State::InDoubt, "In doubt", resend.as_str()),
        (
            State::Expired,
            "Expired",
            " (deferred for longer than give_up_after)",
        ),
    ] {
        let list = store.recipients(slug, REAL, state)?;
        if list.is_empty() {
            continue;
        }
        body.push_str(&format!("\n{title}{hint}:\n"));
        for (address, reply) in list.iter().take(MAX_ADDRESSES) {
            match reply {
                Some(r) => body.push_str(&format!("  {address}  {r}\n")),
                None => body.push_str(&format!("  {address}\n")),
            }
        }
        if list.len() > MAX_ADDRESSES {
            body.push_str(&format!(
                "  … and {} more: brief status --edition {slug} --recipients {}\n",
                list.len() - MAX_ADDRESSES,
                state.as_str()
            ));
        }
    }
    mail_or_unclaim(
        store,
        slug,
        ReportKind::Send,
        mail_editors(config, notifier, slug, ReportKind::Send, &subject, &body),
    )
}

/// Reports a refused edition (`ReportKind::Check` or `ReportKind::Late`) once per distinct
/// `details`. Returns whether a mail went out; failures are logged.
pub fn refused(
    config: &Config,
    notifier: &Notifier,
    store: &Store,
    slug: &str,
    kind: ReportKind,
    why: &str,
    details: &str,
) -> bool {
    if !config.delivery.report {
        return false;
    }
    let attempt = || -> Result<bool> {
        if !claim(store, slug, kind, details)? {
            return Ok(false);
        }
        let subject = format!("[{}] {slug}: not sent, {why}", config.newsletter.name);
        let body = format!(
            "brief dispatch did not send edition {slug}: {why}.\n\n{details}\n\nIt will not be sent until this is fixed; this report is not repeated while nothing changes.\n"
        );
        let mailed = mail_editors(config, notifier, slug, kind, &subject, &body);
        mail_or_unclaim(store, slug, kind, mailed)?;
        Ok(true)
    };
    match attempt() {
        Ok(sent) => sent,
        Err(e) => {
            tracing::warn!("{slug}: the report to the editors was not sent: {e:#}");
            false
        }
    }
}

/// Forgets a refusal once the edition is fine again, so a later identical failure is
/// reported again.
pub fn cleared(store: &Store, slug: &str, kind: ReportKind) -> Result<()> {
    store.forget_report(slug, kind)
}

/// Remembers `state` as reported before the mail goes out; false when it already was.
/// With a shared store several senders finish the same send: the one whose claim
/// lands mails the editors, the others do not.
fn claim(store: &Store, slug: &str, kind: ReportKind, state: &str) -> Result<bool> {
    store.remember_report(slug, kind, state, clock::now())
}

/// A report that could not be mailed is not remembered, so a later run sends it.
fn mail_or_unclaim(store: &Store, slug: &str, kind: ReportKind, mailed: Result<()>) -> Result<()> {
    if mailed.is_err() {
        store.forget_report(slug, kind)?;
    }
    mailed
}

/// The editors list: every valid address in `subscribers/<editors>.csv`.
fn editors(config: &Config) -> Result<Vec<Mailbox>> {
    let path = config.list_path(&config.newsletter.editors);
    let mut reader = ListReader::open(&path)?;
    let mut out = Vec::new();
    while let Some(row) = reader.next_row() {
        if let Ok(s) = row {
            let name = (!s.name.is_empty()).then(|| s.name.clone());
            out.push(Mailbox::new(name, s.email.parse()?));
        }
    }
    if out.is_empty() {
        bail!("{} has no valid address", path.display());
    }
    Ok(out)
}

/// One plain-text message To each editor.
fn mail_editors(
    config: &Config,
    notifier: &Notifier,
    slug: &str,
    kind: ReportKind,
    subject: &str,
    body: &str,
) -> Result<()> {
    notifier.send(&Notice {
        to: &editors(config)?,
        subject,
        body,
        tag: &format!("report.{slug}.{}", kind.as_str()),
    })
}
