//! Reading a kubeconfig: what a person needs to recognise it, and the same
//! file scoped to a namespace.
//!
//! Owns: the few kubeconfig fields berth reads or sets. Must not touch: the
//! credentials in it (they are carried over as given, never shown).

use serde::{Deserialize, Serialize};

/// Parses and checks a kubeconfig; returns (server URL of the current context, context name).
pub fn kubeconfig_summary(kubeconfig: &str) -> Result<KubeconfigSummary, String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig)
        .map_err(|e| format!("kubeconfig is not valid YAML: {e}"))?;
    let current = doc
        .get("current-context")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or("kubeconfig has no current-context; set one to the context berth should use")?;
    let context = doc
        .get("contexts")
        .and_then(|v| v.as_sequence())
        .and_then(|seq| {
            seq.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(current))
        })
        .and_then(|c| c.get("context"))
        .ok_or_else(|| {
            format!("kubeconfig has no context named {current:?} (its current-context)")
        })?;
    let cluster_name = context
        .get("cluster")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("kubeconfig context {current:?} names no cluster"))?;
    let server = doc
        .get("clusters")
        .and_then(|v| v.as_sequence())
        .and_then(|seq| {
            seq.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(cluster_name))
        })
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("server"))
        .and_then(|s| s.as_str())
        .ok_or_else(|| format!("kubeconfig has no cluster {cluster_name:?} with a server URL"))?;
    Ok(KubeconfigSummary {
        server: server.to_string(),
        current_context: current.to_string(),
    })
}

/// What a person needs to recognise a stored kubeconfig without seeing its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeconfigSummary {
    pub server: String,
    pub current_context: String,
}

/// The cluster's kubeconfig with `namespace` set on its current context, so that
/// `kubectl` run with it lands in the project's namespace.
pub fn kubeconfig_for_namespace(kubeconfig: &str, namespace: &str) -> Result<String, String> {
    let summary = kubeconfig_summary(kubeconfig)?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig)
        .map_err(|e| format!("kubeconfig is not valid YAML: {e}"))?;
    let contexts = doc
        .get_mut("contexts")
        .and_then(|v| v.as_sequence_mut())
        .ok_or("kubeconfig has no contexts")?;
    for c in contexts.iter_mut() {
        if c.get("name").and_then(|n| n.as_str()) == Some(summary.current_context.as_str()) {
            if let Some(ctx) = c.get_mut("context").and_then(|v| v.as_mapping_mut()) {
                ctx.insert("namespace".into(), namespace.into());
            }
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| format!("cannot write kubeconfig: {e}"))
}

/// A kubeconfig with one context: the stored kubeconfig's current cluster
/// (server, CA; never its credentials), `user` with `token`, and `namespace`.
pub fn scoped_kubeconfig(
    cluster_kubeconfig: &str,
    context_name: &str,
    namespace: &str,
    user: &str,
    token: &str,
) -> Result<String, String> {
    let summary = kubeconfig_summary(cluster_kubeconfig)?;
    let doc: serde_yaml::Value = serde_yaml::from_str(cluster_kubeconfig)
        .map_err(|e| format!("kubeconfig is not valid YAML: {e}"))?;
    let named = |list: &str, name: &str| {
        doc.get(list)
            .and_then(|v| v.as_sequence())
            .and_then(|seq| {
                seq.iter()
                    .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
            })
            .cloned()
    };
    let context =
        named("contexts", &summary.current_context).ok_or("kubeconfig has no current context")?;
    let cluster_name = context["context"]["cluster"]
        .as_str()
        .ok_or("kubeconfig's current context names no cluster")?
        .to_string();
    let cluster = named("clusters", &cluster_name).ok_or("kubeconfig has no such cluster")?;
    let out = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": cluster_name, "cluster": serde_json::to_value(&cluster["cluster"])
            .map_err(|e| e.to_string())? }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{ "name": context_name, "context": {
            "cluster": cluster_name, "user": user, "namespace": namespace } }],
        "current-context": context_name,
    });
    serde_yaml::to_string(&out).map_err(|e| format!("cannot write kubeconfig: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_namespace() {
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: edge\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: edge\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n";
        let s = kubeconfig_summary(kc).expect("valid");
        assert_eq!(s.server, "https://10.0.0.1:6443");
        let out = kubeconfig_for_namespace(kc, "shop").expect("valid");
        let v: serde_yaml::Value = serde_yaml::from_str(&out).expect("yaml");
        assert_eq!(
            v["contexts"][0]["context"]["namespace"].as_str(),
            Some("shop")
        );
        assert!(kubeconfig_summary("current-context: x\n").is_err());
        let scoped =
            scoped_kubeconfig(kc, "shop@n1", "shop", "berth-shop", "sa-token").expect("ok");
        assert!(!scoped.contains("token: t\n"), "{scoped}");
        let s = kubeconfig_summary(&scoped).expect("valid");
        assert_eq!(s.server, "https://10.0.0.1:6443");
        assert_eq!(s.current_context, "shop@n1");
        let v: serde_yaml::Value = serde_yaml::from_str(&scoped).expect("yaml");
        assert_eq!(
            v["contexts"][0]["context"]["namespace"].as_str(),
            Some("shop")
        );
        assert_eq!(v["users"][0]["user"]["token"].as_str(), Some("sa-token"));
        assert!(kubeconfig_summary(": : :").is_err());
    }
}
