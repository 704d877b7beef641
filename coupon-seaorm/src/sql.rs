//! Hand-written SQL for the batch path, in each backend's dialect.

use coupon_core::Result;
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, IsolationLevel,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};

use crate::error::classify;

/// The `n`th (from 1) bind placeholder of a statement in `backend`'s dialect: `$n` on
/// PostgreSQL, `?` on SQLite and MySQL/MariaDB.
///
/// ```
/// use coupon_seaorm::placeholder;
/// use sea_orm::DbBackend;
/// assert_eq!(placeholder(DbBackend::Postgres, 2), "$2");
/// assert_eq!(placeholder(DbBackend::MySql, 2), "?");
/// ```
pub fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that read first could not upgrade while
/// another writer holds the lock, and would fail instead of waiting.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    begin(db, None)
        .await
        .map_err(|e| classify(e, || "BEGIN".to_owned()))
}

/// [`begin_write`] for the queue's short transactions: on MySQL/MariaDB at `READ
/// COMMITTED`, where `SELECT ... FOR UPDATE` locks the rows it returns and not the gaps
/// of the index it scanned (which, at the default `REPEATABLE READ`, deadlock with
/// concurrent takes and acks).
pub(crate) async fn begin_queue_write(
    db: &DatabaseConnection,
) -> std::result::Result<DatabaseTransaction, DbErr> {
    let isolation =
        (db.get_database_backend() == DbBackend::MySql).then_some(IsolationLevel::ReadCommitted);
    begin(db, isolation).await
}

async fn begin(
    db: &DatabaseConnection,
    isolation: Option<IsolationLevel>,
) -> std::result::Result<DatabaseTransaction, DbErr> {
    let mut options = TransactionOptions::default();
    if db.get_database_backend() == DbBackend::Sqlite {
        options.sqlite_transaction_mode = Some(SqliteTransactionMode::Immediate);
    }
    options.isolation_level = isolation;
    db.begin_with_options(options).await
}

/// Runs `step` again while it fails on a lock conflict (a deadlock, a serialisation
/// failure; up to five times): the queue's statements are short and safe to repeat, and
/// a worker should not back off for a lock-order accident between two takes.
pub(crate) async fn retrying_lock_conflicts<T, F, Fut>(mut step: F) -> std::result::Result<T, DbErr>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, DbErr>>,
{
    let mut tries = 0u32;
    loop {
        match step().await {
            Err(error) if tries < 5 && crate::error::is_lock_conflict(&error) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2 << tries)).await;
            }
            other => return other,
        }
    }
}

/// Builds one statement, numbering placeholders as the backend wants (`$1` or `?`).
pub(crate) struct SqlBuilder {
    backend: DbBackend,
    sql: String,
    values: Vec<Value>,
}

impl SqlBuilder {
    pub(crate) fn new(backend: DbBackend, sql: &str) -> Self {
        Self {
            backend,
            sql: sql.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends literal SQL.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        self.sql
            .push_str(&placeholder(self.backend, self.values.len()));
        self
    }

    /// Appends `(v1, v2, ...)` bound to `values`.
    pub(crate) fn bind_list<V: Into<Value>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}

/// `rank` is a reserved word in MySQL 8; quote it the backend's way.
pub(crate) fn rank_column(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::MySql => "`rank`",
        _ => "\"rank\"",
    }
}

/// Reads the campaign row and, on servers with row locks, locks it until commit. On
/// SQLite the transaction already holds the database's write lock (`BEGIN IMMEDIATE`).
pub(crate) fn lock_campaign(backend: DbBackend, campaign: i64) -> Statement {
    let mut sql = SqlBuilder::new(
        backend,
        "SELECT cap, per_user_limit, issued FROM campaign WHERE id = ",
    );
    sql.bind(campaign);
    if backend != DbBackend::Sqlite {
        sql.push(" FOR UPDATE");
    }
    sql.build()
}

/// `INSERT ... ON CONFLICT DO NOTHING` (PostgreSQL, SQLite) or `INSERT IGNORE` (MySQL):
/// a row that already exists is skipped instead of failing the batch.
pub(crate) fn insert_coupons_head(backend: DbBackend) -> String {
    let verb = match backend {
        DbBackend::MySql => "INSERT IGNORE INTO",
        _ => "INSERT INTO",
    };
    format!(
        "{verb} coupon (campaign_id, user_id, user_slot, {}, code, ticket_id, issued_at) VALUES ",
        rank_column(backend)
    )
}

pub(crate) fn insert_coupons_tail(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::MySql => "",
        _ => " ON CONFLICT DO NOTHING",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_postgres_placeholders_and_marks_others() {
        let mut pg = SqlBuilder::new(DbBackend::Postgres, "SELECT 1 WHERE a IN ");
        pg.bind_list([1i64, 2, 3]).push(" AND b = ").bind(4i64);
        assert_eq!(
            pg.build().sql,
            "SELECT 1 WHERE a IN ($1, $2, $3) AND b = $4"
        );

        let mut sqlite = SqlBuilder::new(DbBackend::Sqlite, "SELECT 1 WHERE a IN ");
        sqlite.bind_list([1i64, 2]);
        assert_eq!(sqlite.build().sql, "SELECT 1 WHERE a IN (?, ?)");
    }

    #[test]
    fn only_server_backends_lock_rows() {
        assert!(
            lock_campaign(DbBackend::Postgres, 1)
                .sql
                .ends_with("FOR UPDATE")
        );
        assert!(
            lock_campaign(DbBackend::MySql, 1)
                .sql
                .ends_with("FOR UPDATE")
        );
        assert!(
            !lock_campaign(DbBackend::Sqlite, 1)
                .sql
                .contains("FOR UPDATE")
        );
    }

    #[test]
    fn skips_existing_rows_in_each_dialect() {
        assert!(insert_coupons_head(DbBackend::MySql).starts_with("INSERT IGNORE INTO coupon"));
        assert!(insert_coupons_head(DbBackend::MySql).contains("`rank`"));
        assert_eq!(
            insert_coupons_tail(DbBackend::Postgres),
            " ON CONFLICT DO NOTHING"
        );
    }
}
