//! The operator commands (`campaigns`, `close`, `reopen`, `dead-letters`, `settle`,
//! `mint-token`, `replay`): each runs once against the backends and prints its result.

use std::sync::Arc;

use coupon_core::memory::{MemoryCounter, MemoryQueue};
use coupon_core::{CampaignId, CouponCounter, CouponService};
use coupon_seaorm::SeaOrmStore;

use crate::config::{self, Command, Config, Role};
use crate::{GENERATED_JWT_SECRET, auth, backends, wire};

/// Runs an operator task once and prints its result as JSON.
pub async fn run_command(config: Config, command: Command) -> Result<(), String> {
    let config = config.without_empty_values().with_secret_files()?;
    config.check()?;
    let print = |value: serde_json::Value| {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    };
    match command {
        Command::Campaigns => {
            let service = operator_service(&config, true).await?;
            let campaigns: Vec<serde_json::Value> = if config.redis.redis_url.is_some() {
                // A shared counter: the same counts and states as GET /admin/campaigns.
                let statuses = service.campaigns().await.map_err(|e| e.to_string())?;
                statuses
                    .iter()
                    .map(|status| serde_json::to_value(wire::AdminCampaign::from(status)))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?
            } else {
                // An in-memory counter lives in the service's process: the store's view,
                // in the same shape, the counter's figures null.
                let summaries = service
                    .stored_campaigns()
                    .await
                    .map_err(|e| e.to_string())?;
                summaries
                    .iter()
                    .map(|summary| serde_json::to_value(wire::StoredCampaign::from(summary)))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?
            };
            print(serde_json::json!({ "campaigns": campaigns }));
        }
        Command::Close { campaign } => {
            let service = operator_service(&config, false).await?;
            let closed = service
                .close(CampaignId(campaign))
                .await
                .map_err(|e| e.to_string())?;
            print(serde_json::to_value(closed).unwrap_or_default());
        }
        Command::Reopen {
            campaign,
            closes_at,
        } => {
            let service = operator_service(&config, false).await?;
            let reopened = service
                .reopen(CampaignId(campaign), closes_at)
                .await
                .map_err(|e| e.to_string())?;
            print(serde_json::to_value(reopened).unwrap_or_default());
        }
        Command::DeadLetters { campaign } => {
            let service = operator_service(&config, false).await?;
            let failures = service
                .dead_letters(campaign.map(CampaignId))
                .await
                .map_err(|e| e.to_string())?;
            print(serde_json::json!({ "dead_letters": failures }));
        }
        Command::Settle { campaign } => {
            let service = shared_service(&config, "settle").await?;
            let report = service
                .settle(campaign.map(CampaignId))
                .await
                .map_err(|e| e.to_string())?;
            print(serde_json::to_value(report).unwrap_or_default());
        }
        Command::MintToken { user, ttl_secs } => {
            let secret = config.identity.jwt_secret.as_deref().ok_or_else(|| {
                format!(
                    "mint-token signs with the secret the service verifies with: set \
                     JWT_SECRET or JWT_SECRET_FILE (a service started without one wrote \
                     its generated secret to ./{GENERATED_JWT_SECRET} in its working \
                     directory: JWT_SECRET_FILE={GENERATED_JWT_SECRET})"
                )
            })?;
            // Refuse a secret the service would refuse too.
            config::hs256_verifier(secret, &config.jwt_rules())?;
            let token = auth::mint_hs256(
                secret.as_bytes(),
                coupon_core::UserId(user),
                ttl_secs,
                &config.jwt_rules(),
            )?;
            println!("{token}");
        }
        Command::Replay { campaign, tickets } => {
            let service = shared_service(&config, "replay").await?;
            let report = service
                .replay(campaign.map(CampaignId), &tickets)
                .await
                .map_err(|e| e.to_string())?;
            print(serde_json::to_value(report).unwrap_or_default());
        }
    }
    Ok(())
}

/// The service the tasks that publish nothing go through (listing, closing, reopening,
/// reading dead letters): the database's store, an in-process queue nothing is published
/// to, and a counter that admits no one, or, for `campaigns` on a shared counter
/// (`with_counter`), Redis, checked to answer (a listing whose counts silently read 0
/// would mislead). Closing and reading dead letters need only the database: they work
/// while Redis is down. It starts no worker and takes no lease.
async fn operator_service(config: &Config, with_counter: bool) -> Result<CouponService, String> {
    let store = SeaOrmStore::connect(config.store())
        .await
        .map_err(|e| format!("database: {e}"))?;
    let counter: Arc<dyn CouponCounter> = match &config.redis.redis_url {
        Some(url) if with_counter => {
            let counter = coupon_redis::RedisCounter::connect(config.redis(url))
                .await
                .map_err(|e| format!("redis: {e}"))?;
            counter.ready().await.map_err(|e| format!("redis: {e}"))?;
            Arc::new(counter)
        }
        _ => Arc::new(MemoryCounter::suspended()),
    };
    Ok(CouponService::new(
        counter,
        Arc::new(MemoryQueue::new(1)),
        Arc::new(store),
    ))
}

/// The service an operator task that publishes needs: its backends must outlive this
/// process, which an in-process queue does not.
async fn shared_service(config: &Config, task: &str) -> Result<Arc<CouponService>, String> {
    let route = if task == "settle" {
        "POST /admin/settle"
    } else {
        "POST /admin/dead-letters/replay"
    };
    if config.queue_kind() == config::QueueKind::Memory {
        return Err(format!(
            "`{task}` publishes tickets, so it needs the queue the running service reads \
             (the database's or Kafka); with --queue memory, call {route} on the service"
        ));
    }
    if task == "settle" && config.redis.redis_url.is_none() {
        return Err(format!(
            "`settle` compares the counter with the store, and an in-memory counter lives \
             in the service's process (no REDIS_URL): call {route} on the service"
        ));
    }
    let mut config = config.clone();
    config.role = Role::Api;
    let backends = backends::build(&config)
        .await
        .map_err(|error| error.message)?;
    backends
        .service
        .map(Arc::new)
        .ok_or_else(|| "an API process admits, so it has a queue".to_owned())
}
