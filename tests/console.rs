//! The web console in a real browser (headless Chromium over WebDriver)
//! against the built `berth serve`: sign-in with the forced reset of an
//! initial password, projects and robots, a pushed image's pull command,
//! a guest's view and forged requests, CSRF, the Chinese locale and a phone-
//! sized window. Every test saves screenshots and fails on any error the
//! browser's console logs. Plus the console's sign-in, cookie and session
//! rules over plain HTTP.

mod browser;

use berth_testkit::berth::{self, Registry, ADMIN_PASSWORD};
use berth_testkit::berth_bin;
use berth_testkit::console::{csrf_token, no_redirects, set_cookie, sign_in};
use berth_testkit::fixtures::digest_of;
use berth_testkit::fixtures::media_types::OCI_MANIFEST;
use berth_testkit::http::{basic, push_blob, push_image, send};
use berth_testkit::manifest::artifact_manifest;
use browser::{Browser, Options};
use reqwest::blocking::Client;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A registry with project `demo` (private) holding `demo/hello:v1`.
fn registry_with_image() -> Registry {
    let reg = berth::registry(berth_bin!());
    reg.admin().create_project("demo", false);
    push_image(
        &Client::new(),
        &reg.url(),
        &basic("admin", ADMIN_PASSWORD),
        "demo/hello",
        "v1",
    );
    reg
}

#[test]
fn sign_in_with_a_forced_reset_then_create_a_project_and_a_robot() {
    if !browser::available() {
        return;
    }
    let reg = berth::registry(berth_bin!());
    let (s, v) = reg.admin().call(
        "POST",
        "/api/v1/users",
        Some(serde_json::json!({"name": "ann", "password": "initial123", "admin": true})),
    );
    assert_eq!(s, 201, "{v}");
    reg.admin().create_user("bob", "bobsword2026");
    let secret = rt().block_on(async {
        let b = Browser::start("forced-reset", &reg.url(), Options::default()).await;
        b.goto("/").await;
        assert!(
            b.path().await.starts_with("/ui/login"),
            "{}",
            b.path().await
        );
        b.sign_in("ann", "initial123").await;
        // The initial password is right but must be replaced: the reset form,
        // with the rule shown before anything is submitted.
        b.find("form[action='/ui/reset']").await;
        let rule = b.text("#pw-rule").await;
        assert!(rule.contains("8 to 20") && rule.contains("digit"), "{rule}");
        b.screenshot("reset-form").await;
        // The browser refuses a password against the rule before it is sent.
        b.fill("input[name=password]", "initial123").await;
        b.fill("input[name=new]", "short").await;
        b.fill("input[name=new2]", "short").await;
        b.click("form button[type=submit]").await;
        let invalid = b
            .js("return document.querySelector('input[name=new]').matches(':invalid')")
            .await;
        assert_eq!(invalid, serde_json::json!(true));
        assert_eq!(b.path().await, "/ui/login", "nothing was submitted");
        b.fill("input[name=new]", "annsown2026").await;
        b.fill("input[name=new2]", "annsown2026").await;
        b.click("form button[type=submit]").await;
        b.find("form[action='/ui/projects']").await;
        assert_eq!(b.path().await, "/ui/projects");

        b.fill("input[name=name]", "team-a").await;
        b.click("input[name=public]").await;
        b.click("form[action='/ui/projects'] button").await;
        b.find("nav.tabs").await;
        assert_eq!(b.path().await, "/ui/projects/team-a");
        assert!(b.text("h1").await.contains("Public"));
        b.click("nav.tabs a[href$='/robots']").await;
        b.fill("form[action$='/robots'] input[name=name]", "ci")
            .await;
        b.click("form[action$='/robots'] button").await;
        let name = b.text("#robot-name").await;
        let secret = b.text("#secret-value").await;
        assert_eq!(name, "robot$team-a+ci");
        b.screenshot("robot-secret").await;
        b.no_console_errors(&[]).await;
        // Shown once: the robots page never shows it again.
        b.goto("/ui/projects/team-a/robots").await;
        assert_eq!(b.count("#secret-value").await, 0);
        assert!(b.body().await.contains("robot$team-a+ci"));
        b.no_console_errors(&[]).await;

        // Members and roles: bob joins as a developer.
        b.click("nav.tabs a[href$='/members']").await;
        b.fill("form[action$='/members'] input[name=user]", "bob").await;
        b.js("document.querySelector(\"form[action$='/members'] select[name=role]\").value = 'developer'").await;
        b.click("form[action$='/members'] button").await;
        b.find("td[data-label=User]").await;
        assert!(b.text("table").await.contains("bob"), "{}", b.text("table").await);
        b.screenshot("members").await;

        // Settings: private and back; a new empty project deleted after the confirmation.
        b.click("nav.tabs a[href$='/settings']").await;
        b.click("form[action$='/visibility'] button").await;
        b.find("h1 .pill.private").await;
        b.click("form[action$='/visibility'] button").await;
        b.find("h1 .pill.public").await;
        b.goto("/ui/projects").await;
        b.fill("form[action='/ui/projects'] input[name=name]", "scratch").await;
        b.click("form[action='/ui/projects'] button").await;
        b.find("nav.tabs").await;
        b.goto("/ui/projects/scratch/settings").await;
        b.click("form[action$='/scratch/delete'] button").await;
        b.client.accept_alert().await.expect("the confirmation");
        b.find("form[action='/ui/projects']").await;
        assert_eq!(b.count("a.project-link[href='/ui/projects/scratch']").await, 0, "deleted");

        // A password changed on the account page ends the session; the new one signs in.
        b.goto("/ui/account").await;
        b.fill("input[name=password]", "annsown2026").await;
        b.fill("input[name=new]", "annsnext2026").await;
        b.fill("input[name=new2]", "annsnext2026").await;
        b.click("form[action='/ui/account/password'] button").await;
        b.find(".alert.good").await;
        assert_eq!(b.path().await, "/ui/login?msg=changed");
        b.sign_in("ann", "annsnext2026").await;
        b.find("nav.nav").await;
        b.click("form[action='/ui/logout'] button").await;
        b.find("form[action='/ui/login']").await;
        b.goto("/ui/projects").await;
        assert!(b.path().await.starts_with("/ui/login"), "signed out");
        b.no_console_errors(&[]).await;
        b.close().await;
        secret
    });
    // The password and the robot are real: both log in to the registry.
    let http = Client::new();
    for (user, pw) in [
        ("ann", "annsnext2026"),
        ("robot$team-a+ci", secret.as_str()),
    ] {
        let s = http
            .get(format!("{}/v2/", reg.url()))
            .basic_auth(user, Some(pw))
            .send()
            .expect("v2");
        assert_eq!(s.status(), 200, "{user}");
    }
    let (s, v) = reg.admin().call("GET", "/api/v1/projects/team-a", None);
    assert_eq!((s, v["public"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(
        reg.admin().call("GET", "/api/v1/projects/scratch", None).0,
        404
    );
    let bob = v["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["user"] == "bob"));
    assert_eq!(
        bob.map(|m| m["role"].clone()),
        Some(serde_json::json!("developer")),
        "{v}"
    );
}

#[test]
fn a_pushed_images_pull_command_is_found_and_copied_and_csrf_is_required() {
    if !browser::available() {
        return;
    }
    let reg = registry_with_image();
    let host = reg.host();
    // An SBOM about demo/hello:v1, pushed as an OCI 1.1 referrer (by digest, untagged).
    let (http, auth) = (Client::new(), basic("admin", ADMIN_PASSWORD));
    let subject = http
        .get(format!("{}/v2/demo/hello/manifests/v1", reg.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("manifest")
        .bytes()
        .expect("bytes");
    let sbom = br#"{"sbom": true}"#;
    push_blob(&http, &reg.url(), &auth, "demo/hello", b"{}".to_vec());
    push_blob(&http, &reg.url(), &auth, "demo/hello", sbom.to_vec());
    let artifact = artifact_manifest(
        "application/vnd.example.sbom",
        &subject,
        OCI_MANIFEST,
        sbom,
        "sbom",
    );
    let url = format!(
        "{}/v2/demo/hello/manifests/{}",
        reg.url(),
        digest_of(&artifact)
    );
    assert_eq!(
        send(&http, "PUT", &url, &auth, Some((OCI_MANIFEST, artifact))).status,
        201
    );
    rt().block_on(async {
        let b = Browser::start("pull-command", &reg.url(), Options::default()).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.click("a.project-link[href='/ui/projects/demo']").await;
        b.click("a[href*='repository?name=demo%2Fhello']").await;
        let row = "tr[data-tag='v1']";
        let cmd = b.text(&format!("{row} code")).await;
        assert_eq!(cmd, format!("docker pull {host}/demo/hello:v1"));
        let platforms = b.text(&format!("{row} td[data-label=Platforms]")).await;
        assert_eq!(platforms, "linux/amd64");
        assert!(b.text(&format!("{row} td[data-label=Pushed]")).await.contains("UTC"));
        let refs = b.text(&format!("{row} td[data-label='Signatures and referrers']")).await;
        assert!(refs.contains("Not signed") && refs.contains("application/vnd.example.sbom"), "{refs}");
        b.click(&format!("{row} button.copy")).await;
        let copied = b.find(&format!("{row} button.copy[data-copied]")).await;
        assert_eq!(copied.attr("data-copied").await.expect("attr").as_deref(), Some("true"));
        let clip = b
            .js_async("const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, e => done('unreadable: ' + e));")
            .await;
        if clip.as_str().is_some_and(|c| !c.starts_with("unreadable")) {
            assert_eq!(clip.as_str(), Some(cmd.as_str()), "clipboard");
        }
        b.screenshot("tags").await;
        b.no_console_errors(&[]).await;

        // A delete without the CSRF token is refused, and deletes nothing; the same with it goes through.
        let forged = b
            .js_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/ui/projects/demo/repository/tags/delete', {method: 'POST',
                   headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                   body: 'name=demo%2Fhello&tag=v1', redirect: 'manual'})
                 .then(r => r.text().then(t => done([r.status, t])));",
            )
            .await;
        assert_eq!(forged[0], 403, "{forged}");
        assert!(forged[1].as_str().unwrap_or("").contains("form has expired"), "{forged}");
        b.no_console_errors(&["tags/delete"]).await;
        b.goto("/ui/projects/demo/repository?name=demo%2Fhello").await;
        assert_eq!(b.count("tr[data-tag='v1']").await, 1, "refused without the token: still there");
        let with = b
            .js_async(
                "const done = arguments[arguments.length - 1];
                 const t = document.querySelector('meta[name=csrf-token]').content;
                 fetch('/ui/projects/demo/repository/tags/delete', {method: 'POST',
                   headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                   body: 'csrf=' + encodeURIComponent(t) + '&name=demo%2Fhello&tag=v1'})
                 .then(r => done(r.status));",
            )
            .await;
        assert_eq!(with, 200, "followed to the repository page");
        b.no_console_errors(&[]).await;

        // The audit log, filtered in place (the table is swapped, the address follows).
        b.goto("/ui/audit").await;
        b.fill("form[action='/ui/audit'] input[name=action]", "tag.delete").await;
        b.js("window.stillThisPage = true").await;
        b.click("form[action='/ui/audit'] button").await;
        b.client
            .wait()
            .at_most(std::time::Duration::from_secs(10))
            .for_url(&url::Url::parse(&format!("{}/ui/audit?actor=&project=&action=tag.delete&outcome=&limit=100", reg.url())).expect("url"))
            .await
            .expect("the filter's address");
        let table = b.text("#audit table").await;
        assert!(table.contains("tag.delete") && table.contains("demo/hello:v1"), "{table}");
        assert_eq!(b.count("#audit tbody tr").await, 1, "only the filtered action");
        assert_eq!(b.js("return window.stillThisPage === true").await, true, "swapped in place, not reloaded");
        b.screenshot("audit").await;
        // GC: a dry run, asked for from the page.
        b.goto("/ui/gc").await;
        b.click("input[name=dry_run]").await;
        b.click("form[action='/ui/gc'] button").await;
        b.client.accept_alert().await.expect("the confirmation");
        b.find(".alert.good").await;
        b.screenshot("gc").await;
        b.no_console_errors(&[]).await;
        b.close().await;
    });
    let (s, v) = reg
        .admin()
        .call("GET", "/api/v1/projects/demo/repositories/hello/tags", None);
    assert_eq!(s, 200);
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(0),
        "deleted with the token: {v}"
    );
}

#[test]
fn a_guest_sees_no_delete_and_a_forged_delete_is_refused() {
    if !browser::available() {
        return;
    }
    let reg = registry_with_image();
    let admin = reg.admin();
    admin.create_user("gus", "gusword2026");
    admin.add_member("demo", "gus", "guest");
    rt().block_on(async {
        let b = Browser::start("guest", &reg.url(), Options::default()).await;
        b.sign_in("gus", "gusword2026").await;
        b.goto("/ui/projects/demo/repository?name=demo%2Fhello")
            .await;
        b.find("tr[data-tag='v1']").await;
        assert_eq!(
            b.count("button.danger").await,
            0,
            "a guest sees no delete button"
        );
        assert_eq!(b.count("form[action$='/delete']").await, 0);
        b.goto("/ui/projects/demo/members").await;
        assert_eq!(
            b.count("form[action$='/members']").await,
            0,
            "nor member forms"
        );
        b.goto("/ui/projects/demo/repository?name=demo%2Fhello")
            .await;
        b.screenshot("guest-tags").await;
        b.no_console_errors(&[]).await;
        // The same request a maintainer's button sends, with a valid token: the API's 403.
        let forged = b
            .js_async(
                "const done = arguments[arguments.length - 1];
                 const t = document.querySelector('meta[name=csrf-token]').content;
                 fetch('/ui/projects/demo/repository/tags/delete', {method: 'POST',
                   headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                   body: 'csrf=' + encodeURIComponent(t) + '&name=demo%2Fhello&tag=v1'})
                 .then(r => r.text().then(x => done([r.status, x])));",
            )
            .await;
        assert_eq!(forged[0], 403, "{forged}");
        assert!(
            forged[1]
                .as_str()
                .unwrap_or("")
                .contains("not a maintainer of project demo"),
            "the API's reason: {forged}"
        );
        b.no_console_errors(&["tags/delete"]).await;
        b.close().await;
    });
    let (s, v) = admin.call("GET", "/api/v1/projects/demo/repositories/hello/tags", None);
    assert_eq!(
        (s, v.as_array().map(Vec::len)),
        (200, Some(1)),
        "still tagged: {v}"
    );
    // Refused by the API, so in its audit log like any refused API call.
    admin.audit_until(
        "action=request&outcome=refused",
        "the refused delete",
        |e| {
            e.iter().any(|e| {
                e["actor"] == "gus"
                    && e["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("DELETE ") && t.ends_with("/tags/v1"))
            })
        },
    );
}

#[test]
fn the_chinese_locale_renders_and_the_switch_changes_it() {
    if !browser::available() {
        return;
    }
    let reg = registry_with_image();
    rt().block_on(async {
        let opts = Options {
            languages: Some("zh-CN,zh"),
            ..Options::default()
        };
        let b = Browser::start("chinese", &reg.url(), opts).await;
        b.goto("/ui/login").await;
        assert_eq!(b.text("h1").await, "登录");
        assert_eq!(b.js("return document.documentElement.lang").await, "zh-CN");
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("nav.nav").await;
        assert!(b.text("nav.nav").await.contains("项目"));
        b.goto("/ui/projects/demo/repository?name=demo%2Fhello")
            .await;
        assert!(b.body().await.contains("拉取命令"));
        b.screenshot("zh-tags").await;
        b.click("a[hreflang=en]").await;
        b.find("nav.nav").await;
        assert!(
            b.text("nav.nav").await.contains("Projects"),
            "switched to English"
        );
        assert_eq!(
            b.path().await,
            "/ui/projects/demo/repository?name=demo%2Fhello",
            "stays on the page"
        );
        b.no_console_errors(&[]).await;
        b.close().await;
    });
}

#[test]
fn a_phone_sized_window_works() {
    if !browser::available() {
        return;
    }
    let reg = registry_with_image();
    rt().block_on(async {
        let opts = Options {
            window: Some((390, 844)),
            ..Options::default()
        };
        let b = Browser::start("narrow", &reg.url(), opts).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("label.nav-button").await;
        assert_eq!(
            b.js("return window.innerWidth").await,
            390,
            "a phone's width"
        );
        let overflow =
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth";
        for path in [
            "/ui/projects",
            "/ui/projects/demo/repository?name=demo%2Fhello",
            "/ui/audit",
        ] {
            b.goto(path).await;
            assert_eq!(b.js(overflow).await, 0, "{path} scrolls sideways");
        }
        b.goto("/ui/projects/demo/repository?name=demo%2Fhello")
            .await;
        b.screenshot("narrow-tags").await;
        // The menu is folded away until asked for.
        let shown = "return getComputedStyle(document.querySelector('nav.nav')).display";
        assert_eq!(b.js(shown).await, "none");
        b.click("label.nav-button").await;
        assert_eq!(b.js(shown).await, "flex");
        b.screenshot("narrow-menu").await;
        b.click("nav.nav a[href='/ui/audit']").await;
        b.find("form[action='/ui/audit']").await;
        b.no_console_errors(&[]).await;
        b.close().await;
    });
}

// ------------------------------------------------------------ over plain HTTP

#[test]
fn console_sign_in_is_counted_by_the_login_throttle_every_login_shares() {
    let reg = berth::registry_with(
        berth_bin!(),
        &[],
        &[
            ("BERTH_AUTH_LOGIN_BACKOFF", "1h"),
            ("BERTH_AUTH_LOGIN_BACKOFF_MAX", "2h"),
        ],
    );
    let http = no_redirects();
    let wrong = sign_in(&http, &reg.url(), "admin", "wrong12345");
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .expect("html")
        .contains("invalid account name or password"));
    // The console's failure holds back the registry's own Basic login from this address ...
    let v2 = http
        .get(format!("{}/v2/", reg.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("v2");
    assert_eq!(
        v2.status(),
        429,
        "the console's failed sign-in counts for /v2 too"
    );
    // ... and the console's, even with the right password.
    let right = sign_in(&http, &reg.url(), "admin", ADMIN_PASSWORD);
    assert_eq!(right.status(), 429);
    assert!(right
        .text()
        .expect("html")
        .contains("too many failed logins"));
}

#[test]
fn sessions_are_strict_cookies_under_a_strict_policy_and_end_everywhere() {
    let reg = berth::registry(berth_bin!());
    let (http, base) = (no_redirects(), reg.url());
    let a = sign_in(&http, &base, "admin", ADMIN_PASSWORD);
    assert_eq!(a.status(), 303);
    let (cookie_a, header) = set_cookie(&a, "berth_session").expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attr), "{header}");
    }
    assert!(!header.contains("Secure"), "plain HTTP: {header}");
    let b = sign_in(&http, &base, "admin", ADMIN_PASSWORD);
    let (cookie_b, _) = set_cookie(&b, "berth_session").expect("session cookie");

    let page = http
        .get(format!("{base}/ui/projects"))
        .header("cookie", &cookie_a)
        .send()
        .expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().expect("html");
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );

    // Signing out without the session's token is refused; with it, every session ends.
    let refused = http
        .post(format!("{base}/ui/logout-everywhere"))
        .header("cookie", &cookie_b)
        .form(&[("csrf", "guess")])
        .send()
        .expect("post");
    assert_eq!(refused.status(), 403);
    let token = csrf_token(&http, &base, &cookie_b);
    let out = http
        .post(format!("{base}/ui/logout-everywhere"))
        .header("cookie", &cookie_b)
        .form(&[("csrf", token.as_str())])
        .send()
        .expect("post");
    assert_eq!(out.status(), 303);
    for c in [&cookie_a, &cookie_b] {
        let r = http
            .get(format!("{base}/ui/projects"))
            .header("cookie", c.as_str())
            .send()
            .expect("page");
        assert_eq!(r.status(), 303, "signed out");
        assert!(r.headers()["location"]
            .to_str()
            .expect("location")
            .starts_with("/ui/login"));
    }

    // The routes beside the console answer as before.
    let plain = Client::new();
    assert_eq!(
        plain
            .get(format!("{base}/v2/"))
            .send()
            .expect("v2")
            .status(),
        401
    );
    assert_eq!(
        plain
            .get(format!("{base}/healthz"))
            .send()
            .expect("healthz")
            .text()
            .expect("ok"),
        "ok"
    );
    assert_eq!(
        plain
            .get(format!("{base}/metrics"))
            .send()
            .expect("metrics")
            .status(),
        200
    );
    let unknown = plain
        .get(format!("{base}/api/v1/nothing-here"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .expect("api");
    assert_eq!(unknown.status(), 404);
}

#[test]
fn a_registry_with_the_console_off_serves_none_of_it() {
    let reg = berth::registry_with(berth_bin!(), &[], &[("BERTH_CONSOLE_ENABLED", "false")]);
    let http = no_redirects();
    for path in ["/", "/ui/login", "/ui/static/console.js"] {
        let r = http
            .get(format!("{}{path}", reg.url()))
            .send()
            .expect("get");
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(
        http.get(format!("{}/healthz", reg.url()))
            .send()
            .expect("healthz")
            .status(),
        200
    );
}
