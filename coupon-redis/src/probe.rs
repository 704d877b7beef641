//! Epoch probes: whether a campaign's counter still admits in an epoch, one read per
//! group of concurrent questions about a campaign.
//!
//! The issuer asks after each publish a queue acknowledged, so under load thousands ask
//! at once. An answer is valid for a question only if its read was sent after the
//! question was asked (a read sent before may predate the loss the question is about):
//! [`Coalesced`] gives exactly that, one read in flight per campaign.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coupon_core::{CampaignId, Coalesced};

/// What one read found: whether the campaign is built on the server the read reached,
/// and its epoch there; `None` when the read failed.
pub(crate) type Reading = Option<(bool, Option<u64>)>;

/// The probes of every campaign asked about.
#[derive(Default)]
pub(crate) struct Probes {
    campaigns: Mutex<HashMap<CampaignId, Arc<Coalesced<Reading>>>>,
}

impl Probes {
    /// What a read of `campaign` sent after this call began found; `read` performs one.
    pub(crate) async fn ask<F, Fut>(&self, campaign: CampaignId, read: F) -> Reading
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Reading>,
    {
        let probe = {
            let mut campaigns = self.campaigns.lock().unwrap_or_else(|e| e.into_inner());
            campaigns.entry(campaign).or_default().clone()
        };
        probe.ask(read).await
    }
}
