//! The in-memory counter: its per-campaign state, and the handle that owns it.

mod grant;
mod port;
mod shards;
mod slots;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;

pub use self::shards::MemoryShards;
use super::lock;
use crate::shards::ShardedCounter;
use crate::{CampaignId, UserId};

/// An exact admission counter in process memory.
///
/// Each campaign has its own mutex, so campaigns never contend with each other and the
/// check-and-increment of one campaign is a few nanoseconds under its lock.
///
/// Like every counter it admits only in campaigns it built ([`CouponCounter::rebuild`]):
/// a new process starts with none, and rebuilds each from the store before admitting.
///
/// A counter in one process's memory must be the only one admitting for its store: a
/// deployment that may start a second process on the same database makes the counter
/// [`suspended`](MemoryCounter::suspended) and resumes it only while the process holds
/// the database's lease (`coupon_seaorm::CounterLease`); [`suspend`](MemoryCounter::suspend)
/// forgets every campaign when the lease is lost.
///
/// Sharded campaigns ([`Campaign::shards`](crate::Campaign::shards) above 1, up to 64)
/// keep one set of slots per shard and go through
/// [`ShardedCounter`](crate::shards::ShardedCounter), exactly as a shared backend's
/// would: in one process's memory sharding spreads no load, but a campaign defined with
/// shards runs on the embedded default too.
///
/// [`CouponCounter::rebuild`]: crate::CouponCounter::rebuild
#[derive(Debug)]
pub struct MemoryCounter {
    campaigns: RwLock<HashMap<CampaignId, Arc<Mutex<Slots>>>>,
    standing: Arc<Standing>,
    sharded: ShardedCounter<MemoryShards>,
}

impl Default for MemoryCounter {
    fn default() -> Self {
        let standing = Arc::new(Standing::default());
        Self {
            campaigns: RwLock::default(),
            sharded: ShardedCounter::new(Arc::new(MemoryShards::with_standing(standing.clone()))),
            standing,
        }
    }
}

/// Whether the counter may admit, shared by its whole and sharded campaigns.
#[derive(Debug, Default)]
struct Standing {
    /// While set, nothing is admitted and nothing rebuilt.
    suspended: AtomicBool,
    /// Suspensions so far: a rebuild that saw another number when it began must not
    /// admit on what it sealed.
    suspensions: AtomicU64,
    /// What tells, at the moment it is asked, that this process still holds the lease
    /// (set by the lease's keeper): an epoch is confirmed only then.
    lease: std::sync::OnceLock<Arc<dyn LeaseCheck>>,
}

impl Standing {
    fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    fn suspensions(&self) -> u64 {
        self.suspensions.load(Ordering::SeqCst)
    }

    /// Whether an epoch admitted in may be confirmed now: not suspended, and the lease,
    /// where one guards the counter, still held.
    async fn confirms(&self) -> bool {
        if self.is_suspended() {
            return false;
        }
        match self.lease.get() {
            Some(lease) => lease.still_held().await,
            None => true,
        }
    }
}

/// Tells whether this process holds the lease that lets its in-memory counter admit,
/// asking the database at the moment of the call (so that a process that stalled while
/// another took the lease learns it before it answers yes).
#[async_trait]
pub trait LeaseCheck: Send + Sync + std::fmt::Debug {
    /// Whether the lease is this process's now.
    async fn still_held(&self) -> bool;
}

#[derive(Debug, Default)]
struct Slots {
    /// The epoch it admits in, once built from the store ([`CouponCounter::rebuild`]):
    /// admits only then.
    ///
    /// [`CouponCounter::rebuild`]: crate::CouponCounter::rebuild
    epoch: Option<u64>,
    /// The epoch it last admitted in: slots read while it does not admit (a shard
    /// closed by a rebuild) carry it, so that a ticket made from one is fenced by the
    /// store like any other of that epoch.
    last_epoch: u64,
    /// A rebuild is between closing and sealing.
    rebuilding: bool,
    admitted: u64,
    /// The highest rank granted (or restored); new ranks continue from it.
    top_rank: u64,
    /// The distance between two ranks this campaign (or shard) grants, 0 meaning 1: a
    /// shard of a sharded campaign grants every `shards`-th rank.
    rank_step: u64,
    /// The first rank it grants, less one: a shard's index.
    rank_offset: u64,
    /// Ranks at or below `top_rank` that no slot holds (given back by releases, or gaps
    /// a restore found), granted again (lowest first) before new ones, so that the ranks
    /// held stay distinct and within 1..=cap.
    free_ranks: BTreeSet<u64>,
    /// Each holder's slots.
    holders: HashMap<UserId, Holding>,
    /// When the settler last claimed a slot (user, slot, rank), in ms since the epoch.
    /// Apart from `holders`: claims are rare, and every admission pays for its size.
    claims: HashMap<(UserId, u32, u64), i64>,
}

/// One granted slot: its number, rank and admission time in milliseconds since the
/// epoch (kept small: a rush holds one per admitted user).
#[derive(Debug, Clone, Copy)]
struct Granted {
    slot: u32,
    rank: u64,
    at_ms: i64,
}

/// The slots of one holder: almost always one, kept inline so that admitting a user
/// allocates nothing besides the map entry.
#[derive(Debug)]
enum Holding {
    One(Granted),
    Many(Vec<Granted>),
}

impl MemoryCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty counter that neither admits nor rebuilds until [`resume`](Self::resume)d.
    pub fn suspended() -> Self {
        let counter = Self::default();
        counter.standing.suspended.store(true, Ordering::SeqCst);
        counter
    }

    /// Stops admitting and forgets every campaign (each answers
    /// [`Error::NotReady`] until rebuilt after [`resume`](Self::resume)): this process
    /// may no longer be the only one admitting.
    ///
    /// [`Error::NotReady`]: crate::Error::NotReady
    pub fn suspend(&self) {
        self.standing.suspended.store(true, Ordering::SeqCst);
        self.standing.suspensions.fetch_add(1, Ordering::SeqCst);
        self.sharded.ops().forget();
        let campaigns = self.campaigns.read().unwrap_or_else(|e| e.into_inner());
        for slots in campaigns.values() {
            let mut slots = lock(slots);
            // A rebuild under way keeps its mark until it ends (and then fails, the
            // suspension seen): two rebuilds of a campaign never overlap.
            let rebuilding = slots.rebuilding;
            *slots = Slots {
                rebuilding,
                ..Slots::default()
            };
        }
    }

    /// Allows rebuilds again (and with them admissions).
    pub fn resume(&self) {
        self.standing.suspended.store(false, Ordering::SeqCst);
    }

    /// Makes [`CouponCounter::confirm_epoch`] ask `check` too: the keeper of the
    /// database's counter lease sets it once. Later calls change nothing.
    ///
    /// [`CouponCounter::confirm_epoch`]: crate::CouponCounter::confirm_epoch
    pub fn confirm_with(&self, check: Arc<dyn LeaseCheck>) {
        let _ = self.standing.lease.set(check);
    }

    /// Whether the counter is suspended.
    pub fn is_suspended(&self) -> bool {
        self.standing.is_suspended()
    }

    fn slots(&self, campaign: CampaignId) -> Arc<Mutex<Slots>> {
        if let Some(slots) = self
            .campaigns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&campaign)
        {
            return slots.clone();
        }
        let mut campaigns = self.campaigns.write().unwrap_or_else(|e| e.into_inner());
        campaigns.entry(campaign).or_default().clone()
    }
}
