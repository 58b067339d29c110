//! What the `berth app ...` commands call: an HTTP client of the controller API
//! and the text they print (history, status, a live progress view).
//!
//! Owns: request building and reading error bodies back into messages; the
//! text formats are in `format.rs`. Must not touch: the process (no printing to stdout, no exit):
//! output goes to the writer the caller passes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    AppView, PublicationsView, PublishInput, ReleaseInput, ResourcePublicationsView,
    ResourceTargetInput, ResourceView, UnbindInput, UnbindView, UnpublishInput, VersionCreated,
};
use crate::model::{AppSpec, Publication, PublicationState, TemplateVersion};
use crate::resources::ResourceKind;

mod format;

pub use self::format::{format_history, format_status, format_time, human_bytes, progress_line};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server refused; `message` is its `error` text.
    #[error("{message} (HTTP {status})")]
    Server { status: u16, message: String },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("gave up waiting after {0:?}")]
    Timeout(Duration),
}

/// An app template file (YAML or JSON) read into a spec.
pub fn parse_spec(text: &str) -> Result<AppSpec, CliError> {
    let spec: AppSpec = serde_yaml::from_str(text)
        .map_err(|e| CliError::Usage(format!("the app file is not valid: {e}")))?;
    spec.validate()
        .map_err(|e| CliError::Usage(format!("the app file is not valid: {e}")))?;
    Ok(spec)
}

/// Whether an app file is a Kubernetes manifest (`apiVersion` and `kind`)
/// rather than berth's own template format.
pub fn is_manifest(text: &str) -> bool {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .find(|v| !v.is_null())
        .is_some_and(|v| v.get("apiVersion").is_some() && v.get("kind").is_some())
}

/// A client of the controller API with basic credentials.
pub struct CliClient {
    base: Url,
    user: Option<String>,
    password: Option<String>,
    http: reqwest::Client,
}

impl CliClient {
    pub fn new(
        base_url: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, CliError> {
        let mut base = Url::parse(base_url)
            .map_err(|e| CliError::Usage(format!("{base_url:?} is not a URL: {e}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(CliClient {
            base,
            user: user.map(str::to_string),
            password: password.map(str::to_string),
            http,
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let body = match body {
            Some(b) => Some((
                "application/json",
                serde_json::to_string(b).map_err(|e| CliError::Protocol(e.to_string()))?,
            )),
            None => None,
        };
        let text = self.call_text(method, path, body, None).await?;
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|e| CliError::Protocol(e.to_string()))
    }

    /// A request with a body of the given content type (and an `Accept`),
    /// answered as text; an error status becomes `CliError::Server`.
    async fn call_text(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
        accept: Option<&str>,
    ) -> Result<String, CliError> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| CliError::Usage(format!("bad path {path}: {e}")))?;
        let mut rb = self.http.request(method, url.clone());
        if let Some(u) = &self.user {
            rb = rb.basic_auth(u, self.password.as_deref());
        }
        if let Some((content_type, b)) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(b);
        }
        if let Some(a) = accept {
            rb = rb.header(reqwest::header::ACCEPT, a);
        }
        let resp = rb.send().await.map_err(|e| CliError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| CliError::Protocol(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.trim().chars().take(300).collect());
            return Err(CliError::Server {
                status: status.as_u16(),
                message,
            });
        }
        Ok(text)
    }

    /// Creates an app from a Kubernetes manifest (see `manifest`).
    pub async fn create_app_manifest(
        &self,
        project: &str,
        yaml: String,
    ) -> Result<AppView, CliError> {
        let path = format!("api/v1/projects/{project}/apps");
        let text = self
            .call_text(Method::POST, &path, Some(("application/yaml", yaml)), None)
            .await?;
        serde_json::from_str(&text).map_err(|e| CliError::Protocol(e.to_string()))
    }

    /// The app and the resources it uses as a Kubernetes manifest.
    pub async fn export_app(&self, project: &str, app: &str) -> Result<String, CliError> {
        let path = format!("{}?format=yaml", Self::app_path(project, app));
        self.call_text(Method::GET, &path, None, Some("application/yaml"))
            .await
    }

    /// A new app `name` with `app`'s latest template and `add_volumes`
    /// (`{"volume", "mount_path", "container"?, "read_only"?}`) mounted.
    pub async fn clone_app(
        &self,
        project: &str,
        app: &str,
        name: &str,
        add_volumes: Vec<serde_json::Value>,
    ) -> Result<AppView, CliError> {
        let body = serde_json::json!({ "name": name, "add_volumes": add_volumes });
        let path = format!("{}/clone", Self::app_path(project, app));
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// A kubeconfig for `project` on `node`'s cluster (`ttl` in seconds).
    pub async fn node_kubeconfig(
        &self,
        node: &str,
        project: &str,
        ttl: Option<u64>,
    ) -> Result<String, CliError> {
        let mut path = format!("api/v1/nodes/{node}/kubeconfig?project={project}");
        if let Some(t) = ttl {
            path.push_str(&format!("&ttl={t}"));
        }
        self.call_text(Method::GET, &path, None, Some("application/yaml"))
            .await
    }

    fn app_path(project: &str, app: &str) -> String {
        format!("api/v1/projects/{project}/apps/{app}")
    }

    /// Writes an app's container log on a node to `out` as it arrives (with
    /// `follow` in `query`, until the server ends it or the process is stopped).
    pub async fn logs(
        &self,
        project: &str,
        app: &str,
        query: &[(&str, String)],
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), CliError> {
        use futures::StreamExt;
        let mut url = self
            .base
            .join(&format!("{}/logs", Self::app_path(project, app)))
            .map_err(|e| CliError::Usage(format!("bad app name {project}/{app}: {e}")))?;
        url.query_pairs_mut().extend_pairs(query.iter());
        // A follow may last for days; the client's own timeout is for one answer.
        let mut rb = self
            .http
            .get(url.clone())
            .timeout(Duration::from_secs(30 * 24 * 3600));
        if let Some(u) = &self.user {
            rb = rb.basic_auth(u, self.password.as_deref());
        }
        let resp = rb.send().await.map_err(|e| CliError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.trim().chars().take(300).collect());
            return Err(CliError::Server {
                status: status.as_u16(),
                message,
            });
        }
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| CliError::Protocol(format!("the log stream broke: {e}")))?;
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }

    pub async fn create_app(
        &self,
        project: &str,
        name: &str,
        spec: AppSpec,
        message: Option<String>,
    ) -> Result<AppView, CliError> {
        let body = serde_json::json!({ "name": name, "spec": spec, "message": message });
        self.call(
            Method::POST,
            &format!("api/v1/projects/{project}/apps"),
            Some(&body),
        )
        .await
    }

    pub async fn update_app(
        &self,
        project: &str,
        name: &str,
        spec: AppSpec,
        message: Option<String>,
    ) -> Result<VersionCreated, CliError> {
        let body = serde_json::json!({ "spec": spec, "message": message });
        self.call(Method::PUT, &Self::app_path(project, name), Some(&body))
            .await
    }

    pub async fn history(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<TemplateVersion>, CliError> {
        self.call::<(), _>(
            Method::GET,
            &format!("{}/versions", Self::app_path(project, name)),
            None,
        )
        .await
    }

    pub async fn publish(
        &self,
        project: &str,
        app: &str,
        input: &PublishInput,
    ) -> Result<Vec<Publication>, CliError> {
        let v: PublicationsView = self
            .call(
                Method::POST,
                &format!("{}/publish", Self::app_path(project, app)),
                Some(input),
            )
            .await?;
        Ok(v.publications)
    }

    /// The publications being removed, and (with cascade) the resources kept
    /// on their nodes with the reason.
    pub async fn unpublish(
        &self,
        project: &str,
        app: &str,
        input: &UnpublishInput,
    ) -> Result<PublicationsView, CliError> {
        self.call(
            Method::POST,
            &format!("{}/unpublish", Self::app_path(project, app)),
            Some(input),
        )
        .await
    }

    /// Publishes (or unpublishes) a resource on nodes; `input` empty: the
    /// default nodes.
    pub async fn resource_publication(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        publish: bool,
        input: &ResourceTargetInput,
    ) -> Result<ResourcePublicationsView, CliError> {
        let action = if publish { "publish" } else { "unpublish" };
        self.call(
            Method::POST,
            &format!("api/v1/projects/{project}/{kind}/{name}/{action}"),
            Some(input),
        )
        .await
    }

    /// Releases a volume on a node: its claim and data go (`confirm`: its name).
    pub async fn release_volume(
        &self,
        project: &str,
        name: &str,
        input: &ReleaseInput,
    ) -> Result<ResourceView, CliError> {
        self.call(
            Method::POST,
            &format!("api/v1/projects/{project}/volumes/{name}/release"),
            Some(input),
        )
        .await
    }

    /// Unbinds a released volume: the templates naming it get a version without it.
    pub async fn unbind_volume(
        &self,
        project: &str,
        name: &str,
        input: &UnbindInput,
    ) -> Result<UnbindView, CliError> {
        self.call(
            Method::POST,
            &format!("api/v1/projects/{project}/volumes/{name}/unbind"),
            Some(input),
        )
        .await
    }

    /// Deletes a resource; a volume needs `confirm` (its name).
    pub async fn delete_resource(
        &self,
        project: &str,
        kind: ResourceKind,
        name: &str,
        confirm: Option<&str>,
    ) -> Result<(), CliError> {
        let body = confirm.map(|c| serde_json::json!({ "confirm": c }));
        let _: serde_json::Value = self
            .call(
                Method::DELETE,
                &format!("api/v1/projects/{project}/{kind}/{name}"),
                body.as_ref(),
            )
            .await?;
        Ok(())
    }

    pub async fn status(&self, project: &str, app: &str) -> Result<Vec<Publication>, CliError> {
        let v: PublicationsView = self
            .call::<(), _>(
                Method::GET,
                &format!("{}/publications", Self::app_path(project, app)),
                None,
            )
            .await?;
        Ok(v.publications)
    }

    /// Prints each node's state and prefetch bytes as they change until every
    /// node in `nodes` (all when empty) is running or failed, or gone after an
    /// unpublish. Returns the last publications seen.
    pub async fn watch(
        &self,
        project: &str,
        app: &str,
        nodes: &[String],
        options: WatchOptions,
        out: &mut (dyn Write + Send),
    ) -> Result<Vec<Publication>, CliError> {
        let WatchOptions {
            until,
            interval,
            timeout,
        } = options;
        let started = Instant::now();
        let wanted: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let pubs: Vec<Publication> = self
                .status(project, app)
                .await?
                .into_iter()
                .filter(|p| wanted.is_empty() || wanted.contains(p.node.as_str()))
                .collect();
            for p in &pubs {
                let line = progress_line(p);
                if last.get(&p.node) != Some(&line) {
                    writeln!(out, "{line}")?;
                    last.insert(p.node.clone(), line);
                }
            }
            let done = match until {
                WatchUntil::Settled => pubs.iter().all(|p| {
                    matches!(
                        p.state,
                        PublicationState::Running | PublicationState::Failed { .. }
                    )
                }),
                WatchUntil::Removed => pubs.is_empty(),
            };
            if done {
                for n in &wanted {
                    if until == WatchUntil::Removed && last.contains_key(*n) {
                        writeln!(out, "{n:<16} removed")?;
                    }
                }
                out.flush()?;
                return Ok(pubs);
            }
            if started.elapsed() > timeout {
                return Err(CliError::Timeout(timeout));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// How `watch` polls and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    pub until: WatchUntil,
    pub interval: Duration,
    pub timeout: Duration,
}

impl WatchOptions {
    /// Every second, for up to 30 minutes.
    pub fn new(until: WatchUntil) -> Self {
        WatchOptions {
            until,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1800),
        }
    }
}

/// When `watch` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchUntil {
    /// Every node running or failed.
    Settled,
    /// Every publication gone (after an unpublish).
    Removed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_files() {
        let spec = parse_spec(
            "kind: Deployment\ncontainers:\n- name: web\n  image: shop/web:1.0\n  ports:\n  - container_port: 8080\n",
        )
        .expect("valid");
        assert_eq!(spec.containers[0].ports[0].container_port, 8080);
        let err = parse_spec("kind: Deployment\ncontainers:\n- name: web\n  image: web\n")
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("neither a tag nor a digest"), "{err}");
    }
}
