//! The faults a run injects and the seeded schedule they follow: the same seed, the
//! same faults at the same offsets for the same lengths.

use std::fmt;
use std::time::Duration;

use coupon_testkit::rng::Rng;
use serde::Serialize;

/// A backend the service reaches through the tool's fault proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The admission counter.
    Redis,
    /// The Kafka-protocol broker (tansu).
    Broker,
    /// The coupon store.
    Postgres,
}

impl Backend {
    const ALL: [Backend; 3] = [Backend::Redis, Backend::Broker, Backend::Postgres];
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Redis => "redis",
            Backend::Broker => "broker",
            Backend::Postgres => "postgres",
        })
    }
}

/// What the network between the service and a backend does for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Every answer this late.
    Latency(Duration),
    /// Each connection cut as the answer arrives: the backend acted, the service never
    /// hears it.
    Reset,
    /// Answers swallowed, connections left open (a partition).
    Blackhole,
}

/// One fault of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// `kill -9` an API process, started again `down` later.
    KillApi {
        /// Which of the API processes.
        index: usize,
        /// How long it stays dead.
        down: Duration,
    },
    /// `kill -9` a worker process, started again `down` later.
    KillWorker {
        /// Which of the workers.
        index: usize,
        /// How long it stays dead.
        down: Duration,
    },
    /// `kill -9` a backend, started again `down` later; Redis comes back empty (it keeps
    /// nothing on disk), the broker and PostgreSQL with their storage. A PostgreSQL
    /// `down` of 30 s or more is the outage of the schedule.
    KillBackend {
        /// Which backend.
        backend: Backend,
        /// How long it stays dead.
        down: Duration,
    },
    /// The network to a backend misbehaves for `lasting`.
    Network {
        /// Which backend.
        backend: Backend,
        /// How.
        fault: Network,
        /// For how long.
        lasting: Duration,
    },
    /// Two faults in one: Redis restarted empty, and again `gap` after it answers, while
    /// the counter is being rebuilt after the first loss.
    RedisLostTwice {
        /// From the first restart to the second kill.
        gap: Duration,
    },
    /// PostgreSQL's commits wait for a synchronous standby that does not exist
    /// (`synchronous_standby_names`) for `lasting`, then all land at once: writes become
    /// visible after their callers gave up on them.
    LateCommits {
        /// For how long commits wait.
        lasting: Duration,
    },
}

impl Fault {
    /// How long the fault lasts before it is healed.
    pub fn lasting(&self) -> Duration {
        match *self {
            Fault::KillApi { down, .. }
            | Fault::KillWorker { down, .. }
            | Fault::KillBackend { down, .. } => down,
            Fault::Network { lasting, .. } | Fault::LateCommits { lasting } => lasting,
            // Two restarts of about a second each around the gap.
            Fault::RedisLostTwice { gap } => gap + Duration::from_secs(2),
        }
    }

    /// Its kind, for the report's counts: `kill api`, `network redis blackhole`, ...
    pub fn kind(&self) -> String {
        match *self {
            Fault::KillApi { .. } => "kill -9 api".into(),
            Fault::KillWorker { .. } => "kill -9 worker".into(),
            Fault::KillBackend { backend, down }
                if backend == Backend::Postgres && down >= OUTAGE =>
            {
                "postgres outage".into()
            }
            Fault::KillBackend { backend, .. } => format!("kill -9 {backend}"),
            Fault::Network { backend, fault, .. } => {
                let what = match fault {
                    Network::Latency(_) => "latency",
                    Network::Reset => "reset",
                    Network::Blackhole => "blackhole",
                };
                format!("{what} {backend}")
            }
            Fault::RedisLostTwice { .. } => "redis lost twice".into(),
            Fault::LateCommits { .. } => "late commits".into(),
        }
    }

    /// Whether the counter loses its memory (Redis restarted empty).
    pub fn loses_counter(&self) -> bool {
        matches!(
            self,
            Fault::KillBackend {
                backend: Backend::Redis,
                ..
            } | Fault::RedisLostTwice { .. }
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::KillApi { index, down } => write!(f, "kill -9 api {index}, down {down:?}"),
            Fault::KillWorker { index, down } => {
                write!(f, "kill -9 worker {index}, down {down:?}")
            }
            Fault::KillBackend { backend, down } => write!(f, "kill -9 {backend}, down {down:?}"),
            Fault::Network {
                backend,
                fault,
                lasting,
            } => match fault {
                Network::Latency(delay) => {
                    write!(f, "latency {delay:?} to {backend} for {lasting:?}")
                }
                Network::Reset => write!(f, "resets to {backend} for {lasting:?}"),
                Network::Blackhole => write!(f, "blackhole to {backend} for {lasting:?}"),
            },
            Fault::RedisLostTwice { gap } => {
                write!(f, "redis restarted empty, and again {gap:?} later")
            }
            Fault::LateCommits { lasting } => {
                write!(f, "postgres commits held back for {lasting:?}")
            }
        }
    }
}

/// A fault and when it starts, as an offset from the start of the rush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// When it starts.
    pub at: Duration,
    /// What.
    pub fault: Fault,
}

/// The shortest PostgreSQL outage: shorter kills are plain restarts.
pub const OUTAGE: Duration = Duration::from_secs(30);

/// The faults of one seed over a window of `window`, one after another with a pause of
/// 1 to 4 s between them, each healed before the next begins. About one seed in two
/// holds a PostgreSQL outage of 30 to 60 s, if it fits.
///
/// ```
/// use std::time::Duration;
/// let a = chaos::schedule::plan(7, Duration::from_secs(60), 2, 2);
/// assert_eq!(a, chaos::schedule::plan(7, Duration::from_secs(60), 2, 2));
/// assert!(a.iter().all(|p| p.at + p.fault.lasting() <= Duration::from_secs(60)));
/// ```
pub fn plan(seed: u64, window: Duration, apis: usize, workers: usize) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let ms =
        |rng: &mut Rng, low: u64, high: u64| Duration::from_millis(low + rng.below(high - low));
    let mut outage = rng.chance(0.5);
    let mut at = ms(&mut rng, 2_000, 5_000);
    let mut planned = Vec::new();
    loop {
        let fault = if outage && rng.chance(0.3) {
            outage = false;
            Fault::KillBackend {
                backend: Backend::Postgres,
                down: ms(&mut rng, 30_000, 60_000),
            }
        } else {
            draw(&mut rng, apis, workers)
        };
        if at + fault.lasting() > window {
            // The outage may not fit where it fell; a shorter fault still might.
            if fault.lasting() >= OUTAGE {
                continue;
            }
            break;
        }
        planned.push(Planned { at, fault });
        at += fault.lasting() + ms(&mut rng, 1_000, 4_000);
    }
    planned
}

/// One fault other than the outage: a process killed, a backend killed, a paired fault
/// (two Redis losses in one rebuild, late commits) or, as often as those together, a
/// network fault.
fn draw(rng: &mut Rng, apis: usize, workers: usize) -> Fault {
    let ms =
        |rng: &mut Rng, low: u64, high: u64| Duration::from_millis(low + rng.below(high - low));
    match rng.below(6) {
        0 => Fault::KillApi {
            index: rng.below(apis as u64) as usize,
            down: ms(rng, 500, 3_000),
        },
        1 => Fault::KillWorker {
            index: rng.below(workers as u64) as usize,
            down: ms(rng, 500, 5_000),
        },
        2 => Fault::KillBackend {
            backend: Backend::ALL[rng.below(3) as usize],
            down: ms(rng, 500, 5_000),
        },
        // The faults that come in pairs: a second counter loss during the rebuild after
        // the first, or writes that land after their callers' timeouts.
        3 if rng.chance(0.5) => Fault::RedisLostTwice {
            gap: ms(rng, 100, 1_500),
        },
        3 => Fault::LateCommits {
            lasting: ms(rng, 1_000, 12_000),
        },
        _ => {
            let backend = Backend::ALL[rng.below(3) as usize];
            let fault = match rng.below(3) {
                0 => Network::Latency(ms(rng, 20, 500)),
                1 => Network::Reset,
                _ => Network::Blackhole,
            };
            Fault::Network {
                backend,
                fault,
                lasting: ms(rng, 1_000, 8_000),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_fits_its_window_one_fault_at_a_time() {
        for seed in 0..500 {
            let window = Duration::from_secs(60);
            let planned = plan(seed, window, 2, 2);
            assert!(!planned.is_empty(), "seed {seed} plans nothing");
            for pair in planned.windows(2) {
                assert!(
                    pair[0].at + pair[0].fault.lasting() < pair[1].at,
                    "seed {seed}"
                );
            }
            let last = planned.last().expect("a fault");
            assert!(last.at + last.fault.lasting() <= window, "seed {seed}");
            let outages = planned
                .iter()
                .filter(|p| p.fault.kind() == "postgres outage")
                .count();
            assert!(outages <= 1, "seed {seed}");
        }
    }

    #[test]
    fn seeds_differ_and_about_half_hold_an_outage() {
        let window = Duration::from_secs(180);
        assert_ne!(plan(1, window, 2, 2), plan(2, window, 2, 2));
        let with_outage = (0..400)
            .filter(|&seed| {
                plan(seed, window, 2, 2)
                    .iter()
                    .any(|p| p.fault.kind() == "postgres outage")
            })
            .count();
        assert!((120..280).contains(&with_outage), "{with_outage}");
    }
}
