use super::*;

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_filled_form_is_an_app_of_two_containers_with_its_load_balancer_and_eip() {
    // Container rows 0 and 3: the page's script numbers new rows past the last.
    let f = form(&[
        ("name", "web"),
        ("kind", "Deployment"),
        ("c.0.image", "acme/web:1.0"),
        ("c.0.ports", "8080"),
        ("c.0.env", "GREETING=hello\r\n\r\n"),
        ("c.0.envfrom:configmaps:settings", "true"),
        ("c.0.mount.0.source", "volumes:data"),
        ("c.0.mount.0.path", "/var/lib/web"),
        ("c.0.mount.1.source", ""),
        ("c.0.mount.1.path", ""),
        ("c.3.name", "sidecar"),
        ("c.3.image", "acme/proxy:2"),
        ("c.3.ports", "5353/udp"),
        ("c.3.mount.0.source", "volumes:data"),
        ("c.3.mount.0.path", "/data"),
        ("lb", "true"),
        ("lb_port", "80"),
        ("eip", "true"),
    ]);
    let p = Draft::from_form(&f).plan().expect("plan");
    assert_eq!(
        p.app,
        json!({"name": "web", "spec": {"kind": "Deployment",
        "containers": [{"name": "web", "image": "acme/web:1.0",
            "ports": [{"container_port": 8080, "protocol": "TCP"}],
            "env": [{"name": "GREETING", "value": "hello"}],
            "env_from": [{"config_map": "settings"}],
            "volume_mounts": [{"name": "vol-data", "mount_path": "/var/lib/web"}]},
            {"name": "sidecar", "image": "acme/proxy:2",
            "ports": [{"container_port": 5353, "protocol": "UDP"}],
            "volume_mounts": [{"name": "vol-data", "mount_path": "/data"}]}],
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
fn unnamed_containers_are_named_after_the_app_and_blank_rows_are_skipped() {
    let f = form(&[
        ("name", "web"),
        ("kind", "Deployment"),
        ("c.0.image", "a/x:1"),
        ("c.1.image", ""),
        ("c.1.mount.0.source", ""),
        ("c.2.image", "a/y:1"),
    ]);
    let spec = Draft::from_form(&f).spec(None).expect("spec");
    let names: Vec<&str> = spec["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "web-2"]);
}

#[test]
fn what_cannot_be_read_is_said() {
    let base = [("name", "web"), ("kind", "Deployment"), ("c.0.image", "x")];
    let with = |extra: (&str, &str)| {
        let mut f = form(&base);
        f.insert(extra.0.into(), extra.1.into());
        Draft::from_form(&f).plan()
    };
    let err = |r: Result<Plan, String>| r.expect_err("refused");
    assert!(err(with(("c.0.ports", "http"))).contains("ports:"));
    assert!(err(with(("c.0.env", "NOVALUE"))).contains("env:"));
    assert!(err(with(("eip", "true"))).starts_with("EIP:"));
    assert!(err(with(("replicas", "many"))).starts_with("replicas:"));
    assert!(err(with(("c.0.mount.0.source", "secrets:db"))).contains("mounts:"));
    assert!(err(with(("c.0.mount.0.path", "/etc/x"))).contains("choose what to mount"));
    assert!(err(with(("c.1.name", "sidecar"))).contains("container sidecar: give it an image"));
    let none = form(&[("name", "web"), ("kind", "Deployment")]);
    assert!(err(Draft::from_form(&none).plan()).starts_with("containers:"));
}

#[test]
fn an_edit_changes_what_the_form_shows_and_keeps_the_rest() {
    let v1 = json!({"kind": "Deployment", "replicas": 2, "labels": {"tier": "front"},
        "containers": [{"name": "web", "image": "acme/web:1.0", "command": ["/srv/web"],
            "ports": [{"name": "http", "container_port": 8080, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}],
            "readiness_probe": {"http_get": {"path": "/", "port": 8080}},
            "volume_mounts": [{"name": "cache", "mount_path": "/cache"},
                {"name": "data", "mount_path": "/data", "sub_path": "web"}]},
            {"name": "log", "image": "acme/log:1"}],
        "volumes": [{"name": "cache", "empty_dir": {"size_limit": "1Gi"}},
            {"name": "data", "persistent_volume_claim": "data"}]});
    let draft = Draft::from_spec("web", &v1);
    assert_eq!(draft.replicas, "2");
    assert_eq!(draft.containers.len(), 2);
    let web = &draft.containers[0];
    assert_eq!((web.ports.as_str(), web.env.as_str()), ("8080", "A=1"));
    assert_eq!(
        web.mounts,
        [
            ("pod:cache".to_string(), "/cache".to_string()),
            ("volumes:data".to_string(), "/data".to_string())
        ]
    );
    // Unchanged, the form gives back the same template.
    assert_eq!(draft.spec(Some(&v1)).expect("same"), v1);

    // A new image and a variable, the sidecar removed, a config map mounted.
    let mut edit = draft.clone();
    edit.containers[0].image = "acme/web:2.0".into();
    edit.containers[0].env.push_str("\nB=2");
    edit.containers[0]
        .mounts
        .push(("configmaps:conf".into(), "/etc/web".into()));
    edit.remove_container(1);
    let v2 = edit.spec(Some(&v1)).expect("v2");
    let c = &v2["containers"][0];
    assert_eq!(c["image"], "acme/web:2.0");
    assert_eq!(c["command"], json!(["/srv/web"]), "kept");
    assert_eq!(c["ports"][0]["name"], "http", "the port's name kept");
    assert_eq!(c["readiness_probe"], v1["containers"][0]["readiness_probe"]);
    assert_eq!(
        c["volume_mounts"][1]["sub_path"], "web",
        "the sub-path kept"
    );
    assert_eq!(c["env"][1], json!({"name": "B", "value": "2"}));
    assert_eq!(v2["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(v2["labels"], json!({"tier": "front"}));
    assert_eq!(
        v2["volumes"],
        json!([{"name": "cache", "empty_dir": {"size_limit": "1Gi"}},
            {"name": "data", "persistent_volume_claim": "data"},
            {"name": "cm-conf", "config_map": "conf"}])
    );
    // Replicas cleared: the API's default again.
    edit.replicas.clear();
    assert!(edit.spec(Some(&v1)).expect("v2").get("replicas").is_none());
}

#[test]
fn a_row_is_removed_by_the_number_it_was_posted_with() {
    let f = form(&[
        ("c.0.image", "a/x:1"),
        ("c.4.image", "a/y:1"),
        ("c.7.image", "a/z:1"),
    ]);
    let mut d = Draft::from_form(&f);
    d.remove_row(&f, 4);
    let images: Vec<&str> = d.containers.iter().map(|c| c.image.as_str()).collect();
    assert_eq!(images, ["a/x:1", "a/z:1"]);
    d.remove_row(&f, 5);
    assert_eq!(d.containers.len(), 2, "no row 5: nothing removed");
}

#[test]
fn rows_are_added_and_removed_but_one_container_stays() {
    let mut d = Draft::new_app();
    d.add_container();
    assert_eq!(d.containers.len(), 2);
    d.remove_container(0);
    d.remove_container(0);
    assert_eq!(d.containers.len(), 1);
    for _ in 0..MAX_CONTAINERS + 2 {
        d.add_container();
    }
    assert_eq!(d.containers.len(), MAX_CONTAINERS);
}

#[test]
fn a_value_the_lines_cannot_hold_survives_an_edit_that_leaves_it_alone() {
    let v1 = json!({"kind": "Deployment", "containers": [{"name": "web", "image": "a/web:1",
        "env": [{"name": "PEM", "value": "-----BEGIN-----\nAAAA\n-----END-----"},
            {"name": "PAD", "value": "x  "}]}]});
    let mut draft = Draft::from_spec("web", &v1);
    draft.containers[0].image = "a/web:2".into();
    // As a browser posts it back: CRLF line ends, trailing blanks trimmed.
    draft.containers[0].env = draft.containers[0]
        .env
        .replace('\n', "\r\n")
        .trim_end()
        .into();
    let v2 = draft.spec(Some(&v1)).expect("v2");
    assert_eq!(v2["containers"][0]["env"], v1["containers"][0]["env"]);
    assert_eq!(v2["containers"][0]["image"], "a/web:2");
}
