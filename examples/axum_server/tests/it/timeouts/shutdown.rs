//! A graceful shutdown: it does not wait past its deadline for a client that never
//! finishes, and with the in-process queue it persists every ticket it accepted.

use super::*;

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
