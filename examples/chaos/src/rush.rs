//! The applicants: each arrives at its moment of the rush and applies until told
//! something final, retrying through 503s, errors and timeouts as a shopper pressing
//! the button again would; some hang up mid-request; those told "sold out" keep trying
//! every few seconds until the run stops them, so that a slot that comes back is taken.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use coupon_testkit::rng::Rng;
use load::HttpClient;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// How the applicants behave.
#[derive(Debug, Clone)]
pub struct RushSettings {
    /// Draws each applicant's choices (which API, when to hang up).
    pub seed: u64,
    /// The campaign they apply to.
    pub campaign: u64,
    /// Applicants, users `1..=applicants`, one application each.
    pub applicants: u64,
    /// Their arrivals spread evenly over this long.
    pub arrivals_over: Duration,
    /// The share of attempts that hang up 0 to 5 ms after sending.
    pub hang_up: f64,
    /// Requests in flight at most, over every API.
    pub concurrency: usize,
    /// How long an applicant waits for an answer before trying again.
    pub request_timeout: Duration,
    /// How long an applicant told "sold out" waits before trying again.
    pub sold_out_retry: Duration,
}

/// What the applicants heard.
#[derive(Debug, Default, Clone)]
pub struct Heard {
    /// Applicants told 202 with a rank: user, rank.
    pub accepted: BTreeMap<u64, u64>,
    /// Applicants told 202 pending: user, when (since the rush began).
    pub pending: BTreeMap<u64, Duration>,
    /// Applicants told 409 already_applied (an earlier try took a slot, its answer lost).
    pub already: BTreeSet<u64>,
    /// Applicants told something no open campaign should answer (403, 404, 422...).
    pub unexpected: BTreeMap<u64, String>,
    /// Every answer, counted per outcome (`202 accepted`, `503 unavailable`, `timeout`...).
    pub answers: BTreeMap<String, u64>,
    /// Applicants still trying (after errors, not after "sold out") when the run ended.
    pub still_trying: u64,
    /// Every attempt with an HTTP answer or an error, in the order they ended.
    pub attempts: Vec<Attempt>,
}

/// One attempt, for availability and latency over time.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// When it was sent, since the rush began.
    pub sent: Duration,
    /// How long until its answer (or its error).
    pub took: Duration,
    /// What it came to.
    pub ended: Ended,
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// An answer that ends or pauses the applicant's try: 202, 409, another 4xx.
    Answered,
    /// 503: the service says "not now" (a backend is away or the counter rebuilding).
    Unavailable,
    /// Another 5xx, a dropped connection, or no answer within the client's timeout.
    Failed,
}

impl Heard {
    fn count(&mut self, outcome: impl Into<String>) {
        *self.answers.entry(outcome.into()).or_default() += 1;
    }
}

/// The rush in progress.
pub struct Rush {
    stop: Arc<AtomicBool>,
    heard: Arc<Mutex<Heard>>,
    tasks: tokio::task::JoinSet<()>,
}

/// What one attempt came to.
enum Answer {
    Final,
    SoldOut,
    TryAgain,
}

impl Rush {
    /// Starts the applicants against the API processes at `apis` (base URLs); `started`
    /// is the moment offsets in the report count from.
    pub fn start(settings: RushSettings, apis: Vec<String>, started: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let heard = Arc::new(Mutex::new(Heard::default()));
        let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let client: HttpClient = load::http_client(settings.concurrency);
        let apis = Arc::new(apis);
        let mut tasks = tokio::task::JoinSet::new();
        for user in 1..=settings.applicants {
            let applicant = Applicant {
                user,
                rng: Rng::new(settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ user),
                settings: settings.clone(),
                apis: apis.clone(),
                client: client.clone(),
                permits: permits.clone(),
                stop: stop.clone(),
                heard: heard.clone(),
                started,
            };
            let arrival = settings
                .arrivals_over
                .mul_f64((user - 1) as f64 / settings.applicants as f64);
            tasks.spawn(async move {
                tokio::time::sleep_until((started + arrival).into()).await;
                applicant.apply_until_answered().await;
            });
        }
        Self { stop, heard, tasks }
    }

    /// Stops every applicant still trying and returns what they all heard.
    pub async fn stop(mut self) -> Heard {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        std::mem::take(&mut *lock(&self.heard))
    }
}

fn lock(heard: &Mutex<Heard>) -> std::sync::MutexGuard<'_, Heard> {
    heard.lock().unwrap_or_else(|e| e.into_inner())
}

struct Applicant {
    user: u64,
    rng: Rng,
    settings: RushSettings,
    apis: Arc<Vec<String>>,
    client: HttpClient,
    permits: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
    heard: Arc<Mutex<Heard>>,
    started: Instant,
}

impl Applicant {
    async fn apply_until_answered(mut self) {
        let mut sold_out = false;
        while !self.stop.load(Ordering::Relaxed) {
            let api = self.apis[self.rng.below(self.apis.len() as u64) as usize].clone();
            let answer = {
                let Ok(_permit) = self.permits.clone().acquire_owned().await else {
                    return;
                };
                if self.rng.chance(self.settings.hang_up) {
                    let after = Duration::from_micros(self.rng.below(5_000));
                    self.hang_up(&api, after).await;
                    lock(&self.heard).count("hung up");
                    Answer::TryAgain
                } else {
                    self.apply(&api).await
                }
            };
            match answer {
                Answer::Final => return,
                Answer::SoldOut => {
                    sold_out = true;
                    self.pause(self.settings.sold_out_retry).await;
                }
                Answer::TryAgain => {
                    let jitter = Duration::from_millis(200 + self.rng.below(300));
                    self.pause(jitter).await;
                }
            }
        }
        if !sold_out {
            lock(&self.heard).still_trying += 1;
        }
    }

    /// Sleeps `pause`, or less if the run stops meanwhile.
    async fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100).min(pause)).await;
        }
    }

    async fn apply(&mut self, api: &str) -> Answer {
        let url = format!("{api}/campaigns/{}/apply", self.settings.campaign);
        let body = json!({ "user_id": self.user });
        let call = load::call(&self.client, Method::POST, &url, None, Some(body));
        let sent = Instant::now();
        let answer = tokio::time::timeout(self.settings.request_timeout, call).await;
        let mut heard = lock(&self.heard);
        let ended = match &answer {
            Ok(Ok((StatusCode::SERVICE_UNAVAILABLE, _))) => Ended::Unavailable,
            Ok(Ok((status, _))) if !status.is_server_error() => Ended::Answered,
            _ => Ended::Failed,
        };
        heard.attempts.push(Attempt {
            sent: sent.duration_since(self.started),
            took: sent.elapsed(),
            ended,
        });
        let (status, body) = match answer {
            Err(_) => {
                heard.count("timeout");
                return Answer::TryAgain;
            }
            Ok(Err(_)) => {
                heard.count("connection error");
                return Answer::TryAgain;
            }
            Ok(Ok(answer)) => answer,
        };
        let code = body["error"].as_str().unwrap_or_default().to_owned();
        match status {
            StatusCode::ACCEPTED => {
                if let Some(rank) = body["rank"].as_u64() {
                    heard.count("202 accepted");
                    heard.accepted.insert(self.user, rank);
                } else {
                    heard.count("202 pending");
                    heard.pending.insert(self.user, self.started.elapsed());
                }
                Answer::Final
            }
            StatusCode::CONFLICT if code == "already_applied" => {
                heard.count("409 already_applied");
                heard.already.insert(self.user);
                Answer::Final
            }
            StatusCode::CONFLICT if code == "sold_out" => {
                heard.count("409 sold_out");
                Answer::SoldOut
            }
            status if status.is_server_error() => {
                heard.count(format!("{} {code}", status.as_u16()));
                Answer::TryAgain
            }
            status => {
                let what = format!("{} {code}", status.as_u16());
                heard.count(what.clone());
                heard
                    .unexpected
                    .insert(self.user, format!("{what}: {body}"));
                Answer::Final
            }
        }
    }

    /// Sends an apply over a connection of its own and closes it `after` later, without
    /// reading the answer.
    async fn hang_up(&self, api: &str, after: Duration) {
        let address = api.trim_start_matches("http://");
        let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
            return;
        };
        let body = format!(r#"{{"user_id":{}}}"#, self.user);
        let request = format!(
            "POST /campaigns/{}/apply HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.settings.campaign,
            body.len()
        );
        let _ = stream.write_all(request.as_bytes()).await;
        tokio::time::sleep(after).await;
    }
}
