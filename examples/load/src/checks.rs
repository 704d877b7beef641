//! The checks after a run: issued, the holders, and nobody holding two.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};

use crate::LoadArgs;
use crate::client::{HttpClient, call};

/// Waits for the worker to drain, then reads issued, the holders among `applied`
/// (`verify_concurrency` at once, as the admin: that reads anyone's coupon in every
/// identity mode), and whether nobody holds two.
pub(crate) async fn verify(
    client: &HttpClient,
    base: &str,
    campaign: u64,
    expected: u64,
    applied: &HashSet<u64>,
    args: &LoadArgs,
) -> Result<(u64, HashSet<u64>, bool), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let issued = loop {
        let (_, body) = call(
            client,
            Method::GET,
            &format!("{base}/campaigns/{campaign}"),
            None,
            None,
        )
        .await?;
        let issued = body["issued"].as_u64().unwrap_or(0);
        if issued >= expected || Instant::now() > deadline {
            break issued;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut holders = HashSet::new();
    let mut single = true;
    let users: Vec<u64> = applied.iter().copied().collect();
    let chunk = users.len().div_ceil(args.verify_concurrency.max(1)).max(1);
    let mut checks = tokio::task::JoinSet::new();
    for part in users.chunks(chunk) {
        let (part, client) = (part.to_vec(), client.clone());
        let (base, admin) = (base.to_owned(), args.admin_token.clone());
        checks.spawn(async move {
            let mut found = Vec::new();
            for user in part {
                let url = format!("{base}/campaigns/{campaign}/coupons/{user}");
                let (status, body) = call(&client, Method::GET, &url, Some(&admin), None).await?;
                match status {
                    StatusCode::OK => found.push((user, body["coupons"].as_u64() == Some(1))),
                    StatusCode::ACCEPTED | StatusCode::NOT_FOUND => {}
                    other => return Err(format!("coupon of user {user}: {other} {body}")),
                }
            }
            Ok::<_, String>(found)
        });
    }
    while let Some(joined) = checks.join_next().await {
        for (user, one) in joined.map_err(|e| e.to_string())?? {
            holders.insert(user);
            single &= one;
        }
    }
    if let Some(url) = &args.database_url {
        let db = sea_orm::Database::connect(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        use sea_orm::ConnectionTrait;
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT user_id FROM coupon WHERE campaign_id = {campaign} \
             GROUP BY user_id HAVING COUNT(*) > 1) AS doubles"
        );
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no row")?;
        let doubles: i64 = row.try_get_by_index(0).map_err(|e| e.to_string())?;
        println!("database: {doubles} users hold two or more coupons");
        single &= doubles == 0;
    }
    Ok((issued, holders, single))
}
