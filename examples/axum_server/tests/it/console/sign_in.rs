//! The console without the right token: the sign-in and nothing else.

use std::time::Duration;

use serde_json::json;

use super::{PATIENCE, PHONE};
use crate::support::{Browser, Service, TOKEN};

/// Without a token, and with a wrong one, the page shows the sign-in and nothing else:
/// no campaign, no button, no number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_only_the_sign_in_without_the_right_token() {
    let service = Service::start(&["--database-url", "sqlite::memory:"]).await;
    let campaign = service.api.create_campaign(10).await;
    let browser = Browser::start(PHONE.0, PHONE.1).await;
    for (fragment, why) in [
        ("", "needs the admin token"),
        ("#token=wrong-token", "refused"),
    ] {
        // A page loaded anew each time, not a fragment changed on the same page.
        browser.goto("about:blank").await;
        browser
            .goto(&format!("{}/ui{fragment}", service.api.url))
            .await;
        browser
            .wait_for(
                "the sign-in and why",
                &format!("return !document.getElementById('login').hidden && document.getElementById('login-why').textContent.includes('{why}')"),
                PATIENCE,
            )
            .await;
        signed_out(&browser, fragment, campaign).await;
    }
    // Signed in through the form, then out: the figures go with the console.
    browser.type_into("#token", TOKEN).await;
    browser.click("#login button").await;
    browser
        .wait_for(
            "the console",
            &format!("return document.querySelector('[data-campaign=\"{campaign}\"]') !== null"),
            PATIENCE,
        )
        .await;
    browser.click("#sign-out").await;
    signed_out(&browser, "after signing out", campaign).await;
    browser.close().await;
    service.stop().await;
}

/// The page shows the sign-in and nothing else: no campaign, no figure, no button but
/// the sign-in's, now and after the next refresh would have come.
async fn signed_out(browser: &Browser, case: &str, campaign: u64) {
    for _ in 0..2 {
        let seen = browser
            .run(
                "return { console: document.getElementById('console').hidden, \
                 figures: document.getElementById('service-figures').hidden, \
                 cards: document.querySelectorAll('[data-campaign]').length, \
                 buttons: [...document.querySelectorAll('button')].filter(b => b.offsetParent).map(b => b.textContent) }",
                json!([]),
            )
            .await;
        assert_eq!(
            seen,
            json!({ "console": true, "figures": true, "cards": 0, "buttons": ["Sign in"] }),
            "{case}"
        );
        let text = browser.text().await;
        assert!(!text.contains(&format!("#{campaign}")), "{case}: {text}");
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }
}
