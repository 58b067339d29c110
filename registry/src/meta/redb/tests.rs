//! The embedded store: its format version, and the conformance suite.

use ::redb::Database;
use bytes::Bytes;

use super::schema::SCHEMA;
use super::*;
use crate::meta::{MetaStore, References, Seen};
use crate::oci::RepoName;

#[test]
fn a_newer_format_is_refused_and_an_older_one_upgraded() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("berth.redb");
    {
        let meta = RedbMeta::open(&path).expect("new database");
        let tx = meta.db().begin_write().expect("tx");
        tx.open_table(SCHEMA)
            .expect("t")
            .insert("registry", SCHEMA_VERSION + 1)
            .expect("insert");
        tx.commit().expect("commit");
    }
    let err = RedbMeta::open(&path).expect_err("newer format");
    let msg = err.to_string();
    assert!(msg.contains("written by a newer berth"), "{msg}");
    {
        // As the first release left it: no version at all.
        let db = Database::create(&path).expect("db");
        let tx = db.begin_write().expect("tx");
        tx.delete_table(SCHEMA).expect("drop");
        tx.commit().expect("commit");
    }
    let meta = RedbMeta::open(&path).expect("older format opens");
    let tx = meta.db().begin_read().expect("tx");
    let v = tx
        .open_table(SCHEMA)
        .expect("t")
        .get("registry")
        .expect("get");
    assert_eq!(v.map(|v| v.value()), Some(SCHEMA_VERSION));
}

/// A format 2 file has links and manifests but no reverse indexes: opening
/// it builds them, so GC's "linked anywhere?" and "held anywhere?" still
/// see what was written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_to_format_3_indexes_existing_links() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("berth.redb");
    let r: RepoName = "old/app".parse().expect("name");
    let r2: RepoName = "old/other".parse().expect("name");
    let d = Digest::sha256_of(b"linked before the index");
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": d.to_string(), "size": 3},
            "layers": [],
        }))
        .expect("json"),
    );
    let summary =
        crate::oci::manifest::decode(crate::oci::media::OCI_MANIFEST, &body).expect("manifest");
    let m = Digest::sha256_of(&body);
    {
        let meta = RedbMeta::open(&path).expect("new database");
        meta.record_and_link(&r, &d, 3).await.expect("link");
        for repo in [&r, &r2] {
            meta.put_manifest(repo, &m, body.clone(), &summary, &[], References::OnDemand)
                .await
                .expect("put")
                .expect("accepted");
        }
        let tx = meta.db().begin_write().expect("tx");
        tx.delete_table(BLOB_LINKS).expect("drop the index");
        tx.delete_table(MANIFEST_HOLDERS).expect("drop the index");
        tx.open_table(SCHEMA)
            .expect("t")
            .insert("registry", 2)
            .expect("insert");
        tx.commit().expect("commit");
    }
    let meta = RedbMeta::open(&path).expect("upgrade");
    // A manifest two repositories held before the index keeps its content
    // when GC takes it from one.
    let view = meta.gc_view(&r).await.expect("view");
    let at = view.manifests[&m].0;
    let seen = Seen {
        digest: m.clone(),
        at,
    };
    assert_eq!(
        meta.gc_sweep_manifests(&r, &[seen], u64::MAX)
            .await
            .expect("sweep"),
        vec![m.clone()]
    );
    assert!(meta.get_manifest(&r2, &m).await.expect("get").is_some());
    assert!(
        meta.gc_drop_blobs(std::slice::from_ref(&d), u64::MAX)
            .await
            .expect("drop")
            .is_empty(),
        "a link written before the index keeps its blob"
    );
    assert!(meta.unlink_blob(&r, &d).await.expect("unlink"));
    assert_eq!(
        meta.gc_drop_blobs(std::slice::from_ref(&d), u64::MAX)
            .await
            .expect("drop")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
    crate::meta::conformance::suite(std::sync::Arc::new(meta)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_with_a_read_cache_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = RedbMeta::open(&dir.path().join("berth.redb"))
        .expect("open")
        .with_read_cache(1 << 20);
    crate::meta::conformance::suite(std::sync::Arc::new(meta)).await;
}

/// What was read since the last write is answered from memory (a row
/// removed behind the store's back is still served), and the next write
/// through the store, whatever it touches, drops it all.
#[tokio::test]
async fn reads_since_the_last_write_are_served_from_memory_until_a_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = RedbMeta::open(&dir.path().join("berth.redb"))
        .expect("open")
        .with_read_cache(1 << 20);
    let r: RepoName = "team/app".parse().expect("name");
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::sha256_of(b"{}").to_string(), "size": 2},
            "layers": [],
        }))
        .expect("json"),
    );
    let summary =
        crate::oci::manifest::decode(crate::oci::media::OCI_MANIFEST, &body).expect("manifest");
    let m = Digest::sha256_of(&body);
    let v1: crate::oci::Tag = "v1".parse().expect("tag");
    meta.put_manifest(
        &r,
        &m,
        body.clone(),
        &summary,
        std::slice::from_ref(&v1),
        References::OnDemand,
    )
    .await
    .expect("put")
    .expect("accepted");
    let layer = Digest::sha256_of(b"abc");
    meta.record_and_link(&r, &layer, 3).await.expect("link");

    // Read once: cached.
    let got = meta.manifest_by_tag(&r, &v1).await.expect("get");
    assert_eq!(got.map(|g| g.bytes), Some(body.clone()));
    assert_eq!(meta.linked_blob(&r, &layer).await.expect("link"), Some(3));

    // Rows removed without the store knowing: still served from memory.
    {
        let tx = meta.db().begin_write().expect("tx");
        tx.open_table(TAGS)
            .expect("t")
            .remove((r.as_str(), "v1"))
            .expect("remove");
        tx.open_table(MANIFESTS)
            .expect("t")
            .remove((r.as_str(), m.to_string().as_str()))
            .expect("remove");
        tx.open_table(REPO_BLOBS)
            .expect("t")
            .remove((r.as_str(), layer.to_string().as_str()))
            .expect("remove");
        tx.commit().expect("commit");
    }
    assert_eq!(
        meta.resolve_tag(&r, &v1).await.expect("tag"),
        Some(m.clone())
    );
    assert!(meta.get_manifest(&r, &m).await.expect("get").is_some());
    assert_eq!(meta.linked_blob(&r, &layer).await.expect("link"), Some(3));

    // A write of anything at all (here: a tag that does not exist) drops
    // every cached read; what the file holds is read again.
    let other: crate::oci::Tag = "other".parse().expect("tag");
    assert!(!meta.delete_tag(&r, &other).await.expect("delete"));
    assert_eq!(meta.resolve_tag(&r, &v1).await.expect("tag"), None);
    assert!(meta.get_manifest(&r, &m).await.expect("get").is_none());
    assert_eq!(meta.linked_blob(&r, &layer).await.expect("link"), None);

    // A write that panics part way (perhaps after its commit) drops them
    // too: the next read goes to the file.
    meta.record_and_link(&r, &layer, 3).await.expect("link");
    assert_eq!(meta.linked_blob(&r, &layer).await.expect("link"), Some(3));
    {
        let tx = meta.db().begin_write().expect("tx");
        tx.open_table(REPO_BLOBS)
            .expect("t")
            .remove((r.as_str(), layer.to_string().as_str()))
            .expect("remove");
        tx.commit().expect("commit");
    }
    assert_eq!(meta.linked_blob(&r, &layer).await.expect("link"), Some(3));
    let err = meta
        .write(|_| -> Result<()> { panic!("a write that fails part way") })
        .await
        .expect_err("panicked");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(meta.linked_blob(&r, &layer).await.expect("link"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_account_conformance_suite() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
    let accounts = meta.accounts().expect("accounts");
    crate::auth::store::conformance::suite(std::sync::Arc::new(accounts)).await;
}

/// Users and robots as berth wrote them before instance ids existed get
/// one when the accounts are opened, written back once.
#[tokio::test]
async fn account_records_without_an_instance_id_get_one_when_opened() {
    use crate::auth::store::AccountStore;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("a.redb");
    {
        let db = Database::create(&path).expect("db");
        let tx = db.begin_write().expect("tx");
        let user = serde_json::json!({"name": "old", "hash": "h", "admin": true, "must_reset": false, "created": 1});
        let robot = serde_json::json!({"name": "robot$p+ci", "project": "p", "hash": "h", "push": true, "expires_at": null, "revoked": false, "created": 1});
        tx.open_table(accounts::USERS)
            .expect("users")
            .insert("old", serde_json::to_vec(&user).expect("json").as_slice())
            .expect("insert");
        tx.open_table(accounts::ROBOTS)
            .expect("robots")
            .insert(
                "robot$p+ci",
                serde_json::to_vec(&robot).expect("json").as_slice(),
            )
            .expect("insert");
        tx.commit().expect("commit");
    }
    let ids =
        |r: crate::auth::store::AccountRecords| (r.users[0].id.clone(), r.robots[0].id.clone());
    let first = {
        let meta = RedbMeta::open(&path).expect("open");
        let records = meta
            .accounts()
            .expect("accounts")
            .load()
            .await
            .expect("load");
        assert!(records.users[0].admin && records.users[0].hash == "h");
        ids(records)
    };
    assert!(!first.0.is_empty() && !first.1.is_empty());
    let meta = RedbMeta::open(&path).expect("reopen");
    let again = meta
        .accounts()
        .expect("accounts")
        .load()
        .await
        .expect("load");
    assert_eq!(ids(again), first, "the ids stay what they were given");
}

/// A database from before usage was counted (format 2) has its projects'
/// usage counted from their links and manifests when it is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_format_has_its_usage_counted_when_opened() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("berth.redb");
    let (a, b): (crate::oci::RepoName, crate::oci::RepoName) = (
        "old/a".parse().expect("name"),
        "old/b".parse().expect("name"),
    );
    {
        let meta = RedbMeta::open(&path).expect("new database");
        let d = Digest::sha256_of(b"old blob");
        meta.record_and_link(&a, &d, 8).await.expect("record");
        meta.link_blob(&b, &d).await.expect("link");
        meta.record_and_link(&b, &Digest::sha256_of(b"other"), 5)
            .await
            .expect("record");
        // As format 2 left it: no counts at all.
        let tx = meta.db().begin_write().expect("tx");
        tx.delete_table(usage::PROJECT_CONTENT).expect("drop");
        tx.delete_table(usage::PROJECT_USAGE).expect("drop");
        tx.open_table(SCHEMA)
            .expect("t")
            .insert("registry", 2)
            .expect("insert");
        tx.commit().expect("commit");
    }
    let meta = RedbMeta::open(&path).expect("upgraded");
    assert_eq!(meta.quota_now("old").expect("quota").usage, 13);
    let r = meta.recount_usage_now("old").expect("recount");
    assert_eq!((r.counted, r.recounted), (13, 13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_token_keys_pass_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
    let store = meta
        .token_keys(&dir.path().join("token.key"))
        .expect("keys");
    let again = meta
        .token_keys(&dir.path().join("token.key"))
        .expect("keys");
    crate::auth::token_keys_conformance::suite(
        std::sync::Arc::new(store),
        vec![std::sync::Arc::new(again)],
    )
    .await;
}

/// The key an earlier release kept in `token.key` becomes the first key,
/// so the tokens it signed stay valid; the file goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_key_file_of_an_earlier_release_is_taken_over() {
    use crate::auth::token_keys::TokenKeyStore;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("token.key");
    std::fs::write(&file, [7u8; 32]).expect("write");
    let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
    let (keys, _) = meta
        .token_keys(&file)
        .expect("keys")
        .keys()
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].secret, vec![7u8; 32]);
    assert!(!file.exists(), "no longer needed");
    // Taken over once: a file appearing later changes nothing.
    std::fs::write(&file, [8u8; 32]).expect("write");
    let (again, _) = meta
        .token_keys(&file)
        .expect("keys")
        .keys()
        .await
        .expect("keys");
    assert_eq!(again, keys);
}
