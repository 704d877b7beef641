//! Hand-written SQL for the batch path, in each backend's dialect.

use sea_orm::{DbBackend, Statement, Value};

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
        match self.backend {
            DbBackend::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.values.len().to_string());
            }
            _ => self.sql.push('?'),
        }
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
