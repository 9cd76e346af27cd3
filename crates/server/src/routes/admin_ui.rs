//! The administration console's page at `/admin`: plain ES modules and a style
//! sheet compiled into the binary (no build step). The page signs in with an
//! admin account and then calls the public `/v1` API with its session cookie
//! and CSRF header, like any other client; this module only serves files.
//!
//! Every response carries a strict Content-Security-Policy (scripts from
//! this origin only: no inline script, no `eval`; nothing framed from
//! elsewhere, and the console itself never framed) and
//! `X-Frame-Options: DENY`. Email HTML (previews, the development mailbox)
//! is shown only in `<iframe sandbox srcdoc>` frames without
//! `allow-scripts`, which inherit this policy: no script runs there and
//! nothing is loaded from other origins. Styles allow `'unsafe-inline'`
//! for that reason alone: emails are styled inline, and a srcdoc frame
//! cannot have a policy of its own. The console's own code never writes
//! markup or style attributes from data (text only), so this opens no
//! door in the console itself.

use super::assets::Embedded;
use crate::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; frame-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

macro_rules! file {
    ($path:literal, $type:literal) => {
        Embedded::new(
            include_bytes!(concat!("../../../../web/admin/", $path)),
            $type,
            // Revalidated on every load (the ETag makes that a 304), so an
            // upgrade of Belfry reaches the console at once.
            "no-cache",
        )
    };
}

static INDEX: Embedded = file!("index.html", "text/html; charset=utf-8");
static CSS: Embedded = file!("admin.css", "text/css; charset=utf-8");
static APP: Embedded = file!("app.js", "text/javascript; charset=utf-8");
static I18N: Embedded = file!("i18n.js", "text/javascript; charset=utf-8");
static DE: Embedded = file!("de.js", "text/javascript; charset=utf-8");
static UI: Embedded = file!("ui.js", "text/javascript; charset=utf-8");
static FAVICON: Embedded = file!("favicon.svg", "image/svg+xml");
static PAGES: [(&str, Embedded); 9] = [
    (
        "compose.js",
        file!("pages/compose.js", "text/javascript; charset=utf-8"),
    ),
    (
        "deliveries.js",
        file!("pages/deliveries.js", "text/javascript; charset=utf-8"),
    ),
    (
        "users.js",
        file!("pages/users.js", "text/javascript; charset=utf-8"),
    ),
    (
        "templates.js",
        file!("pages/templates.js", "text/javascript; charset=utf-8"),
    ),
    (
        "keys.js",
        file!("pages/keys.js", "text/javascript; charset=utf-8"),
    ),
    (
        "webhooks.js",
        file!("pages/webhooks.js", "text/javascript; charset=utf-8"),
    ),
    (
        "settings.js",
        file!("pages/settings.js", "text/javascript; charset=utf-8"),
    ),
    (
        "admins.js",
        file!("pages/admins.js", "text/javascript; charset=utf-8"),
    ),
    (
        "mailbox.js",
        file!("pages/mailbox.js", "text/javascript; charset=utf-8"),
    ),
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/", get(index))
        .route("/admin/{file}", get(asset))
        .route("/admin/pages/{file}", get(page))
}

/// Adds the console's security headers to a response.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The console's files are for this origin only.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn index(headers: HeaderMap) -> Response {
    secured(INDEX.respond(&headers))
}

fn not_found(path: &str) -> Response {
    crate::error::problem_response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("the console has no file {path}"),
        Vec::new(),
    )
    .into_response()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let embedded = match file.as_str() {
        "index.html" => &INDEX,
        "admin.css" => &CSS,
        "app.js" => &APP,
        "i18n.js" => &I18N,
        "ui.js" => &UI,
        "de.js" => &DE,
        "favicon.svg" => &FAVICON,
        _ => return not_found(&format!("/admin/{file}")),
    };
    secured(embedded.respond(&headers))
}

async fn page(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match PAGES.iter().find(|(name, _)| *name == file) {
        Some((_, embedded)) => secured(embedded.respond(&headers)),
        None => not_found(&format!("/admin/pages/{file}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_module_is_served() {
        // Each page module that app.js imports on demand has an entry here.
        let app = std::str::from_utf8(include_bytes!("../../../../web/admin/app.js")).unwrap();
        for (name, _) in &PAGES {
            assert!(
                app.contains(&format!("./pages/{name}")),
                "app.js never loads {name}"
            );
        }
    }
}
