//! Databases of a test's own (feature `testkit`).

use coupon_testkit::service_url;
use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

/// Creates a database named `firstcome_<random>` on the server behind `url` and returns
/// `url` pointing at it (its query string, such as `?sslmode=...`, kept). Panics with the
/// server's answer when that fails.
pub async fn fresh_database(url: &str) -> String {
    let name = format!("firstcome_{}", Uuid::new_v4().simple());
    let admin = Database::connect(url)
        .await
        .expect("connect to the test server");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let base = path.rsplit_once('/').map_or(path, |(base, _)| base);
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// [`fresh_database`] on the harness PostgreSQL (`DATABASE_URL`).
pub async fn fresh_postgres() -> String {
    fresh_database(&service_url("DATABASE_URL")).await
}
