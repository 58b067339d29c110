//! Embedded stores for the store's tests (and the shared fixtures).

use std::sync::Arc;

use redb::Database;

use crate::sealed_records::RecordSealer;

use super::RedbControllerStore;
pub(crate) use crate::store::fixtures::*;

pub(crate) fn temp_store() -> (tempfile::TempDir, RedbControllerStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::create(dir.path().join("berth.redb")).expect("db");
    let store = RedbControllerStore::open(Arc::new(db), test_sealer()).expect("open");
    (dir, store)
}

pub(super) fn test_sealer() -> RecordSealer {
    RecordSealer::new(Some(crate::secrets::SecretBox::new(&[9u8; 32])))
}
