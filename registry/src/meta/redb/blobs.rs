//! Blob records and repository links.

use ::redb::{ReadableTable, WriteTransaction};

use super::{run_step, RedbMeta, BLOBS, BLOB_LINKS, HIGH, REPOS, REPO_BLOBS};
use crate::meta::{now, BlobRecord, LinkOutcome, Result, StoreStep};
use crate::oci::{Digest, RepoName};

impl RedbMeta {
    pub(super) fn linked_blob_now(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let tx = self.db().begin_read()?;
        let key = digest.to_string();
        if tx
            .open_table(REPO_BLOBS)?
            .get((repo.as_str(), key.as_str()))?
            .is_none()
        {
            return Ok(None);
        }
        Ok(tx
            .open_table(BLOBS)?
            .get(key.as_str())?
            .map(|v| v.value().0))
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
        let known = tx.open_table(BLOBS)?.get(key.as_str())?.is_some();
        if !known {
            return Ok(LinkOutcome::NotInStore);
        }
        let t = now();
        link(&tx, repo.as_str(), &key, t)?;
        ensure_repo(&tx, repo, t)?;
        tx.commit()?;
        Ok(LinkOutcome::Linked)
    }

    /// Records and links a blob, running `place` first under the same write
    /// transaction when given. True when the record is new.
    pub(super) fn record_and_link_now(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        place: Option<(&tokio::runtime::Handle, StoreStep)>,
    ) -> Result<bool> {
        let tx = self.db().begin_write()?;
        if let Some((handle, step)) = place {
            run_step(handle, step, &format!("placing blob {digest} in the store"))?;
        }
        let key = digest.to_string();
        let t = now();
        let new = {
            let mut blobs = tx.open_table(BLOBS)?;
            let existing = blobs.get(key.as_str())?.map(|v| v.value());
            if existing.is_none() {
                blobs.insert(key.as_str(), (size, t))?;
            }
            existing.is_none()
        };
        link(&tx, repo.as_str(), &key, t)?;
        ensure_repo(&tx, repo, t)?;
        tx.commit()?;
        Ok(new)
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
        link(&tx, to.as_str(), &key, t)?;
        ensure_repo(&tx, to, t)?;
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

/// Links `digest` (its key) to `repo` at `t`, in both directions.
pub(super) fn link(tx: &WriteTransaction, repo: &str, digest: &str, t: u64) -> Result<()> {
    tx.open_table(REPO_BLOBS)?.insert((repo, digest), t)?;
    tx.open_table(BLOB_LINKS)?.insert((digest, repo), ())?;
    Ok(())
}

/// Removes a link in both directions; false when there was none.
pub(super) fn unlink(tx: &WriteTransaction, repo: &str, digest: &str) -> Result<bool> {
    tx.open_table(BLOB_LINKS)?.remove((digest, repo))?;
    Ok(tx.open_table(REPO_BLOBS)?.remove((repo, digest))?.is_some())
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
