//! The one error type of the HTTP API and its mapping to RFC 9457 problem
//! documents (`application/problem+json`) with a stable `code`. Details of
//! server faults go to the log, never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use belfry_core::{FieldError, ValidationErrors};
use belfry_store::{Constraint, StoreError, Unavailable};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all (400 `invalid_json`).
    BadJson(String),
    /// Well-formed, but fields are wrong (422 `invalid_body`).
    Validation(ValidationErrors),
    /// A query parameter or path segment is wrong (400).
    BadRequest {
        code: &'static str,
        detail: String,
    },
    /// Recipients that do not exist (422).
    UnknownRecipients {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// Well-formed, but refused by a rule of the data (422 with its own
    /// code, e.g. `unknown_category`, `critical_category`).
    Unprocessable {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// Well-formed, but over a configured limit (422, e.g. `too_many_recipients`).
    OverLimit {
        code: &'static str,
        detail: String,
    },
    Unauthorized(String),
    /// An access token that is not accepted (401 with `invalid_token`,
    /// `expired` or `revoked`).
    Token {
        code: &'static str,
        detail: String,
    },
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// 409 with its own code (e.g. `already_answered`).
    ConflictWith {
        code: &'static str,
        detail: String,
    },
    PayloadTooLarge(usize),
    UnsupportedMediaType(String),
    /// Temporarily unable (503, with `Retry-After`): the database is busy,
    /// full or unreachable, this node sheds writes, or it is shutting down.
    Unavailable {
        code: &'static str,
        detail: String,
        /// Seconds, for the `Retry-After` header.
        retry_after: u32,
    },
    /// This key made more requests than `BELFRY_RATE_LIMIT` allows (429,
    /// with `Retry-After`).
    RateLimited {
        retry_after: u32,
    },
    /// Any other status with its own code (the console's sign-in:
    /// 401 `invalid_credentials`, 403 `csrf_failed`, 429 `locked_out`),
    /// with `Retry-After` when given.
    Status {
        status: StatusCode,
        code: &'static str,
        detail: String,
        retry_after: Option<u32>,
    },
    /// A fault of the server; the message is logged, not shown.
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable: `invalid_json`, `invalid_body`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `payload_too_large`, …
    pub code: String,
    /// Per-field problems, when the body was invalid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Vec<FieldError>) {
        match self {
            ApiError::BadJson(d) => (StatusCode::BAD_REQUEST, "invalid_json", d.clone(), vec![]),
            ApiError::Validation(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
                e.0.clone(),
            ),
            ApiError::BadRequest { code, detail } => {
                (StatusCode::BAD_REQUEST, code, detail.clone(), vec![])
            }
            ApiError::UnknownRecipients {
                code,
                detail,
                errors,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                detail.clone(),
                errors.clone(),
            ),
            ApiError::Unprocessable {
                code,
                detail,
                errors,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                detail.clone(),
                errors.clone(),
            ),
            ApiError::OverLimit { code, detail } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                detail.clone(),
                vec![],
            ),
            ApiError::Unauthorized(d) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", d.clone(), vec![])
            }
            ApiError::Token { code, detail } => {
                (StatusCode::UNAUTHORIZED, code, detail.clone(), vec![])
            }
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", d.clone(), vec![]),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d.clone(), vec![]),
            ApiError::Conflict(d) => (StatusCode::CONFLICT, "conflict", d.clone(), vec![]),
            ApiError::ConflictWith { code, detail } => {
                (StatusCode::CONFLICT, *code, detail.clone(), vec![])
            }
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body is larger than {limit} bytes; send less (or split a batch)"
                ),
                vec![],
            ),
            ApiError::UnsupportedMediaType(d) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                d.clone(),
                vec![],
            ),
            ApiError::Unavailable { code, detail, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                detail.clone(),
                vec![],
            ),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this key made more requests per second than this server allows; retry after {retry_after} s"
                ),
                vec![],
            ),
            ApiError::Status {
                status,
                code,
                detail,
                ..
            } => (*status, code, detail.clone(), vec![]),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server failed to handle this request; it has been logged".into(),
                vec![],
            ),
        }
    }
}

/// A problem response with the given status, code and detail.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Vec<FieldError>,
) -> Response {
    let body = Problem {
        kind: format!("https://belfry.dev/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail,
        code: code.to_string(),
        errors,
    };
    let mut response = (
        status,
        serde_json::to_string(&body).expect("problem serialises"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"belfry\""),
        );
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(message) = &self {
            tracing::error!(error = %message, "request failed");
        }
        let (status, code, detail, errors) = self.parts();
        let mut response = problem_response(status, code, detail, errors);
        if let ApiError::Unavailable { retry_after, .. }
        | ApiError::RateLimited { retry_after }
        | ApiError::Status {
            retry_after: Some(retry_after),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::Validation(e)
    }
}

fn unknown(
    field: &str,
    ids: &[String],
    what: &str,
    code: &'static str,
    index: Option<usize>,
) -> ApiError {
    let prefix = index
        .map(|i| format!("notifications[{i}]."))
        .unwrap_or_default();
    let field = format!("{prefix}{field}");
    ApiError::UnknownRecipients {
        code,
        detail: format!(
            "{field}: no {what} with the id {}; create it first (PUT /v1/{what}s/{{id}})",
            ids.join(", ")
        ),
        errors: ids
            .iter()
            .map(|id| FieldError {
                field: field.clone(),
                message: format!("unknown {what} '{id}'"),
            })
            .collect(),
    }
}

/// What a client is told when the database cannot take its request now:
/// Belfry's words (never the database's), a code per cause, and when to
/// try again.
pub fn unavailable(kind: Unavailable) -> ApiError {
    let (code, detail, retry_after) = match kind {
        Unavailable::Overloaded => (
            "overloaded",
            "this server has more writes waiting than it can take; retry in a second",
            1,
        ),
        Unavailable::Busy => (
            "database_busy",
            "the database is busy with other work; retry in a second",
            1,
        ),
        Unavailable::Full => (
            "storage_full",
            "the database has no space left to write; retry later (the operator has been told in the log)",
            30,
        ),
        Unavailable::Unreachable => (
            "database_unavailable",
            "the database does not answer; retry in a few seconds",
            5,
        ),
    };
    ApiError::Unavailable {
        code,
        detail: detail.into(),
        retry_after,
    }
}

/// An error and its causes, for the log.
fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn from_store(e: StoreError, index: Option<usize>) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound("no such resource".into()),
        StoreError::Conflict { constraint } => {
            if let Constraint::Database(name) = &constraint {
                tracing::warn!(constraint = %name, "a write conflicted in the database");
            }
            // Belfry's own words; never the database's text.
            ApiError::Conflict(constraint.message())
        }
        StoreError::UnknownUsers(ids) => unknown("to.users", &ids, "user", "unknown_user", index),
        StoreError::UnknownGroups(ids) => {
            unknown("to.groups", &ids, "group", "unknown_group", index)
        }
        StoreError::Invalid(d) => {
            let field = index
                .map(|i| format!("notifications[{i}]"))
                .unwrap_or_default();
            ApiError::Validation(ValidationErrors::single(field, d))
        }
        StoreError::IdempotencyKeyReused { key } => ApiError::OverLimit {
            code: "idempotency_key_reused",
            detail: format!(
                "{}the idempotency key '{key}' was used for a different request within the last \
                 24 hours; a retry must repeat the request exactly, a new notification needs a new key",
                index
                    .map(|i| format!("notifications[{i}]: "))
                    .unwrap_or_default()
            ),
        },
        StoreError::InItem { index, error } => from_store(*error, Some(index)),
        StoreError::Closed => ApiError::Unavailable {
            code: "unavailable",
            detail:
                "the server is shutting down; retry (another node, or this one once it is back)"
                    .into(),
            retry_after: 1,
        },
        StoreError::Unavailable { kind, source } => {
            // Shed writes are counted (belfry_*_writes_shed_total), not
            // logged one by one: under overload that would be a flood.
            if let Some(source) = source.as_ref().filter(|_| kind != Unavailable::Overloaded) {
                tracing::warn!(error = %cause_chain(&**source), %kind, "database unavailable");
            }
            unavailable(kind)
        }
        StoreError::Backend(source) => ApiError::Internal(cause_chain(&*source)),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        from_store(e, None)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Database trouble is 503 with `Retry-After` and a problem document in
    /// Belfry's words: the database's text stays in the log.
    #[tokio::test]
    async fn database_trouble_is_503_with_retry_after_and_no_database_text() {
        let secret = "disk I/O at /var/lib/belfry/belfry.db: SQLITE_FULL";
        for (kind, code, retry) in [
            (Unavailable::Overloaded, "overloaded", "1"),
            (Unavailable::Busy, "database_busy", "1"),
            (Unavailable::Full, "storage_full", "30"),
            (Unavailable::Unreachable, "database_unavailable", "5"),
        ] {
            let error = ApiError::from(StoreError::unavailable(kind, secret));
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], retry);
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], code);
            assert_eq!(body["status"], 503);
            assert!(!body.to_string().contains("SQLITE"), "{body}");
            assert!(!body.to_string().contains("/var/lib"), "{body}");
        }
        // In a batch item, too.
        let error = ApiError::from(StoreError::InItem {
            index: 3,
            error: Box::new(StoreError::unavailable(Unavailable::Busy, secret)),
        });
        assert_eq!(
            error.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let closed = ApiError::from(StoreError::Closed).into_response();
        assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(closed.headers()[header::RETRY_AFTER], "1");
    }
}
