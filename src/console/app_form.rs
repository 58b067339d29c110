//! An app's template as a form, instead of YAML: its kind, replicas (a
//! CronJob's schedule), any number of containers — each with its image
//! (suggestions of the tags the registry holds, proxy projects' cached
//! images included), ports, environment, environment from config maps and
//! secrets, and mounts of the project's config maps, secrets and volumes —
//! and, for a new app, a load balancer and an EIP created with it, as the
//! manual lets.
//!
//! This module owns the [`Draft`]: read from a posted form, or from an
//! app's current template to edit it into a new version, and turned into the
//! API's bodies. Pure, tested here; `app_form_view` draws the form and
//! `apps` makes the calls. Editing keeps what the form does not show
//! (commands, probes, resources, a port's name, a mount's sub-path, an
//! `emptyDir`'s limits) from the version it starts from.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Most containers one form holds.
pub const MAX_CONTAINERS: usize = 16;

/// The form's fields, as typed (a field that cannot be read is kept as it
/// is, so the page can show it again with the reason).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub name: String,
    pub kind: String,
    pub replicas: String,
    pub schedule: String,
    pub containers: Vec<ContainerDraft>,
    pub lb: bool,
    pub lb_port: String,
    pub eip: bool,
    pub eip_address: String,
}

/// One container's fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerDraft {
    pub name: String,
    pub image: String,
    /// `8080, 5353/UDP`
    pub ports: String,
    /// `NAME=value`, one a line.
    pub env: String,
    /// (source, path in the container); a source is `configmaps:<name>`,
    /// `secrets:<name>`, `volumes:<name>`, or `pod:<volume>` for a volume of
    /// the template the form does not make (an `emptyDir`).
    pub mounts: Vec<(String, String)>,
    /// `configmaps:<name>` or `secrets:<name>`.
    pub env_from: Vec<String>,
}

impl ContainerDraft {
    fn is_blank(&self) -> bool {
        self.name.is_empty()
            && self.image.is_empty()
            && self.ports.is_empty()
            && self.env.trim().is_empty()
            && self
                .mounts
                .iter()
                .all(|(s, p)| s.is_empty() && p.is_empty())
            && self.env_from.is_empty()
    }
}

/// The calls a filled form for a new app makes, in order.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub app: Value,
    pub load_balancer: Option<Value>,
    pub eip: Option<Value>,
}

fn text(form: &HashMap<String, String>, key: &str) -> String {
    form.get(key)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn checked(form: &HashMap<String, String>, key: &str) -> bool {
    form.get(key).is_some_and(|v| v == "true")
}

/// The numbers `n` of the fields `<prefix><n>.<...>`, in order: rows the
/// page's script added or removed leave gaps, which do not matter.
fn indices(form: &HashMap<String, String>, prefix: &str) -> Vec<usize> {
    let mut out: Vec<usize> = form
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.split_once('.')?.0.parse().ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Draft {
    /// A draft for a new app: one empty container.
    pub fn new_app() -> Draft {
        Draft {
            kind: "Deployment".into(),
            containers: vec![ContainerDraft::default()],
            ..Draft::default()
        }
    }

    /// The fields of a posted form (`c.<n>.image`, `c.<n>.mount.<m>.path`, ...).
    pub fn from_form(form: &HashMap<String, String>) -> Draft {
        let mut containers: Vec<ContainerDraft> = indices(form, "c.")
            .into_iter()
            .take(MAX_CONTAINERS)
            .map(|i| container_from_form(form, i))
            .collect();
        if containers.is_empty() {
            containers.push(ContainerDraft::default());
        }
        Draft {
            name: text(form, "name"),
            kind: text(form, "kind"),
            replicas: text(form, "replicas"),
            schedule: text(form, "schedule"),
            containers,
            lb: checked(form, "lb"),
            lb_port: text(form, "lb_port"),
            eip: checked(form, "eip"),
            eip_address: text(form, "eip_address"),
        }
    }

    /// The form filled from an app's template (`spec` as the API shows it).
    pub fn from_spec(name: &str, spec: &Value) -> Draft {
        let sources: HashMap<&str, String> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, volume_source(v))))
            .collect();
        let containers = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| container_from_spec(c, &sources))
            .collect();
        let s = |k: &str| match &spec[k] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        Draft {
            name: name.to_string(),
            kind: s("kind"),
            replicas: s("replicas"),
            schedule: s("schedule"),
            containers,
            ..Draft::default()
        }
    }

    /// Adds an empty container row (a form without script asks this way).
    pub fn add_container(&mut self) {
        if self.containers.len() < MAX_CONTAINERS {
            self.containers.push(ContainerDraft::default());
        }
    }

    /// Removes the container of the form's row `c.<row>.*` (rows are numbered
    /// as posted, in order), keeping at least one.
    pub fn remove_row(&mut self, form: &HashMap<String, String>, row: usize) {
        if let Some(i) = indices(form, "c.").iter().position(|r| *r == row) {
            self.remove_container(i);
        }
    }

    /// Removes the `i`-th container, keeping at least one.
    pub fn remove_container(&mut self, i: usize) {
        if self.containers.len() > 1 && i < self.containers.len() {
            self.containers.remove(i);
        }
    }

    /// The template the form describes, starting from `base` (the version
    /// being edited) for what the form does not show.
    pub fn spec(&self, base: Option<&Value>) -> Result<Value, String> {
        let empty = json!({});
        let base = base.unwrap_or(&empty);
        let mut spec = base.as_object().cloned().unwrap_or_default();
        spec.insert("kind".into(), json!(self.kind));
        set_or_remove(&mut spec, "replicas", number("replicas", &self.replicas)?);
        let schedule = Some(&self.schedule).filter(|s| !s.is_empty());
        set_or_remove(&mut spec, "schedule", schedule.map(|s| json!(s)));
        let mut volumes: Vec<Value> = Vec::new();
        let mut containers = Vec::new();
        let given = self.containers.iter().filter(|c| !c.is_blank());
        for (pos, c) in given.enumerate() {
            let name = match (c.name.as_str(), pos) {
                ("", 0) => self.name.clone(),
                ("", _) => format!("{}-{}", self.name, pos + 1),
                (n, _) => n.to_string(),
            };
            if c.image.is_empty() {
                return Err(format!("container {name}: give it an image"));
            }
            let was = base["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["name"] == name.as_str());
            containers.push(container_spec(c, &name, was, base, &mut volumes)?);
        }
        if containers.is_empty() {
            return Err("containers: give at least one container an image".into());
        }
        spec.insert("containers".into(), json!(containers));
        let vols = Some(volumes).filter(|v| !v.is_empty());
        set_or_remove(&mut spec, "volumes", vols.map(Value::from));
        Ok(Value::Object(spec))
    }

    /// The calls that create the app and what was asked for with it.
    pub fn plan(&self) -> Result<Plan, String> {
        let spec = self.spec(None)?;
        let name = &self.name;
        let lb_name = format!("{name}-lb");
        let load_balancer = if self.lb {
            let port: u32 = self
                .lb_port
                .parse()
                .map_err(|_| format!("load balancer port: {:?} is not a number", self.lb_port))?;
            let target = spec["containers"][0]["ports"][0]["container_port"]
                .as_u64()
                .unwrap_or(u64::from(port));
            Some(
                json!({ "name": lb_name, "app": name, "ports": [{ "port": port, "target_port": target }] }),
            )
        } else {
            None
        };
        let eip = if self.eip {
            if load_balancer.is_none() {
                return Err(
                    "EIP: it sends traffic to the app's load balancer; create one with it".into(),
                );
            }
            let mut e = json!({ "name": format!("{name}-eip"), "load_balancer": lb_name });
            if self.eip_address.is_empty() {
                e["pool"] = json!(true);
            } else {
                e["address"] = json!(self.eip_address);
            }
            Some(e)
        } else {
            None
        };
        Ok(Plan {
            app: json!({ "name": name, "spec": spec }),
            load_balancer,
            eip,
        })
    }
}

fn container_from_form(form: &HashMap<String, String>, i: usize) -> ContainerDraft {
    let prefix = format!("c.{i}.");
    let mounts = indices(form, &format!("{prefix}mount."))
        .into_iter()
        .map(|j| {
            let f = |k: &str| text(form, &format!("{prefix}mount.{j}.{k}"));
            (f("source"), f("path"))
        })
        .filter(|(s, p)| !s.is_empty() || !p.is_empty())
        .collect();
    let envfrom = format!("{prefix}envfrom:");
    let mut env_from: Vec<String> = form
        .keys()
        .filter(|k| checked(form, k))
        .filter_map(|k| k.strip_prefix(&envfrom).map(str::to_string))
        .collect();
    env_from.sort();
    ContainerDraft {
        name: text(form, &format!("{prefix}name")),
        image: text(form, &format!("{prefix}image")),
        ports: text(form, &format!("{prefix}ports")),
        env: form
            .get(&format!("{prefix}env"))
            .map(|e| e.trim_end().to_string())
            .unwrap_or_default(),
        mounts,
        env_from,
    }
}

/// How the form names what a pod volume holds.
fn volume_source(v: &Value) -> String {
    for (field, kind) in [
        ("config_map", "configmaps"),
        ("secret", "secrets"),
        ("persistent_volume_claim", "volumes"),
    ] {
        if let Some(n) = v[field].as_str() {
            return format!("{kind}:{n}");
        }
    }
    format!("pod:{}", v["name"].as_str().unwrap_or(""))
}

fn container_from_spec(c: &Value, sources: &HashMap<&str, String>) -> ContainerDraft {
    let list = |k: &str| c[k].as_array().cloned().unwrap_or_default();
    let ports: Vec<String> = list("ports")
        .iter()
        .map(|p| match p["protocol"].as_str() {
            Some(proto) if proto != "TCP" => format!("{}/{proto}", p["container_port"]),
            _ => p["container_port"].to_string(),
        })
        .collect();
    let mounts = list("volume_mounts")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or("");
            let source = sources
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("pod:{name}"));
            (source, m["mount_path"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let env_from = list("env_from")
        .iter()
        .filter_map(|e| {
            let (kind, n) = match (e["config_map"].as_str(), e["secret"].as_str()) {
                (Some(n), _) => ("configmaps", n),
                (_, Some(n)) => ("secrets", n),
                _ => return None,
            };
            Some(format!("{kind}:{n}"))
        })
        .collect();
    ContainerDraft {
        name: c["name"].as_str().unwrap_or("").to_string(),
        image: c["image"].as_str().unwrap_or("").to_string(),
        ports: ports.join(", "),
        env: env_text(c),
        mounts,
        env_from,
    }
}

/// `NAME=value` lines as variables.
fn env_vars(container: &str, text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(json!({ "name": k.trim(), "value": v })),
            _ => Err(format!(
                "container {container}: env: {l:?}: write a variable as NAME=value"
            )),
        })
        .collect()
}

/// A container's environment as the form shows it: `NAME=value` lines.
fn env_text(c: &Value) -> String {
    let lines: Vec<String> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let v = e["value"].as_str().unwrap_or("");
            format!("{}={v}", e["name"].as_str().unwrap_or(""))
        })
        .collect();
    lines.join("\n")
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    match v {
        Some(v) => m.insert(key.into(), v),
        None => m.remove(key),
    };
}

fn number(field: &str, s: &str) -> Result<Option<Value>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{field}: {s:?} is not a number"))?;
    Ok(Some(json!(n)))
}

/// One container of the template: `was` is the container of the same name
/// in the version being edited, whose fields the form does not show stay.
fn container_spec(
    c: &ContainerDraft,
    name: &str,
    was: Option<&Value>,
    base: &Value,
    volumes: &mut Vec<Value>,
) -> Result<Value, String> {
    let was = was.cloned().unwrap_or_else(|| json!({}));
    let mut out = was.as_object().cloned().unwrap_or_default();
    out.insert("name".into(), json!(name));
    out.insert("image".into(), json!(c.image));
    let mut ports = Vec::new();
    for p in c.ports.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (num, protocol) = p.split_once('/').unwrap_or((p, "TCP"));
        let port: u32 = num.trim().parse().map_err(|_| {
            format!("container {name}: ports: {p:?}: write a port as 8080 or 5353/UDP")
        })?;
        let protocol = protocol.trim().to_ascii_uppercase();
        let kept = was["ports"].as_array().into_iter().flatten().find(|x| {
            x["container_port"] == port && x["protocol"].as_str().unwrap_or("TCP") == protocol
        });
        ports.push(
            kept.cloned()
                .unwrap_or_else(|| json!({ "container_port": port, "protocol": protocol })),
        );
    }
    // Left as it was shown: the variables as they were, so a value the lines
    // cannot hold (one with a line break, trailing blanks) survives the edit.
    let shown = env_text(&was);
    let env = match was["env"].as_array() {
        Some(kept) if c.env.replace("\r\n", "\n").trim_end() == shown.trim_end() => kept.clone(),
        _ => env_vars(name, &c.env)?,
    };
    let env_from: Vec<Value> = c
        .env_from
        .iter()
        .filter_map(|s| match s.split_once(':') {
            Some(("configmaps", n)) => Some(json!({ "config_map": n })),
            Some(("secrets", n)) => Some(json!({ "secret": n })),
            _ => None,
        })
        .collect();
    let mut mounts = Vec::new();
    for (source, path) in &c.mounts {
        if source.is_empty() {
            return Err(format!(
                "container {name}: mounts: choose what to mount at {path}"
            ));
        }
        if path.is_empty() {
            return Err(format!(
                "container {name}: mounts: give {source} a path in the container"
            ));
        }
        let vname = pod_volume(source, base, volumes)?;
        let kept = was["volume_mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == vname.as_str() && m["mount_path"] == path.as_str());
        mounts.push(
            kept.cloned()
                .unwrap_or_else(|| json!({ "name": vname, "mount_path": path })),
        );
    }
    for (k, v) in [
        ("ports", ports),
        ("env", env),
        ("env_from", env_from),
        ("volume_mounts", mounts),
    ] {
        set_or_remove(
            &mut out,
            k,
            Some(v).filter(|v| !v.is_empty()).map(Value::from),
        );
    }
    Ok(Value::Object(out))
}

/// The pod volume holding `source`, added to `volumes` when first used: the
/// one of the edited version that holds it (so its name and settings stay),
/// else a new one named after the kind and the resource (`vol-data`), so a
/// config map and a secret called alike stay apart.
fn pod_volume(source: &str, base: &Value, volumes: &mut Vec<Value>) -> Result<String, String> {
    let existing = base["volumes"].as_array().cloned().unwrap_or_default();
    let found = existing
        .iter()
        .find(|v| volume_source(v) == source)
        .cloned();
    let volume = match (found, source.split_once(':')) {
        (Some(v), _) => v,
        (None, Some((kind @ ("configmaps" | "secrets" | "volumes"), res))) => {
            let (prefix, field) = match kind {
                "configmaps" => ("cm", "config_map"),
                "secrets" => ("secret", "secret"),
                _ => ("vol", "persistent_volume_claim"),
            };
            json!({ "name": format!("{prefix}-{res}"), field: res })
        }
        _ => return Err(format!("mounts: the template has no volume {source:?}")),
    };
    let name = volume["name"].as_str().unwrap_or("").to_string();
    if !volumes.iter().any(|v| v["name"] == name.as_str()) {
        volumes.push(volume);
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
