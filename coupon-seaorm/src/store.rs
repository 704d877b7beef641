//! [`CouponStore`] on a SeaORM connection.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coupon_core::{
    Campaign, CampaignId, CampaignSummary, Coupon, CouponCode, CouponStore, Error, HeldSlot,
    IssueFailure, IssueOutcome, IssueTicket, NewCampaign, Result, SealedEpoch, TicketId, UserId,
    coupon_slot,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};

use crate::entity::{campaign, coupon, issue_failure, pending_ticket};
use crate::epoch::{self, EpochLock};
use crate::error::{BACKEND, classify};
use crate::issue;
use crate::sql::{self, SqlBuilder};

/// How to reach the database.
#[derive(Clone)]
#[non_exhaustive]
pub struct SeaOrmStoreConfig {
    /// `sqlite://path/to/file.db?mode=rwc`, `sqlite::memory:`, `postgres://...`,
    /// `mysql://...`; the backend's cargo feature must be on.
    pub url: String,
    /// Pool size (default 16; SQLite uses one connection, its writes are serial anyway).
    pub max_connections: u32,
    /// How long to wait for a pooled connection before a retryable error (default 5 s).
    pub acquire_timeout: Duration,
    /// Run the migrations on connect (default true). Without it, `connect` only checks
    /// that the schema is there.
    pub migrate: bool,
    /// How long one store call may wait for the database's answer (default 10 s): a
    /// call past it fails with a retryable error (a write with
    /// [`Error::OutcomeUnknown`]: it may have committed) and its connection is closed,
    /// so a network that swallows answers cannot hold a caller, or the pool, forever.
    pub operation_timeout: Duration,
}

impl SeaOrmStoreConfig {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
            operation_timeout: Duration::from_secs(10),
        }
    }

    /// Sets [`SeaOrmStoreConfig::operation_timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets [`SeaOrmStoreConfig::migrate`].
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets [`SeaOrmStoreConfig::max_connections`].
    pub fn with_max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }
}

impl fmt::Debug for SeaOrmStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeaOrmStoreConfig")
            .field("url", &coupon_core::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("migrate", &self.migrate)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

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

/// Creates the file a `sqlite:` URL with `mode=rwc` names, if it is missing, readable
/// and writable by this user only (0600 on Unix): it holds coupon codes, and SQLite
/// would create it with the umask's mode (0644 as a rule), readable by every user of
/// the machine. SQLite gives its journal, WAL and shared-memory files the database
/// file's mode. Any failure is left to the connection to report.
fn create_sqlite_file_privately(url: &str) {
    #[cfg(unix)]
    if let Some(path) = sqlite_file_to_create(url) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = url;
}

/// The file a `sqlite:` URL asks SQLite to create (`mode=rwc`), if any.
fn sqlite_file_to_create(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let creates = query.split('&').any(|pair| pair == "mode=rwc");
    (creates && !path.is_empty() && path != ":memory:").then(|| path.into())
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

    /// The pending rows of `campaign`, with the ticket ids among them that have a coupon.
    async fn pending_rows(
        &self,
        campaign: CampaignId,
    ) -> Result<(Vec<pending_ticket::Model>, HashSet<String>)> {
        let key = i64::try_from(campaign.get()).map_err(|_| Error::UnknownCampaign { campaign })?;
        let what = || format!("reading pending tickets of campaign {campaign}");
        let rows = pending_ticket::Entity::find()
            .filter(pending_ticket::Column::CampaignId.eq(key))
            .all(&self.db)
            .await
            .map_err(|e| classify(e, what))?;
        let mut issued = HashSet::new();
        let ids: Vec<String> = rows.iter().map(|row| row.ticket_id.clone()).collect();
        for chunk in ids.chunks(issue::CHUNK) {
            let found: Vec<String> = coupon::Entity::find()
                .select_only()
                .column(coupon::Column::TicketId)
                .filter(coupon::Column::TicketId.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(|e| classify(e, what))?;
            issued.extend(found);
        }
        Ok((rows, issued))
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

fn to_campaign(row: campaign::Model) -> Result<Campaign> {
    let mut new = NewCampaign::new(row.name, u64::try_from(row.cap).unwrap_or(0))
        .per_user_limit(u32::try_from(row.per_user_limit).unwrap_or(0));
    new.opens_at = row.opens_at;
    new.closes_at = row.closes_at;
    Ok(Campaign::from_new(CampaignId(row.id as u64), new))
}

fn ticket_id(text: &str, table: &str) -> Result<TicketId> {
    text.parse().map(TicketId).map_err(|_| {
        Error::backend(
            BACKEND,
            format!("{table}.ticket_id holds {text:?}, not a UUID"),
            None,
        )
    })
}

fn to_coupon(row: coupon::Model) -> Result<Coupon> {
    Ok(Coupon::new(
        CampaignId(row.campaign_id as u64),
        UserId(row.user_id as u64),
        row.rank as u64,
        CouponCode::from_stored(row.code),
        ticket_id(&row.ticket_id, "coupon")?,
        row.issued_at,
    ))
}

/// A ticket kept as JSON in `table`'s row `id`.
fn stored_ticket(json: &str, table: &str, id: i64) -> Result<IssueTicket> {
    serde_json::from_str(json).map_err(|e| {
        Error::backend(
            BACKEND,
            format!("{table} {id} holds an unreadable ticket"),
            Some(e.into()),
        )
    })
}

fn to_pending(row: pending_ticket::Model) -> Result<IssueTicket> {
    stored_ticket(&row.ticket, "pending_ticket", row.id)
}

fn to_failure(row: issue_failure::Model) -> Result<IssueFailure> {
    let ticket = stored_ticket(&row.ticket, "issue_failure", row.id)?;
    let mut failure =
        IssueFailure::new(ticket, row.error, u32::try_from(row.attempts).unwrap_or(0));
    failure.first_seen = row.first_seen;
    failure.last_seen = row.last_seen;
    failure.replayed_at = row.replayed_at;
    Ok(failure)
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
        self.bounded(Call::Write, async {
            let key = ticket.ticket_id.to_string();
            let what = || format!("recording pending ticket {key}");
            let campaign =
                i64::try_from(ticket.campaign.get()).map_err(|_| Error::UnknownCampaign {
                    campaign: ticket.campaign,
                })?;
            let json = serde_json::to_string(ticket)
                .map_err(|e| Error::backend(BACKEND, what(), Some(e.into())))?;
            let txn = sql::begin_queue_write(&self.db)
                .await
                .map_err(|e| classify(e, what))?;
            // Shared with other records and publishes, exclusive of a seal.
            let sealed = epoch::current(&txn, &[campaign], EpochLock::Share)
                .await
                .map_err(|e| classify(e, what))?
                .get(&campaign)
                .copied()
                .unwrap_or(0);
            if !epoch::superseded(&txn, campaign, sealed, &[ticket])
                .await
                .map_err(|e| classify(e, what))?
                .is_empty()
            {
                return Err(Error::Superseded {
                    campaign: ticket.campaign,
                    user: ticket.user,
                    epoch: ticket.epoch,
                });
            }
            if let Some(reason) = epoch::open_failure(&txn, &key)
                .await
                .map_err(|e| classify(e, what))?
            {
                return Err(Error::TicketRefused {
                    campaign: ticket.campaign,
                    user: ticket.user,
                    reason,
                });
            }
            let row = pending_ticket::ActiveModel {
                ticket_id: Set(key.clone()),
                campaign_id: Set(campaign),
                ticket: Set(json),
                recorded_at: Set(Utc::now()),
                ..Default::default()
            };
            // Recorded before (a repeated answer, or a concurrent one): the same ticket.
            pending_ticket::Entity::insert(row)
                .on_conflict_do_nothing_on([pending_ticket::Column::TicketId])
                .exec_without_returning(&txn)
                .await
                .map_err(|e| classify(e, what))?;
            txn.commit().await.map_err(|e| classify(e, what))
        })
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
        self.bounded(Call::Read, async {
            let (rows, issued) = self.pending_rows(campaign).await?;
            let mut pending = Vec::with_capacity(rows.len());
            for row in rows {
                if !issued.contains(&row.ticket_id) {
                    pending.push(to_pending(row)?);
                }
            }
            pending.sort_by_key(|ticket| (ticket.admitted_at, ticket.ticket_id));
            Ok(pending)
        })
        .await
    }

    async fn forget_settled_pending(&self, campaign: CampaignId) -> Result<u64> {
        self.bounded(Call::Write, async {
            let (rows, issued) = self.pending_rows(campaign).await?;
            let settled: Vec<i64> = rows
                .iter()
                .filter(|row| issued.contains(&row.ticket_id))
                .map(|row| row.id)
                .collect();
            let mut forgotten = 0;
            for chunk in settled.chunks(issue::CHUNK) {
                forgotten += pending_ticket::Entity::delete_many()
                    .filter(pending_ticket::Column::Id.is_in(chunk.iter().copied()))
                    .exec(&self.db)
                    .await
                    .map_err(|e| {
                        classify(e, || {
                            format!("forgetting settled pending tickets of campaign {campaign}")
                        })
                    })?
                    .rows_affected;
            }
            Ok(forgotten)
        })
        .await
    }

    async fn record_failure(&self, failure: &IssueFailure) -> Result<()> {
        self.bounded(Call::Write, async {
            let key = failure.ticket.ticket_id.to_string();
            let what = || format!("recording the failure of ticket {key}");
            let ticket = serde_json::to_string(&failure.ticket)
                .map_err(|e| Error::backend(BACKEND, what(), Some(e.into())))?;
            // Two attempts: a concurrent first insert of the same ticket makes the first one
            // fail on the unique key, and the second then finds the row to update.
            for attempt in 0..2 {
                let existing = issue_failure::Entity::find()
                    .filter(issue_failure::Column::TicketId.eq(key.clone()))
                    .one(&self.db)
                    .await
                    .map_err(|e| classify(e, what))?;
                let written = match existing {
                    Some(row) => {
                        let attempts = row.attempts.saturating_add(failure.attempts as i32);
                        let mut row: issue_failure::ActiveModel = row.into();
                        row.error = Set(failure.error.clone());
                        row.attempts = Set(attempts);
                        row.last_seen = Set(failure.last_seen);
                        row.replayed_at = Set(None);
                        row.update(&self.db).await.map(|_| ())
                    }
                    None => issue_failure::ActiveModel {
                        ticket_id: Set(key.clone()),
                        campaign_id: Set(failure.ticket.campaign.get() as i64),
                        ticket: Set(ticket.clone()),
                        error: Set(failure.error.clone()),
                        attempts: Set(failure.attempts as i32),
                        first_seen: Set(failure.first_seen),
                        last_seen: Set(failure.last_seen),
                        replayed_at: Set(None),
                        ..Default::default()
                    }
                    .insert(&self.db)
                    .await
                    .map(|_| ()),
                };
                match written {
                    Ok(()) => return Ok(()),
                    Err(error) if attempt == 0 && error.sql_err().is_some() => continue,
                    Err(error) => return Err(classify(error, what)),
                }
            }
            Ok(())
        })
        .await
    }

    async fn failures(&self, campaign: Option<CampaignId>) -> Result<Vec<IssueFailure>> {
        self.bounded(Call::Read, async {
            let mut query = issue_failure::Entity::find();
            if let Some(campaign) = campaign {
                query = query.filter(issue_failure::Column::CampaignId.eq(campaign.get() as i64));
            }
            query
                .order_by_asc(issue_failure::Column::FirstSeen)
                .order_by_asc(issue_failure::Column::Id)
                .all(&self.db)
                .await
                .map_err(|e| classify(e, || format!("reading failures of campaign {campaign:?}")))?
                .into_iter()
                .map(to_failure)
                .collect()
        })
        .await
    }

    async fn mark_replayed(&self, tickets: &[TicketId], at: DateTime<Utc>) -> Result<u64> {
        self.bounded(Call::Write, async {
            let mut changed = 0;
            for chunk in tickets.chunks(issue::CHUNK) {
                let result = issue_failure::Entity::update_many()
                    .col_expr(issue_failure::Column::ReplayedAt, Expr::value(Some(at)))
                    .filter(
                        issue_failure::Column::TicketId
                            .is_in(chunk.iter().map(ToString::to_string)),
                    )
                    .filter(issue_failure::Column::LastSeen.lte(at))
                    .exec(&self.db)
                    .await
                    .map_err(|e| classify(e, || "marking failures replayed".to_owned()))?;
                changed += result.rows_affected;
            }
            Ok(changed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sqlite_file_to_create_is_created_first() {
        let file = |url| sqlite_file_to_create(url).map(|path| path.display().to_string());
        assert_eq!(
            file("sqlite://firstcome.db?mode=rwc").as_deref(),
            Some("firstcome.db")
        );
        assert_eq!(
            file("sqlite:///var/lib/x.db?mode=rwc").as_deref(),
            Some("/var/lib/x.db")
        );
        assert_eq!(
            file("sqlite:x.db?cache=shared&mode=rwc").as_deref(),
            Some("x.db")
        );
        assert_eq!(file("sqlite://firstcome.db"), None, "must exist already");
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u:p@h/db?mode=rwc"), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_sqlite_file_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("coupon-mode-{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
            .await
            .expect("a new file");
        store
            .create_campaign(NewCampaign::new("private", 1))
            .await
            .expect("a write");
        drop(store);
        let mode = std::fs::metadata(&path)
            .expect("the file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
