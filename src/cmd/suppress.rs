//! `brief unsubscribe`, `brief resubscribe` and `brief suppressions`: the suppression
//! list by hand, from mail sent to the `mailto` address, and as an export.

use crate::cli::{ResubscribeArgs, SuppressionsArgs, UnsubscribeArgs};
use anyhow::{bail, Result};
use brief::clock;
use brief::config::Config;
use brief::exit::{Outcome, UsageError};
use brief::mailto;
use brief::store::{Store, Suppression, SuppressionSource};
use brief::token::Keyring;

pub(super) fn unsubscribe(config: &Config, args: &UnsubscribeArgs) -> Result<Outcome> {
    if args.addresses.is_empty() && args.from_maildir.is_none() && args.from_mbox.is_none() {
        return Err(UsageError(
            "give the addresses to unsubscribe, or --from-maildir DIR, or --from-mbox FILE".into(),
        )
        .into());
    }
    // Validate every address before changing anything.
    let invalid: Vec<&str> = args
        .addresses
        .iter()
        .map(|a| a.trim())
        .filter(|a| a.parse::<lettre::Address>().is_err())
        .collect();
    if !invalid.is_empty() {
        bail!(
            "not a valid email address: {} (nothing was changed)",
            invalid.join(", ")
        );
    }
    let store = Store::for_config(config)?;
    if !args.addresses.is_empty() {
        store.transaction(|store| {
            for address in &args.addresses {
                let new = store.suppress(&Suppression {
                    address: address.trim().to_string(),
                    suppressed_at: clock::now(),
                    source: SuppressionSource::Manual,
                    edition: None,
                })?;
                if new {
                    outln!("unsubscribed {}", address.trim());
                } else {
                    outln!("{} was already unsubscribed", address.trim());
                }
            }
            Ok(())
        })?;
    }
    let mut messages = Vec::new();
    if let Some(dir) = &args.from_maildir {
        messages.extend(mailto::read_maildir(dir)?);
    }
    if let Some(file) = &args.from_mbox {
        messages.extend(mailto::read_mbox(file)?);
    }
    if args.from_maildir.is_some() || args.from_mbox.is_some() {
        let keyring = Keyring::for_verifying(config)?;
        apply_mail(&store, &keyring, &messages)?;
    }
    Ok(Outcome::Done)
}

/// What one message asked for, once its tokens are checked.
#[derive(Debug, Default)]
struct MailTally {
    unsubscribed: usize,
    already: usize,
    test: usize,
    unmatched: usize,
}

fn apply_mail(store: &Store, keyring: &Keyring, messages: &[mailto::Message]) -> Result<()> {
    let mut tally = MailTally::default();
    // Parsed and verified before the write transaction: the lock is held only for
    // the inserts, never while reading mail.
    let claims: Vec<Vec<_>> = messages
        .iter()
        .map(|msg| {
            msg.tokens
                .iter()
                .filter_map(|t| keyring.verify(t))
                .collect()
        })
        .collect();
    store.transaction(|store| {
        for (msg, claims) in messages.iter().zip(&claims) {
            if claims.is_empty() {
                tally.unmatched += 1;
                let why = msg
                    .problem
                    .as_deref()
                    .unwrap_or("no valid unsubscribe token");
                outln!(
                    "{}: {why}, not applied (subject: {:?})",
                    msg.origin,
                    msg.subject
                );
                continue;
            }
            for c in claims {
                if c.test {
                    tally.test += 1;
                    outln!("{}: a link from a test send: nothing changed", msg.origin);
                    continue;
                }
                let new = store.suppress(&Suppression {
                    address: c.email.clone(),
                    suppressed_at: clock::now(),
                    source: SuppressionSource::Mailto,
                    edition: Some(c.edition.clone()),
                })?;
                if new {
                    tally.unsubscribed += 1;
                    outln!(
                        "{}: unsubscribed {} (edition {})",
                        msg.origin,
                        c.email,
                        c.edition
                    );
                } else {
                    tally.already += 1;
                    outln!("{}: {} was already unsubscribed", msg.origin, c.email);
                }
            }
        }
        Ok(())
    })?;
    // Only after the commit: a message that asked for nothing is moved aside, so the
    // next cron run does not report it again.
    for (msg, claims) in messages.iter().zip(&claims) {
        if let Some(aside) = msg.file_away(!claims.is_empty())? {
            outln!("{}: moved to {}", msg.origin, aside.display());
        }
    }
    outln!(
        "{} message(s): {} unsubscribed, {} already unsubscribed, {} test, {} without a valid token",
        messages.len(),
        tally.unsubscribed,
        tally.already,
        tally.test,
        tally.unmatched
    );
    Ok(())
}

pub(super) fn resubscribe(config: &Config, args: &ResubscribeArgs) -> Result<Outcome> {
    let store = Store::for_config(config)?;
    store.transaction(|store| {
        for address in &args.addresses {
            if store.resubscribe(address)? {
                outln!("resubscribed {}", address.trim());
            } else {
                outln!("{} was not on the suppression list", address.trim());
            }
        }
        Ok(())
    })?;
    Ok(Outcome::Done)
}

pub(super) fn suppressions(config: &Config, args: &SuppressionsArgs) -> Result<Outcome> {
    let store = Store::for_config(config)?;
    let list = store.suppressions()?;
    if args.json {
        // A suppression made by a bounce or complaint also says its status and diagnostic.
        let reasons = store.suppression_reasons()?;
        let mut rows = Vec::with_capacity(list.len());
        for s in &list {
            let reason = reasons.get(&brief::store::address_key(&s.address));
            let mut row = serde_json::to_value(s)?;
            row["status"] = reason.and_then(|r| r.status.clone()).into();
            row["diagnostic"] = reason.and_then(|r| r.diagnostic.clone()).into();
            rows.push(row);
        }
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if args.csv {
        let mut out = csv::Writer::from_writer(std::io::stdout().lock());
        out.write_record(["address", "suppressed_at", "source", "edition"])?;
        for s in &list {
            out.write_record(
                [
                    s.address.as_str(),
                    &s.suppressed_at.to_rfc3339(),
                    s.source.as_str(),
                    s.edition.as_deref().unwrap_or(""),
                ]
                .map(|cell| spreadsheet_safe(cell).into_owned()),
            )?;
        }
        out.flush()?;
    } else if list.is_empty() {
        outln!("the suppression list is empty");
    } else {
        let width = list
            .iter()
            .map(|s| s.address.chars().count())
            .max()
            .unwrap_or(0);
        for s in &list {
            outln!(
                "{:width$}  {}  {:9}  {}",
                s.address,
                s.suppressed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                s.source.as_str(),
                s.edition.as_deref().unwrap_or("-"),
            );
        }
        outln!("{} suppressed address(es)", list.len());
    }
    Ok(Outcome::Done)
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first)
/// gets a leading single quote, as OWASP recommends against CSV injection.
fn spreadsheet_safe(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formula_cells_are_quoted_and_others_kept() {
        for risky in [
            "=HYPERLINK(\"x\")@a.org",
            "+1@a.org",
            "-2@a.org",
            "@SUM(A1)@a.org",
            "\tx@a.org",
            "\rx@a.org",
        ] {
            assert_eq!(spreadsheet_safe(risky), format!("'{risky}"));
        }
        for plain in [
            "reader@example.org",
            "2026-12-01T09:00:00+00:00",
            "one-click",
            "",
        ] {
            assert_eq!(spreadsheet_safe(plain), plain);
        }
    }
}
