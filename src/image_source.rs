//! Where an app's image comes from, in this registry: the rule for image
//! references applied to what the registry has.
//!
//! - `team-a/web:1.0` (no host, more than one part) is project `team-a` of
//!   this registry; a missing project is an error, never Docker Hub.
//! - `nginx:1.25` is Docker Hub's `docker.io/library/nginx:1.25`.
//! - `ghcr.io/org/app:1` names its registry, served by the proxy-cache project
//!   `proxy.hosts` maps that host to (`ghcr.io` → `ghcr`: `ghcr/org/app:1`).
//!   A host that is this registry's own (its external URL's) means this registry.
//!
//! Owns the mapping from a written reference to a repository here and, for
//! images of other registries, their name there (what the node pulls by,
//! through its edge). Must not touch: fetching (the resolver does, through
//! the proxy-cache project's pull-through).

use std::collections::BTreeMap;

use berth_registry::auth::accounts::Accounts;
use berth_registry::oci::{FullRef, ImageRef, Reference};

/// An image reference placed in this registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The project that serves it.
    pub project: String,
    /// The repository and reference here: `ghcr/org/app:1`.
    pub here: ImageRef,
    /// For an image of another registry, its normalised name there (`ghcr.io/org/app`).
    pub upstream: Option<String>,
    /// Whether `project` is a proxy-cache project (pulls go through to upstream).
    pub proxied: bool,
}

/// The registry's answer to "where does this image come from?".
pub struct ImageSources<'a> {
    pub accounts: &'a Accounts,
    /// `proxy.hosts`: registry host → proxy-cache project.
    pub hosts: &'a BTreeMap<String, String>,
    /// This registry's own `host[:port]`, as rendered references name it.
    pub own_host: Option<&'a str>,
}

impl ImageSources<'_> {
    /// Places `written` here, or says (in words a person can act on) why it cannot be.
    pub fn locate(&self, written: &str) -> Result<ImageSource, String> {
        let full: FullRef = written
            .parse()
            .map_err(|e| format!("image {written:?}: {e}"))?;
        let public = full.host().is_some() || !full.repo().as_str().contains('/');
        let own = full
            .host()
            .is_some_and(|h| Some(h.as_str()) == self.own_host);
        if !public || own {
            return self.in_project(written, &full);
        }
        let (host, there) = full.registry_ref();
        let host = host.as_str().to_string();
        let Some(project) = self.hosts.get(&host) else {
            return Err(format!(
                "image {written}: this registry has no proxy-cache project for {host}; add one: \
                 map the host to a project in the configuration (proxy.hosts = {{\"{host}\" = \
                 \"NAME\"}}, or BERTH_PROXY_HOSTS={host}=NAME) and create it \
                 (POST /api/v1/projects {{\"name\": \"NAME\", \"public\": true, \"proxy\": \
                 {{\"url\": \"https://{host}\"}}}}, as a system administrator)"
            ));
        };
        match self.accounts.project(project) {
            None => Err(format!(
                "image {written}: proxy.hosts maps {host} to project {project}, which does not \
                 exist; create it (POST /api/v1/projects {{\"name\": \"{project}\", \"proxy\": \
                 {{\"url\": \"https://{host}\"}}}}, as a system administrator)"
            )),
            Some(p) if p.proxy.is_none() => Err(format!(
                "image {written}: proxy.hosts maps {host} to project {project}, which is not a \
                 proxy-cache project; map {host} to a project created with \"proxy\""
            )),
            Some(_) => {
                let repo = format!("{project}/{}", there.repo)
                    .parse()
                    .map_err(|e| format!("image {written}: in project {project}: {e}"))?;
                Ok(ImageSource {
                    project: project.clone(),
                    here: ImageRef {
                        repo,
                        reference: there.reference,
                    },
                    upstream: Some(format!("{host}/{}", there.repo)),
                    proxied: true,
                })
            }
        }
    }

    /// A name of this registry: its first part is a project that must exist.
    fn in_project(&self, written: &str, full: &FullRef) -> Result<ImageSource, String> {
        let repo = full.repo().clone();
        let project = repo.project().to_string();
        let Some(p) = self.accounts.project(&project) else {
            return Err(format!(
                "image {written}: project {project} does not exist in this registry (a name \
                 without a registry host is a project here, never Docker Hub; write \
                 docker.io/{repo} for Docker Hub's)"
            ));
        };
        let reference = match (full.digest(), full.tag()) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => return Err(format!("image {written}: give a tag or a digest")),
        };
        Ok(ImageSource {
            project,
            here: ImageRef { repo, reference },
            upstream: None,
            proxied: p.proxy.is_some(),
        })
    }
}
