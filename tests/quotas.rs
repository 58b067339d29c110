//! Storage quotas and immutable tags, end to end: raw protocol requests for
//! each way bytes arrive (monolithic and chunked uploads, concurrent
//! completions, mounts, manifest pushes), skopeo pushing into a project at
//! and over its limit and against immutable tags, usage through deletes and
//! GC held against a recount, and who may set what.

use std::collections::BTreeSet;

use berth_testkit::berth::{self, Admin, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{digest_of, media_types::OCI_MANIFEST, ImageBuilder, OciLayout};
use berth_testkit::http::{basic, push_blob, push_image_with, send, Answer, Auth};
use berth_testkit::tools::{docker_ref, CopyOptions};
use berth_testkit::{require_tools, Creds, Skopeo};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// `n` bytes that differ with `seed`.
fn bytes(seed: u32, n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503))
                >> 13) as u8
        })
        .collect()
}

fn storage(admin: &Admin, project: &str) -> Value {
    let (s, v) = admin.call("GET", &format!("/api/v1/projects/{project}"), None);
    assert_eq!(s, 200, "{v}");
    v["storage"].clone()
}

fn usage(admin: &Admin, project: &str) -> u64 {
    storage(admin, project)["usage"].as_u64().expect("usage")
}

fn set_quota(admin: &Admin, project: &str, quota: Value) -> Value {
    let (s, v) = admin.call(
        "PATCH",
        &format!("/api/v1/projects/{project}"),
        Some(json!({ "quota": quota })),
    );
    assert_eq!(s, 200, "setting the quota of {project}: {v}");
    v
}

/// The counter equals a recount of what the project holds; returns it.
fn recount(admin: &Admin, project: &str) -> u64 {
    let (s, v) = admin.call(
        "POST",
        &format!("/api/v1/projects/{project}/usage/recount"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["counted"], v["recounted"],
        "{project}: usage drifted: {v}"
    );
    v["recounted"].as_u64().expect("recounted")
}

fn denied(a: &Answer, what: &str) {
    assert_eq!(a.describe(), "403 DENIED", "{what}: {a:?}");
}

/// Starts an upload session in `repo` and sends all of `content` (if any)
/// as one chunk; returns the session's URL.
fn chunked_upload(http: &Client, base: &str, repo: &str, content: &[u8]) -> String {
    let res = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("upload start");
    let location = res.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    if content.is_empty() {
        return url;
    }
    let res = http
        .patch(&url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("0-{}", content.len() - 1))
        .body(content.to_vec())
        .send()
        .expect("PATCH");
    assert_eq!(res.status().as_u16(), 202, "chunk");
    url
}

/// Completes an upload with a last chunk in the PUT.
fn finish_with(http: &Client, url: &str, auth: &Auth, digest: &str, last: Vec<u8>) -> Answer {
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}digest={digest}");
    send(
        http,
        "PUT",
        &url,
        auth,
        Some(("application/octet-stream", last)),
    )
}

fn finish(http: &Client, url: &str, auth: &Auth, digest: &str) -> Answer {
    let sep = if url.contains('?') { '&' } else { '?' };
    send(
        http,
        "PUT",
        &format!("{url}{sep}digest={digest}"),
        auth,
        None,
    )
}

#[test]
fn quotas_hold_where_bytes_arrive_and_usage_equals_a_recount() {
    let reg = berth::registry_with(berth_bin!(), &[], &[("BERTH_GC_GRACE", "0s")]);
    let (admin, base, http) = (reg.admin(), reg.url(), Client::new());
    let auth = basic("admin", ADMIN_PASSWORD);
    admin.create_project("team", false);
    admin.create_project("other", false);
    let v = set_quota(&admin, "team", json!("1MiB"));
    assert_eq!(v["storage"]["limit"], 1 << 20, "{v}");
    assert_eq!(v["storage"]["limit_from"], "project", "{v}");

    // A monolithic upload that fits; one that would not, refused before its body is kept.
    let a = bytes(1, 600 << 10);
    push_blob(&http, &base, &auth, "team/a", a.clone());
    assert_eq!(usage(&admin, "team"), 600 << 10);
    let big = bytes(2, 500 << 10);
    let big_digest = digest_of(&big);
    let refused = send(
        &http,
        "POST",
        &format!("{base}/v2/team/a/blobs/uploads/?digest={big_digest}"),
        &auth,
        Some(("application/octet-stream", big)),
    );
    denied(&refused, "a monolithic upload over the limit");
    for words in ["1 MiB", "600 KiB", "500 KiB", "team"] {
        assert!(
            refused.message.contains(words),
            "{words}: {}",
            refused.message
        );
    }
    let head = send(
        &http,
        "HEAD",
        &format!("{base}/v2/team/a/blobs/{big_digest}"),
        &auth,
        None,
    );
    assert_eq!(head.status, 404, "a refused blob is not kept");
    // The same as POST, then PUT with the body: refused before the body is read.
    let session = chunked_upload(&http, &base, "team/a", b"");
    let refused = finish_with(&http, &session, &auth, &big_digest, bytes(2, 500 << 10));
    denied(&refused, "a monolithic PUT over the limit");
    let status = send(&http, "GET", &session, &auth, None);
    assert_eq!(
        status.status, 204,
        "the session is where it was: {status:?}"
    );
    // A blob the project holds costs nothing in another of its repositories.
    push_blob(&http, &base, &auth, "team/b", a.clone());
    assert_eq!(usage(&admin, "team"), 600 << 10);

    // Four chunked uploads completing at once with room for two: exactly two pass.
    let chunks: Vec<Vec<u8>> = (10..14).map(|s| bytes(s, 150 << 10)).collect();
    let sessions: Vec<String> = chunks
        .iter()
        .map(|c| chunked_upload(&http, &base, "team/a", c))
        .collect();
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .iter()
            .zip(&chunks)
            .map(|(url, c)| {
                let (http, auth) = (&http, &auth);
                s.spawn(move || finish(http, url, auth, &digest_of(c)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let passed: Vec<usize> = (0..4).filter(|i| answers[*i].status == 201).collect();
    assert_eq!(passed.len(), 2, "exactly the uploads that fit: {answers:?}");
    for (i, a) in answers.iter().enumerate() {
        if passed.contains(&i) {
            continue;
        }
        denied(a, "a chunked upload completing over the limit");
        let digest = digest_of(&chunks[i]);
        let head = send(
            &http,
            "HEAD",
            &format!("{base}/v2/team/a/blobs/{digest}"),
            &auth,
            None,
        );
        assert_eq!(head.status, 404, "a refused chunked upload is not kept");
        let status = send(&http, "GET", &sessions[i], &auth, None);
        assert_eq!(status.status, 404, "its session is gone: {status:?}");
    }
    assert_eq!(usage(&admin, "team"), (600 + 300) << 10);

    // A mount from another project that would go over is refused, not turned into an upload.
    let c = bytes(20, 200 << 10);
    let c_digest = push_blob(&http, &base, &auth, "other/x", c);
    let mount_url = format!("{base}/v2/team/a/blobs/uploads/?mount={c_digest}&from=other/x");
    denied(
        &send(&http, "POST", &mount_url, &auth, None),
        "a mount over the limit",
    );

    // A manifest push that would go over: refused the same way.
    let layer = &chunks[passed[0]];
    let manifest = berth_testkit::manifest::image_manifest(&a, &[layer]);
    let now = usage(&admin, "team");
    set_quota(&admin, "team", json!(now));
    let put_url = format!("{base}/v2/team/a/manifests/v1");
    let m = send(
        &http,
        "PUT",
        &put_url,
        &auth,
        Some((OCI_MANIFEST, manifest.clone())),
    );
    denied(&m, "a manifest push over the limit");
    assert!(m.message.contains("storage quota"), "{}", m.message);
    set_quota(&admin, "team", json!("2MiB"));
    let m = send(
        &http,
        "PUT",
        &put_url,
        &auth,
        Some((OCI_MANIFEST, manifest.clone())),
    );
    assert_eq!(m.status, 201, "{m:?}");
    assert_eq!(
        send(&http, "POST", &mount_url, &auth, None).status,
        201,
        "mount"
    );
    let held = now + manifest.len() as u64 + (200 << 10);
    assert_eq!(usage(&admin, "team"), held);
    assert_eq!(recount(&admin, "team"), held);

    // An image that stays tagged in team/b, sharing blob `a`.
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"kept\":true}".to_vec();
    let (kept, _) = push_image_with(&http, &base, &auth, ("team/b", "keep"), &config, &[&a]);
    let kept_bytes = (a.len() + config.len() + kept.len()) as u64;

    // Deleting a tag frees nothing; GC removing the last links does.
    let before = usage(&admin, "team");
    let del = send(&http, "DELETE", &put_url, &auth, None);
    assert_eq!(del.status, 202, "{del:?}");
    assert_eq!(usage(&admin, "team"), before, "a tag delete frees nothing");
    assert_eq!(recount(&admin, "team"), before);
    let (s, v) = admin.call("POST", "/api/v1/gc", None);
    assert_eq!(s, 200, "gc: {v}");
    assert_eq!(
        usage(&admin, "team"),
        kept_bytes,
        "what GC left: the kept image"
    );
    assert_eq!(recount(&admin, "team"), kept_bytes);
    // The other project counted its own copy all along.
    assert_eq!(recount(&admin, "other"), usage(&admin, "other"));
    admin.audit_until("action=project.quota", "the quota changes", |e| {
        e.len() == 3
    });
}

#[test]
fn quotas_are_set_by_system_administrators_with_a_registry_default() {
    let reg = berth::registry_with(
        berth_bin!(),
        &[],
        &[
            ("BERTH_QUOTA_DEFAULT_PROJECT", "64KiB"),
            ("BERTH_PROXY_ALLOW_PRIVATE_UPSTREAMS", "true"),
        ],
    );
    let (admin, base, http) = (reg.admin(), reg.url(), Client::new());
    admin.create_project("dflt", false);
    admin.create_user("pa", "pa-password-1");
    admin.add_member("dflt", "pa", "project-admin");
    let st = storage(&admin, "dflt");
    assert_eq!(
        (st["limit"].as_u64(), st["limit_from"].as_str()),
        (Some(64 << 10), Some("default"))
    );
    // A project admin may change the project's settings, not its quota.
    let pa = admin.as_user("pa", "pa-password-1");
    let (s, v) = pa.call(
        "PATCH",
        "/api/v1/projects/dflt",
        Some(json!({"quota": "1GiB"})),
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("system administrator"),
        "{v}"
    );
    let (s, v) = admin.call(
        "PATCH",
        "/api/v1/projects/dflt",
        Some(json!({"quota": "lots"})),
    );
    assert_eq!(s, 400, "{v}");
    // Over the default; exempt with "none"; back to the default with null.
    let auth = basic("admin", ADMIN_PASSWORD);
    let blob = bytes(3, 100 << 10);
    let digest = digest_of(&blob);
    let url = format!("{base}/v2/dflt/app/blobs/uploads/?digest={digest}");
    let post = |b: &[u8]| {
        send(
            &http,
            "POST",
            &url,
            &auth,
            Some(("application/octet-stream", b.to_vec())),
        )
    };
    denied(&post(&blob), "over the registry default");
    let v = set_quota(&admin, "dflt", json!("none"));
    assert_eq!(v["storage"]["limit_from"], "none", "{v}");
    assert_eq!(post(&blob).status, 201);
    let v = set_quota(&admin, "dflt", Value::Null);
    assert_eq!(v["storage"]["limit_from"], "default", "{v}");
    assert_eq!(v["storage"]["usage"], 100 << 10, "{v}");

    // A proxy-cache project holds what pulls bring: no limit, the default included.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "hub", "proxy": {"url": "http://127.0.0.1:9"}})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(storage(&admin, "hub")["limit_from"], "none");
    let (s, v) = admin.call(
        "PATCH",
        "/api/v1/projects/hub",
        Some(json!({"quota": "1GiB"})),
    );
    assert_eq!(s, 400, "{v}");
    // Nor do immutable tags: its tags follow its upstream's.
    let (s, v) = admin.call(
        "POST",
        "/api/v1/projects/hub/immutable-tags",
        Some(json!({"pattern": "v*"})),
    );
    assert_eq!(s, 400, "{v}");
}

#[test]
fn skopeo_pushes_within_a_quota_and_not_past_immutable_tags() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = OciLayout::create(tmp.path().join("src"));
    let one = ImageBuilder::new()
        .layer_random_seeded(300 << 10, 1)
        .tag("one")
        .build(&layout);
    ImageBuilder::new()
        .layer_random_seeded(300 << 10, 2)
        .tag("two")
        .build(&layout);
    let reg = berth::registry(berth_bin!());
    let (admin, base, http, host) = (reg.admin(), reg.url(), Client::new(), reg.host());
    admin.create_project("ship", false);
    let skopeo = Skopeo::new();
    let creds = Creds::new("admin", ADMIN_PASSWORD);
    let opts = CopyOptions::default()
        .preserving_digests()
        .with_dest_creds(&creds);

    // Over the quota: the push fails saying why, and what went in is counted exactly.
    set_quota(&admin, "ship", json!("100KiB"));
    let err = skopeo
        .try_copy(
            &layout.reference("one"),
            &docker_ref(&host, "ship/app", "v1"),
            &opts,
        )
        .expect_err("over the quota");
    assert!(err.stderr.contains("storage quota"), "{err}");
    assert!(usage(&admin, "ship") <= 100 << 10);
    recount(&admin, "ship");
    set_quota(&admin, "ship", json!("10MiB"));
    skopeo.copy(
        &layout.reference("one"),
        &docker_ref(&host, "ship/app", "v1"),
        &opts,
    );
    let pushed: u64 =
        one.blob_digests().iter().map(|(_, s)| s).sum::<u64>() + one.manifest.bytes.len() as u64;
    assert_eq!(usage(&admin, "ship"), pushed);
    assert_eq!(recount(&admin, "ship"), pushed);

    // Immutable tags: set by project admins, not developers.
    admin.create_user("pa", "pa-password-1");
    admin.create_user("dev", "dev-password-1");
    admin.add_member("ship", "pa", "project-admin");
    admin.add_member("ship", "dev", "developer");
    let rules = "/api/v1/projects/ship/immutable-tags";
    let (s, v) =
        admin
            .as_user("dev", "dev-password-1")
            .call("POST", rules, Some(json!({"pattern": "v*"})));
    assert_eq!(s, 403, "{v}");
    let pa = admin.as_user("pa", "pa-password-1");
    let (s, v) = pa.call("POST", rules, Some(json!({"pattern": "v/*"})));
    assert_eq!(s, 400, "{v}");
    let (s, v) = pa.call("POST", rules, Some(json!({"pattern": "v*"})));
    assert_eq!((s, v["pattern"].as_str()), (201, Some("v*")), "{v}");
    let (s, v) = pa.call("POST", rules, Some(json!({"pattern": "v*"})));
    assert_eq!(s, 409, "{v}");
    let (_, v) = pa.call("GET", rules, None);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    // Another image to v1 is refused naming the rule; the same one again is fine.
    let err = skopeo
        .try_copy(
            &layout.reference("two"),
            &docker_ref(&host, "ship/app", "v1"),
            &opts,
        )
        .expect_err("moving an immutable tag");
    assert!(
        err.stderr.contains("immutable") && err.stderr.contains("v*"),
        "{err}"
    );
    skopeo.copy(
        &layout.reference("one"),
        &docker_ref(&host, "ship/app", "v1"),
        &opts,
    );
    skopeo.copy(
        &layout.reference("two"),
        &docker_ref(&host, "ship/app", "latest"),
        &opts,
    );
    let auth = basic("admin", ADMIN_PASSWORD);
    let tag_url = format!("{base}/v2/ship/app/manifests/v1");
    let resolved = http
        .head(&tag_url)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect("HEAD");
    assert_eq!(resolved.headers()["docker-content-digest"], one.digest());

    // Deleting the tag, or the manifest it points to, is refused too (also through the admin API).
    let del = send(&http, "DELETE", &tag_url, &auth, None);
    denied(&del, "deleting an immutable tag");
    assert!(del.message.contains("\"v*\""), "{}", del.message);
    let by_digest = format!("{base}/v2/ship/app/manifests/{}", one.digest());
    denied(
        &send(&http, "DELETE", &by_digest, &auth, None),
        "deleting a manifest an immutable tag points to",
    );
    let (s, v) = admin.call(
        "DELETE",
        "/api/v1/projects/ship/repositories/app/tags/v1",
        None,
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = admin.call("DELETE", "/api/v1/projects/ship/repositories/app", None);
    assert_eq!(s, 403, "a repository with an immutable tag stays: {v}");
    // A tag no rule matches goes as before; without the rule, v1 goes too.
    assert_eq!(
        send(
            &http,
            "DELETE",
            &format!("{base}/v2/ship/app/manifests/latest"),
            &auth,
            None
        )
        .status,
        202
    );
    let (s, v) = pa.call("DELETE", &format!("{rules}/v*"), None);
    assert_eq!(s, 204, "{v}");
    assert_eq!(send(&http, "DELETE", &tag_url, &auth, None).status, 202);
    let actions: BTreeSet<String> = admin
        .audit_until("project=ship", "the rule's changes", |e| {
            e.iter()
                .any(|x| x["action"] == "project.immutable-tag.delete")
        })
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    assert!(actions.contains("project.immutable-tag.add"), "{actions:?}");
    // A forced project delete takes immutable tags with it, and the rules too.
    pa.call("POST", rules, Some(json!({"pattern": "*"})));
    let (s, v) = admin.call("DELETE", "/api/v1/projects/ship?force=true", None);
    assert_eq!(s, 204, "{v}");
    admin.create_project("ship", false);
    let (_, v) = admin.call("GET", rules, None);
    assert_eq!(
        v,
        json!([]),
        "a new project of the name starts without rules"
    );
}
