//! The firstcome HTTP service, as a library so that tests can drive its router.
//!
//! `cargo run -p axum_server` serves on the embedded default; see `--help` and
//! docs/operations.md for every setting.

pub mod api;
pub mod backends;
pub mod config;
pub mod error;
pub mod metrics;

use std::future::Future;
use std::sync::Arc;

use coupon_core::{CouponIssuer, IssueWorker, WorkerConfig};
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
    let listener = if config.role == config::Role::Worker {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| format!("binding {}: {e}", config.bind))?;
        Some(listener)
    };
    serve(config, listener, shutdown).await
}

/// [`run`] on a listener bound by the caller (tests bind port 0 and read the port).
pub async fn serve(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let backends = backends::build(&config).await?;
    let metrics = Arc::new(Metrics::new());

    println!(
        "firstcome {} ({:?})",
        env!("CARGO_PKG_VERSION"),
        config.role
    );
    for (part, what) in &backends.description {
        println!("  {part:>8}: {what}");
    }

    let (stop_worker, worker_stopped) = watch::channel(false);
    let worker = backends.source.clone().map(|source| {
        let worker = IssueWorker::with_config(
            Arc::new(MeteredSource::new(source, metrics.clone())),
            backends.store.clone(),
            WorkerConfig::default().with_batch_size(config.worker_batch_size),
        );
        let mut stopped = worker_stopped.clone();
        tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        })
    });
    if worker.is_some() {
        println!(
            "  {:>8}: batches of up to {}",
            "worker", config.worker_batch_size
        );
    }

    let mut shutdown = Box::pin(shutdown);
    if let (Some(queue), Some(listener)) = (backends.queue.clone(), listener) {
        let admin_token = config.admin_token.clone().unwrap_or_else(|| {
            let token = uuid::Uuid::new_v4().simple().to_string();
            println!("  admin token (generated; set ADMIN_TOKEN to choose one): {token}");
            token
        });
        let state = Arc::new(AppState {
            issuer: CouponIssuer::new(
                backends.counter.clone(),
                queue.clone(),
                backends.store.clone(),
            ),
            queue,
            counter: backends.counter.clone(),
            store: backends.store.clone(),
            admin_token,
            metrics,
            source: backends.source.clone(),
        });
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on http://{address}");
        let app = api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("serving: {e}"))?;
    } else {
        shutdown.as_mut().await;
    }
    tracing::info!("shutting down");

    // No new tickets can arrive now; let the worker finish what was handed off.
    if let Some(queue) = &backends.memory_queue {
        queue.close();
    }
    let _ = stop_worker.send(backends.memory_queue.is_none());
    if let Some(worker) = worker {
        match worker.await {
            Ok(Ok(report)) => println!("worker stopped: {report:?}"),
            Ok(Err(error)) => return Err(format!("worker: {error}")),
            Err(error) => return Err(format!("worker task: {error}")),
        }
    }
    Ok(())
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
