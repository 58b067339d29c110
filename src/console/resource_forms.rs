//! The six kinds of resource that travel with apps, as the console's forms
//! know them: each kind's create form, the API body a filled form becomes,
//! and a one-line summary of a spec. Pure: no I/O, no API calls.

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

/// How many key/value rows the config map and secret forms offer.
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
    (0..DATA_ROWS)
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

/// The fields of `kind`'s create form, beside name and description.
pub fn fields(ctx: &Ctx, kind: Kind) -> Markup {
    let t = |s| ctx.t(s);
    let input = |name: &str, label: &str, hint: &str, required: bool| {
        html! {
            label { span { (label) } input type="text" name=(name) placeholder=(hint) required[required] autocapitalize="none"; }
        }
    };
    html! {
        @match kind.slug {
            "loadbalancers" => {
                (input("app", t("App"), "web", false))
                (input("selector", t("Or apps with the labels"), "tier=front", false))
                label { span { (t("Type")) } select name="type" { option value="ClusterIP" { "ClusterIP" } option value="LoadBalancer" { "LoadBalancer" } } }
                (input("ports", t("Ports"), "80:8080, 53:5353/UDP", true))
            }
            "eips" => {
                (input("address", t("Static address"), "192.0.2.10", false))
                label.check { input type="checkbox" name="pool" value="true"; span { (t("From the cluster's pool")) } }
                (input("load_balancer", t("Load balancer"), "web-lb", false))
                (input("container_ip", t("Or a container IP"), "10.0.0.5", false))
                (input("selector", t("Or the app with the labels"), "app=web", false))
            }
            "routes" => {
                (input("host", t("Host"), "shop.example.com", true))
                (input("path", t("Path"), "/", false))
                (input("load_balancer", t("Load balancer"), "web-lb", true))
                label { span { (t("Port")) } input type="number" name="port" min="1" max="65535" required; }
            }
            "configmaps" | "secrets" => {
                @let secret = kind.slug == "secrets";
                fieldset.data {
                    legend { (t("Data")) }
                    @for i in 0..DATA_ROWS {
                        div.kv {
                            input type="text" name={"data." (i) ".key"} placeholder=(t("Key")) aria-label=(t("Key")) autocapitalize="none";
                            @if secret {
                                input.secret-value type="password" name={"data." (i) ".value"} placeholder=(t("Value")) aria-label=(t("Value")) autocomplete="off";
                            } @else {
                                input type="text" name={"data." (i) ".value"} placeholder=(t("Value")) aria-label=(t("Value"));
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
