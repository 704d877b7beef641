use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};

use super::{campaign, unavailable};
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, Coupon, CouponIssuer, Error, HeldSlot,
    IssueTicket, MockCouponCounter, MockCouponStore, MockIssueQueue, NewCampaign, Release,
    SealEpoch, SealedEpoch, TicketId, UserId,
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

#[tokio::test]
async fn accepted_only_after_the_publish_is_acknowledged() {
    let published = Arc::new(Mutex::new(Vec::<IssueTicket>::new()));
    let mut queue = MockIssueQueue::new();
    let sink = published.clone();
    queue.expect_publish().times(1).returning(move |ticket| {
        sink.lock().unwrap().push(ticket.clone());
        Ok(())
    });
    // Not a queue in the store: the counter confirms the epoch before `Accepted`.
    queue.expect_in_store().return_const(false);
    let mut counter = granting(7);
    counter
        .expect_confirm_epoch()
        .times(1)
        .withf(|campaign, epoch| *campaign == CampaignId(1) && *epoch == 3)
        .returning(|_, _| Ok(true));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    let tickets = published.lock().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        (
            tickets[0].campaign,
            tickets[0].user,
            tickets[0].slot,
            tickets[0].rank,
            tickets[0].epoch
        ),
        (CampaignId(1), USER, 1, 7, 3)
    );
    assert_eq!(
        tickets[0].ticket_id,
        TicketId::for_admission(CampaignId(1), USER, 1),
        "the ticket id follows from the admission"
    );
    assert_eq!(
        outcome,
        ApplyOutcome::Accepted {
            rank: 7,
            ticket_id: tickets[0].ticket_id
        }
    );
}

/// An acknowledged ticket whose epoch the counter no longer confirms (a rebuild closed
/// it meanwhile) is not `Accepted`: it is recorded as pending, which the store allows
/// only while no seal superseded it; when one did, the applicant hears a retryable
/// error, and no one was promised anything.
#[tokio::test]
async fn an_acknowledged_ticket_of_an_unconfirmed_epoch_is_pending_or_refused() {
    for superseded in [false, true] {
        let mut queue = MockIssueQueue::new();
        queue.expect_publish().times(1).returning(|_| Ok(()));
        queue.expect_in_store().return_const(false);
        let mut counter = granting(7);
        counter.expect_confirm_epoch().returning(|_, _| Ok(false));
        let mut store = store_with(campaign(10));
        store
            .expect_record_pending()
            .times(1)
            .returning(move |ticket| {
                if superseded {
                    Err(Error::Superseded {
                        campaign: ticket.campaign,
                        user: ticket.user,
                        epoch: ticket.epoch,
                    })
                } else {
                    Ok(())
                }
            });
        let issuer = issuer(counter, queue, store);
        let outcome = issuer.apply(CampaignId(1), USER).await;
        if superseded {
            let error = outcome.unwrap_err();
            assert!(
                matches!(error, Error::Superseded { epoch: 3, .. }) && error.is_retryable(),
                "{error:?}"
            );
        } else {
            assert_eq!(outcome.unwrap(), ApplyOutcome::Pending);
        }
    }
}

/// A queue kept in the store refuses superseded tickets itself: its acknowledgement is
/// `Accepted` without asking the counter.
#[tokio::test]
async fn a_queue_in_the_store_needs_no_epoch_confirmation() {
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| Ok(()));
    queue.expect_in_store().return_const(true);
    let mut counter = granting(7);
    counter.expect_confirm_epoch().never();
    let issuer = issuer(counter, queue, store_with(campaign(10)));
    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert!(
        matches!(outcome, ApplyOutcome::Accepted { rank: 7, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn definite_publish_failure_releases_the_slot_once() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .withf(|campaign, held: &HeldSlot| {
            (*campaign, held.user, held.slot, held.rank) == (CampaignId(1), USER, 1, 3)
        })
        .times(1)
        .returning(|_, _| Ok(Release::Released));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable());
    match error {
        Error::NotHandedOff { source, user, .. } => {
            assert_eq!(user, USER);
            assert!(matches!(*source, Error::PublishRefused { .. }));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn refused_publish_of_a_claimed_slot_is_pending() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .times(1)
        .returning(|_, _| Ok(Release::Settling));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut store = store_with(campaign(10));
    recording_pending(&mut store, recorded.clone());
    let issuer = issuer(counter, queue, store);

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Pending);
    let recorded = recorded.lock().unwrap();
    assert_eq!(
        recorded.len(),
        1,
        "a claimed slot's ticket is recorded before Pending"
    );
    assert_eq!((recorded[0].user, recorded[0].rank), (USER, 3));
}

#[tokio::test]
async fn unknown_publish_outcome_keeps_the_slot_reserved() {
    let mut counter = granting(3);
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| {
        Err(Error::PublishUnknown {
            backend: "mock",
            source: "timed out".into(),
        })
    });
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut store = store_with(campaign(10));
    recording_pending(&mut store, recorded.clone());
    let issuer = issuer(counter, queue, store);

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(
        outcome,
        ApplyOutcome::Pending,
        "the settler rolls it forward"
    );
    let recorded = recorded.lock().unwrap();
    assert_eq!(
        recorded.iter().map(|t| t.ticket_id).collect::<Vec<_>>(),
        vec![TicketId::for_admission(CampaignId(1), USER, 1)],
        "recorded in the store before the answer"
    );
}

/// Pending is a promise only once the ticket is durable: with the store refusing the
/// record too, the caller hears the publish's error (retryable) and the slot stays
/// held for the settler, never released.
#[tokio::test]
async fn unknown_publish_outcome_without_a_record_is_a_retryable_error() {
    let mut counter = granting(3);
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| {
        Err(Error::PublishUnknown {
            backend: "mock",
            source: "timed out".into(),
        })
    });
    let mut store = store_with(campaign(10));
    store
        .expect_record_pending()
        .times(1)
        .returning(|_| Err(unavailable()));
    let issuer = issuer(counter, queue, store);

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(error, Error::PublishUnknown { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn unclassified_publish_error_is_treated_as_unknown() {
    let mut counter = granting(3);
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(unavailable()));
    let mut store = store_with(campaign(10));
    recording_pending(&mut store, Arc::default());
    let issuer = issuer(counter, queue, store);

    let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Pending);
}

#[tokio::test]
async fn a_failed_release_is_a_retryable_error_not_a_promise() {
    let mut counter = granting(3);
    counter
        .expect_release()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let issuer = issuer(counter, queue, store_with(campaign(10)));

    // The release may have run: the slot may be free, so "pending" could be a promise
    // nobody keeps. Applying again tells.
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn counter_error_publishes_nothing() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    counter.expect_release().times(0);
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    // The store is asked whether the campaign is full: it is not, so the error stands.
    let mut store = store_with(campaign(10));
    store.expect_issued_count().times(1).returning(|_| Ok(3));
    let issuer = issuer(counter, queue, store);

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(matches!(
        error,
        Error::Unavailable {
            backend: "mock",
            ..
        }
    ));
}

/// A counter that does not answer, on a campaign whose store holds its cap: sold out
/// for a newcomer, already applied for a holder, and no counter needed.
#[tokio::test]
async fn a_full_campaign_answers_without_its_counter() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(2)
        .returning(|_, _| Err(unavailable()));
    let mut store = store_with(campaign(10));
    store.expect_issued_count().times(1).returning(|_| Ok(10));
    store.expect_holders().returning(|_| Ok(vec![USER]));
    store.expect_coupons_of().returning(|campaign, user| {
        Ok(if user == USER {
            vec![Coupon::from_ticket(&IssueTicket::new(campaign, user, 1, 1))]
        } else {
            Vec::new()
        })
    });
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    assert_eq!(
        issuer.apply(CampaignId(1), UserId(5)).await.unwrap(),
        ApplyOutcome::SoldOut
    );
    assert_eq!(
        issuer.apply(CampaignId(1), USER).await.unwrap(),
        ApplyOutcome::AlreadyApplied
    );
}

#[tokio::test]
async fn sold_out_is_remembered_without_another_counter_trip() {
    let mut counter = MockCouponCounter::new();
    counter
        .expect_try_acquire()
        .times(1)
        .returning(|_, _| Ok(Admission::SoldOut));
    // The memo loads who holds the slots once, and answers from it from then on.
    counter.expect_held_slots().times(1).returning(|_| {
        Ok(vec![HeldSlot {
            user: UserId(99),
            ..earlier_slot()
        }])
    });
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    let issuer = issuer(counter, queue, holding(1));

    assert_eq!(
        issuer.apply(CampaignId(1), UserId(1)).await.unwrap(),
        ApplyOutcome::SoldOut
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for user in 2..=5 {
        let outcome = issuer.apply(CampaignId(1), UserId(user)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::SoldOut);
    }
    // A winner pressing again holds a coupon: told so, still without a counter trip.
    let winner = issuer.apply(CampaignId(1), UserId(99)).await.unwrap();
    assert_eq!(winner, ApplyOutcome::AlreadyApplied);
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

#[tokio::test]
async fn already_applied_publishes_nothing_and_is_remembered_once_stored() {
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(0);
    let mut store = store_with(campaign(10));
    store
        .expect_coupons_of()
        .times(1)
        .returning(|campaign, user| {
            Ok(vec![Coupon::from_ticket(&IssueTicket::new(
                campaign, user, 1, 1,
            ))])
        });
    let issuer = issuer(already_applied(3), queue, store);

    for _ in 0..3 {
        let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::AlreadyApplied);
    }
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

/// The earlier apply may have ended in an error, leaving the slot only in the counter:
/// the slot is claimed (never given back from then on) and its ticket recorded before
/// the answer, each time.
#[tokio::test]
async fn applying_again_before_the_coupon_is_stored_records_the_slot_and_is_pending() {
    let mut counter = already_applied(2);
    counter
        .expect_slots_of()
        .times(2)
        .returning(|_, _| Ok(vec![earlier_slot()]));
    counter
        .expect_claim()
        .times(2)
        .returning(|_, slots, reclaim_after| {
            assert_eq!(reclaim_after, std::time::Duration::ZERO);
            Ok(slots.to_vec())
        });
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut store = holding(0);
    recording_pending(&mut store, recorded.clone());
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    for _ in 0..2 {
        let outcome = issuer.apply(CampaignId(1), USER).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::Pending);
    }
    let recorded = recorded.lock().unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded
            .iter()
            .all(|ticket| ticket.rank == 5 && ticket.user == USER)
    );
}

/// A slot given back between the counter's answer and the claim (its hand-off was
/// refused) promises nothing: a retryable error, nothing recorded.
#[tokio::test]
async fn applying_again_while_the_slot_is_given_back_is_a_retryable_error() {
    let mut counter = already_applied(1);
    counter
        .expect_slots_of()
        .returning(|_, _| Ok(vec![earlier_slot()]));
    counter.expect_claim().returning(|_, _, _| Ok(Vec::new()));
    let mut store = holding(0);
    store.expect_record_pending().times(0);
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

/// The slot went (released by its own refused hand-off, or lost with the counter)
/// between the counter's "already applied" and the lookup of the user's slots: nothing
/// to record, so no `Pending` either.
#[tokio::test]
async fn applying_again_when_the_slot_is_gone_is_a_retryable_error() {
    let mut counter = already_applied(1);
    counter.expect_slots_of().returning(|_, _| Ok(Vec::new()));
    counter.expect_claim().returning(|_, _, _| Ok(Vec::new()));
    let mut store = holding(0);
    store.expect_record_pending().times(0);
    let issuer = issuer(counter, MockIssueQueue::new(), store);
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn applying_again_while_the_store_is_down_is_a_retryable_error() {
    let mut store = store_with(campaign(10));
    store
        .expect_coupons_of()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let issuer = issuer(already_applied(1), MockIssueQueue::new(), store);
    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

/// Runs `apply` until its publish has begun (`entered`), then drops it: a caller that
/// hangs up mid-hand-off.
async fn hang_up_while_publishing(
    apply: impl std::future::Future<Output = crate::Result<ApplyOutcome>>,
    entered: tokio::sync::oneshot::Receiver<()>,
) {
    let mut apply = std::pin::pin!(apply);
    tokio::select! {
        _ = &mut apply => panic!("the first publish never answers"),
        _ = entered => {}
    }
}

/// A queue whose first publish never answers (the caller is dropped while waiting on
/// it); later publishes are stored.
struct StallingQueue {
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    published: tokio::sync::mpsc::UnboundedSender<IssueTicket>,
    calls: std::sync::atomic::AtomicU32,
}

impl StallingQueue {
    /// The queue, the signal of its first publish starting, and the tickets its later
    /// publishes stored.
    fn new() -> (
        Self,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::mpsc::UnboundedReceiver<IssueTicket>,
    ) {
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        let (published_tx, published) = tokio::sync::mpsc::unbounded_channel();
        let queue = Self {
            entered: Mutex::new(Some(entered_tx)),
            published: published_tx,
            calls: std::sync::atomic::AtomicU32::new(0),
        };
        (queue, entered, published)
    }
}

#[async_trait::async_trait]
impl crate::IssueQueue for StallingQueue {
    async fn publish(&self, ticket: &IssueTicket) -> crate::Result<()> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            if let Some(entered) = self.entered.lock().unwrap().take() {
                let _ = entered.send(());
            }
            std::future::pending::<()>().await;
        }
        self.published.send(ticket.clone()).unwrap();
        Ok(())
    }
}

/// The caller goes away while the publish is in flight: the hand-off still completes,
/// on a task of its own, with the same ticket.
#[tokio::test]
async fn a_dropped_apply_still_hands_its_ticket_off() {
    let (queue, entered, mut published) = StallingQueue::new();
    let issuer = CouponIssuer::new(
        Arc::new(granting(5)),
        Arc::new(queue),
        Arc::new(store_with(campaign(10))),
    );

    hang_up_while_publishing(issuer.apply(CampaignId(1), USER), entered).await;

    let ticket = tokio::time::timeout(std::time::Duration::from_secs(5), published.recv())
        .await
        .expect("the abandoned hand-off completes")
        .expect("a ticket");
    assert_eq!((ticket.user, ticket.slot, ticket.rank), (USER, 1, 5));
}

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

/// A queue whose first publish stalls; every later one is refused.
struct StallThenRefuse {
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    later: tokio::sync::mpsc::UnboundedSender<()>,
    calls: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl crate::IssueQueue for StallThenRefuse {
    async fn publish(&self, _: &IssueTicket) -> crate::Result<()> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            if let Some(entered) = self.entered.lock().unwrap().take() {
                let _ = entered.send(());
            }
            std::future::pending::<()>().await;
        }
        self.later.send(()).unwrap();
        Err(refused())
    }
}

/// The caller goes away mid-publish and the publish finished for it is refused: the
/// first one may still be on its way, so the slot is never given back.
#[tokio::test]
async fn an_abandoned_hand_off_never_releases() {
    let mut counter = granting(5);
    counter.expect_release().times(0);
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let (later_tx, mut later) = tokio::sync::mpsc::unbounded_channel();
    let queue = StallThenRefuse {
        entered: Mutex::new(Some(entered_tx)),
        later: later_tx,
        calls: std::sync::atomic::AtomicU32::new(0),
    };
    let issuer = CouponIssuer::new(
        Arc::new(counter),
        Arc::new(queue),
        Arc::new(store_with(campaign(10))),
    );
    hang_up_while_publishing(issuer.apply(CampaignId(1), USER), entered).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), later.recv())
        .await
        .expect("the abandoned hand-off publishes again")
        .expect("a call");
    // Give a release (there must be none) the time to happen.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// A counter whose release never answers.
struct StallingRelease {
    inner: MockCouponCounter,
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[async_trait::async_trait]
impl crate::CouponCounter for StallingRelease {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> crate::Result<Admission> {
        self.inner.try_acquire(campaign, user).await
    }
    async fn release(&self, _: CampaignId, _: &HeldSlot) -> crate::Result<Release> {
        if let Some(entered) = self.entered.lock().unwrap().take() {
            let _ = entered.send(());
        }
        std::future::pending().await
    }
    async fn ready(&self) -> crate::Result<()> {
        self.inner.ready().await
    }
    async fn is_admitted(&self, campaign: CampaignId, user: UserId) -> crate::Result<bool> {
        self.inner.is_admitted(campaign, user).await
    }
    async fn status(&self, campaign: CampaignId) -> crate::Result<crate::CounterStatus> {
        self.inner.status(campaign).await
    }
    async fn held_slots(&self, campaign: CampaignId) -> crate::Result<Vec<HeldSlot>> {
        self.inner.held_slots(campaign).await
    }
    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> crate::Result<Vec<HeldSlot>> {
        self.inner.slots_of(campaign, user).await
    }
    async fn claim(
        &self,
        campaign: CampaignId,
        slots: &[HeldSlot],
        reclaim_after: std::time::Duration,
    ) -> crate::Result<Vec<HeldSlot>> {
        self.inner.claim(campaign, slots, reclaim_after).await
    }
    async fn confirm_epoch(&self, campaign: CampaignId, epoch: u64) -> crate::Result<bool> {
        self.inner.confirm_epoch(campaign, epoch).await
    }
    async fn rebuild(
        &self,
        campaign: &Campaign,
        seal: Arc<dyn SealEpoch>,
    ) -> crate::Result<crate::Rebuild> {
        self.inner.rebuild(campaign, seal).await
    }
}

/// The caller goes away while a refused ticket's slot is being given back: the ticket
/// is never published again (the slot may be someone else's by then).
#[tokio::test]
async fn a_hand_off_abandoned_while_releasing_publishes_nothing_more() {
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let counter = StallingRelease {
        inner: granting(5),
        entered: Mutex::new(Some(entered_tx)),
    };
    let mut queue = MockIssueQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(refused()));
    let issuer = CouponIssuer::new(
        Arc::new(counter),
        Arc::new(queue),
        Arc::new(store_with(campaign(10))),
    );
    let mut apply = Box::pin(issuer.apply(CampaignId(1), USER));
    tokio::select! {
        _ = &mut apply => panic!("the release never answers"),
        _ = entered => {}
    }
    drop(apply);
    // The mock fails the test if publish is called a second time.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// A counter that lost its memory: the apply fails as retryable and grants nothing,
/// and the issuer rebuilds the counter at once, in the epoch the store seals once the
/// queue has drained past the mark it took then, from every slot the seal answers: no
/// grace period is waited out.
#[tokio::test(start_paused = true)]
async fn a_counter_not_ready_is_rebuilt_in_the_epoch_the_store_seals_once_the_queue_drained() {
    use crate::{CouponCounter, QueueMark};
    let stored = HeldSlot {
        user: UserId(9),
        slot: 1,
        rank: 1,
        admitted_at: None,
        epoch: 0,
    };
    // A counter of this process's memory that lost everything: nothing built.
    let counter = Arc::new(crate::memory::MemoryCounter::new());
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().never();
    queue.expect_in_store().return_const(false);
    queue.expect_mark().times(1).returning(|| {
        Ok(Some(QueueMark {
            positions: vec![41],
        }))
    });
    // A queue that cannot read what its consumers have not acked: the rebuild waits
    // for the drain.
    queue.expect_unacked().times(1).returning(|_| Ok(None));
    let polls = Arc::new(Mutex::new(0));
    let seen = polls.clone();
    queue.expect_drained().returning(move |mark| {
        assert_eq!(mark.positions, [41]);
        let mut polls = seen.lock().unwrap();
        *polls += 1;
        Ok(*polls >= 3)
    });
    let mut store = store_with(campaign(10));
    store.expect_issued_count().returning(|_| Ok(1));
    let drained = polls.clone();
    store.expect_sealed_epoch().returning(|_| Ok(5));
    store
        .expect_seal_epoch()
        .times(1)
        .returning(move |_, after, counted| {
            assert_eq!(after, 5, "sealed after the epoch read once closed");
            assert!(counted.is_empty(), "the counter held nothing: {counted:?}");
            assert_eq!(*drained.lock().unwrap(), 3, "sealed only once drained");
            Ok(SealedEpoch::new(6, vec![stored]))
        });
    let issuer = CouponIssuer::new(counter.clone(), Arc::new(queue), Arc::new(store));
    let started = tokio::time::Instant::now();

    for _ in 0..3 {
        let refused = issuer.apply(CampaignId(1), USER).await;
        assert!(
            matches!(refused, Err(Error::NotReady { .. })),
            "{refused:?}"
        );
    }
    while !counter.status(CampaignId(1)).await.unwrap().is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "rebuilt {:?} after the loss was seen: no grace period",
        started.elapsed()
    );
    let status = counter.status(CampaignId(1)).await.unwrap();
    assert_eq!((status.admitted, status.epoch), (1, Some(6)));
}

/// An applicant whose apply took a slot and ended in an error (the publish's outcome
/// unknown, its record refused) holds a slot that becomes a coupon: trying again once
/// the campaign is sold out, they hear where it stands, never "sold out" from the flag
/// later applicants raised.
#[tokio::test]
async fn an_applicant_left_with_an_error_is_not_told_sold_out() {
    use crate::CouponCounter;
    let counter = Arc::new(crate::memory::MemoryCounter::new());
    counter
        .rebuild(&campaign(1), Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .unwrap();
    let mut queue = MockIssueQueue::new();
    queue.expect_publish().times(1).returning(|_| {
        Err(Error::PublishUnknown {
            backend: "mock",
            source: "connection reset".into(),
        })
    });
    let mut store = store_with(campaign(1));
    let records = std::sync::atomic::AtomicU32::new(0);
    store.expect_record_pending().returning(move |_| {
        match records.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Err(unavailable()),
            _ => Ok(()),
        }
    });
    store.expect_coupons_of().returning(|_, _| Ok(Vec::new()));
    let issuer = CouponIssuer::new(counter, Arc::new(queue), Arc::new(store));

    let error = issuer.apply(CampaignId(1), USER).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    for late in 1..=3 {
        let outcome = issuer.apply(CampaignId(1), UserId(late)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::SoldOut);
    }
    let again = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(again, ApplyOutcome::Pending, "their slot rolls forward");
    assert_eq!(
        issuer.apply(CampaignId(1), UserId(4)).await.unwrap(),
        ApplyOutcome::SoldOut
    );
}

/// An applicant whose caller went away mid-apply heard nothing, and their slot is
/// handed off on a task of its own: trying again once the campaign is sold out, they
/// hear where it stands, never "sold out" from the flag.
#[tokio::test]
async fn an_applicant_who_hung_up_mid_apply_is_not_told_sold_out() {
    use crate::CouponCounter;
    let counter = Arc::new(crate::memory::MemoryCounter::new());
    counter
        .rebuild(&campaign(1), Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .unwrap();
    let (queue, entered, mut published) = StallingQueue::new();
    let mut store = store_with(campaign(1));
    store.expect_coupons_of().returning(|_, _| Ok(Vec::new()));
    store.expect_record_pending().returning(|_| Ok(()));
    let issuer = CouponIssuer::new(counter, Arc::new(queue), Arc::new(store));

    hang_up_while_publishing(issuer.apply(CampaignId(1), USER), entered).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), published.recv())
        .await
        .expect("the abandoned hand-off completes")
        .expect("a ticket");
    for late in 1..=3 {
        let outcome = issuer.apply(CampaignId(1), UserId(late)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::SoldOut);
    }
    let again = issuer.apply(CampaignId(1), USER).await.unwrap();
    assert_eq!(again, ApplyOutcome::Pending, "their slot is on its way");
}
