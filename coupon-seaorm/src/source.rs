//! [`IssueSource`] on the `issue_queue` table: batches handed out under a lease, to any
//! number of workers without double work.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coupon_core::{Batch, Error, IssueSource, IssueTicket, Result, codec};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult};

use crate::error::{BACKEND, classify};
use crate::queue::Shared;
use crate::sql::{self, SqlBuilder};

/// Takes tickets from the `issue_queue` table for an
/// [`IssueWorker`](coupon_core::IssueWorker).
///
/// - A batch is taken by moving its rows' `available_at` a lease into the future, in one
///   statement or transaction that locks them: `FOR UPDATE SKIP LOCKED` on PostgreSQL and
///   MySQL 8 / MariaDB 10.6+, the database's write lock on SQLite. Workers in any number
///   of processes get disjoint batches.
/// - `ack` deletes the batch's rows. A batch dropped without an ack is made available
///   again at once; a worker that died holding one leaves it to be taken again when its
///   lease ends.
/// - A row that is not a readable ticket is parked (`dead_reason` set), never handed out.
pub struct SqlIssueSource {
    shared: Arc<Shared>,
}

impl fmt::Debug for SqlIssueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlIssueSource").finish_non_exhaustive()
    }
}

/// Travels inside a [`Batch`]: the rows it holds.
struct Receipt {
    db: DatabaseConnection,
    ids: Vec<i64>,
    acked: bool,
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if self.acked || self.ids.is_empty() {
            return;
        }
        // Given back for another worker now rather than at the end of the lease; without
        // a runtime the lease ends on its own.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (db, ids) = (self.db.clone(), std::mem::take(&mut self.ids));
        runtime.spawn(async move {
            let backend = db.get_database_backend();
            for chunk in ids.chunks(crate::issue::CHUNK) {
                let mut update =
                    SqlBuilder::new(backend, "UPDATE issue_queue SET available_at = ");
                update.bind(Utc::now()).push(" WHERE id IN ");
                update.bind_list(chunk.iter().copied());
                if let Err(error) = db.execute_raw(update.build()).await {
                    tracing::debug!(%error, "could not give back an unacked batch; its lease will end");
                }
            }
        });
    }
}

impl SqlIssueSource {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Takes up to `max` available rows under a lease; returns their ids and tickets.
    async fn take(&self, max: usize) -> Result<Vec<(i64, String)>> {
        sql::retrying_lock_conflicts(|| self.try_take(max))
            .await
            .map_err(|e| classify(e, || "taking a batch from issue_queue".to_owned()))
    }

    async fn try_take(&self, max: usize) -> std::result::Result<Vec<(i64, String)>, DbErr> {
        let db = &self.shared.db;
        let backend = db.get_database_backend();
        let now = Utc::now();
        let until = lease_end(now, self.shared.config.lease);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        if backend == DbBackend::Postgres {
            // One statement: select, lock and lease.
            let mut take = SqlBuilder::new(backend, "UPDATE issue_queue SET available_at = ");
            take.bind(until)
                .push(", deliveries = deliveries + 1 WHERE id IN (SELECT id FROM issue_queue WHERE dead_reason IS NULL AND available_at <= ")
                .bind(now)
                .push(" ORDER BY id LIMIT ")
                .bind(limit)
                .push(" FOR UPDATE SKIP LOCKED) RETURNING id, ticket");
            let rows = db.query_all_raw(take.build()).await?;
            let mut taken = rows
                .iter()
                .map(row)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            taken.sort_unstable_by_key(|(id, _)| *id);
            return Ok(taken);
        }
        let txn = sql::begin_queue_write(db).await?;
        let mut select = SqlBuilder::new(
            backend,
            "SELECT id, ticket FROM issue_queue WHERE dead_reason IS NULL AND available_at <= ",
        );
        select.bind(now).push(" ORDER BY id LIMIT ").bind(limit);
        if backend == DbBackend::MySql {
            select.push(" FOR UPDATE SKIP LOCKED");
        }
        let rows = txn.query_all_raw(select.build()).await?;
        let taken = rows
            .iter()
            .map(row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if taken.is_empty() {
            // Ended here, not by drop: a dropped transaction's rollback is only queued,
            // and on SQLite this one holds the write lock other processes wait for.
            txn.rollback().await?;
            return Ok(taken);
        }
        let mut lease = SqlBuilder::new(backend, "UPDATE issue_queue SET available_at = ");
        lease
            .bind(until)
            .push(", deliveries = deliveries + 1 WHERE id IN ");
        lease.bind_list(taken.iter().map(|(id, _)| *id));
        txn.execute_raw(lease.build()).await?;
        txn.commit().await?;
        Ok(taken)
    }

    /// Parks a row that is not a readable ticket.
    async fn park(&self, id: i64, reason: &str) -> Result<()> {
        let backend = self.shared.db.get_database_backend();
        let mut park = SqlBuilder::new(backend, "UPDATE issue_queue SET dead_reason = ");
        park.bind(reason.to_owned()).push(" WHERE id = ").bind(id);
        self.shared
            .db
            .execute_raw(park.build())
            .await
            .map(|_| ())
            .map_err(|e| classify(e, || format!("parking issue_queue row {id}")))
    }

    /// Decodes taken rows; parks the unreadable ones.
    async fn decode(&self, rows: Vec<(i64, String)>) -> Result<(Vec<i64>, Vec<IssueTicket>)> {
        let mut ids = Vec::with_capacity(rows.len());
        let mut tickets = Vec::with_capacity(rows.len());
        for (id, text) in rows {
            match codec::decode(Some(text.as_bytes())) {
                Ok(ticket) => {
                    ids.push(id);
                    tickets.push(ticket);
                }
                Err(reason) => {
                    tracing::warn!(id, %reason, "parking an unreadable issue_queue row");
                    self.park(id, &reason.to_string()).await?;
                }
            }
        }
        Ok((ids, tickets))
    }
}

fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(now)
}

fn row(row: &QueryResult) -> std::result::Result<(i64, String), DbErr> {
    Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
}

#[async_trait]
impl IssueSource for SqlIssueSource {
    async fn next_batch(&self, max: usize) -> Result<Option<Batch>> {
        let max = max.max(1);
        loop {
            // Registered before looking, so that a commit between the look and the wait
            // is not missed.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let rows = self.take(max).await?;
            if !rows.is_empty() {
                let (ids, tickets) = self.decode(rows).await?;
                if tickets.is_empty() {
                    continue;
                }
                let receipt = Receipt {
                    db: self.shared.db.clone(),
                    ids,
                    acked: false,
                };
                return Ok(Some(Batch::new(tickets, receipt)));
            }
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep(self.shared.config.poll_interval) => {}
            }
        }
    }

    async fn ack(&self, batch: Batch) -> Result<()> {
        let mut receipt = batch.into_receipt::<Receipt>().map_err(|_| {
            Error::backend(BACKEND, "ack of a batch this source did not deliver", None)
        })?;
        let (db, backend) = (&self.shared.db, self.shared.db.get_database_backend());
        for chunk in receipt.ids.chunks(crate::issue::CHUNK) {
            let delete = || {
                let mut delete = SqlBuilder::new(backend, "DELETE FROM issue_queue WHERE id IN ");
                delete.bind_list(chunk.iter().copied());
                db.execute_raw(delete.build())
            };
            sql::retrying_lock_conflicts(delete)
                .await
                .map_err(|e| classify(e, || "acking issue_queue rows".to_owned()))?;
        }
        receipt.acked = true;
        Ok(())
    }

    /// Rows waiting, whatever their lease.
    async fn lag(&self) -> Result<Option<u64>> {
        let backend = self.shared.db.get_database_backend();
        let count = SqlBuilder::new(
            backend,
            "SELECT COUNT(*) FROM issue_queue WHERE dead_reason IS NULL",
        );
        let row = self
            .shared
            .db
            .query_one_raw(count.build())
            .await
            .map_err(|e| classify(e, || "counting issue_queue".to_owned()))?;
        let waiting: i64 = match row {
            Some(row) => row
                .try_get_by_index(0)
                .map_err(|e| classify(e, || "counting issue_queue".to_owned()))?,
            None => 0,
        };
        Ok(Some(u64::try_from(waiting).unwrap_or(0)))
    }
}
