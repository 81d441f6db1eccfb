//! Delivery: the audience frozen into the journal, then one message per recipient
//! through a transport, every step recorded in the journal after the server's answer.
//!
//! ```text
//!  freeze (lists → journal, pending) ─▶ producer (due pages) ─▶ N workers ─▶ transport
//!                                                   ▲                │
//!                                                   └── writer ◀─────┘ (group commit)
//! ```
//! A worker personalizes the prepared edition ([`message`]), queues the durable
//! `in_doubt` mark, runs the SMTP envelope, waits for the mark to be committed, hands
//! over the body and records the answer: `sent`, `deferred` (4xx, or the connection lost
//! before the body), `bounced` (5xx). A connection lost after the body leaves the
//! recipient `in_doubt`. Session failures (connect, greeting, TLS, AUTH, ten identical
//! permanent refusals in a row) stop the run and mark nobody; a streak of connections
//! lost after the body (see [`in_doubt_limit`]) stops it too.

pub mod dkim;
pub mod lock;
pub mod message;
pub mod notify;
pub mod rate;
pub mod smtp;
mod writer;

use crate::audience::ListReader;
use crate::clock;
use crate::config::{Config, Transport as ConfigTransport};
use crate::diag::Diagnostic;
use crate::store::{Counts, Entry, NewRecipient, SendInfo, State, Store, Update};
use crate::token::{self, Keyring};
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
pub use message::{EditionParts, Envelope, Personal, Prepared, Rendered};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use writer::JournalWriter;

/// Where messages go.
#[derive(Debug, Clone)]
pub enum Transport {
    /// One `.eml` file per recipient in this folder.
    Outbox(PathBuf),
    Smtp(smtp::Settings),
    /// Render every message, send nothing (the journal is an in-memory copy).
    DryRun,
}

impl Transport {
    /// The configured transport; an outbox's messages go to `outbox/` itself.
    pub fn from_config(config: &Config) -> Result<Transport> {
        Ok(match config.delivery.transport {
            ConfigTransport::Smtp => Transport::Smtp(smtp::Settings::from_config(config)?),
            ConfigTransport::Outbox => Transport::Outbox(config.outbox_dir()),
        })
    }

    /// The transport of one send: a dry run's, or the configured one, an outbox with a
    /// folder per edition (test sends apart, under `test-sends/`), created here.
    pub fn for_send(config: &Config, slug: &str, test: bool, dry_run: bool) -> Result<Transport> {
        if dry_run {
            return Ok(Transport::DryRun);
        }
        match Transport::from_config(config)? {
            Transport::Outbox(mut dir) => {
                if test {
                    dir.push("test-sends");
                }
                dir.push(slug);
                crate::fsutil::create_private_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok(Transport::Outbox(dir))
            }
            other => Ok(other),
        }
    }
}

/// Backoff after a temporary failure.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Retry {
    /// The change for a recipient that got a temporary failure now: deferred with the
    /// next attempt after `min` doubling per attempt up to `max`, or expired once
    /// `give_up_after` has passed since its first attempt.
    pub fn defer(&self, e: &Entry, now: DateTime<Utc>, reply: String) -> Update {
        let attempts = e.attempts + 1;
        let first = e.first_attempt_at.unwrap_or(now);
        let give_up =
            chrono::Duration::from_std(self.give_up_after).unwrap_or(chrono::Duration::MAX);
        let mut u = Update::new(e.id, State::Deferred, now);
        u.attempt = true;
        u.reply = Some(reply);
        if now - first >= give_up {
            u.state = State::Expired;
            return u;
        }
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let wait = self.min.saturating_mul(factor).min(self.max);
        u.next_attempt_at =
            Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX));
        u
    }
}

/// One send of one edition.
pub struct Job {
    pub slug: String,
    /// `store::REAL` or `store::TEST`.
    pub namespace: &'static str,
    pub prepared: Prepared,
    /// Extra column names, in the order the prepared edition expects them.
    pub columns: Vec<String>,
    pub keyring: Keyring,
    pub base_url: String,
    /// The `mailto` address for List-Unsubscribe, if configured.
    pub mailto: Option<String>,
    /// Domain of Message-IDs.
    pub domain: String,
    /// The envelope sender (MAIL FROM).
    pub envelope_from: String,
    /// Per-message VERP envelope senders (`[delivery] verp`).
    pub verp: bool,
    pub resend_in_doubt: bool,
    pub concurrency: usize,
    pub rate_per_second: f64,
    pub retry: Retry,
    /// Show a progress bar (stderr is a terminal).
    pub progress: bool,
    /// Set while another thread is still freezing the audience: an empty page then
    /// means "not yet", not "done".
    pub freezing: Option<Arc<AtomicBool>>,
    /// Signs every message when `[dkim]` is configured (and the editors' reports).
    pub dkim: Option<Arc<dkim::Signer>>,
}

impl Job {
    /// Builds `e`'s message into `out` (signed, with `[dkim]`); returns its Message-ID.
    pub fn personalize(&self, e: &Entry, out: &mut Rendered) -> Result<String> {
        let job = self;
        let test = job.namespace == crate::store::TEST;
        let token = job.keyring.issue(&e.address, &job.slug, test);
        let url = token::unsubscribe_url(&job.base_url, &token);
        let preferences = token::preferences_url(&job.base_url, &token);
        let mailto = job
            .mailto
            .as_ref()
            .map(|m| format!("mailto:{m}?subject=unsubscribe-{token}"));
        let message_id = job
            .keyring
            .message_id(job.namespace, &job.slug, &e.address, &job.domain);
        let columns = column_values(&job.columns, &e.fields);
        job.prepared.render(
            &Personal {
                email: &e.address,
                name: &e.name,
                columns: &columns,
                unsubscribe_url: &url,
                preferences_url: &preferences,
                unsubscribe_mailto: mailto.as_deref(),
                message_id: &message_id,
            },
            out,
        );
        if let Some(signer) = &job.dkim {
            let field = signer.sign(job.prepared.slices(out), clock::now().timestamp())?;
            out.prepend_header(&field);
        }
        Ok(message_id)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub edition: String,
    pub test: bool,
    pub dry_run: bool,
    /// What this process did in this run, at the top of the JSON object: with a
    /// shared store several senders share the send, and each prints its own.
    #[serde(flatten)]
    pub this_sender: SenderCounts,
    /// Messages handed to the transport in this run (also in `this_sender`).
    #[serde(skip)]
    pub attempted: u64,
    /// Nothing was due: no connection was opened.
    pub nothing_due: bool,
    /// The edition's counts, whoever sent them (in JSON: `edition_totals`).
    #[serde(rename = "edition_totals")]
    pub counts: Counts,
    pub duplicates: u64,
    /// Addresses whose outcome is unknown (up to 100).
    pub in_doubt_addresses: Vec<String>,
    /// The run stopped early for this reason (throttling): a later run continues.
    pub stopped: Option<String>,
    /// Why the run stopped because of the relay (refused or lost sessions, a
    /// misconfigured relay): the rest is still pending.
    pub session_failure: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One sender's own outcomes in one run (the counts at the top of `brief send --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderCounts {
    pub host: String,
    pub pid: u32,
    /// Messages this process handed to the relay (or outbox).
    pub attempted: u64,
    pub sent: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub in_doubt: u64,
    pub expired: u64,
    pub suppressed: u64,
}

impl SenderCounts {
    fn count(&mut self, state: State) {
        match state {
            State::Sent => self.sent += 1,
            State::Deferred => self.deferred += 1,
            State::Bounced => self.bounced += 1,
            State::InDoubt => self.in_doubt += 1,
            State::Expired => self.expired += 1,
            State::Suppressed => self.suppressed += 1,
            State::Pending => {}
        }
    }
}

/// The subscriber lists of a send, opened (so a missing or headerless list is an
/// error before anything starts).
pub struct OpenLists(Vec<(ListReader, Vec<String>)>);

pub fn open_lists(lists: &[crate::audience::ListSource]) -> Result<OpenLists> {
    let mut readers = Vec::new();
    for list in lists {
        let reader = list.open()?;
        let columns = reader.columns();
        readers.push((reader, columns));
    }
    Ok(OpenLists(readers))
}

/// Reads the lists and freezes the audience into the journal. Bad rows are reported
/// through `report` (`file:line`) and counted as invalid.
pub fn freeze_lists(
    store: &Store,
    slug: &str,
    namespace: &str,
    lists: OpenLists,
    report: &mut dyn FnMut(&Diagnostic),
) -> Result<SendInfo> {
    let mut readers = lists.0;
    let invalid = std::cell::Cell::new(0u64);
    // Readers who deleted their data are known only by a hash: a stale list still
    // naming them must not mail them again (nor put their address back in the journal).
    let erased = store.erased_keys()?;
    let mut current = 0;
    let mut rows = std::iter::from_fn(|| loop {
        let (reader, columns) = readers.get_mut(current)?;
        match reader.next_row() {
            None => current += 1,
            Some(Err(d)) => {
                invalid.set(invalid.get() + 1);
                report(&d);
            }
            Some(Ok(s))
                if !erased.is_empty() && erased.contains(&crate::store::erased_key(&s.email)) => {}
            Some(Ok(s)) => {
                return Some(NewRecipient {
                    address: s.email,
                    name: s.name,
                    fields: fields_json(columns, &s.fields),
                });
            }
        }
    });
    store.freeze(slug, namespace, clock::now(), &mut rows, &mut || {
        invalid.get()
    })
}

/// Freezes explicit addresses (test sends to `--to`).
pub fn freeze_addresses(
    store: &Store,
    slug: &str,
    namespace: &str,
    addresses: &[String],
) -> Result<SendInfo> {
    let mut rows = addresses.iter().map(|a| NewRecipient {
        address: a.clone(),
        name: String::new(),
        fields: "{}".into(),
    });
    store.freeze(slug, namespace, clock::now(), &mut rows, &mut || 0)
}

fn fields_json(columns: &[String], values: &[String]) -> String {
    if columns.is_empty() {
        return "{}".into();
    }
    let map: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .zip(values)
        .map(|(c, v)| (c.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Shared state of one run.
struct Ctx {
    job: Job,
    transport: Transport,
    writer: JournalWriter,
    /// With a shared store: claims the next batches on a connection of their own, so
    /// the writer's commits (which in-doubt marks wait for) never queue behind one.
    claimer: Option<crate::store::Claimer>,
    rate: rate::RateLimiter,
    stop: AtomicBool,
    attempted: AtomicU64,
    /// This process's outcomes, as recorded.
    own: Mutex<SenderCounts>,
    /// Recipients read (or claimed) from the journal at a time, and queued.
    page_size: usize,
    session_failure: Mutex<Option<String>>,
    stopped: Mutex<Option<String>>,
    fatal: Mutex<Option<anyhow::Error>>,
    streaks: Mutex<Streaks>,
    pause_until: Mutex<Option<tokio::time::Instant>>,
    progress: indicatif::ProgressBar,
    /// Time the connections spent in SMTP transactions, and the part of it they
    /// waited for in-doubt marks to be committed (nanoseconds; `-vv` prints both).
    in_transactions: AtomicU64,
    waiting_for_marks: AtomicU64,
}

/// Consecutive failures, across all connections.
#[derive(Default)]
struct Streaks {
    permanent_reply: String,
    permanent_ids: Vec<i64>,
    /// The permanent streak stopped the run.
    tripped: bool,
    transient: u32,
    pauses: u32,
    /// Recipients in doubt (connection lost after the body) since the last accepted
    /// message.
    in_doubt: usize,
}

/// Ten permanent refusals in a row with the same reply: the relay is misconfigured.
const PERMANENT_STREAK: usize = 10;
/// Most recipients a streak of lost-after-the-body connections leaves in doubt:
/// max(10, 2 × concurrency).
fn in_doubt_limit(concurrency: usize) -> usize {
    (2 * concurrency).max(10)
}
/// This many temporary failures in a row are throttling: pause every connection.
const TRANSIENT_STREAK: u32 = 5;
/// Pauses (1 s doubling) before the run gives up for now and leaves the rest pending.
const MAX_PAUSES: u32 = 6;
/// Recipients fetched from the journal at once.
const PAGE: usize = 512;
/// A sender of a shared store claims this many recipients per connection at a time
/// (and queues no more), so that the senders of one send share it evenly.
const CLAIM_PER_CONNECTION: usize = 4;
/// How often a sender of a shared store with nothing to claim looks again.
const SHARED_POLL: Duration = Duration::from_secs(1);
/// How often an empty page is asked again while the audience is still being frozen:
/// the first chunk lands within tens of milliseconds, and a send waited up to a whole
/// poll after it (20 ms before).
const FREEZE_POLL: Duration = Duration::from_millis(2);

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn session_failed(&self, why: String) {
        let mut s = self.session_failure.lock().expect("lock");
        if s.is_none() {
            *s = Some(why);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    fn fail(&self, e: anyhow::Error) {
        let mut f = self.fatal.lock().expect("lock");
        if f.is_none() {
            *f = Some(e);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Records an outcome of this run.
    fn record(&self, u: Update) {
        self.own.lock().expect("lock").count(u.state);
        self.record_quietly(u);
    }

    /// Records a change that is no outcome (a mark undone).
    fn record_quietly(&self, u: Update) {
        if let Err(e) = self.writer.record(u) {
            self.fail(e);
        }
    }

    fn succeeded(&self) {
        let mut s = self.streaks.lock().expect("lock");
        s.permanent_ids.clear();
        s.transient = 0;
        s.pauses = 0;
        s.in_doubt = 0;
    }

    /// The connection was lost after a body was handed over, with no answer. A relay
    /// that does this every time would put the whole list in doubt: after a streak
    /// with no accepted message in between, the run stops like a session failure.
    /// The streak trips early enough that, with the bodies still in flight on the
    /// other connections, at most `in_doubt_limit` recipients end up in doubt.
    fn lost_after_body(&self, why: &str) {
        let concurrency = self.job.concurrency.max(1);
        let limit = in_doubt_limit(concurrency);
        let mut s = self.streaks.lock().expect("lock");
        s.in_doubt += 1;
        if s.in_doubt + concurrency - 1 < limit {
            return;
        }
        let n = s.in_doubt;
        drop(s);
        self.session_failed(format!(
            "the relay dropped the connection after the message was handed over, {n} times in a row without accepting any ({why}): stopped, the rest is still pending. \
             The readers concerned are in doubt: the relay may or may not have delivered to them. \
             Once the relay is fixed, `brief send` sends to the pending readers and holds those in doubt; \
             `brief send --resend-in-doubt` also sends those again (same Message-ID; a reader may get two copies)"
        ));
    }

    /// A 5xx for one recipient; after ten identical ones in a row the run stops and
    /// those ten go back to pending (the relay, not the readers, is at fault).
    fn permanent(&self, id: i64, reply: &smtp::Reply) {
        let mut s = self.streaks.lock().expect("lock");
        s.transient = 0;
        let text = reply.to_string();
        if s.tripped && s.permanent_reply == text {
            // In flight on another connection when the run stopped: same fault.
            self.record(Update::new(id, State::Pending, clock::now()));
            return;
        }
        if s.permanent_reply != text {
            s.permanent_reply = text.clone();
            s.permanent_ids.clear();
        }
        s.permanent_ids.push(id);
        if s.permanent_ids.len() >= PERMANENT_STREAK {
            s.tripped = true;
            let now = clock::now();
            for id in std::mem::take(&mut s.permanent_ids) {
                self.record(Update::new(id, State::Pending, now));
            }
            drop(s);
            self.session_failed(format!(
                "{PERMANENT_STREAK} recipients in a row refused with the same reply ({text}): the relay seems misconfigured; they were not marked bounced"
            ));
        }
    }

    /// A 4xx: a burst of them pauses every connection, with a doubling pause.
    fn transient(&self) {
        let mut s = self.streaks.lock().expect("lock");
        s.permanent_ids.clear();
        s.transient += 1;
        if s.transient < TRANSIENT_STREAK {
            return;
        }
        s.transient = 0;
        s.pauses += 1;
        if s.pauses > MAX_PAUSES {
            drop(s);
            let mut stopped = self.stopped.lock().expect("lock");
            stopped.get_or_insert_with(|| {
                "the relay keeps deferring (throttling): stopped for now; the rest is still pending".into()
            });
            self.stop.store(true, Ordering::Relaxed);
            return;
        }
        let pause = Duration::from_secs(1 << (s.pauses - 1));
        tracing::warn!("the relay is deferring messages: pausing {pause:?}");
        *self.pause_until.lock().expect("lock") = Some(tokio::time::Instant::now() + pause);
    }

    /// The envelope sender of `e`'s message: its VERP address with `[delivery] verp`.
    fn envelope_from(&self, e: &Entry) -> String {
        let from = &self.job.envelope_from;
        if !self.job.verp {
            return from.clone();
        }
        token::verp_address(from, &self.message_id(e)).unwrap_or_else(|| from.clone())
    }

    fn message_id(&self, e: &Entry) -> String {
        let job = &self.job;
        job.keyring
            .message_id(job.namespace, &job.slug, &e.address, &job.domain)
    }

    /// Queues the durable in-doubt mark for `e` (with the Message-ID it will carry).
    fn mark_in_doubt(&self, e: &Entry) -> Option<Durable> {
        let mut mark = Update::new(e.id, State::InDoubt, clock::now());
        mark.unless_suppressed = true;
        mark.message_id = Some(self.message_id(e));
        match self.writer.durable(mark) {
            Ok(d) => Some(Box::pin(d)),
            Err(err) => {
                self.fail(err);
                None
            }
        }
    }

    /// Undoes an in-doubt mark for a recipient that was never tried (it was due, so
    /// it becomes pending; one that was in doubt stays in doubt).
    fn revert(&self, e: &Entry) {
        let state = if e.state == State::InDoubt {
            State::InDoubt
        } else {
            State::Pending
        };
        self.record_quietly(Update::new(e.id, state, clock::now()));
    }

    async fn wait_if_paused(&self) {
        let until = *self.pause_until.lock().expect("lock");
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }
}

fn column_values(columns: &[String], fields: &str) -> Vec<String> {
    if columns.is_empty() || fields == "{}" {
        return vec![String::new(); columns.len()];
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(fields).unwrap_or_default();
    columns
        .iter()
        .map(|c| match map.get(c) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => String::new(),
        })
        .collect()
}

/// Runs one send (or resume) of a frozen edition. Returns the store and the report.
pub fn run(store: Store, job: Job, transport: Transport) -> Result<(Store, Report)> {
    let slug = job.slug.clone();
    let namespace = job.namespace;
    let test = namespace == crate::store::TEST;
    let dry_run = matches!(transport, Transport::DryRun);
    let total = {
        let c = store.counts(&slug, namespace)?;
        if c.deferred > 0 {
            let now = clock::now();
            let latest = chrono::Duration::from_std(job.retry.max)
                .ok()
                .and_then(|max| now.checked_add_signed(max))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let moved = store
                .clamp_retries(&slug, namespace, now, latest)
                .with_context(|| format!("cannot write the journal {}", store.name()))?;
            if moved > 0 {
                tracing::warn!(
                    "{moved} deferred recipients had a retry time beyond retry_max from now (a clock that ran ahead?): retried by {latest}"
                );
            }
        }
        c.pending + c.deferred + if job.resend_in_doubt { c.in_doubt } else { 0 }
    };
    let still_freezing = job.freezing.clone();
    let freezing = move || {
        still_freezing
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
    };
    let page_size = if store.is_shared() {
        (CLAIM_PER_CONNECTION * job.concurrency.max(1)).min(PAGE)
    } else {
        PAGE
    };
    // No recipient below this one is held by another sender (see `first_held_by_others`).
    let mut held_from = 0;
    let first_page = loop {
        let was_freezing = freezing();
        let page = store.due(
            &slug,
            namespace,
            held_from,
            clock::now(),
            job.resend_in_doubt,
            page_size,
        )?;
        if !page.is_empty() {
            break page;
        }
        if was_freezing {
            std::thread::sleep(FREEZE_POLL);
        } else if let Some(first) = store.first_held_by_others(&slug, namespace, held_from)? {
            // A shared store whose recipients other senders hold: stand by, and take
            // over whatever a sender that dies leaves (after its lease).
            std::thread::sleep(SHARED_POLL);
            held_from = first - 1;
        } else {
            break page;
        }
    };
    let mut report = Report {
        edition: slug.clone(),
        test,
        dry_run,
        attempted: 0,
        nothing_due: first_page.is_empty(),
        counts: Counts::default(),
        duplicates: 0,
        in_doubt_addresses: Vec::new(),
        stopped: None,
        session_failure: None,
        started_at: None,
        finished_at: None,
        this_sender: SenderCounts {
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pid: std::process::id(),
            ..SenderCounts::default()
        },
    };
    if first_page.is_empty() {
        return finish_report(store, report);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let senders = store.live_senders();
    let claimer = store.claimer();
    let progress = if job.progress {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let concurrency = match transport {
        Transport::DryRun => 1,
        _ => job.concurrency.max(1),
    };
    let (writer, thread) = JournalWriter::spawn(store, &slug, namespace, concurrency);
    let ctx = Arc::new(Ctx {
        rate: rate::RateLimiter::shared(job.rate_per_second, senders),
        job,
        transport,
        writer,
        claimer,
        stop: AtomicBool::new(false),
        attempted: AtomicU64::new(0),
        own: Mutex::new(SenderCounts::default()),
        page_size,
        session_failure: Mutex::new(None),
        stopped: Mutex::new(None),
        fatal: Mutex::new(None),
        streaks: Mutex::new(Streaks::default()),
        pause_until: Mutex::new(None),
        progress,
        in_transactions: AtomicU64::new(0),
        waiting_for_marks: AtomicU64::new(0),
    });
    runtime.block_on(drive(ctx.clone(), first_page, concurrency));
    ctx.progress.finish_and_clear();
    report.attempted = ctx.attempted.load(Ordering::Relaxed);
    let own = ctx.own.lock().expect("lock").clone();
    report.this_sender = SenderCounts {
        host: report.this_sender.host.clone(),
        pid: report.this_sender.pid,
        attempted: report.attempted,
        ..own
    };
    report.session_failure = ctx.session_failure.lock().expect("lock").take();
    report.stopped = ctx.stopped.lock().expect("lock").take();
    let fatal = ctx.fatal.lock().expect("lock").take();
    drop(ctx); // the last JournalWriter handle: lets the writer thread finish
    drop(runtime);
    let store = thread.join()?;
    if let Some(e) = fatal {
        return Err(e);
    }
    finish_report(store, report)
}

fn finish_report(store: Store, mut report: Report) -> Result<(Store, Report)> {
    let ns = if report.test {
        crate::store::TEST
    } else {
        crate::store::REAL
    };
    report.counts = store.counts(&report.edition, ns)?;
    if report.counts.complete() && report.session_failure.is_none() {
        store
            .finish(&report.edition, ns, clock::now())
            .with_context(|| format!("cannot write the journal {}", store.name()))?;
    }
    if let Some(info) = store.send_info(&report.edition, ns)? {
        report.duplicates = info.duplicates;
        report.started_at = Some(info.started_at);
        report.finished_at = info.finished_at;
    }
    report.in_doubt_addresses = store
        .recipients(&report.edition, ns, State::InDoubt)?
        .into_iter()
        .take(100)
        .map(|(a, _)| a)
        .collect();
    Ok((store, report))
}

async fn drive(ctx: Arc<Ctx>, first_page: Vec<Entry>, concurrency: usize) {
    // The first connection decides whether the relay takes the session at all,
    // before anyone is touched.
    let first_conn = match &ctx.transport {
        Transport::Smtp(settings) => match smtp::Connection::open(settings).await {
            Ok(c) => Some(c),
            Err(e) => {
                ctx.session_failed(format!("{e:#}"));
                return;
            }
        },
        _ => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Entry>(ctx.page_size);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    let mut first_conn = first_conn;
    for _ in 0..concurrency {
        let conn = first_conn.take();
        workers.push(tokio::spawn(worker(ctx.clone(), rx.clone(), conn)));
    }
    // Only the workers hold the queue: once they have all stopped (the run stopping),
    // the producer's next send fails instead of waiting for room forever.
    drop(rx);
    // A task on the runtime, not this thread: each recipient a connection takes from
    // the bounded queue wakes the producer, and a task wakes on the connection's own
    // worker, where this thread would be woken through a futex every time.
    let producer = tokio::spawn({
        let ctx = ctx.clone();
        async move { produce(&ctx, first_page, tx).await }
    });
    if let Err(e) = producer.await {
        ctx.fail(anyhow!("the delivery queue's task failed: {e}"));
    }
    for w in workers {
        if let Err(e) = w.await {
            ctx.fail(anyhow!("a delivery task failed: {e}"));
        }
    }
    if !matches!(ctx.transport, Transport::Smtp(_)) {
        return;
    }
    let seconds = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / 1e9;
    let (busy, waiting) = (
        seconds(&ctx.in_transactions),
        seconds(&ctx.waiting_for_marks),
    );
    tracing::debug!(
        "{} messages over {concurrency} connections: {busy:.2} s in SMTP transactions, {waiting:.2} s of it ({:.0} %) waiting for in-doubt marks to be committed",
        ctx.attempted.load(Ordering::Relaxed),
        100.0 * waiting / busy.max(1e-9)
    );
}

async fn produce(ctx: &Ctx, first_page: Vec<Entry>, tx: tokio::sync::mpsc::Sender<Entry>) {
    let freezing = || {
        ctx.job
            .freezing
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
    };
    let mut page = first_page;
    let mut last = 0;
    // As in `run`: what other senders hold starts above this (this sender hands rows
    // back only when its run stops, and then it does not look again).
    let mut held_from = 0;
    // Read before each page query: if the freeze had finished by then, an empty page
    // really is the end.
    let mut was_freezing = true;
    loop {
        match page.last() {
            Some(e) => last = e.id,
            None if was_freezing => {
                // The audience is still being frozen: more rows are coming.
                tokio::time::sleep(FREEZE_POLL).await;
            }
            None => match ctx.writer.first_held_by_others(held_from).await {
                // Other senders of a shared store hold the rest: wait, and look again
                // from the first of those rows for what one that died hands back.
                Ok(Some(first)) if !ctx.stopping() => {
                    tokio::time::sleep(SHARED_POLL).await;
                    held_from = first - 1;
                    last = held_from;
                }
                Ok(_) => return,
                Err(e) => {
                    ctx.fail(e);
                    return;
                }
            },
        }
        for e in page {
            if ctx.stopping() {
                return;
            }
            if e.suppressed {
                // Unsubscribed since the send started: honoured right before sending.
                ctx.record(Update::new(e.id, State::Suppressed, clock::now()));
                ctx.progress.inc(1);
                continue;
            }
            if tx.send(e).await.is_err() {
                return;
            }
        }
        was_freezing = freezing();
        let (now, in_doubt) = (clock::now(), ctx.job.resend_in_doubt);
        let next = match &ctx.claimer {
            Some(c) => c.due(last, now, in_doubt, ctx.page_size).await,
            None => ctx.writer.due(last, now, in_doubt, ctx.page_size).await,
        };
        page = match next {
            Ok(p) => p,
            Err(e) => {
                ctx.fail(e);
                return;
            }
        };
    }
}

async fn worker(
    ctx: Arc<Ctx>,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Entry>>>,
    mut conn: Option<smtp::Connection>,
) {
    let smtp = matches!(ctx.transport, Transport::Smtp(_));
    let mut rendered = Rendered::default();
    // Over SMTP each worker marks the next recipient in doubt while the current one is
    // on the wire, so that commit rides along with the current one's `sent`.
    let mut ahead: Option<(Entry, Option<Durable>)> = None;
    // The recipient after that, taken from the queue but not marked: it is marked
    // right after the current outcome is queued, with no await in between, so that
    // the writer nearly always commits the two together (a lone `sent` would cost
    // the mark behind it one more commit).
    let mut upcoming: Option<Entry> = None;
    loop {
        if ctx.stopping() {
            break;
        }
        let (entry, durable) = match ahead.take() {
            Some(x) => x,
            None => {
                let next = rx.lock().await.recv().await;
                let Some(entry) = next else { break };
                let durable = if smtp {
                    match ctx.mark_in_doubt(&entry) {
                        Some(d) => Some(d),
                        None => break,
                    }
                } else {
                    None
                };
                (entry, durable)
            }
        };
        if ctx.stopping() {
            if durable.is_some() {
                ctx.revert(&entry);
            }
            break;
        }
        if smtp {
            let next = upcoming.take().or_else(|| take_queued(&rx));
            if let Some(next) = next {
                match ctx.mark_in_doubt(&next) {
                    Some(d) => ahead = Some((next, Some(d))),
                    None => {
                        ctx.revert(&entry);
                        break;
                    }
                }
                upcoming = take_queued(&rx);
            }
        }
        ctx.wait_if_paused().await;
        ctx.rate.acquire().await;
        let message_id = match ctx.job.personalize(&entry, &mut rendered) {
            Ok(id) => id,
            Err(e) => {
                if durable.is_some() {
                    ctx.revert(&entry);
                }
                ctx.fail(e);
                break;
            }
        };
        ctx.attempted.fetch_add(1, Ordering::Relaxed);
        match &ctx.transport {
            Transport::DryRun => {
                let mut u = Update::new(entry.id, State::Sent, clock::now());
                u.reply = Some(format!(
                    "dry run: {} bytes",
                    ctx.job.prepared.len(&rendered)
                ));
                ctx.record(u);
            }
            Transport::Outbox(dir) => {
                let result = write_eml(dir, &message_id, |f| {
                    ctx.job.prepared.write_to(&rendered, f)
                });
                let now = clock::now();
                match result {
                    Ok(path) => {
                        let mut u = Update::new(entry.id, State::Sent, now);
                        u.attempt = true;
                        u.reply = Some(format!("written to {}", path.display()));
                        u.message_id = Some(message_id);
                        ctx.record(u);
                    }
                    Err(e) => {
                        ctx.fail(e);
                        break;
                    }
                }
            }
            Transport::Smtp(settings) => {
                // Without a rate limit the next envelope rides behind this body; with
                // one, the relay would wait for that body for as long as the limit says.
                let next = ahead
                    .as_ref()
                    .filter(|_| ctx.job.rate_per_second <= 0.0)
                    .map(|(e, _)| e);
                let go_on = smtp_one(
                    &ctx, settings, &mut conn, &entry, durable, message_id, &rendered, next,
                )
                .await;
                if !go_on {
                    break;
                }
            }
        }
        ctx.progress.inc(1);
    }
    if let Some((entry, Some(_))) = ahead {
        // Marked but never tried: back to where it was (`upcoming` was never marked).
        ctx.revert(&entry);
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

/// The next queued recipient, if one is waiting, without waiting for anything. The
/// queue's lock is held by a connection waiting for the queue to fill (so it is empty
/// now): waiting for that lock here would hold this connection's recipient back until
/// the producer brings more, which for a sender standing by for another sender's
/// readers is never.
fn take_queued(rx: &tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Entry>>) -> Option<Entry> {
    rx.try_lock().ok()?.try_recv().ok()
}

/// A queued in-doubt mark; resolves once it is committed: to false if the address
/// was unsubscribed meanwhile (the journal then says `suppressed`; send nothing).
type Durable = std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send>>;

/// One recipient over SMTP (`first_mark`: its in-doubt mark, already queued; `next`:
/// the recipient this connection sends to next, whose envelope may go out behind this
/// body). Returns false if the worker must stop.
#[allow(clippy::too_many_arguments)]
async fn smtp_one(
    ctx: &Ctx,
    settings: &smtp::Settings,
    conn: &mut Option<smtp::Connection>,
    entry: &Entry,
    mut first_mark: Option<Durable>,
    message_id: String,
    rendered: &Rendered,
    next: Option<&Entry>,
) -> bool {
    let mut retried = false;
    let envid = smtp::envid(ctx.job.namespace, &ctx.job.slug);
    let from = ctx.envelope_from(entry);
    let next_from = next.map(|n| ctx.envelope_from(n));
    loop {
        if conn.is_none() {
            match smtp::Connection::open(settings).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    // Nothing was tried for this recipient: it goes back as it was.
                    ctx.revert(entry);
                    ctx.session_failed(format!("{e:#}"));
                    return false;
                }
            }
        }
        let Some(c) = conn.as_mut() else { return false };
        let reused = c.used > 0;
        // Queued before the envelope (or earlier), committed while the envelope is on
        // the wire; awaited before the body goes out.
        let durable = match first_mark.take() {
            Some(d) => d,
            None => match ctx.mark_in_doubt(entry) {
                Some(d) => d,
                None => return false,
            },
        };
        let mut suppressed = false;
        let started = std::time::Instant::now();
        let outcome = c
            .send(
                &smtp::MailFrom {
                    address: &from,
                    envid: envid.as_deref(),
                },
                &entry.address,
                ctx.job.prepared.slices(rendered),
                async {
                    let waiting = std::time::Instant::now();
                    let go = durable.await;
                    ctx.waiting_for_marks
                        .fetch_add(nanos(waiting.elapsed()), Ordering::Relaxed);
                    suppressed = matches!(go, Ok(false));
                    matches!(go, Ok(true))
                },
                next.zip(next_from.as_deref()).map(|(n, from)| smtp::Next {
                    from: smtp::MailFrom {
                        address: from,
                        envid: envid.as_deref(),
                    },
                    to: &n.address,
                }),
            )
            .await;
        ctx.in_transactions
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        if c.broken {
            *conn = None;
        }
        let now = clock::now();
        match outcome {
            smtp::Outcome::Accepted(reply) => {
                let mut u = Update::new(entry.id, State::Sent, now);
                u.reply = Some(reply.to_string());
                u.message_id = Some(message_id);
                ctx.record(u);
                ctx.succeeded();
            }
            smtp::Outcome::Refused(reply) if reply.code == 421 && reused && !retried => {
                // The server closed an idle connection: reconnect and try again.
                retried = true;
                continue;
            }
            smtp::Outcome::Refused(reply) if reply.is_transient() => {
                ctx.record(ctx.job.retry.defer(entry, now, reply.to_string()));
                ctx.transient();
            }
            smtp::Outcome::Refused(reply) => {
                let mut u = Update::new(entry.id, State::Bounced, now);
                u.reply = Some(reply.to_string());
                ctx.record(u);
                ctx.permanent(entry.id, &reply);
            }
            smtp::Outcome::LostBeforeBody(_) if reused && !retried => {
                retried = true;
                continue;
            }
            smtp::Outcome::LostBeforeBody(why) => {
                ctx.record(ctx.job.retry.defer(
                    entry,
                    now,
                    format!("connection lost before the message was sent: {why}"),
                ));
                ctx.transient();
            }
            smtp::Outcome::LostAfterBody(why) => {
                let mut u = Update::new(entry.id, State::InDoubt, now);
                u.reply = Some(format!(
                    "no answer after the message was handed over: {why}"
                ));
                ctx.record(u);
                ctx.lost_after_body(&why);
            }
            smtp::Outcome::Aborted if suppressed => {
                // Unsubscribed while the send ran: the body was never sent, and the
                // abandoned transaction closed the connection.
                ctx.own.lock().expect("lock").count(State::Suppressed);
            }
            smtp::Outcome::Aborted => {
                ctx.fail(anyhow!("the journal could not be written"));
                return false;
            }
        }
        return true;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes one message atomically (temporary file, then rename). The name comes from
/// the Message-ID, so a resend replaces the same file: delivery to the outbox is
/// idempotent and never in doubt.
fn write_eml(
    dir: &Path,
    message_id: &str,
    content: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<PathBuf> {
    use std::io::Write;
    let local = message_id
        .trim_start_matches('<')
        .split('@')
        .next()
        .unwrap_or("message");
    let path = dir.join(format!("{local}.eml"));
    let tmp = dir.join(format!(".{local}.eml.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f =
            std::io::BufWriter::with_capacity(1 << 16, crate::fsutil::create_private_file(&tmp)?);
        content(&mut f)?;
        f.flush()?;
        std::fs::rename(&tmp, &path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_expires() {
        let r = Retry {
            min: Duration::from_secs(300),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86_400),
        };
        let now = crate::clock::now();
        let mut e = Entry {
            id: 1,
            address: "a@b.org".into(),
            name: String::new(),
            fields: "{}".into(),
            state: State::Pending,
            attempts: 0,
            first_attempt_at: None,
            suppressed: false,
        };
        let waits: Vec<i64> = (0..6)
            .map(|n| {
                e.attempts = n;
                let u = r.defer(&e, now, "451".into());
                assert_eq!(u.state, State::Deferred);
                (u.next_attempt_at.unwrap() - now).num_seconds()
            })
            .collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 3600, 3600]);
        e.attempts = 40;
        e.first_attempt_at = Some(now - chrono::Duration::days(1));
        assert_eq!(r.defer(&e, now, "451".into()).state, State::Expired);
    }

    #[test]
    fn column_values_follow_the_requested_order() {
        let cols = vec!["city".to_string(), "plan".to_string()];
        assert_eq!(
            column_values(
                &cols,
                &fields_json(
                    &["plan".into(), "city".into()],
                    &["pro".into(), "Gent".into()]
                )
            ),
            vec!["Gent", "pro"]
        );
        assert_eq!(column_values(&cols, "{}"), vec!["", ""]);
    }
}
