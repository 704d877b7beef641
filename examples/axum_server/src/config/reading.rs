//! How the settings are read: the command line and the environment (a variable set to
//! nothing counts as unset), the values that need parsing, and the secrets given as
//! files.

use coupon_redis::Confirm;

use super::Config;
use crate::secrets;

impl Config {
    /// The settings from the command line and the environment, as the binary reads
    /// them: a variable set to nothing (`SETTLE_GRACE_MS=`, as shells and compose
    /// files write one they mean to leave unset) counts as unset, so the flag's
    /// default applies instead of a value that does not parse. Not for the names of
    /// shared state ([`Config::SHARED_STATE_VARIABLES`]): there an empty value is a
    /// mistake (an unresolved `${...}`), and the default would quietly give this
    /// process a database, key prefix, topic or group of its own; it stays empty and
    /// the start fails. Exits with clap's message on a bad value.
    pub fn from_command_line() -> Self {
        use clap::{CommandFactory, FromArgMatches};

        let command = Self::command().mut_args(|arg| {
            let empty = arg.get_env().is_some_and(|name| {
                !Self::SHARED_STATE_VARIABLES
                    .iter()
                    .any(|shared| name == *shared)
                    && std::env::var_os(name)
                        .is_some_and(|value| value.to_str().is_some_and(|v| v.trim().is_empty()))
            });
            if empty { arg.env(None) } else { arg }
        });
        let matches = command.get_matches();
        for flag in secrets::given_on_the_command_line(&matches) {
            tracing::warn!(
                "{flag}: a secret given as a flag is visible to every user of this machine \
                 (ps, /proc/<pid>/cmdline)"
            );
        }
        Self::from_arg_matches(&matches)
            .map_err(|error| error.format(&mut Self::command()))
            .unwrap_or_else(|error| error.exit())
    }

    /// Variables that name state other processes share; [`Config::from_command_line`]
    /// never replaces an empty one by its default.
    pub const SHARED_STATE_VARIABLES: [&'static str; 5] = [
        "DATABASE_URL",
        "REDIS_KEY_PREFIX",
        "KAFKA_TOPIC",
        "KAFKA_DLQ_TOPIC",
        "KAFKA_GROUP",
    ];

    /// The settings with every empty optional value unset: `REDIS_URL=` (as shells and
    /// compose files write an unset variable) means no Redis, not a URL that does not
    /// parse.
    pub fn without_empty_values(mut self) -> Self {
        for value in [
            &mut self.identity.admin_token,
            &mut self.http.metrics_token,
            &mut self.redis.redis_url,
            &mut self.kafka.kafka_brokers,
            &mut self.identity.jwt_secret,
            &mut self.identity.jwt_issuer,
            &mut self.identity.jwt_audience,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        for path in [
            &mut self.identity.jwt_public_key,
            &mut self.identity.jwt_jwks,
        ] {
            if path.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
                *path = None;
            }
        }
        self
    }

    /// The settings with each secret given as a file (`ADMIN_TOKEN_FILE`,
    /// `JWT_SECRET_FILE`, `DATABASE_URL_FILE`) read into its setting; an error names the
    /// variable and the file, never what it holds.
    pub fn with_secret_files(mut self) -> Result<Self, String> {
        if let Some(path) = self.identity.admin_token_file.take() {
            let token = secrets::read_file("ADMIN_TOKEN_FILE", &path)?;
            let token =
                parse_admin_token(&token).map_err(|why| format!("ADMIN_TOKEN_FILE: {why}"))?;
            self.identity.admin_token = Some(token);
        }
        if let Some(path) = self.identity.jwt_secret_file.take() {
            self.identity.jwt_secret = Some(secrets::read_file("JWT_SECRET_FILE", &path)?);
        }
        if let Some(path) = self.database.database_url_file.take() {
            self.database.database_url = secrets::read_file("DATABASE_URL_FILE", &path)?
                .trim()
                .to_owned();
        }
        Ok(self)
    }
}

/// The fewest characters an admin token may have: a short one can be guessed.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// An admin token of at least [`MIN_ADMIN_TOKEN_LEN`] characters, or an empty value
/// (unset, as [`Config::without_empty_values`] reads it).
pub(super) fn parse_admin_token(value: &str) -> Result<String, String> {
    let length = value.trim().chars().count();
    if length == 0 || length >= MIN_ADMIN_TOKEN_LEN {
        // Trimmed as a bearer token is when it arrives, or it could never match.
        Ok(value.trim().to_owned())
    } else {
        Err(format!(
            "{length} characters: an admin token needs at least {MIN_ADMIN_TOKEN_LEN} \
             (or leave it unset for a generated one)"
        ))
    }
}

/// `auto`, `off` or a number of replicas.
pub(super) fn parse_confirm(value: &str) -> Result<Confirm, String> {
    match value.trim() {
        "auto" => Ok(Confirm::Auto),
        "off" | "0" => Ok(Confirm::Off),
        number => number
            .parse()
            .map(Confirm::Replicas)
            .map_err(|_| format!("{number:?}: expected auto, off or a number of replicas")),
    }
}

/// `KEY=VALUE`, a librdkafka setting that is not one of
/// [`coupon_kafka::RESERVED_SETTINGS`]; the value is kept as given and never echoed in
/// an error (it may be a password).
pub(super) fn parse_kafka_option(option: &str) -> Result<(String, String), String> {
    let Some((key, value)) = option.split_once('=') else {
        return Err("expected KEY=VALUE".to_owned());
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("expected KEY=VALUE: the key is empty".to_owned());
    }
    if let Some(name) = coupon_kafka::reserved_setting(key) {
        return Err(format!(
            "{key:?} ({name}) is set by firstcome (its promises rest on it) and cannot be overridden"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}
