//! A rush of applicants on one campaign, and the promises checked on what they heard.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;

use super::Api;

/// What applicants heard in a rush.
#[derive(Debug, Default)]
pub struct Heard {
    /// Users told 202 with a rank.
    pub accepted: HashSet<u64>,
    /// Users told 202 pending.
    pub pending: HashSet<u64>,
    /// Users told 409 already_applied: their first try took a slot and its answer was
    /// lost (the process died after committing the ticket) or was a retryable error
    /// while the admission rolled forward.
    pub already: HashSet<u64>,
    /// Other answers by status code and error code, counted.
    pub others: std::collections::BTreeMap<String, u64>,
    /// Users who heard a retryable error (503, or no answer) before their final answer.
    pub retried: HashSet<u64>,
}

impl Heard {
    /// Users told yes, one way or the other: 202 accepted or pending.
    pub fn told_yes(&self) -> HashSet<u64> {
        self.accepted.union(&self.pending).copied().collect()
    }

    /// The promises after a rush of `applicants` on `cap`: exactly `cap` issued and held,
    /// every applicant told yes or "already applied" among the holders, and no more
    /// than `cap` told yes. When `exact` (every applicant kept trying until a final
    /// answer, and no process died), the holders are exactly those told yes and those
    /// told "already applied": an applicant whose apply ended in a retryable error while
    /// their admission rolled forward (the contract allows it: the coupon route tells
    /// the truth) hears "already applied" when trying again once the coupon is stored.
    /// After a crash, an applicant whose first answer was lost with the process may
    /// also hear "sold out" when trying again.
    pub async fn assert_promises_kept(
        &self,
        api: &Api,
        campaign: u64,
        cap: u64,
        applicants: u64,
        exact: bool,
    ) {
        let issued = api
            .wait_for_issued(campaign, cap, Duration::from_secs(120))
            .await;
        let told_yes = self.told_yes();
        let holders = api.holders(campaign, &(1..=applicants).collect()).await;
        assert_eq!(issued, cap, "{self:?}");
        let empty_handed = told_yes.difference(&holders).count();
        assert_eq!(
            empty_handed, 0,
            "applicants who heard 202 and hold no coupon"
        );
        let told_already_without_coupon: Vec<_> = self.already.difference(&holders).collect();
        assert!(
            told_already_without_coupon.is_empty(),
            "told already applied and hold no coupon: {told_already_without_coupon:?}"
        );
        assert_eq!(holders.len() as u64, cap);
        assert!(told_yes.len() as u64 <= cap, "{} told yes", told_yes.len());
        if exact {
            let answered: HashSet<u64> = told_yes.union(&self.already).copied().collect();
            let unanswered: Vec<_> = holders.difference(&answered).collect();
            assert!(
                unanswered.is_empty(),
                "holders told neither yes nor already applied: {unanswered:?}; others heard {:?}",
                self.others
            );
            // Each applies once: "already applied" is right only after an error.
            let never_retried: Vec<_> = self.already.difference(&self.retried).collect();
            assert!(
                never_retried.is_empty(),
                "told already applied on their first answer: {never_retried:?}"
            );
        }
    }

    /// Adds what another rush over other users heard.
    pub fn merge(&mut self, other: Heard) {
        self.accepted.extend(other.accepted);
        self.pending.extend(other.pending);
        self.already.extend(other.already);
        self.retried.extend(other.retried);
        for (key, count) in other.others {
            *self.others.entry(key).or_default() += count;
        }
    }
}

/// A rush in progress: `users` apply once each over `concurrency` connections, retrying
/// on 503 (every applicant keeps trying until they hear an answer).
pub struct Rush {
    pub done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<Heard>,
}

impl Rush {
    pub fn start(
        api: &Api,
        campaign: u64,
        users: std::ops::RangeInclusive<u64>,
        concurrency: usize,
    ) -> Self {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let heard = Arc::new(Mutex::new(Heard::default()));
        let next = Arc::new(std::sync::atomic::AtomicU64::new(*users.start()));
        let last = *users.end();
        let task = {
            let (api, done, heard) = (api.clone(), done.clone(), heard.clone());
            tokio::spawn(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..concurrency {
                    let (api, done, heard, next) =
                        (api.clone(), done.clone(), heard.clone(), next.clone());
                    tasks.spawn(async move {
                        loop {
                            let user = next.fetch_add(1, Ordering::Relaxed);
                            if user > last {
                                return;
                            }
                            let mut retried = false;
                            let answer = loop {
                                match api.apply(campaign, user).await {
                                    Ok((StatusCode::SERVICE_UNAVAILABLE, _)) | Err(_) => {
                                        retried = true;
                                        tokio::time::sleep(Duration::from_millis(200)).await;
                                    }
                                    Ok(answer) => break answer,
                                }
                            };
                            let mut heard = heard.lock().unwrap_or_else(|e| e.into_inner());
                            if retried {
                                heard.retried.insert(user);
                            }
                            match answer {
                                (StatusCode::ACCEPTED, body) if body["rank"].is_u64() => {
                                    heard.accepted.insert(user);
                                }
                                (StatusCode::ACCEPTED, body) if body["status"] == "pending" => {
                                    heard.pending.insert(user);
                                }
                                (StatusCode::CONFLICT, body)
                                    if body["error"] == "already_applied" =>
                                {
                                    heard.already.insert(user);
                                }
                                (status, body) => {
                                    let key = format!("{} {}", status.as_u16(), body["error"]);
                                    *heard.others.entry(key).or_default() += 1;
                                }
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
                std::mem::take(&mut *heard.lock().unwrap_or_else(|e| e.into_inner()))
            })
        };
        Self { done, task }
    }

    /// Waits until `count` applicants have heard their answer.
    pub async fn wait_for(&self, count: u64) {
        while self.done.load(std::sync::atomic::Ordering::Relaxed) < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the end of the rush.
    pub async fn finish(self) -> Heard {
        self.task.await.expect("rush task")
    }
}
