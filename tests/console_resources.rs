//! The console's app form and resource screens in a real browser (headless
//! Chromium over WebDriver) against the built `berth serve` with its
//! controller and two `berth edge` processes as nodes: a secret's form on
//! an edit (its key shown, its value asked for again), a volume's spec
//! changed from its form (a new capacity refused by the API's rule); an app
//! from the form (two containers added and removed in place, and by the
//! server for a browser without script, image suggestions, volume mounts, a
//! load balancer created with it) and edited into a second version from the
//! same form filled, then back to the first version's template from the
//! version history; the load balancer taken down on one node, deleting it
//! while published refused with the API's rule, a volume released through
//! its data-loss confirmation, and the pages on a phone's width. Every test
//! saves screenshots and fails on any error the browser's console logs.

mod browser;
mod controller_support;

use std::time::Duration;

use berth_testkit::berth::ADMIN_PASSWORD;
use browser::{blocking, rt, wait_reloading, Browser, Options};
use controller_support::{site_with_two_nodes, PROJECT};
use serde_json::json;

/// How long a publish may take to reach running on a node.
const PUBLISH: Duration = Duration::from_secs(120);

#[test]
fn load_balancers_and_volumes_are_managed_per_node_and_refusals_name_their_rule() {
    if !browser::available() || !controller_support::tools_present() {
        return;
    }
    let site = site_with_two_nodes();
    let lbs = format!("/ui/projects/{PROJECT}/resources/loadbalancers");
    let volumes = format!("/ui/projects/{PROJECT}/resources/volumes");
    rt().block_on(async {
        let b = Browser::start("resources", &site.registry_url(), Options::default()).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("nav.nav").await;
        // A volume and a load balancer, created from their forms.
        b.goto(&volumes).await;
        b.fill("#create input[name=name]", "data").await;
        b.fill("#create input[name=capacity]", "1Gi").await;
        b.click("#create button[type=submit]").await;
        b.find("#resources tr[data-name=data]").await;
        // The volume's spec changed from its form: a new capacity is refused by the
        // API's rule, a description is saved.
        b.click("#resources tr[data-name=data] a.edit").await;
        b.fill("#edit input[name=capacity]", "2Gi").await;
        b.click("#edit button[type=submit]").await;
        let alert = b.text(".alert.bad").await;
        assert!(alert.contains("rule: a volume's capacity cannot change"), "{alert}");
        b.no_console_errors(&["/resources/volumes/data/edit - Failed to load resource"]).await;
        b.fill("#edit input[name=capacity]", "1Gi").await;
        b.fill("#edit input[name=description]", "the shop's files").await;
        b.click("#edit button[type=submit]").await;
        b.find("#resources").await;
        assert_eq!(b.path().await, volumes);
        assert!(b.text("#resources tr[data-name=data]").await.contains("the shop's files"));

        // A secret's form on an edit: its key, never its value, which must be given again.
        let secrets = format!("/ui/projects/{PROJECT}/resources/secrets");
        let body = json!({"name": "db", "data": {"PASSWORD": "Zq9consoleSECRET"}});
        let (s, v) = blocking(|| site.api("POST", &format!("/api/v1/projects/{PROJECT}/secrets"), Some(body)));
        assert_eq!(s, 201, "{v}");
        b.goto(&format!("{secrets}/db/edit")).await;
        let key = b.find("#edit input[name='data.0.key']").await;
        assert_eq!(key.prop("value").await.expect("value").as_deref(), Some("PASSWORD"));
        assert!(!b.client.source().await.expect("source").contains("Zq9consoleSECRET"), "no value on the page");
        let required = b.js("return document.querySelector(\"#edit input[name='data.0.value']\").matches(':required:invalid')").await;
        assert_eq!(required, true, "the kept key's value is asked for");
        b.fill("#edit input[name='data.0.value']", "Zq9newSECRET").await;
        b.click("#edit button[type=submit]").await;
        b.find("#resources tr[data-name=db]").await;
        assert_eq!(b.path().await, secrets);
        b.no_console_errors(&[]).await;

        // An app using the volume, from the form: two containers, with a load balancer created along.
        b.goto(&format!("/ui/projects/{PROJECT}/apps")).await;
        b.click("#new-app-form").await;
        let suggested = b.js("return [...document.querySelectorAll('#image-suggestions option')].map(o => o.value)").await;
        assert!(suggested.as_array().is_some_and(|s| s.contains(&json!("acme/web:1.0"))), "tags the registry holds: {suggested}");
        b.fill("#new-app input[name=name]", "web").await;
        b.fill("#new-app input[name='c.0.image']", "acme/web:1.0").await;
        b.fill("#new-app input[name='c.0.ports']", "8080").await;
        b.js("document.querySelector(\"#new-app select[name='c.0.mount.0.source']\").value = 'volumes:data'").await;
        b.fill("#new-app input[name='c.0.mount.0.path']", "/var/lib/web").await;
        // Rows added in place (two), one removed again.
        b.js("window.stillThisPage = true").await;
        b.click("#new-app [data-add-container]").await;
        b.click("#new-app [data-add-container]").await;
        assert_eq!(b.count("#new-app fieldset.container").await, 3);
        b.click("#new-app fieldset.container[data-index='2'] [data-remove-container]").await;
        assert_eq!(b.count("#new-app fieldset.container").await, 2);
        assert_eq!(b.js("return window.stillThisPage === true").await, true, "rows change in place");
        b.fill("#new-app input[name='c.1.name']", "sidecar").await;
        b.fill("#new-app input[name='c.1.image']", "acme/web:1.0").await;
        b.fill("#new-app textarea[name='c.1.env']", "ROLE=sidecar").await;
        b.js("document.querySelector(\"#new-app select[name='c.1.mount.0.source']\").value = 'volumes:data'").await;
        b.fill("#new-app input[name='c.1.mount.0.path']", "/data").await;
        b.click("#new-app input[name=lb]").await;
        b.fill("#new-app input[name=lb_port]", "80").await;
        b.screenshot("app-form").await;
        // Without the page's script, the same button asks the server for the row.
        let added = b
            .js_async(&format!(
                "const done = arguments[arguments.length - 1];
                 const t = document.querySelector('meta[name=csrf-token]').content;
                 fetch('/ui/projects/{PROJECT}/new-app', {{method: 'POST',
                   headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
                   body: 'csrf=' + encodeURIComponent(t) + '&name=x&c.0.image=acme%2Fweb%3A1.0&op=add'}})
                 .then(r => r.text().then(x => done([r.status, x.includes('name=\"c.1.image\"'), x.includes('value=\"acme/web:1.0\"')])));"
            ))
            .await;
        assert_eq!(added, json!([200, true, true]), "a row more, the typed fields kept");
        b.click("#new-app button[type=submit]:not(.offscreen):not([name=op])").await;
        b.find("#publications").await;
        assert_eq!(b.path().await, format!("/ui/projects/{PROJECT}/apps/web"));
        b.goto(&lbs).await;
        let spec = b.text("#resources tr[data-name=web-lb] td[data-label=Spec]").await;
        assert_eq!(spec, "ClusterIP 80:8080/TCP → app=web", "{}", b.body().await);
        let (s, v) = blocking(|| site.api("GET", &site.app_path("web"), None));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["latest"]["spec"]["volumes"], json!([{"name": "vol-data", "persistent_volume_claim": "data"}]));
        let containers = &v["latest"]["spec"]["containers"];
        assert_eq!((&containers[0]["name"], &containers[1]["name"]), (&json!("web"), &json!("sidecar")));
        assert_eq!(containers[1]["volume_mounts"], json!([{"name": "vol-data", "mount_path": "/data"}]));

        // Edited into version 2 from the form, filled from version 1.
        b.goto(&format!("/ui/projects/{PROJECT}/apps/web")).await;
        b.click("#edit-app-link").await;
        let image = b.find("#edit-app input[name='c.1.image']").await;
        assert_eq!(image.prop("value").await.expect("value").as_deref(), Some("acme/web:1.0"));
        let fixed = b.js("return document.querySelector('#edit-app input[name=kind]').readOnly").await;
        assert_eq!(fixed, true, "an app's kind is fixed when it is created");
        b.fill("#edit-app textarea[name='c.0.env']", "GREETING=hello").await;
        b.fill("#edit-app input[name=message]", "a greeting").await;
        b.screenshot("app-edit").await;
        b.click("#edit-app button[type=submit]:not(.offscreen):not([name=op])").await;
        b.find("#publications").await;
        assert_eq!(b.text("#latest-version").await, "v2");
        let (s, v2) = blocking(|| site.api("GET", &site.app_path("web"), None));
        assert_eq!(s, 200, "{v2}");
        let mut want = v["latest"]["spec"].clone();
        want["containers"][0]["env"] = json!([{"name": "GREETING", "value": "hello"}]);
        assert_eq!(v2["latest"]["spec"], want, "only the variable changed");
        // Back to version 1's template as version 3, from the version history.
        b.goto(&format!("/ui/projects/{PROJECT}/apps/web/versions")).await;
        b.click("#versions tr[data-version='1'] a.start-from").await;
        let env = b.find("#edit-app textarea[name='c.0.env']").await;
        assert_eq!(env.prop("value").await.expect("value").as_deref(), Some(""), "filled from v1");
        b.click("#edit-app button[type=submit]:not(.offscreen):not([name=op])").await;
        b.find("#publications").await;
        assert_eq!(b.text("#latest-version").await, "v3");
        let (s, v3) = blocking(|| site.api("GET", &site.app_path("web"), None));
        assert_eq!(s, 200, "{v3}");
        assert_eq!(v3["latest"]["spec"], v["latest"]["spec"], "version 1's template again");
        b.no_console_errors(&[]).await;

        // Published on both nodes, the app takes both along.
        blocking(|| {
            site.publish("web", json!({"selector": {"zone": "test"}}));
            for n in ["east", "west"] {
                site.wait_state("web", n, "running", PUBLISH);
            }
        });
        let applied = "#resources tr[data-name=web-lb] div.on-node[data-state=applied]";
        wait_reloading(&b, &lbs, applied, 2, "web-lb on both nodes").await;

        // Taken down on west only.
        b.click("tr[data-name=web-lb] div.on-node[data-node=west] form.unpublish button")
            .await;
        b.client.accept_alert().await.expect("the confirmation");
        b.find("#resources").await;
        wait_reloading(
            &b,
            &lbs,
            "tr[data-name=web-lb] div.on-node[data-node=west]",
            0,
            "web-lb off west",
        )
        .await;
        assert_eq!(
            b.count("tr[data-name=web-lb] div.on-node[data-node=east][data-state=applied]")
                .await,
            1
        );
        b.no_console_errors(&[]).await;

        // Deleting it while published on east: the API's rule, on the page.
        b.click("tr[data-name=web-lb] form.delete button").await;
        b.client.accept_alert().await.expect("the confirmation");
        let alert = b.text(".alert.bad").await;
        assert!(
            alert.contains("rule: a resource is deleted only when it is published nowhere"),
            "{alert}"
        );
        b.screenshot("refused-delete").await;
        b.no_console_errors(&[
            "/delete - Failed to load resource: the server responded with a status of 409",
        ])
        .await;

        // The app leaves west without its resources: the volume stays bound there until released.
        blocking(|| {
            site.unpublish("web", json!({"nodes": ["west"]}));
            site.wait_publication("web", "west", "removed", PUBLISH, |p| p.is_none());
        });
        let pvc = "acme-shared-persistentvolumeclaim-data-west.yaml".to_string();
        assert!(site.manifests("west").contains(&pvc));
        b.goto(&volumes).await;
        let west = "tr[data-name=data] div.binding[data-node=west]";
        b.find(&format!("{west}[data-binding=bound]")).await;
        // The release asks for the volume's name: a wrong one is not sent.
        b.fill(&format!("{west} input[name=confirm]"), "dat").await;
        b.click(&format!("{west} form.release button")).await;
        let invalid = b
            .js(&format!(
                "return document.querySelector('{west} input[name=confirm]').matches(':invalid')"
            ))
            .await;
        assert_eq!(invalid, true, "the browser holds back a wrong name");
        b.fill(&format!("{west} input[name=confirm]"), "data").await;
        b.screenshot("release-volume").await;
        b.click(&format!("{west} form.release button")).await;
        b.client
            .accept_alert()
            .await
            .expect("the data-loss confirmation");
        b.find(&format!("{west}[data-binding=released]")).await;
        assert!(
            !site.manifests("west").contains(&pvc),
            "the claim is gone from west"
        );
        b.no_console_errors(&[]).await;
        b.close().await;

        // A phone's width: the filled pages do not scroll sideways.
        let phone = Options { window: Some((390, 844)), ..Options::default() };
        let b = Browser::start("resources-narrow", &site.registry_url(), phone).await;
        b.sign_in("admin", ADMIN_PASSWORD).await;
        b.find("label.nav-button").await;
        let overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth";
        let edit = format!("/ui/projects/{PROJECT}/apps/web/edit");
        let edit_lb = format!("{lbs}/web-lb/edit");
        for path in [volumes.clone(), lbs.clone(), "/ui/nodes".to_string(), format!("/ui/projects/{PROJECT}/new-app"), edit, edit_lb] {
            b.goto(&path).await;
            assert_eq!(b.js(overflow).await, 0, "{path} scrolls sideways");
        }
        b.goto(&volumes).await;
        b.screenshot("volumes").await;
        b.no_console_errors(&[]).await;
        b.close().await;
    });
    let (s, v) = site.api(
        "GET",
        &format!("/api/v1/projects/{PROJECT}/loadbalancers/web-lb"),
        None,
    );
    assert_eq!(s, 200, "refused, so still there: {v}");
}
