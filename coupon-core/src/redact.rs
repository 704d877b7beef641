//! Keeping secrets out of logs and `Debug` output.

/// `url` with its secrets replaced by `***`: the credentials of
/// `scheme://user:password@host`, and the value of a query parameter that names a
/// password (`?password=...`, `sslpassword=...`: PostgreSQL's URLs take them). A
/// comma-separated list of URLs is redacted one by one. When in doubt it hides more:
/// everything from a `scheme://` to the last `@` before the next `scheme://` counts as
/// credentials (a password may hold a comma).
///
/// ```
/// use coupon_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/coupons"), "postgres://***@db:5432/coupons");
/// assert_eq!(redact_url("redis://a:1,redis://:pw@b:2"), "redis://a:1,redis://***@b:2");
/// assert_eq!(redact_url("postgres://db/coupons?password=s3cret"), "postgres://db/coupons?password=***");
/// assert_eq!(redact_url("sqlite://firstcome.db"), "sqlite://firstcome.db");
/// ```
pub fn redact_url(url: &str) -> String {
    redact_query_passwords(&redact_credentials(url))
}

/// `url` with everything between each `://` and the last `@` before the next `://`
/// replaced by `***`.
fn redact_credentials(url: &str) -> String {
    let starts: Vec<usize> = url.match_indices("://").map(|(at, _)| at + 3).collect();
    let mut redacted = String::with_capacity(url.len());
    let mut copied = 0;
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(url.len());
        if let Some(at) = url[start..end].rfind('@') {
            redacted.push_str(&url[copied..start]);
            redacted.push_str("***");
            copied = start + at;
        }
    }
    redacted.push_str(&url[copied..]);
    redacted
}

/// `url` with the value of every query parameter whose name ends in `password` (any
/// case) replaced by `***`, up to the next `&` or `#`.
fn redact_query_passwords(url: &str) -> String {
    let mut redacted = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(separator) = rest.find(['?', '&']) {
        redacted.push_str(&rest[..=separator]);
        rest = &rest[separator + 1..];
        let Some((name, _)) = rest.split_once('=') else {
            break;
        };
        if name.contains(['?', '&', '#', '/']) {
            continue; // not a parameter name: the `=` belongs further on
        }
        if name.to_ascii_lowercase().ends_with("password") {
            let value_end = rest.find(['&', '#']).unwrap_or(rest.len());
            redacted.push_str(name);
            redacted.push_str("=***");
            rest = &rest[value_end..];
        }
    }
    redacted.push_str(rest);
    redacted
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_password_in_the_query_is_hidden() {
        // PostgreSQL's URLs take `password` (and `sslpassword`) as parameters too.
        assert_eq!(
            redact_url("postgres://db/coupons?user=app&password=s3cret&sslmode=require"),
            "postgres://db/coupons?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/coupons?sslpassword=s3cret"),
            "postgres://***@db/coupons?sslpassword=***"
        );
        assert_eq!(
            redact_url("redis://a:1/?Password=s3cret"),
            "redis://a:1/?Password=***"
        );
    }

    #[test]
    fn a_comma_in_a_password_does_not_split_it() {
        assert_eq!(
            redact_url("postgres://app:s3,cret@db/coupons"),
            "postgres://***@db/coupons"
        );
        assert_eq!(
            redact_url("redis://:p,w@a:1,redis://:p,w@b:2"),
            "redis://***@a:1,redis://***@b:2"
        );
        assert_eq!(
            redact_url("redis+sentinel://:pw@a:1,b:2/primary"),
            "redis+sentinel://***@a:1,b:2/primary"
        );
    }

    #[test]
    fn a_url_without_secrets_is_unchanged() {
        for url in [
            "sqlite://firstcome.db?mode=rwc",
            "sqlite::memory:",
            "redis://a:1,redis://b:2",
            "host-a:9092,host-b:9092",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
