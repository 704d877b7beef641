//! The settings of the HTTP side: listening, identity, limits.

use clap::Args;

#[allow(clippy::wildcard_imports)]
use super::*;

/// Where the service listens, which hosts it answers, how it stops.
#[derive(Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Host names the service answers to (comma-separated, any port); a request for
    /// another is 421, but for `/healthz`, `/readyz` (and `/metrics` with
    /// `--metrics-token`), which orchestrators send to a pod's address. Unset: any.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Bearer token `GET /metrics` requires (the admin token opens it too), at least 16
    /// characters; unset: the metrics are public.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true, value_parser = QuietParser::new(parse_admin_token))]
    pub metrics_token: Option<String>,
    /// How long (ms) a graceful shutdown waits for requests in flight before it closes
    /// their connections (the worker then finishes its batch).
    #[arg(long, env = "SHUTDOWN_DEADLINE_MS", default_value_t = 30_000)]
    pub shutdown_deadline_ms: u64,
}

/// Who may call what: the admin token and how a request's user is learned.
#[derive(Clone, Args)]
#[command(next_help_heading = "Identity")]
pub struct IdentitySettings {
    /// Bearer token that `POST /campaigns` and the admin routes require, at least 16
    /// characters; when unset, a random one is written to the file
    /// `firstcome-admin-token` (mode 0600) in the working directory.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = QuietParser::new(parse_admin_token))]
    pub admin_token: Option<String>,
    /// A file holding the admin token (instead of `--admin-token`).
    #[arg(long, env = "ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// How the service learns who applies and who reads a coupon.
    #[arg(long, env = "IDENTITY", value_enum, default_value = "jwt")]
    pub identity: IdentityKind,
    /// HS256 secret of the users' JWTs, at least 32 bytes. With no key at all the
    /// service starts only on a loopback address, with a random secret written to the
    /// file `firstcome-jwt-secret` (mode 0600) in the working directory.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 secret (instead of `--jwt-secret`).
    #[arg(long, env = "JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM file of the public key that verifies the users' JWTs (`--jwt-algorithm`).
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of `--jwt-public-key`.
    #[arg(long, env = "JWT_ALGORITHM", value_enum, default_value = "RS256")]
    pub jwt_algorithm: PublicKeyAlgorithm,
    /// JWKS file (RSA and P-256 keys) that verifies the users' JWTs.
    #[arg(long, env = "JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,
    /// The `iss` every JWT must carry.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every JWT must carry.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew (seconds) tolerated on a JWT's `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// The longest a JWT may still be valid (its `exp` at most this many seconds
    /// ahead, plus the leeway); 0: no maximum.
    #[arg(long, env = "JWT_MAX_LIFETIME_SECS", default_value_t = 86_400)]
    pub jwt_max_lifetime_secs: u64,
    /// The header that names the user with `--identity header`.
    #[arg(long, env = "USER_HEADER", default_value = "x-user-id")]
    pub user_header: String,
}

/// What one client, one address and the whole process may take: rates, connections, time.
#[derive(Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitSettings {
    /// Applies and coupon reads per second one user may make (0: no limit).
    #[arg(long, env = "RATE_LIMIT_USER_PER_SEC", default_value_t = 5)]
    pub rate_limit_user_per_sec: u32,
    /// Burst above the per-user rate.
    #[arg(long, env = "RATE_LIMIT_USER_BURST", default_value_t = 10)]
    pub rate_limit_user_burst: u32,
    /// Requests per second one client address may make (0: no limit).
    #[arg(long, env = "RATE_LIMIT_ADDRESS_PER_SEC", default_value_t = 200)]
    pub rate_limit_address_per_sec: u32,
    /// Burst above the per-address rate.
    #[arg(long, env = "RATE_LIMIT_ADDRESS_BURST", default_value_t = 400)]
    pub rate_limit_address_burst: u32,
    /// How long (ms) a client may take to send a request's headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_read_timeout_ms: u64,
    /// How long (ms) a request may take, body included, before it is answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Most connections open at once; lowered at start to the open-files limit minus
    /// 128 (the service's own files) when that is less. Past it new clients wait.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most connections one client address (an IPv6 /64) may hold open (0: no cap);
    /// at most half the cap on all connections; none with trusted clients.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,
}
