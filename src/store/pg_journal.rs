//! The journal on PostgreSQL, where several senders share one send.
//!
//! Each sender of an edition is a row in `workers` whose `heartbeat` it renews every
//! few seconds on the engine's own thread (so a sender busy on a slow relay keeps it).
//! A sender does not page through the due recipients like the SQLite sender: it
//! *claims* them, a batch at a time, in one statement (`UPDATE … WHERE id IN (SELECT …
//! FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`), writing its id into `claimed_by`. A
//! claimed row is skipped by the others while its sender's heartbeat is younger than
//! [`LEASE`]; after that (the sender died before handing over a body) it is claimable
//! again, and a survivor sends it. The in-doubt mark only lands on a row its sender
//! still holds, in the same transaction as the suppression check; an `in_doubt` row is
//! never claimed again, by anyone, unless `--resend-in-doubt` asks for it by hand.
//!
//! A claim or a journal commit can land on the server while its answer is lost with
//! the connection; the store then runs it again on a new one. So each carries a token
//! of this sender's: a claim writes its token into the rows it takes (`claim`), and a
//! retried claim first takes back the rows still under that token; a commit notes its
//! token, and what it refused, in the sender's `workers` row, and a retried commit
//! that finds its note answers from it instead of changing the rows again.

use super::journal::{ts, Counts, Entry, NewRecipient, SendInfo, State, Update, SEND_COLUMNS};
use super::pg::{pg_params, refs, Client, Param, Pg, Remote};
use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A sender whose heartbeat is older than this is dead: its claims go back to the pool.
pub(super) const LEASE: Duration = Duration::from_secs(30);
/// How often a sender renews its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Schema version 4: the token of the claim that took each journal row, and each
/// sender's last journal commit with the marks it refused (see the module's text).
pub(super) const PG_TOKENS_SCHEMA: &str = "
ALTER TABLE journal ADD COLUMN claim BIGINT;
ALTER TABLE workers ADD COLUMN applied BIGINT, ADD COLUMN applied_refused BIGINT[];
";

/// Schema version 5: nothing a send changes in a journal row is indexed, so that the
/// claim, the in-doubt mark and the outcome are HOT updates (a new row version on the
/// same page, no new index entries): a quarter less of the server's CPU per message
/// in the send benchmark (BENCHMARKS.md).
/// So no index holds `state` (a claim reads the edition's rows in id order from where
/// its sender left off, and only retries have an index of their own), the look-ups
/// by address use one index on every row, and the Message-IDs, set by the mark, live
/// in a table of their own. `fillfactor` leaves room on each page for the updates.
pub(super) const PG_HOT_SCHEMA: &str = r#"
DROP INDEX journal_state;
DROP INDEX journal_tried_address;
DROP INDEX journal_sent_address;
DROP INDEX journal_message_id;
CREATE INDEX journal_order ON journal (edition, namespace, id);
CREATE INDEX journal_address ON journal (address_key);
CREATE INDEX journal_retry ON journal (edition, namespace, id) WHERE next_attempt_at IS NOT NULL;
ALTER TABLE journal SET (fillfactor = 70);
CREATE TABLE journal_message_ids (
    message_id TEXT COLLATE "C" PRIMARY KEY,
    journal_id BIGINT NOT NULL
);
"#;

/// Fills `journal_message_ids` from journal rows written otherwise than by a mark (by
/// the migration to version 5, by `brief store copy`). A Message-ID is one address's
/// in one send, so one row has it.
pub(super) const INDEX_MESSAGE_IDS: &str =
    "INSERT INTO journal_message_ids (message_id, journal_id)
    SELECT message_id, id FROM journal WHERE message_id IS NOT NULL
    ON CONFLICT (message_id) DO NOTHING";

/// This process's membership of one send.
pub(super) struct Worker {
    pub(super) id: i64,
    edition: String,
    namespace: String,
    /// How many senders (this one included) are alive on the send, as of the last
    /// heartbeat: `rate_per_second` is shared among them.
    pub(super) live: Arc<AtomicUsize>,
    /// The last token of a claim or commit of this sender (one series for both).
    tokens: Arc<AtomicI64>,
    /// Dropped to stop the heartbeat.
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn send_info_row(r: &tokio_postgres::Row) -> SendInfo {
    SendInfo {
        edition: r.get(0),
        namespace: r.get(1),
        started_at: super::journal::parse_ts(r.get(2)).unwrap_or_default(),
        frozen: r.get::<_, Option<String>>(3).is_some(),
        finished_at: super::journal::parse_ts(r.get(4)),
        invalid: r.get::<_, i64>(5) as u64,
        duplicates: r.get::<_, i64>(6) as u64,
    }
}

/// Runs `body` in one transaction on `c` (unless `nested`: the caller's transaction,
/// or one statement, which is a transaction of its own).
async fn atomic<T>(
    c: &Client,
    nested: bool,
    body: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if nested {
        return body.await;
    }
    c.batch_execute("BEGIN").await?;
    match body.await {
        Ok(v) => {
            c.batch_execute("COMMIT").await?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// The key of the session advisory lock under which one send's audience is frozen.
fn freeze_lock(edition: &str, namespace: &str) -> (i32, i32) {
    // Any fixed class; the object is a hash of the send (a collision only serializes
    // two freezes).
    let mut h: u32 = 2_166_136_261;
    for b in edition.bytes().chain([0]).chain(namespace.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    (0x6272_6672, h as i32)
}

impl Pg {
    pub(super) fn send_info(&self, edition: &str, namespace: &str) -> Result<Option<SendInfo>> {
        Ok(self
            .query_opt(
                &format!("SELECT {SEND_COLUMNS} FROM sends WHERE edition = $1 AND namespace = $2"),
                pg_params![edition.to_string(), namespace.to_string()],
            )?
            .as_ref()
            .map(send_info_row))
    }

    pub(super) fn reset(&self, edition: &str, namespace: &str) -> Result<()> {
        let (client, nested) = (self.client(), self.in_transaction());
        let (e, n) = (edition.to_string(), namespace.to_string());
        self.call(async move {
            let c = client.await?;
            atomic(&c, nested, async {
                c.execute(
                    "DELETE FROM journal_message_ids m USING journal j
                     WHERE j.id = m.journal_id AND j.edition = $1 AND j.namespace = $2",
                    &[&e, &n],
                )
                .await?;
                c.execute(
                    "DELETE FROM journal WHERE edition = $1 AND namespace = $2",
                    &[&e, &n],
                )
                .await?;
                c.execute(
                    "DELETE FROM sends WHERE edition = $1 AND namespace = $2",
                    &[&e, &n],
                )
                .await?;
                Ok(())
            })
            .await
        })
    }

    /// Freezes the audience like the SQLite store does, under a session advisory lock:
    /// when two senders start at once, one freezes and the other waits, then finds the
    /// send frozen and adds nothing (a freeze cut short by a death is resumed).
    pub(super) fn freeze(
        &self,
        edition: &str,
        namespace: &str,
        at: DateTime<Utc>,
        recipients: &mut dyn Iterator<Item = NewRecipient>,
        invalid: &mut dyn FnMut() -> u64,
    ) -> Result<SendInfo> {
        const CHUNK: usize = 5000;
        let (e, n) = (edition.to_string(), namespace.to_string());
        let (class, object) = freeze_lock(edition, namespace);
        let client = self.client();
        // One connection for the whole freeze: the session lock is held on it.
        let c: Client = self.call(async move {
            let c = client.await?;
            c.execute("SELECT pg_advisory_lock($1, $2)", &[&class, &object])
                .await?;
            Ok(c)
        })?;
        let frozen = (|| -> Result<()> {
            let (c1, e1, n1, t1) = (c.clone(), e.clone(), n.clone(), ts(at));
            let already = self.call(async move {
                c1.execute(
                    "INSERT INTO sends (edition, namespace, started_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&e1, &n1, &t1],
                )
                .await?;
                let row = c1
                    .query_one(
                        "SELECT frozen_at IS NOT NULL FROM sends WHERE edition = $1 AND namespace = $2",
                        &[&e1, &n1],
                    )
                    .await?;
                Ok(row.get::<_, bool>(0))
            })?;
            if already {
                return Ok(());
            }
            let mut read: u64 = 0;
            let mut chunks = 0;
            let mut recipients = recipients.peekable();
            while recipients.peek().is_some() {
                let (mut keys, mut addresses, mut names, mut fields) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for r in recipients.by_ref().take(CHUNK) {
                    keys.push(super::address_key(&r.address));
                    addresses.push(r.address);
                    names.push(r.name);
                    fields.push(r.fields);
                    read += 1;
                }
                let (c1, e1, n1) = (c.clone(), e.clone(), n.clone());
                self.call(async move {
                    c1.execute(
                        "INSERT INTO journal (edition, namespace, address_key, address, name, fields, state)
                         SELECT $1, $2, k, a, n, f, 'pending'
                         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS t(k, a, n, f, o)
                         ORDER BY o
                         ON CONFLICT DO NOTHING",
                        &[&e1, &n1, &keys, &addresses, &names, &fields],
                    )
                    .await?;
                    Ok(())
                })?;
                chunks += 1;
                if chunks == 1 {
                    // Statistics for the claims that start now: without them the
                    // planner takes a fresh journal for empty, and a claim scans it all.
                    self.analyze_journal(&c)?;
                }
            }
            if chunks > 1 {
                self.analyze_journal(&c)?;
            }
            let invalid = invalid() as i64;
            let (c1, e1, n1, t1) = (c.clone(), e.clone(), n.clone(), ts(at));
            self.call(async move {
                let held: i64 = c1
                    .query_one(
                        "SELECT count(*) FROM journal WHERE edition = $1 AND namespace = $2",
                        &[&e1, &n1],
                    )
                    .await?
                    .get(0);
                let duplicates = read.saturating_sub(held as u64) as i64;
                c1.execute(
                    "UPDATE sends SET frozen_at = $3, invalid = $4, duplicates = $5
                     WHERE edition = $1 AND namespace = $2",
                    &[&e1, &n1, &t1, &invalid, &duplicates],
                )
                .await?;
                Ok(())
            })
        })();
        let unlocked = self.call(async move {
            c.execute("SELECT pg_advisory_unlock($1, $2)", &[&class, &object])
                .await?;
            Ok(())
        });
        frozen.and(unlocked)?;
        self.send_info(edition, namespace)?
            .ok_or_else(|| anyhow!("the send record vanished"))
    }

    fn analyze_journal(&self, c: &Client) -> Result<()> {
        let c = c.clone();
        self.call(async move { Ok(c.batch_execute("ANALYZE journal").await?) })
    }

    /// Joins the send of `edition` as a worker (once per store), starting the heartbeat.
    /// Returns this sender's id and its series of tokens.
    fn join(&self, edition: &str, namespace: &str) -> Result<(i64, Arc<AtomicI64>)> {
        if let Some(w) = self.worker.borrow().as_ref() {
            if w.edition == edition && w.namespace == namespace {
                return Ok((w.id, w.tokens.clone()));
            }
        }
        // Senders killed long ago left their rows; their claims need no row to expire.
        self.execute(
            "DELETE FROM workers WHERE heartbeat < now() - interval '1 day'",
            vec![],
        )?;
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id: i64 = self
            .query_one(
                "INSERT INTO workers (edition, namespace, host, pid, started_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                pg_params![
                    edition.to_string(),
                    namespace.to_string(),
                    host,
                    i64::from(std::process::id()),
                    ts(crate::clock::now())
                ],
            )?
            .get(0);
        let live = Arc::new(AtomicUsize::new(
            self.senders_on(edition, namespace)?.max(1),
        ));
        let tokens = Arc::new(AtomicI64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let pool = self.pool.clone();
        let (e, n, counted) = (edition.to_string(), namespace.to_string(), live.clone());
        let lease = LEASE.as_secs_f64();
        self.spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                }
                let beat = async {
                    let c = pool.get().await?;
                    c.execute("UPDATE workers SET heartbeat = now() WHERE id = $1", &[&id])
                        .await?;
                    let n: i64 = c
                        .query_one(
                            "SELECT count(*) FROM workers WHERE edition = $1 AND namespace = $2
                               AND heartbeat > now() - make_interval(secs => $3)",
                            &[&e, &n, &lease],
                        )
                        .await?
                        .get(0);
                    anyhow::Ok(n)
                };
                match beat.await {
                    Ok(n) => counted.store((n as usize).max(1), Ordering::Relaxed),
                    Err(err) => tracing::warn!("cannot renew this sender's lease: {err:#}"),
                }
            }
        });
        *self.worker.borrow_mut() = Some(Worker {
            id,
            edition: edition.to_string(),
            namespace: namespace.to_string(),
            live,
            tokens: tokens.clone(),
            _stop: stop,
        });
        Ok((id, tokens))
    }

    pub(super) fn senders_on(&self, edition: &str, namespace: &str) -> Result<usize> {
        let n: i64 = self
            .query_one(
                "SELECT count(*) FROM workers WHERE edition = $1 AND namespace = $2
                   AND heartbeat > now() - make_interval(secs => $3)",
                pg_params![
                    edition.to_string(),
                    namespace.to_string(),
                    LEASE.as_secs_f64()
                ],
            )?
            .get(0);
        Ok(n as usize)
    }

    /// How many senders share the send this store works on (1 before it claims any).
    pub(super) fn live_workers(&self) -> Option<Arc<AtomicUsize>> {
        self.worker.borrow().as_ref().map(|w| w.live.clone())
    }

    /// Leaves the send: unsent claims go back to the pool at once (not after the
    /// lease), and the worker row goes. Returns how many other senders are still on
    /// the send.
    pub(super) fn leave(&self) -> Result<usize> {
        let Some(w) = self.worker.borrow_mut().take() else {
            return Ok(0);
        };
        let client = self.client();
        let lease = LEASE.as_secs_f64();
        self.call(async move {
            let c = client.await?;
            c.execute(
                "UPDATE journal SET claimed_by = NULL
                 WHERE claimed_by = $1 AND state IN ('pending', 'deferred')",
                &[&w.id],
            )
            .await?;
            c.execute("DELETE FROM workers WHERE id = $1", &[&w.id])
                .await?;
            let others: i64 = c
                .query_one(
                    "SELECT count(*) FROM workers WHERE edition = $1 AND namespace = $2
                       AND heartbeat > now() - make_interval(secs => $3)",
                    &[&w.edition, &w.namespace, &lease],
                )
                .await?
                .get(0);
            Ok(others as usize)
        })
    }

    /// Claims up to `limit` due recipients with id > `after` for this sender.
    pub(super) fn due(
        &self,
        edition: &str,
        namespace: &str,
        after: i64,
        now: DateTime<Utc>,
        include_in_doubt: bool,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let (worker, tokens) = self.join(edition, namespace)?;
        let claim = Arc::new(Claim::new(
            worker,
            next_token(&tokens),
            edition,
            namespace,
            after,
            now,
            include_in_doubt,
            limit,
        ));
        // A lone statement (its own transaction): this may run inside the caller's.
        let rows = self.call_retrying(move |c| {
            let claim = claim.clone();
            async move { claim.run(&c, false).await }
        })?;
        Ok(claimed(&rows))
    }

    /// Once this process has joined the send (its first claim): a handle that claims
    /// the next batches from another thread, on a connection of its own, so claims do
    /// not wait behind the journal writer's commits, nor the commits behind them.
    pub(super) fn claimer(&self) -> Option<Claimer> {
        let w = self.worker.borrow();
        let w = w.as_ref()?;
        Some(Claimer {
            remote: self.remote(),
            worker: w.id,
            tokens: w.tokens.clone(),
            edition: w.edition.clone(),
            namespace: w.namespace.clone(),
        })
    }

    /// The lowest id above `after` of the recipients of this send that other senders
    /// still hold: claimed ones not yet tried (which come back to the pool if their
    /// sender dies), and in-doubt marks of live senders (whose answer is on its way).
    /// A pending row nobody claimed counts too: a claim passes over the rows another
    /// claim, not yet committed, has locked, so this sender's empty claim does not
    /// mean that nothing is left. Rows only leave that set, but for this sender's own
    /// hand-backs when its run stops (a row another sender defers comes due in a
    /// later run), so a caller that polls looks from its last answer on: with no
    /// index on `state`, each look reads the edition's rows from `after`.
    pub(super) fn first_held_by_others(
        &self,
        edition: &str,
        namespace: &str,
        after: i64,
    ) -> Result<Option<i64>> {
        let me = self.worker.borrow().as_ref().map_or(0, |w| w.id);
        Ok(self
            .query_opt(
                "SELECT j.id FROM journal j
                 WHERE j.edition = $1 AND j.namespace = $2 AND j.id > $5
                   AND j.claimed_by IS DISTINCT FROM $3
                   AND (j.state = 'pending'
                        OR (j.state = 'in_doubt' AND EXISTS (
                            SELECT 1 FROM workers w WHERE w.id = j.claimed_by
                              AND w.heartbeat > now() - make_interval(secs => $4))))
                 ORDER BY j.id LIMIT 1",
                pg_params![
                    edition.to_string(),
                    namespace.to_string(),
                    me,
                    LEASE.as_secs_f64(),
                    after
                ],
            )?
            .map(|r| r.get(0)))
    }

    pub(super) fn clamp_retries(
        &self,
        edition: &str,
        namespace: &str,
        now: DateTime<Utc>,
        latest: DateTime<Utc>,
    ) -> Result<usize> {
        let (client, nested) = (self.client(), self.in_transaction());
        let (e, n, now, latest) = (
            edition.to_string(),
            namespace.to_string(),
            ts(now),
            ts(latest),
        );
        self.call(async move {
            let c = client.await?;
            atomic(&c, nested, async {
                let moved = c
                    .execute(
                        "UPDATE journal SET next_attempt_at = $3
                         WHERE edition = $1 AND namespace = $2 AND state = 'deferred' AND next_attempt_at > $3",
                        &[&e, &n, &latest],
                    )
                    .await?;
                c.execute(
                    "UPDATE journal SET first_attempt_at = $3
                     WHERE edition = $1 AND namespace = $2 AND state = 'deferred' AND first_attempt_at > $3",
                    &[&e, &n, &now],
                )
                .await?;
                Ok(moved as usize)
            })
            .await
        })
    }

    /// Applies changes in one transaction, one statement per batch whatever its size
    /// (so usually one round trip: a lone statement is its own transaction). Returns
    /// the ids of in-doubt marks that must not go out: the address is suppressed (the
    /// row is now `suppressed`), or this sender no longer holds the row (its lease ran
    /// out and another sender claimed it).
    pub(super) fn apply(&self, updates: &[Update]) -> Result<Vec<i64>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        // A batch may change one row twice (a mark and its revert): in runs where
        // no id repeats, so each run is one statement and order is kept.
        let mut runs: Vec<Vec<Update>> = vec![Vec::new()];
        let mut seen = HashSet::new();
        for u in updates {
            if !seen.insert(u.id) {
                runs.push(Vec::new());
                seen.clear();
                seen.insert(u.id);
            }
            runs.last_mut().expect("one run").push(u.clone());
        }
        let (worker, token) = match self.worker.borrow().as_ref() {
            Some(w) => (Some(w.id), Some(next_token(&w.tokens))),
            None => (None, None),
        };
        let runs: Arc<Vec<Vec<Param>>> = Arc::new(
            runs.iter()
                .map(|run| apply_params(run, worker, token))
                .collect(),
        );
        let single = runs.len() == 1 || self.in_transaction();
        // Run again after a lost connection, unless the lost run committed (its note is
        // there): the states it sets are absolute, but a row it handed back may have
        // been claimed, marked and sent by another sender since. Without a sender (no
        // note) the changes are outcomes set by hand or by bounces: absolute, and no
        // other process hands such rows out.
        let tried = Arc::new(AtomicBool::new(false));
        self.call_retrying(move |c| {
            let (runs, tried) = (runs.clone(), tried.clone());
            async move {
                if tried.swap(true, Ordering::Relaxed) {
                    if let Some(refused) = applied(&c, worker, token).await? {
                        return Ok(refused);
                    }
                }
                atomic(&c, single, async {
                    let stmt = c.prepare_cached(APPLY).await?;
                    let mut refused = Vec::new();
                    for params in runs.iter() {
                        for r in c.query(&stmt, &refs(params)).await? {
                            refused.push(r.get(0));
                        }
                    }
                    Ok(refused)
                })
                .await
            }
        })
    }

    pub(super) fn counts(&self, edition: &str, namespace: &str) -> Result<Counts> {
        let mut c = Counts::default();
        let params = || pg_params![edition.to_string(), namespace.to_string()];
        for r in self.query(
            "SELECT state, count(*) FROM journal WHERE edition = $1 AND namespace = $2 GROUP BY state",
            params(),
        )? {
            if let Some(s) = State::parse(r.get(0)) {
                c.add(s, r.get::<_, i64>(1) as u64);
            }
        }
        c.next_retry = super::journal::parse_ts(
            self.query_one(
                "SELECT min(next_attempt_at) FROM journal
                 WHERE edition = $1 AND namespace = $2 AND state = 'deferred'
                   AND next_attempt_at IS NOT NULL",
                params(),
            )?
            .get(0),
        );
        if let Some(info) = self.send_info(edition, namespace)? {
            c.invalid = info.invalid;
        }
        Ok(c)
    }

    pub(super) fn finish(&self, edition: &str, namespace: &str, at: DateTime<Utc>) -> Result<()> {
        self.execute(
            "UPDATE sends SET finished_at = coalesce(finished_at, $3) WHERE edition = $1 AND namespace = $2",
            pg_params![edition.to_string(), namespace.to_string(), ts(at)],
        )?;
        Ok(())
    }

    pub(super) fn sends(&self) -> Result<Vec<SendInfo>> {
        Ok(self
            .query(
                &format!(
                    "SELECT {SEND_COLUMNS} FROM sends ORDER BY started_at, edition, namespace"
                ),
                vec![],
            )?
            .iter()
            .map(send_info_row)
            .collect())
    }

    pub(super) fn recipients(
        &self,
        edition: &str,
        namespace: &str,
        state: State,
    ) -> Result<Vec<(String, Option<String>)>> {
        Ok(self
            .query(
                "SELECT address, reply FROM journal WHERE edition = $1 AND namespace = $2 AND state = $3 ORDER BY id",
                pg_params![edition.to_string(), namespace.to_string(), state.as_str()],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }
}

/// The claim: one statement, `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED
/// LIMIT n) RETURNING …`. The pending rows are read in id order from where this
/// sender's last claim ended (`$4`), passing over the rows another live sender holds;
/// the retries come from their own index.
fn claim_sql(include_in_doubt: bool) -> String {
    let claimable = "c.edition = $2 AND c.namespace = $3 AND c.id > $4
          AND (c.claimed_by IS NULL OR NOT EXISTS (
               SELECT 1 FROM workers w WHERE w.id = c.claimed_by
                 AND w.heartbeat > now() - make_interval(secs => $7)))";
    let pending = format!(
        "SELECT c.id FROM journal c WHERE c.state = 'pending' AND {claimable}
         ORDER BY c.id LIMIT $6"
    );
    // No index holds `state` (see PG_HOT_SCHEMA): the rare in-doubt rows are looked
    // for only up to the last pending row this claim takes, so that a claim does not
    // read the rest of the list each time.
    let (with, pending, in_doubt) = if include_in_doubt {
        (
            format!("WITH pending AS MATERIALIZED ({pending})"),
            "SELECT id FROM pending".to_string(),
            format!(
                "UNION ALL (SELECT c.id FROM journal c WHERE c.state = 'in_doubt' AND {claimable}
                              AND c.id <= (SELECT CASE WHEN count(*) < $6 THEN {} ELSE max(id) END
                                           FROM pending)
                            ORDER BY c.id LIMIT $6)",
                i64::MAX
            ),
        )
    } else {
        (String::new(), pending, String::new())
    };
    format!(
        "{with}
         UPDATE journal j SET claimed_by = $1, claim = $8
         WHERE j.id IN (
             SELECT c.id FROM journal c
             WHERE c.id IN (
                 ({pending})
                 UNION ALL
                 (SELECT c.id FROM journal c WHERE c.state = 'deferred' AND {claimable}
                    AND c.next_attempt_at <= $5
                  ORDER BY c.id LIMIT $6)
                 {in_doubt}
                 ORDER BY 1 LIMIT $6)
               AND {claimable}
             FOR UPDATE SKIP LOCKED)
         RETURNING j.id, j.address, j.name, j.fields, j.state, j.attempts,
             j.first_attempt_at,
             EXISTS (SELECT 1 FROM suppressions s WHERE s.address_key = j.address_key)"
    )
}

/// The next token of a sender's series.
fn next_token(tokens: &AtomicI64) -> i64 {
    tokens.fetch_add(1, Ordering::Relaxed) + 1
}

/// One claim call, run again on a new connection when its answer was lost.
struct Claim {
    sql: String,
    params: Vec<Param>,
    /// The parameters of [`TAKE_BACK`].
    taken: Vec<Param>,
    /// Set at the first run: a later one is a retry.
    tried: AtomicBool,
}

/// The rows with id > `$4` that sender `$1` claimed under token `$5`, still in one
/// of the states `$6` a claim takes (read in id order from `$4`: a retry after a lost
/// answer is rare).
const TAKE_BACK: &str = "SELECT j.id, j.address, j.name, j.fields, j.state, j.attempts,
    j.first_attempt_at,
    EXISTS (SELECT 1 FROM suppressions s WHERE s.address_key = j.address_key)
FROM journal j
WHERE j.edition = $2 AND j.namespace = $3 AND j.state = ANY($6::text[]) AND j.id > $4
  AND j.claimed_by = $1 AND j.claim = $5";

impl Claim {
    #[allow(clippy::too_many_arguments)]
    fn new(
        worker: i64,
        token: i64,
        edition: &str,
        namespace: &str,
        after: i64,
        now: DateTime<Utc>,
        include_in_doubt: bool,
        limit: usize,
    ) -> Claim {
        let mut states = vec![State::Pending, State::Deferred];
        if include_in_doubt {
            states.push(State::InDoubt);
        }
        let states: Vec<String> = states.iter().map(|s| s.as_str().to_string()).collect();
        Claim {
            sql: claim_sql(include_in_doubt),
            params: pg_params![
                worker,
                edition.to_string(),
                namespace.to_string(),
                after,
                ts(now),
                limit as i64,
                LEASE.as_secs_f64(),
                token
            ],
            taken: pg_params![
                worker,
                edition.to_string(),
                namespace.to_string(),
                after,
                token,
                states
            ],
            tried: AtomicBool::new(false),
        }
    }

    /// Runs the claim on `c`: `pipelined`, in a transaction of its own sent in one
    /// round trip; or else as a lone statement. A retry (after a lost connection)
    /// first takes back what the lost run took if it committed, the rows still under
    /// its token, and claims anew only if there are none. Not every row this sender
    /// holds: those of its earlier claims may be waiting in this process's queue.
    async fn run(&self, c: &Client, pipelined: bool) -> Result<Vec<tokio_postgres::Row>> {
        if self.tried.swap(true, Ordering::Relaxed) {
            let rows = c.query(TAKE_BACK, &refs(&self.taken)).await?;
            if !rows.is_empty() {
                return Ok(rows);
            }
        }
        let stmt = c.prepare_cached(&self.sql).await?;
        let params = refs(&self.params);
        if !pipelined {
            return Ok(c.query(&stmt, &params).await?);
        }
        // A claim's commit need not wait for its WAL flush: the mark that follows
        // lands only on a row this sender holds, and its own (flushed) commit is later
        // in the log.
        let (begun, rows, committed) = tokio::join!(
            c.batch_execute("BEGIN; SET LOCAL synchronous_commit TO off"),
            c.query(&stmt, &params),
            c.batch_execute("COMMIT"),
        );
        begun?;
        let rows = rows?;
        committed?;
        Ok(rows)
    }
}

/// The claimed rows, in id order.
fn claimed(rows: &[tokio_postgres::Row]) -> Vec<Entry> {
    let mut page: Vec<Entry> = rows
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            address: r.get(1),
            name: r.get(2),
            fields: r.get(3),
            state: State::parse(r.get(4)).unwrap_or(State::Pending),
            attempts: r.get::<_, i64>(5) as u32,
            first_attempt_at: super::journal::parse_ts(r.get(6)),
            suppressed: r.get(7),
        })
        .collect();
    page.sort_by_key(|e| e.id);
    page
}

/// Claims for one joined sender from any thread (see [`Store::claimer`](super::Store::claimer)).
#[derive(Clone)]
pub struct Claimer {
    remote: Remote,
    worker: i64,
    tokens: Arc<AtomicI64>,
    edition: String,
    namespace: String,
}

impl Claimer {
    /// Claims up to `limit` due recipients with id > `after`, like [`Store::due`](super::Store::due).
    pub async fn due(
        &self,
        after: i64,
        now: DateTime<Utc>,
        include_in_doubt: bool,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let claim = Arc::new(Claim::new(
            self.worker,
            next_token(&self.tokens),
            &self.edition,
            &self.namespace,
            after,
            now,
            include_in_doubt,
            limit,
        ));
        let rows = self
            .remote
            .call_retrying(move |c| {
                let claim = claim.clone();
                async move { claim.run(&c, true).await }
            })
            .await?;
        Ok(claimed(&rows))
    }
}

/// One run of updates with distinct ids in one statement: a mark (`guarded`) lands
/// only on a row this sender holds, and as `suppressed` (its other columns kept) when
/// the address is on the suppression list, checked in the same statement, so in the
/// same transaction; a row handed back (pending, deferred) is released for any
/// sender. Returns the ids of the marks refused: the address is suppressed, or the
/// row is no longer this sender's. `u` is materialized so the suppression check runs
/// once a row, not once for each column that depends on it. The sender's `workers`
/// row notes the commit's token (`$10`) and the marks refused, added to those of the
/// earlier runs of the same commit, for a retry that finds the answer lost.
const APPLY: &str = "WITH u AS MATERIALIZED (
    SELECT u.*, u.guarded AND EXISTS (
               SELECT 1 FROM journal k JOIN suppressions s ON s.address_key = k.address_key
               WHERE k.id = u.id) AS suppressed
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                $7::text[], $8::bool[])
         AS u(id, state, at, reply, message_id, attempt, next, guarded)
),
changed AS (
    UPDATE journal j SET
        state = CASE WHEN u.suppressed THEN 'suppressed' ELSE u.state END,
        updated_at = u.at,
        reply = CASE WHEN u.suppressed THEN j.reply ELSE coalesce(u.reply, j.reply) END,
        message_id = CASE WHEN u.suppressed THEN j.message_id
                          ELSE coalesce(u.message_id, j.message_id) END,
        attempts = CASE WHEN u.suppressed THEN j.attempts ELSE j.attempts + u.attempt END,
        first_attempt_at = CASE WHEN u.attempt = 1 AND NOT u.suppressed
                                THEN coalesce(j.first_attempt_at, u.at)
                                ELSE j.first_attempt_at END,
        next_attempt_at = CASE WHEN u.suppressed THEN j.next_attempt_at ELSE u.next END,
        claimed_by = CASE WHEN u.suppressed OR u.state IN ('pending', 'deferred') THEN NULL
                          ELSE j.claimed_by END
    FROM u
    WHERE j.id = u.id AND (NOT u.guarded OR j.claimed_by IS NOT DISTINCT FROM $9)
    RETURNING j.id, u.suppressed
),
indexed AS (
    INSERT INTO journal_message_ids (message_id, journal_id)
    SELECT u.message_id, u.id FROM u JOIN changed c ON c.id = u.id
    WHERE u.message_id IS NOT NULL AND NOT c.suppressed
    ON CONFLICT (message_id) DO NOTHING
),
refused AS (
    SELECT u.id FROM u
    WHERE u.guarded
      AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.id = u.id AND NOT c.suppressed)
),
noted AS (
    UPDATE workers w SET
        applied = $10,
        applied_refused = CASE WHEN w.applied = $10 THEN w.applied_refused ELSE '{}' END
                          || ARRAY(SELECT id FROM refused ORDER BY id)
    WHERE w.id = $9
)
SELECT id FROM refused ORDER BY id";

/// The marks refused by this sender's commit `token`, if it committed (its note is in
/// the `workers` row: a sender makes one commit at a time).
async fn applied(c: &Client, worker: Option<i64>, token: Option<i64>) -> Result<Option<Vec<i64>>> {
    let Some(worker) = worker else {
        return Ok(None);
    };
    let row = c
        .query_opt(
            "SELECT applied_refused FROM workers WHERE id = $1 AND applied = $2",
            &[&worker, &token],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The parameters of [`APPLY`] for one run.
fn apply_params(run: &[Update], worker: Option<i64>, token: Option<i64>) -> Vec<Param> {
    let column = |f: &dyn Fn(&Update) -> Option<String>| -> Vec<Option<String>> {
        run.iter().map(f).collect()
    };
    pg_params![
        run.iter().map(|u| u.id).collect::<Vec<i64>>(),
        column(&|u| Some(u.state.as_str().to_string())),
        column(&|u| Some(ts(u.at))),
        column(&|u| u.reply.clone()),
        column(&|u| u.message_id.clone()),
        run.iter()
            .map(|u| i64::from(u.attempt))
            .collect::<Vec<i64>>(),
        column(&|u| u.next_attempt_at.map(ts)),
        run.iter()
            .map(|u| u.unless_suppressed)
            .collect::<Vec<bool>>(),
        worker,
        token
    ]
}
