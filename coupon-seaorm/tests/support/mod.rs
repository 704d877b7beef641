//! Test support: stores on each backend, each test in a database of its own.
#![allow(dead_code, unreachable_pub)]

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
    let path = std::env::temp_dir().join(format!("firstcome-{}.db", Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
        .await
        .expect("SQLite file")
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
