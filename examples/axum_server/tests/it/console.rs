//! The console (`GET /ui`) driven in headless Chromium through WebDriver, as an operator
//! would use it on a phone: every action goes through the API and the API agrees.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use coupon_core::{CampaignId, FailureLedger, IssueFailure, IssueTicket, UserId};
use serde_json::{Value, json};
use support::{Browser, Rush, Service, TOKEN};

mod pauses;
mod sign_in;

/// A phone's viewport.
const PHONE: (u32, u32) = (390, 844);
const PATIENCE: Duration = Duration::from_secs(30);

/// Where the tests write what they saw (the screenshot): `target/tmp/console`.
fn output_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")
}

/// On PostgreSQL: a bad definition typed in the form shows the API's own message next
/// to its field and creates nothing; a good one creates the campaign; a rush through the
/// API moves its numbers and charts; its Close button (after the confirmation) closes
/// it for the API; a dead letter made on purpose is replayed with its button. A
/// screenshot of the console after the rush is written to `target/tmp/console/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_creates_watches_closes_and_replays_through_the_api() {
    let database = coupon_seaorm::testkit::fresh_postgres().await;
    let service = Service::start(&["--database-url", &database]).await;
    let browser = Browser::start(PHONE.0, PHONE.1).await;
    browser
        .goto(&format!("{}/ui#token={TOKEN}", service.api.url))
        .await;
    browser
        .wait_for(
            "the console after signing in",
            "return !document.getElementById('console').hidden",
            PATIENCE,
        )
        .await;

    // A cap of 0: the API's message, under the cap field; no campaign.
    browser.click("#show-create").await;
    browser
        .type_into("#create [name=name]", "console drop")
        .await;
    browser.type_into("#create [name=cap]", "0").await;
    browser.click("#create button:not([type])").await;
    let shown = browser
        .wait_for(
            "the cap's error",
            "return document.querySelector('[data-error-for=cap]').textContent || null",
            PATIENCE,
        )
        .await;
    let (status, refused) = service
        .api
        .call(
            Method::POST,
            "/campaigns",
            Some(json!({ "name": "console drop", "cap": 0 })),
        )
        .await
        .expect("the API");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        shown, refused["message"],
        "the page shows the API's message"
    );
    assert_eq!(
        service.api.campaigns().await,
        Vec::<Value>::new(),
        "nothing created"
    );

    // Text where a number goes: the API's message too.
    browser.type_into("#create [name=cap]", "ten").await;
    browser.click("#create button:not([type])").await;
    browser
        .wait_for(
            "the API's word on a cap that is not a number",
            "return document.querySelector('[data-error-for=cap]').textContent.includes('invalid type')",
            PATIENCE,
        )
        .await;
    assert_eq!(
        service.api.campaigns().await,
        Vec::<Value>::new(),
        "nothing created"
    );

    browser.type_into("#create [name=cap]", "2000").await;
    browser
        .type_into("#create [name=per_user_limit]", "1")
        .await;
    // Split over 4 shards (the embedded counter runs them): the rush below must still
    // end with exactly the cap.
    browser.type_into("#create [name=shards]", "4").await;
    browser.click("#create button:not([type])").await;
    let card = browser
        .wait_for(
            "the new campaign's card",
            "return document.querySelector('[data-campaign]')?.dataset.campaign ?? null",
            PATIENCE,
        )
        .await;
    let listed = service.api.campaigns().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            &listed[0]["name"],
            &listed[0]["cap"],
            &listed[0]["shards"],
            &listed[0]["state"]
        ),
        (
            &json!("console drop"),
            &json!(2000),
            &json!(4),
            &json!("open")
        )
    );
    let campaign = listed[0]["id"].as_u64().expect("an id");
    assert_eq!(card, json!(campaign.to_string()));

    // A rush through the API: 3,000 applicants for 2,000 coupons.
    let rush = Rush::start(&service.api, campaign, 1..=3_000, 16);
    let heard = rush.finish().await;
    assert_eq!(heard.told_yes().len(), 2_000);
    service
        .api
        .wait_for_issued(campaign, 2_000, Duration::from_secs(60))
        .await;
    let field = |name: &str| {
        format!(
            "return document.querySelector('[data-campaign=\"{campaign}\"] [data-field={name}]').dataset.value"
        )
    };
    let issued = field("issued");
    browser
        .wait_for(
            "every coupon issued on the card",
            &format!("{issued} === '2000' || null"),
            PATIENCE,
        )
        .await;
    assert_eq!(browser.run(&field("admitted"), json!([])).await, "2000");
    assert_eq!(browser.run(&field("shards"), json!([])).await, "4");
    assert_eq!(browser.run(&field("remaining"), json!([])).await, "0");
    // The charts moved: each drew its points, and the rush's peak is in them.
    for chart in ["admit_rate", "issue_rate"] {
        let top = browser
            .run(
                &format!("return document.querySelector('[data-campaign=\"{campaign}\"] [data-chart={chart}]').dataset.top"),
                json!([]),
            )
            .await;
        let top: f64 = top.as_str().and_then(|t| t.parse().ok()).unwrap_or(0.0);
        assert!(top > 0.0, "{chart} drew no rush: its top is {top}");
    }
    let applies = browser
        .run(
            "return document.querySelector('[data-chart=apply_rate]').dataset.top",
            json!([]),
        )
        .await;
    assert!(
        applies.as_str().and_then(|t| t.parse::<f64>().ok()) > Some(0.0),
        "applies/s drew no rush: {applies}"
    );
    // A phone's width holds it all: nothing to scroll sideways.
    let overflow = browser
        .run(
            "return document.documentElement.scrollWidth - window.innerWidth",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64() <= Some(0),
        "wider than the phone by {overflow}"
    );
    let screenshot = output_folder().join("after-rush-phone.png");
    browser.screenshot(&screenshot).await;
    println!("screenshot: {}", screenshot.display());
    // The one in docs/ (README shows it) is this, on a laptop's width.
    browser.resize(1280, 1100).await;
    let screenshot = output_folder().join("after-rush.png");
    browser.screenshot(&screenshot).await;
    println!("screenshot: {}", screenshot.display());
    browser.resize(PHONE.0, PHONE.1).await;

    // Close, confirmed: the API says closed and refuses applicants.
    let on_card = |css: &str| format!("[data-campaign=\"{campaign}\"] {css}");
    browser.click(&on_card("[data-action=close]")).await;
    let question = browser
        .run(
            &format!(
                "return document.querySelector('{}').textContent",
                on_card(".confirm p")
            ),
            json!([]),
        )
        .await;
    assert!(
        question.as_str().is_some_and(|q| q.contains("Close")),
        "{question}"
    );
    assert_eq!(
        service.api.campaign_state(campaign).await,
        "sold_out",
        "nothing before the confirmation"
    );
    browser.click(&on_card("[data-action=confirm]")).await;
    browser
        .wait_for(
            "the card's closed state",
            &format!(
                "return document.querySelector('{}').textContent === 'closed'",
                on_card(".state")
            ),
            PATIENCE,
        )
        .await;
    assert_eq!(service.api.campaign_state(campaign).await, "closed");
    let result = |css: String| format!("return document.querySelector('{css}').textContent");
    let said = browser.run(&result(on_card(".result")), json!([])).await;
    assert!(
        said.as_str().is_some_and(|s| s.starts_with("Closed")),
        "{said}"
    );
    let (status, body) = service.api.apply(campaign, 9_999).await.expect("apply");
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("closed"))
    );

    // Reopen, confirmed: the API no longer says closed (sold out: every coupon is out).
    browser.click(&on_card("[data-action=reopen]")).await;
    browser.click(&on_card("[data-action=confirm]")).await;
    browser
        .wait_for(
            "the card's reopened state",
            &format!(
                "return document.querySelector('{}').textContent === 'sold out'",
                on_card(".state")
            ),
            PATIENCE,
        )
        .await;
    assert_eq!(service.api.campaign_state(campaign).await, "sold_out");
    let said = browser.run(&result(on_card(".result")), json!([])).await;
    assert!(
        said.as_str().is_some_and(|s| s.starts_with("Reopened")),
        "{said}"
    );

    // Settle now, on the card: the settler's report for it.
    browser.click(&on_card("[data-action=settle]")).await;
    let settled = browser
        .wait_for(
            "the card's settlement report",
            &format!("return document.querySelector('{}').textContent.startsWith('Settled:') && document.querySelector('{}').textContent", on_card(".result"), on_card(".result")),
            PATIENCE,
        )
        .await;
    assert!(
        settled
            .as_str()
            .is_some_and(|s| s.contains("0 admissions without a coupon")),
        "every admission has its coupon: {settled}"
    );

    // A dead letter made on purpose, of a campaign with room for it: listed with its
    // error, replayed by its button.
    let target = service.api.create_campaign(10).await;
    let store =
        coupon_seaorm::SeaOrmStore::connect(coupon_seaorm::SeaOrmStoreConfig::new(&database))
            .await
            .expect("store");
    let ticket = IssueTicket::new(CampaignId(target), UserId(70_001), 1, 1);
    store
        .record_failure(&IssueFailure::new(
            ticket.clone(),
            "refused on purpose by the test",
            3,
        ))
        .await
        .expect("a dead letter");
    let item = format!("[data-ticket=\"{}\"]", ticket.ticket_id);
    browser
        .wait_for(
            "the dead letter",
            &format!("return document.querySelector('{item}')?.textContent.includes('refused on purpose by the test') || null"),
            PATIENCE,
        )
        .await;
    browser.click(&format!("{item} [data-action=replay]")).await;
    browser
        .wait_for(
            "the dead letter replayed",
            &format!("return document.querySelector('{item} .result')?.textContent.startsWith('Replayed') || null"),
            PATIENCE,
        )
        .await;
    // The replayed ticket became its coupon, and no dead letter waits any more.
    let coupon = format!("/campaigns/{target}/coupons/70001");
    let deadline = std::time::Instant::now() + PATIENCE;
    let body = loop {
        let (status, body) = service
            .api
            .call(Method::GET, &coupon, None)
            .await
            .expect("coupon route");
        if status == StatusCode::OK {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no coupon after the replay: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (&body["user_id"], &body["rank"]),
        (&json!(70_001), &json!(1)),
        "{body}"
    );
    let (status, body) = service
        .api
        .call(
            Method::GET,
            &format!("/admin/dead-letters?campaign={target}"),
            None,
        )
        .await
        .expect("dead letters");
    assert_eq!(status, StatusCode::OK, "{body}");
    let waiting: Vec<&Value> = body["dead_letters"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|letter| letter["replayed_at"].is_null())
        .collect();
    assert!(
        waiting.is_empty(),
        "still waiting for a replay: {waiting:?}"
    );

    browser.close().await;
    service.stop().await;
}
