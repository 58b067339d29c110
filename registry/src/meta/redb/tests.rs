//! The embedded store: its format version, and the conformance suite.

use ::redb::Database;

use super::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tmp");
    let meta = RedbMeta::open(&dir.path().join("berth.redb")).expect("open");
    crate::meta::conformance::suite(std::sync::Arc::new(meta)).await;
}
