use std::time::Duration;

use super::*;

#[test]
fn defaults_are_valid_and_round_trip() {
    let cfg = Config::default();
    cfg.validate().expect("defaults valid");
    let text = toml::to_string(&cfg).expect("serialize");
    let back: Config = toml::from_str(&text).expect("parse");
    assert_eq!(back.server.listen, cfg.server.listen);
    assert_eq!(back.gc.grace, cfg.gc.grace);
    assert_eq!(back.edge.capacity, cfg.edge.capacity);
}

#[test]
fn example_file_parses_and_matches_defaults() {
    let text = include_str!("../../berth.example.toml");
    let cfg: Config = toml::from_str(text).expect("example parses");
    cfg.validate().expect("example valid");
    assert_eq!(cfg.server.listen, ServerConfig::default().listen);
    assert_eq!(cfg.edge.capacity, EdgeConfig::default().capacity);
}

/// Replicas on PostgreSQL seal with one configured key: none generates its own.
#[test]
fn postgres_needs_the_secret_key_from_configuration() {
    let mut cfg = Config::default();
    cfg.apply_env(
        [
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", "postgres://berth@db/berth"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into_iter(),
    )
    .expect("env");
    let err = cfg.validate().expect_err("no secret_key");
    assert!(err.to_string().contains("controller.secret_key"), "{err}");
    cfg.apply_env(
        [("BERTH_CONTROLLER_SECRET_KEY", "ab".repeat(32))]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter(),
    )
    .expect("env");
    cfg.validate().expect("valid with the key");
}

#[test]
fn console_sessions_are_checked_and_overridable() {
    let mut cfg = Config::default();
    assert!(cfg.console.enabled);
    cfg.apply_env(
        [
            ("BERTH_CONSOLE_SESSION_IDLE", "10m"),
            ("BERTH_CONSOLE_ENABLED", "false"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into_iter(),
    )
    .expect("env");
    assert_eq!(cfg.console.session_idle, Duration::from_secs(600));
    assert!(!cfg.console.enabled);
    cfg.validate().expect("valid");
    cfg.console.session_idle = Duration::from_secs(30);
    assert!(cfg.validate().is_err(), "idle under a minute");
    cfg.console.session_idle = Duration::from_secs(3600);
    cfg.console.session_lifetime = Duration::from_secs(600);
    let err = cfg.validate().expect_err("idle longer than the lifetime");
    assert!(
        err.to_string().contains("console.session_lifetime"),
        "{err}"
    );
}

#[test]
fn proxy_capacity_and_expiry_come_from_file_or_env() {
    let cfg = Config::default();
    assert_eq!(cfg.proxy.capacity, None);
    assert!(cfg.proxy.expire_after.is_zero(), "no expiry unless asked");
    let file: Config =
        toml::from_str("[proxy]\ncapacity = \"20GiB\"\nexpire_after = \"30days\"\n").expect("file");
    assert_eq!(file.proxy.capacity, Some(ByteSize(20 << 30)));
    assert_eq!(file.proxy.expire_after, Duration::from_secs(30 * 86400));
    let mut env = Config::default();
    env.apply_env(
        [
            ("BERTH_PROXY_CAPACITY", "2GiB"),
            ("BERTH_PROXY_EXPIRE_AFTER", "1h"),
            ("BERTH_PROXY_SWEEP_INTERVAL", "30s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("env applies");
    assert_eq!(env.proxy.capacity, Some(ByteSize(2 << 30)));
    assert_eq!(env.proxy.expire_after, Duration::from_secs(3600));
    assert_eq!(env.proxy.sweep_interval, Duration::from_secs(30));
    let zero: Result<Config, _> = toml::from_str("[proxy]\nsweep_interval = \"0s\"\n");
    assert!(zero.expect("parses").validate().is_err());
}

#[test]
fn the_default_project_quota_is_optional_and_set_from_file_or_env() {
    let cfg = Config::default();
    assert_eq!(cfg.quota.default_project, None);
    let file: Config = toml::from_str("[quota]\ndefault_project = \"50GiB\"\n").expect("file");
    assert_eq!(file.quota.default_project, Some(ByteSize(50 << 30)));
    let mut env = Config::default();
    env.apply_env(std::iter::once((
        "BERTH_QUOTA_DEFAULT_PROJECT".to_string(),
        "2GiB".to_string(),
    )))
    .expect("env applies");
    assert_eq!(env.quota.default_project, Some(ByteSize(2 << 30)));
    let bad = Config::default().apply_env(std::iter::once((
        "BERTH_QUOTA_DEFAULT_PROJECT".to_string(),
        "lots".to_string(),
    )));
    assert!(bad.is_err(), "a size that is no size is refused");
}

#[test]
fn a_part_size_s3_refuses_is_refused() {
    let mut cfg = Config::default();
    cfg.validate().expect("the default part size is valid");
    for bad in [
        ByteSize(4 << 20),
        ByteSize((5 << 20) + 1),
        ByteSize(6 << 30),
    ] {
        cfg.storage.part_size = bad;
        let err = cfg.validate().expect_err("refused");
        assert!(err.to_string().contains("storage.part_size"), "{err}");
    }
    cfg.storage.part_size = ByteSize(5 << 20);
    cfg.validate().expect("S3's minimum is fine");
}

#[test]
fn redirects_need_a_bucket_and_an_expiry_s3_accepts() {
    let mut cfg = Config::default();
    cfg.storage.redirect = true;
    let err = cfg.validate().expect_err("no bucket to presign in");
    assert!(err.to_string().contains("storage.redirect"), "{err}");
    cfg.storage.backend = StorageBackend::S3;
    cfg.storage.bucket = "blobs".into();
    cfg.validate().expect("redirects from a bucket");
    for bad in [Duration::from_secs(1), Duration::from_secs(8 * 24 * 3600)] {
        cfg.storage.redirect_expiry = bad;
        let err = cfg.validate().expect_err("out of S3's bounds");
        assert!(err.to_string().contains("storage.redirect_expiry"), "{err}");
    }
}

#[test]
fn a_metadata_cache_ttl_past_an_hour_is_refused() {
    let mut cfg = Config::default();
    cfg.meta.cache_ttl = Duration::from_secs(7200);
    let err = cfg.validate().expect_err("2h");
    assert!(err.to_string().contains("meta.cache_ttl"), "{err}");
    cfg.meta.cache_ttl = Duration::ZERO;
    cfg.validate().expect("0s turns the cache off");
}

#[test]
fn env_overrides_every_kind_of_key() {
    let mut cfg = Config::default();
    let vars = [
        ("BERTH_SERVER_LISTEN", "0.0.0.0:6000"),
        ("BERTH_SERVER_READ_ONLY", "true"),
        ("BERTH_SERVER_HEADER_TIMEOUT", "2s"),
        ("BERTH_SERVER_MAX_CONNECTIONS_PER_IP", "8"),
        ("BERTH_SERVER_MIN_BODY_RATE", "1KiB"),
        ("BERTH_AUTH_BCRYPT_COST", "4"),
        ("BERTH_GC_GRACE", "10m"),
        ("BERTH_GC_SCHEDULE", "0 3 * * *"),
        ("BERTH_GC_RETENTION_SCHEDULE", "30 2 * * *"),
        ("BERTH_GC_HISTORY", "50"),
        ("BERTH_EDGE_CAPACITY", "2GiB"),
        ("BERTH_EDGE_PLATFORMS", "linux/amd64, linux/arm64"),
        ("BERTH_UPSTREAM_USER", "robot$edge"),
        ("BERTH_SERVER_TLS_CERT", "/tmp/cert.pem"),
        ("BERTH_ADMIN_PASSWORD", "ignored-here"),
        ("BERTH_CONTROLLER_KUBECONFIG_MAX_TTL", "2h"),
        ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
        ("BERTH_REPLICATION_ALLOW_PRIVATE_REMOTES", "true"),
        ("BERTH_PROXY_HOSTS", "docker.io=dockerhub, ghcr.io=ghcr"),
        ("BERTH_STORAGE_PART_SIZE", "8MiB"),
        ("BERTH_META_CACHE_SIZE", "16MiB"),
        ("BERTH_META_CACHE_TTL", "3s"),
        ("BERTH_STORAGE_REDIRECT", "true"),
        ("BERTH_STORAGE_REDIRECT_EXPIRY", "5m"),
    ];
    cfg.apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .expect("env applies");
    assert_eq!(cfg.server.listen.port(), 6000);
    assert!(cfg.server.read_only);
    assert_eq!(cfg.server.header_timeout, Duration::from_secs(2));
    assert_eq!(cfg.server.max_connections_per_ip, 8);
    assert_eq!(cfg.server.min_body_rate, ByteSize(1024));
    assert_eq!(cfg.auth.bcrypt_cost, 4);
    assert_eq!(cfg.gc.grace, Duration::from_secs(600));
    assert_eq!(cfg.gc.schedule, "0 3 * * *");
    assert!(cfg.gc.retention_cron().is_some());
    assert_eq!(cfg.gc.history, 50);
    assert!(cfg.gc.cron().is_some());
    assert_eq!(cfg.controller.kubeconfig_max_ttl, Duration::from_secs(7200));
    assert_eq!(cfg.edge.capacity, ByteSize(2 << 30));
    assert_eq!(cfg.edge.platforms, vec!["linux/amd64", "linux/arm64"]);
    assert_eq!(cfg.edge.upstream_user, "robot$edge");
    assert!(cfg.proxy.allow_private_upstreams);
    assert!(cfg.replication.allow_private_remotes);
    assert_eq!(cfg.storage.part_size, ByteSize(8 << 20));
    assert_eq!(cfg.meta.cache_size, ByteSize(16 << 20));
    assert_eq!(cfg.meta.cache_ttl, Duration::from_secs(3));
    assert!(cfg.storage.redirect);
    assert_eq!(cfg.storage.redirect_expiry, Duration::from_secs(300));
    assert_eq!(
        cfg.proxy.hosts.get("docker.io").map(String::as_str),
        Some("dockerhub")
    );
    assert_eq!(
        cfg.proxy.hosts.get("ghcr.io").map(String::as_str),
        Some("ghcr")
    );
    assert_eq!(
        cfg.server.tls_cert.as_deref(),
        Some(Path::new("/tmp/cert.pem"))
    );
}

#[test]
fn previous_secret_keys_from_the_environment_and_checked() {
    let mut cfg = Config::default();
    assert!(cfg.controller.previous_secret_keys.is_empty());
    let (a, b) = ("ab".repeat(32), "cd".repeat(32));
    cfg.apply_env(
        [(
            "BERTH_CONTROLLER_PREVIOUS_SECRET_KEYS".to_string(),
            format!("{a}, {b}"),
        )]
        .into_iter(),
    )
    .expect("env");
    assert_eq!(cfg.controller.previous_secret_keys, vec![a.clone(), b]);
    cfg.validate().expect("valid");
    cfg.controller.previous_secret_keys = vec![a, "s3cr3t-not-hex".into()];
    let err = cfg.validate().expect_err("not hex").to_string();
    assert!(err.contains("previous_secret_keys[1]"), "{err}");
    assert!(!err.contains("s3cr3t"), "the value is never shown: {err}");
}

#[test]
fn drift_check_interval_defaults_overrides_and_validates() {
    let mut cfg = Config::default();
    assert_eq!(cfg.controller.drift_check_interval, Duration::from_secs(60));
    cfg.apply_env(
        [("BERTH_CONTROLLER_DRIFT_CHECK_INTERVAL", "5m")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("env applies");
    assert_eq!(
        cfg.controller.drift_check_interval,
        Duration::from_secs(300)
    );
    cfg.controller.drift_check_interval = Duration::ZERO;
    assert!(cfg.validate().is_ok(), "0s turns it off");
    cfg.controller.drift_check_interval = Duration::from_millis(10);
    let err = cfg.validate().expect_err("too short").to_string();
    assert!(err.contains("controller.drift_check_interval"), "{err}");
}

#[test]
fn poll_interval_defaults_overrides_and_validates() {
    let mut cfg = Config::default();
    assert_eq!(cfg.controller.poll_interval, Duration::from_secs(2));
    cfg.apply_env(
        [("BERTH_CONTROLLER_POLL_INTERVAL", "60s")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("env applies");
    assert_eq!(cfg.controller.poll_interval, Duration::from_secs(60));
    assert!(cfg.validate().is_ok());
    cfg.controller.poll_interval = Duration::from_millis(10);
    let err = cfg.validate().expect_err("too short").to_string();
    assert!(err.contains("controller.poll_interval"), "{err}");
}

#[test]
fn reconcile_concurrency_defaults_overrides_and_validates() {
    let mut cfg = Config::default();
    assert_eq!(cfg.controller.reconcile_concurrency, 64);
    cfg.apply_env(
        [("BERTH_CONTROLLER_RECONCILE_CONCURRENCY", "16")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("env applies");
    assert_eq!(cfg.controller.reconcile_concurrency, 16);
    assert!(cfg.validate().is_ok());
    cfg.controller.reconcile_concurrency = 0;
    let err = cfg.validate().expect_err("zero").to_string();
    assert!(err.contains("controller.reconcile_concurrency"), "{err}");
}

#[test]
fn leader_lease_defaults_overrides_and_validates() {
    let mut cfg = Config::default();
    assert_eq!(cfg.controller.leader_lease, Duration::from_secs(15));
    cfg.apply_env(
        [("BERTH_CONTROLLER_LEADER_LEASE", "30s")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("env applies");
    assert_eq!(cfg.controller.leader_lease, Duration::from_secs(30));
    cfg.controller.leader_lease = Duration::from_secs(1);
    let err = cfg.validate().expect_err("too short").to_string();
    assert!(err.contains("controller.leader_lease"), "{err}");
}

#[test]
fn bad_env_values_name_the_variable() {
    let mut cfg = Config::default();
    let err = cfg
        .apply_env([("BERTH_AUTH_BCRYPT_COST".to_string(), "ten".to_string())].into_iter())
        .expect_err("must fail");
    assert!(err.to_string().contains("BERTH_AUTH_BCRYPT_COST"), "{err}");
}

#[test]
fn connection_limits_are_checked() {
    let mut cfg = Config::default();
    cfg.server.max_connections_per_ip = cfg.server.max_connections + 1;
    let err = cfg.validate().expect_err("per-address cap above the total");
    assert!(err.to_string().contains("max_connections_per_ip"), "{err}");
    cfg.server.max_connections_per_ip = 0;
    cfg.validate().expect("0 turns the per-address cap off");
    cfg.server.body_rate_window = Duration::ZERO;
    let err = cfg.validate().expect_err("a rate needs a window");
    assert!(err.to_string().contains("body_rate_window"), "{err}");
    cfg.server.min_body_rate = ByteSize(0);
    cfg.validate().expect("no minimum rate, no window needed");
}

#[test]
fn sizes_parse() {
    assert_eq!("50GiB".parse::<ByteSize>(), Ok(ByteSize(50 << 30)));
    assert_eq!("1000".parse::<ByteSize>(), Ok(ByteSize(1000)));
    assert_eq!("1.5 MiB".parse::<ByteSize>(), Ok(ByteSize(3 << 19)));
    assert!("12 parsecs".parse::<ByteSize>().is_err());
    assert_eq!(ByteSize(50 << 30).to_string(), "50GiB");
}

#[test]
fn throttle_and_proxy_keys() {
    let cfg: Config = toml::from_str(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.10\", \"2001:db8::1\"]\n[auth]\nlockout_window = \"10m\"\nmax_failed_logins = 3\n",
    )
    .expect("parse");
    let nets: Vec<String> = cfg
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.0.2.10/32", "2001:db8::1/128"]);
    // The keys before the throttle was keyed by address still load, under their new names.
    assert_eq!(cfg.auth.failure_window, Duration::from_secs(600));
    assert_eq!(cfg.auth.account_failure_threshold, 3);
    let err = toml::from_str::<Config>("[server]\ntrusted_proxies = [\"lb.local\"]")
        .expect_err("not a network");
    assert!(err.to_string().contains("lb.local"), "{err}");

    let mut cfg = Config::default();
    let vars = [
        ("BERTH_SERVER_TRUSTED_PROXIES", "127.0.0.2, 10.1.0.0/16"),
        ("BERTH_AUTH_LOGIN_BACKOFF", "2s"),
        ("BERTH_AUTH_MAX_FAILED_LOGINS", "7"),
    ];
    cfg.apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .expect("env applies");
    assert_eq!(cfg.server.trusted_proxies.len(), 2);
    assert_eq!(cfg.auth.login_backoff, Duration::from_secs(2));
    assert_eq!(cfg.auth.account_failure_threshold, 7);
    cfg.validate().expect("valid");

    cfg.auth.login_backoff_max = Duration::from_millis(500);
    assert!(cfg.validate().is_err());
    cfg.auth.login_backoff_max = Duration::from_secs(60);
    cfg.auth.account_failure_threshold = 0;
    assert!(cfg.validate().is_err());
}

#[test]
fn unknown_keys_are_rejected() {
    let err =
        toml::from_str::<Config>("[server]\nlisten_addr = \"1.2.3.4:5\"").expect_err("unknown");
    assert!(err.to_string().contains("listen_addr"));
}

#[test]
fn a_gc_schedule_is_a_cron_expression_and_excludes_the_interval() {
    let mut cfg = Config::default();
    cfg.gc.schedule = "0 3 * *".into();
    let e = cfg.validate().expect_err("four fields").to_string();
    assert!(
        e.contains("gc.schedule") && e.contains("five fields"),
        "{e}"
    );
    cfg.gc.retention_schedule = "0 3 * *".into();
    let e = cfg.validate().expect_err("three fields").to_string();
    assert!(e.contains("gc.retention_schedule"), "{e}");
    cfg.gc.retention_schedule = String::new();
    cfg.gc.schedule = "*/30 * * * *".into();
    cfg.validate().expect("valid");
    cfg.gc.interval = Duration::from_secs(60);
    let e = cfg.validate().expect_err("both").to_string();
    assert!(e.contains("gc.interval"), "{e}");
}
