//! Manifests, tags and referrers.

use ::redb::ReadableTable;

use super::blobs::ensure_repo;
use super::usage::{check, check_immutable, hold, release, tags_of};
use super::{
    corrupt, decode_summary, parse_digest, RedbMeta, BLOBS, HIGH, MANIFESTS, MANIFEST_BYTES,
    MANIFEST_HOLDERS, MANIFEST_REFS, REFERRERS, REPO_BLOBS, TAGS,
};
use crate::meta::read_cache::Lookup;
use crate::meta::{now, BadReference, MetaError, OutboxEvent, References, Result, StoredManifest};
use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};

impl RedbMeta {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_manifest_now(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: &[u8],
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
        event: Option<&OutboxEvent>,
    ) -> Result<std::result::Result<u64, BadReference>> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        let t = now();
        let linked = match references {
            References::Required => match check_references(&tx, repo, summary)? {
                Ok(linked) => linked,
                Err(bad) => return Ok(Err(bad)),
            },
            References::OnDemand => Vec::new(),
        };
        {
            let current = tx.open_table(TAGS)?;
            for tag in tags {
                let moved = current
                    .get((repo.as_str(), tag.as_str()))?
                    .is_some_and(|v| v.value() != key);
                if moved {
                    check_immutable(&tx, repo, tag.as_str(), "pushing a different manifest to")?;
                }
            }
        }
        let new_here = tx
            .open_table(MANIFESTS)?
            .get((repo.as_str(), key.as_str()))?
            .is_none();
        if new_here {
            check(&tx, repo.project(), &[(&key, bytes.len() as u64)])?;
            hold(&tx, repo.project(), &key, bytes.len() as u64)?;
        }
        {
            // Referencing a blob refreshes its link: GC's grace window runs from here.
            let mut links = tx.open_table(REPO_BLOBS)?;
            for b in linked {
                links.insert((repo.as_str(), b.as_str()), t)?;
            }
        }
        tx.open_table(MANIFEST_BYTES)?.insert(key.as_str(), bytes)?;
        let refs = serde_json::to_vec(summary).map_err(corrupt)?;
        tx.open_table(MANIFEST_REFS)?
            .insert(key.as_str(), refs.as_slice())?;
        tx.open_table(MANIFESTS)?.insert(
            (repo.as_str(), key.as_str()),
            (summary.media_type.as_str(), t),
        )?;
        tx.open_table(MANIFEST_HOLDERS)?
            .insert((key.as_str(), repo.as_str()), ())?;
        {
            let mut tt = tx.open_table(TAGS)?;
            for tag in tags {
                tt.insert((repo.as_str(), tag.as_str()), key.as_str())?;
            }
        }
        if let Some(subject) = &summary.subject {
            tx.open_table(REFERRERS)?.insert(
                (
                    repo.as_str(),
                    subject.digest.to_string().as_str(),
                    key.as_str(),
                ),
                (),
            )?;
        }
        ensure_repo(&tx, repo, t)?;
        let dropped = match event {
            Some(e) => super::webhooks::queue_in(&tx, e, t)?,
            None => 0,
        };
        tx.commit()?;
        Ok(Ok(dropped))
    }

    pub(super) fn resolve_tag_now(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let ticket = match self.reads().map(|c| c.tag(repo.as_str(), tag.as_str())) {
            Some(Lookup::Hit(d)) => return Ok(Some(d)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let found = tag_in(&self.db().begin_read()?, repo, tag)?;
        if let (Some(c), Some(t), Some(d)) = (self.reads(), ticket, &found) {
            c.put_tag(t, repo.as_str(), tag.as_str(), d);
        }
        Ok(found)
    }

    pub(super) fn get_manifest_now(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        let ticket = match self.reads().map(|c| c.manifest(repo.as_str(), digest)) {
            Some(Lookup::Hit(m)) => return Ok(Some(m)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let found = manifest_in(&self.db().begin_read()?, repo, digest)?;
        if let (Some(c), Some(t), Some(m)) = (self.reads(), ticket, &found) {
            c.put_manifest(t, repo.as_str(), m);
        }
        Ok(found)
    }

    /// The manifest `tag` points to, in one read transaction (or from the
    /// read cache).
    pub(super) fn manifest_by_tag_now(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>> {
        let ticket = match self.reads().map(|c| c.tag(repo.as_str(), tag.as_str())) {
            Some(Lookup::Hit(d)) => return self.get_manifest_now(repo, &d),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let tx = self.db().begin_read()?;
        let Some(digest) = tag_in(&tx, repo, tag)? else {
            return Ok(None);
        };
        let found = manifest_in(&tx, repo, &digest)?;
        // Both read in one transaction begun after the ticket was taken.
        if let (Some(c), Some(t), Some(m)) = (self.reads(), ticket, &found) {
            c.put_tag(t, repo.as_str(), tag.as_str(), &digest);
            c.put_manifest(t, repo.as_str(), m);
        }
        Ok(found)
    }

    pub(super) fn manifest_summary_now(&self, digest: &Digest) -> Result<Option<ManifestSummary>> {
        let tx = self.db().begin_read()?;
        let v = tx
            .open_table(MANIFEST_REFS)?
            .get(digest.to_string().as_str())?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
            .transpose()
    }

    pub(super) fn delete_manifest_now(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let key = digest.to_string();
        for t in tags_of(&tx, repo, &key)? {
            check_immutable(&tx, repo, &t, "deleting the manifest tagged")?;
        }
        let removed = tx
            .open_table(MANIFESTS)?
            .remove((repo.as_str(), key.as_str()))?
            .is_some();
        if removed {
            release(&tx, repo.project(), &key)?;
            tx.open_table(MANIFEST_HOLDERS)?
                .remove((key.as_str(), repo.as_str()))?;
            let mut tags = tx.open_table(TAGS)?;
            let doomed: Vec<String> = tags
                .range((repo.as_str(), "")..(repo.as_str(), HIGH))?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| v.value() == key)
                .map(|(k, _)| k.value().1.to_string())
                .collect();
            for t in doomed {
                tags.remove((repo.as_str(), t.as_str()))?;
            }
            let summary = tx
                .open_table(MANIFEST_REFS)?
                .get(key.as_str())?
                .and_then(|v| decode_summary(v.value()));
            if let Some(subject) = summary.and_then(|s| s.subject) {
                tx.open_table(REFERRERS)?.remove((
                    repo.as_str(),
                    subject.digest.to_string().as_str(),
                    key.as_str(),
                ))?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    pub(super) fn delete_tag_now(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let tx = self.db().begin_write()?;
        let exists = tx
            .open_table(TAGS)?
            .get((repo.as_str(), tag.as_str()))?
            .is_some();
        if exists {
            check_immutable(&tx, repo, tag.as_str(), "deleting")?;
        }
        let removed = tx
            .open_table(TAGS)?
            .remove((repo.as_str(), tag.as_str()))?
            .is_some();
        tx.commit()?;
        Ok(removed)
    }

    pub(super) fn linked_manifest_type_now(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let tx = self.db().begin_read()?;
        let key = digest.to_string();
        let v = tx
            .open_table(MANIFESTS)?
            .get((repo.as_str(), key.as_str()))?
            .map(|v| v.value().0.to_string());
        Ok(v)
    }

    pub(super) fn indexes_containing_now(
        &self,
        repo: &RepoName,
        child: &Digest,
    ) -> Result<Vec<Digest>> {
        let tx = self.db().begin_read()?;
        let manifests = tx.open_table(MANIFESTS)?;
        let summaries = tx.open_table(MANIFEST_REFS)?;
        let mut out = Vec::new();
        for r in manifests.range((repo.as_str(), "")..(repo.as_str(), HIGH))? {
            let (k, v) = r?;
            if crate::oci::media::manifest_kind(v.value().0)
                != Some(crate::oci::media::ManifestKind::Index)
            {
                continue;
            }
            let digest = k.value().1.to_string();
            let Some(summary) = summaries
                .get(digest.as_str())?
                .and_then(|v| decode_summary(v.value()))
            else {
                continue;
            };
            if summary.manifests.iter().any(|m| &m.digest == child) {
                out.push(parse_digest(&digest)?);
            }
        }
        Ok(out)
    }

    pub(super) fn referrers_now(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>> {
        let tx = self.db().begin_read()?;
        let refs = tx.open_table(REFERRERS)?;
        let manifests = tx.open_table(MANIFESTS)?;
        let bytes = tx.open_table(MANIFEST_BYTES)?;
        let summaries = tx.open_table(MANIFEST_REFS)?;
        let s = subject.to_string();
        let mut out = Vec::new();
        for r in refs.range((repo.as_str(), s.as_str(), "")..(repo.as_str(), s.as_str(), HIGH))? {
            let (k, _) = r?;
            let referrer = k.value().2.to_string();
            let Some(mt) = manifests
                .get((repo.as_str(), referrer.as_str()))?
                .map(|v| v.value().0.to_string())
            else {
                continue;
            };
            let size = bytes
                .get(referrer.as_str())?
                .map(|v| v.value().len() as u64)
                .unwrap_or(0);
            let summary = summaries
                .get(referrer.as_str())?
                .and_then(|v| decode_summary(v.value()));
            out.push(Descriptor {
                media_type: mt,
                digest: parse_digest(&referrer)?,
                size,
                artifact_type: summary.as_ref().and_then(|s| s.artifact_type.clone()),
                annotations: summary.and_then(|s| s.annotations),
                platform: None,
                urls: None,
            });
        }
        Ok(out)
    }
}

/// The reference check of a manifest push: every config and layer is linked
/// to `repo` with the size its descriptor declares, except non-distributable
/// layers with URLs (see `Descriptor::fetched_from_urls`), which may be
/// absent; every index child is a manifest in `repo`, with its size. Returns
/// the digests of the linked blobs the manifest references.
fn check_references(
    tx: &::redb::WriteTransaction,
    repo: &RepoName,
    summary: &ManifestSummary,
) -> Result<std::result::Result<Vec<String>, BadReference>> {
    let links = tx.open_table(REPO_BLOBS)?;
    let blobs = tx.open_table(BLOBS)?;
    let mut linked = Vec::with_capacity(summary.blobs.len());
    for b in &summary.blobs {
        let bk = b.digest.to_string();
        let size = match links.get((repo.as_str(), bk.as_str()))? {
            Some(_) => blobs.get(bk.as_str())?.map(|v| v.value().0),
            None => None,
        };
        match size {
            Some(actual) if actual != b.size => {
                return Ok(Err(BadReference::Size {
                    digest: b.digest.clone(),
                    declared: b.size,
                    actual,
                }))
            }
            Some(_) => linked.push(bk),
            None if b.fetched_from_urls() => {}
            None => return Ok(Err(BadReference::Blob(b.digest.clone()))),
        }
    }
    let manifests = tx.open_table(MANIFESTS)?;
    let contents = tx.open_table(MANIFEST_BYTES)?;
    for m in &summary.manifests {
        let mk = m.digest.to_string();
        if manifests.get((repo.as_str(), mk.as_str()))?.is_none() {
            return Ok(Err(BadReference::Manifest(m.digest.clone())));
        }
        let actual = contents
            .get(mk.as_str())?
            .map(|v| v.value().len() as u64)
            .ok_or_else(|| MetaError::Corrupt(format!("manifest {mk} has no content")))?;
        if actual != m.size {
            return Ok(Err(BadReference::Size {
                digest: m.digest.clone(),
                declared: m.size,
                actual,
            }));
        }
    }
    Ok(Ok(linked))
}

fn tag_in(tx: &::redb::ReadTransaction, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
    let v = tx
        .open_table(TAGS)?
        .get((repo.as_str(), tag.as_str()))?
        .map(|v| v.value().to_string());
    v.map(|s| parse_digest(&s)).transpose()
}

fn manifest_in(
    tx: &::redb::ReadTransaction,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<StoredManifest>> {
    let key = digest.to_string();
    let Some(media_type) = tx
        .open_table(MANIFESTS)?
        .get((repo.as_str(), key.as_str()))?
        .map(|v| v.value().0.to_string())
    else {
        return Ok(None);
    };
    let bytes = tx
        .open_table(MANIFEST_BYTES)?
        .get(key.as_str())?
        .map(|v| bytes::Bytes::copy_from_slice(v.value()))
        .ok_or_else(|| MetaError::Corrupt(format!("manifest {key} has no content")))?;
    Ok(Some(StoredManifest {
        digest: digest.clone(),
        media_type,
        bytes,
    }))
}
