//! The page shell every console screen shares: head (the one stylesheet and
//! script), the top bar with navigation, language switch and account, and
//! the error page. Also the small formatting helpers pages use.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::{assets, urlencode, Ctx, Lang};

/// Which top-level section is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Projects,
    Nodes,
    Audit,
    Gc,
    Account,
    None,
}

/// A complete page.
pub fn page(ctx: &Ctx, title: &str, section: Section, body: Markup) -> Response {
    let t = |s| ctx.t(s);
    let admin = ctx.session.as_ref().is_some_and(|s| s.subject.admin);
    let markup = html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = &ctx.session { meta name="csrf-token" content=(s.csrf); }
                title { (title) " · berth" }
                link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
                link rel="stylesheet" href=(assets::url("console.css"));
                script src=(assets::url("console.js")) defer {}
                script src=(assets::url("live.js")) defer {}
            }
            body {
                header.topbar {
                    a.brand href="/ui/projects" { span.logo { "⚓" } " berth" }
                    @if ctx.session.is_some() {
                        input #nav-toggle type="checkbox" hidden;
                        label.nav-button for="nav-toggle" aria-label=(t("Menu")) { "☰" }
                        nav.nav {
                            a class=(cur(section, Section::Projects)) href="/ui/projects" { (t("Projects")) }
                            a class=(cur(section, Section::Nodes)) href="/ui/nodes" { (t("Nodes")) }
                            @if admin {
                                a class=(cur(section, Section::Audit)) href="/ui/audit" { (t("Audit log")) }
                                a class=(cur(section, Section::Gc)) href="/ui/gc" { (t("Garbage collection")) }
                            }
                            a class=(cur(section, Section::Account)) href="/ui/account" { (t("Account")) }
                        }
                    }
                    div.tools {
                        (lang_switch(ctx))
                        @if let Some(s) = &ctx.session {
                            span.who title=(t("Signed in as")) { (s.name()) }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { (t("Sign out")) }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

fn cur(section: Section, this: Section) -> &'static str {
    if section == this {
        "current"
    } else {
        ""
    }
}

fn lang_switch(ctx: &Ctx) -> Markup {
    let back = urlencode(&ctx.path);
    html! {
        span.lang {
            @if ctx.lang == Lang::En { b { "EN" } } @else { a href={"/ui/lang?to=en&back=" (back)} hreflang="en" { "EN" } }
            " | "
            @if ctx.lang == Lang::Zh { b { "中文" } } @else { a href={"/ui/lang?to=zh&back=" (back)} hreflang="zh-CN" { "中文" } }
        }
    }
}

/// An error page with the API's (or the console's) message.
pub fn error_page(ctx: &Ctx, status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => ctx.t("Not found"),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => ctx.t("Refused"),
        _ => ctx.t("Something went wrong"),
    };
    let body = html! {
        section.card.error-card {
            h1 { (title) }
            p.alert.bad role="alert" { (message) }
            @if status == StatusCode::UNAUTHORIZED {
                p { a.button href="/ui/login" { (ctx.t("Sign in")) } }
            } @else {
                p { a href="/ui/projects" { "← " (ctx.t("Projects")) } }
            }
        }
    };
    let mut r = page(ctx, title, Section::None, body);
    *r.status_mut() = status;
    r
}

/// The hidden CSRF field of a form.
pub fn csrf(ctx: &Ctx) -> Markup {
    html! {
        @if let Some(s) = &ctx.session { input type="hidden" name="csrf" value=(s.csrf); }
    }
}

/// A POST form holding one button, asking `confirm` first.
pub fn button_form(
    ctx: &Ctx,
    action: &str,
    label: &str,
    confirm: &str,
    fields: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=(confirm) {
            (csrf(ctx))
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button.danger.small type="submit" { (label) }
        }
    }
}

/// A message box: `ok` green, else red.
pub fn alert(ok: bool, text: &str) -> Markup {
    html! { p class={"alert " (if ok { "good" } else { "bad" })} role="status" { (text) } }
}

/// Bytes as KiB, MiB, GiB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.replace('T', " ").replace('Z', " UTC")
}

/// A digest shortened for tables (`sha256:0123456789ab`).
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
    }
}
