//! [`CouponStore`](coupon_core::CouponStore) on a SeaORM connection.

use std::time::Duration;

use coupon_core::{CampaignId, Error, Result};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement,
};

use crate::entity::campaign;
use crate::error::{BACKEND, classify};

mod config;
mod coupon_store;
mod ledgers;
mod rows;
mod sqlite_file;

pub use config::SeaOrmStoreConfig;

use sqlite_file::create_sqlite_file_privately;

/// The coupon store on SQLite, PostgreSQL or MySQL/MariaDB.
///
/// `issue_batch` runs one transaction per batch: it locks each campaign's row (on
/// SQLite, the database's write lock), skips tickets already stored and users at their
/// limit, refuses tickets past the cap, inserts the rest with one multi-row
/// `INSERT ... ON CONFLICT DO NOTHING` (`INSERT IGNORE` on MySQL) and adds them to
/// `campaign.issued`. A failed batch leaves nothing behind; re-running one changes
/// nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use coupon_core::{CouponStore, IssueTicket, NewCampaign, UserId};
/// use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
///
/// let store = SeaOrmStore::connect(SeaOrmStoreConfig::new("sqlite::memory:")).await?;
/// let campaign = store.create_campaign(NewCampaign::new("launch", 100)).await?;
/// let ticket = IssueTicket::new(campaign.id, UserId(7), 1, 1);
/// store.issue_batch(&[ticket.clone(), ticket]).await?;
/// assert_eq!(store.issued_count(campaign.id).await?, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SeaOrmStore {
    db: DatabaseConnection,
    operation_timeout: Duration,
}

/// What each table must offer for the store to run on it.
const SCHEMA: &[(&str, &str)] = &[
    (
        "campaign",
        "id, name, cap, per_user_limit, opens_at, closes_at, issued, shards",
    ),
    (
        "coupon",
        "id, campaign_id, user_id, user_slot, code, ticket_id, issued_at",
    ),
    (
        "issue_failure",
        "id, ticket_id, campaign_id, ticket, error, attempts, first_seen, last_seen, replayed_at",
    ),
    (
        "pending_ticket",
        "id, ticket_id, campaign_id, ticket, recorded_at",
    ),
    ("counter_epoch", "campaign_id, epoch"),
    ("epoch_slot", "campaign_id, user_id, user_slot"),
    (
        "issue_queue",
        "id, ticket_id, campaign_id, user_id, ticket, enqueued_at, available_at, deliveries, dead_reason",
    ),
];

impl SeaOrmStore {
    /// Connects, runs the migrations when the config says so, and checks the schema.
    pub async fn connect(config: SeaOrmStoreConfig) -> Result<Self> {
        let mut options = ConnectOptions::new(config.url.clone());
        options
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_timeout(config.acquire_timeout)
            .sqlx_logging(false);
        crate::pool::hooks(&mut options, config.operation_timeout);
        create_sqlite_file_privately(&config.url);
        let db = Database::connect(options)
            .await
            .map_err(|e| classify(e, || format!("connecting to {config:?}")))?;
        let mut store = Self::from_connection(db, config.migrate).await?;
        store.operation_timeout = config.operation_timeout;
        Ok(store)
    }

    /// Wraps an existing connection: runs the migrations if `migrate`, then checks the
    /// schema ([`Error::SchemaMismatch`] when a table or column is missing). Calls wait
    /// at most the default [`SeaOrmStoreConfig::operation_timeout`] for an answer.
    pub async fn from_connection(db: DatabaseConnection, migrate: bool) -> Result<Self> {
        let store = Self {
            db,
            operation_timeout: SeaOrmStoreConfig::new("").operation_timeout,
        };
        if migrate {
            store.migrate().await?;
        }
        store.check_schema().await?;
        Ok(store)
    }

    /// Applies the migrations not yet applied; running it again changes nothing.
    ///
    /// Any number of processes may call it at once on the same database (replicas
    /// started together): the runs take turns under a lock of the database (PostgreSQL's
    /// advisory lock, MySQL's `GET_LOCK`, SQLite's write lock), and each one after the
    /// first finds nothing to do.
    pub async fn migrate(&self) -> Result<()> {
        crate::migration::migrate_locked(&self.db).await
    }

    /// The underlying connection, for queries of your own.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    async fn check_schema(&self) -> Result<()> {
        let backend = self.db.get_database_backend();
        for (table, columns) in SCHEMA {
            let probe = format!("SELECT {columns} FROM {table} WHERE 1 = 0");
            if let Err(error) = self
                .db
                .query_all_raw(Statement::from_string(backend, probe))
                .await
            {
                if crate::error::is_retryable(&error) {
                    return Err(classify(error, || format!("checking table {table}")));
                }
                return Err(Error::SchemaMismatch {
                    backend: BACKEND,
                    detail: format!(
                        "table {table} with columns ({columns}) is not readable: {error}; \
                         run the migrations (SeaOrmStoreConfig::migrate) on a database of our own"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs one store call, failing it when the database has not answered within the
    /// operation timeout. Dropping the call drops its connection mid-exchange; the
    /// pool's release check (`pool::hooks`) then closes it.
    async fn bounded<T>(&self, call: Call, work: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.operation_timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                let message = format!("no answer within {:?}", self.operation_timeout);
                Err(match call {
                    Call::Read => Error::unavailable(BACKEND, message, None),
                    Call::Write => Error::outcome_unknown(BACKEND, message, None),
                })
            }
        }
    }

    async fn campaign_row(&self, id: CampaignId) -> Result<campaign::Model> {
        let unknown = Error::UnknownCampaign { campaign: id };
        let Ok(key) = i64::try_from(id.get()) else {
            return Err(unknown);
        };
        campaign::Entity::find_by_id(key)
            .one(&self.db)
            .await
            .map_err(|e| classify(e, || format!("reading campaign {id}")))?
            .ok_or(unknown)
    }
}

/// Whether a call that timed out may have changed something.
#[derive(Clone, Copy)]
enum Call {
    Read,
    Write,
}
