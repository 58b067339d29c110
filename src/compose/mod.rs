//! The composition root: the registry's implementations of the controller's
//! ports (image resolution, authorization, audit, publication events), wired
//! into `berth serve`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use berth_controller::secrets::SecretBox;
use berth_controller::{
    Actor, AuditSink, AuthError, Authorizer, CtlAction, ImageResolver, ResolveError, ResolvedImage,
};
use berth_registry::auth::access::RegistryAccess;
use berth_registry::auth::accounts::Accounts;
use berth_registry::auth::policy::Decision;
use berth_registry::auth::{Action, Refusal, RequestInfo};
use berth_registry::oci::ErrorCode;
use berth_registry::oci::{Digest, FullRef, ImageRef, Reference};
use berth_registry::proxy::projects::ProxyProjects;
use berth_registry::service::LocalRegistry;
use berth_registry::service::Namespace;
use berth_registry::signature::SignatureGate;

use crate::image_source::{ImageSource, ImageSources};

mod events;
mod secrets;

pub use events::{PublicationForwarder, PublicationSignals};
pub use secrets::{
    previous_secret_keys, secret_box, secret_key, ControllerReseal, ControllerSealer,
};

/// Resolves `project/repo:tag` against what the registry holds, and an image
/// of another registry (`docker.io/library/nginx:1.25`, `nginx:1.25`) through
/// the proxy-cache project its host maps to (fetched from upstream once, kept
/// here for every edge to prefetch); refuses what the project's signature
/// policy would refuse to pull.
pub struct RegistryResolver {
    pub registry: Arc<LocalRegistry>,
    pub signatures: Arc<SignatureGate>,
    /// The namespace `/v2` serves, proxy-cache projects included.
    pub projects: Arc<ProxyProjects>,
    pub accounts: Arc<Accounts>,
    /// `proxy.hosts`: registry host → proxy-cache project.
    pub hosts: BTreeMap<String, String>,
    /// This registry's own `host[:port]`.
    pub own_host: Option<String>,
}

impl RegistryResolver {
    fn locate(&self, image_ref: &str) -> Result<ImageSource, ResolveError> {
        ImageSources {
            accounts: &self.accounts,
            hosts: &self.hosts,
            own_host: self.own_host.as_deref(),
        }
        .locate(image_ref)
        .map_err(ResolveError::NotFound)
    }

    /// The manifest `r` names in a proxy-cache project, asking upstream for
    /// a tag past its freshness (and fetching the manifest once).
    async fn through_proxy(
        &self,
        image_ref: &str,
        r: &ImageRef,
    ) -> Result<(Digest, String), ResolveError> {
        match self.projects.manifest(&r.repo, &r.reference).await {
            Ok(m) => Ok((m.digest, m.media_type)),
            Err(e) => match e.code() {
                Some(ErrorCode::ManifestUnknown | ErrorCode::NameUnknown) => {
                    Err(ResolveError::NotFound(format!("{image_ref}: {e}")))
                }
                Some(ErrorCode::Denied) => Err(ResolveError::Refused(format!("{image_ref}: {e}"))),
                _ => Err(ResolveError::Unavailable(format!("{image_ref}: {e}"))),
            },
        }
    }
}

#[async_trait]
impl ImageResolver for RegistryResolver {
    async fn resolve(&self, image_ref: &str) -> Result<ResolvedImage, ResolveError> {
        let source = self.locate(image_ref)?;
        let r = &source.here;
        let (digest, media_type) = if source.proxied {
            self.through_proxy(image_ref, r).await?
        } else {
            let found = self
                .registry
                .resolve_image(r)
                .await
                .map_err(|e| ResolveError::Unavailable(e.to_string()))?;
            let Some(m) = found else {
                return Err(ResolveError::NotFound(match &r.reference {
                    Reference::Tag(_) => format!("{image_ref}: no such tag in this registry"),
                    Reference::Digest(d) => {
                        format!("{image_ref}: manifest {d} is not in {}", r.repo)
                    }
                }));
            };
            (m.digest, m.media_type)
        };
        self.signatures
            .check_pull(&r.repo, &digest)
            .await
            .map_err(|e| match e.code() {
                Some(ErrorCode::Denied) => ResolveError::Refused(e.to_string()),
                _ => ResolveError::Unavailable(e.to_string()),
            })?;
        Ok(ResolvedImage {
            repository: r.repo.to_string(),
            upstream: source.upstream,
            digest: digest.to_string(),
            media_type,
        })
    }

    fn project_of(&self, image_ref: &str) -> Result<String, ResolveError> {
        // Malformed references are the spec validation's to name.
        if let Err(e) = image_ref.parse::<FullRef>() {
            return Err(ResolveError::InvalidReference(e.to_string()));
        }
        self.locate(image_ref).map(|s| s.project)
    }
}

/// Accounts and project roles decide controller actions: reading needs pull
/// rights on the project, changing apps needs push (developer and above),
/// project-wide administration needs delete (maintainer and above, so project
/// admins too); clusters and nodes are for system administrators, readable by
/// any account. Robots are refused.
pub struct RegistryAuthorizer {
    pub access: Arc<RegistryAccess>,
}

impl Authorizer for RegistryAuthorizer {
    fn authorize(
        &self,
        headers: &http::HeaderMap,
        project: Option<&str>,
        action: CtlAction,
    ) -> Result<Actor, AuthError> {
        let info = RequestInfo {
            headers,
            peer: None,
        };
        // Basic credentials may need one bcrypt on a cold cache; it runs on the blocking pool.
        let subject = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.access.identify(&info))
        })
        .map_err(|r| match r {
            Refusal::TooMany { message, .. } => AuthError {
                status: http::StatusCode::TOO_MANY_REQUESTS,
                message,
            },
            other => AuthError {
                status: http::StatusCode::UNAUTHORIZED,
                message: other.to_string(),
            },
        })?;
        let Some(name) = subject.name.clone() else {
            return Err(AuthError {
                status: http::StatusCode::UNAUTHORIZED,
                message: "the controller API needs credentials: HTTP Basic with an account, or a bearer token".into(),
            });
        };
        if subject.robot {
            return Err(AuthError {
                status: http::StatusCode::FORBIDDEN,
                message: "robot accounts cannot use the controller API".into(),
            });
        }
        let subject = berth_registry::auth::Subject {
            token_grants: None,
            ..subject
        };
        let allowed = match (project, action) {
            (_, _) if subject.admin => true,
            (None, CtlAction::Read) => true,
            (None, _) => false,
            (Some(p), CtlAction::Read) => {
                self.access.decision(&subject, p, Action::Pull) == Decision::Allow
            }
            (Some(p), CtlAction::Write) => {
                self.access.decision(&subject, p, Action::Push) == Decision::Allow
            }
            (Some(p), CtlAction::Admin) => {
                self.access.decision(&subject, p, Action::Delete) == Decision::Allow
            }
        };
        if allowed {
            Ok(Actor {
                name,
                admin: subject.admin,
            })
        } else {
            let what = match (project, action) {
                (None, _) => "manage clusters and nodes (system administrators only)".to_string(),
                (Some(p), CtlAction::Read) => format!("see project {p}"),
                (Some(p), CtlAction::Write) => {
                    format!("change apps in project {p} (developer role or above)")
                }
                (Some(p), CtlAction::Admin) => {
                    format!("administer project {p} (maintainer role or above)")
                }
            };
            Err(AuthError {
                status: http::StatusCode::FORBIDDEN,
                message: format!("{name} may not {what}"),
            })
        }
    }
}

/// Controller actions go to the registry's audit log.
pub struct RegistryAudit {
    pub access: Arc<RegistryAccess>,
}

impl AuditSink for RegistryAudit {
    fn record(&self, actor: &str, project: &str, action: &str, target: &str, outcome: &str) {
        let project = (!project.is_empty()).then_some(project);
        let outcome = berth_registry::auth::audit::Outcome::parse(outcome);
        self.access
            .audit(actor, None, action, project, target, outcome);
    }
}

/// Opens the registry over the metadata `cfg.meta` names. On PostgreSQL:
/// one pool, the registry's, the accounts' and the controller's schema
/// migrated together (at most one replica migrating at a time).
pub async fn open_registry(
    cfg: berth_config::Config,
) -> anyhow::Result<berth_registry::app::RegistryApp> {
    use berth_registry::app::{Metadata, RegistryApp};
    use berth_registry::meta::pg;
    if cfg.meta.backend != berth_config::MetaBackend::Postgres {
        return RegistryApp::open(cfg)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"));
    }
    let pool = pg::connect(&cfg.meta.url, cfg.meta.max_connections as usize)?;
    let ctl = berth_controller::store::pg::MIGRATIONS;
    let controller = pg::Migrations {
        component: ctl.component,
        steps: ctl.steps,
    };
    pg::migrate(&pool, &[pg::MIGRATIONS, pg::ACCOUNT_MIGRATIONS, controller]).await?;
    RegistryApp::open_on(cfg, Metadata::Postgres(pool))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The controller's store, where the registry's metadata is.
pub async fn controller_store(
    app: &berth_registry::app::RegistryApp,
    secrets: SecretBox,
) -> anyhow::Result<std::sync::Arc<dyn berth_controller::ControllerStore>> {
    use berth_registry::app::Metadata;
    let store = match &app.metadata {
        Metadata::Redb(meta) => {
            berth_controller::open_embedded_store(meta.database(), Some(secrets))
        }
        Metadata::Postgres(pool) => {
            berth_controller::open_postgres_store(pool.clone(), Some(secrets)).await
        }
    };
    store.map_err(|e| anyhow::anyhow!("controller records: {e}"))
}

/// What publications deploy stays alive through GC, even after its tag moved.
pub struct PublicationRoots {
    pub store: Arc<dyn berth_controller::ControllerStore>,
}

#[async_trait]
impl berth_registry::gc::GcRoots for PublicationRoots {
    async fn roots(&self) -> Vec<(String, String)> {
        let pubs = match self.store.list_publications().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot list publications for GC roots");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for p in pubs {
            for img in p.images.iter().flatten() {
                out.push((img.repository.clone(), img.digest.clone()));
            }
            for pinned in &p.pinned {
                if let Some((repo, digest)) = pinned.split_once('@') {
                    out.push((repo.to_string(), digest.to_string()));
                }
            }
        }
        out
    }
}

/// A deleted project's apps, resources and publications go with it: without
/// `force` it is refused while any are left; with `force` the controller
/// drops their publications like a force-unpublish (the nodes that answer are
/// taken back to nothing at once, the others when they return) and deletes
/// them.
pub struct ControllerProjectCleanup(pub berth_controller::ControllerState);

#[async_trait]
impl berth_registry::project_cleanup::ProjectCleanup for ControllerProjectCleanup {
    async fn project_deleted(
        &self,
        actor: &str,
        project: &str,
        force: bool,
    ) -> Result<(), berth_registry::project_cleanup::CleanupError> {
        use berth_registry::project_cleanup::CleanupError;
        if !force {
            let held = self
                .0
                .project_holdings(project)
                .await
                .map_err(|e| CleanupError::Failed(e.to_string()))?;
            return if held.is_empty() {
                Ok(())
            } else {
                Err(CleanupError::Holds(held.names()))
            };
        }
        let purge = self
            .0
            .purge_project(actor, project)
            .await
            .map_err(|e| CleanupError::Failed(e.to_string()))?;
        tracing::info!(
            project,
            apps = purge.holdings.apps.len(),
            resources = purge.holdings.resources.len(),
            nodes = purge.tombstones.len(),
            "project's controller records purged"
        );
        Ok(())
    }
}
