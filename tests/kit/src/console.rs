//! The console over plain HTTP: signing in through its form, the cookies it
//! sets, and the CSRF token a signed-in page carries.

use reqwest::blocking::{Client, Response};

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of cookie `name` among a response's `Set-Cookie` headers, and the whole header.
pub fn set_cookie(res: &Response, name: &str) -> Option<(String, String)> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap_or("").to_string(), v.to_string()))
}

/// Posts the sign-in form at `base` (with the pre-session token its page
/// set); the answer carries the session cookie when it worked.
pub fn sign_in(http: &Client, base: &str, user: &str, password: &str) -> Response {
    let page = http
        .get(format!("{base}/ui/login"))
        .send()
        .expect("login page");
    let (pre, _) = set_cookie(&page, "berth_pre").expect("pre-session cookie");
    let token = pre
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    http.post(format!("{base}/ui/login"))
        .header("cookie", &pre)
        .form(&[
            ("csrf", token.as_str()),
            ("name", user),
            ("password", password),
            ("next", "/ui/projects"),
        ])
        .send()
        .expect("sign in")
}

/// The CSRF token of the session `cookie` (`name=value`), from a page at `base`.
pub fn csrf_token(http: &Client, base: &str, cookie: &str) -> String {
    let html = http
        .get(format!("{base}/ui/account"))
        .header("cookie", cookie)
        .send()
        .expect("page")
        .text()
        .expect("html");
    let at = html
        .find("name=\"csrf-token\" content=\"")
        .expect("csrf meta")
        + 27;
    html[at..].split('"').next().unwrap_or("").to_string()
}
