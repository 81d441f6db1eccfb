//! The PostgreSQL engine: a pool of connections driven by a small runtime of its own.
//!
//! The store's API is synchronous (the journal writer is a thread; `brief serve` calls
//! it under a mutex from async code), and `Runtime::block_on` panics inside a runtime.
//! So the engine owns one thread running a current-thread runtime; each call is a
//! future handed to it over a channel, and the caller blocks on a std channel for the
//! answer. That is safe from any thread, async or not. Async code elsewhere (the
//! delivery's producer claiming ahead) awaits the answer instead, through a
//! [`Remote`], without blocking its runtime.
//!
//! The schema is versioned ([`MIGRATIONS`]); it is brought up to date on first use under
//! a transaction-scoped advisory lock, so two processes starting on an empty database
//! at the same instant create it once. A database whose schema is newer than this
//! binary knows is refused.

use anyhow::{anyhow, bail, Context, Result};
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// One parameter of a statement, owned (the statement runs on the engine's thread).
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// `pg_params![a, b]`: the owned parameters of a statement.
macro_rules! pg_params {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as $crate::store::pg::Param),*]
    };
}
pub(super) use pg_params;

/// The schema, one step per version: step `i` brings version `i` to `i + 1`. A new
/// table is a new step appended here (never an edit of a released step).
const MIGRATIONS: &[&[&str]] = &[
    &[
        super::suppressions::PG_SCHEMA,
        super::journal::PG_SCHEMA,
        super::reports::PG_SCHEMA,
        super::bounces::PG_SCHEMA,
        super::events::PG_SCHEMA,
    ],
    // Sponsor reports: tracked links and clicks.
    &[super::clicks::PG_SCHEMA],
    // Managed lists, consents, pending signups and signup mails.
    &[super::lists::PG_SCHEMA],
    // Claim and commit tokens: a retry after a lost answer knows what landed.
    &[super::pg_journal::PG_TOKENS_SCHEMA],
    // A journal whose updates are HOT: no index on what a send changes.
    &[
        super::pg_journal::PG_HOT_SCHEMA,
        super::pg_journal::INDEX_MESSAGE_IDS,
    ],
];

/// The schema version this binary writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Any number: the key of the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x6272_6965_6673_6368; // "briefsch"

/// How long a call waits for an unreachable database before it fails.
const WAIT_FOR_DATABASE: Duration = Duration::from_secs(30);

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(super) struct Pg {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    pub(super) pool: Pool,
    /// This process as a sender of one send (see `pg_journal.rs`), once it claims.
    pub(super) worker: RefCell<Option<super::pg_journal::Worker>>,
    /// The connection of the open `Store::transaction`, if any: every call uses it.
    pinned: RefCell<Option<Arc<Object>>>,
    /// `postgres://user@host:port/db`, without the password, for messages.
    pub(super) name: String,
    /// Set once the database stayed away past [`WAIT_FOR_DATABASE`]: the run is
    /// stopping, and what it still does (handing back claims) does not wait again.
    away: Arc<AtomicBool>,
}

/// A shared handle to one pooled connection.
pub(super) type Client = Arc<Object>;

/// Checks that `url` is a PostgreSQL URL this engine can use.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// (PostgreSQL is the only server engine)".into());
    }
    parse_url(url).map(|_| ())
}

/// The tokio-postgres config of `url`, and whether (and with which CA file) to use TLS.
/// tokio-postgres knows `sslmode` disable/prefer/require; `verify-ca` and
/// `verify-full` are what rustls does anyway (it always verifies the server), so they
/// mean `require` here, and `sslrootcert` names the CA instead of the system roots.
/// With TLS asked for, a server that does not offer it is refused (tokio-postgres's
/// default, `prefer`, would go on in clear).
fn parse_url(
    url: &str,
) -> std::result::Result<(tokio_postgres::Config, Option<Option<String>>), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut tls = false;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("sslmode", "require" | "verify-ca" | "verify-full") => tls = true,
            ("sslmode", "disable" | "prefer" | "allow") => {}
            ("sslmode", other) => return Err(format!("has an unknown sslmode `{other}`")),
            ("sslrootcert", path) => root = Some(path.to_string()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("is not a usable PostgreSQL URL: {e}"))?;
    if tls {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    if config.get_dbname().is_none() {
        return Err("names no database (postgres://USER@HOST:PORT/DB)".into());
    }
    Ok((config, tls.then_some(root)))
}

/// `url` without its password, for messages.
fn display_name(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

fn tls_connector(root: Option<String>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let pem =
                std::fs::read(&path).with_context(|| format!("cannot read sslrootcert {path}"))?;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                roots
                    .add(cert.with_context(|| format!("sslrootcert {path} is not PEM"))?)
                    .with_context(|| format!("sslrootcert {path}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl Pg {
    /// Connects to the database at `url` and brings its schema up to date.
    pub(super) fn open(url: &str, password: Option<&str>) -> Result<Pg> {
        let pg = Pg::connect(url, password)?;
        pg.migrate()
            .with_context(|| format!("cannot use the state store {}", pg.name))?;
        Ok(pg)
    }

    /// Connects to the database at `url` for looking, or `None` when brief never wrote
    /// to it: nothing is created or migrated.
    pub(super) fn open_existing(url: &str, password: Option<&str>) -> Result<Option<Pg>> {
        let pg = Pg::connect(url, password)?;
        let client = pg.client_within(Duration::ZERO);
        let version = pg
            .call(async move {
                let c = client.await?;
                let table: Option<String> = c
                    .query_one("SELECT to_regclass('brief_schema')::text", &[])
                    .await?
                    .get(0);
                if table.is_none() {
                    return Ok(None);
                }
                let row = c
                    .query_opt("SELECT version FROM brief_schema WHERE id = 1", &[])
                    .await?;
                Ok(row.map(|r| r.get::<_, i64>(0)))
            })
            .with_context(|| format!("cannot read the state store {}", pg.name))?;
        match version {
            None => Ok(None),
            Some(v) if v > SCHEMA_VERSION => bail!(
                "cannot read the state store {}: its schema is version {v}, newer than this brief knows ({SCHEMA_VERSION}): upgrade brief on this machine",
                pg.name
            ),
            Some(v) if v < SCHEMA_VERSION => {
                // An older schema lacks tables this brief reads: bring it up to date.
                pg.migrate()
                    .with_context(|| format!("cannot use the state store {}", pg.name))?;
                Ok(Some(pg))
            }
            Some(_) => Ok(Some(pg)),
        }
    }

    fn connect(url: &str, password: Option<&str>) -> Result<Pg> {
        let (mut config, tls) = parse_url(url).map_err(|why| anyhow!("the state URL {why}"))?;
        if let Some(p) = password {
            config.password(p);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("brief");
        let name = display_name(&config);
        let manager_config = ManagerConfig {
            // A restarted server closes its connections: a closed one is replaced.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(root) => Manager::from_config(config, tls_connector(root)?, manager_config),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(8)
            // On a large journal a generic plan's estimate can pass `jit_above_cost`,
            // and compiling a claim then takes far longer than running it.
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute("SET jit = off")
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("cannot build the connection pool")?;
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the database runtime")?;
        std::thread::Builder::new()
            .name("brief-postgres".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job);
                    }
                })
            })
            .context("cannot start the database thread")?;
        Ok(Pg {
            jobs,
            pool,
            worker: RefCell::new(None),
            pinned: RefCell::new(None),
            name,
            away: Arc::default(),
        })
    }

    /// Runs `fut` on the engine's runtime in the background.
    pub(super) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let _ = self.jobs.send(Box::pin(fut));
    }

    /// Runs `fut` on the engine's runtime and waits for its result.
    pub(super) fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::pin(async move {
                let _ = tx.send(fut.await);
            }))
            .map_err(|_| anyhow!("the database thread stopped"))?;
        rx.recv()
            .map_err(|_| anyhow!("the database thread stopped"))?
    }

    /// A future that yields the connection to use: the open transaction's, or one from
    /// the pool (waiting, within a bound, for a database that is restarting).
    pub(super) fn client(&self) -> impl Future<Output = Result<Client>> + Send + 'static {
        let gone = self.away.load(Ordering::Relaxed);
        self.client_within(if gone {
            Duration::ZERO
        } else {
            WAIT_FOR_DATABASE
        })
    }

    fn client_within(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Client>> + Send + 'static {
        let pinned = self.pinned.borrow().clone();
        let (pool, name, away) = (self.pool.clone(), self.name.clone(), self.away.clone());
        async move {
            match pinned {
                Some(c) => Ok(c),
                None => pooled(&pool, &name, wait, &away).await,
            }
        }
    }

    /// A handle that runs futures on this engine's runtime from any thread or runtime,
    /// without blocking (the connections live on that runtime).
    pub(super) fn remote(&self) -> Remote {
        Remote {
            jobs: self.jobs.clone(),
            pool: self.pool.clone(),
            name: self.name.clone(),
            away: self.away.clone(),
        }
    }

    /// Whether a `Store::transaction` is open (calls must not begin their own).
    pub(super) fn in_transaction(&self) -> bool {
        self.pinned.borrow().is_some()
    }

    /// Runs a statement made by `attempt` on a connection; when the connection was
    /// lost (a server restarting) it runs it again on a new one, for up to
    /// [`WAIT_FOR_DATABASE`]. The statements of the store can run twice: they set
    /// states, insert what is missing, delete what is there; a claim and a journal
    /// commit, whose second run would not be the same, first look for what a first
    /// run that committed left (see `pg_journal.rs`). Inside
    /// `Store::transaction` nothing is retried (the transaction is gone).
    pub(super) fn call_retrying<T, Fut>(
        &self,
        attempt: impl Fn(Client) -> Fut + Clone + Send + Sync + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let started = Instant::now();
        loop {
            let (client, attempt) = (self.client(), attempt.clone());
            match self.call(async move {
                let c = client.await?;
                attempt(c).await
            }) {
                Err(e)
                    if !self.in_transaction()
                        && lost_connection(&e)
                        && started.elapsed() < WAIT_FOR_DATABASE
                        && !self.away.load(Ordering::Relaxed) =>
                {
                    tracing::warn!("the database {} went away; trying again: {e:#}", self.name);
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) if !self.in_transaction() && lost_connection(&e) => {
                    return Err(stayed_away(e, &self.name, &self.away));
                }
                other => return other,
            }
        }
    }

    pub(super) fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64> {
        let (sql, params) = (Arc::new(sql.to_string()), Arc::new(params));
        self.call_retrying(move |c| {
            let (sql, params) = (sql.clone(), params.clone());
            async move {
                let stmt = c.prepare_cached(&sql).await?;
                Ok(c.execute(&stmt, &refs(&params)).await?)
            }
        })
    }

    pub(super) fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        let (sql, params) = (Arc::new(sql.to_string()), Arc::new(params));
        self.call_retrying(move |c| {
            let (sql, params) = (sql.clone(), params.clone());
            async move {
                let stmt = c.prepare_cached(&sql).await?;
                Ok(c.query(&stmt, &refs(&params)).await?)
            }
        })
    }

    pub(super) fn query_opt(&self, sql: &str, params: Vec<Param>) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub(super) fn query_one(&self, sql: &str, params: Vec<Param>) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| anyhow!("the database returned no row"))
    }

    /// Runs `f` with one connection pinned: one database transaction.
    pub(super) fn transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let client = self.client();
        let c = self.call(async move {
            let c = client.await?;
            c.batch_execute("BEGIN").await?;
            Ok(c)
        })?;
        *self.pinned.borrow_mut() = Some(c.clone());
        let result = f();
        *self.pinned.borrow_mut() = None;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.call(async move { Ok(c.batch_execute(end).await?) });
        match (result, ended) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(e.context("cannot commit to the state store")),
            (Err(e), _) => Err(e),
        }
    }

    fn migrate(&self) -> Result<()> {
        // At start an unreachable database is an error at once, not after a wait.
        let client = self.client_within(Duration::ZERO);
        self.call(async move {
            let c = client.await?;
            c.batch_execute("BEGIN").await?;
            let migrated = async {
                c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                    .await?;
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS brief_schema (
                         id      INTEGER PRIMARY KEY CHECK (id = 1),
                         version BIGINT NOT NULL
                     )",
                )
                .await?;
                let version: i64 = c
                    .query_opt("SELECT version FROM brief_schema WHERE id = 1", &[])
                    .await?
                    .map_or(0, |r| r.get(0));
                if version > SCHEMA_VERSION {
                    bail!(
                        "its schema is version {version}, newer than this brief knows ({SCHEMA_VERSION}): upgrade brief on this machine (an older brief must not write a newer store)"
                    );
                }
                for (step, statements) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                    for sql in *statements {
                        c.batch_execute(sql)
                            .await
                            .with_context(|| format!("schema step {}", step + 1))?;
                    }
                }
                c.execute(
                    "INSERT INTO brief_schema (id, version) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    &[&SCHEMA_VERSION],
                )
                .await?;
                Ok(())
            }
            .await;
            match migrated {
                Ok(()) => Ok(c.batch_execute("COMMIT").await?),
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
    }
}

/// A connection from `pool`, waiting up to `wait` for a database that is restarting.
async fn pooled(pool: &Pool, name: &str, wait: Duration, away: &AtomicBool) -> Result<Client> {
    let started = Instant::now();
    loop {
        match pool.get().await {
            Ok(c) => return Ok(Arc::new(c)),
            Err(e) if started.elapsed() < wait => {
                tracing::warn!("waiting for the database {name}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) if wait.is_zero() => {
                return Err(
                    anyhow!(e).context(format!("cannot reach the database {name} (waited 0s)"))
                )
            }
            // Reachable once, then away for longer than the wait.
            Err(e) => return Err(stayed_away(anyhow!(e), name, away)),
        }
    }
}

/// `e`, from a database that stayed away past the wait, marked as such
/// ([`crate::exit::StoreAway`]: the send stops incomplete, not failed); what the run
/// still does after it does not wait again.
fn stayed_away(e: anyhow::Error, name: &str, away: &AtomicBool) -> anyhow::Error {
    away.store(true, Ordering::Relaxed);
    if crate::exit::store_away(&e).is_some() {
        return e;
    }
    e.context(crate::exit::StoreAway {
        name: name.to_string(),
        waited_secs: WAIT_FOR_DATABASE.as_secs(),
    })
}

/// The engine's runtime and pool, for async callers on other threads (see
/// [`Pg::remote`]).
#[derive(Clone)]
pub(super) struct Remote {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    pool: Pool,
    name: String,
    away: Arc<AtomicBool>,
}

impl Remote {
    /// Runs a statement made by `attempt` on a pooled connection of the engine's
    /// runtime, like [`Pg::call_retrying`] (again on a new connection when one was lost,
    /// for up to [`WAIT_FOR_DATABASE`]), and awaits its result without blocking.
    pub(super) async fn call_retrying<T, Fut>(
        &self,
        attempt: impl Fn(Client) -> Fut + Send + Sync + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (pool, name, away) = (self.pool.clone(), self.name.clone(), self.away.clone());
        self.jobs
            .send(Box::pin(async move {
                let started = Instant::now();
                let result = loop {
                    let wait = if away.load(Ordering::Relaxed) {
                        Duration::ZERO
                    } else {
                        WAIT_FOR_DATABASE
                    };
                    let tried = match pooled(&pool, &name, wait, &away).await {
                        Ok(c) => attempt(c).await,
                        Err(e) => Err(e),
                    };
                    match tried {
                        Err(e)
                            if lost_connection(&e)
                                && started.elapsed() < WAIT_FOR_DATABASE
                                && !away.load(Ordering::Relaxed) =>
                        {
                            tracing::warn!("the database {name} went away; trying again: {e:#}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) if lost_connection(&e) => break Err(stayed_away(e, &name, &away)),
                        other => break other,
                    }
                };
                let _ = tx.send(result);
            }))
            .map_err(|_| anyhow!("the database thread stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the database thread stopped"))?
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Err(e) = self.leave().map(drop) {
            tracing::warn!(
                "cannot hand back this sender's claims (they return after the lease): {e:#}"
            );
        }
    }
}

/// Whether `e` says the connection is gone (the server restarting or unreachable),
/// not that a statement was wrong.
fn lost_connection(e: &anyhow::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.chain().any(|cause| {
        if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            pg.is_closed()
                || pg.code().is_some_and(|c| {
                    [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                    ]
                    .contains(c)
                })
                || std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>())
        } else {
            cause.is::<deadpool_postgres::PoolError>() || cause.is::<std::io::Error>()
        }
    })
}

/// The borrowed form tokio-postgres takes.
pub(super) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}
