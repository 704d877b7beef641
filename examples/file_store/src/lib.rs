//! A worked example of a [`CouponStore`] written outside the library, as a user of
//! firstcome would write one: campaigns and coupons kept in an append-only file of JSON
//! lines, one event per change, replayed into memory when the store is opened.
//!
//! It is here to be read next to `docs/adapters.md`, and it passes the same conformance
//! suites as the library's stores (`tests/conformance.rs`): `store_scenarios!` and
//! `durable_store_scenarios!`, which drops the store and opens the file again.
//!
//! How it keeps the rules: every call takes one lock, decides from the state in memory
//! which events it writes (the `state` module), appends them to the file and syncs it
//! (the `log` module), and only then applies them and answers. So the cap, the per-user limit,
//! ticket-id idempotency and the epoch fence are checked and written in one serialised
//! step, and nothing is acknowledged before it is on disk.
//!
//! What it is not: fast (one sync per call, and the calls block the async thread while
//! they write; a real adapter would group writes and use `spawn_blocking`), nor shared
//! (one process owns the file).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> coupon_core::Result<()> {
//! use coupon_core::{CouponStore, IssueOutcome, IssueTicket, NewCampaign, UserId};
//! use file_store::FileStore;
//!
//! let path = std::env::temp_dir().join(format!("file-store-doc-{}.jsonl", std::process::id()));
//! # let _ = std::fs::remove_file(&path);
//! let store = FileStore::open(&path)?;
//! let campaign = store.create_campaign(NewCampaign::new("drop", 10)).await?;
//! let ticket = IssueTicket::new(campaign.id, UserId(7), 1, 1);
//! assert!(matches!(store.issue_batch(&[ticket.clone()]).await?[..], [IssueOutcome::Issued(_)]));
//! drop(store);
//!
//! let reopened = FileStore::open(&path)?;
//! assert_eq!(reopened.issued_count(campaign.id).await?, 1);
//! assert_eq!(reopened.issue_batch(&[ticket]).await?, vec![IssueOutcome::Duplicate]);
//! # std::fs::remove_file(&path).ok();
//! # Ok(()) }
//! ```

mod ledgers;
mod log;
mod state;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use coupon_core::chrono::{DateTime, Utc};
use coupon_core::{
    Campaign, CampaignId, CampaignSummary, Coupon, CouponStore, Error, HeldSlot, IssueOutcome,
    IssueTicket, NewCampaign, Result, UserId, async_trait,
};

use crate::state::{Event, State};

/// A coupon store in one append-only file of JSON lines.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    file: File,
    /// A write failed: which of its events reached the disk is unknown, so the state in
    /// memory may say more or less than the file. Every call fails until the store is
    /// opened again, which reads the file.
    poisoned: bool,
}

impl FileStore {
    /// Opens the store kept in the file at `path` (created if missing), replaying it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (events, file) = log::open(&path)?;
        let mut state = State::default();
        for event in events {
            state.apply(event);
        }
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                state,
                file,
                poisoned: false,
            }),
        })
    }

    /// The file it keeps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state, to read or to change through [`Self::write`].
    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.poisoned {
            return Err(Error::unavailable(
                "file-store",
                format!(
                    "an earlier write to {} failed: open the store again",
                    self.path.display()
                ),
                None,
            ));
        }
        Ok(inner)
    }
}

impl Inner {
    /// Appends `events` durably, then applies them: the one way a call changes the
    /// store.
    fn write(&mut self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if let Err(error) = log::append(&mut self.file, &events) {
            self.poisoned = true;
            return Err(error);
        }
        for event in events {
            self.state.apply(event);
        }
        Ok(())
    }
}

#[async_trait]
impl CouponStore for FileStore {
    async fn create_campaign(&self, new: NewCampaign) -> Result<Campaign> {
        new.validate()?;
        let mut inner = self.lock()?;
        let id = CampaignId(inner.state.next_id.max(1));
        let campaign = Campaign::from_new(id, new);
        inner.write(vec![Event::Created {
            campaign: campaign.clone(),
        }])?;
        Ok(campaign)
    }

    /// The file is open and nothing failed since: the store answers.
    async fn ready(&self) -> Result<()> {
        self.lock().map(drop)
    }

    async fn campaign(&self, id: CampaignId) -> Result<Campaign> {
        Ok(self.lock()?.state.ledger(id)?.campaign.clone())
    }

    async fn campaigns(&self) -> Result<Vec<CampaignSummary>> {
        let inner = self.lock()?;
        Ok(inner
            .state
            .campaigns
            .values()
            .map(|ledger| {
                CampaignSummary::new(ledger.campaign.clone(), ledger.coupons.len() as u64)
            })
            .collect())
    }

    async fn set_window(
        &self,
        id: CampaignId,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Campaign> {
        let mut inner = self.lock()?;
        let campaign = inner
            .state
            .ledger(id)?
            .campaign
            .with_window(opens_at, closes_at)?;
        inner.write(vec![Event::Window {
            campaign: campaign.clone(),
        }])?;
        Ok(campaign)
    }

    async fn issue_batch(&self, tickets: &[IssueTicket]) -> Result<Vec<IssueOutcome>> {
        let mut inner = self.lock()?;
        let mut outcomes = Vec::with_capacity(tickets.len());
        // Each ticket is judged with the ones before it in the batch applied; they are
        // written together, and the answers given only once they are on disk.
        let mut events = Vec::new();
        for ticket in tickets {
            let outcome = match inner.state.ledger(ticket.campaign) {
                Ok(ledger) => ledger.judge(ticket),
                Err(_) => IssueOutcome::UnknownCampaign,
            };
            if let IssueOutcome::Issued(coupon) = &outcome {
                let event = Event::Issued {
                    coupon: coupon.clone(),
                };
                inner.state.apply(event.clone());
                events.push(event);
            }
            outcomes.push(outcome);
        }
        if events.is_empty() {
            return Ok(outcomes);
        }
        if let Err(error) = log::append(&mut inner.file, &events) {
            // Applied in memory but maybe not on disk: refuse everything until reopened.
            inner.poisoned = true;
            return Err(error);
        }
        Ok(outcomes)
    }

    async fn issued_count(&self, campaign: CampaignId) -> Result<u64> {
        Ok(self.lock()?.state.ledger(campaign)?.coupons.len() as u64)
    }

    async fn coupons_of(&self, campaign: CampaignId, user: UserId) -> Result<Vec<Coupon>> {
        Ok(self.lock()?.state.ledger(campaign)?.coupons_of(user))
    }

    async fn coupon_slots(&self, campaign: CampaignId) -> Result<Vec<HeldSlot>> {
        Ok(self.lock()?.state.ledger(campaign)?.coupon_slots())
    }

    // `coupons_of_users` and `holders` keep the trait's defaults.
}
