//! Retention rules (`retention`: project → JSON RetentionPolicy) and the
//! tag removal a retention run makes.

use ::redb::{ReadableTable, TableDefinition};

use super::usage::check_immutable;
use super::{corrupt, RedbMeta, TAGS};
use crate::meta::retention::RetentionPolicy;
use crate::meta::Result;
use crate::oci::RepoName;

pub(crate) const RETENTION: TableDefinition<&str, &[u8]> = TableDefinition::new("retention");

impl RedbMeta {
    pub(super) fn retention_policy_now(&self, project: &str) -> Result<Option<RetentionPolicy>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(RETENTION)?;
        let v = t.get(project)?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
            .transpose()
    }

    pub(super) fn retention_policies_now(&self) -> Result<Vec<(String, RetentionPolicy)>> {
        let tx = self.db().begin_read()?;
        let mut out = Vec::new();
        for row in tx.open_table(RETENTION)?.iter()? {
            let (k, v) = row?;
            let p = serde_json::from_slice(v.value()).map_err(corrupt)?;
            out.push((k.value().to_string(), p));
        }
        Ok(out)
    }

    pub(super) fn retention_policy_set_now(
        &self,
        project: &str,
        policy: Option<&RetentionPolicy>,
    ) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(RETENTION)?;
            match policy {
                Some(p) => {
                    let json = serde_json::to_vec(p).map_err(corrupt)?;
                    t.insert(project, json.as_slice())?;
                }
                None => {
                    t.remove(project)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn retention_untag_now(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &str,
        override_immutable: bool,
    ) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let current = tx
            .open_table(TAGS)?
            .get((repo.as_str(), tag))?
            .map(|v| v.value().to_string());
        // Moved since the plan (or gone): the plan no longer speaks for it.
        if current.as_deref() != Some(digest) {
            return Ok(false);
        }
        if !override_immutable {
            check_immutable(&tx, repo, tag, "deleting")?;
        }
        tx.open_table(TAGS)?.remove((repo.as_str(), tag))?;
        tx.commit()?;
        Ok(true)
    }
}
