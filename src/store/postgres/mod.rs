//! Storage on PostgreSQL (`--store postgres://...`), for running several decentd nodes on one
//! database. The schema lives in `migrations/postgres/` and is applied at startup.
//!
//! The `Storage` trait is synchronous (sled answers in microseconds). Here each call takes a
//! pooled connection (deadpool-postgres) and waits for its queries on the calling thread; the
//! connections themselves are driven by a small runtime of their own, so a call made from any
//! thread, inside an async task or not, cannot starve them. Every write is one statement or
//! one transaction, committed before the call returns (`synchronous_commit` as the server
//! has it, on by default): an acknowledged write is durable, and `durable()` has nothing left
//! to wait for.

mod export;
mod storage;

use deadpool_postgres::{GenericClient, Object, Pool};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use super::{Result, StoreError};
use crate::ids::IdGenerator;

/// The schema migrations, in order: (version, name, SQL). Applied at startup, each in the
/// transaction that records it in `schema_migrations`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "cluster",
        include_str!("../../../migrations/postgres/0002_cluster.sql"),
    ),
];

/// How long a call waits for a pooled connection (or a new one) before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side limit of one statement.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// Any lock `pg_advisory_xact_lock` takes: the migrations' (one node migrates at a time).
const MIGRATION_LOCK: i64 = 0x6465_6365_6e74_6401;

/// The pool and the runtime that drives its connections.
#[derive(Clone, Debug)]
pub(super) struct Db {
    pool: Pool,
    handle: tokio::runtime::Handle,
}

impl Db {
    /// A pooled connection, waited for on this thread.
    fn client(&self) -> Result<Object> {
        // In the pool's runtime context: its timers, and the task of a new connection, belong
        // to that runtime, whose threads drive them while this thread waits.
        let _context = self.handle.enter();
        wait(self.pool.get()).map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs `work` with a pooled connection, waiting on this thread.
    pub(super) fn run<T>(&self, work: impl AsyncFnOnce(&mut Object) -> Result<T>) -> Result<T> {
        let mut client = self.client()?;
        wait(work(&mut client))
    }
}

/// Waits for `future` on this thread, outside tokio's cooperative budget.
///
/// A call made from an async task (an HTTP worker) runs inside that task's poll, whose budget
/// (128 operations on tokio resources: the pool's semaphore, timers, the connection's
/// channels) is thread-local and only refilled when the runtime polls its next task. A request
/// that made more calls than that spent it: every tokio resource then answered "not yet" and
/// woke the waiter at once, forever, and the worker never came back (a server with 125+
/// channels hung on its first `GET /api/channels`). Waiting here never yields to that runtime,
/// so the budget has nothing to protect.
fn wait<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(tokio::task::unconstrained(future))
}

/// Runs one statement (prepared once per connection) and returns its rows.
pub(super) async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// Runs one statement and returns its one row, if any.
pub(super) async fn row(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

/// Runs one statement and returns the number of rows it changed.
pub(super) async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// A jsonb column as a record.
pub(super) fn record<T: DeserializeOwned>(row: &Row, column: usize) -> Result<T> {
    Ok(row.try_get::<_, Json<T>>(column)?.0)
}

/// A bigint column as an id.
pub(super) fn id(row: &Row, column: usize) -> Result<u64> {
    Ok(row.try_get::<_, i64>(column)? as u64)
}

/// An id or time as a bigint (values past `i64::MAX`, such as "never", are clamped).
pub(super) fn big(value: u64) -> i64 {
    value.min(i64::MAX as u64) as i64
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
                StoreError::Duplicate(db.to_string())
            } else {
                StoreError::Database(db.to_string())
            }
        } else {
            // No answer from the server: the connection broke or never came up.
            StoreError::Unavailable(e.to_string())
        }
    }
}

/// Whether a database error is a unique-constraint violation (a taken name).
pub(super) fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Duplicate(_))
}

/// Storage on PostgreSQL.
#[derive(Debug)]
pub struct PgStore {
    db: Db,
    ids: IdGenerator,
    /// This node's number (bits 10..20 of its ids).
    node: u64,
    /// Imported messages not yet written (`import` batches them; `flush` writes them).
    pending: parking_lot::Mutex<Vec<super::MessageRecord>>,
    /// Stops the connections' runtime when the store is dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl PgStore {
    /// Connects to `url` with at most `pool_size` connections, applies pending migrations and
    /// takes a node number. Fails with the server's error when the database cannot be reached.
    pub fn connect(url: &str, pool_size: usize) -> Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("the --store URL is not valid: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("decentd");
        }
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(15))
            .options(format!(
                "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c client_min_messages=warning"
            ));
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("decentd-postgres")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("decentd-postgres".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })?;
        let pool = {
            let _entered = handle.enter();
            Pool::builder(manager)
                .max_size(pool_size.max(2))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
        };
        let db = Db { pool, handle };
        db.run(async |c| migrate(c).await)?;
        let (node, floor) = db.run(async |c| {
            let node = row(&*c, "SELECT nextval('node_numbers')", &[])
                .await?
                .map_or(Ok(0), |r| id(&r, 0))?;
            let floor = row(
                &*c,
                "SELECT GREATEST((SELECT max(id) FROM users), (SELECT max(id) FROM roles), \
                 (SELECT max(id) FROM channels), (SELECT max(id) FROM messages), \
                 (SELECT max(id) FROM licenses), (SELECT max(id) FROM direct_messages))",
                &[],
            )
            .await?
            .and_then(|r| r.try_get::<_, Option<i64>>(0).ok().flatten())
            .unwrap_or(0);
            Ok((node, floor as u64))
        })?;
        let node = node % 1024;
        tracing::info!(node, "connected to PostgreSQL");
        Ok(Self {
            db,
            ids: IdGenerator::for_node(node, floor),
            node,
            pending: parking_lot::Mutex::new(Vec::new()),
            _stop: stop,
        })
    }

    /// This node's number in the cluster (0..1024), taken at startup.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i32> {
        self.db.run(async |c| {
            Ok(row(&*c, "SELECT max(version) FROM schema_migrations", &[])
                .await?
                .and_then(|r| r.try_get::<_, Option<i32>>(0).ok().flatten())
                .unwrap_or(0))
        })
    }
}

/// Applies the migrations the database has not seen, one node at a time. A database migrated
/// by a newer decentd is refused.
async fn migrate(c: &mut Object) -> Result<()> {
    let t = c.transaction().await?;
    t.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    t.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version integer PRIMARY KEY, \
             name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let current: i32 = t
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(StoreError::Database(format!(
            "the database has schema version {current}, newer than this decentd knows ({newest}); \
             run a newer decentd"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        t.batch_execute(sql).await?;
        t.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tracing::info!(version, name, "applied a database migration");
    }
    t.commit().await?;
    Ok(())
}
