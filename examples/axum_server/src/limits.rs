//! Abuse limits: how many requests one user and one client address may make per second,
//! answered 429 with `Retry-After` past them, and how many connections one client
//! address may hold open. A client address is an IPv4 address or an IPv6 /64
//! ([`client_key`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

    /// One request from `address` (counted against its [`client_key`]): a 429 answer
    /// when over its rate.
    pub fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        match &self.addresses {
            Some(limiter) => limiter.check(client_key(address), "this client address"),
            None => Ok(()),
        }
    }
}

/// What the address limits count `address` as: an IPv4 address itself, an IPv6
/// address's /64 (one subscriber's prefix: a client rotating addresses within it is
/// still one client), an IPv4-mapped IPv6 address as its IPv4 address.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The connections each client address ([`client_key`]) holds open, against a cap.
#[derive(Debug)]
pub struct AddressConnections {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressConnections {
    /// At most `cap` open connections per client address.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `address`, held until dropped; `None` when
    /// the address holds its cap already.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionSlot> {
        let key = client_key(address);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            owner: self.clone(),
            key,
        })
    }

    /// How many connections `address`'s client key holds open.
    pub fn open(&self, address: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&client_key(address)).copied().unwrap_or(0)
    }
}

/// One open connection of a client address; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    owner: Arc<AddressConnections>,
    key: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            // Forget the address at zero: the map holds only addresses with a connection.
            if *count == 0 {
                open.remove(&self.key);
            }
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
    fn ipv6_clients_are_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = Limiter::new(RateLimits {
            per_user: None,
            per_address: Rate::new(1, 2),
        });
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let same_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().expect("v6");
        let next_64: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert!(limiter.check_address(first).is_ok());
        assert!(limiter.check_address(same_64).is_ok());
        let refused = limiter
            .check_address(same_64)
            .expect_err("the /64's burst is spent");
        assert_eq!(refused.code(), "rate_limited");
        assert!(limiter.check_address(next_64).is_ok(), "another /64");
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().expect("mapped")),
            IpAddr::from([192, 0, 2, 7])
        );
        assert_eq!(
            client_key(same_64),
            "2001:db8:1:2::".parse::<IpAddr>().expect("v6")
        );
    }

    #[test]
    fn an_address_holds_at_most_its_cap_of_connections_until_one_closes() {
        let connections = AddressConnections::new(2);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let first = connections.admit(a).expect("1 of 2");
        let _second = connections.admit(a).expect("2 of 2");
        assert!(connections.admit(a).is_none(), "over the cap");
        assert!(connections.admit(b).is_some(), "another address");
        // Addresses in one /64 share the cap.
        let v6: IpAddr = "2001:db8::1".parse().expect("v6");
        let _v6 = [
            connections.admit(v6).expect("1 of 2 in the /64"),
            connections
                .admit("2001:db8::ffff".parse().expect("v6"))
                .expect("2 of 2"),
        ];
        assert!(
            connections
                .admit("2001:db8::2".parse().expect("v6"))
                .is_none()
        );
        assert!(
            connections
                .admit("2001:db8:0:1::1".parse().expect("v6"))
                .is_some(),
            "another /64"
        );
        // An IPv4 client of a dual-stack listener (`::ffff:a.b.c.d`) is its IPv4
        // address: connecting both ways does not double its cap.
        assert!(
            connections
                .admit("::ffff:192.0.2.1".parse().expect("mapped"))
                .is_none(),
            "192.0.2.1 holds its cap"
        );
        drop(first);
        assert_eq!(connections.open(a), 1);
        assert!(connections.admit(a).is_some(), "a slot was freed");
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert_eq!(Rate::new(0, 10), None);
        assert_eq!(Rate::new(5, 1), Rate::new(5, 5));
    }
}
