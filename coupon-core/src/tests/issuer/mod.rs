//! Unit tests of [`CouponIssuer`], by theme, with the mocks and helpers they share.

mod abandoned;
mod applied_again;
mod campaigns;
mod hand_off;
mod sold_out;

use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::campaign;
use crate::{
    Admission, Campaign, Coupon, CouponIssuer, Error, HeldSlot, IssueTicket, MockCouponCounter,
    MockCouponStore, MockIssueQueue, UserId,
};

const USER: UserId = UserId(42);

fn store_with(campaign: Campaign) -> MockCouponStore {
    let mut store = MockCouponStore::new();
    store
        .expect_campaign()
        .returning(move |_| Ok(campaign.clone()));
    store
}

fn issuer(
    counter: MockCouponCounter,
    queue: MockIssueQueue,
    store: MockCouponStore,
) -> CouponIssuer {
    CouponIssuer::new(Arc::new(counter), Arc::new(queue), Arc::new(store))
}

fn granting(rank: u64) -> MockCouponCounter {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(move |_, _| {
            Ok(Admission::Granted {
                rank,
                slot: 1,
                admitted_at: Utc::now(),
                epoch: 3,
            })
        });
    counter
}

/// Records every pending ticket into `sink`, as a store that takes them.
fn recording_pending(store: &mut MockCouponStore, sink: Arc<Mutex<Vec<IssueTicket>>>) {
    store.expect_record_pending().returning(move |ticket| {
        sink.lock().unwrap().push(ticket.clone());
        Ok(())
    });
}

fn refused() -> Error {
    Error::PublishRefused {
        backend: "mock",
        source: "refused".into(),
    }
}

fn holding(coupons: usize) -> MockCouponStore {
    let mut store = store_with(campaign(10));
    store.expect_coupons_of().returning(move |campaign, user| {
        let ticket = IssueTicket::new(campaign, user, 1, 1);
        Ok(vec![Coupon::from_ticket(&ticket); coupons])
    });
    store
}

fn already_applied(times: usize) -> MockCouponCounter {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(times)
        .returning(|_, _| Ok(Admission::AlreadyApplied));
    counter
}

fn earlier_slot() -> HeldSlot {
    HeldSlot {
        user: USER,
        slot: 1,
        rank: 5,
        admitted_at: Some(Utc::now()),
        epoch: 3,
    }
}
