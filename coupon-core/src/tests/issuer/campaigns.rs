//! Campaign definitions: the window, an unknown campaign, the cache.

use std::sync::Arc;

use chrono::{Duration, Utc};

use super::{USER, issuer, store_with};
use crate::tests::campaign;
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, CouponIssuer, Error, MockCouponCounter,
    MockCouponStore, MockIssueQueue, NewCampaign,
};

#[tokio::test]
async fn outside_the_window_the_counter_is_not_asked() {
    let now = Utc::now();
    for (new, expected) in [
        (
            NewCampaign::new("later", 10).opens_at(now + Duration::hours(1)),
            ApplyOutcome::NotOpen,
        ),
        (
            NewCampaign::new("over", 10).closes_at(now - Duration::hours(1)),
            ApplyOutcome::Closed,
        ),
    ] {
        let mut counter = MockCouponCounter::new();
        counter.expect_try_acquire().times(0);
        let campaign = Campaign::from_new(CampaignId(1), new);
        let issuer = issuer(counter, MockIssueQueue::new(), store_with(campaign));
        assert_eq!(issuer.apply(CampaignId(1), USER).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn unknown_campaign_is_a_typed_error_and_reaches_no_counter() {
    let mut store = MockCouponStore::new();
    store
        .expect_campaign()
        .times(1)
        .returning(|campaign| Err(Error::UnknownCampaign { campaign }));
    let mut counter = MockCouponCounter::new();
    counter.expect_try_acquire().times(0);
    let issuer = issuer(counter, MockIssueQueue::new(), store);

    let error = issuer.apply(CampaignId(9), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::UnknownCampaign {
            campaign: CampaignId(9)
        }
    ));
}

#[tokio::test]
async fn campaign_definitions_are_read_from_the_store_once() {
    let mut store = MockCouponStore::new();
    store
        .expect_campaign()
        .times(1)
        .returning(|_| Ok(campaign(10)));
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(3)
        .returning(|_, _| Ok(Admission::SoldOut));
    let issuer = CouponIssuer::with_config(
        Arc::new(counter),
        Arc::new(MockIssueQueue::new()),
        Arc::new(store),
        crate::IssuerConfig::default().with_sold_out_ttl(std::time::Duration::ZERO),
    );
    for _ in 0..3 {
        issuer.apply(CampaignId(1), USER).await.unwrap();
    }
}
