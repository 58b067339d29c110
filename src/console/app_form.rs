//! Creating an app from a form instead of YAML: its kind, one container
//! (image with suggestions of the tags the registry holds, proxy projects'
//! cached images included), ports, environment, mounts of the project's
//! config maps, secrets and volumes, environment from config maps and
//! secrets, and a load balancer and an EIP created with it, as the manual
//! lets. This module turns the form into the API's bodies (pure, tested
//! here) and draws the form; `apps` makes the calls.

use std::collections::HashMap;

use maud::{html, Markup};
use serde_json::{json, Value};

use super::{layout, urlencode, Ctx};

/// How many mount rows the form offers.
const MOUNT_ROWS: usize = 3;

/// What the project has that an app can use, by kind (`configmaps`, `secrets`, `volumes`).
pub type Usable = Vec<(&'static str, Vec<String>)>;

/// The calls a filled form makes, in order.
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

/// The pod volume's name for a resource: the kind keeps names of a config
/// map and a secret called alike apart.
fn volume_name(kind: &str, name: &str) -> String {
    let prefix = match kind {
        "configmaps" => "cm",
        "secrets" => "secret",
        _ => "vol",
    };
    format!("{prefix}-{name}")
}

/// The form as the API's bodies; a field that cannot be read is the error.
pub fn plan(form: &HashMap<String, String>) -> Result<Plan, String> {
    let name = text(form, "name");
    let mut container = json!({
        "name": Some(text(form, "container")).filter(|c| !c.is_empty()).unwrap_or_else(|| name.clone()),
        "image": text(form, "image"),
    });
    let mut ports = Vec::new();
    for p in text(form, "ports")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (num, protocol) = p.split_once('/').unwrap_or((p, "TCP"));
        let port: u32 = num
            .trim()
            .parse()
            .map_err(|_| format!("ports: {p:?}: write a port as 8080 or 5353/UDP"))?;
        ports.push(
            json!({ "container_port": port, "protocol": protocol.trim().to_ascii_uppercase() }),
        );
    }
    let env: Vec<Value> = form
        .get("env")
        .map(String::as_str)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(json!({ "name": k.trim(), "value": v })),
            _ => Err(format!("env: {l:?}: write a variable as NAME=value")),
        })
        .collect::<Result<_, _>>()?;
    let mut env_from = Vec::new();
    let mut keys: Vec<&String> = form.keys().filter(|k| k.starts_with("envfrom:")).collect();
    keys.sort();
    for k in keys.into_iter().filter(|k| checked(form, k)) {
        match k["envfrom:".len()..].split_once(':') {
            Some(("configmaps", n)) => env_from.push(json!({ "config_map": n })),
            Some(("secrets", n)) => env_from.push(json!({ "secret": n })),
            _ => {}
        }
    }
    let (mut mounts, mut volumes) = (Vec::new(), Vec::new());
    for i in 0..MOUNT_ROWS {
        let source = text(form, &format!("mount.{i}.source"));
        let path = text(form, &format!("mount.{i}.path"));
        let Some((kind, res)) = source.split_once(':') else {
            continue;
        };
        if path.is_empty() {
            return Err(format!("mounts: give {res} a path in the container"));
        }
        let vname = volume_name(kind, res);
        mounts.push(json!({ "name": vname, "mount_path": path }));
        let field = match kind {
            "configmaps" => "config_map",
            "secrets" => "secret",
            _ => "persistent_volume_claim",
        };
        if !volumes.iter().any(|v: &Value| v["name"] == vname.as_str()) {
            volumes.push(json!({ "name": vname, field: res }));
        }
    }
    for (k, v) in [
        ("ports", ports.clone()),
        ("env", env),
        ("env_from", env_from),
        ("volume_mounts", mounts),
    ] {
        if !v.is_empty() {
            container[k] = json!(v);
        }
    }
    let mut spec = json!({ "kind": text(form, "kind"), "containers": [container] });
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    let replicas = text(form, "replicas");
    if !replicas.is_empty() {
        let r: u32 = replicas
            .parse()
            .map_err(|_| format!("replicas: {replicas:?} is not a number"))?;
        spec["replicas"] = json!(r);
    }
    let lb_name = format!("{name}-lb");
    let load_balancer = if checked(form, "lb") {
        let lb_port = text(form, "lb_port");
        let port: u32 = lb_port
            .parse()
            .map_err(|_| format!("load balancer port: {lb_port:?} is not a number"))?;
        let target = ports
            .first()
            .and_then(|p| p["container_port"].as_u64())
            .unwrap_or(u64::from(port));
        Some(
            json!({ "name": lb_name, "app": name, "ports": [{ "port": port, "target_port": target }] }),
        )
    } else {
        None
    };
    let eip = if checked(form, "eip") {
        if load_balancer.is_none() {
            return Err(
                "EIP: it sends traffic to the app's load balancer; create one with it".into(),
            );
        }
        let address = text(form, "eip_address");
        let mut e = json!({ "name": format!("{name}-eip"), "load_balancer": lb_name });
        if address.is_empty() {
            e["pool"] = json!(true);
        } else {
            e["address"] = json!(address);
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

/// The create form; `images` are the suggestions (`project/repo:tag`).
pub fn form(ctx: &Ctx, project: &str, images: &[String], usable: &Usable) -> Markup {
    let t = |s| ctx.t(s);
    html! {
        form.stack #new-app method="post" action={"/ui/projects/" (urlencode(project)) "/new-app"} {
            (layout::csrf(ctx))
            label { span { (t("Name")) } input type="text" name="name" required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="50" autocapitalize="none"; }
            label { span { (t("Kind")) } select name="kind" { @for k in ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"] { option value=(k) { (k) } } } }
            label { span { (t("Replicas")) } input type="number" name="replicas" min="1" max="1000" placeholder="1"; }
            label { span { (t("Image")) } input type="text" name="image" list="image-suggestions" required autocapitalize="none" placeholder={(project) "/web:1.0"}; }
            datalist #image-suggestions { @for i in images { option value=(i) {} } }
            label { span { (t("Container name")) } input type="text" name="container" autocapitalize="none" placeholder=(t("the app's name")); }
            label { span { (t("Container ports")) } input type="text" name="ports" placeholder="8080, 5353/UDP"; }
            label { span { (t("Environment")) } textarea name="env" rows="3" spellcheck="false" placeholder="GREETING=hello" {} }
            fieldset {
                legend { (t("Mounts")) }
                @for i in 0..MOUNT_ROWS {
                    div.kv {
                        select name={"mount." (i) ".source"} aria-label=(t("Mounted resource")) {
                            option value="" { "—" }
                            @for (kind, names) in usable { @for n in names { option value={(kind) ":" (n)} { (kind_word(ctx, kind)) ": " (n) } } }
                        }
                        input type="text" name={"mount." (i) ".path"} placeholder="/etc/app" aria-label=(t("Path in the container"));
                    }
                }
            }
            fieldset {
                legend { (t("Environment from")) }
                @if usable.iter().all(|(k, n)| *k == "volumes" || n.is_empty()) { p.muted { (t("No config maps or secrets in this project.")) } }
                @for (kind, names) in usable.iter().filter(|(k, _)| *k != "volumes") {
                    @for n in names {
                        label.check { input type="checkbox" name={"envfrom:" (kind) ":" (n)} value="true"; span { (kind_word(ctx, kind)) ": " (n) } }
                    }
                }
            }
            fieldset {
                legend { (t("Created with it")) }
                label.check { input type="checkbox" name="lb" value="true"; span { (t("A load balancer on port")) } }
                input type="number" name="lb_port" min="1" max="65535" placeholder="80" aria-label=(t("Load balancer port"));
                label.check { input type="checkbox" name="eip" value="true"; span { (t("An EIP in front of it (blank: from the cluster's pool)")) } }
                input type="text" name="eip_address" placeholder="192.0.2.10" aria-label=(t("Static address"));
            }
            button type="submit" { (t("Create")) }
        }
    }
}

fn kind_word(ctx: &Ctx, kind: &str) -> &'static str {
    match kind {
        "configmaps" => ctx.t("config map"),
        "secrets" => ctx.t("secret"),
        _ => ctx.t("volume"),
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
    fn a_filled_form_is_an_app_with_its_load_balancer_and_eip() {
        let f = form(&[
            ("name", "web"),
            ("kind", "Deployment"),
            ("image", "acme/web:1.0"),
            ("ports", "8080"),
            ("env", "GREETING=hello\n\n"),
            ("envfrom:configmaps:settings", "true"),
            ("mount.0.source", "volumes:data"),
            ("mount.0.path", "/var/lib/web"),
            ("mount.1.source", ""),
            ("lb", "true"),
            ("lb_port", "80"),
            ("eip", "true"),
        ]);
        let p = plan(&f).expect("plan");
        assert_eq!(
            p.app,
            json!({"name": "web", "spec": {"kind": "Deployment",
            "containers": [{"name": "web", "image": "acme/web:1.0",
                "ports": [{"container_port": 8080, "protocol": "TCP"}],
                "env": [{"name": "GREETING", "value": "hello"}],
                "env_from": [{"config_map": "settings"}],
                "volume_mounts": [{"name": "vol-data", "mount_path": "/var/lib/web"}]}],
            "volumes": [{"name": "vol-data", "persistent_volume_claim": "data"}]}})
        );
        assert_eq!(
            p.load_balancer,
            Some(json!({"name": "web-lb", "app": "web",
            "ports": [{"port": 80, "target_port": 8080}]}))
        );
        assert_eq!(
            p.eip,
            Some(json!({"name": "web-eip", "load_balancer": "web-lb", "pool": true}))
        );
    }

    #[test]
    fn what_cannot_be_read_is_said() {
        let base = [("name", "web"), ("kind", "Deployment"), ("image", "x")];
        let with = |extra: (&str, &str)| {
            let mut f = form(&base);
            f.insert(extra.0.into(), extra.1.into());
            plan(&f)
        };
        assert!(with(("ports", "http"))
            .expect_err("refused")
            .starts_with("ports:"));
        assert!(with(("env", "NOVALUE"))
            .expect_err("refused")
            .starts_with("env:"));
        assert!(with(("eip", "true"))
            .expect_err("refused")
            .starts_with("EIP:"));
        assert!(with(("mount.0.source", "secrets:db"))
            .expect_err("refused")
            .starts_with("mounts:"));
    }
}
