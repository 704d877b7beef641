//! Each step of a move, sent twice, changes what it changes once.

use std::sync::Arc;

use crate::memory::MemoryCounter;
use crate::shards::{MoveId, ShardOps};
use crate::{Campaign, CampaignId, CouponCounter, Error, NewCampaign, SealedEpoch};

/// A campaign of cap 10 over 2 shards, built in epoch 1: budgets 5 and 5.
async fn built() -> (MemoryCounter, Campaign) {
    let counter = MemoryCounter::new();
    let campaign = Campaign::from_new(CampaignId(7), NewCampaign::new("moves", 10).shards(2));
    counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(1, Vec::new())))
        .await
        .expect("built");
    (counter, campaign)
}

#[tokio::test]
async fn a_take_sent_again_takes_nothing_more_even_after_it_completed() {
    let (counter, campaign) = built().await;
    let ops = counter.sharded.ops();
    let id = MoveId::new();
    assert_eq!(ops.take(&campaign, 0, 1, id, 3, 1).await.unwrap(), 3);
    assert_eq!(ops.take(&campaign, 0, 1, id, 3, 1).await.unwrap(), 3);
    assert_eq!(ops.peek(&campaign, 0).await.unwrap().budget, 2);
    assert_eq!(ops.peek(&campaign, 0).await.unwrap().open.len(), 1);
    ops.give(&campaign, 1, 1, id, 3).await.unwrap();
    ops.complete(&campaign, 0, 1, id).await.unwrap();
    assert!(ops.peek(&campaign, 0).await.unwrap().open.is_empty());
    // A late copy of the take, after the move completed.
    assert_eq!(ops.take(&campaign, 0, 1, id, 3, 1).await.unwrap(), 3);
    let donor = ops.peek(&campaign, 0).await.unwrap();
    assert_eq!((donor.budget, donor.open.len()), (2, 0));
}

#[tokio::test]
async fn a_give_sent_again_adds_nothing() {
    let (counter, campaign) = built().await;
    let ops = counter.sharded.ops();
    let id = MoveId::new();
    assert_eq!(ops.take(&campaign, 0, 1, id, 2, 1).await.unwrap(), 2);
    ops.give(&campaign, 1, 1, id, 2).await.unwrap();
    let version = ops.peek(&campaign, 1).await.unwrap().version;
    ops.give(&campaign, 1, 1, id, 2).await.unwrap();
    let recipient = ops.peek(&campaign, 1).await.unwrap();
    assert_eq!((recipient.budget, recipient.version), (7, version));
}

#[tokio::test]
async fn a_take_leaves_the_donor_half_and_an_empty_take_is_remembered() {
    let (counter, campaign) = built().await;
    let ops = counter.sharded.ops();
    // At most half of what is free, rounded up: two takers of one donor both get some.
    assert_eq!(
        ops.take(&campaign, 0, 1, MoveId::new(), 5, 1)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        ops.take(&campaign, 0, 1, MoveId::new(), 5, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        ops.take(&campaign, 0, 1, MoveId::new(), 5, 1)
            .await
            .unwrap(),
        1
    );
    let empty = MoveId::new();
    assert_eq!(ops.take(&campaign, 0, 1, empty, 2, 1).await.unwrap(), 0);
    // Stock comes back to the donor; the empty take, sent again, still takes none.
    ops.give(&campaign, 0, 1, MoveId::new(), 4).await.unwrap();
    assert_eq!(ops.take(&campaign, 0, 1, empty, 2, 1).await.unwrap(), 0);
    let donor = ops.peek(&campaign, 0).await.unwrap();
    assert_eq!((donor.budget, donor.open.len()), (4, 3));
}

#[tokio::test]
async fn moves_of_another_epoch_are_refused() {
    let (counter, campaign) = built().await;
    let ops = counter.sharded.ops();
    let id = MoveId::new();
    for refused in [
        ops.take(&campaign, 0, 2, id, 1, 1).await.map(|_| ()),
        ops.give(&campaign, 1, 2, id, 1).await,
        ops.complete(&campaign, 0, 2, id).await,
    ] {
        assert!(
            matches!(refused, Err(Error::NotReady { .. })),
            "{refused:?}"
        );
    }
    let budgets = (
        ops.peek(&campaign, 0).await.unwrap().budget,
        ops.peek(&campaign, 1).await.unwrap().budget,
    );
    assert_eq!(budgets, (5, 5));
}

/// A seal during which the counter is suspended and resumed (the lease lost and
/// taken back): another process may have sealed a later epoch meanwhile.
struct LeaseLostDuringSeal(Arc<MemoryCounter>);

#[async_trait::async_trait]
impl crate::SealEpoch for LeaseLostDuringSeal {
    async fn seal(&self, counted: Vec<crate::HeldSlot>) -> crate::Result<SealedEpoch> {
        self.0.suspend();
        self.0.resume();
        Ok(SealedEpoch::new(5, counted))
    }
}

#[tokio::test]
async fn a_suspension_forgets_the_shards_and_fails_a_rebuild_under_way() {
    let (counter, campaign) = built().await;
    let counter = Arc::new(counter);
    counter.suspend();
    let view = counter.sharded.ops().peek(&campaign, 1).await.unwrap();
    assert_eq!((view.epoch, view.budget), (None, 0));
    counter.resume();
    let failed = counter
        .rebuild(&campaign, Arc::new(LeaseLostDuringSeal(counter.clone())))
        .await;
    assert!(matches!(failed, Err(Error::NotReady { .. })), "{failed:?}");
    assert_eq!(counter.status(&campaign).await.unwrap().epoch, None);
    let rebuilt = counter
        .rebuild(&campaign, Arc::new(SealedEpoch::new(6, Vec::new())))
        .await
        .expect("the next rebuild");
    assert!(matches!(rebuilt, crate::Rebuild::Built(_)), "{rebuilt:?}");
    assert_eq!(counter.status(&campaign).await.unwrap().epoch, Some(6));
}

#[tokio::test]
async fn slots_of_a_closed_shard_carry_the_epoch_it_last_admitted_in() {
    use crate::shards::RebuildToken;
    let (counter, campaign) = built().await;
    let user = crate::UserId(1);
    let home = crate::home_shard(user, 2);
    assert!(matches!(
        counter.try_acquire(&campaign, user).await.unwrap(),
        crate::Admission::Granted { epoch: 1, .. }
    ));
    let ops = counter.sharded.ops();
    let token = RebuildToken::new();
    assert!(ops.lock(&campaign, home, token).await.unwrap());
    assert_eq!(ops.close(&campaign, home, token).await.unwrap().len(), 1);
    // Closed by a rebuild: its slot still carries epoch 1, never 0 (a ticket of epoch
    // 0 would pass the store's epoch fence), so the settler can settle it.
    let held = counter.held_slots(&campaign).await.unwrap();
    assert_eq!(
        held.iter()
            .map(|slot| (slot.user, slot.epoch))
            .collect::<Vec<_>>(),
        [(user, 1)]
    );
    assert_eq!(counter.slots_of(&campaign, user).await.unwrap()[0].epoch, 1);
    let admitted = counter.is_admitted(&campaign, user).await;
    assert!(
        matches!(admitted, Err(Error::NotReady { .. })),
        "{admitted:?}"
    );
}
