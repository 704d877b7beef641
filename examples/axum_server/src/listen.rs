//! Serving the router on a TCP listener with the limits a public service needs: a cap
//! on open connections, in all and per client address; a client must send its request
//! headers in time, in a head of at most [`MAX_REQUEST_HEAD`]; and a graceful shutdown
//! waits for requests in flight only until its deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::limits::AddressConnections;

/// The connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers.
    pub header_read: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_deadline: Duration,
    /// Most connections open at once; past it the listener stops accepting (new
    /// clients wait in the kernel's backlog) until one closes.
    pub max_connections: usize,
    /// Most connections one client address may hold open (`None`: no cap); one more
    /// is answered 503 and closed at once.
    pub max_connections_per_address: Option<usize>,
}

/// The most a request's head (its request line and headers) may take; a larger one is
/// answered 431. hyper buffers up to about 400 KiB by default, for every open
/// connection: 4 GiB over the default cap of 10,000 connections, a way to exhaust the
/// memory with slow, large heads. 32 KiB still takes large cookies (a browser sends
/// those of every service on `localhost`, whatever the port) beside a long token.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// The body of the answer to a connection over its address's cap.
const TOO_MANY_CONNECTIONS: &str =
    r#"{"error":"too_many_connections","message":"too many open connections from this address"}"#;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish for up to `limits.shutdown_deadline`, and closes the
/// connections still open. Each request carries the peer's address as
/// [`ConnectInfo<SocketAddr>`].
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(MAX_REQUEST_HEAD);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = limits
        .max_connections_per_address
        .map(AddressConnections::new);
    tokio::pin!(shutdown);
    loop {
        // A connection is accepted only with a slot free: at the cap, newcomers wait
        // in the backlog rather than take the file descriptors the service needs.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match &per_address {
            Some(addresses) => match addresses.admit(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse(&stream, peer);
                    continue;
                }
            },
            None => None,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            // Held until the connection ends.
            drop((permit, slot));
        });
        // Reap finished connections so the set does not grow with every client.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_deadline) => {
            tracing::warn!(
                deadline = ?limits.shutdown_deadline,
                open = connections.len(),
                "requests still in flight at the shutdown deadline; closing their connections"
            );
        }
    }
    connections.shutdown().await;
}

/// Answers a connection over its address's cap with 503 and closes it. The write does
/// not wait: a fresh connection's send buffer takes the few bytes, and a client that
/// does not read them loses nothing it could use.
fn refuse(stream: &TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "too many connections from this address; refused");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         x-content-type-options: nosniff\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{TOO_MANY_CONNECTIONS}",
        TOO_MANY_CONNECTIONS.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// The peer address of a request served by [`serve_http`], if it was.
pub fn peer_address<B>(request: &axum::http::Request<B>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{HttpLimits, serve_http};

    /// `GET path` on a connection of its own: what came back before the server closed
    /// it, or `None` when nothing closed it within 10 s (a connection left waiting for a
    /// slot that never frees).
    async fn exchange(server: SocketAddr, path: &str) -> Option<String> {
        let exchange = async {
            let mut stream = TcpStream::connect(server).await.ok()?;
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            // A reset (the panicking connection's) ends the exchange as a close does.
            let _ = stream.read_to_end(&mut answer).await;
            Some(String::from_utf8_lossy(&answer).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .ok()
            .flatten()
    }

    async fn panics() -> &'static str {
        panic!("a handler's bug")
    }

    /// Serves a router with `/ok` and `/panic` under `limits`: its address, what stops
    /// it, and its task.
    async fn serve_ok(
        limits: HttpLimits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/panic", get(panics))
            .route("/ok", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(serve_http(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (server, stop, serving)
    }

    /// A request head (request line and headers) over [`super::MAX_REQUEST_HEAD`] is
    /// 431 and its connection closed: each open connection would otherwise buffer up
    /// to hyper's default of about 400 KiB, 4 GiB over the default cap of 10,000
    /// connections. A head of a large cookie and a long token still passes.
    #[tokio::test]
    async fn a_request_head_over_its_limit_is_refused() {
        let (server, stop, serving) = serve_ok(HttpLimits {
            header_read: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(1),
            max_connections: 10,
            max_connections_per_address: None,
        })
        .await;
        let with_header = |bytes: usize| async move {
            let mut stream = TcpStream::connect(server).await.ok()?;
            let request = format!(
                "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: c={}\r\n\r\n",
                "a".repeat(bytes)
            );
            // The server may answer and close before it has read the whole head.
            let _ = stream.write_all(request.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            Some(String::from_utf8_lossy(&answer).into_owned())
        };
        let large = with_header(super::MAX_REQUEST_HEAD / 2).await;
        assert!(
            large
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "{large:?}"
        );
        let over = with_header(super::MAX_REQUEST_HEAD * 2).await;
        assert!(
            over.as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 431")),
            "{over:?}"
        );
        let _ = stop.send(());
        serving.await.expect("the server stops");
    }

    /// A request whose handler panics ends its connection, and the connection's slots
    /// (of the cap on all connections and of its address's cap, here both 1) are given
    /// back: a slot kept by a panic would lock every client out for good.
    #[tokio::test]
    async fn a_panicking_request_gives_its_connection_slots_back() {
        let (server, stop, serving) = serve_ok(HttpLimits {
            header_read: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(1),
            max_connections: 1,
            max_connections_per_address: Some(1),
        })
        .await;
        for attempt in 0..3 {
            let answer = exchange(server, "/panic").await;
            assert!(
                answer
                    .as_deref()
                    .is_some_and(|a| !a.starts_with("HTTP/1.1 503")),
                "panic {attempt}: {answer:?}"
            );
        }
        let answer = exchange(server, "/ok").await;
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "after the panics: {answer:?}"
        );
        let _ = stop.send(());
        serving.await.expect("the server stops");
    }
}
