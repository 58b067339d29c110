//! Blob records and repository links.

use ::redb::{ReadableTable, WriteTransaction};

use super::usage::{check, hold, project_of, release};
use super::{run_step, RedbMeta, BLOBS, BLOB_LINKS, HIGH, REPOS, REPO_BLOBS};
use crate::meta::read_cache::Lookup;
use crate::meta::{now, BlobRecord, LinkOutcome, Result, StoreStep};
use crate::oci::{Digest, RepoName};

impl RedbMeta {
    pub(super) fn linked_blob_now(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let ticket = match self.reads().map(|c| c.link(repo.as_str(), digest)) {
            Some(Lookup::Hit(size)) => return Ok(Some(size)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let tx = self.db().begin_read()?;
        let key = digest.to_string();
        if tx
            .open_table(REPO_BLOBS)?
            .get((repo.as_str(), key.as_str()))?
            .is_none()
        {
            return Ok(None);
        }
        let size = tx
            .open_table(BLOBS)?
            .get(key.as_str())?
            .map(|v| v.value().0);
        if let (Some(c), Some(t), Some(size)) = (self.reads(), ticket, size) {
            c.put_link(t, repo.as_str(), digest, size);
        }
        Ok(size)
    }

    pub(super) fn blob_size_now(&self, digest: &Digest) -> Result<Option<u64>> {
        let tx = self.db().begin_read()?;
        Ok(tx
            .open_table(BLOBS)?
            .get(digest.to_string().as_str())?
            .map(|v| v.value().0))
    }

    pub(super) fn link_blob_now(&self, repo: &RepoName, digest: &Digest) -> Result<LinkOutcome> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let Some(size) = tx
            .open_table(BLOBS)?
            .get(key.as_str())?
            .map(|v| v.value().0)
        else {
            return Ok(LinkOutcome::NotInStore);
        };
        let t = now();
        link(&tx, repo, &key, size, t)?;
        tx.commit()?;
        Ok(LinkOutcome::Linked)
    }

    pub(super) fn mount_now(
        &self,
        to: &RepoName,
        digest: &Digest,
        sources: &[String],
    ) -> Result<Option<u64>> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let Some(size) = tx
            .open_table(BLOBS)?
            .get(key.as_str())?
            .map(|v| v.value().0)
        else {
            return Ok(None);
        };
        let mut found = false;
        {
            let links = tx.open_table(REPO_BLOBS)?;
            for from in sources {
                if links.get((from.as_str(), key.as_str()))?.is_some() {
                    found = true;
                    break;
                }
            }
        }
        if !found {
            return Ok(None);
        }
        let t = now();
        link(&tx, to, &key, size, t)?;
        tx.commit()?;
        Ok(Some(size))
    }

    pub(super) fn unlink_blob_now(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let removed = unlink(&tx, repo.as_str(), &digest.to_string())?;
        tx.commit()?;
        Ok(removed)
    }

    pub(super) fn forget_blob_now(
        &self,
        digest: &Digest,
        handle: &tokio::runtime::Handle,
        delete: StoreStep,
    ) -> Result<Option<u64>> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let Some(size) = tx
            .open_table(BLOBS)?
            .remove(key.as_str())?
            .map(|v| v.value().0)
        else {
            return Ok(None);
        };
        for r in linking_repos(&tx, &key)? {
            unlink(&tx, &r, &key)?;
        }
        run_step(
            handle,
            delete,
            &format!("deleting blob {digest} from the store"),
        )?;
        tx.commit()?;
        Ok(Some(size))
    }

    pub(super) fn blob_records_page_now(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(BLOBS)?;
        let after = after.map(|d| d.to_string());
        let rows = match &after {
            Some(a) => t.range::<&str>((
                std::ops::Bound::Excluded(a.as_str()),
                std::ops::Bound::Unbounded,
            ))?,
            None => t.range::<&str>(..)?,
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for r in rows {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r?;
            if let Ok(digest) = k.value().parse() {
                let (size, recorded_at) = v.value();
                out.push(BlobRecord {
                    digest,
                    size,
                    recorded_at,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn blob_records_now(&self) -> Result<Vec<BlobRecord>> {
        let tx = self.db().begin_read()?;
        let t = tx.open_table(BLOBS)?;
        let mut out = Vec::new();
        for r in t.iter()? {
            let (k, v) = r?;
            if let Ok(digest) = k.value().parse() {
                let (size, recorded_at) = v.value();
                out.push(BlobRecord {
                    digest,
                    size,
                    recorded_at,
                });
            }
        }
        Ok(out)
    }
}

pub(super) fn ensure_repo(tx: &WriteTransaction, repo: &RepoName, t: u64) -> Result<()> {
    let mut repos = tx.open_table(REPOS)?;
    if repos.get(repo.as_str())?.is_none() {
        repos.insert(repo.as_str(), t)?;
    }
    Ok(())
}

/// Links a blob of `size` (its key) to `repo` at `t` (or refreshes the
/// link's time), in both directions; checking and counting it in the
/// project's usage when the link is new.
pub(super) fn link(
    tx: &WriteTransaction,
    repo: &RepoName,
    key: &str,
    size: u64,
    t: u64,
) -> Result<()> {
    let mut links = tx.open_table(REPO_BLOBS)?;
    if links.get((repo.as_str(), key))?.is_none() {
        check(tx, repo.project(), &[(key, size)])?;
        hold(tx, repo.project(), key, size)?;
    }
    links.insert((repo.as_str(), key), t)?;
    drop(links);
    tx.open_table(BLOB_LINKS)?
        .insert((key, repo.as_str()), ())?;
    ensure_repo(tx, repo, t)
}

/// Removes a link in both directions, releasing it from the project's
/// usage; false when there was none.
pub(super) fn unlink(tx: &WriteTransaction, repo: &str, digest: &str) -> Result<bool> {
    tx.open_table(BLOB_LINKS)?.remove((digest, repo))?;
    let removed = tx.open_table(REPO_BLOBS)?.remove((repo, digest))?.is_some();
    if removed {
        release(tx, project_of(repo), digest)?;
    }
    Ok(removed)
}

/// The repositories that link `digest` (its key), from the reverse index.
pub(super) fn linking_repos(tx: &WriteTransaction, digest: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in tx
        .open_table(BLOB_LINKS)?
        .range((digest, "")..(digest, HIGH))?
    {
        out.push(row?.0.value().1.to_string());
    }
    Ok(out)
}
