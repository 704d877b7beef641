//! The firstcome HTTP service, as a library so that tests can drive its router.
//!
//! `cargo run -p firstcome-server` serves on the embedded default; see `--help` and
//! docs/operations.md for every setting.

pub mod api;
pub mod auth;
pub mod backends;
pub mod config;
pub mod console;
pub mod error;
pub mod limits;
pub mod listen;
pub mod metrics;
mod operator;
pub mod secrets;

pub use operator::run_command;
pub use secrets::{GENERATED_ADMIN_TOKEN, GENERATED_JWT_SECRET};
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use coupon_core::{IssueSource, IssueWorker};
use tokio::sync::watch;

use crate::api::AppState;
use crate::config::Config;
use crate::metrics::{MeteredSource, Metrics};

/// Runs what `config` asks for until `shutdown` completes, then stops gracefully: the
/// API stops accepting and finishes requests in flight, then the worker finishes and
/// acks its batch (draining the in-process queue first, on the embedded default).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let config = config.without_empty_values().with_secret_files()?;
    config.check()?;
    // Every role listens: a worker-only process for its probes and metrics.
    config.check_listening(config.http.bind)?;
    let listener = tokio::net::TcpListener::bind(config.http.bind)
        .await
        .map_err(|e| bind_error(config.http.bind, &e))?;
    let listener = Some(listener);
    serve(config, listener, shutdown).await
}

/// Why the listen address could not be taken, and what to do: two processes of one
/// machine (an API and a worker, two workers) started with the default `--bind` is the
/// common case.
fn bind_error(bind: std::net::SocketAddr, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "binding {bind}: {error}: another process listens there (another copy of this service?); \
             give each process of one machine its own address with --bind (BIND): another port each"
        ),
        _ => format!("binding {bind}: {error}"),
    }
}

/// [`run`] on a listener bound by the caller (tests bind port 0 and read the port).
pub async fn serve(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let config = config.without_empty_values().with_secret_files()?;
    // Settings that cannot work fail before any backend is waited for.
    config.check()?;
    if let Some(listener) = &listener {
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        config.check_listening(address)?;
        if let Some(warning) = config.listening_warning(address) {
            tracing::warn!("{warning}");
        }
    }
    // A worker-only process serves no user route: it needs no way to know users (and
    // must not generate a JWT secret it would never use).
    let (identity, generated_secret) = if config.role == config::Role::Worker {
        (
            auth::Identity::Jwt(auth::JwtVerifier::refusing_everyone()),
            None,
        )
    } else {
        config.identity()?
    };
    let mut shutdown = Box::pin(shutdown);
    let Some(mut backends) = connect(&config, shutdown.as_mut()).await? else {
        return Ok(()); // asked to stop while a backend was still away
    };
    let metrics = Arc::new(Metrics::new());

    println!(
        "firstcome {} ({:?})",
        env!("CARGO_PKG_VERSION"),
        config.role
    );
    for (part, what) in &backends.description {
        println!("  {part:>8}: {what}");
    }

    // The worker reads through a source that records batch sizes and errors; the
    // service reports its lag.
    let source = backends.source.clone().map(|source| {
        Arc::new(MeteredSource::new(source, metrics.clone())) as Arc<dyn IssueSource>
    });
    let service = backends.service.map(|service| {
        Arc::new(match &source {
            Some(source) => service.with_source(source.clone()),
            None => service,
        })
    });
    let worker = match (&service, &source) {
        (Some(service), _) => service.spawn_worker(config.worker()),
        // A worker-only process admits nothing, so it has no service.
        (None, Some(source)) => Some(
            IssueWorker::with_config(source.clone(), backends.store.clone(), config.worker())
                .spawn(),
        ),
        (None, None) => None,
    };
    if let Some(worker) = &worker {
        metrics.watch_worker(worker.totals());
    }
    if worker.is_some() {
        println!(
            "  {:>8}: batches of up to {}",
            "worker", config.worker.worker_batch_size
        );
    }

    // Every process that admits also settles: the admissions it (or a peer that died)
    // left without a coupon get their tickets published again.
    let (stop_settler, settler_stopped) = watch::channel(false);
    let settling = service.as_ref().map(|service| {
        let settler = service.settler().clone();
        let mut stopped = settler_stopped.clone();
        println!(
            "  {:>8}: every {:?}, admissions older than {:?}",
            "settler",
            settler.config().interval,
            settler.config().grace
        );
        tokio::spawn(async move {
            settler
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
        })
    });

    // A counter that loses its memory (Redis restarted, a failover, a lease lost) is
    // rebuilt as soon as that is seen, not at the next apply.
    let watching = service.as_ref().map(|service| {
        let service = service.clone();
        let mut stopped = settler_stopped.clone();
        tokio::spawn(async move {
            service
                .watch_counters(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
        })
    });

    match (service.clone(), source.clone(), listener) {
        (Some(service), _, Some(listener)) => {
            let admin_token = match config.identity.admin_token.clone() {
                Some(token) => token,
                None => secrets::generated_admin_token()?,
            };
            println!("  identity: {identity:?}");
            if let Some(secret) = generated_secret {
                secrets::keep_generated_jwt_secret(&secret)?;
            }
            let state = AppState::new(service, admin_token)
                .with_metrics(metrics)
                .with_identity(identity)
                .with_rate_limits(config.rate_limits())
                .with_metrics_token(config.http.metrics_token.clone())
                .with_allowed_hosts(&config.http.allowed_hosts)
                .with_request_timeout(std::time::Duration::from_millis(
                    config.limits.request_timeout_ms,
                ));
            let state = Arc::new(state);
            let open_files = process_stats::open_files_limit();
            let limits = config.http_limits(open_files);
            println!(
                "  connections: at most {} (open-files limit {}), {} per client address",
                limits.max_connections,
                open_files.map_or("unknown".to_owned(), |limit| limit.to_string()),
                limits
                    .max_connections_per_address
                    .map_or("no cap".to_owned(), |cap| cap.to_string())
            );
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            println!(
                "  console: http://{address}/ui#token=<admin token> (ADMIN_TOKEN, or the \
             contents of ./{GENERATED_ADMIN_TOKEN} when it was generated)"
            );
            println!("listening on http://{address}");
            let app = api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());

            listen::serve_http(listener, app, limits, shutdown).await;
        }
        (None, Some(source), Some(listener)) => {
            // A worker-only process: its probes and metrics, nothing else.
            let probes = api::worker_only::WorkerProbes::new(
                metrics,
                backends.store.clone(),
                source,
                config.http.metrics_token.clone(),
                config.identity.admin_token.clone(),
            );
            let limits = config.http_limits(process_stats::open_files_limit());
            let address = listener.local_addr().map_err(|e| e.to_string())?;
            println!("probes and metrics on http://{address} (/healthz, /readyz, /metrics)");
            let app = api::worker_only::worker_router(Arc::new(probes));
            listen::serve_http(listener, app, limits, shutdown).await;
        }
        _ => shutdown.as_mut().await,
    }
    tracing::info!("shutting down");

    // No new tickets can arrive now; let the worker finish what was handed off: all of
    // it from an in-process queue (closed, so its source ends once drained), the batch
    // in hand from a shared one (the rest waits there for the next worker).
    let _ = stop_settler.send(true);
    for task in [settling, watching].into_iter().flatten() {
        task.abort();
    }
    // The counter admits no one from now on, but the lease stays this process's until
    // what it admitted is handed off: a process taking over would rebuild without the
    // tickets still in an in-process queue.
    let mut lease = backends.lease.take();
    if let Some(lease) = lease.as_mut() {
        lease.stop_admitting().await;
    }
    let stopped = stop_worker(worker, backends.memory_queue.as_ref()).await;
    // Handed off: the lease goes to another process at once.
    if let Some(lease) = lease {
        lease.release().await;
    }
    stopped
}

/// Lets the worker finish what was handed off (draining an in-process queue) and stop.
async fn stop_worker(
    worker: Option<coupon_core::RunningWorker>,
    memory_queue: Option<&Arc<coupon_core::memory::MemoryQueue>>,
) -> Result<(), String> {
    if let Some(worker) = worker {
        let report = match memory_queue {
            Some(queue) => {
                queue.close();
                worker.drain().await
            }
            None => worker.stop().await,
        };
        match report {
            Ok(report) => println!("worker stopped: {report:?}"),
            Err(error) => return Err(format!("worker: {error}")),
        }
    }
    Ok(())
}

/// Connects the backends, trying again with a capped backoff while a backend does not
/// answer yet (a process started during a restart or an outage waits it out instead of
/// exiting), for up to `--startup-patience-ms`. `None` when `shutdown` completed first.
async fn connect(
    config: &Config,
    mut shutdown: std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
) -> Result<Option<backends::Backends>, String> {
    let patience = std::time::Duration::from_millis(config.startup_patience_ms);
    let began = std::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        let built = tokio::select! {
            built = backends::build(config) => built,
            () = shutdown.as_mut() => return Ok(None),
        };
        match built {
            Ok(backends) => return Ok(Some(backends)),
            Err(error) if error.retryable && began.elapsed() + backoff < patience => {
                tracing::warn!(error = %error.message, retry_in = ?backoff, "a backend is not answering yet");
            }
            Err(error) => return Err(error.message),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.as_mut() => return Ok(None),
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
