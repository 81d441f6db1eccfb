//! `brief send`: compile the edition once, freeze its audience into the journal (or
//! resume), deliver, and report. Exit 0 when every recipient is settled, 3 when
//! deferred or in-doubt recipients remain, 75 when another send holds the lock, 1 when
//! the relay refuses the session.

use crate::audience;
use crate::cli::SendArgs;
use crate::clock;
use crate::config::{Config, Transport as ConfigTransport};
use crate::deliver::{
    self, lock, smtp, EditionParts, Envelope, Job, Prepared, Report, Retry, Transport,
};
use crate::exit::{Outcome, UsageError};
use crate::store::{Journal, SqliteStore, REAL, TEST};
use crate::token::Keyring;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn run(config: Config, args: SendArgs) -> Result<Outcome> {
    let namespace = if args.test { TEST } else { REAL };
    // A bad DKIM key stops the send before anything is compiled, frozen or sent.
    let dkim = config
        .dkim
        .as_ref()
        .map(|d| deliver::dkim::Signer::load(d, |p| config.resolve(p)))
        .transpose()?;
    let edition_path = crate::edition::resolve(&config, &args.edition);
    let edition = crate::edition::load(&edition_path).map_err(anyhow::Error::new)?;

    // Who: the edition's lists (or the config's), or for a test the editors list or
    // the --to addresses. A test never falls back to the real lists.
    let to = args
        .to
        .iter()
        .map(|a| audience::normalize_address(a).map_err(|e| UsageError(format!("--to {e}"))))
        .collect::<std::result::Result<Vec<String>, UsageError>>()?;
    let lists: Vec<PathBuf> = if args.test {
        if to.is_empty() {
            vec![config.list_path(&config.newsletter.editors)]
        } else {
            Vec::new()
        }
    } else {
        edition
            .audience
            .clone()
            .unwrap_or_else(|| config.newsletter.audience.clone())
            .iter()
            .map(|l| config.list_path(l))
            .collect()
    };
    let columns = audience::columns(&lists)?;

    let compiled = crate::compile::build(&config, &args.edition, &columns)?;
    for w in &compiled.warnings {
        eprintln!("{w}");
    }
    let slug = compiled.slug.clone();
    let subject = if args.test {
        format!("[TEST] {}", compiled.subject)
    } else {
        compiled.subject.clone()
    };
    let prepared = Prepared::new(
        &Envelope {
            from: config.newsletter.from.clone(),
            reply_to: config.newsletter.reply_to.clone(),
            list_name: config.newsletter.name.clone(),
            list_id: config.newsletter.list_id.clone(),
            date: clock::now(),
            columns: columns.clone(),
        },
        &EditionParts {
            subject,
            html: compiled.html.clone(),
            text: compiled.text.clone(),
        },
    )?;

    let smtp_transport = config.delivery.transport == ConfigTransport::Smtp;
    let secret = config.secret(!smtp_transport || args.dry_run)?;
    let keyring = Keyring::new(&secret, &config.newsletter.list_id);

    let _lock = if args.dry_run {
        None
    } else {
        match lock::try_lock(&config.state_path(), &slug)? {
            Some(l) => Some(l),
            None => {
                eprintln!(
                    "another `brief send` of {slug} is running (lock {}); not starting",
                    lock::lock_path(&config.state_path(), &slug).display()
                );
                return Ok(Outcome::Locked);
            }
        }
    };

    let store = if args.dry_run {
        dry_run_store(&config, &slug, namespace)?
    } else {
        SqliteStore::open(&config.state_path())?
    };
    if args.test {
        // Every test send starts afresh.
        store.reset(&slug, TEST)?;
    }
    let frozen = store.send_info(&slug, namespace)?.is_some_and(|i| i.frozen);
    let mut freezer = None;
    if !frozen {
        let report = |d: &crate::diag::Diagnostic| eprintln!("{d} (skipped)");
        if args.test && !to.is_empty() {
            deliver::freeze_addresses(&store, &slug, namespace, &to)?;
        } else if args.test || args.dry_run {
            deliver::freeze_lists(
                &store,
                &slug,
                namespace,
                deliver::open_lists(&lists)?,
                &mut { report },
            )?;
        } else {
            // A big list is frozen on its own connection while sending starts: the first
            // message goes out after the first few thousand rows, not after the last.
            let lists = deliver::open_lists(&lists)?;
            let flag = Arc::new(AtomicBool::new(true));
            let (path, slug, flag_done) = (config.state_path(), slug.clone(), flag.clone());
            let handle = std::thread::Builder::new()
                .name("brief-freeze".into())
                .spawn(move || {
                    let result = SqliteStore::open(&path).and_then(|s| {
                        deliver::freeze_lists(&s, &slug, REAL, lists, &mut { report })
                    });
                    flag_done.store(false, Ordering::Release);
                    result
                })?;
            freezer = Some((flag, handle));
        }
        if args.test && store.counts(&slug, namespace)?.total() == 0 {
            store.reset(&slug, TEST)?;
            bail!(
                "the test send has no recipients: {} has no valid address (add editors to it, or use --to ADDR)",
                lists.first().map_or_else(String::new, |p| p.display().to_string())
            );
        }
    }

    let transport = if args.dry_run {
        Transport::DryRun
    } else if smtp_transport {
        Transport::Smtp(smtp::Settings::from_config(&config)?)
    } else {
        let mut dir = config.outbox_dir();
        if args.test {
            dir.push("test-sends");
        }
        dir.push(&slug);
        crate::fsutil::create_private_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Transport::Outbox(dir)
    };
    let from: lettre::message::Mailbox = config.newsletter.from.parse()?;
    let job = Job {
        slug: slug.clone(),
        namespace,
        prepared,
        columns,
        keyring,
        base_url: config.newsletter.base_url.clone(),
        mailto: config.unsubscribe.mailto.clone(),
        domain: config.sender_domain(),
        envelope_from: config
            .delivery
            .return_path
            .clone()
            .unwrap_or_else(|| from.email.to_string()),
        resend_in_doubt: args.resend_in_doubt,
        concurrency: config.delivery.concurrency,
        rate_per_second: config.delivery.rate_per_second,
        retry: Retry {
            min: config.delivery.retry_min,
            max: config.delivery.retry_max,
            give_up_after: config.delivery.give_up_after,
        },
        progress: std::io::stderr().is_terminal() && !args.json,
        freezing: freezer.as_ref().map(|(flag, _)| flag.clone()),
        dkim,
    };
    let result = deliver::run(store, job, transport);
    if let Some((_, handle)) = freezer {
        let frozen = handle
            .join()
            .map_err(|_| anyhow::anyhow!("freezing the audience failed"))?;
        let info = frozen.context("cannot freeze the audience into the journal")?;
        tracing::info!(
            "audience frozen: {} duplicates, {} invalid",
            info.duplicates,
            info.invalid
        );
    }
    let (store, mut report) = result?;
    // The freeze may have finished after the run counted; count again.
    report.counts = store.counts(&slug, namespace)?;
    if let Some(info) = store.send_info(&slug, namespace)? {
        report.duplicates = info.duplicates;
    }
    print_report(&report, args.json, args.resend_in_doubt)?;
    crate::report::after_send(&config, &store, &report);
    if let Some(why) = &report.session_failure {
        bail!("the relay refused the session: {why}");
    }
    Ok(if report.dry_run || report.counts.complete() {
        Outcome::Done
    } else {
        Outcome::Incomplete
    })
}

/// A dry run works on an in-memory copy of what the state store knows about this
/// edition (and the suppression list), so it reports what a real run would do and
/// writes nothing, not even a new state file.
fn dry_run_store(config: &Config, slug: &str, namespace: &str) -> Result<SqliteStore> {
    let store = SqliteStore::in_memory()?;
    let path = config.state_path();
    if path.exists() {
        let conn = store.connection();
        conn.execute(
            "ATTACH DATABASE ?1 AS real",
            [format!("file:{}?mode=ro", path.display())],
        )
        .with_context(|| format!("cannot read {}", path.display()))?;
        let copy = conn.execute_batch("INSERT INTO main.suppressions SELECT * FROM real.suppressions;")
            .and_then(|_| {
                conn.execute(
                    "INSERT INTO main.sends SELECT * FROM real.sends WHERE edition = ?1 AND namespace = ?2",
                    [slug, namespace],
                )?;
                conn.execute(
                    "INSERT INTO main.journal SELECT * FROM real.journal WHERE edition = ?1 AND namespace = ?2",
                    [slug, namespace],
                )
            });
        if let Err(e) = copy {
            tracing::debug!("dry run: nothing copied from the state store: {e}");
        }
        conn.execute_batch("DETACH DATABASE real")?;
    }
    Ok(store)
}

fn print_report(r: &Report, json: bool, resend_in_doubt: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
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
            println!("{}{what}: complete, nothing to send.", r.edition);
        } else {
            println!("{}{what}: nothing due now.", r.edition);
        }
    } else if r.dry_run {
        println!("{}{what}: {} messages rendered.", r.edition, r.attempted);
    }
    let mut line = format!(
        "{}{what}: {} sent, {} deferred",
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
    println!("{line}");
    if r.duplicates > 0 {
        println!(
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
        println!(
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
        println!("stopped: {s}");
    }
    Ok(())
}
