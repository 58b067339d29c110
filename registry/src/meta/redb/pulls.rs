//! Pull counts (`pulls`) and the tag listing with push times.

use ::redb::ReadableTable;

use super::{RedbMeta, HIGH, MANIFESTS, PULLS, TAGS};
use crate::meta::{PullCount, Result, TagRecord};
use crate::oci::RepoName;

impl RedbMeta {
    pub(super) fn pulls_record_now(&self, counts: &[PullCount]) -> Result<()> {
        let tx = self.db().begin_write()?;
        {
            let mut t = tx.open_table(PULLS)?;
            for c in counts {
                let key = (c.repository.as_str(), c.digest.as_str());
                let (n, last) = t.get(key)?.map(|v| v.value()).unwrap_or((0, 0));
                t.insert(key, (n.saturating_add(c.count), last.max(c.last_pulled_at)))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn pulls_now(&self, repo: &RepoName) -> Result<Vec<PullCount>> {
        let tx = self.db().begin_read()?;
        let r = repo.as_str();
        let mut out = Vec::new();
        for row in tx.open_table(PULLS)?.range((r, "")..(r, HIGH))? {
            let (k, v) = row?;
            let (count, last_pulled_at) = v.value();
            out.push(PullCount {
                repository: r.to_string(),
                digest: k.value().1.to_string(),
                count,
                last_pulled_at,
            });
        }
        Ok(out)
    }

    pub(super) fn tag_records_now(&self, repo: &RepoName) -> Result<Vec<TagRecord>> {
        let tx = self.db().begin_read()?;
        let r = repo.as_str();
        let manifests = tx.open_table(MANIFESTS)?;
        let mut out = Vec::new();
        for row in tx.open_table(TAGS)?.range((r, "")..(r, HIGH))? {
            let (k, v) = row?;
            let digest = v.value().to_string();
            let Some((media_type, pushed_at)) = manifests
                .get((r, digest.as_str()))?
                .map(|m| (m.value().0.to_string(), m.value().1))
            else {
                continue; // a tag whose manifest is gone (not written so)
            };
            out.push(TagRecord {
                tag: k.value().1.to_string(),
                digest,
                media_type,
                pushed_at,
            });
        }
        Ok(out)
    }
}
