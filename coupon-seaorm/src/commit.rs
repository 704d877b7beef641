//! The SQL queue's group commit: one transaction inserts a group of published tickets
//! (or, with `issue_at_commit`, issues them) and answers each publisher.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use chrono::Utc;
use coupon_core::{Error, IssueOutcome, IssueTicket, Result, codec};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::epoch::{self, EpochLock};
use crate::error::{BACKEND, classify, classify_commit};
use crate::queue::{Shared, Waiting};
use crate::sql::{self, SqlBuilder};

/// Inserts the tickets of `group` in one transaction and answers each waiter.
pub(crate) async fn commit_group(shared: &Shared, mut group: Vec<Waiting>) {
    // A publisher that gave up (its timeout, its caller gone) was answered "unknown"
    // and its admission is left to the settler: nothing is gained by committing it now.
    group.retain(|waiting| !waiting.done.is_closed());
    if group.is_empty() {
        return;
    }
    let (tickets, waiters): (Vec<IssueTicket>, Vec<_>) =
        group.into_iter().map(|w| (w.ticket, w.done)).unzip();
    let result = insert(&shared.db, &tickets, shared.config.issue_at_commit).await;
    if result.is_ok() {
        shared.commits.fetch_add(1, Ordering::Relaxed);
        shared.arrived.notify_waiters();
    }
    for (i, waiter) in waiters.into_iter().enumerate() {
        let answer = match &result {
            Ok(superseded) if superseded.contains(&i) => Err(Error::PublishRefused {
                backend: BACKEND,
                source: Box::new(Error::Superseded {
                    campaign: tickets[i].campaign,
                    user: tickets[i].user,
                    epoch: tickets[i].epoch,
                }),
            }),
            Ok(_) => Ok(()),
            Err(error) if error.is_outcome_unknown() => Err(Error::PublishUnknown {
                backend: BACKEND,
                source: error.to_string().into(),
            }),
            Err(error) => Err(Error::PublishRefused {
                backend: BACKEND,
                source: error.to_string().into(),
            }),
        };
        // A publisher that went away no longer needs its answer.
        let _ = waiter.send(answer);
    }
}

/// One transaction of multi-row inserts; an error before `COMMIT` stored nothing.
/// Answers the indexes of the tickets it left out: of an epoch a seal superseded
/// without counting their slot (checked under the epoch rows' shared lock, so a seal
/// either counts what this commits or comes first and is seen here). With `issue`,
/// the tickets become coupons in this transaction, and only those that cannot are
/// inserted as rows; should issuing fail, the group is inserted as rows in a
/// transaction of its own, as without `issue` (one bad ticket must not refuse its
/// whole group: the worker splits a failing batch and dead-letters that one alone).
async fn insert(
    db: &DatabaseConnection,
    tickets: &[IssueTicket],
    issue: bool,
) -> Result<HashSet<usize>> {
    if issue {
        match insert_once(db, tickets, true).await {
            Err(error) if !error.is_outcome_unknown() => {
                tracing::warn!(%error, "issuing a group at commit failed; handing it to the worker");
            }
            done => return done,
        }
    }
    insert_once(db, tickets, false).await
}

async fn insert_once(
    db: &DatabaseConnection,
    tickets: &[IssueTicket],
    issue: bool,
) -> Result<HashSet<usize>> {
    let backend = db.get_database_backend();
    let txn = sql::begin_queue_write(db)
        .await
        .map_err(|e| classify(e, || "issue_queue: BEGIN".to_owned()))?;
    let mut superseded = superseded(&txn, tickets)
        .await
        .map_err(|e| classify(e, || "issue_queue: reading counter epochs".to_owned()))?;
    let now = Utc::now();
    let mut kept: Vec<usize> = (0..tickets.len())
        .filter(|i| !superseded.contains(i))
        .collect();
    if issue {
        let (left, refused) = issued_here(&txn, tickets, kept).await?;
        kept = left;
        superseded.extend(refused);
    }
    let kept: Vec<&IssueTicket> = kept.into_iter().map(|i| &tickets[i]).collect();
    for chunk in kept.chunks(crate::issue::CHUNK) {
        let mut insert = SqlBuilder::new(
            backend,
            "INSERT INTO issue_queue (ticket_id, campaign_id, user_id, ticket, enqueued_at, available_at, deliveries) VALUES ",
        );
        for (i, ticket) in chunk.iter().enumerate() {
            if i > 0 {
                insert.push(", ");
            }
            let text = String::from_utf8(codec::encode(ticket)).unwrap_or_default();
            insert.push("(");
            insert.bind(ticket.ticket_id.to_string()).push(", ");
            insert.bind(ticket.campaign.get() as i64).push(", ");
            insert.bind(ticket.user.get() as i64).push(", ");
            insert.bind(text).push(", ");
            insert.bind(now).push(", ");
            insert.bind(now).push(", 0)");
        }
        txn.execute_raw(insert.build())
            .await
            .map_err(|e| classify(e, || "inserting into issue_queue".to_owned()))?;
    }
    txn.commit()
        .await
        .map_err(|e| classify_commit(e, || "issue_queue: COMMIT".to_owned()))?;
    Ok(superseded)
}

/// Issues what it can of `tickets[kept]` in `txn`. Answers the indexes left for the
/// queue's table (not issued and not already held: a duplicate is done, as the worker
/// would find it), and those a seal superseded (refused like the ones the epoch check
/// before caught: nobody may be told yes for them).
async fn issued_here(
    txn: &sea_orm::DatabaseTransaction,
    tickets: &[IssueTicket],
    kept: Vec<usize>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    // A ticket no coupon row can hold would fail the whole group: the worker
    // dead-letters it alone.
    let (issuable, mut left): (Vec<usize>, Vec<usize>) = kept
        .into_iter()
        .partition(|&i| crate::issue::fits(&tickets[i]));
    let owned: Vec<IssueTicket> = issuable.iter().map(|&i| tickets[i].clone()).collect();
    let backend = txn.get_database_backend();
    let outcomes = crate::issue::issue_in(txn, backend, &owned).await?;
    let mut refused = Vec::new();
    for (i, outcome) in issuable.into_iter().zip(outcomes) {
        match outcome {
            IssueOutcome::Issued(_) | IssueOutcome::Duplicate => {}
            IssueOutcome::Superseded => refused.push(i),
            _ => left.push(i),
        }
    }
    Ok((left, refused))
}

/// The indexes of `tickets` a seal superseded, with the epoch rows of their campaigns
/// locked for share until the transaction ends.
async fn superseded(
    txn: &sea_orm::DatabaseTransaction,
    tickets: &[IssueTicket],
) -> std::result::Result<HashSet<usize>, sea_orm::DbErr> {
    let mut by_campaign: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, ticket) in tickets.iter().enumerate() {
        by_campaign
            .entry(ticket.campaign.get() as i64)
            .or_default()
            .push(i);
    }
    let campaigns: Vec<i64> = by_campaign.keys().copied().collect();
    let sealed = epoch::current(txn, &campaigns, EpochLock::Share).await?;
    let mut refused = HashSet::new();
    for (campaign, indexes) in by_campaign {
        let Some(&epoch) = sealed.get(&campaign) else {
            continue; // never sealed: nothing to supersede
        };
        let group: Vec<&IssueTicket> = indexes.iter().map(|&i| &tickets[i]).collect();
        for position in epoch::superseded(txn, campaign, epoch, &group).await? {
            refused.insert(indexes[position]);
        }
    }
    Ok(refused)
}
