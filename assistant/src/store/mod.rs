//! The product's state: conversations, cases, application drafts, MyData consent and transfer
//! records, the audit log, accounts and sessions.
//!
//! SQLite by default (one file, WAL journal with `synchronous = FULL`, so a row whose write
//! returned survives `kill -9` and power loss); PostgreSQL when `server.database_url` is a
//! `postgres://` URL (several stateless instances behind a load balancer). Both run the same
//! numbered migrations, applied at open in one transaction each; the only dialect difference
//! is the auto-numbered id column (`{id}` in the migration text). Queries use `?N`
//! placeholders (rewritten to `$N` for PostgreSQL) and only SQL both share.

use std::path::Path;
use std::sync::{Arc, Mutex};

mod accounts;
mod analytics;
mod audit;
mod calls;
mod cases;
mod conversations;
mod guides;
mod migrations;
mod mydata;

pub use accounts::{LoginLock, SessionRow, UserRow};
pub use analytics::{CaseRecord, GapRow};
pub use audit::AuditRow;
pub use calls::CallRow;
pub use conversations::{ConversationRow, HandoffRow};
pub use guides::guide_digest;
pub use migrations::MIGRATIONS;
pub use mydata::{TransferLogStore, TransferRow};

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<u64> for Val {
    fn from(v: u64) -> Val {
        Val::Int(v as i64)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(i64::from(v))
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map(Into::into).unwrap_or(Val::Null)
    }
}

/// Parameters for a query: `params![a, b]`.
#[macro_export]
macro_rules! params {
    ($($e:expr),* $(,)?) => { &[$($crate::store::Val::from(::std::clone::Clone::clone(&$e))),*][..] };
}
pub use crate::params;

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Some(s.clone()),
            Some(Val::Int(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Val::Int(n)) => *n,
            Some(Val::Text(s)) => s.parse().unwrap_or_default(),
            _ => 0,
        }
    }
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<Mutex<PgClient>>),
}

/// The synchronous PostgreSQL client, closed off any async runtime's thread: its `Drop` runs
/// its own runtime, which cannot start on a thread driving one (the CLI's, a handler's). A
/// connection that was closed (the server restarted, a fail-over) is opened again on the next
/// use, so the request during the outage fails and the ones after it work.
struct PgClient(Option<postgres::Client>, String);

/// The PostgreSQL connection, reconnected first if it was closed.
fn pg(c: &Mutex<PgClient>) -> Result<std::sync::MutexGuard<'_, PgClient>> {
    let mut g = c.lock().unwrap_or_else(|p| p.into_inner());
    if g.0.as_ref().is_none_or(|c| c.is_closed()) {
        tracing::warn!("the PostgreSQL connection was closed; connecting again");
        g.0 = None;
        let client = postgres::Client::connect(&g.1, postgres::NoTls)
            .what("connect to PostgreSQL again (check server.database_url)")?;
        g.0 = Some(client);
    }
    Ok(g)
}

impl std::ops::Deref for PgClient {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("open until dropped")
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            blocking(move || drop(c));
        }
    }
}

/// A shared handle on the database (cheap to clone).
#[derive(Clone)]
pub struct Db {
    inner: Arc<Backend>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failure of the store, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("the database at {path} is newer (schema {found}) than this program (schema {known}); upgrade the program")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Adds what was being done to a driver error.
pub trait Context<T> {
    fn what(self, what: &str) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn what(self, what: &str) -> Result<T> {
        self.map_err(|source| StoreError::Sql {
            what: what.to_string(),
            source: Box::new(source),
        })
    }
}

/// `?N` → `$N` outside string literals.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(if c == '?' && !quoted { '$' } else { c });
    }
    out
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, BoxError> {
        use postgres::types::Type;
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Val::Int(n) if *ty == Type::BOOL => (*n != 0).to_sql(ty, out),
            Val::Int(n) => n.to_sql(ty, out),
            Val::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn sqlite_row(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(v) => Val::Int(v),
            ValueRef::Real(v) => Val::Int(v as i64),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
        });
    }
    Ok(Row(out))
}

fn pg_row(r: &postgres::Row) -> std::result::Result<Row, postgres::Error> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let t = c.type_();
        out.push(if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map_or(Val::Null, |v| Val::Int(v.into()))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map_or(Val::Null, |v| Val::Int(v.into()))
        } else {
            r.try_get::<_, Option<String>>(i)?
                .map_or(Val::Null, Val::Text)
        });
    }
    Ok(Row(out))
}

/// Runs blocking PostgreSQL I/O from any thread (leaving the async runtime's context first when
/// called from one of its workers).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        // The synchronous PostgreSQL client runs its own runtime, which cannot start on a
        // thread that drives a current-thread runtime (the CLI's): run it on another thread.
        Ok(_) => std::thread::scope(|s| s.spawn(f).join().expect("database call panicked")),
        Err(_) => f(),
    }
}

impl Db {
    /// Opens the configured database: a `postgres://` URL, or a SQLite file path.
    pub fn open_configured(url: Option<&str>, path: &Path) -> Result<Db> {
        match url.filter(|u| !u.is_empty()) {
            Some(u) => Db::connect_postgres(u),
            None => Db::open(path),
        }
    }

    /// Opens (creating) the SQLite file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = rusqlite::Connection::open(path).what(&format!("open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .what("enable WAL")?;
        Self::setup_sqlite(conn, &path.display().to_string())
    }

    /// A private in-memory SQLite database (tests).
    pub fn memory() -> Result<Db> {
        Self::setup_sqlite(
            rusqlite::Connection::open_in_memory().what("open in memory")?,
            ":memory:",
        )
    }

    /// Connects to PostgreSQL and applies pending migrations.
    pub fn connect_postgres(url: &str) -> Result<Db> {
        let client = blocking(|| postgres::Client::connect(url, postgres::NoTls))
            .what("connect to PostgreSQL (check server.database_url)")?;
        let db = Db {
            inner: Arc::new(Backend::Postgres(Box::new(Mutex::new(PgClient(
                Some(client),
                url.to_string(),
            ))))),
        };
        db.migrate("postgres")?;
        Ok(db)
    }

    fn setup_sqlite(conn: rusqlite::Connection, path: &str) -> Result<Db> {
        conn.pragma_update(None, "synchronous", "FULL")
            .what("set synchronous")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .what("set busy timeout")?;
        let db = Db {
            inner: Arc::new(Backend::Sqlite(Mutex::new(conn))),
        };
        db.migrate(path)?;
        Ok(db)
    }

    /// Which backend (`sqlite` or `postgres`).
    pub fn backend(&self) -> &'static str {
        match &*self.inner {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn migrate(&self, path: &str) -> Result<()> {
        self.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
        )?;
        let current = self
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )?
            .map(|r| r.int(0))
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew {
                path: path.to_string(),
                found: current,
                known,
            });
        }
        let id = match &*self.inner {
            Backend::Sqlite(_) => "INTEGER PRIMARY KEY",
            Backend::Postgres(_) => "BIGSERIAL PRIMARY KEY",
        };
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let sql = sql.replace("{id}", id);
            let version = i as i64 + 1;
            let what = format!("apply migration {version}");
            match &*self.inner {
                Backend::Sqlite(c) => {
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    let tx = c.transaction().what("begin migration")?;
                    tx.execute_batch(&sql).what(&what)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied) VALUES (?1, ?2)",
                        rusqlite::params![version, now()],
                    )
                    .what("record migration")?;
                    tx.commit().what("commit migration")?;
                }
                Backend::Postgres(c) => blocking(|| {
                    let mut c = pg(c)?;
                    let mut tx = c.transaction().what("begin migration")?;
                    tx.batch_execute(&sql).what(&what)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
                        &[&version, &now()],
                    )
                    .what("record migration")?;
                    tx.commit().what("commit migration")
                })?,
            }
        }
        Ok(())
    }

    /// Runs statements with no parameters.
    pub fn batch(&self, sql: &str) -> Result<()> {
        match &*self.inner {
            Backend::Sqlite(c) => c
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .execute_batch(sql)
                .what(sql),
            Backend::Postgres(c) => blocking(|| pg(c)?.batch_execute(sql).what(sql)),
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Val]) -> Result<usize> {
        match &*self.inner {
            Backend::Sqlite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                c.execute(
                    sql,
                    rusqlite::params_from_iter(params.iter().map(sqlite_val)),
                )
                .what(sql)
            }
            Backend::Postgres(c) => blocking(|| {
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as _).collect();
                pg(c)?
                    .execute(pg_sql(sql).as_str(), &refs)
                    .map(|n| n as usize)
                    .what(sql)
            }),
        }
    }

    /// Runs a query; returns every row.
    pub fn query(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        match &*self.inner {
            Backend::Sqlite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = c.prepare(sql).what(sql)?;
                let n = st.column_count();
                let rows = st
                    .query_map(
                        rusqlite::params_from_iter(params.iter().map(sqlite_val)),
                        |r| sqlite_row(r, n),
                    )
                    .what(sql)?
                    .collect::<rusqlite::Result<Vec<Row>>>()
                    .what(sql)?;
                Ok(rows)
            }
            Backend::Postgres(c) => blocking(|| {
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as _).collect();
                let rows = pg(c)?.query(pg_sql(sql).as_str(), &refs).what(sql)?;
                rows.iter()
                    .map(pg_row)
                    .collect::<std::result::Result<Vec<Row>, _>>()
                    .what(sql)
            }),
        }
    }

    /// Runs a query and hands each row to `f` as it is read, without collecting them (a scan
    /// of millions of rows).
    pub fn for_each(
        &self,
        sql: &str,
        params: &[Val],
        mut f: impl FnMut(&Row) + Send,
    ) -> Result<()> {
        match &*self.inner {
            Backend::Sqlite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = c.prepare(sql).what(sql)?;
                let n = st.column_count();
                let mut rows = st
                    .query(rusqlite::params_from_iter(params.iter().map(sqlite_val)))
                    .what(sql)?;
                while let Some(r) = rows.next().what(sql)? {
                    f(&sqlite_row(r, n).what(sql)?);
                }
                Ok(())
            }
            Backend::Postgres(c) => blocking(|| {
                use postgres::fallible_iterator::FallibleIterator;
                let mut c = pg(c)?;
                let mut rows = c.query_raw(pg_sql(sql).as_str(), params.iter()).what(sql)?;
                while let Some(r) = rows.next().what(sql)? {
                    f(&pg_row(&r).what(sql)?);
                }
                Ok(())
            }),
        }
    }

    /// The first row, if any.
    pub fn query_one(&self, sql: &str, params: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs `f` on a blocking thread (for async handlers).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The schema version.
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .query_one("SELECT MAX(version) FROM schema_migrations", &[])?
            .map(|r| r.int(0))
            .unwrap_or(0))
    }
}

fn sqlite_val(v: &Val) -> rusqlite::types::Value {
    match v {
        Val::Null => rusqlite::types::Value::Null,
        Val::Int(n) => rusqlite::types::Value::Integer(*n),
        Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_string_literals() {
        assert_eq!(
            pg_sql("SELECT '?' WHERE a = ?1 AND b = ?2"),
            "SELECT '?' WHERE a = $1 AND b = $2"
        );
    }

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let db = Db::open(&p).unwrap();
        assert_eq!(db.version().unwrap(), MIGRATIONS.len() as i64);
        db.audit("admin", "login", "-").unwrap();
        drop(db);
        // Reopening applies nothing and keeps the rows.
        let db = Db::open(&p).unwrap();
        assert_eq!(db.audit_rows(10).unwrap().len(), 1);
        db.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES (99, 0)",
            &[],
        )
        .unwrap();
        drop(db);
        let e = Db::open(&p).err().expect("a newer schema must be refused");
        assert!(e.to_string().contains("newer"), "{e}");
    }
}
