//! The file store against the conformance suites: every store scenario on a fresh file,
//! and the reopen scenario (write, drop, open the same file again, read back).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use coupon_core::CouponStore;
use file_store::FileStore;

/// A path no other test uses, under the temporary directory.
fn fresh_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "file-store-{}.jsonl",
        uuid::Uuid::new_v4().simple()
    ))
}

fn open(path: &PathBuf) -> Arc<dyn CouponStore> {
    Arc::new(FileStore::open(path).expect("opening the file store"))
}

/// Opens the store on one file at each call.
fn reopens(
    path: PathBuf,
) -> impl Fn() -> Pin<Box<dyn Future<Output = Arc<dyn CouponStore>> + Send>> {
    move || {
        let store = open(&path);
        Box::pin(async move { store })
    }
}

coupon_testkit::store_scenarios!(store_suite, open(&fresh_path()));
coupon_testkit::durable_store_scenarios!(reopen_suite, reopens(fresh_path()));

#[test]
fn a_torn_last_line_is_dropped_and_the_file_stays_appendable() {
    use std::io::Write;
    let path = fresh_path();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let campaign = runtime.block_on(async {
        let store = FileStore::open(&path).expect("open");
        store
            .create_campaign(coupon_core::NewCampaign::new("torn", 5))
            .await
            .expect("create")
    });
    // A crash mid-append: half a line, never acknowledged.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    file.write_all(br#"{"event":"created","campa"#)
        .expect("write");
    drop(file);
    runtime.block_on(async {
        let store = FileStore::open(&path).expect("a torn last line is not corruption");
        assert_eq!(
            store.campaign(campaign.id).await.expect("campaign"),
            campaign
        );
        let next = store
            .create_campaign(coupon_core::NewCampaign::new("after", 5))
            .await
            .expect("create");
        drop(store);
        let store = FileStore::open(&path).expect("reopen");
        assert_eq!(store.campaign(next.id).await.expect("campaign"), next);
    });
    std::fs::remove_file(&path).ok();
}
