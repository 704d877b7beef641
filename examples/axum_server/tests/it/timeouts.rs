//! The connection limits against the service on a loopback port, on the embedded default
//! and on Redis + Kafka + PostgreSQL: a client that is slow to send its headers is cut
//! off, a request whose body does not arrive in time is answered 408, a route without
//! its credentials does not wait for the body, one address cannot hold more
//! connections than its cap, and a graceful shutdown does not wait past its deadline
//! for a client that never finishes; with the in-process queue, a graceful stop
//! persists every ticket it accepted.

use crate::support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod connections;
mod shutdown;

fn address(service: &support::Service) -> String {
    service.api.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection or `patience` runs out; what it sent.
async fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&received).into()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return None,
        }
    }
}

/// A connection to `server` from the loopback address `local` (every 127.x.y.z is this
/// machine on Linux: two of them are two client addresses).
async fn connect_from(local: [u8; 4], server: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::from(local), 0).into())?;
    socket
        .connect(server.parse().expect("a socket address"))
        .await
}

/// `GET /healthz` on a connection of its own from `local`: what the server sent before
/// it closed, or `None` when it did not within 5 s of the connect (a server out of file
/// descriptors leaves the connect itself waiting).
async fn healthz_from(local: [u8; 4], server: &str) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut stream = tokio::time::timeout_at(deadline, connect_from(local, server))
        .await
        .ok()?
        .ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    read_until_closed(&mut stream, deadline - tokio::time::Instant::now()).await
}

/// `limits` with the backends of a deployment: the embedded default on SQLite in memory
/// when `full_stack` is false, else Redis + Kafka + PostgreSQL.
async fn start(limits: &[&str], full_stack: bool) -> support::Service {
    let mut args: Vec<String> = limits.iter().map(|s| s.to_string()).collect();
    if full_stack {
        args.extend(support::shared_backend_args());
        args.extend([
            "--database-url".to_owned(),
            coupon_seaorm::testkit::fresh_postgres().await,
        ]);
    } else {
        args.extend(["--database-url".to_owned(), "sqlite::memory:".to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = support::Service::start(&args).await;
    // The listener is bound at once, but the service accepts only once its backends
    // answer (on the full stack, a few hundred ms): a stop before that has no request
    // in flight to wait for.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(
        service.api.call(Method::GET, "/healthz", None).await,
        Ok((StatusCode::OK, _))
    ) {
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_disconnected() {
    slow_headers(false).await;
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_disconnected_on_the_full_stack() {
    slow_headers(true).await;
}

async fn slow_headers(full_stack: bool) {
    let service = start(&["--header-read-timeout-ms", "300"], full_stack).await;
    let mut stream = TcpStream::connect(address(&service))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half the headers");
    let began = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server closes the connection");
    assert!(
        !answer.contains("200 OK"),
        "no answer to half a request: {answer}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_is_answered_408_in_time() {
    slow_body(false).await;
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_is_answered_408_in_time_on_the_full_stack() {
    slow_body(true).await;
}

async fn slow_body(full_stack: bool) {
    let service = start(&["--request-timeout-ms", "400"], full_stack).await;
    let mut stream = TcpStream::connect(address(&service))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /campaigns/1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"user_id\":",
        )
        .await
        .expect("a partial body");
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer and a close");
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "the client's fault, not ours: {answer}"
    );
    assert!(answer.contains("\"error\":\"timeout\""), "{answer}");
    service.stop().await;
}

/// The admin routes check the token, and the apply route the user's credentials, before
/// they read the body: a client without them hears 401 at once however slowly its body
/// comes, and cannot hold its connection for the request timeout (it used to, and then
/// heard 408).
#[tokio::test]
async fn a_route_refuses_missing_credentials_before_the_body_arrives() {
    let service = start(
        &["--identity", "header", "--request-timeout-ms", "60000"],
        false,
    )
    .await;
    for path in ["/campaigns", "/campaigns/1/apply"] {
        let mut stream = TcpStream::connect(address(&service))
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"name\":"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("a partial body");
        let answer = read_until_closed(&mut stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer long before the request timeout"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(
            answer.contains("\"error\":\"unauthorized\""),
            "{path}: {answer}"
        );
    }
    service.stop().await;
}
