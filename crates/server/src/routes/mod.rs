//! The router: every resource module's routes, the operational endpoints, the
//! embedded widget (and the demo in demo mode) and the middleware stack
//! (tracing, metrics, CORS, problem+json for every error).

mod access;
mod actions;
mod admin;
mod admin_ui;
mod assets;
mod categories;
mod chat;
mod console;
pub(crate) mod demo;
mod events;
mod groups;
mod inbox;
mod keys;
mod mailbox;
mod notifications;
mod ops;
mod preferences;
mod push;
mod rules;
mod sources;
mod subscriptions;
mod templates;
mod users;
mod webhooks;

use crate::AppState;
use crate::error::{PROBLEM_JSON, problem_response};
use crate::extract::QueryRules;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(notifications::routes())
        .merge(inbox::routes())
        .merge(actions::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(categories::routes())
        .merge(preferences::routes())
        .merge(subscriptions::routes())
        .merge(push::routes())
        .merge(chat::routes())
        .merge(templates::routes())
        .merge(rules::routes())
        .merge(events::routes())
        .merge(sources::routes())
        .merge(webhooks::routes())
        .merge(mailbox::routes())
        .merge(access::routes())
        .merge(admin::routes())
        .merge(console::routes())
        .merge(keys::routes())
        .merge(crate::realtime::streams::routes())
        .split_for_parts();
    let openapi = crate::openapi::finish(
        serde_json::to_value(&openapi).expect("the OpenAPI document serialises"),
    );
    let openapi_json = std::sync::Arc::new(
        serde_json::to_string_pretty(&openapi).expect("the OpenAPI document serialises"),
    );
    let query_rules = Arc::new(QueryRules::from_openapi(&openapi));

    let cors = cors(&state.config.cors_origins);
    let mut app = Router::new()
        .merge(api)
        .merge(inbox::mirror_routes())
        .merge(actions::mirror_routes())
        .merge(push::mirror_routes())
        .merge(chat::me_routes())
        .merge(ops::routes(openapi_json))
        .merge(assets::routes())
        .merge(admin_ui::routes());
    if state.config.demo {
        app = app.merge(demo::routes());
    }
    with_edge(app.with_state(state), query_rules)
        .layer(cors)
        // The span names the path, never the query string: it may carry a
        // stream's user token (or, refused, a misplaced secret key).
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
}

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(std::time::Duration::from_secs(3600));
    if origins.is_empty() || origins.iter().any(|o| o == "*") {
        // Bearer tokens, not cookies: any origin may call, none gets ambient credentials.
        base.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(list))
    }
}

/// Wraps every route in [`edge`], and each handler in a panic guard.
fn with_edge(app: Router, rules: Arc<QueryRules>) -> Router {
    // Innermost: a panicking handler becomes a 500 that the edge counts and
    // turns into a problem document like any other error.
    app.layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(move |req, next| {
            edge(rules.clone(), req, next)
        }))
}

/// What every routed request passes through, in one layer (a layer made by
/// `from_fn` clones the service below it and boxes its future for each
/// request; three of them were a few per cent of the server's CPU when
/// accepting notifications one per request): the query-string check, error
/// responses as problem documents, and the request's metrics.
async fn edge(rules: Arc<QueryRules>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = match crate::extract::query_refusal(&rules, &req) {
        Some(refusal) => refusal,
        None => {
            // The path, for the text of an error (a cheap copy: the URI's
            // bytes are shared).
            let uri = req.uri().clone();
            let response = next.run(req).await;
            as_problem(&method, uri.path(), response).await
        }
    };
    crate::metrics::record_request(
        &method,
        route.as_ref(),
        response.status(),
        started.elapsed(),
    );
    response
}

/// Turns an error response that is not yet a problem document (unknown
/// route, wrong method, a framework rejection, a panic) into one.
async fn as_problem(method: &Method, path: &str, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            format!("no endpoint {method} {path}; see /v1/openapi.json"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("{path} does not accept {method}"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", text),
        s if s.is_server_error() => {
            tracing::error!(%method, %path, status = s.as_u16(), body = %text, "server error");
            (
                "internal",
                "the server failed to handle this request; it has been logged".into(),
            )
        }
        _ => (
            "bad_request",
            if text.is_empty() {
                "bad request".into()
            } else {
                text
            },
        ),
    };
    let mut out = problem_response(status, code, detail, Vec::new());
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// Stores an administrator's document (a rule, template or source) and
/// gives it back as stored, with 201 when it is new and 200 when it
/// replaced one.
pub(super) async fn store_document(
    state: &AppState,
    kind: belfry_store::DocKind,
    id: &str,
    doc: String,
) -> crate::error::ApiResult<(StatusCode, belfry_store::Document)> {
    let now = state.clock.now();
    let created = state.store.put_document(kind, id, doc.clone(), now).await?;
    let stored = state
        .store
        .get_document(kind, id)
        .await?
        .unwrap_or(belfry_store::Document {
            id: id.to_string(),
            doc,
            created_at: now,
            updated_at: now,
        });
    tracing::info!(kind = kind.as_str(), id, created, "document stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn call(app: &Router, uri: &str) -> (StatusCode, String, serde_json::Value) {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            kind,
            serde_json::from_slice(&body).unwrap_or_default(),
        )
    }

    /// A handler that panics answers 500 as a problem document (the panic
    /// guard sits inside the edge); an unknown route and an unknown query
    /// parameter are problem documents too, and ordinary answers pass.
    #[tokio::test]
    async fn the_edge_makes_every_error_a_problem_document() {
        let rules = QueryRules::from_openapi(&serde_json::json!({
            "paths": {"/fine": {"get": {"parameters": [{"in": "query", "name": "limit"}]}}}
        }));
        let app = with_edge(
            Router::new()
                .route("/fine", get(|| async { "fine" }))
                .route(
                    "/boom",
                    get(|| async {
                        if true {
                            panic!("a handler's bug");
                        }
                        "never"
                    }),
                ),
            Arc::new(rules),
        );

        let (status, kind, body) = call(&app, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(kind.starts_with(PROBLEM_JSON), "{kind}");
        assert_eq!(body["code"], "internal");

        let (status, kind, body) = call(&app, "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(kind.starts_with(PROBLEM_JSON), "{kind}");
        assert_eq!(body["code"], "not_found");

        let (status, _, body) = call(&app, "/fine?limit=3&color=red").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "unknown_parameter");
        assert!(
            body["detail"].as_str().unwrap().contains("'color'"),
            "{body}"
        );

        let (status, kind, _) = call(&app, "/fine?limit=3").await;
        assert_eq!(status, StatusCode::OK);
        assert!(kind.starts_with("text/plain"), "{kind}");
    }
}
