//! `brief unsubscribe`, `brief resubscribe` and `brief suppressions`: the suppression
//! list by hand, from mail sent to the `mailto` address, and as an export.

use crate::cli::{ResubscribeArgs, SuppressionsArgs, UnsubscribeArgs};
use crate::clock;
use crate::config::Config;
use crate::exit::{Outcome, UsageError};
use crate::mailto;
use crate::store::{SqliteStore, Suppression, SuppressionList, SuppressionSource};
use crate::token::Keyring;
use anyhow::{bail, Context, Result};

pub fn unsubscribe(config: &Config, args: &UnsubscribeArgs) -> Result<Outcome> {
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
    let store = SqliteStore::open(&config.state_path())?;
    if !args.addresses.is_empty() {
        in_transaction(&store, |store| {
            for address in &args.addresses {
                let new = store.suppress(&Suppression {
                    address: address.trim().to_string(),
                    suppressed_at: clock::now(),
                    source: SuppressionSource::Manual,
                    edition: None,
                })?;
                if new {
                    println!("unsubscribed {}", address.trim());
                } else {
                    println!("{} was already unsubscribed", address.trim());
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

fn apply_mail(store: &SqliteStore, keyring: &Keyring, messages: &[mailto::Message]) -> Result<()> {
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
    in_transaction(store, |store| {
        for (msg, claims) in messages.iter().zip(&claims) {
            if claims.is_empty() {
                tally.unmatched += 1;
                let why = msg
                    .problem
                    .as_deref()
                    .unwrap_or("no valid unsubscribe token");
                println!(
                    "{}: {why}, not applied (subject: {:?})",
                    msg.origin, msg.subject
                );
                continue;
            }
            for c in claims {
                if c.test {
                    tally.test += 1;
                    println!("{}: a link from a test send: nothing changed", msg.origin);
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
                    println!(
                        "{}: unsubscribed {} (edition {})",
                        msg.origin, c.email, c.edition
                    );
                } else {
                    tally.already += 1;
                    println!("{}: {} was already unsubscribed", msg.origin, c.email);
                }
            }
        }
        Ok(())
    })?;
    // Only after the commit: a message that asked for nothing is moved aside, so the
    // next cron run does not report it again.
    for (msg, claims) in messages.iter().zip(&claims) {
        if let Some(aside) = msg.file_away(!claims.is_empty())? {
            println!("{}: moved to {}", msg.origin, aside.display());
        }
    }
    println!(
        "{} message(s): {} unsubscribed, {} already unsubscribed, {} test, {} without a valid token",
        messages.len(),
        tally.unsubscribed,
        tally.already,
        tally.test,
        tally.unmatched
    );
    Ok(())
}

pub fn resubscribe(config: &Config, args: &ResubscribeArgs) -> Result<Outcome> {
    let store = SqliteStore::open(&config.state_path())?;
    in_transaction(&store, |store| {
        for address in &args.addresses {
            if store.resubscribe(address)? {
                println!("resubscribed {}", address.trim());
            } else {
                println!("{} was not on the suppression list", address.trim());
            }
        }
        Ok(())
    })?;
    Ok(Outcome::Done)
}

pub fn suppressions(config: &Config, args: &SuppressionsArgs) -> Result<Outcome> {
    let store = SqliteStore::open(&config.state_path())?;
    let list = store.suppressions()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if args.csv {
        let mut out = csv::Writer::from_writer(std::io::stdout().lock());
        out.write_record(["address", "suppressed_at", "source", "edition"])?;
        for s in &list {
            out.write_record([
                s.address.as_str(),
                &s.suppressed_at.to_rfc3339(),
                s.source.as_str(),
                s.edition.as_deref().unwrap_or(""),
            ])?;
        }
        out.flush()?;
    } else if list.is_empty() {
        println!("the suppression list is empty");
    } else {
        let width = list
            .iter()
            .map(|s| s.address.chars().count())
            .max()
            .unwrap_or(0);
        for s in &list {
            println!(
                "{:width$}  {}  {:9}  {}",
                s.address,
                s.suppressed_at.format("%Y-%m-%d %H:%M:%S UTC"),
                s.source.as_str(),
                s.edition.as_deref().unwrap_or("-"),
            );
        }
        println!("{} suppressed address(es)", list.len());
    }
    Ok(Outcome::Done)
}

/// Runs `f` in one transaction: all of its changes, or none.
fn in_transaction(store: &SqliteStore, f: impl FnOnce(&SqliteStore) -> Result<()>) -> Result<()> {
    let conn = store.connection();
    conn.execute_batch("BEGIN IMMEDIATE")
        .context("cannot start a transaction on the state store")?;
    match f(store) {
        Ok(()) => conn
            .execute_batch("COMMIT")
            .context("cannot commit to the state store"),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}
