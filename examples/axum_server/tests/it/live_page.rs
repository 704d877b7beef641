//! The console `GET /ui`, loaded in headless Chromium during a rush: the numbers it
//! shows are the API's, and it loads nothing from outside the service.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use support::{Rush, Service, TOKEN};

/// 30,000 applicants on cap 20,000 over 32 connections; the page is read while they
/// apply and again once every coupon is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_page_shows_what_the_api_says_during_a_rush() {
    let chromium = support::program("CHROMIUM", "chromium");
    let service = Service::start(&["--database-url", "sqlite::memory:"]).await;
    let campaign = service.api.create_campaign(20_000).await;
    let url = format!("{}/ui#token={TOKEN}", service.api.url);

    let rush = Rush::start(&service.api, campaign, 1..=30_000, 32);
    rush.wait_for(1_000).await;
    let before = counts(&service, campaign).await;
    let during = shown(&chromium, &url, campaign).await;
    let after = counts(&service, campaign).await;
    let still_running = rush.done.load(Ordering::Relaxed) < 30_000;
    for field in ["admitted", "issued"] {
        assert!(
            (before[field]..=after[field]).contains(&during[field]),
            "{field}: the page showed {} while the API said {} then {}",
            during[field],
            before[field],
            after[field]
        );
    }
    assert_eq!(during["cap"], 20_000);
    assert_eq!(during["remaining"], 20_000 - during["admitted"]);
    assert_eq!(during["waiting"], during["admitted"] - during["issued"]);
    assert!(
        still_running,
        "the page was read after the rush ended: make the rush longer"
    );

    rush.finish().await;
    service
        .api
        .wait_for_issued(campaign, 20_000, std::time::Duration::from_secs(60))
        .await;
    let settled = counts(&service, campaign).await;
    let shown_settled = shown(&chromium, &url, campaign).await;
    for (field, value) in &settled {
        assert_eq!(shown_settled[field], *value, "{field}");
    }
    assert_eq!(
        (shown_settled["admitted"], shown_settled["issued"]),
        (20_000, 20_000)
    );
    service.stop().await;
}

/// The page loads nothing from anywhere else and nothing inline: its script and style
/// are files of this service, and its policy forbids every other script, style, image
/// or font (an injected `<script>` would not run); it reads well on a phone's width.
#[tokio::test]
async fn the_live_page_is_self_contained_without_inline_script() {
    let service = Service::start(&["--database-url", "sqlite::memory:"]).await;
    let mut answers = Vec::new();
    let files: Vec<String> = firstcome_server::console::ASSETS
        .iter()
        .map(|(name, _, _)| format!("/ui/{name}"))
        .collect();
    for path in std::iter::once("/ui").chain(files.iter().map(String::as_str)) {
        let (status, headers, body) = service
            .api
            .request(Method::GET, path, None, &[])
            .await
            .expect("an answer");
        assert_eq!(status, StatusCode::OK, "{path}");
        let content_type = headers["content-type"].to_str().unwrap().to_owned();
        let policy = headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            policy,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        answers.push((content_type, body.as_str().expect("text").to_owned()));
    }
    let (status, _, missing) = service
        .api
        .request(Method::GET, "/ui/secrets.js", None, &[])
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    service.stop().await;
    let (html_type, html) = &answers[0];
    assert!(html_type.starts_with("text/html"), "{html_type}");
    for (outside, what) in [
        ("http://", "an address elsewhere"),
        ("https://", "an address elsewhere"),
        ("//cdn", "a CDN"),
        ("<style", "inline style"),
        (" style=", "inline style"),
        (" on", "an inline handler"),
    ] {
        assert!(
            !html.contains(outside),
            "the page holds {what}: {outside:?}"
        );
    }
    // One script, a module of its own, and one style sheet, both its own files.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script type="module" src="/ui/main.js"></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/ui/console.css">"#));
    assert!(html.contains(r#"name="viewport" content="width=device-width"#));
    for ((content_type, text), (name, _, _)) in
        answers[1..].iter().zip(firstcome_server::console::ASSETS)
    {
        let expected = if name.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(content_type.starts_with(expected), "{name}: {content_type}");
        // Scripts import only one another, by relative path; nothing is fetched from
        // elsewhere (the SVG namespace is a name, not a request).
        for line in text.lines().filter(|line| line.contains("http")) {
            assert!(
                line.contains("\"http://www.w3.org/2000/svg\""),
                "{name}: {line}"
            );
        }
    }
}

/// The campaign's counts as `GET /admin/campaigns` gives them, with `waiting` derived
/// as the page derives it.
async fn counts(service: &Service, campaign: u64) -> BTreeMap<String, u64> {
    let all = service.api.campaigns().await;
    let listed = all
        .iter()
        .find(|c| c["id"] == campaign)
        .unwrap_or_else(|| panic!("campaign {campaign} not listed: {all:?}"));
    let number = |field: &str| listed[field].as_u64().unwrap_or_else(|| panic!("{field}"));
    BTreeMap::from([
        ("cap".to_owned(), number("cap")),
        ("admitted".to_owned(), number("admitted")),
        ("issued".to_owned(), number("issued")),
        ("remaining".to_owned(), number("remaining")),
        ("waiting".to_owned(), number("admitted") - number("issued")),
    ])
}

/// What the page shows for `campaign` once its script has refreshed a few times, read
/// from the DOM headless Chromium renders: each `data-field` of the campaign's card.
async fn shown(chromium: &str, url: &str, campaign: u64) -> BTreeMap<String, u64> {
    let profile = std::env::temp_dir().join(format!(
        "firstcome-chromium-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=390,844",
            "--virtual-time-budget=2500",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{chromium} did not render the page within 60 s"))
        .unwrap_or_else(|e| panic!("run {chromium}: {e}"));
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout);
    let card = dom
        .split("<section")
        .find(|section| section.contains(&format!(r#"data-campaign="{campaign}""#)))
        .unwrap_or_else(|| {
            panic!(
                "no card of campaign {campaign} on the page:\n{dom}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let mut fields = BTreeMap::new();
    for tag in card.split("<dd ").skip(1) {
        let attribute = |name: &str| {
            let start = tag.find(&format!(r#"{name}=""#))? + name.len() + 2;
            let end = start + tag[start..].find('"')?;
            Some(tag[start..end].to_owned())
        };
        if let (Some(field), Some(value)) = (attribute("data-field"), attribute("data-value"))
            && let Ok(value) = value.parse::<u64>()
        {
            fields.insert(field, value);
        }
    }
    // The rates need two reads a second apart: after a few refreshes each is a number.
    for field in [
        "cap",
        "admitted",
        "issued",
        "remaining",
        "waiting",
        "admit_rate",
        "issue_rate",
    ] {
        assert!(fields.contains_key(field), "{field} not shown: {card}");
    }
    fields
}
