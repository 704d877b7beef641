//! Bearer tokens for the run's users, signed as a client holding the service's HS256
//! secret would sign them (the service's default JWT rules: no issuer, no audience).
//! The load tool mints them itself rather than through the service's crate, so that
//! it builds without the service and its backends.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// How long each token is valid: a day outlives any run.
const TOKEN_LIFETIME_SECS: u64 = 86_400;

/// The claims the service reads: the user id as `sub`, and an expiry.
#[derive(Serialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// One HS256 token per user, user `n` at index `n - 1`, valid for a day.
pub(crate) fn mint_hs256_per_user(secret: &[u8], users: u64) -> Result<Vec<String>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|error| error.to_string())?
        .as_secs();
    let key = EncodingKey::from_secret(secret);
    let header = Header::new(Algorithm::HS256);
    (1..=users)
        .map(|user| {
            let claims = Claims {
                sub: user.to_string(),
                exp: now + TOKEN_LIFETIME_SECS,
            };
            jsonwebtoken::encode(&header, &claims, &key)
                .map_err(|error| format!("signing the token of user {user}: {error}"))
        })
        .collect()
}
