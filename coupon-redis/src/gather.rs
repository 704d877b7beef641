//! Gathered admission: the applies to one campaign that arrive while a call of the
//! admission script for that campaign is in flight leave together, as one call of
//! `admit.lua`, which admits them in arrival order and answers each.
//!
//! Nothing waits on purpose: an apply that finds a call slot free goes at once (alone,
//! or with whoever is waiting), so a quiet campaign pays nothing, and a busy one pays one
//! script call (and one replica confirmation) for up to [`MAX_GATHERED`] applies.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::Utc;
use coupon_core::{Admission, Campaign, CampaignId, Error, ErrorClass, Result, UserId};
use redis::Script;
use tokio::sync::{Semaphore, oneshot};

use crate::RedisCounter;
use crate::error::{BACKEND, classify, unexpected_reply};

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/admit.lua")));

/// Most applies in one call, by default and at most: a call stays short for the
/// server's other clients.
pub(crate) const MAX_GATHERED: usize = 256;

/// Calls of the admission script in flight per campaign and process, by default. More
/// than one, so that a call's round trip does not hold the next group back; few, so
/// that applies arriving meanwhile gather.
pub(crate) const CALLS_IN_FLIGHT: usize = 4;

/// The most calls in flight a setting may ask for (a semaphore's permits are bounded).
pub(crate) const MOST_CALLS_IN_FLIGHT: usize = 1_024;

/// One apply waiting for its call.
struct Waiter {
    user: UserId,
    answer: oneshot::Sender<Result<Admission>>,
}

/// The applies of one campaign waiting for a call, and the call slots.
struct Lane {
    waiting: Mutex<Vec<Waiter>>,
    calls: Semaphore,
}

/// Calls in flight per campaign when every apply is a call of its own: as many as
/// applies (the semaphore's limit, never reached).
const UNGATHERED_CALLS: usize = Semaphore::MAX_PERMITS;

/// Every campaign's lane.
pub(crate) struct Lanes {
    campaigns: Mutex<HashMap<CampaignId, Arc<Lane>>>,
    /// Most applies per call ([`RedisCounterConfig::max_gathered`](crate::RedisCounterConfig::max_gathered)).
    most: usize,
    /// Calls in flight per campaign when gathering ([`RedisCounterConfig::calls_in_flight`](crate::RedisCounterConfig::calls_in_flight)).
    in_flight: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lanes {
    /// Lanes whose calls take up to `most` applies, `in_flight` calls at a time.
    pub(crate) fn new(most: usize, in_flight: usize) -> Self {
        Self {
            campaigns: Mutex::default(),
            most: most.clamp(1, MAX_GATHERED),
            in_flight: in_flight.clamp(1, MOST_CALLS_IN_FLIGHT),
        }
    }

    fn lane(&self, campaign: CampaignId) -> Arc<Lane> {
        let calls = if self.most == 1 {
            UNGATHERED_CALLS
        } else {
            self.in_flight
        };
        lock(&self.campaigns)
            .entry(campaign)
            .or_insert_with(|| {
                Arc::new(Lane {
                    waiting: Mutex::new(Vec::new()),
                    calls: Semaphore::new(calls),
                })
            })
            .clone()
    }
}

/// Admits `user` to `campaign` through its lane: waits for a call slot, and either finds
/// its answer given by a call another apply made, or makes the call for everyone
/// waiting (itself among them).
pub(crate) async fn admit(
    counter: &RedisCounter,
    campaign: &Campaign,
    user: UserId,
) -> Result<Admission> {
    let lane = counter.lanes.lane(campaign.id);
    let (answer, mut answered) = oneshot::channel();
    lock(&lane.waiting).push(Waiter { user, answer });
    loop {
        let Ok(slot) = lane.calls.acquire().await else {
            return Err(Error::Closed { what: "redis lane" });
        };
        if let Ok(result) = answered.try_recv() {
            return result; // a call made by another apply took ours
        }
        let group = take_group(&mut lock(&lane.waiting), counter.lanes.most);
        if group.is_empty() {
            // Ours is in a call still running (its maker's caller went away).
            drop(slot);
            return answered.await.unwrap_or_else(|_| {
                Err(Error::outcome_unknown(
                    BACKEND,
                    "the admission call ended without an answer",
                    None,
                ))
            });
        }
        // On a task of its own, so that a caller going away mid-call cannot leave the
        // others of its group without an answer.
        let (counter, campaign) = (counter.clone(), campaign.clone());
        let _ = tokio::spawn(async move { call(&counter, &campaign, group).await }).await;
        drop(slot);
        if let Ok(result) = answered.try_recv() {
            return result;
        }
        // More were waiting than one call takes, ours among the later ones.
    }
}

/// Takes up to `most` waiters, in arrival order, at most one per user: a user's second
/// apply waits for the next call, so that each entry of a call is its user's one, and a
/// resent call answers every entry's first grant again. A waiter whose caller went away
/// before its call (a request cut by its time limit, answered with an error) is dropped:
/// admitting it would take a slot for someone who heard no yes.
fn take_group(waiting: &mut Vec<Waiter>, most: usize) -> Vec<Waiter> {
    let mut users = std::collections::HashSet::new();
    let mut group = Vec::new();
    let mut later = Vec::new();
    for waiter in waiting.drain(..) {
        if waiter.answer.is_closed() {
            continue;
        }
        if group.len() < most && users.insert(waiter.user) {
            group.push(waiter);
        } else {
            later.push(waiter);
        }
    }
    *waiting = later;
    group
}

/// One call of the admission script for `group`, and each waiter's answer.
async fn call(counter: &RedisCounter, campaign: &Campaign, group: Vec<Waiter>) {
    let users: Vec<UserId> = group.iter().map(|waiter| waiter.user).collect();
    let answers = match call_script(counter, campaign, &users).await {
        Ok(answers) => answers,
        Err(error) => group.iter().map(|_| Err(like(&error))).collect(),
    };
    for (waiter, answer) in group.into_iter().zip(answers) {
        // A waiter whose caller went away no longer needs its answer.
        let _ = waiter.answer.send(answer);
    }
}

/// The same failure again, for another waiter of the call: the error itself cannot be
/// cloned, its class and words can.
fn like(error: &Error) -> Error {
    match error {
        Error::NotReady { campaign, backend } => Error::NotReady {
            campaign: *campaign,
            backend,
        },
        other => {
            let message = other.to_string();
            match other.class() {
                ErrorClass::Retryable => Error::unavailable(BACKEND, message, None),
                ErrorClass::OutcomeUnknown => Error::outcome_unknown(BACKEND, message, None),
                ErrorClass::Permanent => Error::backend(BACKEND, message, None),
            }
        }
    }
}

/// A call of `admit.lua` for `users` (in order) on `campaign`'s keys, as the server
/// `identity` built them, under the request `token`.
fn invocation<'a>(
    keys: &crate::keys::CampaignKeys,
    campaign: &Campaign,
    identity: impl redis::ToRedisArgs,
    token: &impl redis::ToRedisArgs,
    users: impl IntoIterator<Item = u64>,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = ADMIT.key(&keys.count);
    invocation
        .key(&keys.users)
        .key(&keys.slots)
        .key(&keys.free)
        .arg(campaign.cap)
        .arg(campaign.per_user_limit)
        .arg(identity)
        .arg(token);
    for user in users {
        invocation.arg(user);
    }
    invocation
}

/// Runs `admit.lua` for `users` (in order) and confirms the grants with the replicas
/// when asked to: one `WAIT` for the whole call. Answers each entry; an error for the
/// call as a whole when it failed as a whole.
async fn call_script(
    counter: &RedisCounter,
    campaign: &Campaign,
    users: &[UserId],
) -> Result<Vec<Result<Admission>>> {
    let keys = counter.keys(campaign.id);
    let mut session = counter.session().await?;
    let token = crate::counter::request_token();
    let reply: Vec<i64> = invocation(
        &keys,
        campaign,
        session.identity(),
        &token,
        users.iter().map(|user| user.get()),
    )
    .invoke_async(&mut session)
    .await
    .map_err(|e| classify(e, || format!("admitting {} on {keys:?}", users.len())))?;
    // The epoch, then a (rank or code, slot) pair per entry.
    let (Some(&epoch), Some(pairs)) = (reply.first(), reply.get(1..)) else {
        return Err(unexpected_reply(format!(
            "admitting {} on {keys:?}: an empty answer",
            users.len()
        )));
    };
    if pairs.len() != 2 * users.len() {
        return Err(unexpected_reply(format!(
            "admitting {} on {keys:?}: {} numbers for the entries",
            users.len(),
            pairs.len()
        )));
    }
    let granted = |rank: i64, slot: i64| rank > 0 && slot > 0;
    // A grant no replica acknowledged in time is an unknown outcome for its applicant.
    let unconfirmed = if pairs.chunks(2).any(|pair| granted(pair[0], pair[1])) {
        counter.confirmed(&session, &keys).await.err()
    } else {
        None
    };
    let admitted_at = Utc::now();
    Ok(pairs
        .chunks(2)
        .map(|pair| match (pair[0], pair[1]) {
            (rank, slot) if granted(rank, slot) => match &unconfirmed {
                Some(error) => Err(like(error)),
                None if epoch > 0 => Ok(Admission::Granted {
                    rank: rank as u64,
                    slot: u32::try_from(slot).unwrap_or(u32::MAX),
                    admitted_at,
                    epoch: epoch as u64,
                }),
                None => Err(unexpected_reply(format!(
                    "admitting on {keys:?} granted rank {rank} in epoch {epoch}"
                ))),
            },
            (-2, 0) => Err(Error::NotReady {
                campaign: campaign.id,
                backend: BACKEND,
            }),
            (-1, 0) => Ok(Admission::AlreadyApplied),
            (0, 0) => Ok(Admission::SoldOut),
            (code, slot) => Err(unexpected_reply(format!(
                "admitting on {keys:?} answered {code}, {slot}"
            ))),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisCounterConfig;

    /// A waiter whose caller went away before its call is not admitted (its applicant
    /// heard an error, not a yes); a user's second apply waits for the next call.
    #[test]
    fn a_group_leaves_out_callers_gone_and_second_applies() {
        let mut answers = Vec::new();
        let mut waiting: Vec<Waiter> = [1, 2, 1, 3]
            .into_iter()
            .map(|user| {
                let (answer, answered) = oneshot::channel();
                answers.push(answered);
                Waiter {
                    user: UserId(user),
                    answer,
                }
            })
            .collect();
        drop(answers.remove(1)); // user 2's caller is gone
        let group = take_group(&mut waiting, 256);
        let users = |waiters: &[Waiter]| waiters.iter().map(|w| w.user.get()).collect::<Vec<_>>();
        assert_eq!(users(&group), [1, 3]);
        assert_eq!(users(&waiting), [1], "user 1's second apply waits");
    }
    use coupon_core::{CouponCounter, NewCampaign};
    use coupon_testkit::{ready_campaign_from, service_url};

    /// Runs the admission script as a client that resends a call would.
    async fn run_script(
        counter: &RedisCounter,
        campaign: &Campaign,
        users: &[u64],
        token: &str,
    ) -> Vec<i64> {
        let keys = counter.keys(campaign.id);
        let mut session = counter.session().await.expect("session");
        invocation(
            &keys,
            campaign,
            session.identity(),
            &token,
            users.iter().copied(),
        )
        .invoke_async(&mut session)
        .await
        .expect("the script")
    }

    /// The script's answer: the epoch (1 here), then a pair per entry.
    fn answer(pairs: &[(i64, i64)]) -> Vec<i64> {
        std::iter::once(1)
            .chain(pairs.iter().flat_map(|&(a, b)| [a, b]))
            .collect()
    }

    /// The same call run twice answers its grants twice and takes each slot once; a new
    /// call of the same user is a new apply. A call holding one user twice (the lane never
    /// makes one, the script stays exact) is two applies: already applied at limit 1, the
    /// next slots at limit 3, never past the limit.
    #[tokio::test]
    async fn a_call_run_twice_takes_each_slot_once() {
        let counter = RedisCounter::connect(
            RedisCounterConfig::new(service_url("REDIS_URL"))
                .with_key_prefix(format!("test-{}", uuid::Uuid::new_v4().simple())),
        )
        .await
        .expect("connect to REDIS_URL");
        for limit in [1, 3] {
            let new = NewCampaign::new("twice", 10).per_user_limit(limit);
            let campaign = ready_campaign_from(&counter, new).await;
            let first = run_script(&counter, &campaign, &[7, 8], "a1").await;
            let again = run_script(&counter, &campaign, &[7, 8], "a1").await;
            assert_eq!(first, answer(&[(1, 1), (2, 1)]), "limit {limit}");
            assert_eq!(again, first, "limit {limit}: the resent call");
            let twice = run_script(&counter, &campaign, &[7, 7, 7], "b2").await;
            let expected = if limit == 1 {
                answer(&[(-1, 0), (-1, 0), (-1, 0)])
            } else {
                answer(&[(3, 2), (4, 3), (-1, 0)])
            };
            assert_eq!(twice, expected, "limit {limit}: one user three times");
            let held = counter.held_slots(&campaign).await.expect("held");
            assert_eq!(held.len(), if limit == 1 { 2 } else { 4 }, "limit {limit}");
        }
    }
}
