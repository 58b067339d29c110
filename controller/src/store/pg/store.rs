//! `ControllerStore` on PostgreSQL: each call is plain SQL (`native`: reads
//! and the reconciler's compare-and-swap writes) or the embedded store's
//! method of the same name over the rows (`mirror`: the calls that check
//! rules across records).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::{PgControllerStore, Result};
use crate::model::{App, AppSpec, Cluster, Node, Publication, PublicationKey, TemplateVersion};
use crate::resources::{
    Binding, PublicationRef, Resource, ResourceDesired, ResourceKind, ResourcePublication,
    ResourcePublicationKey,
};
use crate::store::{
    ControllerStore, EipClaim, ForcedRemoval, ProjectHoldings, ProjectPurge, RecordedChange,
};

#[async_trait]
impl ControllerStore for PgControllerStore {
    async fn create_cluster(&self, cluster: &Cluster) -> Result<()> {
        self.write("creating a cluster", |s| s.create_cluster(cluster))
            .await
    }

    async fn update_cluster_pool(&self, name: &str, pool: Option<&str>) -> Result<Cluster> {
        self.write("changing a cluster's pool", |s| {
            s.update_cluster_pool(name, pool)
        })
        .await
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        Ok(self.clusters(Some(name)).await?.into_iter().next())
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        self.clusters(None).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<()> {
        self.write("deleting a cluster", |s| s.delete_cluster(name))
            .await
    }

    async fn create_node(&self, node: &mut Node) -> Result<()> {
        let mut owned = node.clone();
        let owned = self
            .write("creating a node", move |s| {
                s.create_node(&mut owned)?;
                Ok(owned)
            })
            .await?;
        *node = owned;
        Ok(())
    }

    async fn get_node(&self, name: &str) -> Result<Option<Node>> {
        Ok(self.nodes(Some(name)).await?.into_iter().next())
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        self.nodes(None).await
    }

    async fn label_node(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Node> {
        self.write("labelling a node", |s| s.label_node(name, changes))
            .await
    }

    async fn delete_node(&self, name: &str) -> Result<()> {
        self.write("deleting a node", |s| s.delete_node(name)).await
    }

    async fn create_app(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(App, TemplateVersion)> {
        self.write("creating an app", |s| {
            s.create_app(project, name, spec, author, message, now)
        })
        .await
    }

    async fn get_app(&self, project: &str, name: &str) -> Result<Option<App>> {
        self.doc(
            "ctl_apps",
            "SELECT doc FROM ctl_apps WHERE project = $1 AND app = $2",
            &[&project, &name],
        )
        .await
    }

    async fn list_apps(&self, project: &str) -> Result<Vec<App>> {
        self.docs(
            "ctl_apps",
            "SELECT doc FROM ctl_apps WHERE project = $1 ORDER BY app",
            &[&project],
        )
        .await
    }

    async fn add_version(
        &self,
        project: &str,
        name: &str,
        spec: &AppSpec,
        author: &str,
        message: Option<&str>,
        now: u64,
    ) -> Result<(TemplateVersion, bool)> {
        self.write("adding a version", |s| {
            s.add_version(project, name, spec, author, message, now)
        })
        .await
    }

    async fn get_version(
        &self,
        project: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<TemplateVersion>> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(None);
        };
        self.doc(
            "ctl_app_versions",
            "SELECT doc FROM ctl_app_versions WHERE project = $1 AND app = $2 AND version = $3",
            &[&project, &name, &version],
        )
        .await
    }

    async fn list_versions(&self, project: &str, name: &str) -> Result<Vec<TemplateVersion>> {
        self.docs(
            "ctl_app_versions",
            "SELECT doc FROM ctl_app_versions WHERE project = $1 AND app = $2 ORDER BY version",
            &[&project, &name],
        )
        .await
    }

    async fn delete_app(&self, project: &str, name: &str) -> Result<()> {
        self.write("deleting an app", |s| s.delete_app(project, name))
            .await
    }

    async fn publish(
        &self,
        project: &str,
        app: &str,
        version: Option<u32>,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<Publication>> {
        self.write("publishing", |s| {
            s.publish(project, app, version, nodes, now)
        })
        .await
    }

    async fn unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        cascade: bool,
        now: u64,
    ) -> Result<Vec<Publication>> {
        self.write("unpublishing", |s| {
            s.unpublish(project, app, nodes, cascade, now)
        })
        .await
    }

    async fn get_publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        self.publication(key).await
    }

    async fn list_publications(&self) -> Result<Vec<Publication>> {
        self.publications(None).await
    }

    async fn list_app_publications(&self, project: &str, app: &str) -> Result<Vec<Publication>> {
        self.publications(Some((project, app))).await
    }

    async fn replace_publication(&self, p: &mut Publication) -> Result<Option<Publication>> {
        PgControllerStore::replace_publication(self, p).await
    }

    async fn delete_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool> {
        PgControllerStore::delete_publication(self, key, revision).await
    }

    async fn confirm_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool> {
        PgControllerStore::confirm_publication(self, key, revision).await
    }

    async fn confirm_resource_publication(
        &self,
        key: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool> {
        PgControllerStore::confirm_resource_publication(self, key, revision).await
    }

    async fn pinned_by_others(
        &self,
        node: &str,
        except: &PublicationKey,
    ) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for p in self.publications_on_node(node).await? {
            if p.key() != *except {
                out.extend(p.pinned.iter().cloned());
                out.extend(p.images_by_digest());
            }
        }
        Ok(out)
    }

    async fn published_specs_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeMap<String, (Publication, AppSpec)>> {
        self.read("reading what is published on a node", |s| {
            s.published_specs_on_node(project, node)
        })
        .await
    }

    async fn publication_events(&self, limit: usize) -> Result<Vec<RecordedChange>> {
        PgControllerStore::publication_events(self, limit).await
    }

    async fn ack_publication_events(&self, through: u64) -> Result<()> {
        PgControllerStore::ack_publication_events(self, through).await
    }

    async fn force_unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<ForcedRemoval>> {
        self.write("force-unpublishing", |s| {
            s.force_unpublish(project, app, nodes, now)
        })
        .await
    }

    async fn list_forced(&self) -> Result<Vec<ForcedRemoval>> {
        self.docs(
            "ctl_forced",
            "SELECT doc FROM ctl_forced ORDER BY project, app, node",
            &[],
        )
        .await
    }

    async fn forget_forced(&self, k: &PublicationKey) -> Result<()> {
        self.write("forgetting a tombstone", |s| s.forget_forced(k))
            .await
    }

    async fn project_holdings(&self, project: &str) -> Result<ProjectHoldings> {
        self.read("reading a project's holdings", |s| {
            s.project_holdings(project)
        })
        .await
    }

    async fn purge_project(&self, project: &str, now: u64) -> Result<ProjectPurge> {
        self.write("purging a project", |s| s.purge_project(project, now))
            .await
    }

    async fn create_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>> {
        self.write("creating a resource", |s| s.create_resource(r))
            .await
    }

    async fn update_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>> {
        self.write("updating a resource", |s| s.update_resource(r))
            .await
    }

    async fn get_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Resource>> {
        self.doc(
            "ctl_resources",
            "SELECT doc FROM ctl_resources WHERE project = $1 AND kind = $2 AND name = $3",
            &[&project, &kind.as_str(), &name],
        )
        .await
    }

    async fn list_resources(&self, project: &str, kind: ResourceKind) -> Result<Vec<Resource>> {
        // Every apply lists the project's network resources: plain SQL, not
        // a load of every controller row.
        self.docs(
            "ctl_resources",
            "SELECT doc FROM ctl_resources WHERE project = $1 AND kind = $2 ORDER BY name",
            &[&project, &kind.as_str()],
        )
        .await
    }

    async fn delete_resource(&self, project: &str, kind: ResourceKind, name: &str) -> Result<()> {
        self.write("deleting a resource", |s| {
            s.delete_resource(project, kind, name)
        })
        .await
    }

    async fn resource_users(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<String>> {
        self.read("reading a resource's users", |s| {
            s.resource_users(project, kind, name)
        })
        .await
    }

    async fn bind(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
        now: u64,
    ) -> Result<()> {
        self.write("binding a volume", |s| {
            s.bind(project, node, kind, name, now)
        })
        .await
    }

    async fn get_binding(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Binding>> {
        self.doc(
            "ctl_bindings",
            "SELECT doc FROM ctl_bindings \
             WHERE project = $1 AND node = $2 AND kind = $3 AND name = $4",
            &[&project, &node, &kind.as_str(), &name],
        )
        .await
    }

    async fn list_bindings(&self, project: &str) -> Result<Vec<Binding>> {
        self.docs(
            "ctl_bindings",
            "SELECT doc FROM ctl_bindings WHERE project = $1 ORDER BY node, kind, name",
            &[&project],
        )
        .await
    }

    async fn check_release(&self, project: &str, node: &str, name: &str) -> Result<()> {
        self.read("checking a release", |s| {
            s.check_release(project, node, name)
        })
        .await
    }

    async fn mark_released(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<()> {
        self.write("releasing a volume", |s| {
            s.mark_released(project, node, kind, name)
        })
        .await
    }

    async fn unbind(
        &self,
        project: &str,
        node: Option<&str>,
        name: &str,
        author: &str,
        now: u64,
    ) -> Result<Vec<(String, u32)>> {
        self.write("unbinding a volume", |s| {
            s.unbind(project, node, name, author, now)
        })
        .await
    }

    async fn eip_address(&self, project: &str, name: &str, node: &str) -> Result<Option<String>> {
        self.read("reading an EIP's address", |s| {
            s.eip_address(project, name, node)
        })
        .await
    }

    async fn list_eip_claims(&self) -> Result<Vec<(String, String, EipClaim)>> {
        self.read("listing EIP addresses", |s| s.list_eip_claims())
            .await
    }

    async fn publish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>> {
        self.write("publishing a resource", |s| {
            s.publish_resource(project, kind, name, nodes, now)
        })
        .await
    }

    async fn unpublish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>> {
        self.write("unpublishing a resource", |s| {
            s.unpublish_resource(project, kind, name, nodes, now)
        })
        .await
    }

    async fn get_resource_publication(
        &self,
        k: &ResourcePublicationKey,
    ) -> Result<Option<ResourcePublication>> {
        self.doc(
            "ctl_resource_publications",
            "SELECT doc FROM ctl_resource_publications \
             WHERE project = $1 AND kind = $2 AND name = $3 AND node = $4",
            &[&k.project, &k.kind.as_str(), &k.name, &k.node],
        )
        .await
    }

    async fn list_resource_publications(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<ResourcePublication>> {
        self.docs(
            "ctl_resource_publications",
            "SELECT doc FROM ctl_resource_publications \
             WHERE project = $1 AND kind = $2 AND name = $3 ORDER BY node",
            &[&project, &kind.as_str(), &name],
        )
        .await
    }

    async fn resources_wanted_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeSet<(ResourceKind, String)>> {
        let records: Vec<ResourcePublication> = self
            .docs(
                "ctl_resource_publications",
                "SELECT doc FROM ctl_resource_publications WHERE project = $1 AND node = $2",
                &[&project, &node],
            )
            .await?;
        Ok(records
            .into_iter()
            .filter(|rp| rp.desired == ResourceDesired::Published)
            .map(|rp| (rp.kind, rp.name))
            .collect())
    }

    async fn app_resource_publications(
        &self,
        project: &str,
        app: &str,
    ) -> Result<Vec<ResourcePublication>> {
        self.read("reading an app's resources", |s| {
            s.app_resource_publications(project, app)
        })
        .await
    }

    async fn list_all_resource_publications(&self) -> Result<Vec<ResourcePublication>> {
        self.docs(
            "ctl_resource_publications",
            "SELECT doc FROM ctl_resource_publications ORDER BY project, kind, name, node",
            &[],
        )
        .await
    }

    async fn update_resource_publication(&self, rp: &mut ResourcePublication) -> Result<bool> {
        PgControllerStore::update_resource_publication(self, rp).await
    }

    async fn delete_resource_publication(
        &self,
        k: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool> {
        self.write("deleting a resource publication", |s| {
            s.delete_resource_publication(k, revision)
        })
        .await
    }

    async fn forget_resource_publications(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
    ) -> Result<()> {
        self.write("forgetting resource publications", |s| {
            s.forget_resource_publications(project, node, items)
        })
        .await
    }

    async fn mark_resources_applied(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
        detail: &str,
        now: u64,
    ) -> Result<()> {
        self.write("marking resources applied", |s| {
            s.mark_resources_applied(project, node, items, detail, now)
        })
        .await
    }

    async fn resource_readiness(&self, k: &ResourcePublicationKey) -> Result<Option<String>> {
        self.read("reading a resource's readiness", |s| {
            s.resource_readiness(k)
        })
        .await
    }

    async fn network_left_alone(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>> {
        let network = [
            ResourceKind::Routes,
            ResourceKind::Eips,
            ResourceKind::LoadBalancers,
        ];
        if !self
            .has_resource_records_on(project, node, &network)
            .await?
        {
            return Ok(Vec::new());
        }
        self.read("reading network resources left alone", |s| {
            s.network_left_alone(project, node)
        })
        .await
    }

    async fn config_left_behind(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>> {
        // Asked by every apply: the rule's load of every controller row only
        // when the node holds config of the project's at all.
        let config = [ResourceKind::ConfigMaps, ResourceKind::Secrets];
        if !self.has_resource_records_on(project, node, &config).await? {
            return Ok(Vec::new());
        }
        self.read("reading config left behind", |s| {
            s.config_left_behind(project, node)
        })
        .await
    }

    async fn export_records(&self) -> Result<crate::store::ControllerRecords> {
        let what = "reading every controller record";
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(super::db(what))?;
        let rows = super::mirror::load(&tx).await?;
        tx.commit().await.map_err(super::db(what))?;
        Ok(crate::store::ControllerRecords::new(rows))
    }

    async fn import_records(&self, records: &crate::store::ControllerRecords) -> Result<()> {
        let what = "writing the controller records copied";
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(super::db(what))?;
        self.lock(&tx).await?;
        let held = super::mirror::load(&tx).await?;
        let want = records.onto(&held)?;
        super::mirror::write_back(&tx, &held, &want).await?;
        tx.commit().await.map_err(super::db(what))
    }

    async fn reseal(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::secrets::ResealCount>> {
        self.write("resealing", |s| s.reseal()).await
    }

    fn fenced(&self, epoch: u64) -> std::sync::Arc<dyn ControllerStore> {
        std::sync::Arc::new(self.with_fence(epoch))
    }
}
