//! The journal writer: one thread owns the store and applies every journal change,
//! gathering all changes that arrive while it commits into the next transaction
//! (group commit). A sender that must know its change is durable (the `in_doubt` mark
//! before a body goes out) waits for the acknowledgement; other changes are fire and
//! forget, and are durable once a later acknowledgement arrives or the writer is
//! closed. Reads that must see every earlier change (the next page of due
//! recipients) go through the same queue, in order.

use crate::store::{Entry, Store, Update};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use std::sync::mpsc;
use tokio::sync::oneshot;

enum Request {
    Update(Update, Option<oneshot::Sender<bool>>),
    Due {
        after: i64,
        now: DateTime<Utc>,
        include_in_doubt: bool,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Entry>>>,
    },
    /// Whether other senders of a shared store still hold claims (after every change
    /// queued before).
    OthersHoldClaims(oneshot::Sender<Result<bool>>),
}

/// A handle to the writer thread; clone it freely.
#[derive(Clone)]
pub(super) struct JournalWriter {
    tx: mpsc::Sender<Request>,
}

/// Joins the writer and gives the store back.
pub(super) struct JournalWriterThread(std::thread::JoinHandle<Result<Store>>);

/// Most changes applied in one transaction.
const MAX_BATCH: usize = 8192;

impl JournalWriter {
    pub(super) fn spawn(
        store: Store,
        edition: &str,
        namespace: &str,
    ) -> (JournalWriter, JournalWriterThread) {
        let (tx, rx) = mpsc::channel();
        let (edition, namespace) = (edition.to_string(), namespace.to_string());
        let handle = std::thread::Builder::new()
            .name("brief-journal".into())
            .spawn(move || run(store, &edition, &namespace, rx))
            .expect("spawning a thread");
        (JournalWriter { tx }, JournalWriterThread(handle))
    }

    /// Queues a change; returns when it is queued, not when it is durable.
    pub(super) fn record(&self, update: Update) -> Result<()> {
        self.tx
            .send(Request::Update(update, None))
            .map_err(|_| anyhow!("the journal writer stopped"))
    }

    /// Queues a change now; the returned future resolves once it is committed, to
    /// false if it was an `unless_suppressed` claim refused because the address is
    /// suppressed.
    pub(super) fn durable(
        &self,
        update: Update,
    ) -> Result<impl std::future::Future<Output = Result<bool>>> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Request::Update(update, Some(ack)))
            .map_err(|_| anyhow!("the journal writer stopped"))?;
        Ok(async move { rx.await.map_err(|_| anyhow!("the journal writer stopped")) })
    }

    /// The next page of due recipients, after every change queued before.
    pub(super) async fn due(
        &self,
        after: i64,
        now: DateTime<Utc>,
        include_in_doubt: bool,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Due {
                after,
                now,
                include_in_doubt,
                limit,
                reply,
            })
            .map_err(|_| anyhow!("the journal writer stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the journal writer stopped"))?
    }
}

impl JournalWriter {
    /// With a shared store: whether other live senders still hold recipients of this
    /// send (which come back to this one if they die).
    pub(super) async fn others_hold_claims(&self) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::OthersHoldClaims(reply))
            .map_err(|_| anyhow!("the journal writer stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the journal writer stopped"))?
    }
}

impl JournalWriterThread {
    /// Waits for every queued change to be committed (all `JournalWriter` handles must be
    /// dropped first) and returns the store.
    pub(super) fn join(self) -> Result<Store> {
        self.0
            .join()
            .map_err(|_| anyhow!("the journal writer panicked"))?
    }
}

fn run(store: Store, edition: &str, namespace: &str, rx: mpsc::Receiver<Request>) -> Result<Store> {
    let mut updates: Vec<Update> = Vec::new();
    let mut acks: Vec<(i64, oneshot::Sender<bool>)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                Request::Update(u, ack) => {
                    acks.extend(ack.map(|a| (u.id, a)));
                    updates.push(u);
                }
                Request::Due {
                    after,
                    now,
                    include_in_doubt,
                    limit,
                    reply,
                } => {
                    commit(&store, &mut updates, &mut acks, &mut failure);
                    let page = match &failure {
                        Some(e) => Err(anyhow!("{e:#}")),
                        None => store.due(edition, namespace, after, now, include_in_doubt, limit),
                    };
                    let _ = reply.send(page);
                }
                Request::OthersHoldClaims(reply) => {
                    commit(&store, &mut updates, &mut acks, &mut failure);
                    let held = match &failure {
                        Some(e) => Err(anyhow!("{e:#}")),
                        None => store.others_hold_claims(edition, namespace),
                    };
                    let _ = reply.send(held);
                }
            }
            if updates.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        commit(&store, &mut updates, &mut acks, &mut failure);
    }
    commit(&store, &mut updates, &mut acks, &mut failure);
    match failure {
        Some(e) => Err(e),
        None => Ok(store),
    }
}

/// Applies the gathered changes in one transaction and acknowledges them, once the
/// journal's high-water mark covers them. A change that cannot be committed within
/// the store's busy timeout (another process holding the write lock) is a failure:
/// nothing is acknowledged again (the waiting senders stop, sending nothing more),
/// and every later request gets the error.
fn commit(
    store: &Store,
    updates: &mut Vec<Update>,
    acks: &mut Vec<(i64, oneshot::Sender<bool>)>,
    failure: &mut Option<anyhow::Error>,
) {
    let mut suppressed = Vec::new();
    if failure.is_none() && !updates.is_empty() {
        let committed = store.apply(updates).and_then(|ids| {
            if !acks.is_empty() {
                store.record_high_water()?;
            }
            Ok(ids)
        });
        match committed {
            Ok(ids) => suppressed = ids,
            Err(e) => {
                *failure = Some(e.context(format!(
                    "the journal {} could not be written (its write lock was held too long by another process, or the disk failed); the run stopped, and a later run resumes where it stopped",
                    store.name()
                )))
            }
        }
    }
    updates.clear();
    if failure.is_none() {
        for (id, ack) in acks.drain(..) {
            let _ = ack.send(!suppressed.contains(&id));
        }
    } else {
        acks.clear();
    }
}
