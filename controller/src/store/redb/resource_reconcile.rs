//! The reconciler's side of resource publications: its reads of the records,
//! its compare-and-swap writes, a record's readiness and the network resources
//! an app leaves alone.

use std::collections::BTreeSet;

use redb::ReadableTable;

use crate::model::{Publication, TemplateVersion};
use crate::resources::{
    ResourceDesired, ResourceKind, ResourcePublication, ResourcePublicationKey, ResourceState,
};

use super::resource_publications::{get_rp, key, of_resource, put_rp, remove_rp, T};
use super::resource_rules::{apps_on_node, readiness, resources_of_app, serves, unattached_eip};
use super::resources::list_kind;
use super::{
    decode, RedbControllerStore, Result, PUBLICATIONS, RESOURCES, RESOURCE_PUBS, VERSIONS,
};

impl RedbControllerStore {
    pub fn get_resource_publication(
        &self,
        k: &ResourcePublicationKey,
    ) -> Result<Option<ResourcePublication>> {
        let txn = self.db.begin_read()?;
        get_rp(&txn.open_table(RESOURCE_PUBS)?, k)
    }

    /// One resource's records, in node order.
    pub fn list_resource_publications(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<ResourcePublication>> {
        let txn = self.db.begin_write()?;
        let all = of_resource(&txn.open_table(RESOURCE_PUBS)?, project, kind, name)?;
        txn.abort()?;
        Ok(all.into_values().collect())
    }

    /// Resources wanted on `node` in `project`.
    pub fn resources_wanted_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeSet<(ResourceKind, String)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RESOURCE_PUBS)?;
        let mut out = BTreeSet::new();
        for item in t.range((project, "", "", "")..)? {
            let (k, v) = item?;
            let (p, _, name, n) = k.value();
            if p != project {
                break;
            }
            if n != node {
                continue;
            }
            let rp: ResourcePublication = decode(T, v.value())?;
            if rp.desired == ResourceDesired::Published {
                out.insert((rp.kind, name.to_string()));
            }
        }
        Ok(out)
    }

    /// The records of the resources travelling with `app`, on the nodes it
    /// has publications on (the app's publications view).
    pub fn app_resource_publications(
        &self,
        project: &str,
        app: &str,
    ) -> Result<Vec<ResourcePublication>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let resources = txn.open_table(RESOURCES)?;
            let t = txn.open_table(RESOURCE_PUBS)?;
            let pubs = txn.open_table(PUBLICATIONS)?;
            let versions = txn.open_table(VERSIONS)?;
            for item in pubs.range((project, app, "")..)? {
                let (k, v) = item?;
                let (p, a, node) = k.value();
                if p != project || a != app {
                    break;
                }
                let publication: Publication = decode("ctl_publications", v.value())?;
                let Some(g) = versions.get((p, a, publication.version))? else {
                    continue;
                };
                let tv: TemplateVersion = decode("ctl_app_versions", g.value())?;
                for (kind, name) in resources_of_app(&resources, project, app, &tv.spec)? {
                    if let Some(rp) = get_rp(&t, &key(project, kind, &name, node))? {
                        out.push(rp);
                    }
                }
            }
        }
        txn.abort()?;
        Ok(out)
    }

    /// Every record (the reconciler's resync).
    pub fn list_all_resource_publications(&self) -> Result<Vec<ResourcePublication>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(RESOURCE_PUBS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            out.push(decode(T, item?.1.value())?);
        }
        Ok(out)
    }

    /// Writes `rp` if unchanged since read (same revision); bumps the revision.
    pub fn update_resource_publication(&self, rp: &mut ResourcePublication) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(RESOURCE_PUBS)?;
            match get_rp(&t, &rp.key())? {
                Some(c) if c.revision == rp.revision => {}
                _ => return Ok(false),
            }
            rp.revision += 1;
            put_rp(&txn, &mut t, rp)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Deletes the record if it is still at `revision`.
    pub fn delete_resource_publication(
        &self,
        k: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(RESOURCE_PUBS)?;
            match get_rp(&t, k)? {
                Some(c) if c.revision == revision => {}
                _ => return Ok(false),
            }
            remove_rp(&txn, &mut t, k, |rp| match &rp.taken_down_because {
                Some(why) => format!("taken off node {}: {why}", k.node),
                None => format!("unpublished from node {}", k.node),
            })?;
            if k.kind == ResourceKind::Eips {
                super::eips::free(&txn, &k.project, &k.name, &k.node)?;
            }
        }
        txn.commit()?;
        Ok(true)
    }

    /// Forgets resources taken off `node` outside their own reconcile (an app
    /// unpublish with cascade, a volume release).
    pub fn forget_resource_publications(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(RESOURCE_PUBS)?;
            for (kind, name) in items {
                remove_rp(&txn, &mut t, &key(project, *kind, name, node), |_| {
                    format!("taken off node {node} with what it went with")
                })?;
                if *kind == ResourceKind::Eips {
                    super::eips::free(&txn, project, name, node)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// After an app's apply carried them: its resources on the node are applied.
    pub fn mark_resources_applied(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
        detail: &str,
        now: u64,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(RESOURCE_PUBS)?;
            for (kind, name) in items {
                if let Some(mut rp) = get_rp(&t, &key(project, *kind, name, node))? {
                    if rp.desired == ResourceDesired::Published {
                        rp.applied = true;
                        rp.revision += 1;
                        rp.clear_failure();
                        rp.set(ResourceState::Applied, detail, now);
                        put_rp(&txn, &mut t, &rp)?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Whether a resource publication may be applied now: `Ok(None)` yes,
    /// `Ok(Some(reason))` not yet (an app apply that carries it is coming, or
    /// its load balancer is not on the node yet), `Err` never (nothing it
    /// serves is on the node).
    pub fn resource_readiness(&self, k: &ResourcePublicationKey) -> Result<Option<String>> {
        let txn = self.db.begin_write()?;
        let answer = readiness(&txn, k);
        txn.abort()?;
        answer
    }

    /// Network resources on `node` that no published app there is served by
    /// any more (after `app` left): they go with it.
    pub fn network_left_alone(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>> {
        let network = [
            ResourceKind::Routes,
            ResourceKind::Eips,
            ResourceKind::LoadBalancers,
        ];
        if !self.has_resource_records_on(project, node, &network)? {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let resources = txn.open_table(RESOURCES)?;
            let t = txn.open_table(RESOURCE_PUBS)?;
            let apps = apps_on_node(&txn, project, node)?;
            for kind in [
                ResourceKind::Routes,
                ResourceKind::Eips,
                ResourceKind::LoadBalancers,
            ] {
                for r in list_kind(&resources, project, kind)? {
                    let Some(rp) = get_rp(&t, &key(project, kind, &r.name, node))? else {
                        continue;
                    };
                    if unattached_eip(&r) {
                        continue;
                    }
                    let mut served = false;
                    for a in &apps {
                        served |= serves(&resources, &r, &a.app, &a.spec)?;
                    }
                    if !served {
                        out.push(rp);
                    }
                }
            }
        }
        txn.abort()?;
        Ok(out)
    }
}
