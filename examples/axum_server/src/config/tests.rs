//! The settings: parsing, defaults, the documented table, the checks at start.

use super::*;
use clap::Parser;

#[test]
fn kafka_options_parse_and_reserved_ones_are_refused() {
    let config = Config::try_parse_from([
        "firstcome-server",
        "--kafka-option",
        "linger.ms=5",
        "--kafka-option",
        "security.protocol=SASL_SSL\nsasl.password=a, b ",
    ])
    .expect("tuning and security settings");
    assert_eq!(
        config.kafka.kafka_options,
        [
            ("linger.ms".to_owned(), "5".to_owned()),
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ("sasl.password".to_owned(), "a, b ".to_owned()),
        ]
    );
    for refused in [
        "acks=1",
        "request.required.acks=1",
        "enable.idempotence=false",
        "topic.delivery.timeout.ms=600000",
        "linger.ms",
        "=5",
    ] {
        let error = Config::try_parse_from(["firstcome-server", "--kafka-option", refused])
            .expect_err(refused);
        assert!(error.to_string().contains("kafka-option"), "{error}");
    }
    let secret = Config::try_parse_from(["firstcome-server", "--kafka-option", "hunter2"])
        .expect_err("no key");
    assert!(!secret.to_string().contains("hunter2"), "{secret}");
}

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let short = Config::try_parse_from(["firstcome-server", "--admin-token", "fifteen-chars!!"])
        .expect_err("15 characters");
    assert!(short.to_string().contains("at least 16"), "{short}");
    let long = Config::try_parse_from(["firstcome-server", "--admin-token", "sixteen-chars!!!"])
        .expect("16 characters");
    assert_eq!(
        long.identity.admin_token.as_deref(),
        Some("sixteen-chars!!!")
    );
    let unset = Config::try_parse_from(["firstcome-server", "--admin-token", ""])
        .expect("empty")
        .without_empty_values();
    assert_eq!(unset.identity.admin_token, None);
}

#[test]
fn empty_values_mean_unset() {
    let config = Config::parse_from([
        "firstcome-server",
        "--redis-url",
        "",
        "--kafka-brokers",
        " ",
    ])
    .without_empty_values();
    assert_eq!(
        (config.redis.redis_url, config.kafka.kafka_brokers),
        (None, None)
    );
    let kept = Config::parse_from(["firstcome-server", "--redis-url", "redis://h:1/"])
        .without_empty_values();
    assert_eq!(kept.redis.redis_url.as_deref(), Some("redis://h:1/"));
}

/// docs/operations.md lists every flag, and each default it shows is the one the
/// flag has (read from the library that declares it).
#[test]
fn the_settings_table_shows_every_flag_with_its_default() {
    use clap::CommandFactory;
    let command = Config::command();
    let doc = include_str!("../../../../docs/operations.md");
    let mut checked = 0;
    let mut listed = std::collections::BTreeSet::new();
    for line in doc.lines().filter(|line| line.starts_with("| `--")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let flags: Vec<&str> = cells[0].trim_start_matches("| ").split(", ").collect();
        let defaults: Vec<&str> = cells[2].split(", ").collect();
        for (i, flag) in flags.iter().enumerate() {
            let name = flag
                .trim_start_matches("`--")
                .split(['`', ' '])
                .next()
                .unwrap_or_default();
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(name))
                .unwrap_or_else(|| panic!("docs/operations.md names --{name}: no such flag"));
            listed.insert(name.to_owned());
            let Some(shown) = defaults
                .get(i)
                .filter(|_| defaults.len() == flags.len())
                .and_then(|cell| cell.strip_prefix('`'))
                .and_then(|cell| cell.split('`').next())
            else {
                continue;
            };
            let actual: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            assert_eq!(actual, [shown], "the default of --{name}");
            checked += 1;
        }
    }
    let flags: std::collections::BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|name| !["help", "version"].contains(name))
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = flags.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "flags missing from the table: {missing:?}"
    );
    assert!(checked >= 40, "{checked} defaults checked");
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let parse = |args: &[&str]| {
        Config::try_parse_from(["firstcome-server"].iter().chain(args)).expect("parses")
    };
    assert_eq!(parse(&[]).check(), Ok(()));
    for (args, expected) in [
        (&["--publish-timeout-ms", "0"][..], "--publish-timeout-ms"),
        (
            &["--worker-initial-backoff-ms", "0"],
            "--worker-initial-backoff-ms",
        ),
        (
            &["--worker-max-backoff-ms", "10"],
            "--worker-max-backoff-ms",
        ),
        (
            &["--database-operation-timeout-ms", "0"],
            "--database-operation-timeout-ms",
        ),
        (
            &[
                "--kafka-brokers",
                "h:9092",
                "--kafka-delivery-timeout-ms",
                "20000",
            ],
            "--kafka-delivery-timeout-ms",
        ),
        (
            &[
                "--kafka-brokers",
                "h:9092",
                "--worker-keep-alive-ms",
                "30000",
            ],
            "--worker-keep-alive-ms",
        ),
    ] {
        let error = parse(args).check().expect_err(expected);
        assert!(error.starts_with(expected), "{args:?}: {error}");
    }
    // Without Kafka the keep-alive has no poll interval to stay under (`--queue sql`:
    // the harness exports KAFKA_BROKERS, which `auto` would pick up).
    assert_eq!(
        parse(&["--queue", "sql", "--worker-keep-alive-ms", "30000"]).check(),
        Ok(())
    );
}

#[test]
fn connection_caps_stay_under_the_open_files_limit_and_half_of_it_per_address() {
    let parse = |args: &[&str]| {
        Config::try_parse_from(["firstcome-server"].iter().chain(args)).expect("parses")
    };
    let defaults = parse(&["--identity", "jwt"]);
    assert_eq!(defaults.connection_caps(None), (10_000, Some(256)));
    assert_eq!(defaults.connection_caps(Some(65_536)), (10_000, Some(256)));
    assert_eq!(defaults.connection_caps(Some(1_024)), (896, Some(256)));
    assert_eq!(defaults.connection_caps(Some(256)), (128, Some(64)));
    assert_eq!(defaults.connection_caps(Some(100)), (50, Some(25)));
    let off = parse(&["--identity", "jwt", "--max-connections-per-address", "0"]);
    assert_eq!(off.connection_caps(None), (10_000, None));
    let trusted = parse(&["--identity", "trusted-clients"]);
    assert_eq!(trusted.connection_caps(None), (10_000, None));
}

#[test]
fn confirm_values_parse() {
    assert_eq!(parse_confirm("auto"), Ok(Confirm::Auto));
    assert_eq!(parse_confirm("off"), Ok(Confirm::Off));
    assert_eq!(parse_confirm("2"), Ok(Confirm::Replicas(2)));
    assert!(parse_confirm("many").is_err());
}

#[test]
fn a_short_jwt_secret_is_refused_by_its_setting_and_how_to_make_one() {
    let config = Config::try_parse_from(["firstcome-server", "--jwt-secret", "short-secret"])
        .expect("parses");
    let error = config.identity().map(|_| ()).expect_err("12 bytes");
    assert!(error.contains("JWT_SECRET"), "{error}");
    assert!(error.contains("openssl rand -hex 32"), "{error}");
    assert!(!error.contains("short-secret"), "{error}");
}

#[test]
fn trusted_clients_on_an_address_others_reach_draw_a_warning() {
    let parse = |args: &[&str]| {
        Config::try_parse_from(["firstcome-server"].iter().chain(args)).expect("parses")
    };
    let trusted = parse(&["--identity", "trusted-clients"]);
    let everywhere: SocketAddr = "0.0.0.0:8080".parse().expect("an address");
    let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("an address");
    let warning = trusted.listening_warning(everywhere).expect("a warning");
    assert!(warning.contains("any user"), "{warning}");
    assert_eq!(trusted.listening_warning(loopback), None);
    assert_eq!(
        parse(&["--identity", "header"]).listening_warning(everywhere),
        None
    );
}

#[test]
fn a_worker_only_process_listens_anywhere_without_a_key_and_the_gathering_bound_is_checked() {
    let anywhere: std::net::SocketAddr = "0.0.0.0:9100".parse().expect("address");
    let api = Config::parse_from(["firstcome-server"]);
    assert!(
        api.check_listening(anywhere).is_err(),
        "no JWT key for the API"
    );
    // It serves probes and metrics only: no user route, so no key needed.
    let worker = Config::parse_from(["firstcome-server", "--role", "worker"]);
    assert_eq!(worker.check_listening(anywhere), Ok(()));
    for bound in ["0", "257"] {
        let config = Config::parse_from(["firstcome-server", "--redis-max-gathered", bound]);
        let refused = config.check().expect_err("out of 1..=256");
        assert!(refused.contains("--redis-max-gathered"), "{refused}");
    }
    assert_eq!(
        Config::parse_from(["firstcome-server", "--redis-max-gathered", "1"]).check(),
        Ok(())
    );
}

#[test]
fn the_store_is_the_queue_on_the_embedded_default_only() {
    // Every input named: the suite runs with DATABASE_URL and KAFKA_BROKERS exported.
    let issues = |database: &str, queue: &str, kafka: Option<&str>| {
        let mut config = Config::try_parse_from([
            "firstcome-server",
            "--database-url",
            database,
            "--queue",
            queue,
        ])
        .expect("parses");
        config.kafka.kafka_brokers = kafka.map(str::to_owned);
        config.sql_queue().issue_at_commit
    };
    let sqlite = "sqlite://firstcome.db?mode=rwc";
    assert!(issues(sqlite, "auto", None), "the embedded default");
    assert!(
        !issues(sqlite, "sql", None),
        "the table hand-off, asked for"
    );
    assert!(!issues("postgres://db/coupons", "auto", None));
    assert!(!issues(sqlite, "auto", Some("127.0.0.1:9092")), "Kafka");
}
