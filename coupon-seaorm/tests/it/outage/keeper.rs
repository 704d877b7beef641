//! The lease's keeper: a holder that can no longer hear its database stops admitting,
//! a holder shutting down keeps the lease until what it admitted is handed off, and a
//! lease that can never be held is an error at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_core::memory::MemoryCounter;
use coupon_seaorm::CounterLease;
use coupon_testkit::proxy::{FaultProxy, ProxyMode};
use coupon_testkit::service_url;

use crate::support::fresh_database;

/// A SQLite database file of its own for one test.
fn sqlite_file(name: &str) -> std::path::PathBuf {
    let directory = std::env::temp_dir().join(format!("keeper-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("a directory");
    let file = directory.join("store.db");
    std::fs::write(&file, b"").expect("the database file");
    file
}

fn sqlite_url(file: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", file.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_holder_stops_admitting_and_another_takes_over() {
    let url = fresh_database(&service_url("DATABASE_URL")).await;
    let (proxy, through_proxy) = FaultProxy::in_front_of(&url).await;
    let counter = Arc::new(MemoryCounter::suspended());
    let (held, _keeper) = CounterLease::new(&through_proxy)
        .keep(counter.clone())
        .await
        .expect("the lease");
    assert!(held && !counter.is_suspended(), "the holder admits");

    // A partition: the holder's checks go unanswered, its session sits idle in its
    // transaction until PostgreSQL ends it (and the lease).
    proxy.set(ProxyMode::Blackhole);
    let began = Instant::now();
    let mut other = CounterLease::new(&url);
    let (mut stopped, mut took_over) = (None, None);
    while began.elapsed() < Duration::from_secs(40) && (stopped.is_none() || took_over.is_none()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if stopped.is_none() && counter.is_suspended() {
            stopped = Some(began.elapsed());
        }
        if took_over.is_none() && other.try_acquire().await.unwrap_or(false) {
            took_over = Some(began.elapsed());
        }
    }
    let stopped = stopped.expect("the partitioned holder must stop admitting on its own");
    let took_over = took_over.expect("the database ends the silent session: another takes over");
    // Both within the 15 s the database waits for a silent holder, plus the checks.
    assert!(
        stopped < Duration::from_secs(25),
        "stopped after {stopped:?}"
    );
    assert!(
        took_over < Duration::from_secs(25),
        "took over after {took_over:?}"
    );
}

#[tokio::test]
async fn a_holder_stopping_keeps_the_lease_until_it_releases_it() {
    let url = sqlite_url(&sqlite_file("stopping"));
    let counter = Arc::new(MemoryCounter::suspended());
    let (held, mut keeper) = CounterLease::new(&url)
        .keep(counter.clone())
        .await
        .expect("the lease");
    assert!(held && !counter.is_suspended());

    keeper.stop_admitting().await;
    assert!(counter.is_suspended(), "admits no one from now on");
    let mut next = CounterLease::new(&url);
    assert!(
        !next.try_acquire().await.expect("ask"),
        "still held while the stopping process hands off what it admitted"
    );
    keeper.release().await;
    assert!(next.try_acquire().await.expect("ask"), "free once released");
}

#[tokio::test]
async fn dropping_the_keeper_stops_the_counter() {
    let url = sqlite_url(&sqlite_file("dropped"));
    let counter = Arc::new(MemoryCounter::suspended());
    let (held, keeper) = CounterLease::new(&url)
        .keep(counter.clone())
        .await
        .expect("the lease");
    assert!(held && !counter.is_suspended());
    drop(keeper);
    assert!(
        counter.is_suspended(),
        "nobody checks the lease any more: the counter must not admit"
    );
}

#[tokio::test]
async fn two_names_of_one_sqlite_file_share_one_lease() {
    let file = sqlite_file("linked");
    let link = file.with_file_name("link.db");
    std::os::unix::fs::symlink(&file, &link).expect("a link");
    let mut by_name = CounterLease::new(sqlite_url(&file));
    let mut by_link = CounterLease::new(sqlite_url(&link));
    assert!(by_name.try_acquire().await.expect("by name"));
    assert!(
        !by_link.try_acquire().await.expect("by link"),
        "the same database reached through a link is the same lease"
    );
}

#[tokio::test]
async fn a_lease_that_can_never_be_held_is_an_error_at_once() {
    let url = "sqlite:///no-such-directory-for-firstcome/store.db?mode=rwc";
    let counter = Arc::new(MemoryCounter::suspended());
    let error = CounterLease::new(url)
        .keep(counter.clone())
        .await
        .expect_err("no lease file can be made there");
    assert!(!error.is_retryable(), "{error}");
    assert!(
        error.to_string().contains("-lease"),
        "names the file: {error}"
    );
    assert!(counter.is_suspended());
}
