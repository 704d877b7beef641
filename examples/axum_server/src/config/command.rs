//! The operator tasks the binary runs instead of the service.

use clap::Subcommand;
use coupon_core::TicketId;

/// Operator tasks, run once against the configured backends.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Publish again the ticket of every admission older than the grace period that has
    /// no coupon, then print the report as JSON. Needs the shared counter (REDIS_URL)
    /// and a queue the service's workers read (the database's or Kafka); with an
    /// in-memory counter use `POST /admin/settle` on the running service.
    Settle {
        /// Only this campaign.
        #[arg(long)]
        campaign: Option<u64>,
    },
    /// List the tickets the store refused (dead letters, tickets over the cap) as JSON.
    DeadLetters {
        /// Only this campaign.
        #[arg(long)]
        campaign: Option<u64>,
    },
    /// Publish again the tickets of open dead letters, once their cause is fixed. Needs
    /// a queue the service's workers read (the database's, the default, or Kafka); with
    /// `--queue memory` use `POST /admin/dead-letters/replay` on the running service.
    Replay {
        /// Only this campaign.
        #[arg(long)]
        campaign: Option<u64>,
        /// Only these tickets (repeat the flag).
        #[arg(long = "ticket")]
        tickets: Vec<TicketId>,
    },
    /// List every campaign as JSON, as `GET /admin/campaigns` shows it. Without
    /// REDIS_URL `admitted`, `remaining` and `state` are null: an in-memory counter
    /// lives in the service's process (ask its admin route).
    Campaigns,
    /// Close a campaign to applications now; those admitted before are still issued.
    /// Running services see it within a second.
    Close {
        /// The campaign.
        #[arg(long)]
        campaign: u64,
    },
    /// Open a closed campaign again, until `--closes-at` if given.
    Reopen {
        /// The campaign.
        #[arg(long)]
        campaign: u64,
        /// The new end of the window (RFC 3339).
        #[arg(long)]
        closes_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Print an HS256 token for a user, signed with JWT_SECRET (with JWT_ISSUER and
    /// JWT_AUDIENCE when set): for trying the service and for tests.
    MintToken {
        /// The user id (`sub`).
        #[arg(long)]
        user: u64,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3_600)]
        ttl_secs: u64,
    },
}
