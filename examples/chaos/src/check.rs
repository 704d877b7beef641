//! The promises, checked once the run has settled: in the database (read directly, not
//! through the proxy) and through the API, against what the applicants heard.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use coupon_core::{CampaignId, CouponStore, FailureLedger};
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use load::HttpClient;
use serde::Serialize;

use crate::rush::Heard;

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What it promises.
    pub promise: &'static str,
    /// Whether it held.
    pub held: bool,
    /// Figures, or what broke it.
    pub detail: String,
}

/// What the checks need to know of the run.
pub struct Facts<'a> {
    /// The run's database, reached directly.
    pub database_url: &'a str,
    /// An API process's base URL.
    pub api: &'a str,
    /// A client of it.
    pub client: &'a HttpClient,
    /// The campaign.
    pub campaign: u64,
    /// Its cap.
    pub cap: u64,
    /// Applicants who kept trying (each wants one coupon).
    pub applicants: u64,
    /// What they heard.
    pub heard: &'a Heard,
    /// When the counter lost its memory, since the rush began.
    pub counter_losses: &'a [Duration],
}

/// Figures the checks read, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Found {
    /// Coupons in the database.
    pub coupons: u64,
    /// Dead-lettered tickets.
    pub dead_letters: u64,
}

/// Runs every check; an error means the database or the API could not be read at all.
pub async fn check(facts: &Facts<'_>) -> Result<(Vec<Check>, Found), String> {
    // Migrations run under a database lock and change nothing already there: a database
    // an older server made (`--server-bin`, to compare) gains the tables read here.
    let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(facts.database_url))
        .await
        .map_err(|e| format!("connecting to the database: {e}"))?;
    let campaign = CampaignId(facts.campaign);
    let slots = store
        .coupon_slots(campaign)
        .await
        .map_err(|e| format!("reading the coupons: {e}"))?;
    let dead_letters = store
        .failures(Some(campaign))
        .await
        .map_err(|e| format!("reading the dead letters: {e}"))?;
    let mut held: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for slot in &slots {
        held.entry(slot.user.0).or_default().push(slot.rank);
    }
    let coupons = slots.len() as u64;
    let heard = facts.heard;
    let mut checks = Vec::new();
    let found = Found {
        coupons,
        dead_letters: dead_letters.len() as u64,
    };

    checks.push(Check {
        promise: "never more coupons than the cap",
        held: coupons <= facts.cap,
        detail: format!("{coupons} coupons on cap {}", facts.cap),
    });
    let doubles: Vec<_> = held.iter().filter(|(_, ranks)| ranks.len() > 1).collect();
    checks.push(Check {
        promise: "nobody holds two coupons",
        held: doubles.is_empty(),
        detail: format!(
            "{} users hold more than one: {:?}",
            doubles.len(),
            first(&doubles)
        ),
    });
    let wanted = facts.cap.min(facts.applicants);
    checks.push(Check {
        promise: "applicants who kept trying took every coupon",
        held: coupons == wanted,
        detail: format!("{coupons} coupons, {wanted} wanted"),
    });
    let ranks: BTreeSet<u64> = slots.iter().map(|slot| slot.rank).collect();
    let ranks_ok =
        ranks.len() == slots.len() && (coupons != facts.cap || ranks == (1..=facts.cap).collect());
    checks.push(Check {
        promise: "ranks 1..=cap, each once",
        held: ranks_ok,
        detail: format!(
            "{} distinct ranks among {coupons} coupons, lowest {:?}, highest {:?}",
            ranks.len(),
            ranks.first(),
            ranks.last()
        ),
    });

    let wrong: Vec<String> = heard
        .accepted
        .iter()
        .filter(|(user, rank)| !held.get(user).is_some_and(|ranks| ranks.contains(rank)))
        .map(|(user, rank)| format!("user {user} told rank {rank}, holds {:?}", held.get(user)))
        .collect();
    checks.push(Check {
        promise: "everyone told accepted holds a coupon at that rank",
        held: wrong.is_empty(),
        detail: format!(
            "{} of {} do not: {:?}",
            wrong.len(),
            heard.accepted.len(),
            first(&wrong)
        ),
    });

    // A 202 pending comes only once the ticket is durable (on the broker or recorded in
    // the database), so no fault excuses one without a coupon, a counter loss included.
    let lost: Vec<String> = heard
        .pending
        .iter()
        .filter(|(user, _)| !held.contains_key(user))
        .map(|(user, at)| format!("user {user} told pending at {at:?}"))
        .collect();
    checks.push(Check {
        promise: "everyone told pending holds a coupon",
        held: lost.is_empty(),
        detail: format!(
            "{} of {} told pending hold none ({} counter loss(es) in the run): {:?}",
            lost.len(),
            heard.pending.len(),
            facts.counter_losses.len(),
            first(&lost)
        ),
    });

    // The service answers "already applied" only once the store shows the coupon.
    let empty_handed: Vec<u64> = heard
        .already
        .iter()
        .copied()
        .filter(|user| !held.contains_key(user))
        .collect();
    checks.push(Check {
        promise: "everyone told already_applied holds a coupon",
        held: empty_handed.is_empty(),
        detail: format!(
            "{} of {} hold none: {:?}",
            empty_handed.len(),
            heard.already.len(),
            first(&empty_handed)
        ),
    });

    checks.push(Check {
        promise: "nothing dead-lettered",
        held: dead_letters.is_empty(),
        detail: format!(
            "{} dead letters: {:?}",
            dead_letters.len(),
            first(&dead_letters)
        ),
    });
    checks.push(Check {
        promise: "no answer an open campaign should not give",
        held: heard.unexpected.is_empty(),
        detail: format!(
            "{} unexpected: {:?}",
            heard.unexpected.len(),
            first(&heard.unexpected.values().collect::<Vec<_>>())
        ),
    });
    checks.push(api_agrees(facts, coupons, &held).await);
    Ok((checks, found))
}

/// The API tells the same story as the database: the campaign's issued count, and each
/// holder's coupon route.
async fn api_agrees(facts: &Facts<'_>, coupons: u64, held: &BTreeMap<u64, Vec<u64>>) -> Check {
    let url = format!("{}/campaigns/{}", facts.api, facts.campaign);
    let issued = match load::call(facts.client, Method::GET, &url, None, None).await {
        Ok((StatusCode::OK, body)) => body["issued"].as_u64(),
        _ => None,
    };
    let mut disagreements = Vec::new();
    if issued != Some(coupons) {
        disagreements.push(format!("the API says {issued:?} issued"));
    }
    let users: Vec<u64> = held.keys().copied().collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in users.chunks(users.len().div_ceil(32).max(1)) {
        let (chunk, client) = (chunk.to_vec(), facts.client.clone());
        let base = format!("{}/campaigns/{}/coupons", facts.api, facts.campaign);
        tasks.spawn(async move {
            let mut wrong = Vec::new();
            for user in chunk {
                let answer =
                    load::call(&client, Method::GET, &format!("{base}/{user}"), None, None).await;
                match answer {
                    Ok((StatusCode::OK, body)) if body["coupons"].as_u64() == Some(1) => {}
                    other => wrong.push(format!("user {user}: {other:?}")),
                }
            }
            wrong
        });
    }
    while let Some(joined) = tasks.join_next().await {
        disagreements.extend(joined.unwrap_or_else(|e| vec![format!("a probe failed: {e}")]));
    }
    Check {
        promise: "the API agrees with the database",
        held: disagreements.is_empty(),
        detail: format!(
            "{} holders probed, {} disagreements: {:?}",
            users.len(),
            disagreements.len(),
            first(&disagreements)
        ),
    }
}

/// The first few of `items`, for a report line of bounded length.
fn first<T: std::fmt::Debug>(items: &[T]) -> String {
    let shown: Vec<_> = items.iter().take(3).collect();
    if items.len() > 3 {
        format!("{shown:?} and {} more", items.len() - 3)
    } else {
        format!("{shown:?}")
    }
}
