//! Report mails to the editors: when a send finishes or stops with recipients left,
//! and when `brief dispatch` refuses an edition (late, or failing its checks).
//!
//! Each report is sent once per state: the last reported state of every (edition,
//! kind) is kept in the state store, so a cron job that runs every five minutes does
//! not mail the same news every five minutes. Reports go through the delivery
//! transport (outbox files under `outbox/reports/`, or the SMTP relay), plain text,
//! From the newsletter, one message To each editor. A report that cannot be sent is
//! logged and never changes the outcome of the send it reports on.

use crate::audience::ListReader;
use crate::clock;
use crate::config::{Config, Transport as ConfigTransport};
use crate::deliver::{smtp, Report};
use crate::store::{Counts, Journal, SqliteStore, State, REAL};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use lettre::message::{header::ContentType, Mailbox};
use rusqlite::{params, OptionalExtension};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    edition  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    state    TEXT NOT NULL,
    sent_at  TEXT NOT NULL,
    PRIMARY KEY (edition, kind)
);";

/// What a report is about; one remembered state per edition and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// How a send went (finished, or stopped with recipients left).
    Send,
    /// The edition failed its checks and was not sent.
    Check,
    /// The edition was more than `max_lateness` late and was not sent.
    Late,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Check => "check",
            Kind::Late => "late",
        }
    }
}

/// At most this many addresses per list in one report.
const MAX_ADDRESSES: usize = 50;

/// After a real send: reports how it went, if this state was not reported yet.
/// Never fails: a report problem is logged.
pub fn after_send(config: &Config, store: &SqliteStore, report: &Report) {
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
    if let Err(e) = send_report(config, store, &run) {
        tracing::warn!(
            "{}: the report to the editors was not sent: {e:#}",
            report.edition
        );
    }
}

/// For a started edition that a run left alone (nothing due): reports its state if it
/// was never reported (a report that failed earlier, e.g. while the relay was down).
pub fn unreported(config: &Config, store: &SqliteStore, slug: &str) {
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
        send_report(config, store, &run)
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

fn send_report(config: &Config, store: &SqliteStore, run: &Run) -> Result<()> {
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
    if already_reported(store, slug, Kind::Send, &state)? {
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
    body.push('\n');
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
    mail_editors(config, slug, Kind::Send, &subject, &body)?;
    remember(store, slug, Kind::Send, &state)
}

/// Reports a refused edition (`Kind::Check` or `Kind::Late`) once per distinct
/// `details`. Returns whether a mail went out; failures are logged.
pub fn refused(
    config: &Config,
    store: &SqliteStore,
    slug: &str,
    kind: Kind,
    why: &str,
    details: &str,
) -> bool {
    if !config.delivery.report {
        return false;
    }
    let attempt = || -> Result<bool> {
        if already_reported(store, slug, kind, details)? {
            return Ok(false);
        }
        let subject = format!("[{}] {slug}: not sent, {why}", config.newsletter.name);
        let body = format!(
            "brief dispatch did not send edition {slug}: {why}.\n\n{details}\n\nIt will not be sent until this is fixed; this report is not repeated while nothing changes.\n"
        );
        mail_editors(config, slug, kind, &subject, &body)?;
        remember(store, slug, kind, details)?;
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
pub fn cleared(store: &SqliteStore, slug: &str, kind: Kind) -> Result<()> {
    store.connection().execute_batch(SCHEMA)?;
    store.connection().execute(
        "DELETE FROM reports WHERE edition = ?1 AND kind = ?2",
        params![slug, kind.as_str()],
    )?;
    Ok(())
}

fn already_reported(store: &SqliteStore, slug: &str, kind: Kind, state: &str) -> Result<bool> {
    let conn = store.connection();
    conn.execute_batch(SCHEMA)?;
    let last: Option<String> = conn
        .query_row(
            "SELECT state FROM reports WHERE edition = ?1 AND kind = ?2",
            params![slug, kind.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(last.as_deref() == Some(state))
}

fn remember(store: &SqliteStore, slug: &str, kind: Kind, state: &str) -> Result<()> {
    store.connection().execute(
        "INSERT INTO reports (edition, kind, state, sent_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (edition, kind) DO UPDATE SET state = excluded.state, sent_at = excluded.sent_at",
        params![
            slug,
            kind.as_str(),
            state,
            clock::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ],
    )?;
    Ok(())
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

/// One plain-text message To each editor, through the configured transport.
fn mail_editors(config: &Config, slug: &str, kind: Kind, subject: &str, body: &str) -> Result<()> {
    let from: Mailbox = config.newsletter.from.parse().context("newsletter.from")?;
    let now = clock::now();
    let stamp = now.format("%Y%m%dT%H%M%S%.6fZ").to_string();
    // Signed like the edition when the key loads (a bad key already stopped the send).
    let signer = config.dkim.as_ref().and_then(|d| {
        crate::deliver::dkim::Signer::load(d, |p| config.resolve(p))
            .map_err(|e| tracing::warn!("{slug}: the report is not DKIM-signed: {e:#}"))
            .ok()
    });
    let mut messages = Vec::new();
    for (i, to) in editors(config)?.into_iter().enumerate() {
        let message = lettre::Message::builder()
            .from(from.clone())
            .to(to.clone())
            .subject(subject)
            .date(now.into())
            .message_id(Some(format!(
                "<report.{slug}.{}.{stamp}.{i}@{}>",
                kind.as_str(),
                config.sender_domain()
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .context("cannot build the report")?;
        let mut bytes = message.formatted();
        if let Some(signer) = &signer {
            let mut signed = signer.sign([bytes.as_slice()], now.timestamp())?;
            signed.extend_from_slice(&bytes);
            bytes = signed;
        }
        messages.push((to.email.to_string(), bytes));
    }
    match config.delivery.transport {
        ConfigTransport::Outbox => {
            let dir = config.outbox_dir().join("reports");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (i, (_, bytes)) in messages.iter().enumerate() {
                let path = dir.join(format!("{slug}-{}-{stamp}-{i}.eml", kind.as_str()));
                std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
        ConfigTransport::Smtp => send_smtp(config, from.email.as_ref(), messages),
    }
}

fn send_smtp(config: &Config, from: &str, messages: Vec<(String, Vec<u8>)>) -> Result<()> {
    let settings = smtp::Settings::from_config(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut conn = smtp::Connection::open(&settings).await?;
        let mut refused = Vec::new();
        for (to, bytes) in &messages {
            let bytes = dot_stuffed(bytes);
            match conn
                .send(
                    &smtp::MailFrom {
                        address: from,
                        envid: None,
                    },
                    to,
                    std::iter::once(bytes.as_slice()),
                    async { true },
                )
                .await
            {
                smtp::Outcome::Accepted(_) => {}
                smtp::Outcome::Refused(r) => refused.push(format!("{to}: {r}")),
                other => refused.push(format!("{to}: {other:?}")),
            }
            if conn.broken {
                break;
            }
        }
        conn.quit().await;
        if refused.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("the relay did not take it: {}", refused.join("; ")))
        }
    })
}

/// SMTP's DATA ends at a line holding a lone dot: double every leading dot, and end
/// with CRLF.
fn dot_stuffed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut at_line_start = true;
    for &b in bytes {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(dot_stuffed(b".a\r\nb.\r\n..c"), b"..a\r\nb.\r\n...c\r\n");
    }

    #[test]
    fn a_state_is_remembered_per_edition_and_kind() {
        let s = SqliteStore::in_memory().unwrap();
        assert!(!already_reported(&s, "e1", Kind::Check, "x").unwrap());
        remember(&s, "e1", Kind::Check, "x").unwrap();
        assert!(already_reported(&s, "e1", Kind::Check, "x").unwrap());
        assert!(!already_reported(&s, "e1", Kind::Check, "y").unwrap());
        assert!(!already_reported(&s, "e1", Kind::Late, "x").unwrap());
        assert!(!already_reported(&s, "e2", Kind::Check, "x").unwrap());
        cleared(&s, "e1", Kind::Check).unwrap();
        assert!(!already_reported(&s, "e1", Kind::Check, "x").unwrap());
    }
}
