//! TLS from a certificate and key in the configuration (Docker insists on TLS
//! for anything but loopback): the registry serves HTTPS, HTTP/2 and HTTP/1.1,
//! and a real client pushes and pulls over it.

use std::process::Command;

use berth_testkit::berth::{registry_tls, registry_tls_with, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::fixtures::{ImageBuilder, OciLayout};
use berth_testkit::tools::{tool_available, Skopeo};

/// A CA and a server certificate for localhost/127.0.0.1 signed by it.
/// Returns (ca certificate, server certificate, server key).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext file");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn serves_https_to_real_clients() {
    if !tool_available("openssl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI"
        );
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = certificates(tmp.path());
    let reg = registry_tls(berth_bin!(), &cert, &key);
    let pem = std::fs::read(&ca).expect("ca cert");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", reg.server.port());
    let res = client
        .get(format!("{base}/v2/"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("https request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("registry/2.0")
    );
    // Plain HTTP on the TLS port gets no registry answer.
    let plain = reqwest::blocking::get(format!("http://127.0.0.1:{}/v2/", reg.server.port()));
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));

    if !tool_available("skopeo") {
        assert!(std::env::var_os("CI").is_none(), "skopeo is required in CI");
        return;
    }
    let admin = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let created = admin
        .post(format!("{base}/api/v1/projects"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"name": "secure", "public": false}))
        .send()
        .expect("create project");
    assert_eq!(created.status().as_u16(), 201);

    let layout = OciLayout::create(tmp.path().join("layout"));
    let image = ImageBuilder::new()
        .layer_random(256 * 1024)
        .tag("v1")
        .build(&layout);
    // skopeo verifies the certificate through a certs directory.
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::copy(&ca, certs.join("ca.crt")).expect("ca");
    let skopeo = Skopeo::new();
    let dest = format!("docker://localhost:{}/secure/app:v1", reg.server.port());
    let mut cmd = skopeo.command();
    cmd.args(["copy", "--dest-cert-dir"])
        .arg(&certs)
        .args(["--dest-creds", &format!("admin:{ADMIN_PASSWORD}")])
        .arg(layout.reference("v1"))
        .arg(&dest);
    let out = cmd.output().expect("skopeo runs");
    assert!(
        out.status.success(),
        "push over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut inspect = skopeo.command();
    inspect
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&certs)
        .args(["--creds", &format!("admin:{ADMIN_PASSWORD}")])
        .arg(&dest);
    let out = inspect.output().expect("skopeo runs");
    assert!(
        out.status.success(),
        "pull over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout, image.manifest.bytes,
        "manifest bytes round-trip over TLS"
    );
}

/// `server.header_timeout` covers the TLS handshake: a client that connects
/// and never sends its ClientHello, or stops halfway, is closed.
#[test]
fn a_client_that_never_finishes_its_handshake_is_closed() {
    if !tool_available("openssl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI"
        );
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (_, cert, key) = certificates(tmp.path());
    let reg = registry_tls_with(
        berth_bin!(),
        &cert,
        &key,
        &[("BERTH_SERVER_HEADER_TIMEOUT", "2s")],
    );
    let port = reg.server.port();
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // The first bytes of a TLS 1.2 ClientHello record, and no more.
    let mut halfway = berth_testkit::net::send_partial(port, &[0x16, 0x03, 0x01, 0x02, 0x00]);
    for s in [&mut silent, &mut halfway] {
        let end = berth_testkit::net::wait_closed(s, std::time::Duration::from_secs(60));
        assert!(end.closed, "handshake left hanging: {end:?}");
    }
}

#[test]
fn the_console_cookies_are_secure_under_tls() {
    if !tool_available("openssl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI"
        );
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = certificates(tmp.path());
    let reg = registry_tls(berth_bin!(), &cert, &key);
    let pem = std::fs::read(&ca).expect("ca cert");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", reg.server.port());
    let cookies = |res: &reqwest::blocking::Response| -> Vec<String> {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let page = client
        .get(format!("{base}/ui/login"))
        .send()
        .expect("login page");
    let pre = cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("berth_pre="))
        .expect("pre-session cookie");
    assert!(
        pre.contains("; Secure") && pre.contains("HttpOnly"),
        "{pre}"
    );
    let token = pre["berth_pre=".len()..]
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let res = client
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("berth_pre={token}"))
        .form(&[
            ("csrf", token.as_str()),
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .expect("sign in");
    assert_eq!(res.status().as_u16(), 303);
    let session = cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("__Host-berth_session="))
        .expect("a __Host- session cookie under TLS");
    for attr in ["; Secure", "; HttpOnly", "; SameSite=Strict", "; Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let pair = session.split(';').next().unwrap_or("").to_string();
    let projects = client
        .get(format!("{base}/ui/projects"))
        .header("cookie", pair)
        .send()
        .expect("projects page");
    assert_eq!(projects.status().as_u16(), 200);
}
