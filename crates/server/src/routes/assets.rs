//! Files compiled into the binary: the inbox widget (`GET /widget/belfry.js`,
//! always served), its preferences panel (`GET /widget/preferences.js`, which
//! the widget imports only when the panel is opened), desktop notifications
//! (`GET /widget/push.js` and the service worker `GET /widget/sw.js`),
//! answering callback actions and their forms (`GET /widget/actions.js`,
//! imported on the first press of such a button) and the helper that answers any embedded file with its
//! content type, cache policy and a strong `ETag` (`304` on a match).

use crate::AppState;
use aws_lc_rs::digest;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::OnceLock;

/// The `<belfry-inbox>` custom element: one dependency-free ES module.
pub(crate) static WIDGET_JS: Embedded = Embedded::new(
    include_bytes!("../../../../web/widget/belfry.js"),
    "text/javascript; charset=utf-8",
    // The URL carries no version: caches keep it briefly and then revalidate
    // with the ETag, so an upgrade of Belfry reaches browsers within minutes.
    "public, max-age=300",
);

/// The widget's preferences panel: a second module, loaded by the first
/// with a dynamic `import()` relative to its own URL when the gear is used,
/// so the first stays small. Served like the first: both come from the same
/// Belfry, and after an upgrade both are revalidated within minutes.
pub(crate) static PREFERENCES_JS: Embedded = Embedded::new(
    include_bytes!("../../../../web/widget/preferences.js"),
    "text/javascript; charset=utf-8",
    "public, max-age=300",
);

/// Desktop notifications on this device (web push set-up): a module the
/// widget imports only where they are on or may be offered, and the panel
/// imports for its switch.
pub(crate) static PUSH_JS: Embedded = Embedded::new(
    include_bytes!("../../../../web/widget/push.js"),
    "text/javascript; charset=utf-8",
    "public, max-age=300",
);

/// Answering callback actions and their forms: a module the widget
/// imports the first time someone presses a callback button.
pub(crate) static ACTIONS_JS: Embedded = Embedded::new(
    include_bytes!("../../../../web/widget/actions.js"),
    "text/javascript; charset=utf-8",
    "public, max-age=300",
);

/// The service worker that shows pushes: a classic script, so that a host
/// on another origin can serve it from its own with `importScripts` (a
/// service worker must come from the page's origin). Revalidated on every
/// update check (browsers check at most once a day for a worker anyway).
pub(crate) static SW_JS: Embedded = Embedded::new(
    include_bytes!("../../../../web/widget/sw.js"),
    "text/javascript; charset=utf-8",
    "no-cache",
);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/widget/belfry.js", get(widget))
        .route("/widget/preferences.js", get(preferences))
        .route("/widget/push.js", get(push))
        .route("/widget/actions.js", get(actions))
        .route("/widget/sw.js", get(service_worker))
}

async fn actions(headers: HeaderMap) -> Response {
    ACTIONS_JS.respond(&headers)
}

async fn push(headers: HeaderMap) -> Response {
    PUSH_JS.respond(&headers)
}

/// With `Service-Worker-Allowed: /`, a page that Belfry serves may register
/// it for the whole origin, not only for `/widget/`.
async fn service_worker(headers: HeaderMap) -> Response {
    let mut response = SW_JS.respond(&headers);
    response
        .headers_mut()
        .insert("service-worker-allowed", HeaderValue::from_static("/"));
    response
}

async fn widget(headers: HeaderMap) -> Response {
    WIDGET_JS.respond(&headers)
}

async fn preferences(headers: HeaderMap) -> Response {
    PREFERENCES_JS.respond(&headers)
}

/// A file embedded in the binary.
pub(crate) struct Embedded {
    bytes: &'static [u8],
    content_type: &'static str,
    cache_control: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Embedded {
    pub(crate) const fn new(
        bytes: &'static [u8],
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Self {
        Self {
            bytes,
            content_type,
            cache_control,
            etag: OnceLock::new(),
        }
    }

    /// A strong validator: the first 128 bits of the content's SHA-256.
    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let d = digest::digest(&digest::SHA256, self.bytes);
            let hex: String = d.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
        })
    }

    fn matches(&self, headers: &HeaderMap) -> bool {
        let etag = self.etag().as_bytes();
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim())
            .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag)
    }

    /// The file, or `304 Not Modified` when the client holds this version.
    pub(crate) fn respond(&self, headers: &HeaderMap) -> Response {
        let mut response = if self.matches(headers) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                )],
                self.bytes,
            )
                .into_response()
        };
        let h = response.headers_mut();
        h.insert(header::ETAG, self.etag().clone());
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // Host pages on other origins load the widget (also under COEP).
        h.insert(
            "cross-origin-resource-policy",
            HeaderValue::from_static("cross-origin"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching() {
        let file = Embedded::new(b"hello", "text/plain", "no-cache");
        let etag = file.etag().to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        let mut h = HeaderMap::new();
        assert!(!file.matches(&h));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).unwrap(),
        );
        assert!(file.matches(&h));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!file.matches(&h));
    }
}
