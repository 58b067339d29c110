//! Clusters and nodes: created, read (credentials opened), deleted once nothing
//! uses them; and, when a store opens with a key, sealing the records an earlier
//! release wrote in the clear.

use redb::ReadableTable;

use crate::model::{Cluster, Node, ValidationError};
use crate::sealed_records::RecordSealer;

use super::{
    decode, sealing, RedbControllerStore, Result, StoreError, BINDINGS, CLUSTERS, CLUSTERS_T,
    NODES, NODES_T, PUBLICATIONS,
};

impl RedbControllerStore {
    pub fn create_cluster(&self, cluster: &Cluster) -> Result<()> {
        cluster.validate()?;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(CLUSTERS)?;
            if t.get(cluster.name.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "cluster {:?} already exists",
                    cluster.name
                )));
            }
            let bytes = self
                .sealer
                .encode_cluster(cluster)
                .map_err(sealing("ctl_clusters"))?;
            t.insert(cluster.name.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Changes a cluster's EIP pool (`Some("")` removes it), keeping every
    /// address already allocated from it inside.
    pub fn update_cluster_pool(&self, name: &str, pool: Option<&str>) -> Result<Cluster> {
        let txn = self.db.begin_write()?;
        let mut c = {
            let t = txn.open_table(CLUSTERS)?;
            let bytes = t.get(name)?.map(|g| g.value().to_vec());
            match bytes {
                Some(b) => self
                    .sealer
                    .decode_cluster(&b)
                    .map_err(sealing("ctl_clusters"))?,
                None => return Err(StoreError::NotFound(format!("no cluster named {name:?}"))),
            }
        };
        if let Some(p) = pool {
            super::eips::check_pool_change(&txn, name, p)?;
            c.eip_pool = Some(p.to_string()).filter(|p| !p.is_empty());
        }
        c.validate()?;
        let bytes = self
            .sealer
            .encode_cluster(&c)
            .map_err(sealing("ctl_clusters"))?;
        txn.open_table(CLUSTERS)?.insert(name, bytes.as_slice())?;
        txn.commit()?;
        Ok(c)
    }

    pub fn get_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        self.get_named(CLUSTERS_T, name, RecordSealer::decode_cluster)
    }

    pub fn list_clusters(&self) -> Result<Vec<Cluster>> {
        self.list_named(CLUSTERS_T, RecordSealer::decode_cluster)
    }

    pub fn delete_cluster(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let nodes = txn.open_table(NODES)?;
            let mut users = Vec::new();
            for item in nodes.iter()? {
                let (_, v) = item?;
                let n: Node = decode("ctl_nodes", v.value())?;
                if n.cluster == name {
                    users.push(n.name);
                }
            }
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "cluster {name:?} still has nodes {}; delete them first",
                    users.join(", ")
                )));
            }
            let mut t = txn.open_table(CLUSTERS)?;
            if t.remove(name)?.is_none() {
                return Err(StoreError::NotFound(format!("no cluster named {name:?}")));
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Stores a new node (normalized and validated); its cluster must exist.
    pub fn create_node(&self, node: &mut Node) -> Result<()> {
        node.normalize_and_validate()?;
        let txn = self.db.begin_write()?;
        {
            let clusters = txn.open_table(CLUSTERS)?;
            if clusters.get(node.cluster.as_str())?.is_none() {
                return Err(ValidationError::one(
                    "cluster",
                    format!(
                        "no cluster named {:?}; create it first (POST /api/v1/clusters)",
                        node.cluster
                    ),
                )
                .into());
            }
            let mut t = txn.open_table(NODES)?;
            if t.get(node.name.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "node {:?} already exists",
                    node.name
                )));
            }
            let bytes = self
                .sealer
                .encode_node(node)
                .map_err(sealing("ctl_nodes"))?;
            t.insert(node.name.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_node(&self, name: &str) -> Result<Option<Node>> {
        self.get_named(NODES_T, name, RecordSealer::decode_node)
    }

    pub fn list_nodes(&self) -> Result<Vec<Node>> {
        self.list_named(NODES_T, RecordSealer::decode_node)
    }

    /// Changes a node's labels as a JSON merge patch would: a value sets the
    /// label, `None` removes it. Answers the node as stored.
    pub fn label_node(
        &self,
        name: &str,
        changes: &std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<Node> {
        let txn = self.db.begin_write()?;
        let node = {
            let mut t = txn.open_table(NODES)?;
            let mut node = match t.get(name)? {
                Some(v) => self
                    .sealer
                    .decode_node(v.value())
                    .map_err(sealing("ctl_nodes"))?,
                None => return Err(StoreError::NotFound(format!("no node named {name:?}"))),
            };
            for (k, v) in changes {
                match v {
                    Some(v) => node.labels.insert(k.clone(), v.clone()),
                    None => node.labels.remove(k),
                };
            }
            node.normalize_and_validate()?;
            let bytes = self
                .sealer
                .encode_node(&node)
                .map_err(sealing("ctl_nodes"))?;
            t.insert(name, bytes.as_slice())?;
            node
        };
        txn.commit()?;
        Ok(node)
    }

    pub fn delete_node(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let pubs = txn.open_table(PUBLICATIONS)?;
            let mut users = Vec::new();
            for item in pubs.iter()? {
                let (k, _) = item?;
                let (project, app, node) = k.value();
                if node == name {
                    users.push(format!("{project}/{app}"));
                }
            }
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "node {name:?} still has apps published: {}; unpublish them first",
                    users.join(", ")
                )));
            }
            let bindings = txn.open_table(BINDINGS)?;
            let mut bound = Vec::new();
            for item in bindings.iter()? {
                let (k, _) = item?;
                let (project, node, kind, res) = k.value();
                if node == name {
                    bound.push(format!("{kind} {project}/{res}"));
                }
            }
            if !bound.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "node {name:?} still has resources bound: {}; release them first",
                    bound.join(", ")
                )));
            }
            let mut t = txn.open_table(NODES)?;
            if t.remove(name)?.is_none() {
                return Err(StoreError::NotFound(format!("no node named {name:?}")));
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Seals, in `txn`, every cluster and node record that holds its credential in
/// the clear; returns how many it sealed.
pub(super) fn seal_clear_records(
    txn: &redb::WriteTransaction,
    sealer: &RecordSealer,
) -> Result<usize> {
    let mut count = 0;
    if !sealer.has_key() {
        txn.open_table(CLUSTERS)?;
        txn.open_table(NODES)?;
        return Ok(count);
    }
    let mut clusters = txn.open_table(CLUSTERS)?;
    let mut rewrite = Vec::new();
    for item in clusters.iter()? {
        let (k, v) = item?;
        if sealer.needs_sealing(v.value()) {
            let c = sealer
                .decode_cluster(v.value())
                .map_err(sealing("ctl_clusters"))?;
            rewrite.push((k.value().to_string(), c));
        }
    }
    for (name, c) in rewrite {
        let bytes = sealer.encode_cluster(&c).map_err(sealing("ctl_clusters"))?;
        clusters.insert(name.as_str(), bytes.as_slice())?;
        count += 1;
    }
    let mut nodes = txn.open_table(NODES)?;
    let mut rewrite = Vec::new();
    for item in nodes.iter()? {
        let (k, v) = item?;
        if sealer.needs_sealing(v.value()) {
            let n = sealer
                .decode_node(v.value())
                .map_err(sealing("ctl_nodes"))?;
            rewrite.push((k.value().to_string(), n));
        }
    }
    for (name, n) in rewrite {
        let bytes = sealer.encode_node(&n).map_err(sealing("ctl_nodes"))?;
        nodes.insert(name.as_str(), bytes.as_slice())?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redb::Database;

    use super::*;
    use crate::store::redb::fixtures::*;

    /// Records an earlier release wrote in the clear are sealed when a store opens
    /// with a key, and still read the same.
    #[test]
    fn clear_credentials_are_sealed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("berth.redb");
        let token = "token: clear-Zq81";
        let kc = format!("{KC}users:\n- name: u\n  user:\n    {token}\n");
        let mut n = node("n1");
        n.edge_credentials = Some(crate::model::EdgeCredentials {
            user: "ctl".into(),
            password: "clear-pw-Yt55".into(),
        });
        {
            let db = Arc::new(Database::create(&path).expect("db"));
            let clear = RedbControllerStore::open(db, RecordSealer::default()).expect("open");
            clear
                .create_cluster(&Cluster {
                    name: "edge".into(),
                    kubeconfig: kc.clone(),
                    eip_pool: None,
                    created_at: 1,
                })
                .expect("cluster");
            clear.create_node(&mut n).expect("node");
        }
        let raw = |db: &Database| -> String {
            let txn = db.begin_read().expect("read");
            let c = txn.open_table(CLUSTERS).expect("t");
            let c = String::from_utf8_lossy(c.get("edge").expect("get").expect("row").value())
                .into_owned();
            let nodes = txn.open_table(NODES).expect("t");
            let n = String::from_utf8_lossy(nodes.get("n1").expect("get").expect("row").value())
                .into_owned();
            c + &n
        };
        let db = Arc::new(Database::create(&path).expect("db"));
        assert!(
            raw(&db).contains("clear-Zq81"),
            "written in the clear first"
        );
        let sealed = RedbControllerStore::open(db.clone(), test_sealer()).expect("open");
        let stored = raw(&db);
        assert!(!stored.contains("clear-Zq81"), "{stored}");
        assert!(!stored.contains("clear-pw-Yt55"), "{stored}");
        let c = sealed.get_cluster("edge").expect("read").expect("cluster");
        assert_eq!(c.kubeconfig, kc);
        let got = sealed.get_node("n1").expect("read").expect("node");
        assert_eq!(got.edge_credentials, n.edge_credentials);
        // Without the key, the sealed records say what is missing.
        let keyless = RedbControllerStore::open(db, RecordSealer::default()).expect("open");
        let err = keyless.get_cluster("edge").expect_err("needs the key");
        assert!(err.to_string().contains("sealing key"), "{err}");
    }
}
