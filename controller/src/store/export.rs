//! Every controller record as stored, to copy them from one backend to
//! another (`berth migrate`, `berth backup`, `berth restore`):
//! `ControllerStore::export_records` reads them from one snapshot,
//! `import_records` writes them into a store that holds none yet.
//!
//! Owns: the rule that a copy lands only in an empty store, and the count
//! per table a copy is checked by. Must not touch: what the records mean;
//! they travel byte for byte (cluster and node credentials stay sealed
//! with the key that sealed them, so the target needs the same key).

use std::collections::BTreeMap;

use super::rows::Rows;
use super::{Result, StoreError};

/// Every controller record, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerRecords {
    pub(crate) rows: Rows,
}

impl ControllerRecords {
    pub(crate) fn new(rows: Rows) -> Self {
        Self { rows }
    }

    /// How many records each table holds, by table name (every table,
    /// empty ones too, so two counts line up).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        super::rows::TABLES
            .iter()
            .map(|(name, _)| {
                let n = self.rows.tables.get(name).map_or(0, |t| t.len() as u64);
                (name.to_string(), n)
            })
            .collect()
    }

    /// The rows a store holding `held` must hold after the import: these
    /// records, with the store's own counters where these have none.
    /// Refused (`Conflict`) when `held` has any record.
    pub(crate) fn onto(&self, held: &Rows) -> Result<Rows> {
        if let Some((table, rows)) = held.tables.iter().find(|(_, t)| !t.is_empty()) {
            return Err(StoreError::Conflict(format!(
                "the target already holds controller records ({} in {table}); \
                 records are copied only into an empty store",
                rows.len()
            )));
        }
        let mut want = self.rows.clone();
        for (k, v) in &held.meta {
            want.meta.entry(k.clone()).or_insert(*v);
        }
        Ok(want)
    }
}
