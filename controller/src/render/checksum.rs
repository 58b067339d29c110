//! The checksum annotation on a workload's pod template: the data of the
//! config maps and secrets the pods read, hashed, so a change to either
//! changes the pod template and rolls the pods (Kubernetes does not restart
//! pods when a mounted config map or an env source changes).
//!
//! Owns: what goes into the checksum and where the annotation sits. Pure.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The annotation on the pod template.
pub const CONFIG_CHECKSUM: &str = "berth.dev/config-checksum";

/// `sha256:<hex>` of the ConfigMaps' and Secrets' data among `objects`, in
/// their order; `None` when there are none.
pub fn config_checksum(objects: &[Value]) -> Option<String> {
    let mut h = Sha256::new();
    let mut any = false;
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        if kind != "ConfigMap" && kind != "Secret" {
            continue;
        }
        any = true;
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
        for field in ["data", "stringData", "binaryData"] {
            // serde_json maps are ordered by key: the same data, the same bytes.
            h.update(o[field].to_string().as_bytes());
            h.update([0]);
        }
    }
    any.then(|| format!("sha256:{}", hex::encode(h.finalize())))
}

/// Puts `checksum` on the pod template of every workload among `objects`.
pub fn annotate_pod_templates(objects: &mut [Value], checksum: &str) {
    for o in objects.iter_mut() {
        let template = match o["kind"].as_str() {
            Some("Deployment" | "StatefulSet" | "DaemonSet" | "Job") => {
                o.pointer_mut("/spec/template")
            }
            Some("CronJob") => o.pointer_mut("/spec/jobTemplate/spec/template"),
            _ => None,
        };
        let Some(Value::Object(t)) = template else {
            continue;
        };
        let meta = t
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = meta {
            let ann = m
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(a) = ann {
                a.insert(CONFIG_CHECKSUM.into(), Value::String(checksum.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checksum_follows_the_data_and_lands_on_every_pod_template() {
        let cm =
            |v: &str| json!({"kind": "ConfigMap", "metadata": {"name": "s-n1"}, "data": {"a": v}});
        let a = config_checksum(&[cm("1")]).expect("some");
        assert_eq!(config_checksum(&[cm("1")]), Some(a.clone()), "stable");
        assert_ne!(
            config_checksum(&[cm("2")]),
            Some(a.clone()),
            "data changes it"
        );
        assert_eq!(config_checksum(&[json!({"kind": "Service"})]), None);
        let mut objs = vec![
            json!({"kind": "Deployment", "spec": {"template": {"metadata": {"labels": {}}}}}),
            json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {}}}}}),
            json!({"kind": "Service", "spec": {}}),
        ];
        annotate_pod_templates(&mut objs, &a);
        assert_eq!(
            objs[0]["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM],
            a
        );
        assert_eq!(
            objs[1]["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
                [CONFIG_CHECKSUM],
            a
        );
        assert!(objs[2]["spec"].get("template").is_none());
    }
}
