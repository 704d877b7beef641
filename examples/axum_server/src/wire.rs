//! The JSON bodies of the API, in and out. The handlers build their answers from these
//! types and the OpenAPI document (`/openapi.json`) is generated from them, so the two
//! cannot drift apart.

use chrono::{DateTime, Utc};
use coupon_core::{Campaign, Coupon, TicketId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /campaigns`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    /// 1 to 255 characters, not all blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// The most coupons to issue: at least 1.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub cap: u64,
    /// The most coupons one user may hold; 1 when absent.
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub per_user_limit: Option<u32>,
    /// How many counters share the cap; 1 when absent. Fixed at creation. More than the
    /// counter in use supports (64 in memory, 1 on Redis so far) is `invalid_campaign`.
    #[schema(minimum = 1, maximum = 64)]
    pub shards: Option<u16>,
    /// Applications before this instant are answered `not_open`; between
    /// 1970-01-01T00:00:01Z and 2038-01-19T03:14:07Z (what every store holds).
    pub opens_at: Option<DateTime<Utc>>,
    /// Applications from this instant on are answered `closed`; after `opens_at`, in the
    /// same range.
    pub closes_at: Option<DateTime<Utc>>,
}

/// `POST /campaigns/{id}/apply`: no body with credentials; trusted clients name the
/// user here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The applicant: required from trusted clients; with credentials it must be the
    /// caller's own id, or absent.
    pub user_id: Option<u64>,
}

/// `POST /admin/campaigns/{id}/reopen`, optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenRequest {
    /// The new end of the window; open for good when absent.
    pub closes_at: Option<DateTime<Utc>>,
}

/// `POST /admin/dead-letters/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this campaign's dead letters.
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub campaign: Option<u64>,
    /// Only these tickets.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub ticket_ids: Vec<TicketId>,
}

/// A campaign's definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The most coupons it issues.
    pub cap: u64,
    /// The most coupons one user may hold.
    pub per_user_limit: u32,
    /// How many counters share the cap.
    pub shards: u16,
    /// Start of the window, if any.
    pub opens_at: Option<DateTime<Utc>>,
    /// End of the window (exclusive), if any.
    pub closes_at: Option<DateTime<Utc>>,
}

impl From<&Campaign> for CampaignView {
    fn from(campaign: &Campaign) -> Self {
        Self {
            id: campaign.id.0,
            name: campaign.name.clone(),
            cap: campaign.cap,
            per_user_limit: campaign.per_user_limit,
            shards: campaign.shards,
            opens_at: campaign.opens_at,
            closes_at: campaign.closes_at,
        }
    }
}

/// Where a campaign stands for applicants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Before its window.
    NotOpen,
    /// Admitting.
    Open,
    /// Every slot admitted.
    SoldOut,
    /// After its window (or closed early).
    Closed,
}

/// `GET /campaigns/{id}`: a campaign's counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignStatus {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The most coupons it issues.
    pub cap: u64,
    /// Applicants admitted so far.
    pub admitted: u64,
    /// Coupons persisted so far.
    pub issued: u64,
    /// Slots left to admit.
    pub remaining: u64,
    /// Where it stands.
    pub state: CampaignState,
    /// Whether its counter is being rebuilt after it lost its memory (applications
    /// answer 503 `not_ready` meanwhile); never for a campaign closed or sold out.
    pub rebuilding: bool,
}

impl From<coupon_core::CampaignState> for CampaignState {
    fn from(state: coupon_core::CampaignState) -> Self {
        match state {
            coupon_core::CampaignState::NotOpen => Self::NotOpen,
            coupon_core::CampaignState::Open => Self::Open,
            coupon_core::CampaignState::SoldOut => Self::SoldOut,
            coupon_core::CampaignState::Closed => Self::Closed,
        }
    }
}

impl From<&coupon_core::CampaignStatus> for CampaignStatus {
    fn from(status: &coupon_core::CampaignStatus) -> Self {
        Self {
            id: status.campaign.id.0,
            name: status.campaign.name.clone(),
            cap: status.campaign.cap,
            admitted: status.admitted,
            issued: status.issued,
            remaining: status.remaining(),
            state: status.state.into(),
            rebuilding: status.rebuilding,
        }
    }
}

/// One campaign of `GET /admin/campaigns`: its counts and its definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminCampaign {
    /// Counts and state.
    #[serde(flatten)]
    pub status: CampaignStatus,
    /// The most coupons one user may hold.
    pub per_user_limit: u32,
    /// How many counters share the cap.
    pub shards: u16,
    /// Start of the window, if any.
    pub opens_at: Option<DateTime<Utc>>,
    /// End of the window (exclusive), if any.
    pub closes_at: Option<DateTime<Utc>>,
}

impl From<&coupon_core::CampaignStatus> for AdminCampaign {
    fn from(status: &coupon_core::CampaignStatus) -> Self {
        Self {
            status: status.into(),
            per_user_limit: status.campaign.per_user_limit,
            shards: status.campaign.shards,
            opens_at: status.campaign.opens_at,
            closes_at: status.campaign.closes_at,
        }
    }
}

/// One campaign as the store alone tells it (the operator's `campaigns` command where
/// the counter lives in the service's memory): the shape of [`AdminCampaign`], the
/// counter's figures null.
#[derive(Debug, Serialize)]
pub struct StoredCampaign {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The most coupons it issues.
    pub cap: u64,
    /// Unknown here: the counter is in the service's process.
    pub admitted: Option<u64>,
    /// Coupons persisted.
    pub issued: u64,
    /// Unknown here.
    pub remaining: Option<u64>,
    /// Unknown here.
    pub state: Option<String>,
    /// The most coupons one user may hold.
    pub per_user_limit: u32,
    /// How many counters share the cap.
    pub shards: u16,
    /// Start of the window, if any.
    pub opens_at: Option<DateTime<Utc>>,
    /// End of the window (exclusive), if any.
    pub closes_at: Option<DateTime<Utc>>,
}

impl From<&coupon_core::CampaignSummary> for StoredCampaign {
    fn from(summary: &coupon_core::CampaignSummary) -> Self {
        let campaign = &summary.campaign;
        Self {
            id: campaign.id.0,
            name: campaign.name.clone(),
            cap: campaign.cap,
            admitted: None,
            issued: summary.issued,
            remaining: None,
            state: None,
            per_user_limit: campaign.per_user_limit,
            shards: campaign.shards,
            opens_at: campaign.opens_at,
            closes_at: campaign.closes_at,
        }
    }
}

/// `GET /admin/campaigns`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    /// Every campaign, by id.
    pub campaigns: Vec<AdminCampaign>,
}

/// 202 to an apply: admitted and handed off, with the first-come rank.
#[derive(Debug, Serialize, ToSchema)]
pub struct Admitted {
    /// The applicant's place, 1 to the cap; on a campaign of several shards, unique
    /// but only roughly in arrival order across shards (`ceil(rank / shards)` is the
    /// place on the applicant's shard).
    pub rank: u64,
    /// The ticket the coupon will be issued from.
    #[schema(value_type = uuid::Uuid)]
    pub ticket_id: TicketId,
}

/// The only value of [`Pending::status`].
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    /// Admitted; the coupon will come.
    Pending,
}

/// 202 with no rank: admitted, the hand-off not confirmed yet; the coupon will come,
/// and the coupon route tells when.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pending {
    /// Always `pending`.
    pub status: PendingStatus,
}

impl Pending {
    /// The pending answer.
    pub const ANSWER: Self = Self {
        status: PendingStatus::Pending,
    };
}

/// What a 202 to an apply holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ApplyAnswer {
    /// Admitted with a rank.
    Admitted(Admitted),
    /// Admitted, hand-off not confirmed yet.
    Pending(Pending),
}

/// `GET /campaigns/{id}/coupons/{user_id}`: the user's coupon.
#[derive(Debug, Serialize, ToSchema)]
pub struct CouponView {
    /// The campaign.
    pub campaign_id: u64,
    /// The owner.
    pub user_id: u64,
    /// The owner's first-come rank.
    pub rank: u64,
    /// The code to redeem: a secret of its owner.
    pub code: String,
    /// When it was persisted.
    pub issued_at: DateTime<Utc>,
    /// Coupons the user holds in this campaign (up to its per-user limit).
    pub coupons: usize,
}

impl CouponView {
    /// The first of `coupons` (the user's coupons in one campaign, at least one).
    pub fn of(coupon: &Coupon, coupons: usize) -> Self {
        Self {
            campaign_id: coupon.campaign.0,
            user_id: coupon.user.0,
            rank: coupon.rank,
            code: coupon.code.as_str().to_owned(),
            issued_at: coupon.issued_at,
            coupons,
        }
    }
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `invalid_request`, `invalid_campaign`, `unknown_campaign`,
    /// `no_coupon`, `sold_out`, `already_applied`, `not_open`, `closed`,
    /// `unauthorized`, `forbidden`, `rate_limited`, `body_too_large`,
    /// `unsupported_media_type`, `not_found`, `method_not_allowed`, `unavailable`,
    /// `timeout`, `not_ready`, `superseded`, `admission_refused`, `internal`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request body's field it is about, when it is one field's fault (an invalid
    /// campaign definition, a field of the wrong type or missing); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /healthz` and `GET /readyz` when all is well.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready` (every backend answers).
    pub status: String,
}
