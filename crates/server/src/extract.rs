//! Request extractors whose failures are problem documents that say what to
//! fix: JSON bodies (size limit, media type, syntax, field paths) and query
//! strings.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

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
            "the body is empty; send a JSON object".into(),
        ));
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

/// An optional JSON body: absent or empty means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state.config.body_limit).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Query parameters of type `T`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("bad query string: {e}")))
    }
}
