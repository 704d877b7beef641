//! [`CouponStore`] on a SeaORM connection.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coupon_core::{
    Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, Error, HeldSlot, IssueFailure,
    IssueOutcome, IssueTicket, NewCampaign, Result, SealedEpoch, TicketId, UserId, coupon_slot,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};

use crate::entity::{campaign, coupon};
use crate::epoch;
use crate::error::{BACKEND, classify};
use crate::issue;
use crate::sql::SqlBuilder;

mod config;
mod ledgers;
mod rows;
mod sqlite_file;

pub use config::SeaOrmStoreConfig;

use rows::{to_campaign, to_coupon};
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
        "id, name, cap, per_user_limit, opens_at, closes_at, issued",
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

#[async_trait]
impl CouponStore for SeaOrmStore {
    /// The `campaign` table answers a read within the operation timeout (a database
    /// that answers but lost its schema is not ready).
    async fn ready(&self) -> Result<()> {
        self.bounded(Call::Read, async {
            let backend = self.db.get_database_backend();
            self.db
                .query_one_raw(
                    SqlBuilder::new(backend, "SELECT 1 FROM campaign WHERE 1 = 0").build(),
                )
                .await
                .map(|_| ())
                .map_err(|e| classify(e, || "reading the campaign table".to_owned()))
        })
        .await
    }

    async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        self.bounded(Call::Write, async {
            new.validate()?;
            let row = campaign::ActiveModel {
                name: Set(new.name.clone()),
                cap: Set(new.cap as i64),
                per_user_limit: Set(new.per_user_limit as i32),
                opens_at: Set(new.opens_at),
                closes_at: Set(new.closes_at),
                issued: Set(0),
                ..Default::default()
            }
            .insert(&self.db)
            .await
            .map_err(|e| classify(e, || format!("creating campaign {:?}", new.name)))?;
            Ok(Campaign::from_new(CampaignId(row.id as u64), new))
        })
        .await
    }

    async fn campaign(&self, id: CampaignId) -> Result<Campaign> {
        self.bounded(Call::Read, async {
            to_campaign(self.campaign_row(id).await?)
        })
        .await
    }

    async fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        self.bounded(Call::Read, async {
            campaign::Entity::find()
                .order_by_asc(campaign::Column::Id)
                .all(&self.db)
                .await
                .map_err(|e| classify(e, || "listing campaigns".to_owned()))?
                .into_iter()
                .map(|row| {
                    let issued = u64::try_from(row.issued).unwrap_or(0);
                    Ok(CampaignSummary::new(to_campaign(row)?, issued))
                })
                .collect()
        })
        .await
    }

    async fn set_window(
        &self,
        id: CampaignId,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign> {
        self.bounded(Call::Write, async {
            let row = self.campaign_row(id).await?;
            let changed = to_campaign(row.clone())?.with_window(opens_at, closes_at)?;
            let mut active: campaign::ActiveModel = row.into();
            active.opens_at = Set(changed.opens_at);
            active.closes_at = Set(changed.closes_at);
            active
                .update(&self.db)
                .await
                .map_err(|e| classify(e, || format!("changing campaign {id}'s window")))?;
            Ok(changed)
        })
        .await
    }

    async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>> {
        self.bounded(Call::Write, async {
            issue::issue_batch(&self.db, tickets).await
        })
        .await
    }

    async fn issued_count(&self, campaign: CampaignId) -> Result<u64> {
        self.bounded(Call::Read, async {
            Ok(self.campaign_row(campaign).await?.issued as u64)
        })
        .await
    }

    async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>> {
        self.bounded(Call::Read, async {
            let row = self.campaign_row(campaign).await?;
            coupon::Entity::find()
                .filter(coupon::Column::CampaignId.eq(row.id))
                .filter(coupon::Column::UserId.eq(user.get() as i64))
                .order_by_asc(coupon::Column::Rank)
                .all(&self.db)
                .await
                .map_err(|e| {
                    classify(e, || {
                        format!("reading coupons of user {user} in campaign {campaign}")
                    })
                })?
                .into_iter()
                .map(to_coupon)
                .collect()
        })
        .await
    }

    async fn coupons_of_users(
        &self,
        campaign: CampaignId,
        users: &[UserId],
    ) -> Result<Vec<Coupon>> {
        self.bounded(Call::Read, async {
            let row = self.campaign_row(campaign).await?;
            let mut keys: Vec<i64> = users.iter().map(|user| user.get() as i64).collect();
            keys.sort_unstable();
            keys.dedup();
            let mut coupons = Vec::new();
            for chunk in keys.chunks(issue::CHUNK) {
                // By user alone, the unique key's leading column; the campaign is checked on
                // the rows (see `issue::holdings` for why).
                let rows = coupon::Entity::find()
                    .filter(coupon::Column::UserId.is_in(chunk.iter().copied()))
                    .all(&self.db)
                    .await
                    .map_err(|e| {
                        classify(e, || {
                            format!("reading coupons of users in campaign {campaign}")
                        })
                    })?;
                for found in rows {
                    if found.campaign_id == row.id {
                        coupons.push(to_coupon(found)?);
                    }
                }
            }
            Ok(coupons)
        })
        .await
    }

    async fn holders(&self, campaign: CampaignId) -> Result<Vec<UserId>> {
        self.bounded(Call::Read, async {
            let row = self.campaign_row(campaign).await?;
            let users: Vec<i64> = coupon::Entity::find()
                .select_only()
                .column(coupon::Column::UserId)
                .filter(coupon::Column::CampaignId.eq(row.id))
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(|e| classify(e, || format!("reading holders of campaign {campaign}")))?;
            Ok(users.into_iter().map(|user| UserId(user as u64)).collect())
        })
        .await
    }

    async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        self.bounded(Call::Read, async {
            let row = self.campaign_row(campaign).await?;
            let coupons = coupon::Entity::find()
                .filter(coupon::Column::CampaignId.eq(row.id))
                .all(&self.db)
                .await
                .map_err(|e| classify(e, || format!("reading coupons of campaign {campaign}")))?;
            coupons
                .into_iter()
                .map(|row| {
                    let position = u32::try_from(row.user_slot).unwrap_or(1);
                    Ok(coupon_slot(&to_coupon(row)?, position))
                })
                .collect()
        })
        .await
    }

    async fn record_pending(&self, ticket: &IssueTicket) -> Result<()> {
        self.bounded(Call::Write, ledgers::record_pending(&self.db, ticket))
            .await
    }

    async fn sealed_epoch(&self, campaign: CampaignId) -> Result<u64> {
        self.bounded(Call::Read, epoch::sealed(&self.db, campaign))
            .await
    }

    async fn seal_epoch(
        &self,
        campaign: CampaignId,
        after: u64,
        counted: &[HeldSlot],
    ) -> Result<SealedEpoch> {
        self.bounded(Call::Write, epoch::seal(&self.db, campaign, after, counted))
            .await
    }

    async fn pending_tickets(&self, campaign: CampaignId) -> Result<Vec<IssueTicket>> {
        self.bounded(Call::Read, ledgers::pending_tickets(&self.db, campaign))
            .await
    }

    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64> {
        self.bounded(
            Call::Write,
            ledgers::forget_settled_pending(&self.db, campaign),
        )
        .await
    }

    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        self.bounded(Call::Write, ledgers::record_failure(&self.db, failure))
            .await
    }

    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        self.bounded(Call::Read, ledgers::failures(&self.db, campaign))
            .await
    }

    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        self.bounded(Call::Write, ledgers::mark_replayed(&self.db, tickets, at))
            .await
    }
}
