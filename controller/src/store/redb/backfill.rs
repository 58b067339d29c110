//! Start-up work on records an earlier release wrote: the records of the
//! resources that travelled with each published app, made once (marked by
//! "resource_publications" = 1 in `ctl_meta`).

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};

use crate::resources::{ResourcePublication, ResourceState};

use super::resource_publications::{get_rp, key, put_rp_quiet};
use super::resource_rules::{apps_by_node, resources_of_app};
use super::{Result, META, PUBLICATIONS, RESOURCES, RESOURCE_PUBS};

/// Once, for a database an earlier release wrote: the resources that
/// travelled with each published app get their records on its nodes.
pub(super) fn backfill(txn: &WriteTransaction) -> Result<usize> {
    let mut meta = txn.open_table(META)?;
    if meta.get("resource_publications")?.is_some() {
        return Ok(0);
    }
    meta.insert("resource_publications", 1)?;
    let projects: BTreeSet<String> = {
        let pubs = txn.open_table(PUBLICATIONS)?;
        let mut out = BTreeSet::new();
        for item in pubs.iter()? {
            out.insert(item?.0.value().0.to_string());
        }
        out
    };
    let resources = txn.open_table(RESOURCES)?;
    let mut t = txn.open_table(RESOURCE_PUBS)?;
    let mut n = 0;
    for project in projects {
        for (node, apps) in apps_by_node(txn, &project)? {
            for a in apps {
                for (kind, name) in resources_of_app(&resources, &project, &a.app, &a.spec)? {
                    let k = key(&project, kind, &name, &node);
                    if get_rp(&t, &k)?.is_some() {
                        continue;
                    }
                    let mut rp =
                        ResourcePublication::new(&k, format!("published with app {}", a.app), 0);
                    if a.applied {
                        rp.applied = true;
                        rp.state = ResourceState::Applied;
                    }
                    put_rp_quiet(&mut t, &rp)?;
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}
