//! Repositories and listings: tags, the catalog, whole-repository deletion.

use ::redb::ReadableTable;

use super::{
    RedbMeta, BLOB_LINKS, HIGH, MANIFESTS, MANIFEST_HOLDERS, PULLS, REFERRERS, REPOS, REPO_BLOBS,
    TAGS,
};
use crate::meta::{Result, TagEntry, Visible};
use crate::oci::RepoName;

impl RedbMeta {
    pub(super) fn repo_exists_now(&self, repo: &RepoName) -> Result<bool> {
        let tx = self.db().begin_read()?;
        Ok(tx.open_table(REPOS)?.get(repo.as_str())?.is_some())
    }

    pub(super) fn tags_now(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(TAGS)?;
        let start = last.unwrap_or("");
        let mut out = Vec::new();
        let mut more = false;
        for r in t.range((repo.as_str(), start)..(repo.as_str(), HIGH))? {
            let (k, _) = r?;
            let tag = k.value().1;
            if last.is_some() && tag == start {
                continue;
            }
            if out.len() == n {
                more = true;
                break;
            }
            out.push(tag.to_string());
        }
        Ok((out, more))
    }

    pub(super) fn tags_with_digests_now(&self, repo: &RepoName) -> Result<Vec<(String, String)>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for r in t.range((repo.as_str(), "")..(repo.as_str(), HIGH))? {
            let (k, v) = r?;
            out.push((k.value().1.to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    pub(super) fn all_tags_now(&self) -> Result<Vec<TagEntry>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(TAGS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            out.push(TagEntry {
                repo: k.value().0.to_string(),
                tag: k.value().1.to_string(),
                digest: v.value().to_string(),
            });
        }
        Ok(out)
    }

    pub(super) fn catalog_now(
        &self,
        last: Option<&str>,
        n: usize,
        visible: Visible<'_>,
    ) -> Result<(Vec<String>, bool)> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPOS)?;
        let mut out = Vec::new();
        let mut more = false;
        for r in t.range(last.unwrap_or("")..)? {
            let (k, _) = r?;
            let name = k.value();
            if Some(name) == last || !visible(name) {
                continue;
            }
            if out.len() == n {
                more = true;
                break;
            }
            out.push(name.to_string());
        }
        Ok((out, more))
    }

    pub(super) fn repos_with_prefix_now(&self, prefix: &str) -> Result<Vec<String>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(REPOS)?;
        let mut out = Vec::new();
        for r in t.range(prefix..)? {
            let (k, _) = r?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    pub(super) fn delete_repo_now(&self, repo: &RepoName) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let r = repo.as_str();
        if tx.open_table(REPOS)?.get(r)?.is_none() {
            return Ok(false);
        }
        // Deleting the repository would delete its immutable tags.
        let tagged = second_keys(tx.open_table(TAGS)?.range((r, "")..(r, HIGH))?);
        for t in &tagged {
            super::usage::check_immutable(&tx, repo, t, "deleting the repository with")?;
        }
        // What the repository held stops counting in its project's usage.
        let mut released = Vec::new();
        {
            let mut t = tx.open_table(REPO_BLOBS)?;
            let mut index = tx.open_table(BLOB_LINKS)?;
            let keys = second_keys(t.range((r, "")..(r, HIGH))?);
            for k in keys {
                t.remove((r, k.as_str()))?;
                index.remove((k.as_str(), r))?;
                released.push(k);
            }
        }
        {
            let mut t = tx.open_table(MANIFESTS)?;
            let mut holders = tx.open_table(MANIFEST_HOLDERS)?;
            let keys = second_keys(t.range((r, "")..(r, HIGH))?);
            for k in keys {
                t.remove((r, k.as_str()))?;
                holders.remove((k.as_str(), r))?;
                released.push(k);
            }
        }
        for k in &released {
            super::usage::release(&tx, repo.project(), k)?;
        }
        {
            let mut t = tx.open_table(TAGS)?;
            let keys = second_keys(t.range((r, "")..(r, HIGH))?);
            for k in keys {
                t.remove((r, k.as_str()))?;
            }
        }
        {
            let mut t = tx.open_table(REFERRERS)?;
            let keys: Vec<(String, String)> = t
                .range((r, "", "")..(r, HIGH, HIGH))?
                .filter_map(|x| {
                    x.ok()
                        .map(|(k, _)| (k.value().1.to_string(), k.value().2.to_string()))
                })
                .collect();
            for (a, b) in keys {
                t.remove((r, a.as_str(), b.as_str()))?;
            }
        }
        {
            let mut t = tx.open_table(PULLS)?;
            let keys = second_keys(t.range((r, "")..(r, HIGH))?);
            for k in keys {
                t.remove((r, k.as_str()))?;
            }
        }
        tx.open_table(REPOS)?.remove(r)?;
        tx.commit()?;
        Ok(true)
    }
}

/// The second components of a range of `(repo, x)` keys.
fn second_keys<V: ::redb::Value + 'static>(
    range: ::redb::Range<'_, (&'static str, &'static str), V>,
) -> Vec<String> {
    range
        .filter_map(|x| x.ok().map(|(k, _)| k.value().1.to_string()))
        .collect()
}
