//! Rows read back as domain values.

use coupon_core::{
    Campaign, CampaignId, Coupon, CouponCode, Error, IssueFailure, IssueTicket, NewCampaign,
    Result, TicketId, UserId,
};

use crate::entity::{campaign, coupon, issue_failure, pending_ticket};
use crate::error::BACKEND;

pub(super) fn to_campaign(row: campaign::Model) -> Result<Campaign> {
    let mut new = NewCampaign::new(row.name, u64::try_from(row.cap).unwrap_or(0))
        .per_user_limit(u32::try_from(row.per_user_limit).unwrap_or(0))
        .shards(u16::try_from(row.shards).unwrap_or(0));
    new.opens_at = row.opens_at;
    new.closes_at = row.closes_at;
    Ok(Campaign::from_new(CampaignId(row.id as u64), new))
}

pub(super) fn ticket_id(text: &str, table: &str) -> Result<TicketId> {
    text.parse().map(TicketId).map_err(|_| {
        Error::backend(
            BACKEND,
            format!("{table}.ticket_id holds {text:?}, not a UUID"),
            None,
        )
    })
}

pub(super) fn to_coupon(row: coupon::Model) -> Result<Coupon> {
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
pub(super) fn stored_ticket(json: &str, table: &str, id: i64) -> Result<IssueTicket> {
    serde_json::from_str(json).map_err(|e| {
        Error::backend(
            BACKEND,
            format!("{table} {id} holds an unreadable ticket"),
            Some(e.into()),
        )
    })
}

pub(super) fn to_pending(row: pending_ticket::Model) -> Result<IssueTicket> {
    stored_ticket(&row.ticket, "pending_ticket", row.id)
}

pub(super) fn to_failure(row: issue_failure::Model) -> Result<IssueFailure> {
    let ticket = stored_ticket(&row.ticket, "issue_failure", row.id)?;
    Ok(
        IssueFailure::new(ticket, row.error, u32::try_from(row.attempts).unwrap_or(0))
            .seen_between(row.first_seen, row.last_seen)
            .replayed_at(row.replayed_at),
    )
}
