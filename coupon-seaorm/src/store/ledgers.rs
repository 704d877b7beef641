//! The ledgers the store keeps for other parts: pending tickets (for the settler) and
//! failure records (dead letters, for replays and rebuilds). Each call runs within the
//! store's operation timeout (`SeaOrmStore::bounded`, in the trait's methods).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use coupon_core::{CampaignId, Error, IssueFailure, IssueTicket, Result, TicketId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::rows::{to_failure, to_pending};
use crate::entity::{coupon, issue_failure, pending_ticket};
use crate::epoch::{self, EpochLock};
use crate::error::{BACKEND, classify};
use crate::{issue, sql};

/// `Error::UnknownCampaign` unless the campaign whose key is `key` exists: a ledger
/// of a campaign the store does not know would hold records nothing reads.
async fn known_campaign(
    db: &impl sea_orm::ConnectionTrait,
    key: i64,
    campaign: CampaignId,
    what: impl Fn() -> String,
) -> Result<()> {
    let found = crate::entity::campaign::Entity::find_by_id(key)
        .select_only()
        .column(crate::entity::campaign::Column::Id)
        .into_tuple::<i64>()
        .one(db)
        .await
        .map_err(|e| classify(e, what))?;
    found.map(drop).ok_or(Error::UnknownCampaign { campaign })
}

/// The pending rows of `campaign`, with the ticket ids among them that have a coupon.
pub(super) async fn pending_rows(
    db: &DatabaseConnection,
    campaign: CampaignId,
) -> Result<(Vec<pending_ticket::Model>, HashSet<String>)> {
    let key = i64::try_from(campaign.get()).map_err(|_| Error::UnknownCampaign { campaign })?;
    let what = || format!("reading pending tickets of campaign {campaign}");
    known_campaign(db, key, campaign, what).await?;
    let rows = pending_ticket::Entity::find()
        .filter(pending_ticket::Column::CampaignId.eq(key))
        .all(db)
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
            .all(db)
            .await
            .map_err(|e| classify(e, what))?;
        issued.extend(found);
    }
    Ok((rows, issued))
}

/// Records `ticket` as pending (its hand-off unconfirmed) unless a seal superseded it
/// or it failed for good.
pub(super) async fn record_pending(db: &DatabaseConnection, ticket: &IssueTicket) -> Result<()> {
    let key = ticket.ticket_id.to_string();
    let what = || format!("recording pending ticket {key}");
    let campaign = i64::try_from(ticket.campaign.get()).map_err(|_| Error::UnknownCampaign {
        campaign: ticket.campaign,
    })?;
    let json = serde_json::to_string(ticket)
        .map_err(|e| Error::backend(BACKEND, what(), Some(e.into())))?;
    let txn = sql::begin_queue_write(db)
        .await
        .map_err(|e| classify(e, what))?;
    known_campaign(&txn, campaign, ticket.campaign, what).await?;
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
    if let Some(reason) = epoch::open_failure(&txn, &key, ticket.epoch)
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
}

/// The pending tickets of `campaign` without a coupon, oldest first.
pub(super) async fn pending_tickets(
    db: &DatabaseConnection,
    campaign: CampaignId,
) -> Result<Vec<IssueTicket>> {
    let (rows, issued) = pending_rows(db, campaign).await?;
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        if !issued.contains(&row.ticket_id) {
            pending.push(to_pending(row)?);
        }
    }
    pending.sort_by_key(|ticket| (ticket.admitted_at, ticket.ticket_id));
    Ok(pending)
}

/// Deletes the pending records of `campaign` whose coupon exists.
pub(super) async fn forget_settled_pending(
    db: &DatabaseConnection,
    campaign: CampaignId,
) -> Result<u64> {
    let (rows, issued) = pending_rows(db, campaign).await?;
    let settled: Vec<i64> = rows
        .iter()
        .filter(|row| issued.contains(&row.ticket_id))
        .map(|row| row.id)
        .collect();
    let mut forgotten = 0;
    for chunk in settled.chunks(issue::CHUNK) {
        forgotten += pending_ticket::Entity::delete_many()
            .filter(pending_ticket::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await
            .map_err(|e| {
                classify(e, || {
                    format!("forgetting settled pending tickets of campaign {campaign}")
                })
            })?
            .rows_affected;
    }
    Ok(forgotten)
}

/// Records (or updates, summing attempts) the failure of a ticket; a record of an
/// earlier epoch's ticket takes the later one (a later admission of the same slot, the
/// one a replay must publish).
pub(super) async fn record_failure(db: &DatabaseConnection, failure: &IssueFailure) -> Result<()> {
    let key = failure.ticket.ticket_id.to_string();
    let what = || format!("recording the failure of ticket {key}");
    let ticket = serde_json::to_string(&failure.ticket)
        .map_err(|e| Error::backend(BACKEND, what(), Some(e.into())))?;
    // Two attempts: a concurrent first insert of the same ticket makes the first one
    // fail on the unique key, and the second then finds the row to update.
    for attempt in 0..2 {
        let existing = issue_failure::Entity::find()
            .filter(issue_failure::Column::TicketId.eq(key.clone()))
            .one(db)
            .await
            .map_err(|e| classify(e, what))?;
        let written = match existing {
            Some(row) => {
                let attempts = row.attempts.saturating_add(failure.attempts as i32);
                let later = failure.ticket.epoch
                    > super::rows::stored_ticket(&row.ticket, "issue_failure", row.id)?.epoch;
                let mut row: issue_failure::ActiveModel = row.into();
                if later {
                    row.ticket = Set(ticket.clone());
                }
                row.error = Set(failure.error.clone());
                row.attempts = Set(attempts);
                row.last_seen = Set(failure.last_seen);
                row.replayed_at = Set(None);
                row.update(db).await.map(|_| ())
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
            .insert(db)
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
}

/// The failure records, of one campaign or all, in the order first seen.
pub(super) async fn failures(
    db: &DatabaseConnection,
    campaign: Option<CampaignId>,
) -> Result<Vec<IssueFailure>> {
    let mut query = issue_failure::Entity::find();
    if let Some(campaign) = campaign {
        query = query.filter(issue_failure::Column::CampaignId.eq(campaign.get() as i64));
    }
    query
        .order_by_asc(issue_failure::Column::FirstSeen)
        .order_by_asc(issue_failure::Column::Id)
        .all(db)
        .await
        .map_err(|e| classify(e, || format!("reading failures of campaign {campaign:?}")))?
        .into_iter()
        .map(to_failure)
        .collect()
}

/// Marks the failures of `tickets` replayed at `at`, unless they failed again since.
pub(super) async fn mark_replayed(
    db: &DatabaseConnection,
    tickets: &[TicketId],
    at: DateTime<Utc>,
) -> Result<u64> {
    let mut changed = 0;
    for chunk in tickets.chunks(issue::CHUNK) {
        let result = issue_failure::Entity::update_many()
            .col_expr(issue_failure::Column::ReplayedAt, Expr::value(Some(at)))
            .filter(issue_failure::Column::TicketId.is_in(chunk.iter().map(ToString::to_string)))
            .filter(issue_failure::Column::LastSeen.lte(at))
            .exec(db)
            .await
            .map_err(|e| classify(e, || "marking failures replayed".to_owned()))?;
        changed += result.rows_affected;
    }
    Ok(changed)
}
