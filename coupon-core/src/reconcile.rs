//! Settling reserved slots against the store, the final authority.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::{CampaignId, CouponCounter, CouponStore, Result, UserId};

/// What [`reconcile`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Admissions older than the cutoff whose holder has a coupon in the store.
    pub confirmed: u64,
    /// Admissions older than the cutoff with no coupon in the store: released.
    pub released: Vec<UserId>,
    /// The counter's admitted count afterwards.
    pub admitted: u64,
    /// Coupons in the store.
    pub issued: u64,
}

/// Releases every slot admitted before `cutoff` whose holder has no coupon in the store,
/// and reports the counter beside the store.
///
/// Pick `cutoff` older than the queue's delivery timeout plus the worker's worst lag:
/// a slot is released only when its ticket can no longer arrive. Should one arrive
/// anyway, the store still refuses it past the cap (`OverCap`, recorded as a failure),
/// so a cutoff too recent costs a coupon promise, never the cap.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
/// use coupon_core::memory::{MemoryCounter, MemoryStore};
/// use coupon_core::{reconcile, CouponCounter, CouponStore, NewCampaign, UserId};
///
/// let (counter, store) = (MemoryCounter::new(), MemoryStore::new());
/// let campaign = store.create_campaign(NewCampaign::new("drop", 10)).await?;
/// // A slot whose hand-off outcome was unknown and whose ticket never arrived:
/// counter.try_acquire(&campaign, UserId(7)).await?;
///
/// let report = reconcile(&counter, &store, campaign.id, chrono::Utc::now()).await?;
/// assert_eq!(report.released, vec![UserId(7)]);
/// assert_eq!((report.admitted, report.issued), (0, 0));
/// # Ok(()) }
/// ```
pub async fn reconcile(
    counter: &dyn CouponCounter,
    store: &dyn CouponStore,
    campaign: CampaignId,
    cutoff: DateTime<Utc>,
) -> Result<ReconcileReport> {
    let old = counter.admitted_before(campaign, cutoff).await?;
    let holders: HashSet<UserId> = store.holders(campaign).await?.into_iter().collect();
    let mut confirmed = 0;
    let mut released = Vec::new();
    for user in old {
        if holders.contains(&user) {
            confirmed += 1;
        } else if counter.release(campaign, user).await? {
            tracing::info!(%campaign, %user, "released a slot whose ticket never reached the store");
            released.push(user);
        }
    }
    Ok(ReconcileReport {
        confirmed,
        released,
        admitted: counter.status(campaign).await?.admitted,
        issued: store.issued_count(campaign).await?,
    })
}
