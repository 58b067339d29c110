//! Drift: whether what is on a node still says what berth applied.
//!
//! Owns: the comparison of an object berth rendered with the live one. Pure.
//! A live object carries fields berth never set (defaults, status, managed
//! fields): only what berth set is compared, leaf by leaf, lists by position.

use serde_json::Value;

/// Whether `live` no longer carries every field of `desired` as berth set it
/// (metadata: only labels and annotations).
pub fn differs(desired: &Value, live: &Value) -> bool {
    let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) else {
        return desired != live;
    };
    d.iter().any(|(k, v)| match k.as_str() {
        "metadata" => ["labels", "annotations"]
            .iter()
            .any(|f| !v[*f].is_null() && !contains(&v[*f], &live["metadata"][*f])),
        "apiVersion" | "kind" | "status" => false,
        _ => !l.get(k).is_some_and(|lv| contains(v, lv)),
    })
}

/// `desired` is contained in `live`: objects by key, lists element by element
/// (same length), scalars equal.
fn contains(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| contains(v, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| contains(a, b))
        }
        // Kubernetes writes some numbers back as strings and vice versa
        // (quantities): the same text is the same value.
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            n.to_string() == *s
        }
        _ => desired == live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_berth_set_is_compared() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web-n1", "labels": {"app.kubernetes.io/managed-by": "berth"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "x@sha256:1"}]}}}});
        let mut live = desired.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["labels"]["extra"] = json!("yes");
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        live["status"] = json!({"readyReplicas": 1});
        assert!(
            !differs(&desired, &live),
            "defaults and status are not drift"
        );
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(3);
        assert!(differs(&desired, &edited), "a field berth set changed");
        let mut image = live.clone();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil");
        assert!(differs(&desired, &image));
        let mut unlabeled = live;
        unlabeled["metadata"]["labels"] = json!({});
        assert!(differs(&desired, &unlabeled), "a label berth set is gone");
    }
}
