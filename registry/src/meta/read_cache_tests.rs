use bytes::Bytes;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn cache(budget: u64, ttl: Duration) -> ReadCache {
    let c = ReadCache::new(CacheLimits { budget, ttl });
    c.resume();
    c
}

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

fn manifest(s: &str) -> StoredManifest {
    StoredManifest {
        digest: d(s),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: Bytes::from(s.as_bytes().to_vec()),
    }
}

fn ticket<V: std::fmt::Debug>(l: Lookup<V>) -> Ticket {
    match l {
        Lookup::Miss(Some(t)) => t,
        other => panic!("expected a miss with a ticket, got {other:?}"),
    }
}

fn hit<V: std::fmt::Debug>(l: Lookup<V>) -> V {
    match l {
        Lookup::Hit(v) => v,
        other => panic!("expected a hit, got {other:?}"),
    }
}

fn missed<V>(l: Lookup<V>) -> bool {
    matches!(l, Lookup::Miss(_))
}

#[test]
fn what_was_put_is_served_until_a_change_touches_it() {
    let c = cache(1 << 20, HOUR);
    let t = ticket(c.tag("p/app", "v1"));
    c.put_tag(t, "p/app", "v1", &d("m1"));
    let t = ticket(c.manifest("p/app", &d("m1")));
    c.put_manifest(t, "p/app", &manifest("m1"));
    let t = ticket(c.link("p/app", &d("layer")));
    c.put_link(t, "p/app", &d("layer"), 42);
    assert_eq!(hit(c.tag("p/app", "v1")), d("m1"));
    assert_eq!(hit(c.manifest("p/app", &d("m1"))).bytes, &b"m1"[..]);
    assert_eq!(hit(c.link("p/app", &d("layer"))), 42);
    // Another repository's entries are its own.
    assert!(missed(c.tag("p/other", "v1")));

    // Deleting the manifest drops it and the tags that pointed to it.
    c.forget(&[Change::Manifest {
        repo: "p/app".into(),
        digest: d("m1").to_string(),
    }]);
    assert!(missed(c.manifest("p/app", &d("m1"))));
    assert!(missed(c.tag("p/app", "v1")));
    assert_eq!(hit(c.link("p/app", &d("layer"))), 42);
    c.forget(&[Change::Blob {
        digest: d("layer").to_string(),
    }]);
    assert!(missed(c.link("p/app", &d("layer"))));
    assert_eq!(c.used(), (0, 0, 3));
}

#[test]
fn a_read_that_began_before_a_change_arrived_does_not_fill() {
    let c = cache(1 << 20, HOUR);
    let before = ticket(c.tag("p/app", "v1"));
    // The change is heard while the read is at the database.
    c.heard("other:1\nT\tp/app\tv1");
    c.put_tag(before, "p/app", "v1", &d("old"));
    assert!(missed(c.tag("p/app", "v1")));
    // A read begun after it fills.
    let after = ticket(c.tag("p/app", "v1"));
    c.put_tag(after, "p/app", "v1", &d("new"));
    assert_eq!(hit(c.tag("p/app", "v1")), d("new"));
}

#[test]
fn a_lost_feed_drops_everything_and_serves_nothing_until_it_listens_again() {
    let c = cache(1 << 20, HOUR);
    let t = ticket(c.tag("p/app", "v1"));
    c.put_tag(t, "p/app", "v1", &d("m1"));
    let in_flight = ticket(c.tag("p/app", "v2"));
    c.suspend();
    assert!(matches!(c.tag("p/app", "v1"), Lookup::Miss(None)));
    c.put_tag(in_flight, "p/app", "v2", &d("m2"));
    c.resume();
    assert!(missed(c.tag("p/app", "v1")));
    assert!(missed(c.tag("p/app", "v2")));
    assert_eq!(c.used().0, 0);
}

#[test]
fn entries_expire_after_the_ttl() {
    let c = cache(1 << 20, Duration::from_millis(1));
    let t = ticket(c.tag("p/app", "v1"));
    c.put_tag(t, "p/app", "v1", &d("m1"));
    std::thread::sleep(Duration::from_millis(20));
    assert!(missed(c.tag("p/app", "v1")));
    assert_eq!(c.used().0, 0);
}

#[test]
fn the_budget_drops_the_oldest_first() {
    // Room for about three manifests of 1,000 bytes.
    let c = cache(3 * 1300, HOUR);
    let big = |i: usize| StoredManifest {
        digest: d(&format!("m{i}")),
        media_type: "x".into(),
        bytes: Bytes::from(vec![b'x'; 1000]),
    };
    for i in 0..5 {
        let m = big(i);
        let t = ticket(c.manifest("p/app", &m.digest));
        c.put_manifest(t, "p/app", &m);
    }
    let (entries, used, _) = c.used();
    assert!(used <= 3 * 1300, "{used}");
    assert_eq!(entries, 3);
    assert!(missed(c.manifest("p/app", &big(0).digest)));
    assert!(missed(c.manifest("p/app", &big(1).digest)));
    assert_eq!(hit(c.manifest("p/app", &big(4).digest)).bytes.len(), 1000);
    // Something larger than the whole budget is never kept.
    let huge = StoredManifest {
        digest: d("huge"),
        media_type: "x".into(),
        bytes: Bytes::from(vec![b'x'; 10_000]),
    };
    let t = ticket(c.manifest("p/app", &huge.digest));
    c.put_manifest(t, "p/app", &huge);
    assert!(missed(c.manifest("p/app", &huge.digest)));
    assert_eq!(hit(c.manifest("p/app", &big(4).digest)).bytes.len(), 1000);
}

#[test]
fn refills_do_not_grow_the_order_without_bound() {
    let c = cache(1 << 20, HOUR);
    for i in 0..10_000u32 {
        let t = ticket(c.tag("p/app", "v1"));
        c.put_tag(t, "p/app", "v1", &d(&i.to_string()));
        c.forget(&[Change::Tag {
            repo: "p/app".into(),
            tag: "v1".into(),
        }]);
    }
    let (entries, used, order) = c.used();
    assert_eq!((entries, used), (0, 0));
    assert!(order <= 64 + 1, "{order}");
}

#[test]
fn whole_repositories_and_everything_go_at_once() {
    let c = cache(1 << 20, HOUR);
    for repo in ["p/a", "p/b"] {
        let t = ticket(c.tag(repo, "v1"));
        c.put_tag(t, repo, "v1", &d("m"));
        let t = ticket(c.link(repo, &d("l")));
        c.put_link(t, repo, &d("l"), 1);
    }
    c.forget(&[Change::Repo { repo: "p/a".into() }]);
    assert!(missed(c.tag("p/a", "v1")));
    assert!(missed(c.link("p/a", &d("l"))));
    assert_eq!(hit(c.tag("p/b", "v1")), d("m"));
    assert_eq!(c.used().0, 2);
    c.heard("someone:9\n*");
    assert!(missed(c.tag("p/b", "v1")));
    assert_eq!(c.used().0, 0);
}

#[tokio::test]
async fn a_write_is_released_when_its_own_announcement_comes_back() {
    let c = cache(1 << 20, HOUR);
    let (a, echo) = c.announcement(vec![Change::Tag {
        repo: "p/app".into(),
        tag: "v1".into(),
    }]);
    let echo = echo.expect("listening: wait for the echo");
    // Another replica's announcement with the same number does not count.
    let n = a.origin.split(':').nth(1).unwrap_or("0");
    c.heard(&format!("other:{n}\n"));
    assert_eq!(c.echoes.lock().map(|e| e.len()).unwrap_or(0), 1);
    c.heard(&a.encode());
    assert_eq!(c.echoes.lock().map(|e| e.len()).unwrap_or(9), 0);
    tokio::time::timeout(Duration::from_millis(500), c.wait_echo(echo))
        .await
        .expect("released by its echo, well before ECHO_WAIT");
    // Not listening: nothing to wait for.
    c.suspend();
    assert!(c.announcement(Vec::new()).1.is_none());
}
