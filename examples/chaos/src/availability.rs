//! What faults do to the applicants' experience: for the attempts sent while a fault of
//! each kind was on (and 2 s after it healed), and for those sent with no fault on, the
//! share answered, told 503, or failed, and the latency of the answered ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::inject::Injected;
use crate::rush::{Attempt, Ended};

/// How long after a fault healed its effects are still counted as its own.
const AFTERMATH: Duration = Duration::from_secs(2);

/// Attempts of one kind of window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Attempts sent in it.
    pub attempts: u64,
    /// Share answered with a final or sold-out answer (202, 409, other 4xx).
    pub answered: f64,
    /// Share told 503.
    pub unavailable: f64,
    /// Share that failed: another 5xx, a dropped connection, no answer in time.
    pub failed: f64,
    /// Median latency of the answered ones, in ms.
    pub p50_ms: f64,
    /// 99th percentile latency of the answered ones, in ms.
    pub p99_ms: f64,
}

impl Window {
    fn of(attempts: &[&Attempt]) -> Self {
        let share = |ended: Ended| {
            let n = attempts.iter().filter(|a| a.ended == ended).count();
            if attempts.is_empty() {
                0.0
            } else {
                n as f64 / attempts.len() as f64
            }
        };
        let mut answered: Vec<Duration> = attempts
            .iter()
            .filter(|a| a.ended == Ended::Answered)
            .map(|a| a.took)
            .collect();
        answered.sort_unstable();
        let percentile = |p: f64| load::percentile(&answered, p).as_secs_f64() * 1_000.0;
        Self {
            attempts: attempts.len() as u64,
            answered: share(Ended::Answered),
            unavailable: share(Ended::Unavailable),
            failed: share(Ended::Failed),
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
        }
    }
}

/// Per fault kind, and `no fault` for attempts sent while none was on.
pub fn by_fault(attempts: &[Attempt], injected: &[Injected]) -> BTreeMap<String, Window> {
    let mut grouped: BTreeMap<String, Vec<&Attempt>> = BTreeMap::new();
    for attempt in attempts {
        let during = injected
            .iter()
            .find(|done| attempt.sent >= done.began && attempt.sent < done.healed + AFTERMATH);
        let kind = during.map_or_else(|| "no fault".to_owned(), |done| done.fault.kind());
        grouped.entry(kind).or_default().push(attempt);
    }
    grouped
        .into_iter()
        .map(|(kind, attempts)| (kind, Window::of(&attempts)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Fault;

    #[test]
    fn attempts_fall_in_the_window_of_the_fault_they_were_sent_during() {
        let at = |secs: u64, ended| Attempt {
            sent: Duration::from_secs(secs),
            took: Duration::from_millis(secs),
            ended,
        };
        let attempts = [
            at(1, Ended::Answered),
            at(5, Ended::Unavailable),
            at(6, Ended::Answered),
            at(20, Ended::Failed),
        ];
        let injected = [Injected {
            fault: Fault::KillApi {
                index: 0,
                down: Duration::from_secs(2),
            },
            began: Duration::from_secs(4),
            healed: Duration::from_secs(5),
            error: None,
        }];
        let windows = by_fault(&attempts, &injected);
        let during = &windows["kill -9 api"];
        assert_eq!(during.attempts, 2);
        assert_eq!((during.answered, during.unavailable), (0.5, 0.5));
        assert_eq!(during.p99_ms, 6.0);
        let calm = &windows["no fault"];
        assert_eq!(calm.attempts, 2);
        assert_eq!((calm.answered, calm.failed), (0.5, 0.5));
    }
}
