//! The journal writer: one thread owns the store and applies every journal change,
//! gathering all changes that arrive while it commits into the next transaction
//! (group commit); while commits are quick, a batch with in-doubt marks waits about
//! one commit longer for more, so fewer commits carry them ([`LINGER_BELOW`]). A
//! sender that must know its change is durable (the `in_doubt` mark before a body
//! goes out) waits for the acknowledgement; other changes are fire and
//! forget, and are durable once a later acknowledgement arrives or the writer is
//! closed. Reads that must see every earlier change (the next page of due
//! recipients) go through the same queue, in order.
//!
//! An acknowledgement also waits for the journal's high-water mark (see
//! `store::mark`), a second fsync: a helper thread does it while the writer commits
//! the next transaction, so a mark waits for about one commit, not two.

use crate::store::{Entry, HighWater, Store, Update};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use std::sync::{mpsc, Arc, Mutex};
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
    /// The first recipient above this id that other senders of a shared store still
    /// hold (after every change queued before).
    FirstHeldByOthers(i64, oneshot::Sender<Result<Option<i64>>>),
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

/// A batch holding in-doubt marks waits for more changes for as long as the last
/// commit took, when that was shorter than this: fewer commits for the same marks,
/// at the cost of at most one more quick commit's time for each mark. Slower commits
/// gather big batches on their own, and waiting would only delay the marks.
const LINGER_BELOW: std::time::Duration = std::time::Duration::from_millis(1);

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
    /// With a shared store: the lowest id above `after` of the recipients of this
    /// send that other live senders still hold (which come back to this one if they
    /// die), if any.
    pub(super) async fn first_held_by_others(&self, after: i64) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::FirstHeldByOthers(after, reply))
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

/// A committed transaction's acknowledgements, sent once its high-water mark is
/// durable.
struct Committed {
    mark: Option<HighWater>,
    acks: Vec<(i64, oneshot::Sender<bool>)>,
    suppressed: Vec<i64>,
}

/// The way to the high-water thread, and its failure (taken over by the writer at
/// its next commit).
struct Marks {
    tx: mpsc::Sender<Committed>,
    failure: Arc<Mutex<Option<anyhow::Error>>>,
}

fn run(store: Store, edition: &str, namespace: &str, rx: mpsc::Receiver<Request>) -> Result<Store> {
    let (tx, committed) = mpsc::channel();
    let marks = Marks {
        tx,
        failure: Arc::default(),
    };
    let marker = {
        let failure = marks.failure.clone();
        std::thread::Builder::new()
            .name("brief-journal-mark".into())
            .spawn(move || record_marks(committed, &failure))
            .expect("spawning a thread")
    };
    let mut updates: Vec<Update> = Vec::new();
    let mut acks: Vec<(i64, oneshot::Sender<bool>)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    let commit = |store: &Store,
                  updates: &mut Vec<Update>,
                  acks: &mut Vec<(i64, oneshot::Sender<bool>)>,
                  failure: &mut Option<anyhow::Error>| {
        commit(store, updates, acks, failure, &marks)
    };
    // How long the last commit took: while commits are quick, a batch with marks
    // waits that long again for more changes, so that fewer commits carry them.
    let mut last_commit = LINGER_BELOW;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut lingered = false;
        loop {
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
                            None => {
                                store.due(edition, namespace, after, now, include_in_doubt, limit)
                            }
                        };
                        let _ = reply.send(page);
                    }
                    Request::FirstHeldByOthers(after, reply) => {
                        commit(&store, &mut updates, &mut acks, &mut failure);
                        let held = match &failure {
                            Some(e) => Err(anyhow!("{e:#}")),
                            None => store.first_held_by_others(edition, namespace, after),
                        };
                        let _ = reply.send(held);
                    }
                }
                if updates.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if lingered
                || acks.is_empty()
                || last_commit >= LINGER_BELOW
                || updates.len() >= MAX_BATCH
            {
                break;
            }
            lingered = true;
            match rx.recv_timeout(last_commit) {
                Ok(req) => next = Some(req),
                Err(_) => break,
            }
        }
        // Timed only when it writes: an empty commit says nothing about the disk.
        let writes = !updates.is_empty();
        let started = std::time::Instant::now();
        commit(&store, &mut updates, &mut acks, &mut failure);
        if writes {
            last_commit = started.elapsed();
        }
    }
    commit(&store, &mut updates, &mut acks, &mut failure);
    let Marks {
        tx,
        failure: marked,
    } = marks;
    drop(tx);
    marker
        .join()
        .map_err(|_| anyhow!("the journal's high-water thread panicked"))?;
    let marked = marked.lock().expect("lock").take();
    match failure.or(marked) {
        Some(e) => Err(e),
        None => Ok(store),
    }
}

/// Applies the gathered changes in one transaction and hands their acknowledgements
/// to the high-water thread. A change that cannot be committed within the store's
/// busy timeout (another process holding the write lock), or a mark that could not
/// be written, is a failure: nothing is acknowledged again (the waiting senders stop,
/// sending nothing more), and every later request gets the error.
fn commit(
    store: &Store,
    updates: &mut Vec<Update>,
    acks: &mut Vec<(i64, oneshot::Sender<bool>)>,
    failure: &mut Option<anyhow::Error>,
    marks: &Marks,
) {
    if failure.is_none() {
        *failure = marks.failure.lock().expect("lock").take();
    }
    let acks = std::mem::take(acks);
    if failure.is_some() || updates.is_empty() {
        updates.clear();
        return;
    }
    let applied = store.apply(updates);
    updates.clear();
    match applied {
        Ok(suppressed) if !acks.is_empty() => match store.high_water() {
            // No mark file (a shared store, a journal in memory): the commit is all
            // there is to wait for; acknowledge now, not through the high-water thread.
            None => acknowledge(acks, &suppressed),
            mark => {
                let _ = marks.tx.send(Committed {
                    mark,
                    acks,
                    suppressed,
                });
            }
        },
        Ok(_) => {}
        Err(e) => {
            *failure = Some(e.context(format!(
                "the journal {} could not be written (its write lock was held too long by another process, or the disk failed); the run stopped, and a later run resumes where it stopped",
                store.name()
            )))
        }
    }
}

/// The high-water thread: makes each committed step durable in the mark file, then
/// acknowledges that commit's marks, in commit order. Commits that queued up while
/// it synced share one sync (the mark only moves up). After a failure it
/// acknowledges nothing more.
fn record_marks(committed: mpsc::Receiver<Committed>, failure: &Mutex<Option<anyhow::Error>>) {
    // Opened at the first mark, kept open to the end of the send.
    let mut file = None;
    while let Ok(first) = committed.recv() {
        let mut batch = vec![first];
        batch.extend(committed.try_iter());
        if let Some(mark) = batch.iter().rev().find_map(|c| c.mark.as_ref()) {
            let recorded = match &file {
                Some(f) => mark.record(f),
                None => mark.open().and_then(|f| mark.record(file.insert(f))),
            };
            if let Err(e) = recorded {
                *failure.lock().expect("lock") = Some(e.context(
                    "the journal's high-water mark could not be written; the run stopped, and a later run resumes where it stopped",
                ));
                // Dropped unanswered, now and later: the waiting senders stop.
                for _ in committed.iter() {}
                return;
            }
        }
        for c in batch {
            acknowledge(c.acks, &c.suppressed);
        }
    }
}

/// Tells each waiting sender that its mark is committed: true to send, false if the
/// address was found suppressed.
fn acknowledge(acks: Vec<(i64, oneshot::Sender<bool>)>, suppressed: &[i64]) {
    for (id, ack) in acks {
        let _ = ack.send(!suppressed.contains(&id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRecipient, State, REAL};

    /// A store in `dir` with `n` readers of edition `e` frozen, their ids, and now.
    fn store_with_readers(
        dir: &tempfile::TempDir,
        n: usize,
    ) -> (Store, Vec<i64>, chrono::DateTime<chrono::Utc>) {
        let store = Store::open(&dir.path().join("brief.db")).unwrap();
        let now = crate::clock::now();
        let mut readers = (0..n).map(|i| NewRecipient {
            address: format!("r{i}@x.org"),
            name: String::new(),
            fields: "{}".into(),
        });
        store
            .freeze("e", REAL, now, &mut readers, &mut || 0)
            .unwrap();
        let ids = store
            .due("e", REAL, 0, now, false, n)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        (store, ids, now)
    }

    /// The writer opens the mark file once for the whole send (no open, close or
    /// lookup per acknowledgement): after the file was moved away, later marks still
    /// raise it, and nothing new appears at its old name.
    #[test]
    fn the_mark_file_stays_open_for_the_whole_send() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 4);
        store.check_progress().unwrap();
        let (writer, thread) = JournalWriter::spawn(store, "e", REAL);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mark = |id| {
            let mut u = Update::new(id, State::InDoubt, now);
            u.unless_suppressed = true;
            assert!(runtime.block_on(writer.durable(u).unwrap()).unwrap());
        };
        let step = |path: &std::path::Path| -> i64 {
            std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let (file, moved) = (dir.path().join("brief.db.mark"), dir.path().join("moved"));
        mark(ids[0]);
        std::fs::rename(&file, &moved).unwrap();
        let before = step(&moved);
        mark(ids[1]);
        mark(ids[2]);
        assert!(step(&moved) > before, "later marks went elsewhere");
        assert!(!file.exists(), "the mark file was opened again");
        drop(writer);
        thread.join().unwrap();
    }

    /// Every acknowledged in-doubt mark is covered by the high-water mark file by the
    /// time its sender hears of it, though that fsync runs on another thread.
    #[test]
    fn an_acknowledged_mark_is_already_in_the_high_water_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 50);
        let (writer, thread) = JournalWriter::spawn(store, "e", REAL);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mark_file = dir.path().join("brief.db.mark");
        let marked = || -> i64 {
            std::fs::read_to_string(&mark_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let mut last = 0;
        for pair in ids.chunks(2) {
            // A fire-and-forget change, then a mark that must wait for the fsync.
            writer
                .record(Update::new(pair[0], State::Sent, now))
                .unwrap();
            let mut mark = Update::new(pair[1], State::InDoubt, now);
            mark.unless_suppressed = true;
            let durable = writer.durable(mark).unwrap();
            assert!(runtime.block_on(durable).unwrap());
            let step = marked();
            assert!(step > last, "the mark file did not move: {step}");
            last = step;
        }
        drop(writer);
        let store = thread.join().unwrap();
        assert_eq!(store.counts("e", REAL).unwrap().in_doubt, 25);
        store.check_progress().unwrap();
        assert!(marked() >= last);
    }
}
