//! The connection caps: one address cannot hold more connections than its cap, nor
//! lock others out under a low open-files limit.

use super::*;

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
