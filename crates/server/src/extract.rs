//! Request extractors whose failures are problem documents that say what to
//! fix: JSON bodies (size limit, media type, syntax, field paths) and query
//! strings, and the middleware that keeps query strings as strict as bodies
//! (unknown parameters and secret keys in URLs are refused).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::MatchedPath;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// A JSON body of type `T`, read up to the configured limit.
pub struct ApiJson<T>(pub T);

/// Reads the whole body, answering 413 beyond `limit` bytes.
pub async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence == "application/json" || essence.ends_with("+json") || essence.is_empty()) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be JSON; send the header Content-Type: application/json (got {essence})"
            )));
        }
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .map(|s| s.to_string().contains("length limit"))
                .unwrap_or(false)
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
            }
        })
}

/// Parses JSON, naming the offending field for type errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadJson(
            "the body is empty or only white space; send a JSON object".into(),
        ));
    }
    // Every body is an object; serde would also fill a struct from an array.
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::Validation(belfry_core::ValidationErrors::single(
            "",
            "the body must be a JSON object, not an array",
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { String::new() } else { path };
                ApiError::Validation(belfry_core::ValidationErrors::single(
                    field,
                    inner.to_string(),
                ))
            }
            _ => ApiError::BadJson(format!("the body is not valid JSON: {inner}")),
        }
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state.config.body_limit).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: absent (no bytes) or `null` means
/// `T::default()`. Anything else must be JSON: a body of only white space
/// is not (it is refused as invalid JSON, as any other text would be).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state.config.body_limit).await?;
        if bytes.is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Query parameters of type `T` (declare it `deny_unknown_fields`).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| {
                let message = e.to_string();
                if message.starts_with("unknown field") {
                    ApiError::bad_request(
                        "unknown_parameter",
                        format!("unknown query parameter: {message}"),
                    )
                } else {
                    ApiError::bad_request("invalid_query", format!("bad query string: {message}"))
                }
            })
    }
}

/// The query parameters each route takes, read from the OpenAPI document so
/// that the description and the server cannot disagree: path template →
/// method → parameter names.
#[derive(Debug, Default)]
pub struct QueryRules {
    routes: HashMap<String, HashMap<String, Vec<String>>>,
}

/// Admin keys reach every `/v1/me/...` inbox endpoint under this prefix too
/// (the mirror routes are not repeated in the description).
const MIRROR_PREFIX: &str = "/v1/users/{user_id}/";

impl QueryRules {
    /// Reads `paths.*.<method>.parameters[in=query]` of an OpenAPI document.
    pub fn from_openapi(doc: &serde_json::Value) -> QueryRules {
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ];
        let query_names = |params: Option<&serde_json::Value>| -> Vec<String> {
            params
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect()
        };
        let mut routes = HashMap::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let shared = query_names(item.get("parameters"));
            let mut methods = HashMap::new();
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let mut names = shared.clone();
                    names.extend(query_names(op.get("parameters")));
                    methods.insert(method.to_string(), names);
                }
            }
            routes.insert(path.clone(), methods);
        }
        QueryRules { routes }
    }

    /// The parameters `method` on the route `path` takes; `None` when the
    /// route is not strict (static files, the demo) or the router answers
    /// 405 for this method anyway.
    fn allowed(&self, method: &axum::http::Method, path: &str) -> Option<&[String]> {
        let method = if method == axum::http::Method::HEAD {
            "get".to_string()
        } else {
            method.as_str().to_ascii_lowercase()
        };
        let described = self.routes.get(path).or_else(|| {
            path.strip_prefix(MIRROR_PREFIX)
                .and_then(|rest| self.routes.get(&format!("/v1/me/{rest}")))
        });
        match described {
            Some(methods) => methods.get(&method).map(Vec::as_slice),
            // Undescribed API and operational endpoints take no parameters.
            None if path.starts_with("/v1/")
                || matches!(path, "/healthz" | "/readyz" | "/metrics") =>
            {
                Some(&[])
            }
            None => None,
        }
    }
}

/// The query-string check of every routed request (run by the router's
/// middleware, after routing): a secret key anywhere in a query string is
/// refused (401, on every route), and on API routes any query parameter the
/// route does not take (400 `unknown_parameter`, naming it), like unknown
/// fields of a body. None: the request may go on.
pub fn query_refusal(rules: &QueryRules, req: &Request) -> Option<Response> {
    let query = req.uri().query().filter(|q| !q.is_empty())?;
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query) {
        Ok(p) => p,
        Err(e) => {
            return Some(
                ApiError::bad_request("invalid_query", format!("bad query string: {e}"))
                    .into_response(),
            );
        }
    };
    if pairs
        .iter()
        .any(|(_, v)| v.trim_start().starts_with(crate::auth::KEY_PREFIX))
    {
        return Some(ApiError::Unauthorized(crate::auth::KEY_IN_QUERY.into()).into_response());
    }
    let path = req.extensions().get::<MatchedPath>()?;
    let allowed = rules.allowed(req.method(), path.as_str())?;
    let mut unknown: Vec<&str> = pairs
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !allowed.iter().any(|a| a == name))
        .collect();
    unknown.dedup();
    if unknown.is_empty() {
        return None;
    }
    if unknown.contains(&"token") {
        return Some(
            ApiError::Unauthorized(
                "?token= is accepted only on /v1/me/stream and /v1/me/ws; send credentials as \
                 'Authorization: Bearer <token>'"
                    .into(),
            )
            .into_response(),
        );
    }
    let takes = if allowed.is_empty() {
        "this endpoint takes no query parameters".to_string()
    } else {
        format!("this endpoint takes {}", allowed.join(", "))
    };
    let names = unknown
        .iter()
        .map(|n| format!("'{}'", n.escape_debug()))
        .collect::<Vec<_>>()
        .join(", ");
    Some(
        ApiError::bad_request(
            "unknown_parameter",
            format!("unknown query parameter {names}; {takes}"),
        )
        .into_response(),
    )
}
