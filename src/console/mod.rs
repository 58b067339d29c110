//! The web console `berth serve` answers at `/` (pages under `/ui/`):
//! server-rendered HTML, one small script and one stylesheet compiled into
//! the binary, no request leaving the origin.
//!
//! The console is a client of the same APIs as `berth` and curl: each page
//! calls the admin API (and, for part two, the controller's) in-process, as
//! the signed-in account with a short bearer token, so every permission check,
//! refusal message and audit record is the API's own. What the console adds
//! is its session (see `session`), the CSRF check on every POST, the
//! security headers, and the two languages (`i18n`). It must not decide
//! permissions itself: it only hides buttons the API would refuse.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use berth_registry::auth::access::RegistryAccess;
use berth_registry::auth::client::{client_addr, ClientAddr};
use berth_registry::service::LocalRegistry;
use tower::ServiceExt;

mod admin;
mod app_form;
mod app_form_pages;
mod app_form_view;
mod apps;
mod assets;
mod details;
mod diff;
mod i18n;
mod layout;
mod live;
mod logs;
mod node_cache;
mod nodes;
mod projects;
mod repos;
mod resource_edit;
mod resource_forms;
mod resources;
mod robots;
mod session;
mod signin;
mod versions;

pub use i18n::Lang;
use session::{Session, Sessions};

/// What every console handler reaches.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    /// The API routes (`/api/v1`, the controller's), called in-process.
    api: Router,
    access: Arc<RegistryAccess>,
    registry: Arc<LocalRegistry>,
    sessions: Sessions,
    /// `host[:port]` the pull commands name.
    registry_host: String,
    /// Bumped by the controller on every publication write (none without
    /// the controller): what the live publish view waits on.
    publication_changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// Cancelled when the server begins to shut down: streams end then.
    stop: tokio_util::sync::CancellationToken,
}

/// How long the bearer token of one in-process API call lives.
const CALL_TOKEN_TTL: Duration = Duration::from_secs(60);

impl Console {
    pub fn new(
        api: Router,
        access: Arc<RegistryAccess>,
        registry: Arc<LocalRegistry>,
        sessions: Arc<dyn berth_registry::auth::sessions::SessionStore>,
        publication_changes: Option<tokio::sync::watch::Receiver<u64>>,
        stop: tokio_util::sync::CancellationToken,
        cfg: &berth_config::Config,
    ) -> Self {
        let url = cfg.server.external_url();
        let registry_host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, h)| h)
            .trim_end_matches('/')
            .to_string();
        let tls = cfg.server.tls_cert.is_some();
        Console {
            inner: Arc::new(Inner {
                api,
                access,
                registry,
                sessions: Sessions::new(
                    sessions,
                    cfg.console.session_idle,
                    cfg.console.session_lifetime,
                    tls,
                ),
                registry_host,
                publication_changes,
                stop,
            }),
        }
    }

    /// The console's routes: `/` and `/ui/...`, with the security headers.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/ui/projects") }))
            .route("/ui", get(|| async { Redirect::to("/ui/projects") }))
            .route("/ui/static/{file}", get(assets::serve))
            .merge(signin::routes())
            .merge(projects::routes())
            .merge(repos::routes())
            .merge(robots::routes())
            .merge(admin::routes())
            .merge(apps::routes())
            .merge(versions::routes())
            .merge(live::routes())
            .merge(resources::routes())
            .merge(logs::routes())
            .merge(nodes::routes())
            .merge(node_cache::routes())
            .with_state(self)
            .layer(axum::middleware::from_fn(security_headers))
    }

    pub(crate) fn access(&self) -> &RegistryAccess {
        &self.inner.access
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub(crate) fn registry(&self) -> &Arc<LocalRegistry> {
        &self.inner.registry
    }

    pub(crate) fn registry_host(&self) -> &str {
        &self.inner.registry_host
    }

    /// A receiver woken on every publication write; None without the controller.
    pub(crate) fn publication_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.publication_changes.clone()
    }

    /// Cancelled when the server begins to shut down.
    pub(crate) fn stopping(&self) -> &tokio_util::sync::CancellationToken {
        &self.inner.stop
    }

    /// `call` as a signed-in page's account, from its browser's address.
    pub(crate) async fn call_as(
        &self,
        signed: &Signed,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ApiAnswer {
        self.call(Some(&signed.session), signed.ctx.peer, method, path, body)
            .await
    }

    /// Calls the API in-process as the session's account (anonymous without
    /// one), from the browser's address, and reads the JSON answer.
    pub(crate) async fn call(
        &self,
        who: Option<&Session>,
        peer: Option<IpAddr>,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ApiAnswer {
        let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
        self.send(who, peer, method, path, body).await
    }

    /// `call_as` with a body of another type than JSON (a YAML manifest).
    pub(crate) async fn call_with(
        &self,
        signed: &Signed,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> ApiAnswer {
        let (who, peer) = (Some(&signed.session), signed.ctx.peer);
        self.send(who, peer, method, path, Some((content_type, body)))
            .await
    }

    async fn send(
        &self,
        who: Option<&Session>,
        peer: Option<IpAddr>,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> ApiAnswer {
        match self.respond(who, peer, method, path, body).await {
            Ok(res) => ApiAnswer::read(res).await,
            Err(a) => a,
        }
    }

    /// A GET as the signed-in account whose answer is kept as it comes (a
    /// kubeconfig, a followed log): the response when it succeeded, else the
    /// API's refusal.
    pub(crate) async fn open_as(&self, signed: &Signed, path: &str) -> Result<Response, ApiAnswer> {
        let (who, peer) = (Some(&signed.session), signed.ctx.peer);
        let res = self.respond(who, peer, Method::GET, path, None).await?;
        if res.status().is_success() {
            Ok(res)
        } else {
            Err(ApiAnswer::read(res).await)
        }
    }

    async fn respond(
        &self,
        who: Option<&Session>,
        peer: Option<IpAddr>,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Response, ApiAnswer> {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(s) = who {
            let token = self.inner.access.session_token(&s.subject, CALL_TOKEN_TTL);
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((ctype, bytes)) => {
                req = req.header(header::CONTENT_TYPE, ctype);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let Ok(mut req) = req.body(body) else {
            return Err(ApiAnswer::failed(
                StatusCode::BAD_REQUEST,
                "invalid request path",
            ));
        };
        if let Some(ip) = peer {
            req.extensions_mut().insert(ClientAddr(ip));
        }
        let Ok(res) = self.inner.api.clone().oneshot(req).await;
        Ok(res)
    }
}

/// An answer of the API.
pub struct ApiAnswer {
    pub status: StatusCode,
    pub json: serde_json::Value,
}

impl ApiAnswer {
    /// The status and the JSON of a whole answer.
    async fn read(res: Response) -> Self {
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 64 << 20)
            .await
            .unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        ApiAnswer { status, json }
    }

    fn failed(status: StatusCode, message: &str) -> Self {
        ApiAnswer {
            status,
            json: serde_json::json!({ "error": message }),
        }
    }

    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message, as it gives it.
    pub fn error(&self) -> String {
        self.json["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| self.status.to_string())
    }
}

/// What a console handler knows of the browser asking.
pub struct Ctx {
    pub lang: Lang,
    pub peer: Option<IpAddr>,
    /// The signed-in session, if any.
    pub session: Option<Session>,
    /// The path asked for, to come back to after signing in.
    pub path: String,
}

impl Ctx {
    pub async fn of(
        console: &Console,
        headers: &HeaderMap,
        ext: &http::Extensions,
        path: &str,
    ) -> Ctx {
        let lang = session::cookie(headers, session::LANG_COOKIE)
            .and_then(Lang::parse)
            .unwrap_or_else(|| {
                Lang::from_accept(
                    headers
                        .get(header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                )
            });
        let mut session = None;
        if let Some(id) = session::cookie(headers, console.sessions().cookie_name()) {
            if let Some(s) = console.sessions().touch(id).await {
                // The account as it is now: deleted accounts lose their sessions.
                match console.access().accounts.current(&s.subject) {
                    Some(now) => session = Some(Session { subject: now, ..s }),
                    None => console.sessions().end(id).await,
                }
            }
        }
        Ctx {
            lang,
            peer: client_addr(ext),
            session,
            path: path.to_string(),
        }
    }

    pub fn t(&self, text: &'static str) -> &'static str {
        self.lang.t(text)
    }
}

/// A signed-in request: the page's context and its session.
pub struct Signed {
    pub ctx: Ctx,
    pub session: Session,
}

impl axum::extract::FromRequestParts<Console> for Signed {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        console: &Console,
    ) -> Result<Self, Response> {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/ui/projects", |p| p.as_str());
        let ctx = Ctx::of(console, &parts.headers, &parts.extensions, path).await;
        match ctx.session.clone() {
            Some(session) => Ok(Signed { ctx, session }),
            None if parts.method == Method::GET => {
                let next = urlencode(&ctx.path);
                Err(Redirect::to(&format!("/ui/login?next={next}")).into_response())
            }
            None => Err(layout::error_page(
                &ctx,
                StatusCode::UNAUTHORIZED,
                ctx.t("Your session has expired; sign in again."),
            )),
        }
    }
}

/// Any request: the page's context.
pub struct Anyone(pub Ctx);

impl axum::extract::FromRequestParts<Console> for Anyone {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_string();
        Ok(Anyone(
            Ctx::of(console, &parts.headers, &parts.extensions, &path).await,
        ))
    }
}

/// A POSTed form whose CSRF token (`csrf`) matches the session's: anything
/// else is refused with 403 before the handler runs.
pub struct CsrfForm(pub Signed, pub std::collections::HashMap<String, String>);

impl axum::extract::FromRequest<Console> for CsrfForm {
    type Rejection = Response;
    async fn from_request(req: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let req = Request::from_parts(parts, body);
        let form = read_form(req).await;
        let given = form.get("csrf").map(String::as_str).unwrap_or("");
        if !session::same_secret(given, &signed.session.csrf) {
            tracing::warn!(
                account = signed.session.name(),
                "console request without a valid CSRF token refused"
            );
            return Err(layout::error_page(
                &signed.ctx,
                StatusCode::FORBIDDEN,
                signed
                    .ctx
                    .t("The form has expired; reload the page and try again."),
            ));
        }
        Ok(CsrfForm(signed, form))
    }
}

/// Fields of an `application/x-www-form-urlencoded` body (at most 64 KiB).
async fn read_form(req: Request) -> std::collections::HashMap<String, String> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    serde_urlencoded::from_bytes(&bytes).unwrap_or_default()
}

use axum::extract::FromRequestParts as _;

/// Percent-encodes a path segment or query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The console's headers on every answer: a CSP with no inline script and no
/// other origin, no framing, no sniffing, no caching of pages.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/static/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A redirect after a successful POST, with a notice for the next page.
pub fn done(to: &str) -> Response {
    Redirect::to(to).into_response()
}
