//! Blob GETs redirected to presigned URLs of the bucket (`storage.redirect`),
//! end to end on a real three-node Garage cluster: skopeo pulls a private
//! image through the `307`s; the URL goes only to a caller who may pull; a
//! HEAD is answered as before; a `berth edge` whose upstream redirects fills
//! from the bucket (its client drops its Authorization on the way: Garage
//! refuses a request that carries both a signature and a header); and a
//! registry with redirects off streams the bytes itself.

mod common;

use berth_testkit::berth::ADMIN_PASSWORD;
use berth_testkit::http::{basic, send, token, Auth};
use berth_testkit::tools::{docker_ref, CopyOptions};
use berth_testkit::{
    berth_bin, digest_of, require_tools, Creds, GarageCluster, ImageBuilder, OciLayout, Skopeo,
};
use common::*;

const REPO: &str = "private/app";

/// A registry on the cluster's bucket through Garage node `node`.
fn registry_on(garage: &GarageCluster, node: usize, redirect: bool) -> Reg {
    let mut env = garage.berth_env(node);
    env.push(("BERTH_STORAGE_PART_SIZE".into(), "5MiB".into()));
    env.push(("BERTH_STORAGE_REDIRECT".into(), redirect.to_string()));
    env.push(("BERTH_STORAGE_REDIRECT_EXPIRY".into(), "20m".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Reg::start_with(&env)
}

fn admin_creds() -> Creds {
    Creds::new("admin", ADMIN_PASSWORD)
}

/// skopeo copies `from` into a fresh layout under `dir` and checks every
/// blob of `image` came back whole.
fn pull_and_check(from: &str, creds: Option<&Creds>, dir: &std::path::Path, image: &Image) {
    let back = dir.join(format!("back-{}", rand_suffix()));
    let mut opts = CopyOptions::default().preserving_digests();
    if let Some(c) = creds {
        opts = opts.with_src_creds(c);
    }
    Skopeo::new().copy(from, &format!("oci:{}:v1", back.display()), &opts);
    let back = OciLayout::open(&back);
    assert_eq!(back.resolve("v1").expect("pulled").digest, image.digest);
    for (digest, size) in &image.blobs {
        let bytes = back.read_blob(digest);
        assert_eq!(
            (digest_of(&bytes), bytes.len() as u64),
            (digest.clone(), *size)
        );
    }
}

fn rand_suffix() -> u64 {
    rand::random()
}

struct Image {
    digest: String,
    blobs: Vec<(String, u64)>,
    layer: String,
    layer_bytes: Vec<u8>,
}

/// Pushes an image with a 7 MiB layer (two parts) to `REPO:v1` as admin.
fn push_image(r: &Reg, dir: &std::path::Path) -> Image {
    let layout = OciLayout::create(dir.join("src"));
    let built = ImageBuilder::new()
        .layer_random_seeded(7 << 20, 19)
        .layer_file("etc/motd", "redirected\n")
        .tag("v1")
        .build(&layout);
    let target = docker_ref(&r.reg.host(), REPO, "v1");
    let opts = CopyOptions::default()
        .preserving_digests()
        .with_dest_creds(&admin_creds());
    Skopeo::new().copy(&layout.reference("v1"), &target, &opts);
    let blobs = built.blob_digests();
    let (layer, _) = blobs
        .iter()
        .max_by_key(|(_, size)| *size)
        .cloned()
        .expect("a layer");
    Image {
        digest: built.digest().to_string(),
        layer_bytes: layout.read_blob(&layer),
        layer,
        blobs,
    }
}

fn location(res: &reqwest::blocking::Response) -> Option<String> {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[test]
fn blob_gets_redirect_to_presigned_urls_only_for_callers_who_may_pull() {
    if !require_tools(&["skopeo"]) {
        return;
    }
    let Some(garage) = GarageCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let on = registry_on(&garage, 0, true);
    on.reg.admin().create_project("private", false);
    let image = push_image(&on, tmp.path());

    // skopeo follows the 307s: nothing of the image went through berth.
    let from = docker_ref(&on.reg.host(), REPO, "v1");
    pull_and_check(&from, Some(&admin_creds()), tmp.path(), &image);
    assert!(
        on.reg.metric("berth_blob_redirects_total") >= image.blobs.len() as f64,
        "every blob GET was redirected"
    );
    assert_eq!(on.reg.metric("berth_served_bytes_total"), 0.0);

    // The answer a puller gets: a URL of the bucket, valid 20 minutes,
    // that needs no credentials and takes a Range.
    let blob_url = on.reg.url() + &format!("/v2/{REPO}/blobs/{}", image.layer);
    let scope = format!("repository:{REPO}:pull");
    let http = http();
    let tok = token(
        &http,
        &on.reg.url(),
        &basic("admin", ADMIN_PASSWORD),
        &[&scope],
    )
    .expect("a pull token");
    let res = http.get(&blob_url).bearer_auth(&tok).send().expect("GET");
    assert_eq!(res.status(), 307, "{}", describe(res));
    assert_eq!(header(&res, "docker-content-digest"), image.layer);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let url = location(&res).expect("a Location");
    assert!(url.starts_with(&garage.endpoint(0)), "{url}");
    assert!(url.contains("X-Amz-Expires=1200"), "{url}");
    assert!(!url.contains(&garage.secret), "the secret key stays home");
    let body = http.get(&url).send().expect("GET from the bucket");
    assert_eq!(body.status(), 200);
    assert!(body.bytes().expect("bytes")[..] == image.layer_bytes[..]);
    let res = http
        .get(&url)
        .header("Range", "bytes=5242878-5242881")
        .send()
        .expect("ranged GET from the bucket");
    assert_eq!(res.status(), 206);
    assert_eq!(
        &res.bytes().expect("range")[..],
        &image.layer_bytes[5_242_878..=5_242_881]
    );

    // HEAD is answered here, as before.
    let res = http.head(&blob_url).bearer_auth(&tok).send().expect("HEAD");
    assert_eq!(res.status(), 200);
    assert_eq!(location(&res), None);
    assert_eq!(
        header(&res, "content-length"),
        image.layer_bytes.len().to_string()
    );

    // Private stays private: no URL for anonymous callers, for an account
    // that is no member, for a blob the repository does not have.
    on.reg.admin().create_user("stranger", "stranger-pass1");
    // A token without the pull, or the refusal of one: either way no URL.
    let stranger = token(
        &http,
        &on.reg.url(),
        &basic("stranger", "stranger-pass1"),
        &[&scope],
    )
    .map_or_else(|_| basic("stranger", "stranger-pass1"), Auth::Bearer);
    for (who, auth) in [("anonymous", Auth::None), ("stranger", stranger)] {
        let a = send(&http, "GET", &blob_url, &auth, None);
        assert!(
            matches!(a.status, 401 | 403 | 404),
            "{who}: {}",
            a.describe()
        );
        assert!(!a.body.to_string().contains("X-Amz"), "{who}: {:?}", a.body);
        let res = match &auth {
            Auth::Bearer(t) => http.get(&blob_url).bearer_auth(t),
            Auth::Basic(u, p) => http.get(&blob_url).basic_auth(u, Some(p)),
            _ => http.get(&blob_url),
        }
        .send()
        .expect("GET");
        assert_eq!(location(&res), None, "{who} gets no URL");
    }
    let unknown = digest_of(b"never pushed");
    let res = http
        .get(on.reg.url() + &format!("/v2/{REPO}/blobs/{unknown}"))
        .bearer_auth(&tok)
        .send()
        .expect("GET");
    assert_eq!(res.status(), 404);
    assert_eq!(location(&res), None);

    // An edge whose upstream redirects fills from the bucket.
    let cache = tmp.path().join("edge-cache");
    let edge = berth_testkit::berth::edge(
        berth_bin!(),
        &on.reg.url(),
        &cache,
        Some(("admin", ADMIN_PASSWORD)),
        &[],
    );
    let redirects = on.reg.metric("berth_blob_redirects_total");
    pull_and_check(
        &docker_ref(&edge.host(), REPO, "v1"),
        None,
        tmp.path(),
        &image,
    );
    assert!(
        on.reg.metric("berth_blob_redirects_total") >= redirects + image.blobs.len() as f64,
        "the edge's fills were redirected"
    );
    assert_eq!(on.reg.metric("berth_served_bytes_total"), 0.0);

    // With redirects off, the registry streams the bytes itself.
    let off = registry_on(&garage, 1, false);
    let layer = bytes(7, 3 << 20);
    let digest = off.push_blob(PUBLIC_REPO, &layer);
    let res = off.get(&format!("/v2/{PUBLIC_REPO}/blobs/{digest}"));
    assert_eq!(res.status(), 200);
    assert_eq!(location(&res), None);
    assert!(res.bytes().expect("bytes")[..] == layer[..]);
    assert_eq!(off.reg.metric("berth_blob_redirects_total"), 0.0);
    assert_eq!(
        off.reg.metric("berth_served_bytes_total"),
        layer.len() as f64
    );
}

const PUBLIC_REPO: &str = "pub/streamed";
