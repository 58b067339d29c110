//! `ControllerStore` on redb: each call runs the blocking method of the
//! same name on tokio's blocking pool (redb commits fsync), with its
//! arguments owned for the trip.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::model::{App, AppSpec, Cluster, Node, Publication, PublicationKey, TemplateVersion};
use crate::resources::{
    Binding, PublicationRef, Resource, ResourceKind, ResourcePublication, ResourcePublicationKey,
};
use crate::store::{
    ControllerStore, EipClaim, ForcedRemoval, ProjectHoldings, ProjectPurge, RecordedChange,
};

use super::{RedbControllerStore, Result};

#[async_trait]
impl ControllerStore for RedbControllerStore {
    async fn create_cluster(&self, cluster: &Cluster) -> Result<()> {
        let cluster = cluster.clone();
        self.blocking(move |s| s.create_cluster(&cluster)).await
    }

    async fn update_cluster_pool(&self, name: &str, pool: Option<&str>) -> Result<Cluster> {
        let name = name.to_owned();
        let pool = pool.map(str::to_owned);
        self.blocking(move |s| s.update_cluster_pool(&name, pool.as_deref()))
            .await
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        self.point_read(|s| s.get_cluster(name))
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        self.blocking(move |s| s.list_clusters()).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking(move |s| s.delete_cluster(&name)).await
    }

    async fn create_node(&self, node: &mut Node) -> Result<()> {
        let mut owned = node.clone();
        let (answer, owned) = self
            .blocking(move |s| Ok((s.create_node(&mut owned)?, owned)))
            .await?;
        *node = owned;
        Ok(answer)
    }

    async fn get_node(&self, name: &str) -> Result<Option<Node>> {
        self.point_read(|s| s.get_node(name))
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        self.blocking(move |s| s.list_nodes()).await
    }

    async fn label_node(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Node> {
        let name = name.to_owned();
        let changes = changes.clone();
        self.blocking(move |s| s.label_node(&name, &changes)).await
    }

    async fn delete_node(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking(move |s| s.delete_node(&name)).await
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
        let project = project.to_owned();
        let name = name.to_owned();
        let spec = spec.clone();
        let author = author.to_owned();
        let message = message.map(str::to_owned);
        self.blocking(move |s| {
            s.create_app(&project, &name, &spec, &author, message.as_deref(), now)
        })
        .await
    }

    async fn get_app(&self, project: &str, name: &str) -> Result<Option<App>> {
        self.point_read(|s| s.get_app(project, name))
    }

    async fn list_apps(&self, project: &str) -> Result<Vec<App>> {
        let project = project.to_owned();
        self.blocking(move |s| s.list_apps(&project)).await
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
        let project = project.to_owned();
        let name = name.to_owned();
        let spec = spec.clone();
        let author = author.to_owned();
        let message = message.map(str::to_owned);
        self.blocking(move |s| {
            s.add_version(&project, &name, &spec, &author, message.as_deref(), now)
        })
        .await
    }

    async fn get_version(
        &self,
        project: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<TemplateVersion>> {
        self.point_read(|s| s.get_version(project, name, version))
    }

    async fn list_versions(&self, project: &str, name: &str) -> Result<Vec<TemplateVersion>> {
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.list_versions(&project, &name))
            .await
    }

    async fn delete_app(&self, project: &str, name: &str) -> Result<()> {
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.delete_app(&project, &name)).await
    }

    async fn publish(
        &self,
        project: &str,
        app: &str,
        version: Option<u32>,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<Publication>> {
        let project = project.to_owned();
        let app = app.to_owned();
        let nodes = nodes.to_vec();
        self.blocking(move |s| s.publish(&project, &app, version, &nodes, now))
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
        let project = project.to_owned();
        let app = app.to_owned();
        let nodes = nodes.to_vec();
        self.blocking(move |s| s.unpublish(&project, &app, &nodes, cascade, now))
            .await
    }

    async fn get_publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        self.point_read(|s| s.get_publication(key))
    }

    async fn list_publications(&self) -> Result<Vec<Publication>> {
        self.blocking(move |s| s.list_publications()).await
    }

    async fn list_app_publications(&self, project: &str, app: &str) -> Result<Vec<Publication>> {
        let project = project.to_owned();
        let app = app.to_owned();
        self.blocking(move |s| s.list_app_publications(&project, &app))
            .await
    }

    async fn replace_publication(&self, p: &mut Publication) -> Result<Option<Publication>> {
        let (answer, written) = self.replace_publication_grouped(p.clone()).await?;
        *p = written;
        Ok(answer)
    }

    async fn delete_publication(&self, key: &PublicationKey, revision: u64) -> Result<bool> {
        let key = key.clone();
        self.blocking(move |s| s.delete_publication(&key, revision))
            .await
    }

    async fn publication_events(&self, limit: usize) -> Result<Vec<RecordedChange>> {
        self.blocking(move |s| s.publication_events(limit)).await
    }

    async fn ack_publication_events(&self, through: u64) -> Result<()> {
        self.blocking(move |s| s.ack_publication_events(through))
            .await
    }

    async fn pinned_by_others(
        &self,
        node: &str,
        except: &PublicationKey,
    ) -> Result<BTreeSet<String>> {
        let node = node.to_owned();
        let except = except.clone();
        self.blocking(move |s| s.pinned_by_others(&node, &except))
            .await
    }

    async fn published_specs_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeMap<String, (Publication, AppSpec)>> {
        let project = project.to_owned();
        let node = node.to_owned();
        self.blocking(move |s| s.published_specs_on_node(&project, &node))
            .await
    }

    async fn force_unpublish(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        now: u64,
    ) -> Result<Vec<ForcedRemoval>> {
        let project = project.to_owned();
        let app = app.to_owned();
        let nodes = nodes.to_vec();
        self.blocking(move |s| s.force_unpublish(&project, &app, &nodes, now))
            .await
    }

    async fn list_forced(&self) -> Result<Vec<ForcedRemoval>> {
        self.blocking(move |s| s.list_forced()).await
    }

    async fn forget_forced(&self, k: &PublicationKey) -> Result<()> {
        let k = k.clone();
        self.blocking(move |s| s.forget_forced(&k)).await
    }

    async fn project_holdings(&self, project: &str) -> Result<ProjectHoldings> {
        let project = project.to_owned();
        self.blocking(move |s| s.project_holdings(&project)).await
    }

    async fn purge_project(&self, project: &str, now: u64) -> Result<ProjectPurge> {
        let project = project.to_owned();
        self.blocking(move |s| s.purge_project(&project, now)).await
    }

    async fn create_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>> {
        let r = r.clone();
        self.blocking(move |s| s.create_resource(&r)).await
    }

    async fn update_resource(&self, r: &Resource) -> Result<Vec<PublicationRef>> {
        let r = r.clone();
        self.blocking(move |s| s.update_resource(&r)).await
    }

    async fn get_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Resource>> {
        self.point_read(|s| s.get_resource(project, kind, name))
    }

    async fn list_resources(&self, project: &str, kind: ResourceKind) -> Result<Vec<Resource>> {
        // One project's resources of one kind: a short range, read here.
        self.point_read(|s| s.list_resources(project, kind))
    }

    async fn delete_resource(&self, project: &str, kind: ResourceKind, name: &str) -> Result<()> {
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.delete_resource(&project, kind, &name))
            .await
    }

    async fn resource_users(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<String>> {
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.resource_users(&project, kind, &name))
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
        let project = project.to_owned();
        let node = node.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.bind(&project, &node, kind, &name, now))
            .await
    }

    async fn get_binding(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Binding>> {
        let project = project.to_owned();
        let node = node.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.get_binding(&project, &node, kind, &name))
            .await
    }

    async fn list_bindings(&self, project: &str) -> Result<Vec<Binding>> {
        let project = project.to_owned();
        self.blocking(move |s| s.list_bindings(&project)).await
    }

    async fn check_release(&self, project: &str, node: &str, name: &str) -> Result<()> {
        let project = project.to_owned();
        let node = node.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.check_release(&project, &node, &name))
            .await
    }

    async fn mark_released(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<()> {
        let project = project.to_owned();
        let node = node.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.mark_released(&project, &node, kind, &name))
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
        let project = project.to_owned();
        let node = node.map(str::to_owned);
        let name = name.to_owned();
        let author = author.to_owned();
        self.blocking(move |s| s.unbind(&project, node.as_deref(), &name, &author, now))
            .await
    }

    async fn eip_address(&self, project: &str, name: &str, node: &str) -> Result<Option<String>> {
        let project = project.to_owned();
        let name = name.to_owned();
        let node = node.to_owned();
        self.blocking(move |s| s.eip_address(&project, &name, &node))
            .await
    }

    async fn list_eip_claims(&self) -> Result<Vec<(String, String, EipClaim)>> {
        self.blocking(move |s| s.list_eip_claims()).await
    }

    async fn publish_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        nodes: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<ResourcePublication>> {
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.publish_resource(&project, kind, &name, nodes, now))
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
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.unpublish_resource(&project, kind, &name, nodes, now))
            .await
    }

    async fn get_resource_publication(
        &self,
        k: &ResourcePublicationKey,
    ) -> Result<Option<ResourcePublication>> {
        self.point_read(|s| s.get_resource_publication(k))
    }

    async fn list_resource_publications(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<ResourcePublication>> {
        let project = project.to_owned();
        let name = name.to_owned();
        self.blocking(move |s| s.list_resource_publications(&project, kind, &name))
            .await
    }

    async fn resources_wanted_on_node(
        &self,
        project: &str,
        node: &str,
    ) -> Result<BTreeSet<(ResourceKind, String)>> {
        let project = project.to_owned();
        let node = node.to_owned();
        self.blocking(move |s| s.resources_wanted_on_node(&project, &node))
            .await
    }

    async fn app_resource_publications(
        &self,
        project: &str,
        app: &str,
    ) -> Result<Vec<ResourcePublication>> {
        let project = project.to_owned();
        let app = app.to_owned();
        self.blocking(move |s| s.app_resource_publications(&project, &app))
            .await
    }

    async fn list_all_resource_publications(&self) -> Result<Vec<ResourcePublication>> {
        self.blocking(move |s| s.list_all_resource_publications())
            .await
    }

    async fn update_resource_publication(&self, rp: &mut ResourcePublication) -> Result<bool> {
        let mut owned = rp.clone();
        let (answer, owned) = self
            .blocking(move |s| Ok((s.update_resource_publication(&mut owned)?, owned)))
            .await?;
        *rp = owned;
        Ok(answer)
    }

    async fn delete_resource_publication(
        &self,
        k: &ResourcePublicationKey,
        revision: u64,
    ) -> Result<bool> {
        let k = k.clone();
        self.blocking(move |s| s.delete_resource_publication(&k, revision))
            .await
    }

    async fn forget_resource_publications(
        &self,
        project: &str,
        node: &str,
        items: &[(ResourceKind, String)],
    ) -> Result<()> {
        let project = project.to_owned();
        let node = node.to_owned();
        let items = items.to_vec();
        self.blocking(move |s| s.forget_resource_publications(&project, &node, &items))
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
        let project = project.to_owned();
        let node = node.to_owned();
        let items = items.to_vec();
        let detail = detail.to_owned();
        self.blocking(move |s| s.mark_resources_applied(&project, &node, &items, &detail, now))
            .await
    }

    async fn resource_readiness(&self, k: &ResourcePublicationKey) -> Result<Option<String>> {
        let k = k.clone();
        self.blocking(move |s| s.resource_readiness(&k)).await
    }

    async fn network_left_alone(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>> {
        // Asked by every apply; most nodes have none (answered here).
        let network = [
            ResourceKind::Routes,
            ResourceKind::Eips,
            ResourceKind::LoadBalancers,
        ];
        if !self.point_read(|s| s.has_resource_records_on(project, node, &network))? {
            return Ok(Vec::new());
        }
        let project = project.to_owned();
        let node = node.to_owned();
        self.blocking(move |s| s.network_left_alone(&project, &node))
            .await
    }

    async fn config_left_behind(
        &self,
        project: &str,
        node: &str,
    ) -> Result<Vec<ResourcePublication>> {
        // Asked by every apply; most nodes have none (answered here).
        let config = [ResourceKind::ConfigMaps, ResourceKind::Secrets];
        if !self.point_read(|s| s.has_resource_records_on(project, node, &config))? {
            return Ok(Vec::new());
        }
        let project = project.to_owned();
        let node = node.to_owned();
        self.blocking(move |s| s.config_left_behind(&project, &node))
            .await
    }

    async fn export_records(&self) -> Result<crate::store::ControllerRecords> {
        self.blocking(move |s| {
            Ok(crate::store::ControllerRecords::new(super::rows::rows_of(
                &s.db,
            )?))
        })
        .await
    }

    async fn import_records(&self, records: &crate::store::ControllerRecords) -> Result<()> {
        let records = records.clone();
        self.blocking(move |s| {
            let held = super::rows::rows_of(&s.db)?;
            let want = records.onto(&held)?;
            super::rows::sync(&s.db, &held, &want)
        })
        .await
    }

    async fn reseal(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::secrets::ResealCount>> {
        self.blocking(|s| s.reseal()).await
    }

    fn fenced(&self, _epoch: u64) -> std::sync::Arc<dyn ControllerStore> {
        std::sync::Arc::new(self.clone())
    }
}
