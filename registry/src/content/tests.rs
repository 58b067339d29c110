use super::*;
use crate::oci::Algorithm;

/// A fill's ingest id is fixed: a directory a crash left before the ingest's
/// state was written must not block every later fill of that blob.
#[tokio::test]
async fn an_ingest_left_without_state_is_begun_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ingest = tmp.path().join("uploads");
    let store = ContentStore::local(&tmp.path().join("blobs"), &ingest).expect("store");
    let id = "fill-sha256-abc";
    std::fs::create_dir_all(store.ingest_path(id)).expect("leftover");
    std::fs::write(store.ingest_path(id).join("data"), b"partial").expect("data");
    assert!(store.ingest_state(id).await.expect("state").is_none());
    let ing = store
        .begin_ingest(id, "proj/repo", Algorithm::Sha256)
        .await
        .expect("begun again");
    assert_eq!(ing.offset(), 0);
    // A live ingest (its state written) is not taken over.
    drop(ing);
    assert!(store
        .begin_ingest(id, "proj/repo", Algorithm::Sha256)
        .await
        .is_err());
}
