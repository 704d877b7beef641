//! The connection limits against the service on a loopback port, on the embedded default
//! and on Redis + Kafka + PostgreSQL: a client that is slow to send its headers is cut
//! off, a request whose body does not arrive in time is answered 408, a route without
//! its credentials does not wait for the body, one address cannot hold more
//! connections than its cap, and a graceful shutdown does not wait past its deadline
//! for a client that never finishes; with the in-process queue, a graceful stop
//! persists every ticket it accepted.

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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

/// An address at its cap of open connections is answered 503 and closed at once on the
/// next one, while another address still gets in; once one of its connections
/// closes, it may open another.
#[tokio::test]
async fn an_address_over_its_connection_cap_is_refused_and_another_still_gets_in() {
    let service = start(
        &[
            "--identity",
            "header",
            "--max-connections-per-address",
            "8",
            "--header-read-timeout-ms",
            "60000",
        ],
        false,
    )
    .await;
    let server = address(&service);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            connect_from([127, 0, 0, 2], &server)
                .await
                .expect("connect"),
        );
    }
    let mut extra = connect_from([127, 0, 0, 2], &server)
        .await
        .expect("connect");
    let refused = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("answered and closed at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains(r#"{"error":"too_many_connections","#),
        "{refused}"
    );
    let answer = healthz_from([127, 0, 0, 1], &server).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "another address: {answer:?}"
    );
    // The server frees the slot once it sees the close: try until it has.
    drop(held.pop());
    let mut answer = None;
    for _ in 0..50 {
        answer = healthz_from([127, 0, 0, 2], &server).await;
        if answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "a freed slot: {answer:?}"
    );
    drop(held);
    service.stop().await;
}

/// Issue 29's reproduction: with `ulimit -n 256`, 400 idle connections from one address
/// made `/healthz` from another time out on 4 of 7 tries (the server out of file
/// descriptors until the header timeout closed them). Here they are held for 30 s; with
/// the default caps (lowered to the open-files limit) every try answers.
#[tokio::test]
async fn idle_connections_from_one_address_under_a_low_open_files_limit_lock_nobody_out() {
    let port = support::free_port();
    let process = support::Process::start_with_open_files(
        port,
        &[],
        &[
            ("IDENTITY", "header"),
            ("DATABASE_URL", "sqlite::memory:"),
            ("HEADER_READ_TIMEOUT_MS", "30000"),
        ],
        256,
    )
    .await;
    let server = format!("127.0.0.1:{port}");
    // All at once, each given up after a second: a server out of file descriptors
    // stops accepting, and connects queue up behind the backlog it does not drain.
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..400 {
        let server = server.clone();
        connecting.spawn(async move {
            let connect = connect_from([127, 0, 0, 2], &server);
            tokio::time::timeout(Duration::from_secs(1), connect).await
        });
    }
    let mut idle = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        if let Ok(Ok(stream)) = joined.expect("connect task") {
            idle.push(stream);
        }
    }
    for attempt in 1..=7 {
        let answer = healthz_from([127, 0, 0, 1], &server).await;
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "try {attempt}: {answer:?}"
        );
    }
    drop(idle);
    drop(process);
}

#[tokio::test]
async fn a_graceful_shutdown_stops_waiting_for_a_stuck_client_at_its_deadline() {
    stuck_client_at_shutdown(false).await;
}

#[tokio::test]
async fn a_graceful_shutdown_stops_waiting_for_a_stuck_client_at_its_deadline_on_the_full_stack() {
    stuck_client_at_shutdown(true).await;
}

async fn stuck_client_at_shutdown(full_stack: bool) {
    let service = start(
        &[
            "--shutdown-deadline-ms",
            "500",
            "--request-timeout-ms",
            "60000",
        ],
        full_stack,
    )
    .await;
    let mut stream = TcpStream::connect(address(&service))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /campaigns/1/apply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .expect("a request in flight");
    // Let the server take the request in before the stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    let stopped = service.begin_stop();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the service stops by its deadline")
        .expect("service task")
        .expect("a clean stop");
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "it waited for the request: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(stream);
}

/// `--queue memory` keeps accepted tickets only in the process: a graceful stop must
/// drain them into the store before it exits. A worker taking one ticket per
/// transaction lags the applies, so tickets are still queued when the stop begins;
/// every applicant told yes holds a coupon in the SQLite file afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_drains_the_in_process_queue_into_the_store() {
    use coupon_core::{CampaignId, CouponStore};

    let file = std::env::temp_dir().join(format!(
        "firstcome-drain-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let database = format!("sqlite://{}?mode=rwc", file.display());
    let service = support::Service::start(&[
        "--queue",
        "memory",
        "--worker-batch-size",
        "1",
        "--database-url",
        &database,
    ])
    .await;
    let campaign = service.api.create_campaign(1_500).await;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..32u64 {
        let api = service.api.clone();
        tasks.spawn(async move {
            let mut accepted = 0u64;
            for user in (chunk * 50 + 1)..=(chunk * 50 + 50) {
                let (status, body) = api.apply(campaign, user).await.expect("an answer");
                match status {
                    StatusCode::ACCEPTED => accepted += 1,
                    StatusCode::CONFLICT => {}
                    other => panic!("{other}: {body}"),
                }
            }
            accepted
        });
    }
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        accepted += joined.expect("applicant task");
    }
    let (_, status) = service
        .api
        .call(Method::GET, &format!("/campaigns/{campaign}"), None)
        .await
        .expect("status");
    let issued_at_stop = status["issued"].as_u64().expect("issued");
    eprintln!("accepted {accepted}, issued when the stop began {issued_at_stop}");
    service.stop().await;

    let store = coupon_seaorm::SeaOrmStore::connect(coupon_seaorm::SeaOrmStoreConfig::new(
        database.clone(),
    ))
    .await
    .expect("the service's SQLite file");
    let issued = store
        .issued_count(CampaignId(campaign))
        .await
        .expect("issued");
    assert_eq!(accepted, 1_500, "every slot was taken");
    assert_eq!(issued, accepted, "every applicant told yes holds a coupon");
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
