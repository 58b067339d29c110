//! The six kinds of resource that travel with apps, as the console's forms
//! know them: each kind's form (to create one, or filled from a spec to
//! change it), the API body a filled form becomes, and a one-line summary
//! of a spec. Pure: no I/O, no API calls.

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::Ctx;

/// A kind of resource: its collection in the API and its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The collection: `loadbalancers`, `eips`, ...
    pub slug: &'static str,
    pub title: &'static str,
}

pub const KINDS: [Kind; 6] = [
    Kind {
        slug: "loadbalancers",
        title: "Load balancers",
    },
    Kind {
        slug: "eips",
        title: "EIPs",
    },
    Kind {
        slug: "routes",
        title: "Routes",
    },
    Kind {
        slug: "configmaps",
        title: "Config maps",
    },
    Kind {
        slug: "secrets",
        title: "Secrets",
    },
    Kind {
        slug: "volumes",
        title: "Volumes",
    },
];

pub fn kind(slug: &str) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.slug == slug)
}

/// How many key/value rows the config map and secret forms offer at least
/// (one more than the keys when filled).
const DATA_ROWS: usize = 4;

fn text(form: &HashMap<String, String>, key: &str) -> String {
    form.get(key)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `k=v,k2=v2` as labels; an entry without `=` is the error.
pub fn labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("{p:?}: write a label as key=value")),
        })
        .collect()
}

/// `80`, `80:8080`, `53:5353/UDP`, separated by commas, as service ports.
fn ports(s: &str) -> Result<Vec<Value>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (nums, protocol) = p.split_once('/').unwrap_or((p, "TCP"));
            let (port, target) = match nums.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (nums, None),
            };
            let bad = || format!("{p:?}: write a port as 80, 80:8080 or 53:5353/UDP");
            let port: u32 = port.trim().parse().map_err(|_| bad())?;
            let mut v = json!({ "port": port, "protocol": protocol.trim().to_ascii_uppercase() });
            if let Some(t) = target {
                v["target_port"] = json!(t.trim().parse::<u32>().map_err(|_| bad())?);
            }
            Ok(v)
        })
        .collect()
}

/// The `data.N.key` / `data.N.value` rows as a map (empty keys skipped).
fn data(form: &HashMap<String, String>) -> BTreeMap<String, String> {
    let mut rows: Vec<usize> = form
        .keys()
        .filter_map(|k| k.strip_prefix("data.")?.strip_suffix(".key")?.parse().ok())
        .collect();
    rows.sort_unstable();
    rows.into_iter()
        .filter_map(|i| {
            let k = text(form, &format!("data.{i}.key"));
            let v = form
                .get(&format!("data.{i}.value"))
                .cloned()
                .unwrap_or_default();
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

/// The API's create body for a filled form of `kind`; only fields given are sent,
/// so the API's own defaults and rules apply.
pub fn body(kind: Kind, form: &HashMap<String, String>) -> Result<Value, String> {
    let mut b = Map::new();
    b.insert("name".into(), json!(text(form, "name")));
    let description = text(form, "description");
    if !description.is_empty() {
        b.insert("description".into(), json!(description));
    }
    let mut put = |k: &str, v: Value| {
        b.insert(k.to_string(), v);
    };
    let given = |k: &str| Some(text(form, k)).filter(|v| !v.is_empty());
    match kind.slug {
        "loadbalancers" => {
            if let Some(app) = given("app") {
                put("app", json!(app));
            }
            let sel = labels(&text(form, "selector"))?;
            if !sel.is_empty() {
                put("selector", json!(sel));
            }
            if let Some(t) = given("type") {
                put("type", json!(t));
            }
            put("ports", json!(ports(&text(form, "ports"))?));
        }
        "eips" => {
            for k in ["address", "load_balancer", "container_ip"] {
                if let Some(v) = given(k) {
                    put(k, json!(v));
                }
            }
            if form.get("pool").is_some_and(|v| v == "true") {
                put("pool", json!(true));
            }
            let sel = labels(&text(form, "selector"))?;
            if !sel.is_empty() {
                put("selector", json!(sel));
            }
        }
        "routes" => {
            put("host", json!(text(form, "host")));
            if let Some(p) = given("path") {
                put("path", json!(p));
            }
            put("load_balancer", json!(text(form, "load_balancer")));
            let port = text(form, "port");
            let port: u32 = port
                .parse()
                .map_err(|_| format!("port: {port:?} is not a number"))?;
            put("port", json!(port));
        }
        "configmaps" | "secrets" => put("data", json!(data(form))),
        "volumes" => {
            put("capacity", json!(text(form, "capacity")));
            if let Some(c) = given("storage_class") {
                put("storage_class", json!(c));
            }
        }
        _ => {}
    }
    Ok(Value::Object(b))
}

/// The fields of `kind`'s form, beside name and description, filled with
/// `values` (see [`values`]; empty for a new one).
pub fn fields(ctx: &Ctx, kind: Kind, values: &HashMap<String, String>) -> Markup {
    let t = |s| ctx.t(s);
    let v = |name: &str| values.get(name).map_or("", String::as_str);
    let input = |name: &str, label: &str, hint: &str, required: bool| {
        html! {
            label { span { (label) } input type="text" name=(name) value=(v(name)) placeholder=(hint) required[required] autocapitalize="none"; }
        }
    };
    let rows = DATA_ROWS.max(values.keys().filter(|k| k.ends_with(".key")).count() + 1);
    html! {
        @match kind.slug {
            "loadbalancers" => {
                (input("app", t("App"), "web", false))
                (input("selector", t("Or apps with the labels"), "tier=front", false))
                label { span { (t("Type")) } select name="type" { @for ty in ["ClusterIP", "LoadBalancer"] { option value=(ty) selected[v("type") == ty] { (ty) } } } }
                (input("ports", t("Ports"), "80:8080, 53:5353/UDP", true))
            }
            "eips" => {
                (input("address", t("Static address"), "192.0.2.10", false))
                label.check { input type="checkbox" name="pool" value="true" checked[v("pool") == "true"]; span { (t("From the cluster's pool")) } }
                (input("load_balancer", t("Load balancer"), "web-lb", false))
                (input("container_ip", t("Or a container IP"), "10.0.0.5", false))
                (input("selector", t("Or the app with the labels"), "app=web", false))
            }
            "routes" => {
                (input("host", t("Host"), "shop.example.com", true))
                (input("path", t("Path"), "/", false))
                (input("load_balancer", t("Load balancer"), "web-lb", true))
                label { span { (t("Port")) } input type="number" name="port" value=(v("port")) min="1" max="65535" required; }
            }
            "configmaps" | "secrets" => {
                @let secret = kind.slug == "secrets";
                fieldset.data {
                    legend { (t("Data")) }
                    @for i in 0..rows {
                        @let key = format!("data.{i}.key");
                        @let value = format!("data.{i}.value");
                        div.kv {
                            input type="text" name=(key) value=(v(&key)) placeholder=(t("Key")) aria-label=(t("Key")) autocapitalize="none";
                            @if secret {
                                // A key kept on an edit needs its value again (values are never shown).
                                input.secret-value type="password" name=(value) placeholder=(t("Value")) aria-label=(t("Value")) autocomplete="off" required[!v(&key).is_empty()];
                            } @else {
                                input type="text" name=(value) value=(v(&value)) placeholder=(t("Value")) aria-label=(t("Value"));
                            }
                        }
                    }
                    @if secret {
                        label.check { input type="checkbox" data-reveal=".secret-value"; span { (t("Show the values")) } }
                        p.hint { (t("Values are sealed as they arrive; no page or API answer shows them again.")) }
                    }
                }
            }
            "volumes" => {
                (input("capacity", t("Capacity"), "10Gi", true))
                (input("storage_class", t("Storage class"), "local-storage", false))
            }
            _ => {}
        }
    }
}

/// The form's fields filled from a resource as the API shows it (a
/// secret's keys without their values, which are never shown).
pub fn values(kind: Kind, r: &Value) -> HashMap<String, String> {
    let spec = &r["spec"];
    let mut out = HashMap::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            out.insert(k.to_string(), v);
        }
    };
    let s = |k: &str| match &spec[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    put(
        "description",
        r["description"].as_str().unwrap_or("").into(),
    );
    match kind.slug {
        "loadbalancers" => {
            for k in ["app", "type"] {
                put(k, s(k));
            }
            put("selector", pairs(&spec["selector"]));
            put("ports", ports_text(&spec["ports"]));
        }
        "eips" => {
            for k in ["address", "load_balancer", "container_ip"] {
                put(k, s(k));
            }
            if spec["pool"] == true {
                put("pool", "true".into());
            }
            put("selector", pairs(&spec["selector"]));
        }
        "routes" => {
            for k in ["host", "path", "load_balancer", "port"] {
                put(k, s(k));
            }
        }
        "configmaps" => {
            for (i, (k, v)) in spec["data"].as_object().into_iter().flatten().enumerate() {
                put(&format!("data.{i}.key"), k.clone());
                put(&format!("data.{i}.value"), v.as_str().unwrap_or("").into());
            }
        }
        "secrets" => {
            let keys = spec["keys"].as_array().into_iter().flatten();
            for (i, k) in keys.filter_map(Value::as_str).enumerate() {
                put(&format!("data.{i}.key"), k.into());
            }
        }
        "volumes" => {
            for k in ["capacity", "storage_class"] {
                put(k, s(k));
            }
        }
        _ => {}
    }
    out
}

/// A map of strings as the form's `k=v,k=v`.
fn pairs(v: &Value) -> String {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A load balancer's ports as the form's `80:8080, 53/UDP`.
fn ports_text(ports: &Value) -> String {
    let ports: Vec<String> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut one = p["port"].to_string();
            if let Some(t) = p["target_port"].as_u64() {
                one.push_str(&format!(":{t}"));
            }
            match p["protocol"].as_str() {
                Some(proto) if proto != "TCP" => format!("{one}/{proto}"),
                _ => one,
            }
        })
        .collect();
    ports.join(", ")
}

/// A spec in one line, for the list.
pub fn summary(kind: Kind, spec: &Value) -> String {
    let s = |k: &str| spec[k].as_str().unwrap_or("").to_string();
    let map = |v: &Value| {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    match kind.slug {
        "loadbalancers" => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["target_port"].as_u64() {
                    Some(t) => format!(
                        "{}:{t}/{}",
                        p["port"],
                        p["protocol"].as_str().unwrap_or("TCP")
                    ),
                    None => format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")),
                })
                .collect();
            format!(
                "{} {} → {}",
                s("type"),
                ports.join(", "),
                map(&spec["selector"])
            )
        }
        "eips" => {
            let addr = if spec["pool"] == true {
                "pool".to_string()
            } else {
                s("address")
            };
            let to = [
                s("load_balancer"),
                s("container_ip"),
                map(&spec["selector"]),
            ]
            .into_iter()
            .find(|v| !v.is_empty())
            .unwrap_or_default();
            format!("{addr} → {to}")
        }
        "routes" => format!(
            "{}{} → {}:{}",
            s("host"),
            s("path"),
            s("load_balancer"),
            spec["port"]
        ),
        "configmaps" => spec["data"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        "secrets" => spec["keys"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        "volumes" => format!("{} ({})", s("capacity"), s("storage_class")),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_load_balancer_form_becomes_the_apis_body() {
        let lb = kind("loadbalancers").expect("kind");
        let b = body(
            lb,
            &form(&[
                ("name", "web-lb"),
                ("app", "web"),
                ("ports", "80:8080, 53/udp"),
                ("selector", ""),
            ]),
        )
        .expect("body");
        assert_eq!(
            b,
            json!({"name": "web-lb", "app": "web", "ports": [
                {"port": 80, "target_port": 8080, "protocol": "TCP"},
                {"port": 53, "protocol": "UDP"}]})
        );
        assert!(body(lb, &form(&[("name", "x"), ("ports", "http")])).is_err());
        assert_eq!(
            summary(
                lb,
                &json!({"type": "ClusterIP", "ports": b["ports"], "selector": {"app": "web"}})
            ),
            "ClusterIP 80:8080/TCP, 53/UDP → app=web"
        );
    }

    #[test]
    fn a_form_filled_from_a_resource_gives_back_its_spec() {
        let cases = [
            (
                "loadbalancers",
                json!({"type": "LoadBalancer", "selector": {"tier": "front"},
                    "ports": [{"port": 80, "target_port": 8080, "protocol": "TCP"},
                        {"port": 53, "protocol": "UDP"}]}),
            ),
            ("eips", json!({"pool": true, "load_balancer": "web-lb"})),
            (
                "routes",
                json!({"host": "shop.example.com", "path": "/api", "load_balancer": "web-lb", "port": 80}),
            ),
            (
                "configmaps",
                json!({"data": {"a": "1", "b": "", "c": "3", "d": "4", "e": "5"}}),
            ),
            (
                "volumes",
                json!({"capacity": "1Gi", "storage_class": "local-storage"}),
            ),
        ];
        for (slug, spec) in cases {
            let k = kind(slug).expect("kind");
            let r = json!({"name": "x", "description": "said", "spec": spec});
            let mut f = values(k, &r);
            f.insert("name".into(), "x".into());
            let mut want = spec.as_object().cloned().expect("object");
            want.insert("name".into(), json!("x"));
            want.insert("description".into(), json!("said"));
            assert_eq!(body(k, &f).expect(slug), Value::Object(want), "{slug}");
        }
        // A secret: its keys, never a value.
        let s = kind("secrets").expect("kind");
        let f = values(s, &json!({"name": "db", "spec": {"keys": ["PASSWORD"]}}));
        assert_eq!(f.get("data.0.key").map(String::as_str), Some("PASSWORD"));
        assert!(!f.contains_key("data.0.value"));
    }

    #[test]
    fn secrets_send_the_rows_with_a_key_and_volumes_their_capacity() {
        let s = kind("secrets").expect("kind");
        let b = body(
            s,
            &form(&[
                ("name", "db"),
                ("data.0.key", "PASSWORD"),
                ("data.0.value", "hunter2"),
                ("data.1.value", "stray"),
            ]),
        )
        .expect("body");
        assert_eq!(b, json!({"name": "db", "data": {"PASSWORD": "hunter2"}}));
        let v = kind("volumes").expect("kind");
        let b = body(
            v,
            &form(&[("name", "data"), ("capacity", "1Gi"), ("storage_class", "")]),
        )
        .expect("body");
        assert_eq!(b, json!({"name": "data", "capacity": "1Gi"}));
        assert_eq!(labels("a=1, b = 2").expect("labels").len(), 2);
        assert!(labels("a").is_err());
    }
}
