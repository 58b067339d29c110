//! Two `berth serve` replicas on one PostgreSQL database (started by the
//! kit) and one data directory for blobs (storage local): login and a
//! skopeo push through A, the pull through B; a project created on A is
//! visible on B; a token A issues works on B; an account A creates logs in
//! on B.

use std::time::Duration;

use berth_testkit::berth::{registry_in, Registry, ADMIN_PASSWORD};
use berth_testkit::http::{self, Auth};
use berth_testkit::postgres::Postgres;
use berth_testkit::tools::{docker_ref, CopyOptions};
use berth_testkit::{berth_bin, require_tools, wait_until, Creds, ImageBuilder, OciLayout, Skopeo};

const BOUND: Duration = Duration::from_secs(60);

fn replica(data: &std::path::Path, url: &str) -> Registry {
    let key = "5e".repeat(32);
    registry_in(
        berth_bin!(),
        data,
        &[],
        &[
            ("BERTH_META_BACKEND", "postgres"),
            ("BERTH_META_URL", url),
            ("BERTH_CONTROLLER_SECRET_KEY", &key),
        ],
    )
}

#[test]
fn two_replicas_share_accounts_tokens_and_images() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    assert!(
        berth_testkit::postgres::available(),
        "PostgreSQL (initdb, pg_ctl) is needed"
    );
    let url = Postgres::shared().database();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let a = replica(&data, &url);
    let b = replica(&data, &url);
    let (admin_a, admin_b) = (a.admin(), b.admin());

    admin_a.create_project("team", false);
    wait_until("the project on B", BOUND, || {
        admin_b.call("GET", "/api/v1/projects/team", None).0 == 200
    });

    let layout_dir = tempfile::tempdir().expect("tmp");
    let layout = OciLayout::create(layout_dir.path().join("src"));
    let image = ImageBuilder::new()
        .layer_file("etc/motd", "pushed through A\n")
        .layer_random(1 << 20)
        .tag("v1")
        .build(&layout);
    let creds = Creds::new("admin", ADMIN_PASSWORD);
    let skopeo = Skopeo::new();
    skopeo.copy(
        &layout.reference("v1"),
        &docker_ref(&a.host(), "team/app", "v1"),
        &CopyOptions::default()
            .preserving_digests()
            .with_dest_creds(&creds),
    );
    assert_eq!(
        skopeo.inspect_raw(&docker_ref(&b.host(), "team/app", "v1"), Some(&creds)),
        image.manifest.bytes,
        "pulled through B"
    );
    let out = tempfile::tempdir().expect("tmp");
    let pulled = OciLayout::create(out.path().join("dst"));
    skopeo.copy(
        &docker_ref(&b.host(), "team/app", "v1"),
        &pulled.reference("v1"),
        &CopyOptions::default().with_src_creds(&creds),
    );

    // A token from A opens B.
    let client = reqwest::blocking::Client::new();
    let admin = Auth::Basic("admin".into(), ADMIN_PASSWORD.into());
    let token = http::token(&client, &a.url(), &admin, &["repository:team/app:pull"])
        .expect("token from A");
    let got = http::send(
        &client,
        "GET",
        &format!("{}/v2/team/app/manifests/v1", b.url()),
        &Auth::Bearer(token),
        None,
    );
    assert_eq!(got.status, 200, "{got:?}");

    // An account made on A logs in on B.
    admin_a.create_user("pat", "pat-password-1");
    admin_a.add_member("team", "pat", "developer");
    let pat = Auth::Basic("pat".into(), "pat-password-1".into());
    wait_until("pat's login on B", BOUND, || {
        http::token(&client, &b.url(), &pat, &["repository:team/app:pull"]).is_ok()
    });
}
