//! Sending: `POST /v1/notifications`, the batch endpoint, and a producer's
//! view and cancellation of what it sent.

use crate::AppState;
use crate::auth::SendKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, parse_json, read_body};
use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use belfry_core::inbox::splice_objects;
use belfry_core::notification::{SendRequest, limits, validate_idempotency_key};
use belfry_core::{Millis, NewNotification, ValidationErrors};
use belfry_store::{ApiKeyInfo, DeliveryCursor, DeliveryQuery, Scope, SendContext, SendReceipt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(send_batch))
        .routes(routes!(get_notification, delete_notification))
        .routes(routes!(deliveries))
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub(super) fn idempotency_header(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get(IDEMPOTENCY_HEADER) {
        None => Ok(None),
        Some(v) => {
            let v = v.to_str().map_err(|_| {
                ApiError::bad_request("invalid_header", "Idempotency-Key must be printable ASCII")
            })?;
            validate_idempotency_key(v).map(Some).map_err(|e| {
                ApiError::bad_request("invalid_header", format!("Idempotency-Key {e}"))
            })
        }
    }
}

/// Keeps one request from writing an unbounded number of inbox rows and
/// deliveries: users and emails named directly count (summed over a batch);
/// groups, `all` and entity subscribers are stored once and do not.
pub(super) fn check_recipients(
    state: &AppState,
    notifications: &[NewNotification],
) -> ApiResult<()> {
    let named: usize = notifications
        .iter()
        .map(|n| n.audience.users.len() + n.audience.emails.len())
        .sum();
    let max = state.config.max_recipients;
    if named > max {
        return Err(ApiError::OverLimit {
            code: "too_many_recipients",
            detail: format!(
                "this request names {named} recipients (users and emails, summed over a batch); \
                 at most {max} are allowed per request (setting max_recipients). Split it into \
                 several requests, or send to a group or to all (stored once)"
            ),
        });
    }
    Ok(())
}

/// Every category a request names must exist (or is created, with
/// `auto_categories`); checked against the cached categories, so a send
/// with a known category reads nothing from the database.
pub(super) async fn check_categories(
    state: &AppState,
    notifications: &mut [NewNotification],
    batch: bool,
    now: Millis,
) -> ApiResult<()> {
    let named: Vec<(String, belfry_core::Category)> = notifications
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let c = n.content.category.clone()?;
            let field = if batch {
                format!("notifications[{i}].category")
            } else {
                "category".to_string()
            };
            Some((field, c))
        })
        .collect();
    state
        .categories
        .check(&named, state.config.auto_categories, now)
        .await?;
    // A category whose defaults email (or push) makes the email (web push)
    // jobs; the recipients' preferences decide when each job runs.
    let categories = state.categories.current().await?;
    for n in notifications.iter_mut() {
        let category = n.content.category.as_ref().and_then(|c| categories.get(c));
        n.category_email =
            category.is_some_and(|c| c.defaults.email != belfry_core::EmailMode::Off);
        // Web push jobs are made only for users with a push subscription.
        n.category_web_push = category.is_some_and(|c| c.defaults.web_push);
        // Chat jobs are made only for users (and groups) with a chat target.
        n.category_chat = category.is_some_and(|c| c.defaults.chat);
        // Mobile push jobs are made only for users with a mobile device.
        n.category_mobile_push = category.is_some_and(|c| c.defaults.mobile_push);
    }
    Ok(())
}

/// A key bound to a source (S9) sends as that source: its notifications
/// carry it, and naming another is 403.
pub(super) fn bind_source(
    key: &ApiKeyInfo,
    notifications: &mut [NewNotification],
) -> ApiResult<()> {
    let Some(bound) = &key.source else {
        return Ok(());
    };
    let source = belfry_core::Category::parse(bound)
        .map_err(|e| ApiError::Internal(format!("key {} has source '{bound}': {e}", key.id)))?;
    for n in notifications.iter_mut() {
        match &n.content.source {
            Some(named) if *named != source => {
                return Err(ApiError::Forbidden(format!(
                    "this key belongs to source '{bound}' and may not send as '{named}'; \
                     leave source out or use that source's own key"
                )));
            }
            _ => n.content.source = Some(source.clone()),
        }
    }
    Ok(())
}

fn accepted(receipt: &SendReceipt) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(receipt)).into_response();
    if receipt.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    } else {
        metrics::counter!("belfry_notifications_accepted_total").increment(1);
    }
    response
}

/// Send one notification.
///
/// Accepted notifications are committed before the 202 is sent. With an
/// `Idempotency-Key` header (or `idempotency_key` field) a repeat within 24
/// hours answers the first receipt (with `Idempotent-Replayed: true`) and
/// creates nothing.
#[utoipa::path(
    post, path = "/v1/notifications", tag = "notifications",
    request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 202, description = "Accepted and stored", body = SendReceipt),
        (status = 400, description = "Not JSON", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 413, body = Problem),
        (status = 422, description = "Invalid fields, unknown users, groups or categories (`unknown_category`), too many recipients", body = Problem),
    ),
    security(("secret_key" = []))
)]
async fn send(
    State(state): State<AppState>,
    SendKey(key): SendKey,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SendRequest>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let header_key = idempotency_header(&headers)?;
    let mut n = request.validate(now)?;
    if let Some(k) = header_key {
        if n.idempotency_key.as_ref().is_some_and(|b| *b != k) {
            return Err(ValidationErrors::single(
                "idempotency_key",
                "differs from the Idempotency-Key header; give one of them",
            )
            .into());
        }
        n.idempotency_key = Some(k);
    }
    bind_source(&key, std::slice::from_mut(&mut n))?;
    check_recipients(&state, std::slice::from_ref(&n))?;
    check_categories(&state, std::slice::from_mut(&mut n), false, now).await?;
    let receipts = state
        .store
        .send(
            SendContext {
                key_id: key.id,
                now,
            },
            vec![n],
        )
        .await?;
    let receipt = receipts
        .first()
        .ok_or_else(|| ApiError::Internal("the store returned no receipt".into()))?;
    Ok(accepted(receipt))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// 1 to 1000 notifications, each as for `POST /v1/notifications`.
    #[schema(min_items = 1, max_items = 1000)]
    notifications: Vec<SendRequest>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct BatchResponse {
    /// One receipt per notification, in the order sent.
    results: Vec<SendReceipt>,
}

/// The batch body may be larger than a single notification's.
struct BatchBody(BatchRequest);

impl FromRequest<AppState> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.config.body_limit.saturating_mul(16)).await?;
        parse_json(&bytes).map(BatchBody)
    }
}

/// Send up to 1000 notifications in one request.
///
/// All or nothing: if any notification is invalid (or names an unknown user
/// or group), nothing is stored and the error names it by index
/// (`notifications[3].title`). Idempotency keys are given per notification
/// (`idempotency_key`). The body may be 16 times the single-request limit.
#[utoipa::path(
    post, path = "/v1/notifications/batch", tag = "notifications",
    request_body = BatchRequest,
    responses(
        (status = 202, body = BatchResponse),
        (status = 413, body = Problem),
        (status = 422, body = Problem),
    ),
    security(("secret_key" = []))
)]
async fn send_batch(
    State(state): State<AppState>,
    SendKey(key): SendKey,
    headers: HeaderMap,
    BatchBody(batch): BatchBody,
) -> ApiResult<Response> {
    if headers.contains_key(IDEMPOTENCY_HEADER) {
        return Err(ApiError::bad_request(
            "invalid_header",
            "the batch endpoint takes an idempotency_key per notification, not an Idempotency-Key header",
        ));
    }
    let count = batch.notifications.len();
    if count == 0 || count > limits::BATCH {
        return Err(ValidationErrors::single(
            "notifications",
            format!("has {count} entries; send 1 to {}", limits::BATCH),
        )
        .into());
    }
    let now = state.clock.now();
    let mut errors = ValidationErrors::new();
    let mut valid = Vec::with_capacity(count);
    for (i, request) in batch.notifications.into_iter().enumerate() {
        let prefix = format!("notifications[{i}]");
        match request.validate(now) {
            Ok(n) => valid.push(n),
            Err(e) => errors.0.extend(e.prefixed(&prefix).0),
        }
    }
    errors.finish(())?;
    bind_source(&key, &mut valid)?;
    check_recipients(&state, &valid)?;
    check_categories(&state, &mut valid, true, now).await?;
    let results = state
        .store
        .send(
            SendContext {
                key_id: key.id,
                now,
            },
            valid,
        )
        .await?;
    let fresh = results.iter().filter(|r| !r.replayed).count();
    metrics::counter!("belfry_notifications_accepted_total").increment(fresh as u64);
    Ok((StatusCode::ACCEPTED, Json(BatchResponse { results })).into_response())
}

/// A notification as its producer sees it (documentation of the response).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct NotificationView {
    id: String,
    seq: Option<i64>,
    /// `published` or `cancelled`.
    status: String,
    created_at: String,
    published_at: Option<String>,
    send_at: Option<String>,
    /// Id of the key that sent it.
    sender: String,
    /// The targets as sent.
    #[schema(value_type = Object)]
    to: (),
    channels: Option<Vec<String>>,
    summary: Summary,
    /// Followed by every content field (title, body, url, category, actor, …).
    title: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Summary {
    /// Direct recipients when sent (null with a broadcast part).
    recipients: Option<i64>,
    /// Inbox entries that show it now, and how many of them are read.
    inbox_entries: i64,
    inbox_read: i64,
    /// Users who read it through a broadcast.
    broadcast_read: i64,
    /// External contacts (email addresses without a user).
    contacts: i64,
}

#[derive(Serialize)]
struct ViewMeta<'a> {
    id: &'a str,
    seq: Option<i64>,
    status: &'a str,
    created_at: String,
    published_at: Option<String>,
    send_at: Option<String>,
    sender: &'a str,
    to: &'a RawValue,
    channels: Option<&'a RawValue>,
    summary: Summary,
}

fn raw(json: &str) -> ApiResult<Box<RawValue>> {
    RawValue::from_string(json.to_string())
        .map_err(|e| ApiError::Internal(format!("stored JSON is invalid: {e}")))
}

async fn visible_record(
    state: &AppState,
    key: &belfry_store::ApiKeyInfo,
    id: &str,
) -> ApiResult<belfry_store::NotificationRecord> {
    // A send key sees only what it sent; others' ids are reported as unknown.
    state
        .store
        .get_notification(id)
        .await?
        .filter(|r| key.allows(Scope::Admin) || r.sender == key.id)
        .ok_or_else(|| ApiError::NotFound(format!("no notification {id}")))
}

/// A notification: content, audience and delivery summary.
#[utoipa::path(
    get, path = "/v1/notifications/{id}", tag = "notifications",
    params(("id" = String, Path)),
    responses((status = 200, body = NotificationView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_notification(
    State(state): State<AppState>,
    SendKey(key): SendKey,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let r = visible_record(&state, &key, &id).await?;
    let to = raw(&r.audience_json)?;
    let channels = r.channels_json.as_deref().map(raw).transpose()?;
    let meta = ViewMeta {
        id: &r.id,
        seq: r.seq,
        status: r.status.as_str(),
        created_at: r.created_at.to_rfc3339(),
        published_at: r.published_at.map(Millis::to_rfc3339),
        send_at: r.send_at.map(Millis::to_rfc3339),
        sender: &r.sender,
        to: &to,
        channels: channels.as_deref(),
        summary: Summary {
            recipients: r.recipients,
            inbox_entries: r.inbox_entries,
            inbox_read: r.inbox_read,
            broadcast_read: r.broadcast_read,
            contacts: r.contacts,
        },
    };
    let meta = serde_json::to_string(&meta).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        splice_objects(&meta, &r.content_json),
    )
        .into_response())
}

/// Cancel a notification and remove it from every inbox.
///
/// Idempotent: deleting an already cancelled notification answers 204 again.
#[utoipa::path(
    delete, path = "/v1/notifications/{id}", tag = "notifications",
    params(("id" = String, Path)),
    responses((status = 204, description = "Cancelled"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn delete_notification(
    State(state): State<AppState>,
    SendKey(key): SendKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    visible_record(&state, &key, &id).await?;
    state
        .store
        .delete_notification(&id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryLog {
    /// In-app deliveries (one per inbox entry, one per broadcast target),
    /// then every recorded event in order: queued, scheduled, each attempt
    /// (sent, failed with the error), skipped with the reason, cancelled.
    items: Vec<belfry_store::DeliveryEvent>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogParams {
    /// 1 to 1000, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([ibl](0|[1-9][0-9]{0,17}))?$")]
    cursor: Option<String>,
}

impl LogParams {
    fn parse(self) -> Result<DeliveryQuery, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let max = DeliveryQuery::MAX_LIMIT;
        let limit = match self.limit {
            None => DeliveryQuery::DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    e.add("limit", format!("must be a number from 1 to {max}"));
                    DeliveryQuery::DEFAULT_LIMIT
                }
            },
        };
        let cursor = self
            .cursor
            .filter(|c| !c.is_empty())
            .and_then(|c| e.take("cursor", DeliveryCursor::decode(&c)));
        e.finish(DeliveryQuery { cursor, limit })
    }
}

/// The delivery log of a notification: per recipient and channel, every attempt.
///
/// Keyset pagination: pages follow each other in the log's order, and lines
/// logged while a client pages through (a retry's outcome) appear on a
/// later page, never shifting one already read.
#[utoipa::path(
    get, path = "/v1/notifications/{id}/deliveries", tag = "notifications",
    params(("id" = String, Path), LogParams),
    responses((status = 200, body = DeliveryLog), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn deliveries(
    State(state): State<AppState>,
    SendKey(key): SendKey,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<Json<DeliveryLog>> {
    let query = params
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    visible_record(&state, &key, &id).await?;
    let page = state.store.deliveries(&id, query).await?;
    Ok(Json(DeliveryLog {
        items: page.items,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}
