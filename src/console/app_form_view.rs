//! The app form's markup: a [`Draft`] drawn as fields, for a new app or for
//! a new version of one. Container rows are added and removed by the page's
//! script in place; without it, the same buttons submit the form, which
//! comes back with a row more or less (`apps` handles `op`).

use maud::{html, Markup};

use super::app_form::{ContainerDraft, Draft, MAX_CONTAINERS};
use super::{layout, Ctx};

/// What the project has that an app can use, by kind (`configmaps`, `secrets`, `volumes`).
pub type Usable = Vec<(&'static str, Vec<String>)>;

/// Where the form goes: a new app, or a new version of an app.
pub enum Target<'a> {
    New { action: &'a str },
    Edit { action: &'a str },
}

/// Empty mount rows offered below a container's mounts.
const SPARE_MOUNTS: usize = 1;

const KINDS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"];

/// The form; `images` are the suggestions (`project/repo:tag`).
pub fn form(
    ctx: &Ctx,
    target: Target,
    draft: &Draft,
    images: &[String],
    usable: &Usable,
) -> Markup {
    let t = |s| ctx.t(s);
    let (action, edit) = match target {
        Target::New { action } => (action, false),
        Target::Edit { action } => (action, true),
    };
    let kind = if draft.kind.is_empty() {
        "Deployment"
    } else {
        draft.kind.as_str()
    };
    html! {
        form.stack.app-form method="post" action=(action) id=(if edit { "edit-app" } else { "new-app" }) {
            (layout::csrf(ctx))
            // The default button (Enter in a field): save, not a row's remove.
            button.offscreen type="submit" tabindex="-1" aria-hidden="true" { (t("Create")) }
            @if edit {
                input type="hidden" name="name" value=(draft.name);
            } @else {
                label { span { (t("Name")) } input type="text" name="name" value=(draft.name) required pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="50" autocapitalize="none"; }
            }
            @if edit {
                // Fixed when the app is created.
                label { span { (t("Kind")) } input type="text" name="kind" value=(kind) readonly; }
            } @else {
                label { span { (t("Kind")) } select name="kind" { @for k in KINDS { option value=(k) selected[k == kind] { (k) } } } }
            }
            label { span { (t("Replicas")) } input type="number" name="replicas" value=(draft.replicas) min="1" max="1000" placeholder="1"; }
            label { span { (t("Schedule (CronJob)")) } input type="text" name="schedule" value=(draft.schedule) placeholder="*/15 * * * *" autocapitalize="none"; }
            datalist #image-suggestions { @for i in images { option value=(i) {} } }
            div #containers {
                @for (i, c) in draft.containers.iter().enumerate() {
                    (container(ctx, i, c, usable, draft.containers.len() > 1))
                }
            }
            @if draft.containers.len() < MAX_CONTAINERS {
                p { button.secondary type="submit" name="op" value="add" formnovalidate data-add-container="#containers" data-max=(MAX_CONTAINERS) { (t("Add a container")) } }
            }
            @if !edit { (created_with(ctx, draft)) }
            @if edit {
                label { span { (t("What changed")) } input type="text" name="message" maxlength="200" placeholder=(t("a new image, one more variable")); }
                button type="submit" { (t("Save as a new version")) }
            } @else {
                button type="submit" { (t("Create")) }
            }
        }
    }
}

/// One container's fieldset; its fields are `c.<i>.<field>`.
fn container(ctx: &Ctx, i: usize, c: &ContainerDraft, usable: &Usable, removable: bool) -> Markup {
    let t = |s| ctx.t(s);
    let f = |k: &str| format!("c.{i}.{k}");
    let rows = c.mounts.len() + SPARE_MOUNTS;
    let blank = (String::new(), String::new());
    html! {
        fieldset.container data-index=(i) {
            legend { (t("Container")) }
            label { span { (t("Image")) } input type="text" name=(f("image")) value=(c.image) list="image-suggestions" required autocapitalize="none" placeholder="acme/web:1.0"; }
            label { span { (t("Container name")) } input type="text" name=(f("name")) value=(c.name) pattern="[a-z0-9]+(-[a-z0-9]+)*" maxlength="63" autocapitalize="none" placeholder=(t("the app's name")); }
            label { span { (t("Container ports")) } input type="text" name=(f("ports")) value=(c.ports) placeholder="8080, 5353/UDP"; }
            label { span { (t("Environment")) } textarea name=(f("env")) rows="3" spellcheck="false" placeholder="GREETING=hello" { (c.env) } }
            fieldset.mounts {
                legend { (t("Mounts")) }
                @for j in 0..rows {
                    @let (source, path) = c.mounts.get(j).unwrap_or(&blank);
                    div.kv {
                        select name=(f(&format!("mount.{j}.source"))) aria-label=(t("Mounted resource")) {
                            option value="" { "—" }
                            @for (kind, names) in usable { @for n in names {
                                @let v = format!("{kind}:{n}");
                                option value=(v) selected[&v == source] { (kind_word(ctx, kind)) ": " (n) }
                            } }
                            // What the template mounts that the project does not offer
                            // (an emptyDir, a resource since deleted) stays choosable.
                            @if !source.is_empty() && !offered(usable, source) {
                                option value=(source) selected { (source_word(ctx, source)) }
                            }
                        }
                        input type="text" name=(f(&format!("mount.{j}.path"))) value=(path) placeholder="/etc/app" aria-label=(t("Path in the container"));
                    }
                }
            }
            fieldset.envfrom {
                legend { (t("Environment from")) }
                @if usable.iter().all(|(k, n)| *k == "volumes" || n.is_empty()) { p.muted { (t("No config maps or secrets in this project.")) } }
                @for (kind, names) in usable.iter().filter(|(k, _)| *k != "volumes") {
                    @for n in names {
                        @let v = format!("{kind}:{n}");
                        label.check { input type="checkbox" name=(f(&format!("envfrom:{v}"))) value="true" checked[c.env_from.contains(&v)]; span { (kind_word(ctx, kind)) ": " (n) } }
                    }
                }
            }
            button.secondary.remove-container type="submit" name="op" value={"remove:" (i)} formnovalidate hidden[!removable] data-remove-container { (t("Remove this container")) }
        }
    }
}

fn offered(usable: &Usable, source: &str) -> bool {
    usable
        .iter()
        .any(|(kind, names)| names.iter().any(|n| format!("{kind}:{n}") == source))
}

fn created_with(ctx: &Ctx, draft: &Draft) -> Markup {
    let t = |s| ctx.t(s);
    html! {
        fieldset {
            legend { (t("Created with it")) }
            label.check { input type="checkbox" name="lb" value="true" checked[draft.lb]; span { (t("A load balancer on port")) } }
            input type="number" name="lb_port" value=(draft.lb_port) min="1" max="65535" placeholder="80" aria-label=(t("Load balancer port"));
            label.check { input type="checkbox" name="eip" value="true" checked[draft.eip]; span { (t("An EIP in front of it (blank: from the cluster's pool)")) } }
            input type="text" name="eip_address" value=(draft.eip_address) placeholder="192.0.2.10" aria-label=(t("Static address"));
        }
    }
}

/// `kind:name` as the form says it: `volume: data`, `pod volume: cache`.
fn source_word(ctx: &Ctx, source: &str) -> String {
    match source.split_once(':') {
        Some(("pod", n)) => format!("{}: {n}", ctx.t("pod volume")),
        Some((kind, n)) => format!("{}: {n}", kind_word(ctx, kind)),
        None => source.to_string(),
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
    use crate::console::Lang;
    use serde_json::json;

    #[test]
    fn an_edit_shows_the_template_with_what_the_project_does_not_offer_still_chosen() {
        let ctx = Ctx {
            lang: Lang::En,
            peer: None,
            session: None,
            path: String::new(),
        };
        let spec = json!({"kind": "StatefulSet", "containers": [
            {"name": "web", "image": "acme/web:1.0", "volume_mounts": [
                {"name": "cache", "mount_path": "/cache"},
                {"name": "vol-data", "mount_path": "/data"}]},
            {"name": "log", "image": "acme/log:1"}],
            "volumes": [{"name": "cache", "empty_dir": {}},
                {"name": "vol-data", "persistent_volume_claim": "data"}]});
        let draft = Draft::from_spec("web", &spec);
        let usable: Usable = vec![("volumes", vec!["data".into()])];
        let page = form(&ctx, Target::Edit { action: "/x" }, &draft, &[], &usable).into_string();
        assert!(
            page.contains(r#"<option value="pod:cache" selected>pod volume: cache</option>"#),
            "{page}"
        );
        assert!(page.contains(r#"<option value="volumes:data" selected>volume: data</option>"#));
        assert!(page.contains(r#"name="kind" value="StatefulSet" readonly"#));
        assert_eq!(page.matches("<fieldset class=\"container\"").count(), 2);
        assert!(
            !page.contains("name=\"lb\""),
            "nothing is created along on an edit"
        );
    }
}
