//! Keeping secrets out of logs and `Debug` output.

/// `url` with the credentials of `scheme://user:password@host` replaced by `***`; a
/// comma-separated list of URLs is redacted one by one.
///
/// ```
/// use coupon_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/coupons"), "postgres://***@db:5432/coupons");
/// assert_eq!(redact_url("redis://a:1,redis://:pw@b:2"), "redis://a:1,redis://***@b:2");
/// assert_eq!(redact_url("sqlite://firstcome.db"), "sqlite://firstcome.db");
/// ```
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &one[..scheme], &one[at + 1..])
            }
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}
