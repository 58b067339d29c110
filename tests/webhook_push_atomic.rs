//! A push's webhook event is queued in the manifest's own transaction: a
//! kill -9 between storing the manifest and queuing its event cannot keep
//! one without the other. On PostgreSQL (started by the kit), a session in
//! the test holds webhook_queue so that no event can be queued; the push
//! waits on it, berth is killed, the lock let go, berth started again: the
//! manifest is not there (the push was never answered) — where the event
//! was queued in a second write after the manifest's, the manifest stayed
//! and its event was lost.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_testkit::berth::{registry_in, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::hooks::{create_hook, received_n};
use berth_testkit::http::{basic, push_image, send};
use berth_testkit::postgres::{self, Postgres};
use berth_testkit::proc::free_port;
use berth_testkit::receiver::HookReceiver;
use berth_testkit::wait::wait_until;

#[test]
fn a_push_killed_before_its_event_is_queued_leaves_no_manifest_either() {
    assert!(
        postgres::available(),
        "PostgreSQL (initdb, postgres) is needed"
    );
    let pg = Postgres::shared();
    let url = pg.database();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let key = "5e".repeat(32);
    let env = [
        ("BERTH_META_BACKEND", "postgres"),
        ("BERTH_META_URL", url.as_str()),
        ("BERTH_CONTROLLER_SECRET_KEY", key.as_str()),
        ("BERTH_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true"),
        ("BERTH_WEBHOOKS_RETRY_INITIAL", "1s"),
        ("BERTH_WEBHOOKS_RETRY_MAX", "1s"),
    ];
    let mut reg = registry_in(berth_bin!(), &data, &[], &env);
    reg.admin().create_project("shop", false);
    let port = free_port();
    create_hook(
        &reg,
        "shop",
        &format!("http://127.0.0.1:{port}/hook"),
        &["push"],
    );

    // A session that keeps every event out of the queue (reads go on).
    let bindir = postgres::bindir().expect("psql");
    let mut lock = Command::new(bindir.join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdin = lock.stdin.take().expect("stdin");
    stdin
        .write_all(b"BEGIN;\nLOCK TABLE webhook_queue IN EXCLUSIVE MODE;\nSELECT 'locked';\n")
        .expect("lock");
    let mut out = BufReader::new(lock.stdout.take().expect("stdout"));
    let mut line = String::new();
    while line.trim() != "locked" {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("psql output") > 0,
            "psql ended"
        );
    }

    // The push waits to queue its event...
    let base = reg.url();
    let pusher = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("client");
        let auth = basic("admin", ADMIN_PASSWORD);
        // Never answered: berth is killed while it waits (push_image's
        // assertion fails in this thread, which the test does not join for it).
        push_image(&http, &base, &auth, "shop/web", "v1");
    });
    wait_until(
        "the push waiting to queue its event",
        Duration::from_secs(120),
        || {
            let waiting = pg.psql(
                &url,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'webhook_queue' AND NOT l.granted",
            );
            if waiting != "0" {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    );
    // ...and berth dies there. The lock goes, berth comes back.
    reg.server.kill9();
    stdin.write_all(b"ROLLBACK;\n").expect("unlock");
    drop(stdin);
    let _ = lock.wait();
    let _ = pusher.join(); // Err: the push got no answer, as it should.
    let rx = HookReceiver::start_on(port);
    reg.server.start_again();

    let http = reqwest::blocking::Client::new();
    let auth = basic("admin", ADMIN_PASSWORD);
    let got = send(
        &http,
        "GET",
        &format!("{}/v2/shop/web/manifests/v1", reg.url()),
        &auth,
        None,
    );
    assert_eq!(
        got.status, 404,
        "a manifest whose push was never answered, and whose event was never queued, is not there"
    );
    // Pushed again: stored with its event, which arrives.
    let digest = push_image(&http, &reg.url(), &auth, "shop/web", "v1").digest;
    let events = received_n(&rx, 1);
    assert_eq!(
        events[0].json()["subject"],
        format!("shop/web@{digest}").as_str()
    );
}
