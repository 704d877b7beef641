//! Who may call the service and how much: how users are known, which addresses the
//! service may listen on with that, the rate limits and the caps on connections.

use std::net::SocketAddr;

use axum::http::HeaderName;
use jsonwebtoken::Algorithm;

use super::{Config, IdentityKind, PublicKeyAlgorithm};
use crate::auth::{Identity, JwtRules, JwtVerifier, read_key_file};
use crate::limits::{Rate, RateLimits};
use crate::secrets;

impl Config {
    /// Refuses to listen on `address` with JWT identity and no key: the secret the
    /// service would generate is for trying it on one's own machine (anyone who reads
    /// it signs in as any user), so it is allowed on a loopback address only.
    /// A worker-only process serves no user route (its probes and metrics only), so
    /// no key is needed there.
    pub fn check_listening(&self, address: SocketAddr) -> Result<(), String> {
        let key_missing = self.role != super::Role::Worker
            && self.identity.identity == IdentityKind::Jwt
            && self.identity.jwt_secret.is_none()
            && self.identity.jwt_public_key.is_none()
            && self.identity.jwt_jwks.is_none();
        if key_missing && !address.ip().is_loopback() {
            return Err(format!(
                "--identity jwt needs a key to listen on {address}: set JWT_SECRET (or \
                 JWT_SECRET_FILE), --jwt-public-key or --jwt-jwks; a generated secret is \
                 only for a loopback address"
            ));
        }
        Ok(())
    }

    /// A warning for listening on `address` with settings that trust every client
    /// (`--identity trusted-clients`: anyone who reaches the port applies as any user,
    /// with no rate or per-address connection limit), when others can reach it.
    pub fn listening_warning(&self, address: SocketAddr) -> Option<String> {
        (self.role != super::Role::Worker
            && self.identity.identity == IdentityKind::TrustedClients
            && !address.ip().is_loopback())
        .then(|| {
            format!(
                "--identity trusted-clients on {address}: anyone who reaches this port \
                 applies as any user, with no rate or per-address connection limit; for \
                 demos and load tests on a private network only"
            )
        })
    }

    /// What a JWT must carry besides its signature.
    pub fn jwt_rules(&self) -> JwtRules {
        JwtRules {
            issuer: self.identity.jwt_issuer.clone(),
            audience: self.identity.jwt_audience.clone(),
            leeway_secs: self.identity.jwt_leeway_secs,
            max_lifetime_secs: (self.identity.jwt_max_lifetime_secs > 0)
                .then_some(self.identity.jwt_max_lifetime_secs),
        }
    }

    /// How the service learns the user, and the HS256 secret it generated when the
    /// JWT mode has no key configured (to be written to a file, so that tokens can be
    /// minted).
    pub fn identity(&self) -> Result<(Identity, Option<String>), String> {
        let rules = self.jwt_rules();
        match self.identity.identity {
            IdentityKind::TrustedClients => Ok((Identity::TrustedClients, None)),
            IdentityKind::Header => {
                let name = HeaderName::try_from(self.identity.user_header.trim())
                    .map_err(|_| format!("{:?} is not a header name", self.identity.user_header))?;
                Ok((Identity::Header(name), None))
            }
            IdentityKind::Jwt => {
                let configured = [
                    self.identity.jwt_secret.is_some(),
                    self.identity.jwt_public_key.is_some(),
                    self.identity.jwt_jwks.is_some(),
                ];
                if configured.iter().filter(|set| **set).count() > 1 {
                    return Err("set one of --jwt-secret, --jwt-public-key and --jwt-jwks".into());
                }
                let verifier = if let Some(secret) = &self.identity.jwt_secret {
                    hs256_verifier(secret, &rules)?
                } else if let Some(path) = &self.identity.jwt_public_key {
                    let algorithm = match self.identity.jwt_algorithm {
                        PublicKeyAlgorithm::Rs256 => Algorithm::RS256,
                        PublicKeyAlgorithm::Es256 => Algorithm::ES256,
                    };
                    JwtVerifier::public_key(&read_key_file(path)?, algorithm, &rules)?
                } else if let Some(path) = &self.identity.jwt_jwks {
                    let json = String::from_utf8(read_key_file(path)?)
                        .map_err(|_| format!("{} is not UTF-8", path.display()))?;
                    JwtVerifier::jwks(&json, &rules)?
                } else {
                    let secret = secrets::generate();
                    let verifier = JwtVerifier::hs256(secret.as_bytes(), &rules)?;
                    return Ok((Identity::Jwt(verifier), Some(secret)));
                };
                Ok((Identity::Jwt(verifier), None))
            }
        }
    }

    /// The rate limits: none for trusted clients (the load tool's mode).
    pub fn rate_limits(&self) -> RateLimits {
        if self.identity.identity == IdentityKind::TrustedClients {
            return RateLimits::default();
        }
        RateLimits {
            per_user: Rate::new(
                self.limits.rate_limit_user_per_sec,
                self.limits.rate_limit_user_burst,
            ),
            per_address: Rate::new(
                self.limits.rate_limit_address_per_sec,
                self.limits.rate_limit_address_burst,
            ),
        }
    }

    /// The caps on open connections, in all and per client address, given the
    /// process's open-files limit (`None`: unknown). The service's own files (the
    /// database's and brokers' connections, SQLite's files, the runtime's) keep
    /// [`FILES_RESERVED`] of the limit, and one address never gets more than half the
    /// connections, so that it cannot keep every other client out.
    pub fn connection_caps(&self, open_files: Option<u64>) -> (usize, Option<usize>) {
        let mut total = self.limits.max_connections.max(1);
        if let Some(limit) = open_files.and_then(|limit| usize::try_from(limit).ok()) {
            total = total.min(limit.saturating_sub(FILES_RESERVED).max(limit / 2).max(1));
        }
        let per_address = (self.limits.max_connections_per_address > 0
            && self.identity.identity != IdentityKind::TrustedClients)
            .then(|| {
                self.limits
                    .max_connections_per_address
                    .min((total / 2).max(1))
            });
        (total, per_address)
    }

    /// The listener's limits (header read, shutdown deadline, the connection caps of
    /// [`connection_caps`](Self::connection_caps)) under the open-files limit
    /// `open_files`: the same for a service and for a worker-only process's probes.
    pub fn http_limits(&self, open_files: Option<u64>) -> crate::listen::HttpLimits {
        let (max_connections, max_connections_per_address) = self.connection_caps(open_files);
        crate::listen::HttpLimits {
            header_read: std::time::Duration::from_millis(self.limits.header_read_timeout_ms),
            shutdown_deadline: std::time::Duration::from_millis(self.http.shutdown_deadline_ms),
            max_connections,
            max_connections_per_address,
        }
    }
}

/// The HS256 verifier of the `secret` set by `JWT_SECRET` (or `--jwt-secret`,
/// `JWT_SECRET_FILE`); an error names the setting and says how to make a good one.
pub fn hs256_verifier(secret: &str, rules: &JwtRules) -> Result<JwtVerifier, String> {
    JwtVerifier::hs256(secret.as_bytes(), rules).map_err(|why| {
        format!(
            "JWT_SECRET (or --jwt-secret, JWT_SECRET_FILE): {why}; `openssl rand -hex 32` makes one"
        )
    })
}

/// Open files kept for the service's own use when the connection cap is lowered to the
/// open-files limit.
pub const FILES_RESERVED: usize = 128;
