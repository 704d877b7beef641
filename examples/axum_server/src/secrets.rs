//! Settings that are secrets (the admin token, the JWT secret, the database URL with its
//! password, the Kafka options with SASL passwords): read from a value, a variable or a
//! file, never printed. `--help` hides their variables' values, a parse error names the
//! setting and never the value, and a secret the service generates is written to a file
//! only its owner can read, not to the output (which ends up in container and journal
//! logs).

use std::ffi::OsStr;
use std::path::Path;

use clap::parser::ValueSource;

/// A clap value parser whose errors name the flag and say why, never echoing the value
/// (clap's own message would: `invalid value 'hunter2' for '--admin-token'`).
#[derive(Clone, Copy)]
pub struct QuietParser<T>(fn(&str) -> Result<T, String>);

impl<T> QuietParser<T> {
    /// Parses with `parse`, whose error must not contain the value either.
    pub const fn new(parse: fn(&str) -> Result<T, String>) -> Self {
        Self(parse)
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for QuietParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let name = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(|| "a setting".to_owned(), |long| format!("--{long}"));
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name}: {why}\n"),
            )
            .with_cmd(command)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("not UTF-8".to_owned()))?;
        (self.0)(text).map_err(refuse)
    }
}

/// The secret in the file `path` that `variable` names, without the line end an
/// editor or `echo` leaves; errors name the variable and the file, not the content.
pub fn read_file(variable: &str, path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("reading {variable} ({}): {error}", path.display()))?;
    let secret = text
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&text);
    if secret.trim().is_empty() {
        return Err(format!("{variable} ({}) is empty", path.display()));
    }
    Ok(secret.to_owned())
}

/// Where a generated admin token is written, in the working directory.
pub const GENERATED_ADMIN_TOKEN: &str = "firstcome-admin-token";

/// Where a generated JWT secret is written, in the working directory.
pub const GENERATED_JWT_SECRET: &str = "firstcome-jwt-secret";

/// A random admin token, written to [`GENERATED_ADMIN_TOKEN`] (never to the output,
/// which ends up in container and journal logs); the banner names the file.
pub fn generated_admin_token() -> Result<String, String> {
    let token = generate();
    write_generated(Path::new(GENERATED_ADMIN_TOKEN), &token)
        .map_err(|error| format!("{error} (or set ADMIN_TOKEN)"))?;
    println!(
        "  admin token: generated into ./{GENERATED_ADMIN_TOKEN} (mode 0600; set ADMIN_TOKEN \
         or ADMIN_TOKEN_FILE to choose one)"
    );
    Ok(token)
}

/// Writes a JWT secret the service generated to [`GENERATED_JWT_SECRET`], so that
/// `mint-token` can sign with it; the banner names the file.
pub fn keep_generated_jwt_secret(secret: &str) -> Result<(), String> {
    write_generated(Path::new(GENERATED_JWT_SECRET), secret)
        .map_err(|error| format!("{error} (or set JWT_SECRET)"))?;
    println!(
        "  JWT secret: generated into ./{GENERATED_JWT_SECRET} (mode 0600; \
         `JWT_SECRET_FILE={GENERATED_JWT_SECRET} firstcome-server mint-token --user 42` signs \
         with it; set JWT_SECRET or JWT_SECRET_FILE to choose one)"
    );
    Ok(())
}

/// A random secret of 64 hex characters (256 bits).
pub fn generate() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Writes a generated `secret` to `path`, readable by this user only (0600 on Unix,
/// also when the file was there before).
pub fn write_generated(path: &Path, secret: &str) -> Result<(), String> {
    let failed = |error: std::io::Error| format!("writing {}: {error}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // The mode applies to a file created now; one left by an earlier start is
        // narrowed before the new secret goes in.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
        }
    }
    let mut file = options.open(path).map_err(failed)?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes()).map_err(failed)
}

/// The secret settings given as flags on the command line, where every user of the
/// machine reads them (`ps`, `/proc/<pid>/cmdline`): their variables or files keep them
/// out of sight.
pub fn given_on_the_command_line(matches: &clap::ArgMatches) -> Vec<&'static str> {
    [
        "admin_token",
        "metrics_token",
        "jwt_secret",
        "database_url",
        "kafka_options",
    ]
    .into_iter()
    .filter(|id| {
        matches.try_get_raw(id).ok().flatten().is_some()
            && matches.value_source(id) == Some(ValueSource::CommandLine)
    })
    .map(|id| match id {
        "admin_token" => "--admin-token (use ADMIN_TOKEN or ADMIN_TOKEN_FILE)",
        "metrics_token" => "--metrics-token (use METRICS_TOKEN)",
        "jwt_secret" => "--jwt-secret (use JWT_SECRET or JWT_SECRET_FILE)",
        "database_url" => "--database-url (use DATABASE_URL or DATABASE_URL_FILE)",
        _ => "--kafka-option (use KAFKA_OPTIONS)",
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_loses_its_line_end_only() {
        let dir = std::env::temp_dir().join(format!("firstcome-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret value \r\n").expect("write");
        assert_eq!(read_file("X_FILE", &file).as_deref(), Ok("s3cret value "));
        std::fs::write(&file, "\n").expect("write");
        let empty = read_file("X_FILE", &file).expect_err("empty");
        assert!(empty.starts_with("X_FILE ("), "{empty}");
        let missing = read_file("X_FILE", &dir.join("none")).expect_err("missing");
        assert!(missing.starts_with("reading X_FILE ("), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[cfg(unix)]
    #[test]
    fn a_generated_secret_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("firstcome-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let file = dir.join("generated");
        std::fs::write(&file, "old").expect("an earlier file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let secret = generate();
        assert_eq!(secret.len(), 64);
        write_generated(&file, &secret).expect("written");
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_file("F", &file).as_deref(), Ok(secret.as_str()));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
