//! The calls the reconciler and the API make all the time, in plain SQL:
//! reads of single records and lists (in key order, as the embedded store
//! answers), the outbox, and the compare-and-swap writes of publications
//! and resource publications (each recording the change it makes in the
//! outbox, in its own transaction, as the embedded store does).
//!
//! Owns: these statements. The records are decoded (and cluster and node
//! credentials opened) exactly as the embedded store decodes them.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::types::ToSql;

use super::{db, PgControllerStore, Result};
use crate::model::{Cluster, Node, Publication, PublicationKey};
use crate::ports::PublicationChange;
use crate::resources::{ResourceKind, ResourcePublication, ResourcePublicationKey};
use crate::store::changes as events;
use crate::store::{RecordedChange, StoreError, Stored};

fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

fn unsealed(table: &'static str) -> impl Fn(crate::sealed_records::SealError) -> StoreError {
    move |e| StoreError::Corrupt {
        table,
        message: e.to_string(),
    }
}

/// Appends `change` to the outbox inside `tx` (which holds the write lock).
async fn record(tx: &tokio_postgres::Transaction<'_>, change: PublicationChange) -> Result<()> {
    let seq: i64 = tx
        .query_one(
            "INSERT INTO ctl_meta (name, value) VALUES ('publication_events', 1) \
             ON CONFLICT (name) DO UPDATE SET value = ctl_meta.value + 1 RETURNING value",
            &[],
        )
        .await
        .map_err(db("numbering a publication change"))?
        .get(0);
    let id = format!("{:032x}", rand::random::<u128>());
    tx.execute(
        "INSERT INTO ctl_publication_events (seq, doc) VALUES ($1, $2)",
        &[&seq, &encode(&Stored { id, change })],
    )
    .await
    .map_err(db("recording a publication change"))?;
    Ok(())
}

impl PgControllerStore {
    /// The `doc` of each row `sql` selects, decoded.
    pub(super) async fn docs<T: DeserializeOwned>(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<T>> {
        let conn = self.conn().await?;
        let rows = conn.query(sql, params).await.map_err(db(table))?;
        rows.iter()
            .map(|r| decode(table, r.get::<_, &[u8]>(0)))
            .collect()
    }

    /// The one record `sql` selects, if any.
    pub(super) async fn doc<T: DeserializeOwned>(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>> {
        Ok(self.docs(table, sql, params).await?.into_iter().next())
    }

    async fn raw(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn().await?;
        let rows = conn.query(sql, params).await.map_err(db(table))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn clusters(&self, name: Option<&str>) -> Result<Vec<Cluster>> {
        const T: &str = "ctl_clusters";
        let raw = self
            .raw(
                T,
                "SELECT doc FROM ctl_clusters WHERE $1::text IS NULL OR name = $1 ORDER BY name",
                &[&name],
            )
            .await?;
        raw.iter()
            .map(|b| self.sealer.decode_cluster(b).map_err(unsealed(T)))
            .collect()
    }

    pub(super) async fn nodes(&self, name: Option<&str>) -> Result<Vec<Node>> {
        const T: &str = "ctl_nodes";
        let raw = self
            .raw(
                T,
                "SELECT doc FROM ctl_nodes WHERE $1::text IS NULL OR name = $1 ORDER BY name",
                &[&name],
            )
            .await?;
        raw.iter()
            .map(|b| self.sealer.decode_node(b).map_err(unsealed(T)))
            .collect()
    }

    /// The publications of `project`/`app` (every one when `None`), in key order.
    pub(super) async fn publications(&self, of: Option<(&str, &str)>) -> Result<Vec<Publication>> {
        let (project, app) = (of.map(|o| o.0), of.map(|o| o.1));
        self.docs(
            "ctl_publications",
            "SELECT doc FROM ctl_publications \
             WHERE $1::text IS NULL OR (project = $1 AND app = $2) ORDER BY project, app, node",
            &[&project, &app],
        )
        .await
    }

    /// The publications on `node`, of every app.
    /// Whether any resource publication of `kinds` in `project` is on
    /// `node`: the first question of the rules every apply asks, so that
    /// a node with none of them never loads the mirror.
    pub(super) async fn has_resource_records_on(
        &self,
        project: &str,
        node: &str,
        kinds: &[ResourceKind],
    ) -> Result<bool> {
        const T: &str = "ctl_resource_publications";
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM ctl_resource_publications \
                 WHERE project = $1 AND node = $2 AND kind = ANY($3))",
                &[&project, &node, &kinds],
            )
            .await
            .map_err(db(T))?;
        Ok(row.get(0))
    }

    pub(super) async fn publications_on_node(&self, node: &str) -> Result<Vec<Publication>> {
        self.docs(
            "ctl_publications",
            "SELECT doc FROM ctl_publications WHERE node = $1 ORDER BY project, app",
            &[&node],
        )
        .await
    }

    pub(super) async fn publication(&self, k: &PublicationKey) -> Result<Option<Publication>> {
        self.doc(
            "ctl_publications",
            "SELECT doc FROM ctl_publications WHERE project = $1 AND app = $2 AND node = $3",
            &[&k.project, &k.app, &k.node],
        )
        .await
    }

    pub(super) async fn publication_events(&self, limit: usize) -> Result<Vec<RecordedChange>> {
        const T: &str = "ctl_publication_events";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT seq, doc FROM ctl_publication_events ORDER BY seq LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(db(T))?;
        rows.iter()
            .map(|r| {
                let s: Stored = decode(T, r.get::<_, &[u8]>(1))?;
                Ok(RecordedChange {
                    seq: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                    id: s.id,
                    change: s.change,
                })
            })
            .collect()
    }

    pub(super) async fn ack_publication_events(&self, through: u64) -> Result<()> {
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db("acknowledging"))?;
        self.lock(&tx).await?;
        tx.execute(
            "DELETE FROM ctl_publication_events WHERE seq <= $1",
            &[&through],
        )
        .await
        .map_err(db("acknowledging publication changes"))?;
        tx.commit().await.map_err(db("acknowledging"))
    }

    /// Compare-and-swap on `p.revision`: writes `p` (revision bumped) and
    /// records the change it makes; answers with what it replaced.
    pub(super) async fn replace_publication(
        &self,
        p: &mut Publication,
    ) -> Result<Option<Publication>> {
        const T: &str = "ctl_publications";
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db(T))?;
        self.lock(&tx).await?;
        let row = tx
            .query_opt(
                "SELECT doc FROM ctl_publications \
                 WHERE project = $1 AND app = $2 AND node = $3 FOR UPDATE",
                &[&p.project, &p.app, &p.node],
            )
            .await
            .map_err(db(T))?;
        let current: Publication = match row {
            Some(r) => decode(T, r.get::<_, &[u8]>(0))?,
            None => return Ok(None),
        };
        if current.revision != p.revision {
            return Ok(None);
        }
        let mut next = p.clone();
        next.revision += 1;
        tx.execute(
            "UPDATE ctl_publications SET doc = $4 WHERE project = $1 AND app = $2 AND node = $3",
            &[&next.project, &next.app, &next.node, &encode(&next)],
        )
        .await
        .map_err(db(T))?;
        for change in events::stored(&current, &next) {
            record(&tx, change).await?;
        }
        tx.commit().await.map_err(db(T))?;
        *p = next;
        Ok(Some(current))
    }

    /// Deletes the publication if it is still at `revision`, recording its removal.
    pub(super) async fn delete_publication(
        &self,
        k: &PublicationKey,
        revision: u64,
    ) -> Result<bool> {
        const T: &str = "ctl_publications";
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db(T))?;
        self.lock(&tx).await?;
        let row = tx
            .query_opt(
                "SELECT doc FROM ctl_publications \
                 WHERE project = $1 AND app = $2 AND node = $3 FOR UPDATE",
                &[&k.project, &k.app, &k.node],
            )
            .await
            .map_err(db(T))?;
        let gone: Publication = match row {
            Some(r) => decode(T, r.get::<_, &[u8]>(0))?,
            None => return Ok(false),
        };
        if gone.revision != revision {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM ctl_publications WHERE project = $1 AND app = $2 AND node = $3",
            &[&k.project, &k.app, &k.node],
        )
        .await
        .map_err(db(T))?;
        record(&tx, events::removed(&gone)).await?;
        tx.commit().await.map_err(db(T))?;
        Ok(true)
    }

    /// The `doc` that `sql` selects, read after checking (when fenced)
    /// that the term still holds.
    async fn doc_in_term(
        &self,
        table: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db(table))?;
        if let Some(epoch) = self.fence {
            super::lease::check_fence(&tx, epoch).await?;
        }
        let row = tx.query_opt(sql, params).await.map_err(db(table))?;
        tx.commit().await.map_err(db(table))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Whether the publication is at `revision` and (fenced) the term holds.
    pub(super) async fn confirm_publication(
        &self,
        k: &PublicationKey,
        revision: u64,
    ) -> Result<bool> {
        const T: &str = "ctl_publications";
        let doc = self
            .doc_in_term(
                T,
                "SELECT doc FROM ctl_publications WHERE project = $1 AND app = $2 AND node = $3",
                &[&k.project, &k.app, &k.node],
            )
            .await?;
        match doc {
            Some(d) => Ok(decode::<Publication>(T, &d)?.revision == revision),
            None => Ok(false),
        }
    }

    /// Whether the resource publication is at `revision` and (fenced) the
    /// term holds.
    pub(super) async fn confirm_resource_publication(
        &self,
        k: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool> {
        const T: &str = "ctl_resource_publications";
        let doc = self
            .doc_in_term(
                T,
                "SELECT doc FROM ctl_resource_publications \
                 WHERE project = $1 AND kind = $2 AND name = $3 AND node = $4",
                &[&k.project, &k.kind.as_str(), &k.name, &k.node],
            )
            .await?;
        match doc {
            Some(d) => Ok(decode::<ResourcePublication>(T, &d)?.revision == revision),
            None => Ok(false),
        }
    }

    /// Compare-and-swap on `rp.revision`, bumping it on success.
    pub(super) async fn update_resource_publication(
        &self,
        rp: &mut ResourcePublication,
    ) -> Result<bool> {
        const T: &str = "ctl_resource_publications";
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db(T))?;
        self.lock(&tx).await?;
        let kind = rp.kind.as_str();
        let row = tx
            .query_opt(
                "SELECT doc FROM ctl_resource_publications \
                 WHERE project = $1 AND kind = $2 AND name = $3 AND node = $4 FOR UPDATE",
                &[&rp.project, &kind, &rp.name, &rp.node],
            )
            .await
            .map_err(db(T))?;
        let current: ResourcePublication = match row {
            Some(r) => decode(T, r.get::<_, &[u8]>(0))?,
            None => return Ok(false),
        };
        if current.revision != rp.revision {
            return Ok(false);
        }
        let mut next = rp.clone();
        next.revision += 1;
        tx.execute(
            "UPDATE ctl_resource_publications SET doc = $5 \
             WHERE project = $1 AND kind = $2 AND name = $3 AND node = $4",
            &[&rp.project, &kind, &rp.name, &rp.node, &encode(&next)],
        )
        .await
        .map_err(db(T))?;
        if let Some(change) = events::resource_stored(Some(&current), &next) {
            record(&tx, change).await?;
        }
        tx.commit().await.map_err(db(T))?;
        *rp = next;
        Ok(true)
    }
}
