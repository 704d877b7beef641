//! Test support: stores on each backend, each test in a database of its own.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use coupon_core::CouponStore;
use coupon_seaorm::{SeaOrmStore, SeaOrmStoreConfig};
use coupon_testkit::service_url;
use uuid::Uuid;

/// A store on a fresh in-memory SQLite database.
pub async fn sqlite_memory() -> SeaOrmStore {
    SeaOrmStore::connect(SeaOrmStoreConfig::new("sqlite::memory:"))
        .await
        .expect("in-memory SQLite")
}

/// A store on a fresh SQLite file under the temporary directory.
pub async fn sqlite_file() -> SeaOrmStore {
    SeaOrmStore::connect(SeaOrmStoreConfig::new(sqlite_file_url()))
        .await
        .expect("SQLite file")
}

/// The URL of a fresh SQLite file under the temporary directory.
pub fn sqlite_file_url() -> String {
    let path = std::env::temp_dir().join(format!("firstcome-{}.db", Uuid::new_v4().simple()));
    format!("sqlite://{}?mode=rwc", path.display())
}

/// What the durable-store scenarios open again and again: a store on `url`, connected
/// anew at each call (the same database, as after a restart).
pub type Opener = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn CouponStore>> + Send>>>;

/// Opens a store on `url` at each call.
pub fn reopens(url: String) -> Opener {
    Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
                .await
                .expect("opening the store again");
            Arc::new(store) as Arc<dyn CouponStore>
        })
    })
}

pub use coupon_seaorm::testkit::fresh_database;

/// A store on a fresh database of the harness PostgreSQL (`DATABASE_URL`).
pub async fn postgres() -> SeaOrmStore {
    let url = fresh_database(&service_url("DATABASE_URL")).await;
    SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
        .await
        .expect("PostgreSQL")
}

/// A store on a fresh database of the harness MariaDB/MySQL (`MYSQL_URL`).
pub async fn mysql() -> SeaOrmStore {
    let url = fresh_database(&service_url("MYSQL_URL")).await;
    SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
        .await
        .expect("MySQL/MariaDB")
}
