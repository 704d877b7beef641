//! `issue_batch`: one transaction per batch, serialised per campaign, cap checked in it.

use std::collections::{BTreeMap, HashMap, HashSet};

use coupon_core::{Coupon, Error, IssueOutcome, IssueTicket, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};

use crate::epoch::{self, EpochLock};
use crate::error::{BACKEND, classify, classify_commit};
use crate::sql::{self, SqlBuilder};

/// Rows per multi-row INSERT and ids per `IN (...)` list: 7 values a row keeps each
/// statement far below every backend's bound-parameter limit (SQLite's is 32,766).
pub(crate) const CHUNK: usize = 1_000;

/// The campaign row as locked for the batch.
struct Locked {
    cap: i64,
    per_user_limit: i64,
    issued: i64,
}

/// A coupon to insert, with the slot (1..=per_user_limit) it takes of its holder.
struct NewCoupon {
    coupon: Coupon,
    user_slot: i32,
}

pub(crate) async fn issue_batch(
    db: &DatabaseConnection,
    tickets: &[IssueTicket],
) -> Result<Vec<IssueOutcome>> {
    if tickets.is_empty() {
        return Ok(Vec::new());
    }
    check_ranges(tickets)?;
    let backend = db.get_database_backend();
    // Read committed on MySQL too: each campaign's reads below must see what a seal
    // committed before this batch locked that campaign, not a snapshot taken at the
    // batch's first read.
    let txn = sql::begin_queue_write(db)
        .await
        .map_err(|e| classify(e, || "issue_batch: BEGIN".to_owned()))?;
    if backend == DbBackend::Postgres {
        // The lookups below go by unique keys. PostgreSQL's planner, whose statistics lag a
        // table that grows by thousands of rows a second (a new database, the first
        // minute of a sale, before autovacuum analyses it), would otherwise pick a scan
        // of the whole table for every batch.
        txn.execute_unprepared("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
            .await
            .map_err(|e| classify(e, || "issue_batch: SET LOCAL".to_owned()))?;
    }

    let outcomes = issue_in(&txn, backend, tickets).await?;
    txn.commit()
        .await
        .map_err(|e| classify_commit(e, || "issue_batch: COMMIT".to_owned()))?;
    Ok(outcomes)
}

/// Issues `tickets` in `txn` (begun with [`sql::begin_queue_write`]), each campaign
/// locked in turn: the outcome of each, committed or rolled back with `txn`.
pub(crate) async fn issue_in(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    tickets: &[IssueTicket],
) -> Result<Vec<IssueOutcome>> {
    // Campaigns in id order, so two batches spanning the same campaigns lock them in the
    // same order and cannot deadlock.
    let mut by_campaign: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, ticket) in tickets.iter().enumerate() {
        let campaign = i64::try_from(ticket.campaign.get()).unwrap_or(-1);
        by_campaign.entry(campaign).or_default().push(i);
    }
    let mut outcomes = vec![IssueOutcome::UnknownCampaign; tickets.len()];
    for (campaign, indices) in by_campaign {
        issue_campaign(txn, backend, campaign, tickets, &indices, &mut outcomes).await?;
    }
    Ok(outcomes)
}

/// Whether a coupon row holds `ticket`'s numbers (its rank fits a signed 64-bit column).
pub(crate) fn fits(ticket: &IssueTicket) -> bool {
    i64::try_from(ticket.rank).is_ok()
}

/// Refuses a batch holding a ticket whose numbers do not fit the signed 64-bit columns
/// (a corrupt or foreign ticket): a permanent error, so that the worker splits the batch
/// and dead-letters that ticket alone, instead of storing a wrapped-around rank.
fn check_ranges(tickets: &[IssueTicket]) -> Result<()> {
    match tickets.iter().find(|ticket| !fits(ticket)) {
        Some(ticket) => Err(Error::backend(
            BACKEND,
            format!(
                "ticket {} of campaign {} has rank {}, beyond what a coupon row holds",
                ticket.ticket_id, ticket.campaign, ticket.rank
            ),
            None,
        )),
        None => Ok(()),
    }
}

async fn issue_campaign(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    campaign: i64,
    tickets: &[IssueTicket],
    indices: &[usize],
    outcomes: &mut [IssueOutcome],
) -> Result<()> {
    let what = || format!("issue_batch for campaign {campaign}");
    let Some(locked) = lock(txn, backend, campaign)
        .await
        .map_err(|e| classify(e, what))?
    else {
        return Ok(()); // outcomes stay UnknownCampaign
    };
    let batch: Vec<&IssueTicket> = indices.iter().map(|&i| &tickets[i]).collect();
    let (mut held, stored) = holdings(txn, backend, campaign, &batch)
        .await
        .map_err(|e| classify(e, what))?;
    // The campaign row is locked, and a seal locks it first: the epoch cannot move now.
    let sealed = epoch::current(txn, &[campaign], EpochLock::None)
        .await
        .map_err(|e| classify(e, what))?
        .get(&campaign)
        .copied()
        .unwrap_or(0);
    let superseded = epoch::superseded(txn, campaign, sealed, &batch)
        .await
        .map_err(|e| classify(e, what))?;

    let mut issued = locked.issued;
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for (position, (&i, ticket)) in indices.iter().zip(&batch).enumerate() {
        let id = ticket.ticket_id.to_string();
        let slots = held.entry(ticket.user.get() as i64).or_insert(0);
        outcomes[i] =
            if stored.contains(&id) || seen.contains(&id) || *slots >= locked.per_user_limit {
                IssueOutcome::Duplicate
            } else if superseded.contains(&position) {
                // Not remembered as seen: a copy of this ticket id of a newer epoch, later in
                // the batch, is judged on its own.
                IssueOutcome::Superseded
            } else if issued >= locked.cap {
                IssueOutcome::OverCap
            } else {
                seen.insert(id);
                *slots += 1;
                issued += 1;
                let coupon = Coupon::from_ticket(ticket);
                rows.push(NewCoupon {
                    coupon: coupon.clone(),
                    user_slot: *slots as i32,
                });
                IssueOutcome::Issued(coupon)
            };
    }
    if rows.is_empty() {
        return Ok(());
    }
    insert(txn, backend, campaign, &rows).await?;
    let mut update = SqlBuilder::new(backend, "UPDATE campaign SET issued = issued + ");
    update
        .bind(rows.len() as i64)
        .push(" WHERE id = ")
        .bind(campaign);
    txn.execute_raw(update.build())
        .await
        .map_err(|e| classify(e, || format!("updating campaign {campaign}.issued")))?;
    Ok(())
}

async fn lock(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    campaign: i64,
) -> std::result::Result<Option<Locked>, sea_orm::DbErr> {
    let Some(row) = txn
        .query_one_raw(sql::lock_campaign(backend, campaign))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Locked {
        cap: row.try_get_by_index(0)?,
        per_user_limit: i64::from(row.try_get_by_index::<i32>(1)?),
        issued: row.try_get_by_index(2)?,
    }))
}

/// What the users of `batch` already hold in `campaign`: their coupon count, and the
/// ticket ids stored for them (a ticket always names the same campaign and user, so a
/// stored copy of one of `batch`'s tickets is among these).
///
/// The query filters on `user_id` alone, the leading column of the unique key, and
/// leaves the campaign to the loop below: given a campaign too, a planner whose
/// statistics predate the campaign (created seconds ago, growing by thousands of rows a
/// second) reads every row of it through the campaign index, on every batch.
async fn holdings(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    campaign: i64,
    batch: &[&IssueTicket],
) -> std::result::Result<(HashMap<i64, i64>, HashSet<String>), sea_orm::DbErr> {
    let users: Vec<i64> = batch
        .iter()
        .map(|t| t.user.get() as i64)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut held = HashMap::new();
    let mut stored = HashSet::new();
    for chunk in users.chunks(CHUNK) {
        let mut query = SqlBuilder::new(
            backend,
            "SELECT user_id, campaign_id, ticket_id FROM coupon WHERE user_id IN ",
        );
        query.bind_list(chunk.iter().copied());
        for row in txn.query_all_raw(query.build()).await? {
            if row.try_get_by_index::<i64>(1)? == campaign {
                *held.entry(row.try_get_by_index::<i64>(0)?).or_insert(0) += 1;
                stored.insert(row.try_get_by_index::<String>(2)?);
            }
        }
    }
    Ok((held, stored))
}

async fn insert(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    campaign: i64,
    rows: &[NewCoupon],
) -> Result<()> {
    let mut inserted = 0;
    for chunk in rows.chunks(CHUNK) {
        let mut insert = SqlBuilder::new(backend, &sql::insert_coupons_head(backend));
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                insert.push(", ");
            }
            let coupon = &row.coupon;
            insert.push("(");
            insert.bind(campaign).push(", ");
            insert.bind(coupon.user.get() as i64).push(", ");
            insert.bind(row.user_slot).push(", ");
            insert.bind(coupon.rank as i64).push(", ");
            insert.bind(coupon.code.as_str().to_owned()).push(", ");
            insert.bind(coupon.ticket_id.to_string()).push(", ");
            insert.bind(coupon.issued_at).push(")");
        }
        insert.push(sql::insert_coupons_tail(backend));
        let result = txn
            .execute_raw(insert.build())
            .await
            .map_err(|e| classify(e, || format!("inserting coupons of campaign {campaign}")))?;
        inserted += result.rows_affected();
    }
    if inserted != rows.len() as u64 {
        // Under the campaign lock every row was checked new; a skipped one means a writer
        // that does not take the lock. Roll back (by dropping the transaction) and let
        // the worker retry against what is now stored.
        return Err(Error::unavailable(
            BACKEND,
            format!(
                "campaign {campaign}: inserted {inserted} of {} coupons; another writer bypassed the campaign lock",
                rows.len()
            ),
            None,
        ));
    }
    Ok(())
}
