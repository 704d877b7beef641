//! A SQLite database file created private to its owner.

/// Creates the file a `sqlite:` URL with `mode=rwc` names, if it is missing, readable
/// and writable by this user only (0600 on Unix): it holds coupon codes, and SQLite
/// would create it with the umask's mode (0644 as a rule), readable by every user of
/// the machine. SQLite gives its journal, WAL and shared-memory files the database
/// file's mode. Any failure is left to the connection to report.
pub(super) fn create_sqlite_file_privately(url: &str) {
    #[cfg(unix)]
    if let Some(path) = sqlite_file_to_create(url) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = url;
}

/// The file a `sqlite:` URL asks SQLite to create (`mode=rwc`), if any.
pub(super) fn sqlite_file_to_create(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let creates = query.split('&').any(|pair| pair == "mode=rwc");
    (creates && !path.is_empty() && path != ":memory:").then(|| path.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SeaOrmStore, SeaOrmStoreConfig};
    use coupon_core::{CouponStore, NewCampaign};

    #[test]
    fn only_a_sqlite_file_to_create_is_created_first() {
        let file = |url| sqlite_file_to_create(url).map(|path| path.display().to_string());
        assert_eq!(
            file("sqlite://firstcome.db?mode=rwc").as_deref(),
            Some("firstcome.db")
        );
        assert_eq!(
            file("sqlite:///var/lib/x.db?mode=rwc").as_deref(),
            Some("/var/lib/x.db")
        );
        assert_eq!(
            file("sqlite:x.db?cache=shared&mode=rwc").as_deref(),
            Some("x.db")
        );
        assert_eq!(file("sqlite://firstcome.db"), None, "must exist already");
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u:p@h/db?mode=rwc"), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_sqlite_file_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("coupon-mode-{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = SeaOrmStore::connect(SeaOrmStoreConfig::new(url))
            .await
            .expect("a new file");
        store
            .create_campaign(NewCampaign::new("private", 1))
            .await
            .expect("a write");
        drop(store);
        let mode = std::fs::metadata(&path)
            .expect("the file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
