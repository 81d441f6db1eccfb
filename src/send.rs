//! The send use case, for `brief send` and `brief dispatch` alike: [`Plan::prepare`]
//! compiles the edition once and works out who gets it and how (nothing is locked,
//! written or sent yet); [`Plan::execute`] takes the edition's lock, freezes the
//! audience into the journal (or resumes), delivers, counts once and reports to the
//! editors.

use crate::audience;
use crate::clock;
use crate::compile;
use crate::compose::Composer;
use crate::config::{Config, Transport as ConfigTransport};
use crate::deliver::notify::Notifier;
use crate::deliver::{
    self, dkim, lock, EditionParts, Envelope, Job, Prepared, Report, Retry, Transport,
};
use crate::diag::Diagnostic;
use crate::edition;
use crate::exit::UsageError;
use crate::store::{NewRecipient, Store, REAL, TEST};
use crate::token::Keyring;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What to send, as the command line or the dispatcher asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// A slug or a path to the edition file.
    pub edition: String,
    /// A test send: `[TEST]` subject, the editors list or `to`, its own journal.
    pub test: bool,
    /// A test send's addresses instead of the editors list.
    pub to: Vec<String>,
    pub resend_in_doubt: bool,
    /// Render every message, send and record nothing.
    pub dry_run: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// A send ready to run: the edition compiled, the recipients' lists and the keys known.
pub struct Plan {
    config: Config,
    request: Request,
    slug: String,
    namespace: &'static str,
    lists: Vec<audience::ListSource>,
    /// A test send's `--to` addresses, normalized.
    to: Vec<String>,
    /// A correction's audience, read from the edition's journal (instead of `lists`).
    recipients: Option<Vec<NewRecipient>>,
    job: Job,
    /// The edition's tracked links, recorded before the first message goes out.
    links: Vec<crate::tracking::TrackedLink>,
    /// What compiling the edition warned about, for the caller to show.
    pub warnings: Vec<Diagnostic>,
}

/// How [`Plan::execute`] ended when it did not fail.
#[derive(Debug)]
pub enum Execution {
    /// Another send of the edition holds this lock; nothing was done.
    Locked(PathBuf),
    /// The run happened (complete or not: see the report).
    Ran(Box<Report>),
}

impl Plan {
    /// Compiles the edition (loaded once) and prepares the job. A bad DKIM key, an
    /// edition that does not compile or a missing secret stop here, before anything
    /// is locked, frozen or sent.
    pub fn prepare(config: &Config, request: Request) -> Result<Plan> {
        let edition_path = edition::resolve(config, &request.edition);
        let edition = edition::load(&edition_path).map_err(anyhow::Error::new)?;

        // Who: the edition's lists (or the config's), or for a test the editors list or
        // the --to addresses. A test never falls back to the real lists.
        let to = test_addresses(&request)?;
        let lists: Vec<audience::ListSource> = if request.test {
            test_lists(config, &to)
        } else {
            edition
                .audience
                .clone()
                .unwrap_or_else(|| config.newsletter.audience.clone())
                .iter()
                .map(|l| audience::ListSource::for_list(config, l))
                .collect::<Result<_>>()?
        };
        let columns = audience::columns(&lists)?;

        let composer = Composer::new(config)?;
        let mut compiled = compile::compile_edition(config, &composer, edition, &columns)?;
        compiled
            .warnings
            .splice(0..0, composer.warnings.iter().cloned());
        let parts = EditionParts {
            subject: compiled.subject,
            html: compiled.html,
            text: compiled.text,
        };
        let namespace = if request.test { TEST } else { REAL };
        let slug = compiled.slug;
        let mut plan = Plan::assemble(config, request, slug, namespace, parts, columns)?;
        plan.lists = lists;
        plan.to = to;
        plan.warnings = compiled.warnings;
        plan.links = compiled.links;
        Ok(plan)
    }

    /// A correction message to everyone the journal shows as having accepted `edition`
    /// (or, for a test, to the editors or `--to`), journaled under `journal_key` in the
    /// correction namespace: resumable and exactly-once like a send. Who is suppressed
    /// by the time their turn comes is skipped by delivery, as in a send.
    pub fn prepare_correction(
        config: &Config,
        request: Request,
        edition: &str,
        journal_key: String,
        message: crate::correct::Message,
    ) -> Result<Plan> {
        let to = test_addresses(&request)?;
        let (lists, recipients, namespace) = if request.test {
            (test_lists(config, &to), None, TEST)
        } else {
            let accepted = match Store::existing_for_config(config)? {
                Some(store) => {
                    // Readers still to be tried may yet get the wrong edition: the
                    // audience is frozen once, so the send has to be settled first.
                    let c = store.counts(edition, REAL)?;
                    if !c.complete() {
                        bail!(
                            "the send of {edition} is not finished ({} pending, {} deferred, {} in doubt): finish it with `brief send --edition {edition}` first, so the correction reaches everyone who got it",
                            c.pending, c.deferred, c.in_doubt
                        );
                    }
                    store.accepted_recipients(edition, REAL)?
                }
                None => Vec::new(),
            };
            if accepted.is_empty() {
                bail!("the journal shows no reader who accepted {edition}: nobody to correct");
            }
            (Vec::new(), Some(accepted), crate::correct::NAMESPACE)
        };
        let parts = EditionParts {
            subject: message.subject,
            html: message.html,
            text: message.text,
        };
        let mut plan = Plan::assemble(config, request, journal_key, namespace, parts, Vec::new())?;
        plan.lists = lists;
        plan.to = to;
        plan.recipients = recipients;
        Ok(plan)
    }

    /// The job for compiled `parts`, journaled as `slug` in `namespace`: the envelope,
    /// keys and delivery settings (no audience yet).
    fn assemble(
        config: &Config,
        request: Request,
        slug: String,
        namespace: &'static str,
        mut parts: EditionParts,
        columns: Vec<String>,
    ) -> Result<Plan> {
        let dkim = config
            .dkim
            .as_ref()
            .map(|d| dkim::Signer::load(d, |p| config.resolve(p)).map(Arc::new))
            .transpose()?;
        if request.test {
            parts.subject = format!("[TEST] {}", parts.subject);
        }
        let prepared = Prepared::new(
            &Envelope {
                from: config.newsletter.from.clone(),
                reply_to: config.newsletter.reply_to.clone(),
                list_name: config.newsletter.name.clone(),
                list_id: config.newsletter.list_id.clone(),
                date: clock::now(),
                columns: columns.clone(),
            },
            &parts,
        )?;

        let smtp_transport = config.delivery.transport == ConfigTransport::Smtp;
        let secret = config.secret(!smtp_transport || request.dry_run)?;
        let keyring = Keyring::new(&secret, &config.newsletter.list_id);
        let from = config.newsletter.from_mailbox();
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
            verp: config.delivery.verp,
            resend_in_doubt: request.resend_in_doubt,
            concurrency: config.delivery.concurrency,
            rate_per_second: config.delivery.rate_per_second,
            retry: Retry {
                min: config.delivery.retry_min,
                max: config.delivery.retry_max,
                give_up_after: config.delivery.give_up_after,
            },
            progress: request.progress,
            freezing: None,
            dkim,
        };
        Ok(Plan {
            config: config.clone(),
            request,
            slug,
            namespace,
            lists: Vec::new(),
            to: Vec::new(),
            recipients: None,
            job,
            links: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// The edition's slug.
    pub fn slug(&self) -> &str {
        &self.slug
    }

    /// Runs the send: lock, journal (or a dry run's copy), freeze, deliver, one
    /// count, the editors' report. Bad list rows are shown on stderr and skipped.
    pub fn execute(self) -> Result<Execution> {
        let Plan {
            config,
            request,
            slug,
            namespace,
            lists,
            to,
            recipients,
            mut job,
            links,
            warnings: _,
        } = self;
        let state = config.state_path();
        let location = config.state_location()?;
        let store = if request.dry_run {
            Store::dry_run_copy(&location, &slug, namespace)?
        } else {
            Store::connect(&location)?
        };
        // One sender per edition on SQLite (the file lock). A shared store lets a
        // second sender of a real send join the first; a test send starts afresh, so
        // it stays one at a time.
        let _lock = if request.dry_run || (store.is_shared() && !request.test) {
            None
        } else {
            match lock::try_lock(&state, &slug)? {
                Some(l) => Some(l),
                None => return Ok(Execution::Locked(lock::lock_path(&state, &slug))),
            }
        };
        if !request.dry_run {
            // A journal that went back in time would send again to readers it had
            // sent to: refuse before anything is frozen or sent.
            store.check_progress()?;
            // A link in a message must redirect as soon as the message can be read.
            if !links.is_empty() {
                store.record_links(&slug, &links, clock::now())?;
            }
        }
        if request.test {
            // Every test send starts afresh.
            store.reset(&slug, TEST)?;
        }
        let frozen = store.send_info(&slug, namespace)?.is_some_and(|i| i.frozen);
        let mut freezer = None;
        if !frozen {
            if let Some(recipients) = recipients {
                store.freeze(
                    &slug,
                    namespace,
                    clock::now(),
                    &mut recipients.into_iter(),
                    &mut || 0,
                )?;
            } else if request.test && !to.is_empty() {
                deliver::freeze_addresses(&store, &slug, namespace, &to)?;
            } else if request.test || request.dry_run {
                deliver::freeze_lists(
                    &store,
                    &slug,
                    namespace,
                    deliver::open_lists(&lists)?,
                    &mut skipped,
                )?;
            } else {
                let (flag, handle) = freeze_in_background(location, &slug, &lists)?;
                job.freezing = Some(flag);
                freezer = Some(handle);
            }
            if request.test && store.counts(&slug, namespace)?.total() == 0 {
                store.reset(&slug, TEST)?;
                bail!(
                    "the test send has no recipients: {} has no valid address (add editors to it, or use --to ADDR)",
                    lists.first().map_or_else(String::new, |l| l.label().display().to_string())
                );
            }
        }

        let transport = Transport::for_send(&config, &slug, request.test, request.dry_run)?;
        // The editors' report goes the same way, signed with the same key.
        let notifier = Notifier::new(&config, transport.clone(), job.dkim.clone());
        let result = deliver::run(store, job, transport);
        if let Some(handle) = freezer {
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
        if !request.test && !request.dry_run {
            // Refusals at send time count toward the bounce policy like mailed bounces.
            let suppressed = crate::bounce::policy::apply_refusals(&store, &config.bounces, &slug)?;
            if suppressed > 0 {
                tracing::info!("{suppressed} refused address(es) suppressed by the bounce policy");
            }
        }
        // The freeze may have finished after the run counted: the one count is here.
        report.counts = store.counts(&slug, namespace)?;
        if let Some(info) = store.send_info(&slug, namespace)? {
            report.duplicates = info.duplicates;
        }
        // With a shared store, the last sender to leave the send tells the editors.
        let others = store.leave_send()?;
        if others == 0 {
            crate::report::after_send(&config, &notifier, &store, &report);
        } else {
            tracing::info!(
                "{others} other sender(s) still on {slug}: the last one reports to the editors"
            );
        }
        Ok(Execution::Ran(Box::new(report)))
    }
}

/// A test send's `--to` addresses, normalized.
fn test_addresses(request: &Request) -> Result<Vec<String>> {
    Ok(request
        .to
        .iter()
        .map(|a| audience::normalize_address(a).map_err(|e| UsageError(format!("--to {e}"))))
        .collect::<std::result::Result<Vec<String>, UsageError>>()?)
}

/// A test goes to the editors list, or only to the `--to` addresses.
fn test_lists(config: &Config, to: &[String]) -> Vec<audience::ListSource> {
    if to.is_empty() {
        vec![audience::ListSource::File(
            config.list_path(&config.newsletter.editors),
        )]
    } else {
        Vec::new()
    }
}

/// A bad row of a list: shown, and the send goes on without it.
fn skipped(d: &Diagnostic) {
    eprintln!("{d} (skipped)");
}

/// A big list is frozen on its own connection while sending starts: the first message
/// goes out after the first few thousand rows, not after the last. The flag is set
/// while the freeze runs.
#[allow(clippy::type_complexity)]
fn freeze_in_background(
    location: crate::store::Location,
    slug: &str,
    lists: &[audience::ListSource],
) -> Result<(Arc<AtomicBool>, JoinHandle<Result<crate::store::SendInfo>>)> {
    let lists = deliver::open_lists(lists)?;
    let flag = Arc::new(AtomicBool::new(true));
    let (slug, flag_done) = (slug.to_string(), flag.clone());
    let handle = std::thread::Builder::new()
        .name("brief-freeze".into())
        .spawn(move || {
            let result = Store::connect(&location)
                .and_then(|s| deliver::freeze_lists(&s, &slug, REAL, lists, &mut skipped));
            flag_done.store(false, Ordering::Release);
            result
        })?;
    Ok((flag, handle))
}
