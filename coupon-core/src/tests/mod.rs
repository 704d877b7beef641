//! Unit tests of the algorithm's branches, driven by mocks of the three traits.

mod issuer;
pub(crate) mod mock_store;
mod service;
mod worker;

use crate::{Campaign, CampaignId, Error, NewCampaign};

fn campaign(cap: u64) -> Campaign {
    Campaign::from_new(CampaignId(1), NewCampaign::new("unit", cap))
}

fn unavailable() -> Error {
    Error::unavailable("mock", "down", None)
}
