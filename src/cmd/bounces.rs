//! `brief bounces --from-maildir DIR | --from-mbox FILE [--dry-run] [--json]`: reads
//! the bounce mailbox, classifies every message, attributes it to a send and applies
//! the `[bounces]` policy (see `brief::bounce::policy`).
//!
//! Messages are read in batches: a batch is parsed and attributed with no write lock,
//! then applied in one short transaction, then printed, and only then moved to `cur/`
//! (a crash in between re-reads messages whose events are already keyed: nothing
//! counts twice).

use crate::cli::BouncesArgs;
use anyhow::Result;
use brief::bounce::mailbox::{MailMessage, Maildir, Mbox};
use brief::bounce::policy::{self, Applied, Event};
use brief::bounce::{self, Finding, Kind};
use brief::config::Config;
use brief::exit::{Outcome, UsageError};
use brief::store::Store;

/// Messages parsed before each write transaction.
const BATCH: usize = 500;

/// One finding of a batch, with what attribution found.
struct Line {
    finding: Finding,
    /// (edition, address as sent).
    send: Option<(String, String)>,
    key: String,
}

/// One message of a batch: the message (its raw bytes dropped) and its findings.
struct Parsed {
    msg: MailMessage,
    lines: Vec<Line>,
}

#[derive(Default)]
struct Tally {
    messages: usize,
    findings: usize,
    applied: usize,
    suppressed: usize,
    unattributed: usize,
}

pub(super) fn run(config: &Config, args: &BouncesArgs) -> Result<Outcome> {
    if args.from_maildir.is_none() && args.from_mbox.is_none() {
        return Err(UsageError("give --from-maildir DIR or --from-mbox FILE".into()).into());
    }
    // A dry run only reads: no store is created, none is written.
    let store = if args.dry_run {
        Store::existing_for_config(config)?
    } else {
        Some(Store::for_config(config)?)
    };
    let mut run = Run {
        config,
        args,
        store: store.as_ref(),
        tally: Tally::default(),
    };
    if let Some(dir) = &args.from_maildir {
        let maildir = Maildir::open(dir)?;
        let mut batch = Vec::new();
        for item in maildir.new_messages()? {
            match item {
                Ok(msg) => batch.push(msg),
                Err(err) => tracing::warn!("{err:#}"),
            }
            if batch.len() == BATCH {
                run.batch(std::mem::take(&mut batch), Some(&maildir))?;
            }
        }
        run.batch(batch, Some(&maildir))?;
    }
    if let Some(file) = &args.from_mbox {
        let mut mbox = Mbox::open(file)?;
        let mut batch = Vec::new();
        while let Some(msg) = mbox.next_message()? {
            batch.push(msg);
            if batch.len() == BATCH {
                run.batch(std::mem::take(&mut batch), None)?;
            }
        }
        run.batch(batch, None)?;
    }
    let t = &run.tally;
    if !args.json {
        outln!(
            "{} message(s), {} finding(s): {} applied, {} address(es) suppressed, {} not attributed to a send{}",
            t.messages,
            t.findings,
            t.applied,
            t.suppressed,
            t.unattributed,
            if args.dry_run { " (dry run: nothing changed)" } else { "" }
        );
    }
    Ok(Outcome::Done)
}

struct Run<'a> {
    config: &'a Config,
    args: &'a BouncesArgs,
    store: Option<&'a Store>,
    tally: Tally,
}

impl Run<'_> {
    fn batch(&mut self, messages: Vec<MailMessage>, maildir: Option<&Maildir>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut parsed = Vec::with_capacity(messages.len());
        for mut msg in messages {
            let report = bounce::read_report(&msg.raw, msg.truncated);
            let mut lines = Vec::with_capacity(report.findings.len());
            for finding in &report.findings {
                let send = match self.store {
                    Some(store) => policy::attribute(store, &report, finding)?,
                    None => None,
                };
                let recipient = send
                    .as_ref()
                    .map(|(_, a)| a.as_str())
                    .or(finding.recipient.as_deref())
                    .unwrap_or("");
                lines.push(Line {
                    key: policy::message_key(&msg.raw, recipient),
                    finding: finding.clone(),
                    send,
                });
            }
            msg.raw = Vec::new();
            parsed.push(Parsed { msg, lines });
        }
        let applied = self.apply(&parsed)?;
        for (p, applied) in parsed.iter().zip(&applied) {
            self.tally.messages += 1;
            for (line, applied) in p.lines.iter().zip(applied) {
                self.print(&p.msg.source, line, *applied)?;
            }
        }
        if let (Some(maildir), false) = (maildir, self.args.dry_run) {
            for p in &parsed {
                maildir.mark_processed(&p.msg)?;
            }
        }
        Ok(())
    }

    /// One transaction for the whole batch (none for a dry run).
    fn apply(&mut self, parsed: &[Parsed]) -> Result<Vec<Vec<Option<Applied>>>> {
        let policy = self.config.bounces;
        let apply_all = |store: &Store| -> Result<Vec<Vec<Option<Applied>>>> {
            let mut out = Vec::with_capacity(parsed.len());
            for p in parsed {
                let mut per = Vec::with_capacity(p.lines.len());
                for line in &p.lines {
                    let Some((edition, address)) = &line.send else {
                        per.push(None);
                        continue;
                    };
                    let f = &line.finding;
                    per.push(Some(policy::apply(
                        store,
                        &policy,
                        &Event {
                            kind: f.kind,
                            address,
                            edition,
                            status: f.status.as_deref(),
                            diagnostic: f.diagnostic.as_deref(),
                            key: &line.key,
                        },
                    )?));
                }
                out.push(per);
            }
            Ok(out)
        };
        match self.store {
            Some(store) if !self.args.dry_run => store.transaction(apply_all),
            _ => Ok(parsed.iter().map(|p| vec![None; p.lines.len()]).collect()),
        }
    }

    fn print(&mut self, source: &str, line: &Line, applied: Option<Applied>) -> Result<()> {
        let f = &line.finding;
        let edition = line.send.as_ref().map(|(e, _)| e.as_str());
        let counted = applied.is_some_and(Applied::counted);
        self.tally.findings += 1;
        self.tally.applied += usize::from(counted);
        self.tally.suppressed += usize::from(applied == Some(Applied::Suppressed));
        let countable = matches!(f.kind, Kind::Hard | Kind::Soft | Kind::Complaint);
        self.tally.unattributed += usize::from(countable && line.send.is_none());
        if self.args.json {
            outln!("{}", f.to_json_line(source, edition, counted));
            return Ok(());
        }
        let what = match applied {
            Some(Applied::Suppressed) => "suppressed",
            Some(Applied::Counted) => "counted",
            Some(Applied::Duplicate) => "seen before",
            Some(Applied::NotSent) => "not sent to this address",
            Some(Applied::NotCounted) => "not counted",
            None if self.args.dry_run => "dry run",
            None if countable => "not attributed to a send",
            None => "not counted",
        };
        outln!(
            "{source}: {} {} {} (edition {}): {what}",
            f.kind.as_str(),
            f.recipient.as_deref().unwrap_or("-"),
            f.status.as_deref().unwrap_or("-"),
            edition.unwrap_or("-"),
        );
        Ok(())
    }
}
