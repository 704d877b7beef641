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

mod sealing;

pub(crate) use sealing::seal;

use std::collections::{HashMap, HashSet};

use coupon_core::{CampaignId, Error, IssueTicket, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};

use crate::error::classify;
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

/// [`AdmissionLedger::sealed_epoch`](coupon_core::AdmissionLedger::sealed_epoch).
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

/// The open failure of the ticket `ticket_id` of `epoch`, if any: the store refused it
/// (or a later admission of the same slot) for good. A record of an earlier epoch's
/// admission of the slot is not this ticket's: a seal superseded that one.
pub(crate) async fn open_failure(
    txn: &DatabaseTransaction,
    ticket_id: &str,
    epoch: u64,
) -> std::result::Result<Option<String>, DbErr> {
    let backend = txn.get_database_backend();
    let mut query = SqlBuilder::new(
        backend,
        "SELECT error, ticket FROM issue_failure WHERE replayed_at IS NULL AND ticket_id = ",
    );
    query.bind(ticket_id.to_owned());
    match txn.query_one_raw(query.build()).await? {
        Some(row) => {
            let error: String = row.try_get_by_index(0)?;
            let ticket: String = row.try_get_by_index(1)?;
            // An unreadable record refuses, as every open record did before.
            let recorded = serde_json::from_str::<IssueTicket>(&ticket)
                .map_or(u64::MAX, |ticket| ticket.epoch);
            Ok((recorded >= epoch).then_some(error))
        }
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
