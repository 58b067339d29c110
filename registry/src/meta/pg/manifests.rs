//! Manifests, their content, tags and referrers on PostgreSQL.

use bytes::Bytes;
use deadpool_postgres::Transaction;

use super::blobs::ensure_repo;
use super::changes::Change;
use super::db::{
    begin_write, big, col, col_u64, db_now, digest as parse_digest, from_json, to_json, Cached,
    Ctx, PgMeta,
};
use super::usage::{check, check_immutable, hold, release};
use crate::meta::read_cache::Lookup;
use crate::meta::{BadReference, MetaError, OutboxEvent, References, Result, StoredManifest};
use crate::oci::media::{manifest_kind, ManifestKind};
use crate::oci::{Descriptor, Digest, ManifestSummary, RepoName, Tag};

impl PgMeta {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn put_manifest_q(
        &self,
        repo: &RepoName,
        d: &Digest,
        bytes: &[u8],
        summary: &ManifestSummary,
        tags: &[Tag],
        references: References,
        event: Option<&OutboxEvent>,
    ) -> Result<std::result::Result<u64, BadReference>> {
        let what = "storing a manifest";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let key = d.to_string();
        let r = repo.as_str();
        let now = db_now(&tx).await?;
        let t = big(now);
        let linked = match references {
            References::Required => match check_references(&tx, repo, summary).await? {
                Ok(linked) => linked,
                Err(bad) => return Ok(Err(bad)),
            },
            References::OnDemand => Vec::new(),
        };
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        let moved = tx
            .cq(
                "SELECT tag FROM tags WHERE repo = $1 AND tag = ANY($2) AND digest <> $3
                 ORDER BY tag",
                &[&r, &names, &key],
            )
            .await
            .ctx(what)?;
        let mut changes = Vec::new();
        for row in &moved {
            let tag: String = col(row, 0, "tags.tag")?;
            check_immutable(&tx, repo, &tag, "pushing a different manifest to").await?;
            changes.push(Change::Tag {
                repo: r.to_string(),
                tag,
            });
        }
        let new_here = tx
            .cq_opt(
                "SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2",
                &[&r, &key],
            )
            .await
            .ctx(what)?
            .is_none();
        if new_here {
            check(&tx, repo.project(), &[(&key, bytes.len() as u64)]).await?;
            hold(&tx, repo.project(), &key, bytes.len() as u64).await?;
        }
        // Referencing a blob refreshes its link: GC's grace window runs from here.
        tx.cexec(
            "UPDATE repo_blobs SET linked_at = $3 WHERE repo = $1 AND digest = ANY($2)",
            &[&r, &linked, &t],
        )
        .await
        .ctx(what)?;
        write_manifest(&tx, r, &key, bytes, summary, t).await?;
        for tag in &names {
            tx.cexec(
                "INSERT INTO tags (repo, tag, digest) VALUES ($1, $2, $3)
                 ON CONFLICT (repo, tag) DO UPDATE SET digest = EXCLUDED.digest",
                &[&r, tag, &key],
            )
            .await
            .ctx(what)?;
        }
        ensure_repo(&tx, repo, now).await?;
        let dropped = match event {
            Some(e) => super::webhooks::queue_in(&tx, e, now).await?,
            None => 0,
        };
        self.commit_changed(tx, what, changes).await?;
        Ok(Ok(dropped))
    }

    pub(super) async fn resolve_tag_q(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let ticket = match self
            .read_cache()
            .map(|c| c.tag(repo.as_str(), tag.as_str()))
        {
            Some(Lookup::Hit(d)) => return Ok(Some(d)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT digest FROM tags WHERE repo = $1 AND tag = $2",
                &[&repo.as_str(), &tag.as_str()],
            )
            .await
            .ctx("resolving a tag")?;
        let found = row
            .map(|r| parse_digest(&col::<String>(&r, 0, "tags.digest")?))
            .transpose()?;
        if let (Some(c), Some(t), Some(d)) = (self.read_cache(), ticket, &found) {
            c.put_tag(t, repo.as_str(), tag.as_str(), d);
        }
        Ok(found)
    }

    pub(super) async fn get_manifest_q(
        &self,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<Option<StoredManifest>> {
        let ticket = match self.read_cache().map(|c| c.manifest(repo.as_str(), d)) {
            Some(Lookup::Hit(m)) => return Ok(Some(m)),
            Some(Lookup::Miss(t)) => t,
            None => None,
        };
        let conn = self.conn().await?;
        let key = d.to_string();
        let Some(row) = conn
            .cq_opt(
                "SELECT m.media_type, c.bytes FROM manifests m
                 LEFT JOIN manifest_contents c ON c.digest = m.digest
                 WHERE m.repo = $1 AND m.digest = $2",
                &[&repo.as_str(), &key],
            )
            .await
            .ctx("reading a manifest")?
        else {
            return Ok(None);
        };
        let bytes: Option<Vec<u8>> = col(&row, 1, "manifest_contents.bytes")?;
        let bytes =
            bytes.ok_or_else(|| MetaError::Corrupt(format!("manifest {key} has no content")))?;
        let m = StoredManifest {
            digest: d.clone(),
            media_type: col(&row, 0, "manifests.media_type")?,
            bytes: Bytes::from(bytes),
        };
        if let (Some(c), Some(t)) = (self.read_cache(), ticket) {
            c.put_manifest(t, repo.as_str(), &m);
        }
        Ok(Some(m))
    }

    pub(super) async fn manifest_summary_q(&self, d: &Digest) -> Result<Option<ManifestSummary>> {
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT summary::text FROM manifest_contents WHERE digest = $1",
                &[&d.to_string()],
            )
            .await
            .ctx("reading a manifest's summary")?;
        row.map(|r| from_json(&col::<String>(&r, 0, "summary")?, "a manifest's summary"))
            .transpose()
    }

    pub(super) async fn delete_manifest_q(&self, repo: &RepoName, d: &Digest) -> Result<bool> {
        let what = "deleting a manifest";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let (r, key) = (repo.as_str(), d.to_string());
        let tagged = tx
            .cq(
                "SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag",
                &[&r, &key],
            )
            .await
            .ctx(what)?;
        for row in &tagged {
            let tag: String = col(row, 0, "tags.tag")?;
            check_immutable(&tx, repo, &tag, "deleting the manifest tagged").await?;
        }
        let removed = tx
            .cexec(
                "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
                &[&r, &key],
            )
            .await
            .ctx(what)?
            > 0;
        if removed {
            release(&tx, repo.project(), &key).await?;
            tx.cexec(
                "DELETE FROM tags WHERE repo = $1 AND digest = $2",
                &[&r, &key],
            )
            .await
            .ctx(what)?;
            tx.cexec(
                "DELETE FROM referrers WHERE repo = $1 AND referrer = $2",
                &[&r, &key],
            )
            .await
            .ctx(what)?;
        }
        let changes = if removed {
            vec![Change::Manifest {
                repo: r.to_string(),
                digest: key,
            }]
        } else {
            Vec::new()
        };
        self.commit_changed(tx, what, changes).await?;
        Ok(removed)
    }

    pub(super) async fn delete_tag_q(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let what = "deleting a tag";
        let mut conn = self.conn().await?;
        let tx = begin_write(&mut conn, what).await?;
        let exists = tx
            .cq_opt(
                "SELECT 1 FROM tags WHERE repo = $1 AND tag = $2",
                &[&repo.as_str(), &tag.as_str()],
            )
            .await
            .ctx(what)?
            .is_some();
        if !exists {
            return Ok(false);
        }
        check_immutable(&tx, repo, tag.as_str(), "deleting").await?;
        tx.cexec(
            "DELETE FROM tags WHERE repo = $1 AND tag = $2",
            &[&repo.as_str(), &tag.as_str()],
        )
        .await
        .ctx(what)?;
        let changes = vec![Change::Tag {
            repo: repo.to_string(),
            tag: tag.to_string(),
        }];
        self.commit_changed(tx, what, changes).await?;
        Ok(true)
    }

    pub(super) async fn linked_manifest_type_q(
        &self,
        repo: &RepoName,
        d: &Digest,
    ) -> Result<Option<String>> {
        let conn = self.conn().await?;
        let row = conn
            .cq_opt(
                "SELECT media_type FROM manifests WHERE repo = $1 AND digest = $2",
                &[&repo.as_str(), &d.to_string()],
            )
            .await
            .ctx("reading a manifest's media type")?;
        row.map(|r| col(&r, 0, "manifests.media_type")).transpose()
    }

    pub(super) async fn indexes_containing_q(
        &self,
        repo: &RepoName,
        child: &Digest,
    ) -> Result<Vec<Digest>> {
        let conn = self.conn().await?;
        let rows = conn
            .cq(
                "SELECT m.digest, m.media_type FROM manifest_children c
                 JOIN manifests m ON m.digest = c.parent AND m.repo = $1
                 WHERE c.child = $2 ORDER BY m.digest",
                &[&repo.as_str(), &child.to_string()],
            )
            .await
            .ctx("reading the indexes that list a manifest")?;
        let mut out = Vec::new();
        for r in &rows {
            let media_type: String = col(r, 1, "manifests.media_type")?;
            if manifest_kind(&media_type) == Some(ManifestKind::Index) {
                out.push(parse_digest(&col::<String>(r, 0, "manifests.digest")?)?);
            }
        }
        Ok(out)
    }

    pub(super) async fn referrers_q(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>> {
        let conn = self.conn().await?;
        let rows = conn
            .cq(
                "SELECT r.referrer, m.media_type, COALESCE(octet_length(c.bytes)::bigint, 0),
                        c.summary::text
                 FROM referrers r
                 JOIN manifests m ON m.repo = r.repo AND m.digest = r.referrer
                 LEFT JOIN manifest_contents c ON c.digest = r.referrer
                 WHERE r.repo = $1 AND r.subject = $2 ORDER BY r.referrer",
                &[&repo.as_str(), &subject.to_string()],
            )
            .await
            .ctx("reading referrers")?;
        let mut out = Vec::new();
        for r in &rows {
            let summary: Option<String> = col(r, 3, "manifest_contents.summary")?;
            let summary: Option<ManifestSummary> =
                summary.and_then(|s| serde_json::from_str(&s).ok());
            out.push(Descriptor {
                media_type: col(r, 1, "manifests.media_type")?,
                digest: parse_digest(&col::<String>(r, 0, "referrers.referrer")?)?,
                size: col_u64(r, 2, "manifest size")?,
                artifact_type: summary.as_ref().and_then(|s| s.artifact_type.clone()),
                annotations: summary.and_then(|s| s.annotations),
                platform: None,
                urls: None,
            });
        }
        Ok(out)
    }
}

/// Writes a manifest's content, its children, its entry in `repo` (pushed
/// at `t`) and its referrer entry.
async fn write_manifest(
    tx: &Transaction<'_>,
    r: &str,
    key: &str,
    bytes: &[u8],
    summary: &ManifestSummary,
    t: i64,
) -> Result<()> {
    let what = "storing a manifest";
    let json = to_json(summary, "encoding a manifest's summary")?;
    tx.cexec(
        "INSERT INTO manifest_contents (digest, bytes, summary) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (digest) DO UPDATE SET bytes = EXCLUDED.bytes, summary = EXCLUDED.summary",
        &[&key, &bytes, &json],
    )
    .await
    .ctx(what)?;
    let children: Vec<String> = summary
        .manifests
        .iter()
        .map(|m| m.digest.to_string())
        .collect();
    tx.cexec(
        "INSERT INTO manifest_children (parent, child) SELECT $1, unnest($2::text[])
         ON CONFLICT DO NOTHING",
        &[&key, &children],
    )
    .await
    .ctx(what)?;
    tx.cexec(
        "INSERT INTO manifests (repo, digest, media_type, pushed_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repo, digest)
         DO UPDATE SET media_type = EXCLUDED.media_type, pushed_at = EXCLUDED.pushed_at",
        &[&r, &key, &summary.media_type, &t],
    )
    .await
    .ctx(what)?;
    if let Some(subject) = &summary.subject {
        tx.cexec(
            "INSERT INTO referrers (repo, subject, referrer) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&r, &subject.digest.to_string(), &key],
        )
        .await
        .ctx(what)?;
    }
    Ok(())
}

/// The reference check of a manifest push: every config and layer is linked
/// to `repo` with the size its descriptor declares, except non-distributable
/// layers with URLs (see `Descriptor::fetched_from_urls`), which may be
/// absent; every index child is a manifest in `repo`, with its size. Returns
/// the digests of the linked blobs the manifest references.
async fn check_references(
    tx: &Transaction<'_>,
    repo: &RepoName,
    summary: &ManifestSummary,
) -> Result<std::result::Result<Vec<String>, BadReference>> {
    let what = "checking a manifest's references";
    let r = repo.as_str();
    let mut linked = Vec::with_capacity(summary.blobs.len());
    for b in &summary.blobs {
        let bk = b.digest.to_string();
        let size = tx
            .cq_opt(
                "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
                 WHERE l.repo = $1 AND l.digest = $2",
                &[&r, &bk],
            )
            .await
            .ctx(what)?
            .map(|row| col_u64(&row, 0, "blobs.size"))
            .transpose()?;
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
    for m in &summary.manifests {
        let mk = m.digest.to_string();
        let Some(row) = tx
            .cq_opt(
                "SELECT octet_length(c.bytes)::bigint FROM manifests m
                 LEFT JOIN manifest_contents c ON c.digest = m.digest
                 WHERE m.repo = $1 AND m.digest = $2",
                &[&r, &mk],
            )
            .await
            .ctx(what)?
        else {
            return Ok(Err(BadReference::Manifest(m.digest.clone())));
        };
        let actual: Option<i64> = col(&row, 0, "manifest size")?;
        let actual = actual
            .and_then(|n| u64::try_from(n).ok())
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
