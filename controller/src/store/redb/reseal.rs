//! Sealing again with the current key what an older key sealed: secret
//! resources' values, clusters' kubeconfigs, nodes' edge credentials, in
//! one write transaction (a change racing it waits, and is sealed with the
//! current key anyway). A value no configured key opens is left as it is
//! and counted as failed, with why.

use std::collections::BTreeMap;

use redb::ReadableTable;

use crate::resources::{Resource, ResourceSpec};
use crate::secrets::ResealCount;

use super::{decode, encode, sealing, RedbControllerStore, Result, CLUSTERS, NODES, RESOURCES};
use crate::store::{KUBECONFIGS, NODE_CREDENTIALS, SECRET_VALUES};

impl RedbControllerStore {
    /// Reseals every sealed value with the sealer's current key; the
    /// counts by kind. Without a key there is nothing to reseal with.
    pub fn reseal(&self) -> Result<BTreeMap<String, ResealCount>> {
        let mut report = BTreeMap::new();
        let Some(key) = self.sealer.key() else {
            return Ok(report);
        };
        let txn = self.db.begin_write()?;
        {
            let mut count = ResealCount::default();
            let mut t = txn.open_table(RESOURCES)?;
            let mut changed = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let mut r: Resource = decode("ctl_resources", v.value())?;
                let ResourceSpec::Secret(spec) = &mut r.spec else {
                    continue;
                };
                let mut moved = false;
                for (name, value) in spec.data.iter_mut() {
                    let place = format!("{}/{}/{name}", r.project, r.name);
                    if let Some(new) = count.one(key.reseal(&place, value)) {
                        *value = new;
                        moved = true;
                    }
                }
                if moved {
                    let (p, kind, n) = k.value();
                    changed.push(((p.to_string(), kind.to_string(), n.to_string()), r));
                }
            }
            for ((p, kind, n), r) in changed {
                t.insert(
                    (p.as_str(), kind.as_str(), n.as_str()),
                    encode(&r).as_slice(),
                )?;
            }
            report.insert(SECRET_VALUES.to_string(), count);
            for (table, name, kind) in [
                (CLUSTERS, "ctl_clusters", KUBECONFIGS),
                (NODES, "ctl_nodes", NODE_CREDENTIALS),
            ] {
                let mut count = ResealCount::default();
                let mut t = txn.open_table(table)?;
                let mut changed = Vec::new();
                for item in t.iter()? {
                    let (k, v) = item?;
                    let bytes = self
                        .sealer
                        .reseal_record(v.value(), &mut count)
                        .map_err(sealing(name))?;
                    if let Some(bytes) = bytes {
                        changed.push((k.value().to_string(), bytes));
                    }
                }
                for (k, bytes) in changed {
                    t.insert(k.as_str(), bytes.as_slice())?;
                }
                report.insert(kind.to_string(), count);
            }
        }
        txn.commit()?;
        Ok(report)
    }
}
