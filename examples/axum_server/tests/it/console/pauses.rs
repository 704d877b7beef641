//! The console's pause banner, on a real stall: what an operator reads when the worker
//! cannot issue.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, TransactionTrait};

use super::{PATIENCE, PHONE};
use crate::support::{Browser, Service, TOKEN};

/// On PostgreSQL, another session holds the campaign's row locked (a long transaction,
/// a migration): applicants are still admitted into the queue, but the worker cannot
/// issue. The console says so once the queue has not shrunk for five seconds while
/// tickets wait and the worker settles nothing, and the banner goes once the lock is
/// let go and the worker catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_says_when_issuing_stalls_while_tickets_wait() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let service = Service::start(&["--database-url", &database]).await;
    let campaign = service.api.create_campaign(10).await;
    let locker = Database::connect(&database)
        .await
        .expect("a second session");
    let lock = locker.begin().await.expect("BEGIN");
    lock.execute_unprepared(&format!(
        "SELECT id FROM campaign WHERE id = {campaign} FOR UPDATE"
    ))
    .await
    .expect("the campaign's row locked");
    for user in 1..=5 {
        let (status, body) = service.api.apply(campaign, user).await.expect("apply");
        assert_eq!(status.as_u16(), 202, "{body}");
    }

    let browser = Browser::start(PHONE.0, PHONE.1).await;
    browser
        .goto(&format!("{}/ui#token={TOKEN}", service.api.url))
        .await;
    let shown = browser
        .wait_for(
            "the worker's pause",
            "const item = document.querySelector('#pause [data-pause=worker]'); \
             return item && !document.getElementById('pause').hidden ? item.textContent : null",
            PATIENCE,
        )
        .await;
    let shown = shown.as_str().unwrap_or_default().to_owned();
    assert!(
        shown.contains("Issuing is stalled") && shown.contains("5 tickets wait"),
        "{shown}"
    );

    lock.rollback().await.expect("the lock let go");
    let issued = service
        .api
        .wait_for_issued(campaign, 5, Duration::from_secs(60))
        .await;
    assert_eq!(issued, 5);
    browser
        .wait_for(
            "the pause gone",
            "return document.querySelector('#pause [data-pause=worker]') === null",
            PATIENCE,
        )
        .await;
    browser.close().await;
    service.stop().await;
}
