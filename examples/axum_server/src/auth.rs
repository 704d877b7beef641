//! Who is calling: the user an apply or a coupon read acts for, taken from the request's
//! credentials (a JWT bearer token, or a header a trusted gateway sets), or from the
//! body in the explicit trusted-clients mode; and whether the caller holds the admin
//! token.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use coupon_core::UserId;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// How the service learns which user a request acts for.
pub enum Identity {
    /// The `sub` claim of a verified JWT in `Authorization: Bearer <token>`.
    Jwt(JwtVerifier),
    /// A header a gateway in front of the service sets after authenticating the user
    /// (the operator enables this only where clients cannot reach the service directly).
    Header(HeaderName),
    /// The `user_id` of the request body, unchecked: for demos and load tests, where
    /// every client is trusted. Never expose a service in this mode.
    TrustedClients,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwt(verifier) => write!(f, "JWT ({:?})", verifier.algorithms()),
            Self::Header(name) => write!(f, "header {name}"),
            Self::TrustedClients => f.write_str("trusted clients (user_id from the body)"),
        }
    }
}

/// Who made a request, as far as the user routes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An authenticated user.
    User(UserId),
    /// A trusted client (the trusted-clients mode): it names the user itself.
    Trusted,
}

impl Identity {
    /// The caller of a request with `headers`: a user, or a trusted client. A request
    /// without valid credentials is a 401 answer.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        match self {
            Self::TrustedClients => Ok(Caller::Trusted),
            Self::Header(name) => {
                // Exactly one: a gateway that added its header beside the client's own
                // would otherwise let the client's (the first) speak.
                let mut values = headers.get_all(name).iter();
                let (Some(value), None) = (values.next(), values.next()) else {
                    return Err(unauthorized(format!(
                        "the {name} header must be present exactly once"
                    )));
                };
                let user = value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .ok_or_else(|| unauthorized(format!("{name} is not a user id")))?;
                Ok(Caller::User(UserId(user)))
            }
            Self::Jwt(verifier) => {
                let token = bearer(headers).ok_or_else(|| {
                    unauthorized("this route needs Authorization: Bearer <token>")
                })?;
                verifier.user(token).map(Caller::User)
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether `headers` carry `Authorization: Bearer <admin_token>`.
pub fn is_admin(headers: &HeaderMap, admin_token: &str) -> bool {
    bears(headers, admin_token)
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub fn bears(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = bearer(headers) else {
        return false;
    };
    // Compare every byte whatever the first mismatch, so timing reveals nothing.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// A 401 answer saying what is wrong with the credentials.
pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The claim the service reads; `exp`, `nbf`, `iss` and `aud` (a string or a list)
/// are checked by the verifier's validation before it is looked at.
#[derive(Debug, Deserialize)]
struct Subject {
    sub: String,
    exp: u64,
}

/// The claims [`mint_hs256`] signs.
#[derive(Debug, Serialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issuer, when the service requires one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when the service requires one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What a JWT must satisfy besides its signature.
#[derive(Debug, Clone, Default)]
pub struct JwtRules {
    /// The `iss` every token must carry, if set.
    pub issuer: Option<String>,
    /// The `aud` every token must carry, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The longest a token may still live (its `exp` at most this far from now, plus
    /// the leeway), if limited: a stolen token that never expires is a key for good.
    pub max_lifetime_secs: Option<u64>,
}

/// Verifies JWTs against one key (a shared secret or a public key) or a key set.
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    /// The latest `exp` accepted, as seconds from now ([`JwtRules::max_lifetime_secs`]
    /// plus the leeway).
    max_remaining_secs: Option<u64>,
}

struct VerifyingKey {
    id: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    /// Tokens signed with HS256 and `secret` (at least 32 bytes: a shorter secret can
    /// be brute-forced from one token).
    pub fn hs256(secret: &[u8], rules: &JwtRules) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a JWT secret needs at least {MIN_SECRET_BYTES} bytes, got {}",
                secret.len()
            ));
        }
        Ok(Self::one(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
            rules,
        ))
    }

    /// Tokens signed with `algorithm` (RS256 or ES256) by the key whose public half is
    /// the PEM `pem`.
    pub fn public_key(pem: &[u8], algorithm: Algorithm, rules: &JwtRules) -> Result<Self, String> {
        let key = match algorithm {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
            other => return Err(format!("{other:?} is not a public-key algorithm we take")),
        }
        .map_err(|error| format!("the {algorithm:?} public key did not parse: {error}"))?;
        Ok(Self::one(key, algorithm, rules))
    }

    /// Tokens signed by a key of the JWKS document `json` (RSA keys verify RS256, P-256
    /// keys ES256); a token naming a key (`kid`) is checked against that key only.
    pub fn jwks(json: &str, rules: &JwtRules) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(json)
            .map_err(|error| format!("the JWKS did not parse: {error}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue, // a key type we do not verify with: skipped, not fatal
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|error| format!("a JWKS key did not parse: {error}"))?;
            keys.push(VerifyingKey {
                id: jwk.common.key_id.clone(),
                key,
                validation: validation(algorithm, rules),
            });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no RSA or P-256 key".into());
        }
        Ok(Self {
            keys,
            max_remaining_secs: max_remaining(rules),
        })
    }

    /// A verifier no token passes: no key (a key set of none).
    pub fn refusing_everyone() -> Self {
        Self {
            keys: Vec::new(),
            max_remaining_secs: None,
        }
    }

    fn one(key: DecodingKey, algorithm: Algorithm, rules: &JwtRules) -> Self {
        Self {
            keys: vec![VerifyingKey {
                id: None,
                key,
                validation: validation(algorithm, rules),
            }],
            max_remaining_secs: max_remaining(rules),
        }
    }

    /// The algorithms a token may be signed with.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut seen = Vec::new();
        for key in &self.keys {
            for algorithm in &key.validation.algorithms {
                if !seen.contains(algorithm) {
                    seen.push(*algorithm);
                }
            }
        }
        seen
    }

    /// The user a valid `token` names; a 401 answer for any other token.
    pub fn user(&self, token: &str) -> Result<UserId, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| unauthorized(format!("the token did not parse: {error}")))?;
        let candidates = self.keys.iter().filter(|key| match (&header.kid, &key.id) {
            (Some(wanted), Some(id)) => wanted == id,
            _ => true,
        });
        let mut last_error = None;
        for candidate in candidates {
            if !candidate.validation.algorithms.contains(&header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<Subject>(token, &candidate.key, &candidate.validation) {
                Ok(data) => {
                    if let Some(max) = self.max_remaining_secs
                        && data.claims.exp > now_secs().saturating_add(max)
                    {
                        return Err(unauthorized(
                            "the token expires later than this service accepts: ask for a \
                             shorter-lived one",
                        ));
                    }
                    return data.claims.sub.parse().map(UserId).map_err(|_| {
                        unauthorized(format!("sub {:?} is not a user id", data.claims.sub))
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(unauthorized(match last_error {
            Some(error) => format!("the token was refused: {error}"),
            None => format!("no key of this service verifies {:?} tokens", header.alg),
        }))
    }
}

/// How far ahead of now a token's `exp` may be under `rules`.
fn max_remaining(rules: &JwtRules) -> Option<u64> {
    rules
        .max_lifetime_secs
        .map(|max| max.saturating_add(rules.leeway_secs))
}

/// Seconds since the epoch (0 on a clock before it).
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The fewest bytes an HS256 secret may have.
pub const MIN_SECRET_BYTES: usize = 32;

fn validation(algorithm: Algorithm, rules: &JwtRules) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = rules.leeway_secs;
    validation.validate_nbf = true;
    let mut required: HashSet<String> = ["exp", "sub"].map(String::from).into();
    match &rules.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            required.insert("iss".into());
        }
        None => validation.iss = None,
    }
    match &rules.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.insert("aud".into());
        }
        None => validation.validate_aud = false,
    }
    validation.required_spec_claims = required;
    validation
}

/// An HS256 token for `user`, valid for `ttl_secs` from now, carrying the issuer and
/// audience of `rules` when set: what `firstcome-server mint-token` prints and the
/// load tool sends.
///
/// ```
/// use firstcome_server::auth::{JwtRules, JwtVerifier, mint_hs256};
/// use coupon_core::UserId;
///
/// let secret = b"a secret of at least thirty-two bytes";
/// let rules = JwtRules::default();
/// let token = mint_hs256(secret, UserId(42), 60, &rules).unwrap();
/// let verifier = JwtVerifier::hs256(secret, &rules).unwrap();
/// assert_eq!(verifier.user(&token).unwrap(), UserId(42));
/// ```
pub fn mint_hs256(
    secret: &[u8],
    user: UserId,
    ttl_secs: u64,
    rules: &JwtRules,
) -> Result<String, String> {
    if let Some(max) = rules.max_lifetime_secs
        && ttl_secs > max
    {
        return Err(format!(
            "a token valid for {ttl_secs} s would be refused: the service accepts at most \
             {max} s (--jwt-max-lifetime-secs)"
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|error| error.to_string())?
        .as_secs();
    let claims = Claims {
        sub: user.0.to_string(),
        exp: now.saturating_add(ttl_secs),
        iss: rules.issuer.clone(),
        aud: rules.audience.clone(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|error| format!("signing the token: {error}"))
}

/// Reads a key file for the verifier, naming the file in the error.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("reading {}: {error}", path.display()))
}
