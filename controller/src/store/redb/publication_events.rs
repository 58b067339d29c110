//! The outbox of publication changes: each change of a publication's state
//! (an app's, or a resource's on a node: `resource_publications::put_rp`
//! and `remove_rp`) is appended here in the transaction that writes the
//! publication, so a
//! crash right after the write loses none, and taken off only once whoever
//! passes them on (the registry's webhooks) has queued them durably.
//!
//! Owns: `ctl_publication_events` and the "publication_events" counter in
//! `ctl_meta` that numbers the changes (never reused, so an acknowledgment
//! cannot take off a change it did not see).

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{decode, encode, RedbControllerStore, Result, META};
use crate::model::Publication;
use crate::ports::PublicationChange;
use crate::store::changes as events;
use crate::store::RecordedChange;

pub(super) const PUBLICATION_EVENTS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("ctl_publication_events");

const COUNTER: &str = "publication_events";

/// A recorded change as it is stored (every backend stores this form).
#[derive(Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) id: String,
    pub(crate) change: PublicationChange,
}

/// Appends `change` to the outbox inside `txn`.
pub(super) fn record(txn: &WriteTransaction, change: PublicationChange) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    let seq = meta.get(COUNTER)?.map(|g| g.value()).unwrap_or(0) + 1;
    meta.insert(COUNTER, seq)?;
    let id = format!("{:032x}", rand::random::<u128>());
    let mut t = txn.open_table(PUBLICATION_EVENTS)?;
    t.insert(seq, encode(&Stored { id, change }).as_slice())?;
    Ok(())
}

/// Records each change storing `p` over `before` made, if any.
pub(super) fn record_stored(
    txn: &WriteTransaction,
    before: &Publication,
    p: &Publication,
) -> Result<()> {
    for c in events::stored(before, p) {
        record(txn, c)?;
    }
    Ok(())
}

/// Records what a publish or unpublish request storing `p` changed, if anything.
pub(super) fn record_requested(txn: &WriteTransaction, p: &Publication) -> Result<()> {
    match events::requested(p) {
        Some(c) => record(txn, c),
        None => Ok(()),
    }
}

impl RedbControllerStore {
    /// The oldest `limit` recorded changes, oldest first.
    pub fn publication_events(&self, limit: usize) -> Result<Vec<RecordedChange>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PUBLICATION_EVENTS)?;
        let mut out = Vec::new();
        for item in t.iter()?.take(limit) {
            let (k, v) = item?;
            let s: Stored = decode("ctl_publication_events", v.value())?;
            out.push(RecordedChange {
                seq: k.value(),
                id: s.id,
                change: s.change,
            });
        }
        Ok(out)
    }

    /// Takes off the recorded changes up to and including `through`.
    pub fn ack_publication_events(&self, through: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(PUBLICATION_EVENTS)?;
            let done: Vec<u64> = t
                .range(..=through)?
                .map(|item| item.map(|(k, _)| k.value()))
                .collect::<std::result::Result<_, _>>()?;
            for k in done {
                t.remove(k)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
