//! The one writer: a thread that owns the store's connection and commits changes in
//! groups. Requests that arrive while a transaction is being committed (and fsynced)
//! wait in the channel and go into the next transaction together, so durability costs
//! one fsync per group rather than one per request. Every request is answered only
//! after its transaction committed.

use crate::clock;
use crate::store::{Store, Suppression, SuppressionSource};
use anyhow::{Context, Result};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most changes committed in one transaction.
const MAX_GROUP: usize = 1024;

/// A change to the suppression list asked for over HTTP.
#[derive(Debug, Clone)]
pub(super) enum Change {
    Suppress {
        email: String,
        edition: String,
        source: SuppressionSource,
    },
    /// Undo a suppression the reader made themselves (a link, a page, a mail).
    Resubscribe { email: String },
}

/// What a committed change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Suppressed now, or already suppressed before (idempotent either way).
    Suppressed,
    /// No longer suppressed (or was not).
    Resubscribed,
    /// Suppressed by the editors or by a bounce: a link does not undo that.
    Kept(SuppressionSource),
}

struct Job {
    change: Change,
    reply: oneshot::Sender<Result<Applied, String>>,
}

/// The handle requests use to send changes to the writer thread.
#[derive(Clone)]
pub(super) struct SuppressionQueue {
    tx: mpsc::Sender<Job>,
}

impl SuppressionQueue {
    /// Applies a change and returns once it is committed to disk.
    pub(super) async fn apply(&self, change: Change) -> Result<Applied> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { change, reply })
            .ok()
            .context("the store writer has stopped")?;
        answer
            .await
            .context("the store writer has stopped")?
            .map_err(anyhow::Error::msg)
    }
}

/// The writer thread; it stops once every [`SuppressionQueue`] is dropped.
pub(super) struct SuppressionWriter {
    thread: JoinHandle<()>,
}

impl SuppressionWriter {
    pub(super) fn start(store: Store) -> Result<(SuppressionWriter, SuppressionQueue)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("brief-store-writer".into())
            .spawn(move || run(&store, &rx))
            .context("cannot start the store writer thread")?;
        Ok((SuppressionWriter { thread }, SuppressionQueue { tx }))
    }

    /// Waits (bounded) for the thread to finish its last group after the handles are gone.
    pub(super) fn finish(self, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

fn run(store: &Store, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match commit(store, &group) {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(err) => {
                tracing::error!("cannot record {} change(s): {err:#}", group.len());
                let msg = format!("{err:#}");
                for job in group {
                    let _ = job.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

fn commit(store: &Store, group: &[Job]) -> Result<Vec<Applied>> {
    store.transaction(|store| group.iter().map(|job| apply(store, &job.change)).collect())
}

fn apply(store: &Store, change: &Change) -> Result<Applied> {
    match change {
        Change::Suppress {
            email,
            edition,
            source,
        } => {
            store.suppress(&Suppression {
                address: email.clone(),
                suppressed_at: clock::now(),
                source: *source,
                edition: Some(edition.clone()),
            })?;
            Ok(Applied::Suppressed)
        }
        Change::Resubscribe { email } => match store.suppression(email)? {
            Some(s) if !made_by_reader(s.source) => Ok(Applied::Kept(s.source)),
            Some(_) => {
                store.resubscribe(email)?;
                Ok(Applied::Resubscribed)
            }
            None => Ok(Applied::Resubscribed),
        },
    }
}

/// Suppressions a reader's own link may undo; the editors' and bounces' stay.
fn made_by_reader(source: SuppressionSource) -> bool {
    matches!(
        source,
        SuppressionSource::OneClick | SuppressionSource::Page | SuppressionSource::Mailto
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_changes_are_committed_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (writer, handle) = SuppressionWriter::start(Store::open(&path).unwrap()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                h.apply(Change::Suppress {
                    email: format!("r{i}@example.org"),
                    edition: "e1".into(),
                    source: SuppressionSource::OneClick,
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Applied::Suppressed);
        }
        let manual = Store::open(&path).unwrap();
        manual
            .suppress(&Suppression {
                address: "boss@example.org".into(),
                suppressed_at: clock::now(),
                source: SuppressionSource::Manual,
                edition: None,
            })
            .unwrap();
        let kept = handle
            .apply(Change::Resubscribe {
                email: "boss@example.org".into(),
            })
            .await
            .unwrap();
        assert_eq!(kept, Applied::Kept(SuppressionSource::Manual));
        let back = handle
            .apply(Change::Resubscribe {
                email: "R7@example.org".into(),
            })
            .await
            .unwrap();
        assert_eq!(back, Applied::Resubscribed);
        drop(handle);
        writer.finish(std::time::Duration::from_secs(5));
        let check = Store::open(&path).unwrap();
        assert_eq!(check.suppressions().unwrap().len(), 200);
        assert!(!check.is_suppressed("r7@example.org").unwrap());
        assert!(check.is_suppressed("boss@example.org").unwrap());
    }
}
