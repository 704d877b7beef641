//! Abuse limits: how many requests one user and one client address may make per second,
//! answered 429 with `Retry-After` past them.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use coupon_core::UserId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// A rate: `per_sec` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_sec: NonZeroU32,
    burst: NonZeroU32,
}

impl Rate {
    /// `per_sec` a second with bursts of `burst` (at least `per_sec`); `None` for a
    /// rate of 0, which means no limit.
    pub fn new(per_sec: u32, burst: u32) -> Option<Self> {
        let per_sec = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst.max(per_sec.get())).unwrap_or(per_sec);
        Some(Self { per_sec, burst })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_sec).allow_burst(self.burst)
    }
}

/// Which limits apply; none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Applies and coupon reads per authenticated user.
    pub per_user: Option<Rate>,
    /// Requests per client address.
    pub per_address: Option<Rate>,
}

/// Checks requests against [`RateLimits`].
pub struct Limiter {
    users: Option<Keyed<u64>>,
    addresses: Option<Keyed<IpAddr>>,
}

impl Limiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            users: limits.per_user.map(Keyed::new),
            addresses: limits.per_address.map(Keyed::new),
        }
    }

    /// One request of `user`: a 429 answer when over their rate.
    pub fn check_user(&self, user: UserId) -> Result<(), ApiError> {
        match &self.users {
            Some(limiter) => limiter.check(user.0, "this user"),
            None => Ok(()),
        }
    }

    /// One request from `address`: a 429 answer when over its rate.
    pub fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        match &self.addresses {
            Some(limiter) => limiter.check(address, "this client address"),
            None => Ok(()),
        }
    }
}

/// One keyed limiter, forgetting idle keys now and then so that a rush of 100k users
/// does not keep 100k entries for ever.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 1 << 16;

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate) -> Self {
        Self {
            limiter: RateLimiter::keyed(rate.quota()),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: K, whom: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client told 0 would retry at once.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from {whom}; retry in {seconds} s"),
            )
            .with_retry_after(seconds.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_is_told_when_to_retry() {
        let limiter = Limiter::new(RateLimits {
            per_user: Rate::new(1, 3),
            per_address: None,
        });
        for _ in 0..3 {
            assert!(limiter.check_user(UserId(1)).is_ok());
        }
        let refused = limiter.check_user(UserId(1)).expect_err("over the burst");
        assert_eq!(refused.code(), "rate_limited");
        assert_eq!(refused.retry_after(), Some(1));
        // Another user has a budget of their own; addresses are not limited.
        assert!(limiter.check_user(UserId(2)).is_ok());
        assert!(limiter.check_address([127, 0, 0, 1].into()).is_ok());
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert_eq!(Rate::new(0, 10), None);
        assert_eq!(Rate::new(5, 1), Rate::new(5, 5));
    }
}
