//! Admission on a sharded campaign: the user's home shard first; when it is dry, stock
//! moves to it from the shard with the most, and "sold out" is answered only once every
//! shard was seen empty with nothing in transit.

use super::ops::{MoveId, ShardAdmission, ShardOps, ShardView};
use super::{plan, shards_of};
use crate::{Admission, Campaign, Error, Result, UserId, home_shard};

/// How many refills in a row may bring the home shard nothing before an application
/// answers a retryable error: each one either moves stock towards the home shard,
/// proves the campaign sold out, or saw other applicants take what it found.
const FRUITLESS_ROUNDS: usize = 8;

/// The most refills one application runs, fruitful or not.
const MOST_ROUNDS: usize = 64;

/// What a refill found.
#[derive(Debug, PartialEq, Eq)]
enum Refill {
    /// Admit again: stock reached (or may have reached) the home shard.
    Progress,
    /// Admit again, though nothing came to the home shard this time.
    Again,
    /// Every shard was empty at one instant, with no stock in transit.
    SoldOut,
}

/// Every shard of one epoch, read one after the other.
struct Collected {
    epoch: u64,
    views: Vec<ShardView>,
}

pub(super) async fn try_acquire<O: ShardOps>(
    ops: &O,
    campaign: &Campaign,
    user: UserId,
) -> Result<Admission> {
    let home = home_shard(user, campaign.shards);
    let mut fruitless = 0;
    for _ in 0..MOST_ROUNDS {
        match ops.admit(campaign, home, user).await? {
            ShardAdmission::Final(answer) => return Ok(answer),
            // The home shard's budget is used up; the campaign's may not be.
            ShardAdmission::Dry => {}
        }
        match refill(ops, campaign, home).await.map_err(no_admission)? {
            Refill::SoldOut => return Ok(Admission::SoldOut),
            Refill::Progress => fruitless = 0,
            Refill::Again => fruitless += 1,
        }
        if fruitless == FRUITLESS_ROUNDS {
            break;
        }
    }
    Err(Error::unavailable(
        "shards",
        format!(
            "campaign {}: other applicants kept taking the stock moved to shard {home}; retry",
            campaign.id
        ),
        None,
    ))
}

/// An error while moving stock: whatever its outcome, it took no slot for the
/// applicant (only their home shard's admit does), so it is never an unknown outcome
/// of the application.
fn no_admission(error: Error) -> Error {
    match error {
        Error::OutcomeUnknown {
            backend,
            message,
            source,
        } => Error::unavailable(
            backend,
            format!("moving stock between shards: {message}"),
            source,
        ),
        other => other,
    }
}

/// Reads every shard; a shard not built, or shards of different epochs (a rebuild
/// under way), is [`Error::NotReady`].
async fn collect<O: ShardOps>(ops: &O, campaign: &Campaign) -> Result<Collected> {
    let mut views = Vec::with_capacity(usize::from(shards_of(campaign)));
    for shard in 0..shards_of(campaign) {
        views.push(ops.peek(campaign, shard).await?);
    }
    let not_ready = || Error::NotReady {
        campaign: campaign.id,
        backend: "shards",
    };
    let epoch = views
        .first()
        .and_then(|view| view.epoch)
        .ok_or_else(not_ready)?;
    if views.iter().any(|view| view.epoch != Some(epoch)) {
        return Err(not_ready());
    }
    Ok(Collected { epoch, views })
}

async fn refill<O: ShardOps>(ops: &O, campaign: &Campaign, home: u16) -> Result<Refill> {
    let first = collect(ops, campaign).await?;
    if first.views[usize::from(home)].free() > 0 {
        return Ok(Refill::Progress);
    }
    // Stock in transit is finished first, whoever began it: a give sent twice changes
    // nothing, so finishing a move a live mover is finishing too is harmless.
    let (mut finished, mut towards_home) = (false, false);
    for (donor, view) in first.views.iter().enumerate() {
        for open in &view.open {
            ops.give(campaign, open.to, first.epoch, open.id, open.slots)
                .await?;
            ops.complete(campaign, donor as u16, first.epoch, open.id)
                .await?;
            finished = true;
            towards_home |= open.to == home;
        }
    }
    if towards_home {
        return Ok(Refill::Progress);
    }
    let free: Vec<u64> = first.views.iter().map(ShardView::free).collect();
    if let Some((donor, want)) = plan::donor(&free, home) {
        // Taken first, then given: a crash in between leaves the stock recorded as in
        // transit on the donor (finished by the next refill), never counted twice.
        let id = MoveId::new();
        let taken = ops
            .take(campaign, donor, first.epoch, id, want, home)
            .await?;
        if taken == 0 {
            // Others took the donor's stock since the read.
            return Ok(Refill::Again);
        }
        ops.give(campaign, home, first.epoch, id, taken).await?;
        ops.complete(campaign, donor, first.epoch, id).await?;
        return Ok(Refill::Progress);
    }
    if finished {
        // The moves just finished gave stock to other shards, which may take from them.
        return Ok(Refill::Again);
    }
    // Every shard had no free budget and no open move when read. Read again: a shard
    // whose version did not change in between gained no free budget and opened no move
    // at any moment between its two reads, so at the instant the first read ended every
    // shard was full and nothing was in transit.
    let second = collect(ops, campaign).await?;
    let unchanged = second.epoch == first.epoch
        && first
            .views
            .iter()
            .zip(&second.views)
            .all(|(before, after)| before.version == after.version);
    Ok(if unchanged {
        Refill::SoldOut
    } else {
        Refill::Again
    })
}
