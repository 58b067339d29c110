//! Sign-in, the forced reset of an initial password, changing a password,
//! signing out (here or everywhere) and the language switch.
//!
//! Sign-in goes through `RegistryAccess::sign_in`: the same attempt lock,
//! throttle, failure counting and audit as every other login. Password
//! changes go to the admin API, which checks the old password under that
//! throttle too. Before a session exists, the forms carry a CSRF token that
//! must match a `SameSite=Strict` cookie (double submit).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_registry::auth::audit::Outcome;
use berth_registry::auth::Refusal;
use maud::{html, Markup};

use super::layout::{self, alert, page, Section};
use super::session::{self, random_token, same_secret, LANG_COOKIE, PRE_COOKIE};
use super::{urlencode, Anyone, Console, CsrfForm, Ctx, Signed};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/reset", post(reset))
        .route("/ui/lang", get(switch_lang))
        .route("/ui/account", get(account_page))
        .route("/ui/account/password", post(change_password))
        .route("/ui/logout", post(logout))
        .route("/ui/logout-everywhere", post(logout_everywhere))
}

/// The password rule, as the account rules check it (`accounts::rules`):
/// shown before submitting, and as the browser's own check.
const PASSWORD_PATTERN: &str = "(?=.*\\p{L})(?=.*[0-9]).{8,20}";

fn password_inputs(ctx: &Ctx, new_label: &'static str) -> Markup {
    let t = |s| ctx.t(s);
    html! {
        label { span { (t(new_label)) }
            input type="password" name="new" required minlength="8" maxlength="20" pattern=(PASSWORD_PATTERN)
                autocomplete="new-password" data-pair aria-describedby="pw-rule"; }
        p.hint #pw-rule { (t("8 to 20 characters, with at least one letter and one digit.")) }
        label { span { (t("Repeat the new password")) }
            input type="password" name="new2" required minlength="8" maxlength="20" autocomplete="new-password" data-pair; }
        p.alert.bad.mismatch hidden { (t("The two new passwords differ.")) }
    }
}

/// The sign-in form (`reset`: the forced-reset form for `name` instead).
fn login_form(
    console: &Console,
    ctx: &Ctx,
    pre: &str,
    next: &str,
    name: &str,
    reset: bool,
    msg: Option<(bool, &str)>,
) -> Response {
    let t = |s| ctx.t(s);
    let body = html! {
        section.card.narrow {
            @if reset {
                h1 { (t("Set a new password")) }
                p { (t("Your password is an initial one: choose your own before you continue.")) }
            } @else {
                h1 { (t("Sign in")) }
            }
            @if let Some((ok, m)) = msg { (alert(ok, m)) }
            form.stack method="post" action=(if reset { "/ui/reset" } else { "/ui/login" }) data-match[reset] {
                input type="hidden" name="csrf" value=(pre);
                input type="hidden" name="next" value=(next);
                label { span { (t("Account name")) }
                    input type="text" name="name" value=(name) required autocomplete="username" autocapitalize="none"; }
                label { span { (if reset { t("Current password") } else { t("Password") }) }
                    input type="password" name="password" required autocomplete="current-password"; }
                @if reset { (password_inputs(ctx, "New password")) }
                button type="submit" { (if reset { t("Set a new password") } else { t("Sign in") }) }
            }
        }
    };
    let mut r = page(ctx, t("Sign in"), Section::None, body);
    let c = console
        .sessions()
        .set_cookie(PRE_COOKIE, Some(pre), Some(Duration::from_secs(3600)));
    if let Ok(v) = c.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn pre_token(headers: &HeaderMap) -> String {
    session::cookie(headers, PRE_COOKIE)
        .filter(|v| v.len() == 43)
        .map_or_else(random_token, str::to_string)
}

/// Only console paths are followed after sign-in.
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/ui/projects".to_string(),
    }
}

async fn login_page(
    State(console): State<Console>,
    Anyone(ctx): Anyone,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if ctx.session.is_some() {
        return Redirect::to(&safe_next(q.get("next"))).into_response();
    }
    let msg = match q.get("msg").map(String::as_str) {
        Some("everywhere") => Some((true, ctx.t("Signed out on every device."))),
        Some("changed") => Some((true, ctx.t("Password changed."))),
        _ => None,
    };
    let pre = pre_token(&headers);
    login_form(
        &console,
        &ctx,
        &pre,
        &safe_next(q.get("next")),
        "",
        false,
        msg,
    )
}

/// Checks the double-submitted pre-session token; on success returns the form.
async fn pre_form(
    State(console): State<Console>,
    req: axum::extract::Request,
) -> Result<(Ctx, HashMap<String, String>, String), Response> {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::of(
        &console,
        &parts.headers,
        &parts.extensions,
        parts.uri.path(),
    )
    .await;
    let cookie = session::cookie(&parts.headers, PRE_COOKIE)
        .unwrap_or("")
        .to_string();
    let form = super::read_form(axum::extract::Request::from_parts(parts, body)).await;
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if cookie.is_empty() || !same_secret(given, &cookie) {
        return Err(layout::error_page(
            &ctx,
            StatusCode::FORBIDDEN,
            ctx.t("The form has expired; reload the page and try again."),
        ));
    }
    Ok((ctx, form, cookie))
}

async fn login(st: State<Console>, req: axum::extract::Request) -> Response {
    let console = st.0.clone();
    let (ctx, form, pre) = match pre_form(st, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = form.get("name").map(|n| n.trim()).unwrap_or("").to_string();
    let password = form.get("password").cloned().unwrap_or_default();
    let next = safe_next(form.get("next"));
    sign_in(&console, &ctx, &pre, &name, &password, &next).await
}

/// Signs `name` in and starts a session, or answers the form again with why not.
async fn sign_in(
    console: &Console,
    ctx: &Ctx,
    pre: &str,
    name: &str,
    password: &str,
    next: &str,
) -> Response {
    let access = console.access();
    match access.sign_in(name, password, ctx.peer).await {
        Ok(subject) if subject.robot => {
            let mut r = login_form(
                console,
                ctx,
                pre,
                next,
                name,
                false,
                Some((false, "robot accounts cannot sign in to the console")),
            );
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        }
        Ok(subject) => {
            access.audit(name, ctx.peer, "console.signin", None, name, Outcome::OK);
            let Some(s) = console.sessions().start(subject).await else {
                return layout::error_page(
                    ctx,
                    StatusCode::SERVICE_UNAVAILABLE,
                    ctx.t("The registry cannot keep your session now; try again shortly."),
                );
            };
            let mut r = Redirect::to(next).into_response();
            if let Ok(v) = console.sessions().session_cookie(&s).parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err((_, true)) => login_form(console, ctx, pre, next, name, true, None),
        Err((refusal, false)) => {
            let status = match &refusal {
                Refusal::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut r = login_form(
                console,
                ctx,
                pre,
                next,
                name,
                false,
                Some((false, &refusal.to_string())),
            );
            *r.status_mut() = status;
            r
        }
    }
}

async fn reset(st: State<Console>, req: axum::extract::Request) -> Response {
    let console = st.0.clone();
    let (ctx, form, pre) = match pre_form(st, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (name, old, new) = (get("name").trim().to_string(), get("password"), get("new"));
    let next = safe_next(form.get("next"));
    if new != get("new2") {
        return login_form(
            &console,
            &ctx,
            &pre,
            &next,
            &name,
            true,
            Some((false, ctx.t("The two new passwords differ."))),
        );
    }
    let a = console
        .call(
            None,
            ctx.peer,
            Method::PUT,
            &format!("/api/v1/users/{}/password", urlencode(&name)),
            Some(serde_json::json!({ "old_password": old, "new_password": new })),
        )
        .await;
    if !a.ok() {
        let mut r = login_form(
            &console,
            &ctx,
            &pre,
            &next,
            &name,
            true,
            Some((false, &a.error())),
        );
        *r.status_mut() = a.status;
        return r;
    }
    sign_in(&console, &ctx, &pre, &name, &new, &next).await
}

async fn switch_lang(
    State(console): State<Console>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = q
        .get("to")
        .and_then(|l| super::Lang::parse(l))
        .unwrap_or(super::Lang::En);
    let back = safe_next(q.get("back"));
    let back = if q.get("back").is_some_and(|b| b == "/ui/login") {
        "/ui/login".to_string()
    } else {
        back
    };
    let mut r = Redirect::to(&back).into_response();
    let code = if lang == super::Lang::Zh { "zh" } else { "en" };
    let year = Duration::from_secs(365 * 86400);
    let c = console
        .sessions()
        .set_cookie(LANG_COOKIE, Some(code), Some(year));
    if let Ok(v) = c.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn account_body(ctx: &Ctx, msg: Option<(bool, &str)>) -> Markup {
    let t = |s| ctx.t(s);
    let s = ctx.session.as_ref();
    html! {
        h1 { (t("Account")) }
        @if let Some((ok, m)) = msg { (alert(ok, m)) }
        section.card {
            p { (t("Signed in as")) " " b { (s.map_or("", |s| s.name())) }
                @if s.is_some_and(|s| s.subject.admin) { " " span.pill { (t("system administrator")) } } }
            form.inline method="post" action="/ui/logout-everywhere" {
                (layout::csrf(ctx))
                button.secondary type="submit" { (t("Sign out everywhere")) }
            }
        }
        section.card {
            h2 { (t("Change password")) }
            form.stack method="post" action="/ui/account/password" data-match {
                (layout::csrf(ctx))
                label { span { (t("Current password")) }
                    input type="password" name="password" required autocomplete="current-password"; }
                (password_inputs(ctx, "New password"))
                button type="submit" { (t("Change password")) }
            }
        }
    }
}

async fn account_page(Signed { ctx, .. }: Signed) -> Response {
    page(
        &ctx,
        ctx.t("Account"),
        Section::Account,
        account_body(&ctx, None),
    )
}

async fn change_password(
    State(console): State<Console>,
    CsrfForm(signed, form): CsrfForm,
) -> Response {
    let ctx = &signed.ctx;
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let new = get("new");
    let fail = |status: StatusCode, m: &str| {
        let mut r = page(
            ctx,
            ctx.t("Account"),
            Section::Account,
            account_body(ctx, Some((false, m))),
        );
        *r.status_mut() = status;
        r
    };
    if new != get("new2") {
        return fail(
            StatusCode::BAD_REQUEST,
            ctx.t("The two new passwords differ."),
        );
    }
    let name = signed.session.name().to_string();
    let a = console
        .call(
            None,
            ctx.peer,
            Method::PUT,
            &format!("/api/v1/users/{}/password", urlencode(&name)),
            Some(serde_json::json!({ "old_password": get("password"), "new_password": new })),
        )
        .await;
    if !a.ok() {
        return fail(a.status, &a.error());
    }
    // A new password ends every session of the account, this one included.
    console.sessions().end_all(&name).await;
    clear_session(
        &console,
        Redirect::to("/ui/login?msg=changed").into_response(),
    )
}

fn clear_session(console: &Console, mut r: Response) -> Response {
    let c = console
        .sessions()
        .set_cookie(console.sessions().cookie_name(), None, None);
    if let Ok(v) = c.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(console): State<Console>, CsrfForm(signed, _): CsrfForm) -> Response {
    console.sessions().end(&signed.session.id).await;
    clear_session(&console, Redirect::to("/ui/login").into_response())
}

async fn logout_everywhere(
    State(console): State<Console>,
    CsrfForm(signed, _): CsrfForm,
) -> Response {
    let n = console.sessions().end_all(signed.session.name()).await;
    tracing::info!(
        account = signed.session.name(),
        sessions = n,
        "console: signed out everywhere"
    );
    clear_session(
        &console,
        Redirect::to("/ui/login?msg=everywhere").into_response(),
    )
}
