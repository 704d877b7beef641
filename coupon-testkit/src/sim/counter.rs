//! The memory counter under the injector: errors around its calls, and a loss of its
//! memory (the whole counter replaced by an empty one, as a Redis restarted empty), at an
//! admission or in the middle of a rebuild (a second loss while the first is repaired).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use super::faults::{Injector, unknown};
use super::shards::SimShards;
use coupon_core::memory::{MemoryCounter, MemoryShards};
use coupon_core::shards::ShardedCounter;
use coupon_core::{
    Admission, Campaign, CounterStatus, CouponCounter, Error, HeldSlot, Rebuild, Release, Result,
    SealEpoch, SealedEpoch, UserId,
};

/// The counter's memory: the [`MemoryCounter`] standing for the server (and the
/// [`MemoryShards`] for sharded campaigns), replaced by empty ones when it is lost, and
/// how many times it was.
pub(crate) struct Memory {
    server: RwLock<Arc<MemoryCounter>>,
    shards: RwLock<Arc<MemoryShards>>,
    losses: AtomicU64,
}

impl Memory {
    /// The shards of sharded campaigns now.
    pub(crate) fn shards(&self) -> Arc<MemoryShards> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The server now, and how many losses came before it.
    fn now(&self) -> (Arc<MemoryCounter>, u64) {
        let server = self.server.read().unwrap_or_else(|e| e.into_inner());
        (server.clone(), self.losses.load(Ordering::SeqCst))
    }

    /// Empties the counter: every campaign unbuilt, as a Redis restarted empty.
    fn lose(&self, faults: &Injector) {
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(MemoryCounter::new());
        *self.shards.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(MemoryShards::new());
        self.losses.fetch_add(1, Ordering::SeqCst);
        faults.lost_memory();
    }
}

/// A [`MemoryCounter`] that fails around its calls and may lose every campaign; a
/// sharded campaign's steps on each shard fail and lose their answers too
/// ([`SimShards`]).
pub(crate) struct SimCounter {
    memory: Arc<Memory>,
    faults: Arc<Injector>,
    sharded: Arc<ShardedCounter<SimShards>>,
}

impl SimCounter {
    pub(crate) fn new(faults: Arc<Injector>) -> Self {
        let memory = Arc::new(Memory {
            server: RwLock::new(Arc::new(MemoryCounter::new())),
            shards: RwLock::new(Arc::new(MemoryShards::new())),
            losses: AtomicU64::new(0),
        });
        let sharded = Arc::new(ShardedCounter::new(Arc::new(SimShards {
            memory: memory.clone(),
            faults: faults.clone(),
        })));
        Self {
            memory,
            faults,
            sharded,
        }
    }

    /// The counter of `campaign`: the server's, or for a sharded campaign the
    /// sharded counter over the injected shards.
    fn inner(&self, campaign: &Campaign) -> Arc<dyn CouponCounter> {
        if campaign.shards > 1 {
            self.sharded.clone()
        } else {
            self.memory.now().0
        }
    }

    /// Loses the counter's memory now when a loss was drawn for its next call.
    fn lose_if_armed(&self) {
        if self.faults.take_armed_loss() {
            self.faults
                .note("counter forgets", "as drawn for its next call".into());
            self.memory.lose(&self.faults);
        }
    }
}

#[async_trait]
impl CouponCounter for SimCounter {
    async fn try_acquire(&self, campaign: &Campaign, user: UserId) -> Result<Admission> {
        if self
            .faults
            .roll(self.faults.rates().forget, "counter forgets", || {
                "every campaign's admissions".into()
            })
        {
            self.memory.lose(&self.faults);
        }
        self.lose_if_armed();
        let what = format!("try_acquire user {user}");
        self.faults.maybe_delay(&what).await;
        self.faults.before(&what)?;
        let admission = self.inner(campaign).try_acquire(campaign, user).await?;
        // Named without the admission time, which is the wall clock's: the trace must
        // depend on the seed alone.
        let answer = match admission {
            Admission::Granted { rank, slot, .. } => format!("granted rank {rank} slot {slot}"),
            other => format!("{other:?}"),
        };
        if self.faults.after(&format!("{what} -> {answer}")) {
            return Err(unknown(&what));
        }
        Ok(admission)
    }

    async fn release(&self, campaign: &Campaign, held: &HeldSlot) -> Result<Release> {
        let what = format!("release user {} rank {}", held.user, held.rank);
        self.faults.before(&what)?;
        let released = self.inner(campaign).release(campaign, held).await?;
        if self.faults.after(&what) {
            return Err(unknown(&what));
        }
        Ok(released)
    }

    async fn ready(&self) -> Result<()> {
        self.memory.now().0.ready().await
    }

    async fn is_admitted(&self, campaign: &Campaign, user: UserId) -> Result<bool> {
        self.inner(campaign).is_admitted(campaign, user).await
    }

    async fn status(&self, campaign: &Campaign) -> Result<CounterStatus> {
        self.lose_if_armed();
        self.inner(campaign).status(campaign).await
    }

    /// Sorted, so that the settler's order (and the faults drawn for it) replays.
    async fn slots_of(&self, campaign: &Campaign, user: UserId) -> Result<Vec<HeldSlot>> {
        self.faults.before("slots_of")?;
        self.inner(campaign).slots_of(campaign, user).await
    }

    async fn held_slots(&self, campaign: &Campaign) -> Result<Vec<HeldSlot>> {
        self.faults.before("held_slots")?;
        let mut held = self.inner(campaign).held_slots(campaign).await?;
        held.sort_by_key(|slot| (slot.user, slot.slot, slot.rank));
        Ok(held)
    }

    async fn claim(
        &self,
        campaign: &Campaign,
        slots: &[HeldSlot],
        reclaim_after: Duration,
    ) -> Result<Vec<HeldSlot>> {
        self.faults.before("claim")?;
        self.inner(campaign)
            .claim(campaign, slots, reclaim_after)
            .await
    }

    async fn confirm_epoch(&self, campaign: &Campaign, epoch: u64) -> Result<bool> {
        self.faults.before("confirm_epoch")?;
        self.inner(campaign).confirm_epoch(campaign, epoch).await
    }

    /// The rebuild runs on the server it began on. One whose server was lost before it
    /// built fails and starts over, as on a Redis emptied meanwhile (its close and its
    /// lock are gone with the data, so its last step refuses): it must never build the
    /// empty server from what it closed and sealed on the lost one.
    async fn rebuild(&self, campaign: &Campaign, seal: Arc<dyn SealEpoch>) -> Result<Rebuild> {
        self.faults.before("rebuild")?;
        let (server, losses) = (self.inner(campaign), self.memory.now().1);
        let seal = Arc::new(SimSeal {
            seal,
            memory: self.memory.clone(),
            faults: self.faults.clone(),
        });
        let rebuilt = server.rebuild(campaign, seal).await?;
        if self.memory.now().1 != losses {
            self.faults.note(
                "rebuild lost",
                "the counter lost its memory again before the rebuild built it".into(),
            );
            return Err(Error::NotReady {
                campaign: campaign.id,
                backend: "sim",
            });
        }
        if let Rebuild::Built(report) = rebuilt {
            self.faults
                .note("counter rebuilt", format!("{} slots", report.admitted));
        }
        Ok(rebuilt)
    }

    fn max_shards(&self) -> u16 {
        self.sharded.max_shards()
    }
}

/// A rebuild's seal during which the counter may lose its memory again: before the
/// store seals (the seal then counts what the lost server held when it closed), after
/// it (the store sealed, the counter not built yet), or some time into it (while the
/// queue drains, or once the rebuild is over: two losses in quick succession).
struct SimSeal {
    seal: Arc<dyn SealEpoch>,
    memory: Arc<Memory>,
    faults: Arc<Injector>,
}

#[async_trait]
impl SealEpoch for SimSeal {
    async fn seal(&self, counted: Vec<HeldSlot>) -> Result<SealedEpoch> {
        const WHEN: [&str; 3] = ["before the store seals", "after the store sealed", "later"];
        let when = self.faults.below(WHEN.len() as u64) as usize;
        let delay = Duration::from_millis(self.faults.below(3_000));
        // Only a rebuild after a loss (not the build of a new campaign).
        let again = !self.faults.losses().is_empty()
            && self.faults.roll(
                self.faults.rates().forget_again,
                "counter forgets again",
                || match when {
                    2 => format!("during a rebuild, {} ms into its seal", delay.as_millis()),
                    _ => format!("during a rebuild, {}", WHEN[when]),
                },
            );
        match (again, when) {
            (true, 0) => self.memory.lose(&self.faults),
            (true, 2) => {
                let (memory, faults) = (self.memory.clone(), self.faults.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    memory.lose(&faults);
                });
            }
            _ => {}
        }
        let sealed = self.seal.seal(counted).await;
        if again && when == 1 {
            self.memory.lose(&self.faults);
        }
        sealed
    }
}
