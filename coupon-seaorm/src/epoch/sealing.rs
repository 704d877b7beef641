//! Sealing an epoch: under the campaign's and its epoch row's locks, gather every
//! admission the store knows of and write the new epoch with its snapshot.

use std::collections::HashSet;

use coupon_core::{CampaignId, Error, HeldSlot, IssueTicket, Result, SealedEpoch, UserId, codec};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};

use super::superseded;
use crate::error::{BACKEND, classify};
use crate::issue::CHUNK;
use crate::sql::{self, SqlBuilder};

/// [`AdmissionLedger::seal_epoch`](coupon_core::AdmissionLedger::seal_epoch) in one transaction.
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
