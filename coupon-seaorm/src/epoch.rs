//! Counter epochs in the database: the seal a counter rebuild builds from, and the check
//! that refuses a ticket whose epoch a seal superseded without counting its slot.
//!
//! Tables: `counter_epoch` (campaign_id, epoch), the last sealed epoch of each campaign
//! (no row: 0), and `epoch_slot` (campaign_id, user_id, user_slot, rank), that seal's
//! snapshot of the admissions it counted that had no coupon. An admission is its (user,
//! slot, rank): a slot given again after a seal superseded its first admission is
//! another admission, at another rank.
//!
//! Locks: a seal locks the campaign row (as `issue_batch` does) and then the campaign's
//! `counter_epoch` row, for update; `record_pending` and the queue's publishes lock the
//! `counter_epoch` row for share. So a seal is atomic with all three, and publishes do
//! not wait for the worker's batches. On SQLite every writer holds the database's
//! write lock instead.

use std::collections::{HashMap, HashSet};

use coupon_core::{CampaignId, Error, HeldSlot, IssueTicket, Result, SealedEpoch, UserId, codec};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};

use crate::error::{BACKEND, classify};
use crate::issue::CHUNK;
use crate::sql::{self, SqlBuilder};

/// How a reader locks a campaign's epoch row.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochLock {
    /// No lock: the caller holds the campaign row, which a seal locks first.
    None,
    /// Shared: a seal waits for the caller's commit, and the caller for a seal's.
    Share,
}

/// The last sealed epoch of each of `campaigns` (0 for one never sealed).
pub(crate) async fn current(
    txn: &DatabaseTransaction,
    campaigns: &[i64],
    lock: EpochLock,
) -> std::result::Result<HashMap<i64, u64>, DbErr> {
    let backend = txn.get_database_backend();
    let mut epochs = HashMap::new();
    for chunk in campaigns.chunks(CHUNK) {
        let mut query = SqlBuilder::new(
            backend,
            "SELECT campaign_id, epoch FROM counter_epoch WHERE campaign_id IN ",
        );
        // In campaign order, so that two callers lock shared rows in the same order.
        let mut sorted = chunk.to_vec();
        sorted.sort_unstable();
        query.bind_list(sorted).push(" ORDER BY campaign_id");
        if lock == EpochLock::Share {
            query.push(share_clause(backend));
        }
        for row in txn.query_all_raw(query.build()).await? {
            let campaign: i64 = row.try_get_by_index(0)?;
            let epoch: i64 = row.try_get_by_index(1)?;
            epochs.insert(campaign, u64::try_from(epoch).unwrap_or(0));
        }
    }
    Ok(epochs)
}

fn share_clause(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => " FOR SHARE",
        // MariaDB has no FOR SHARE; both it and MySQL know this one.
        DbBackend::MySql => " LOCK IN SHARE MODE",
        _ => "",
    }
}

/// Of `tickets` (all of `campaign`, whose sealed epoch is `epoch`), the indexes of
/// those the seal superseded: of an older epoch (not 0), an admission (user, slot,
/// rank) its snapshot does not hold, and no coupon of theirs stored.
pub(crate) async fn superseded(
    txn: &DatabaseTransaction,
    campaign: i64,
    epoch: u64,
    tickets: &[&IssueTicket],
) -> std::result::Result<HashSet<usize>, DbErr> {
    let older: Vec<usize> = tickets
        .iter()
        .enumerate()
        .filter(|(_, ticket)| ticket.epoch > 0 && ticket.epoch < epoch)
        .map(|(i, _)| i)
        .collect();
    if older.is_empty() {
        return Ok(HashSet::new());
    }
    let backend = txn.get_database_backend();
    let users: Vec<i64> = older
        .iter()
        .map(|&i| tickets[i].user.get() as i64)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // A ticket whose coupon exists was counted, whatever its epoch.
    let ids: Vec<String> = older
        .iter()
        .map(|&i| tickets[i].ticket_id.to_string())
        .collect();
    let mut stored = HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        let mut query =
            SqlBuilder::new(backend, "SELECT ticket_id FROM coupon WHERE ticket_id IN ");
        query.bind_list(chunk.iter().cloned());
        for row in txn.query_all_raw(query.build()).await? {
            stored.insert(row.try_get_by_index::<String>(0)?);
        }
    }
    let mut counted = HashSet::new();
    for chunk in users.chunks(CHUNK) {
        let mut query = SqlBuilder::new(
            backend,
            &format!(
                "SELECT user_id, user_slot, {} FROM epoch_slot WHERE campaign_id = ",
                sql::rank_column(backend)
            ),
        );
        query
            .bind(campaign)
            .push(" AND user_id IN ")
            .bind_list(chunk.iter().copied());
        for row in txn.query_all_raw(query.build()).await? {
            let user: i64 = row.try_get_by_index(0)?;
            let slot: i32 = row.try_get_by_index(1)?;
            let rank: i64 = row.try_get_by_index(2)?;
            counted.insert((user, slot, rank));
        }
    }
    Ok(older
        .into_iter()
        .filter(|&i| {
            let ticket = tickets[i];
            let slot = i32::try_from(ticket.slot).unwrap_or(i32::MAX);
            let rank = i64::try_from(ticket.rank).unwrap_or(i64::MAX);
            !counted.contains(&(ticket.user.get() as i64, slot, rank))
                && !stored.contains(&ticket.ticket_id.to_string())
        })
        .collect())
}

/// [`CouponStore::seal_epoch`](coupon_core::CouponStore::seal_epoch) in one transaction.
pub(crate) async fn seal(
    db: &DatabaseConnection,
    campaign: CampaignId,
    after: u64,
    counted: &[HeldSlot],
) -> Result<SealedEpoch> {
    let unknown = || Error::UnknownCampaign { campaign };
    let key = i64::try_from(campaign.get()).map_err(|_| unknown())?;
    let what = || format!("sealing a counter epoch of campaign {campaign}");
    // Read committed on MySQL too: the reads below must see what the publishes that held
    // the epoch row before us committed.
    let txn = sql::begin_queue_write(db)
        .await
        .map_err(|e| classify(e, what))?;
    let backend = txn.get_database_backend();
    if txn
        .query_one_raw(sql::lock_campaign(backend, key))
        .await
        .map_err(|e| classify(e, what))?
        .is_none()
    {
        return Err(unknown());
    }
    let epoch = lock_for_update(&txn, key)
        .await
        .map_err(|e| classify(e, what))?;
    if epoch != after {
        // Another rebuild sealed since this one read `after`: it holds the last seal.
        return Err(Error::unavailable(
            BACKEND,
            format!(
                "campaign {campaign}: epoch {epoch} was sealed by another rebuild since this one read {after}; it starts over"
            ),
            None,
        ));
    }
    let gathered = gather(&txn, campaign, key, epoch, counted)
        .await
        .map_err(|e| classify(e, what))?;
    let next = epoch + 1;
    write(&txn, key, next, &gathered)
        .await
        .map_err(|e| classify(e, what))?;
    txn.commit().await.map_err(|e| classify(e, what))?;
    Ok(SealedEpoch::new(next, gathered.slots))
}

/// [`CouponStore::sealed_epoch`](coupon_core::CouponStore::sealed_epoch).
pub(crate) async fn sealed(db: &DatabaseConnection, campaign: CampaignId) -> Result<u64> {
    let unknown = || Error::UnknownCampaign { campaign };
    let key = i64::try_from(campaign.get()).map_err(|_| unknown())?;
    let what = || format!("reading the sealed epoch of campaign {campaign}");
    let backend = db.get_database_backend();
    let mut query = SqlBuilder::new(
        backend,
        "SELECT c.id, e.epoch FROM campaign c LEFT JOIN counter_epoch e ON e.campaign_id = c.id WHERE c.id = ",
    );
    query.bind(key);
    let row = db
        .query_one_raw(query.build())
        .await
        .map_err(|e| classify(e, what))?
        .ok_or_else(unknown)?;
    let epoch: Option<i64> = row.try_get_by_index(1).map_err(|e| classify(e, what))?;
    Ok(epoch.map_or(0, |epoch| u64::try_from(epoch).unwrap_or(0)))
}

/// Creates the campaign's epoch row if missing and locks it; answers its epoch.
async fn lock_for_update(
    txn: &DatabaseTransaction,
    campaign: i64,
) -> std::result::Result<u64, DbErr> {
    let backend = txn.get_database_backend();
    let mut insert = SqlBuilder::new(
        backend,
        match backend {
            DbBackend::MySql => "INSERT IGNORE INTO counter_epoch (campaign_id, epoch) VALUES (",
            _ => "INSERT INTO counter_epoch (campaign_id, epoch) VALUES (",
        },
    );
    insert.bind(campaign).push(", 0)");
    if backend != DbBackend::MySql {
        insert.push(" ON CONFLICT DO NOTHING");
    }
    txn.execute_raw(insert.build()).await?;
    let mut select = SqlBuilder::new(
        backend,
        "SELECT epoch FROM counter_epoch WHERE campaign_id = ",
    );
    select.bind(campaign);
    if backend != DbBackend::Sqlite {
        select.push(" FOR UPDATE");
    }
    let epoch: i64 = match txn.query_one_raw(select.build()).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(u64::try_from(epoch).unwrap_or(0))
}

/// Every slot admitted in the campaign, and which of them have a coupon.
struct Gathered {
    slots: Vec<HeldSlot>,
    stored: usize,
}

async fn gather(
    txn: &DatabaseTransaction,
    campaign: CampaignId,
    key: i64,
    sealed: u64,
    counted: &[HeldSlot],
) -> std::result::Result<Gathered, DbErr> {
    let backend = txn.get_database_backend();
    let mut slots = Vec::new();
    let mut stored_ids = HashSet::new();
    let mut coupons = SqlBuilder::new(
        backend,
        &format!(
            "SELECT user_id, user_slot, {}, ticket_id FROM coupon WHERE campaign_id = ",
            sql::rank_column(backend)
        ),
    );
    coupons.bind(key);
    for row in txn.query_all_raw(coupons.build()).await? {
        let user: i64 = row.try_get_by_index(0)?;
        let position: i32 = row.try_get_by_index(1)?;
        let rank: i64 = row.try_get_by_index(2)?;
        let ticket_id: String = row.try_get_by_index(3)?;
        let id = ticket_id.parse().map(coupon_core::TicketId).ok();
        if let Some(id) = id {
            stored_ids.insert(id);
        }
        // The slot is read from the ticket id where it tells, else the position.
        let slot = match id.and_then(|id| id.admission()) {
            Some((c, u, slot)) if c == campaign && u == UserId(user as u64) => slot,
            _ => u32::try_from(position).unwrap_or(1),
        };
        slots.push(HeldSlot {
            user: UserId(user as u64),
            slot,
            rank: u64::try_from(rank).unwrap_or(0),
            admitted_at: None,
            epoch: 0,
        });
    }
    let stored = slots.len();
    let mut known: HashSet<(UserId, u32)> = slots.iter().map(|s| (s.user, s.slot)).collect();
    let mut waiting = Vec::new();
    // One statement, so one snapshot: a ticket moving from the queue to the failures
    // (dead-lettered meanwhile) is in one of them, never in neither.
    let mut query = SqlBuilder::new(
        backend,
        "SELECT 0, ticket FROM pending_ticket WHERE campaign_id = ",
    );
    query
        .bind(key)
        .push(" UNION ALL SELECT 1, ticket FROM issue_failure WHERE campaign_id = ")
        .bind(key)
        .push(" UNION ALL SELECT 0, ticket FROM issue_queue WHERE dead_reason IS NULL AND campaign_id = ")
        .bind(key);
    let mut failed = Vec::new();
    for row in txn.query_all_raw(query.build()).await? {
        let failure: i32 = row.try_get_by_index(0)?;
        let text: String = row.try_get_by_index(1)?;
        // An unreadable row holds no slot anyone was promised; the worker parks it.
        if let Ok(ticket) = codec::decode(Some(text.as_bytes()))
            && ticket.campaign == campaign
            && !stored_ids.contains(&ticket.ticket_id)
        {
            if failure == 1 {
                failed.push(ticket);
            } else {
                waiting.push(ticket.held_slot());
            }
        }
    }
    // A failure record counts only if its ticket was admissible under the last seal: one
    // refused for good after that seal superseded it was never promised. (Pending
    // records and queued tickets were checked when they were written.)
    let failed_refs: Vec<&IssueTicket> = failed.iter().collect();
    let superseded_failures = superseded(txn, key, sealed, &failed_refs).await?;
    waiting.extend(
        failed
            .iter()
            .enumerate()
            .filter(|(i, _)| !superseded_failures.contains(i))
            .map(|(_, ticket)| ticket.held_slot()),
    );
    for slot in waiting.into_iter().chain(counted.iter().copied()) {
        if known.insert((slot.user, slot.slot)) {
            slots.push(slot);
        }
    }
    Ok(Gathered { slots, stored })
}

/// Sets the epoch and replaces the snapshot with the gathered slots without a coupon.
async fn write(
    txn: &DatabaseTransaction,
    campaign: i64,
    epoch: u64,
    gathered: &Gathered,
) -> std::result::Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let mut update = SqlBuilder::new(backend, "UPDATE counter_epoch SET epoch = ");
    update
        .bind(i64::try_from(epoch).unwrap_or(i64::MAX))
        .push(" WHERE campaign_id = ")
        .bind(campaign);
    txn.execute_raw(update.build()).await?;
    let mut clear = SqlBuilder::new(backend, "DELETE FROM epoch_slot WHERE campaign_id = ");
    clear.bind(campaign);
    txn.execute_raw(clear.build()).await?;
    let snapshot = &gathered.slots[gathered.stored..];
    // Four values a row: far below every backend's bound-parameter limit.
    for chunk in snapshot.chunks(CHUNK) {
        let mut insert = SqlBuilder::new(
            backend,
            &format!(
                "INSERT INTO epoch_slot (campaign_id, user_id, user_slot, {}) VALUES ",
                sql::rank_column(backend)
            ),
        );
        for (i, slot) in chunk.iter().enumerate() {
            if i > 0 {
                insert.push(", ");
            }
            insert.push("(");
            insert.bind(campaign).push(", ");
            insert.bind(slot.user.get() as i64).push(", ");
            insert
                .bind(i32::try_from(slot.slot).unwrap_or(i32::MAX))
                .push(", ");
            insert
                .bind(i64::try_from(slot.rank).unwrap_or(i64::MAX))
                .push(")");
        }
        txn.execute_raw(insert.build()).await?;
    }
    Ok(())
}

/// The open failure of the ticket `ticket_id`, if any: the store refused it for good.
pub(crate) async fn open_failure(
    txn: &DatabaseTransaction,
    ticket_id: &str,
) -> std::result::Result<Option<String>, DbErr> {
    let backend = txn.get_database_backend();
    let mut query = SqlBuilder::new(
        backend,
        "SELECT error FROM issue_failure WHERE replayed_at IS NULL AND ticket_id = ",
    );
    query.bind(ticket_id.to_owned());
    match txn.query_one_raw(query.build()).await? {
        Some(row) => Ok(Some(row.try_get_by_index(0)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_in_each_dialect() {
        assert_eq!(share_clause(DbBackend::Postgres), " FOR SHARE");
        assert_eq!(share_clause(DbBackend::MySql), " LOCK IN SHARE MODE");
        assert_eq!(share_clause(DbBackend::Sqlite), "");
    }
}
