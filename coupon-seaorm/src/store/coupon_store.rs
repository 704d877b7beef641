//! [`CouponStore`] and its ledgers for [`SeaOrmStore`]: each call bounded by the operation timeout.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coupon_core::{
    AdmissionLedger, Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, FailureLedger,
    HeldSlot, IssueFailure, IssueOutcome, IssueTicket, NewCampaign, Result, SealedEpoch, TicketId,
    UserId, coupon_slot,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::rows::{to_campaign, to_coupon};
use super::{Call, SeaOrmStore, ledgers};
use crate::entity::{campaign, coupon};
use crate::epoch;
use crate::error::classify;
use crate::issue;
use crate::sql::SqlBuilder;

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
                // At most MAX_SHARDS (64): validated above.
                shards: Set(new.shards as i16),
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
}

#[async_trait]
impl AdmissionLedger for SeaOrmStore {
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
}

#[async_trait]
impl FailureLedger for SeaOrmStore {
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
