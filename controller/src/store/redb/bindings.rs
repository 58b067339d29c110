//! Volumes bound to nodes: bound when an app using them is applied, released
//! (claim removed) only when no app using them is published there, unbound
//! once released.

use redb::ReadableTable;

use crate::model::Desired;
use crate::resources::{Binding, BindingState, ResourceKind};

use super::{decode, encode, RedbControllerStore, Result, StoreError, BINDINGS, RESOURCE_PUBS};

impl RedbControllerStore {
    /// Records that a volume is bound on a node (again, if it was released).
    pub fn bind(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
        now: u64,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(BINDINGS)?;
            let b = Binding {
                project: project.into(),
                node: node.into(),
                kind,
                name: name.into(),
                state: BindingState::Bound,
                bound_at: now,
            };
            t.insert((project, node, kind.as_str(), name), encode(&b).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_binding(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Option<Binding>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BINDINGS)?;
        let v = t.get((project, node, kind.as_str(), name))?;
        v.map(|g| decode("ctl_bindings", g.value())).transpose()
    }

    pub fn list_bindings(&self, project: &str) -> Result<Vec<Binding>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BINDINGS)?;
        let mut out = Vec::new();
        for item in t.range((project, "", "", "")..)? {
            let (k, v) = item?;
            if k.value().0 != project {
                break;
            }
            out.push(decode("ctl_bindings", v.value())?);
        }
        Ok(out)
    }

    /// Checks that a volume may be released on a node: bound there and no app
    /// using it published there. The caller removes the claim, then calls
    /// `mark_released`.
    pub fn check_release(&self, project: &str, node: &str, name: &str) -> Result<()> {
        let kind = ResourceKind::Volumes;
        if self.get_binding(project, node, kind, name)?.is_none() {
            return Err(StoreError::NotFound(format!(
                "volume {project}/{name} is not bound on {node}"
            )));
        }
        let users: Vec<String> = self
            .published_specs_on_node(project, node)?
            .into_iter()
            .filter(|(_, (p, spec))| {
                p.desired == Desired::Published && crate::resources::spec_uses(spec, kind, name)
            })
            .map(|(app, _)| app)
            .collect();
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "rule: a volume cannot be released while an app using it is published on that \
                 node; unpublish {} from {node} first",
                users.join(", ")
            )));
        }
        Ok(())
    }

    pub fn mark_released(
        &self,
        project: &str,
        node: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(BINDINGS)?;
            let key = (project, node, kind.as_str(), name);
            let b: Option<Binding> = t
                .get(key)?
                .map(|g| decode("ctl_bindings", g.value()))
                .transpose()?;
            if let Some(mut b) = b {
                b.state = BindingState::Released;
                t.insert(key, encode(&b).as_slice())?;
            }
            // Released is off the node: no longer published there.
            let mut pubs = txn.open_table(RESOURCE_PUBS)?;
            let k = super::resource_publications::key(project, kind, name, node);
            super::resource_publications::remove_rp(&txn, &mut pubs, &k, |_| {
                format!("volume released on node {node}")
            })?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Unbinds a released volume, in one transaction: drops its released
    /// binding on `node` (on every node when `None`; refused while bound
    /// there), and once it is bound nowhere, takes it out of the template of
    /// every app that names it (a new version each, so another app can use
    /// it). Returns those versions as `(app, version)`.
    pub fn unbind(
        &self,
        project: &str,
        node: Option<&str>,
        name: &str,
        author: &str,
        now: u64,
    ) -> Result<Vec<(String, u32)>> {
        let kind = ResourceKind::Volumes;
        let txn = self.db.begin_write()?;
        let mut bound_elsewhere = Vec::new();
        {
            let mut t = txn.open_table(BINDINGS)?;
            let mut all: Vec<Binding> = Vec::new();
            for item in t.range((project, "", "", "")..)? {
                let (k, v) = item?;
                if k.value().0 != project {
                    break;
                }
                let b: Binding = decode("ctl_bindings", v.value())?;
                if b.kind == kind && b.name == name {
                    all.push(b);
                }
            }
            if let Some(n) = node {
                if !all.iter().any(|b| b.node == n) {
                    return Err(StoreError::NotFound(format!(
                        "volume {project}/{name} is not bound on {n}"
                    )));
                }
            }
            for b in all {
                let named = node.is_none_or(|n| n == b.node);
                if named && b.state == BindingState::Bound {
                    return Err(StoreError::Conflict(format!(
                        "rule: a volume is unbound only after it is released; release \
                         {project}/{name} on {} first (maintainer, \"confirm\": \"{name}\")",
                        b.node
                    )));
                }
                if named {
                    t.remove((project, b.node.as_str(), kind.as_str(), name))?;
                } else if b.state == BindingState::Bound {
                    bound_elsewhere.push(b.node);
                }
            }
        }
        let mut versions = Vec::new();
        if bound_elsewhere.is_empty() {
            for (app, tv) in super::apps::apps_with_latest(&txn, project)? {
                if let Some(spec) = crate::resources::spec_without_volume(&tv.spec, name) {
                    let message = format!("volume {name} unbound");
                    let (v, _) = super::apps::add_version_in(
                        &txn,
                        project,
                        &app.name,
                        &spec,
                        author,
                        Some(&message),
                        now,
                    )?;
                    versions.push((app.name, v.version));
                }
            }
        }
        txn.commit()?;
        Ok(versions)
    }
}
