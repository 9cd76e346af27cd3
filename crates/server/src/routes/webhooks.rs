//! Webhooks to producers (C7), admin keys: `PUT|GET|DELETE
//! /v1/webhooks/{id}`, `GET /v1/webhooks`, `POST
//! /v1/webhooks/{id}/rotate-secret` and `GET /v1/webhooks/{id}/attempts`.
//! A webhook names the events it takes (`delivery.sent`,
//! `delivery.failed`, `notification.read`, `action.submitted`) and
//! optionally one source. Its signing secret is
//! made here and shown once: by the PUT that creates it (a PUT that
//! replaces it keeps the secret and does not show it) or by a rotation.
//! A PUT enables a disabled webhook again.
//!
//! The URL is checked for what it is (http or https, a host, no user name
//! or password); where it points is checked when an event is sent (after
//! DNS resolution, per `BELFRY_OUTBOUND_ALLOW`), and a refusal is that
//! attempt's error in the attempts log.

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use belfry_core::{Category, ValidationErrors};
use belfry_store::{
    AttemptStatus, NewWebhook, StoreError, Webhook, WebhookAttempt, WebhookEventType,
};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks))
        .routes(routes!(get_webhook, put_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_attempts))
}

/// The longest URL accepted.
const MAX_URL: usize = 2048;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    /// The http(s) URL events are posted to.
    url: Option<String>,
    /// The events it takes (at least one): `delivery.sent`,
    /// `delivery.failed`, `notification.read`, `action.submitted`.
    #[schema(value_type = Vec<String>)]
    events: Option<Vec<serde_json::Value>>,
    /// Only events of notifications from this source; null: all.
    #[serde(default)]
    source: Option<String>,
}

/// A webhook.
#[derive(Serialize, utoipa::ToSchema)]
struct WebhookView {
    id: String,
    url: String,
    events: Vec<WebhookEventType>,
    source: Option<String>,
    /// False once disabled (410 Gone, or every attempt failed for 5 days);
    /// a PUT enables it again.
    enabled: bool,
    disabled_reason: Option<String>,
    disabled_at: Option<String>,
    /// Consecutive failed attempts (0 after a success).
    failure_streak: i64,
    /// When the current run of failures began.
    failing_since: Option<String>,
    created_at: String,
    updated_at: String,
    /// The signing secret (`whsec_…`): only in the answer to the PUT that
    /// created the webhook and to a rotation; keep it, it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookView {
    fn of(w: Webhook, secret: Option<String>) -> WebhookView {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            source: w.source,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            disabled_at: w.disabled_at.map(|m| m.to_rfc3339()),
            failure_streak: w.failure_streak,
            failing_since: w.failing_since.map(|m| m.to_rfc3339()),
            created_at: w.created_at.to_rfc3339(),
            updated_at: w.updated_at.to_rfc3339(),
            secret,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct WebhookList {
    items: Vec<WebhookView>,
}

/// One attempt to deliver an event.
#[derive(Serialize, utoipa::ToSchema)]
struct AttemptView {
    event_id: String,
    event_type: WebhookEventType,
    /// 1 for the first attempt of the event.
    attempt: i64,
    status: AttemptStatus,
    /// The HTTP status of the answer; null when there was none.
    response_code: Option<i64>,
    /// The start of the answer's body, or the error (timeout, refused
    /// address, connection).
    response: Option<String>,
    duration_ms: i64,
    at: String,
    /// When the event is tried again (status `retrying`).
    next_retry_at: Option<String>,
}

impl From<WebhookAttempt> for AttemptView {
    fn from(a: WebhookAttempt) -> Self {
        AttemptView {
            event_id: a.event_id,
            event_type: a.event_type,
            attempt: a.attempt,
            status: a.status,
            response_code: a.response_code,
            response: a.response,
            duration_ms: a.duration_ms,
            at: a.at.to_rfc3339(),
            next_retry_at: a.next_retry_at.map(|m| m.to_rfc3339()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct AttemptList {
    /// Newest first.
    items: Vec<AttemptView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AttemptParams {
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([1-9][0-9]{0,17})?$")]
    cursor: Option<String>,
}

const MAX_ATTEMPTS_PAGE: usize = 200;
const DEFAULT_ATTEMPTS_PAGE: usize = 50;

fn webhook_id(id: &str) -> ApiResult<String> {
    Category::parse(id)
        .map(|c| c.as_str().to_string())
        .map_err(|e| ApiError::bad_request("invalid_path", format!("the webhook id {e}")))
}

fn missing(id: &str) -> ApiError {
    ApiError::NotFound(format!("there is no webhook {id}"))
}

/// Checks a webhook's request; the secret comes from the caller.
fn validate(id: String, req: WebhookRequest) -> ApiResult<NewWebhook> {
    let mut errors = ValidationErrors::new();
    let url = match req.url.as_deref().map(str::trim) {
        None | Some("") => {
            errors.add("url", "is required: the http(s) URL to post events to");
            None
        }
        Some(u) if u.len() > MAX_URL => {
            errors.add("url", format!("is longer than {MAX_URL} characters"));
            None
        }
        Some(u) => match url::Url::parse(u) {
            Err(e) => {
                errors.add("url", format!("is not a URL ({e})"));
                None
            }
            Ok(url) if !matches!(url.scheme(), "https" | "http") => {
                errors.add(
                    "url",
                    format!("must be an https (or http) URL, not {}:", url.scheme()),
                );
                None
            }
            Ok(url) if url.host().is_none() => {
                errors.add("url", "has no host");
                None
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                errors.add("url", "must not carry a user name or password");
                None
            }
            Ok(_) => Some(u.to_string()),
        },
    };
    let known = || {
        WebhookEventType::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut events = Vec::new();
    match req.events {
        None => errors.add("events", format!("is required: a list of {}", known())),
        Some(list) if list.is_empty() => errors.add(
            "events",
            format!("is empty; name at least one of {}", known()),
        ),
        Some(list) => {
            for (i, value) in list.iter().enumerate() {
                match value.as_str().and_then(WebhookEventType::parse) {
                    Some(e) if !events.contains(&e) => events.push(e),
                    Some(_) => {}
                    None => errors.add(
                        format!("events[{i}]"),
                        format!("{value} is not an event; use one of {}", known()),
                    ),
                }
            }
        }
    }
    events.sort_by_key(|e| e.as_str());
    let source = req.source.and_then(|s| {
        errors.take(
            "source",
            Category::parse(&s).map(|c| c.as_str().to_string()),
        )
    });
    errors.finish(()).map_err(ApiError::Validation)?;
    Ok(NewWebhook {
        id,
        url: url.expect("checked"),
        events,
        source,
        secret: belfry_delivery::signing::new_webhook_secret(),
    })
}

/// List the webhooks.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn list_webhooks(
    State(state): State<AppState>,
    _admin: AdminKey,
) -> ApiResult<Json<WebhookList>> {
    let items = state.store.list_webhooks().await?;
    Ok(Json(WebhookList {
        items: items
            .into_iter()
            .map(|w| WebhookView::of(w, None))
            .collect(),
    }))
}

/// A webhook (its secret is not shown).
#[utoipa::path(
    get, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(webhook = %id))]
async fn get_webhook(
    State(state): State<AppState>,
    _admin: AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    let id = webhook_id(&id)?;
    match state.store.get_webhook(&id).await? {
        Some(w) => Ok(Json(WebhookView::of(w, None))),
        None => Err(missing(&id)),
    }
}

/// Register (or replace) a webhook.
///
/// Created: 201 with the signing secret (`whsec_…`), shown this once.
/// Replaced: 200; the webhook keeps its secret (not shown) and is enabled
/// again if it was disabled. Events are posted signed per the Standard
/// Webhooks specification; see the README, "Webhooks to producers".
#[utoipa::path(
    put, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    request_body = WebhookRequest,
    responses(
        (status = 201, description = "Created (with its secret)", body = WebhookView),
        (status = 200, description = "Replaced", body = WebhookView),
        (status = 422, description = "A field is wrong", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(webhook = %id))]
async fn put_webhook(
    State(state): State<AppState>,
    _admin: AdminKey,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    let hook = validate(id, req)?;
    let secret = hook.secret.expose_secret().to_string();
    let (stored, created) = state.store.put_webhook(hook, state.clock.now()).await?;
    tracing::info!(webhook = %stored.id, created, "webhook stored");
    let (status, secret) = if created {
        (StatusCode::CREATED, Some(secret))
    } else {
        (StatusCode::OK, None)
    };
    Ok((status, Json(WebhookView::of(stored, secret))).into_response())
}

/// Remove a webhook (its waiting events and its attempts log go with it).
#[utoipa::path(
    delete, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(webhook = %id))]
async fn delete_webhook(
    State(state): State<AppState>,
    _admin: AdminKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = webhook_id(&id)?;
    if state.store.delete_webhook(&id).await? {
        tracing::info!(webhook = %id, "webhook removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing(&id))
    }
}

/// Give a webhook a new signing secret (answered this once).
///
/// Requests signed from now on use the new secret.
#[utoipa::path(
    post, path = "/v1/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(webhook = %id))]
async fn rotate_secret(
    State(state): State<AppState>,
    _admin: AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    let id = webhook_id(&id)?;
    let secret = belfry_delivery::signing::new_webhook_secret();
    let shown = secret.expose_secret().to_string();
    match state
        .store
        .rotate_webhook_secret(&id, secret, state.clock.now())
        .await
    {
        Ok(w) => Ok(Json(WebhookView::of(w, Some(shown)))),
        Err(StoreError::NotFound) => Err(missing(&id)),
        Err(e) => Err(e.into()),
    }
}

/// A webhook's attempts, newest first.
///
/// Every attempt to deliver an event: its type and id (the `webhook-id`
/// header), status, the answer's code and the start of its body (or the
/// error), how long it took, the attempt number and when it is retried.
/// Kept 30 days.
#[utoipa::path(
    get, path = "/v1/webhooks/{webhook_id}/attempts", tag = "webhooks",
    params(("webhook_id" = String, Path), AttemptParams),
    responses((status = 200, body = AttemptList), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(webhook = %id))]
async fn list_attempts(
    State(state): State<AppState>,
    _admin: AdminKey,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<AttemptParams>,
) -> ApiResult<Json<AttemptList>> {
    let id = webhook_id(&id)?;
    let mut e = ValidationErrors::new();
    let limit = match params.limit {
        None => DEFAULT_ATTEMPTS_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_ATTEMPTS_PAGE).contains(&n) => n,
            _ => {
                e.add(
                    "limit",
                    format!("must be a number from 1 to {MAX_ATTEMPTS_PAGE}"),
                );
                DEFAULT_ATTEMPTS_PAGE
            }
        },
    };
    let cursor = match params.cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                e.add("cursor", "is not a cursor this endpoint gave");
                None
            }
        },
    };
    if !e.is_empty() {
        return Err(ApiError::bad_request("invalid_query", e.to_string()));
    }
    match state.store.webhook_attempts(&id, cursor, limit).await {
        Ok(page) => Ok(Json(AttemptList {
            items: page.items.into_iter().map(AttemptView::from).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        })),
        Err(StoreError::NotFound) => Err(missing(&id)),
        Err(e) => Err(e.into()),
    }
}
