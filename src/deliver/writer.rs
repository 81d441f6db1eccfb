//! The journal writer: one thread owns the store and applies every journal change,
//! in batches. Each connection queues the `in_doubt` mark of its next recipient a
//! whole message before it needs it, so the writer does not commit each mark as it
//! comes: a batch is committed once it holds the marks of half the connections, or
//! a sender waits for one of its marks, or a read needs it, or after
//! [`WAIT_AT_MOST`]. Half leaves the other half of a message's time for the commit
//! itself, so connections seldom wait. Other changes (outcomes) are fire and
//! forget, and are durable once a later acknowledgement arrives or the writer is
//! closed. Reads that must see every earlier change (the next page of due
//! recipients) go through the same queue, in order.
//!
//! An acknowledgement also waits for the journal's high-water mark (see
//! `store::mark`), a second fsync: a helper thread does it, so the writer can commit
//! the next batch meanwhile.

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
    /// A sender now waits for the mark of this recipient: commit without waiting for
    /// more.
    Hurry(i64),
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

/// How long queued changes wait at most to be committed. Holding an outcome back
/// never widens the in-doubt window: a connection queues its next mark after its
/// outcome, so that mark is never durable before the outcome is.
const WAIT_AT_MOST: std::time::Duration = std::time::Duration::from_millis(50);

/// When the writer commits a batch that no sender waits for yet.
#[derive(Clone, Copy)]
struct Batching {
    /// Once it holds this many in-doubt marks.
    marks: usize,
    /// Once its oldest change waited this long.
    wait: std::time::Duration,
}

impl JournalWriter {
    /// A writer for a send over `connections` connections.
    pub(super) fn spawn(
        store: Store,
        edition: &str,
        namespace: &str,
        connections: usize,
    ) -> (JournalWriter, JournalWriterThread) {
        let batching = Batching {
            marks: (connections / 2).max(1),
            wait: WAIT_AT_MOST,
        };
        Self::spawn_batching(store, edition, namespace, batching)
    }

    fn spawn_batching(
        store: Store,
        edition: &str,
        namespace: &str,
        batching: Batching,
    ) -> (JournalWriter, JournalWriterThread) {
        let (tx, rx) = mpsc::channel();
        let (edition, namespace) = (edition.to_string(), namespace.to_string());
        let handle = std::thread::Builder::new()
            .name("brief-journal".into())
            .spawn(move || run(store, &edition, &namespace, rx, batching))
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
    /// suppressed. Awaiting it tells the writer to commit now; until it is dropped,
    /// it keeps the writer open, as a handle does.
    pub(super) fn durable(
        &self,
        update: Update,
    ) -> Result<impl std::future::Future<Output = Result<bool>>> {
        let (ack, mut rx) = oneshot::channel();
        let id = update.id;
        self.tx
            .send(Request::Update(update, Some(ack)))
            .map_err(|_| anyhow!("the journal writer stopped"))?;
        let tx = self.tx.clone();
        Ok(async move {
            if let Ok(go) = rx.try_recv() {
                return Ok(go);
            }
            // Not yet committed: the writer holds the mark back until somebody waits.
            let _ = tx.send(Request::Hurry(id));
            rx.await.map_err(|_| anyhow!("the journal writer stopped"))
        })
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

fn run(
    store: Store,
    edition: &str,
    namespace: &str,
    rx: mpsc::Receiver<Request>,
    batching: Batching,
) -> Result<Store> {
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
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // When the oldest change of this batch was queued, and whether a sender waits.
        let mut since: Option<std::time::Instant> = None;
        let mut hurried = false;
        loop {
            while let Some(req) = next.take() {
                match req {
                    Request::Update(u, ack) => {
                        since.get_or_insert_with(std::time::Instant::now);
                        acks.extend(ack.map(|a| (u.id, a)));
                        updates.push(u);
                    }
                    // A mark already committed is only waiting for the high-water thread.
                    Request::Hurry(id) => hurried |= acks.iter().any(|(a, _)| *a == id),
                    Request::Due {
                        after,
                        now,
                        include_in_doubt,
                        limit,
                        reply,
                    } => {
                        commit(&store, &mut updates, &mut acks, &mut failure);
                        (since, hurried) = (None, false);
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
                        (since, hurried) = (None, false);
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
            let Some(since) = since else { break };
            if hurried || acks.len() >= batching.marks || updates.len() >= MAX_BATCH {
                break;
            }
            match rx.recv_timeout(
                (since + batching.wait).saturating_duration_since(std::time::Instant::now()),
            ) {
                Ok(req) => next = Some(req),
                Err(_) => break,
            }
        }
        commit(&store, &mut updates, &mut acks, &mut failure);
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
        let (writer, thread) = JournalWriter::spawn(store, "e", REAL, 1);
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

    /// An in-doubt mark of `id`, checked against the suppression list.
    fn in_doubt(id: i64, now: chrono::DateTime<chrono::Utc>) -> Update {
        let mut u = Update::new(id, State::InDoubt, now);
        u.unless_suppressed = true;
        u
    }

    /// A writer whose batches wait an hour, or for `marks` marks, or for a sender.
    fn writer_holding(store: Store, marks: usize) -> (JournalWriter, JournalWriterThread) {
        let batching = Batching {
            marks,
            wait: std::time::Duration::from_secs(3600),
        };
        JournalWriter::spawn_batching(store, "e", REAL, batching)
    }

    /// The step in `dir`'s high-water mark file.
    fn marked_step(dir: &tempfile::TempDir) -> i64 {
        std::fs::read_to_string(dir.path().join("brief.db.mark"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Over 16 connections, 8 marks queued a little apart, with no sender waiting
    /// yet, share one commit (the first mark before them is waited for, to make the
    /// mark file; a deadline passed under load may cost one more commit).
    #[test]
    fn the_marks_of_half_the_connections_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 9);
        let (writer, thread) = JournalWriter::spawn(store, "e", REAL, 16);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mark = |id| writer.durable(in_doubt(id, now)).unwrap();
        assert!(runtime.block_on(mark(ids[0])).unwrap());
        let before = marked_step(&dir);
        let mut pending = Vec::new();
        for &id in &ids[1..] {
            pending.push(mark(id));
            // Time enough for a writer that commits whatever it has to do so.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for p in pending {
            assert!(runtime.block_on(p).unwrap());
        }
        let commits = marked_step(&dir) - before;
        assert!((1..=2).contains(&commits), "8 marks took {commits} commits");
        drop(writer);
        let store = thread.join().unwrap();
        assert_eq!(store.counts("e", REAL).unwrap().in_doubt, 9);
    }

    /// With no sender waiting and no deadline near, the writer commits a batch when
    /// it holds as many marks as it was told, not before.
    #[test]
    fn a_batch_is_committed_when_it_holds_enough_marks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 5);
        let (writer, thread) = writer_holding(store, 4);
        let queue = |id| writer.durable(in_doubt(id, now)).unwrap();
        let mut held: Vec<_> = ids[..3].iter().map(|&id| queue(id)).collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !dir.path().join("brief.db.mark").exists(),
            "three marks were committed"
        );
        held.push(queue(ids[3]));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !dir.path().join("brief.db.mark").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "four marks not committed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Each waiting mark holds a way to hurry the writer, which keeps it open.
        drop(held);
        drop(writer);
        let store = thread.join().unwrap();
        assert_eq!(store.counts("e", REAL).unwrap().in_doubt, 4);
    }

    /// A sender that waits for its mark gets it without the writer's deadline passing
    /// (here an hour), and outcomes nobody waits for are committed when the writer
    /// closes.
    #[test]
    fn a_waiting_sender_does_not_wait_for_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 3);
        let (writer, thread) = writer_holding(store, usize::MAX);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for &id in &ids[..2] {
            let durable = writer.durable(in_doubt(id, now)).unwrap();
            let acked = runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(30), durable).await
            });
            assert!(acked.expect("the mark waited for the deadline").unwrap());
            writer.record(Update::new(id, State::Sent, now)).unwrap();
        }
        writer
            .record(Update::new(ids[2], State::Deferred, now))
            .unwrap();
        drop(writer);
        let store = thread.join().unwrap();
        let counts = store.counts("e", REAL).unwrap();
        assert_eq!((counts.sent, counts.in_doubt, counts.deferred), (2, 0, 1));
        store.check_progress().unwrap();
    }

    /// Polls `f` once, which must not be ready yet (a durable future then hurries the
    /// writer, a read is queued), and keeps it for later.
    fn poll_once<F: std::future::Future + Unpin>(runtime: &tokio::runtime::Runtime, f: &mut F) {
        runtime.block_on(async {
            let once = tokio::time::timeout(std::time::Duration::from_millis(1), f);
            assert!(once.await.is_err(), "answered before its commit");
        })
    }

    /// A sender's hurry is spent once its mark is committed, also when a read of the
    /// next page committed it: a mark queued after that read waits for a reason of
    /// its own (here: none within the test).
    #[test]
    fn a_hurry_answered_by_a_read_does_not_hurry_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 3);
        let (writer, thread) = writer_holding(store, usize::MAX);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // The write lock held elsewhere: the writer's first commit waits for it, and
        // what follows queues up behind it, to be read in one go.
        let other = rusqlite::Connection::open(dir.path().join("brief.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut first = Box::pin(writer.durable(in_doubt(ids[0], now)).unwrap());
        poll_once(&runtime, &mut first);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut hurried = Box::pin(writer.durable(in_doubt(ids[1], now)).unwrap());
        poll_once(&runtime, &mut hurried);
        let mut page = Box::pin(writer.due(ids[2] - 1, now, false, 10));
        poll_once(&runtime, &mut page);
        let after_the_read = writer.durable(in_doubt(ids[2], now)).unwrap();
        other.execute_batch("COMMIT").unwrap();
        assert!(runtime.block_on(first).unwrap());
        assert!(runtime.block_on(hurried).unwrap());
        assert_eq!(runtime.block_on(page).unwrap().len(), 1);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let state: String = other
            .query_row("SELECT state FROM journal WHERE id = ?1", [ids[2]], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(state, "pending", "the mark after the read was hurried too");
        // Waited for, it is committed.
        assert!(runtime.block_on(after_the_read).unwrap());
        drop(writer);
        let store = thread.join().unwrap();
        assert_eq!(store.counts("e", REAL).unwrap().in_doubt, 3);
    }

    /// Every acknowledged in-doubt mark is covered by the high-water mark file by the
    /// time its sender hears of it, though that fsync runs on another thread.
    #[test]
    fn an_acknowledged_mark_is_already_in_the_high_water_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids, now) = store_with_readers(&dir, 50);
        let (writer, thread) = JournalWriter::spawn(store, "e", REAL, 1);
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
