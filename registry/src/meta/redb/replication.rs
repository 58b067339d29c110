//! Replication policies, one JSON record per name.

use ::redb::ReadableTable;

use super::{corrupt, RedbMeta, REPLICATIONS};
use crate::meta::{ReplicationPolicy, Result};

impl RedbMeta {
    pub(super) fn replication_put_now(&self, p: &ReplicationPolicy) -> Result<()> {
        let bytes = serde_json::to_vec(p).map_err(corrupt)?;
        let tx = self.db().begin_write()?;
        tx.open_table(REPLICATIONS)?
            .insert(p.name.as_str(), bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn replication_get_now(&self, name: &str) -> Result<Option<ReplicationPolicy>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPLICATIONS)?;
        let v = t.get(name)?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
            .transpose()
    }

    pub(super) fn replications_now(&self) -> Result<Vec<ReplicationPolicy>> {
        let tx = self.db().begin_read()?;
        let mut out = Vec::new();
        for r in tx.open_table(REPLICATIONS)?.iter()? {
            out.push(serde_json::from_slice(r?.1.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    pub(super) fn replication_delete_now(&self, name: &str) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let existed = tx.open_table(REPLICATIONS)?.remove(name)?.is_some();
        tx.commit()?;
        Ok(existed)
    }
}
