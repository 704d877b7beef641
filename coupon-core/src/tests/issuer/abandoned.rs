//! A caller that goes away mid-apply: the hand-off finishes on a task of its own, and
//! never gives back a slot whose ticket may be on its way.

use std::sync::{Arc, Mutex};

use super::{USER, granting, refused, store_with};
use crate::tests::campaign;
use crate::{
    Admission, ApplyOutcome, Campaign, CampaignId, CouponIssuer, HeldSlot, IssueTicket,
    MockCouponCounter, MockIssueQueue, Release, SealEpoch, SealedEpoch, UserId,
};

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
    async fn release(&self, _: &Campaign, _: &HeldSlot) -> crate::Result<Release> {
        if let Some(entered) = self.entered.lock().unwrap().take() {
            let _ = entered.send(());
        }
        std::future::pending().await
    }
    async fn ready(&self) -> crate::Result<()> {
        self.inner.ready().await
    }
    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> crate::Result<bool> {
        self.inner.is_admitted(campaign, user).await
    }
    async fn status(&self, campaign: &Campaign) -> crate::Result<crate::CounterStatus> {
        self.inner.status(campaign).await
    }
    async fn held_slots(&self, campaign: &Campaign) -> crate::Result<Vec<HeldSlot>> {
        self.inner.held_slots(campaign).await
    }
    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> crate::Result<Vec<HeldSlot>> {
        self.inner.slots_of(campaign, user).await
    }
    async fn claim(
        &self,
        campaign: &Campaign,
        slots: &[HeldSlot],
        reclaim_after: std::time::Duration,
    ) -> crate::Result<Vec<HeldSlot>> {
        self.inner.claim(campaign, slots, reclaim_after).await
    }
    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> crate::Result<bool> {
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
