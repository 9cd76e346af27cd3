//! Web push (C5) for browsers: the VAPID public key a page subscribes
//! with (`GET /v1/push/vapid-public-key`, no credentials: it is public),
//! and a user's push subscriptions (`/v1/me/push-subscriptions`, user
//! token; `/v1/users/{user_id}/push-subscriptions` for admin keys). A
//! subscription is what the browser's `PushSubscription.toJSON()` gives;
//! every part is checked here, so that the delivery never meets a
//! subscription it cannot encrypt for.

use crate::AppState;
use crate::auth::InboxOwner;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use belfry_core::{UserId, ValidationErrors};
use belfry_store::{NewPushSubscription, PushSubscription, StoreError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vapid_public_key))
        .routes(routes!(list, create))
        .routes(routes!(remove))
}

/// The same subscription endpoints for admin keys, under `/v1/users/{user_id}`.
pub(super) fn mirror_routes() -> Router<AppState> {
    Router::new().nest(
        "/v1/users/{user_id}",
        Router::new()
            .route("/push-subscriptions", get(list).post(create))
            .route("/push-subscriptions/{id}", delete(remove)),
    )
}

/// The longest endpoint URL accepted (browsers' are a few hundred bytes).
const MAX_ENDPOINT: usize = 2048;

#[derive(Serialize, utoipa::ToSchema)]
struct VapidPublicKey {
    /// The uncompressed P-256 public key (65 bytes), base64url without
    /// padding: `pushManager.subscribe({applicationServerKey})` takes it.
    key: String,
}

/// The VAPID public key browsers subscribe with (public, no credentials).
#[utoipa::path(
    get, path = "/v1/push/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidPublicKey))
)]
async fn vapid_public_key(State(state): State<AppState>) -> Json<VapidPublicKey> {
    Json(VapidPublicKey {
        key: state.vapid.public_key().to_string(),
    })
}

/// A browser's `PushSubscription.toJSON()`, or (not available yet) a
/// mobile device token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionRequest {
    /// The push service's URL for this browser (https; http only for
    /// endpoints that `BELFRY_OUTBOUND_ALLOW` permits, e.g. in tests).
    endpoint: Option<String>,
    /// As the browser gives it (null or a time in milliseconds); ignored:
    /// the push service says when a subscription is gone.
    #[serde(rename = "expirationTime")]
    #[schema(value_type = Option<f64>)]
    expiration_time: Option<serde_json::Value>,
    #[schema(inline)]
    keys: Option<KeysRequest>,
    /// `fcm` or `apns`: mobile push, not available on this server yet.
    platform: Option<String>,
    token: Option<String>,
    app_id: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct KeysRequest {
    /// The browser's P-256 public key, uncompressed (65 bytes), base64url.
    p256dh: Option<String>,
    /// The browser's authentication secret (16 bytes), base64url.
    auth: Option<String>,
}

/// A push subscription as listed (its keys are not shown).
#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionView {
    id: String,
    endpoint: String,
    created_at: String,
    /// When it was last posted.
    updated_at: String,
}

impl From<PushSubscription> for SubscriptionView {
    fn from(s: PushSubscription) -> Self {
        SubscriptionView {
            id: s.id,
            endpoint: s.endpoint,
            created_at: s.created_at.to_rfc3339(),
            updated_at: s.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionList {
    items: Vec<SubscriptionView>,
}

fn base64url(value: &str) -> Option<Vec<u8>> {
    B64.decode(value.trim_end_matches('=')).ok()
}

/// Checks a subscription request field by field (every problem at once).
fn validate(
    req: SubscriptionRequest,
    outbound: &belfry_delivery::OutboundPolicy,
) -> ApiResult<NewPushSubscription> {
    if let Some(platform) = &req.platform {
        if platform != "fcm" && platform != "apns" {
            return Err(ApiError::Validation(ValidationErrors::single(
                "platform",
                format!(
                    "'{}' is not a mobile platform; use fcm or apns, or send a browser's \
                     PushSubscription ({{\"endpoint\", \"keys\"}}) without platform",
                    platform.escape_debug()
                ),
            )));
        }
        return Err(ApiError::Unprocessable {
            code: "mobile_push_unavailable",
            detail: format!(
                "mobile push ({platform}) is not available on this server yet; browsers \
                 subscribe to web push with their PushSubscription ({{\"endpoint\", \"keys\"}})"
            ),
            errors: vec![],
        });
    }
    let mut errors = ValidationErrors::new();
    for (field, given) in [("token", &req.token), ("app_id", &req.app_id)] {
        if given.is_some() {
            errors.add(
                field,
                "belongs to mobile subscriptions ({\"platform\", \"token\", \"app_id\"}); \
                 a browser subscription has endpoint and keys only",
            );
        }
    }
    if let Some(v) = &req.expiration_time
        && !(v.is_null() || v.is_number())
    {
        errors.add(
            "expirationTime",
            "must be null or a number, as PushSubscription.toJSON() gives it",
        );
    }
    let endpoint = match req.endpoint.as_deref().map(str::trim) {
        None | Some("") => {
            errors.add(
                "endpoint",
                "is required: the push service URL of the browser's PushSubscription \
                 (send subscription.toJSON())",
            );
            None
        }
        Some(e) if e.len() > MAX_ENDPOINT => {
            errors.add(
                "endpoint",
                format!(
                    "is longer than {MAX_ENDPOINT} characters; send the browser's endpoint as it is"
                ),
            );
            None
        }
        Some(e) => match url::Url::parse(e) {
            Err(err) => {
                errors.add(
                    "endpoint",
                    format!("is not a URL ({err}); send the browser's endpoint as it is"),
                );
                None
            }
            Ok(url) if !matches!(url.scheme(), "https" | "http") => {
                errors.add(
                    "endpoint",
                    "must be an https URL (a push service's endpoint)",
                );
                None
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                errors.add("endpoint", "must not carry a user name or password");
                None
            }
            Ok(url) => match outbound.check_url(&url) {
                Err(refused) => {
                    errors.add("endpoint", refused.0);
                    None
                }
                Ok(()) => Some(e.to_string()),
            },
        },
    };
    let keys = req.keys;
    if keys.is_none() {
        errors.add(
            "keys",
            "is required: {\"p256dh\", \"auth\"} of the browser's PushSubscription (send subscription.toJSON())",
        );
    }
    let (p256dh, auth) = keys.map(|k| (k.p256dh, k.auth)).unwrap_or_default();
    let p256dh = match p256dh {
        None if errors.0.iter().any(|e| e.field == "keys") => None,
        None => {
            errors.add(
                "keys.p256dh",
                "is required: the browser's public key, base64url",
            );
            None
        }
        Some(k) => match base64url(&k) {
            None => {
                errors.add(
                    "keys.p256dh",
                    "is not base64url; send the value the browser gave",
                );
                None
            }
            Some(bytes) if bytes.len() != 65 || bytes[0] != 4 => {
                errors.add(
                    "keys.p256dh",
                    format!(
                        "must be an uncompressed P-256 public key (65 bytes starting with 0x04), not {} bytes",
                        bytes.len()
                    ),
                );
                None
            }
            Some(bytes) => {
                if belfry_delivery::webpush::is_p256_point(&bytes) {
                    Some(k.trim_end_matches('=').to_string())
                } else {
                    errors.add("keys.p256dh", "is not a point on the P-256 curve");
                    None
                }
            }
        },
    };
    let auth = match auth {
        None if errors.0.iter().any(|e| e.field == "keys") => None,
        None => {
            errors.add(
                "keys.auth",
                "is required: the browser's authentication secret, base64url",
            );
            None
        }
        Some(a) => match base64url(&a) {
            None => {
                errors.add(
                    "keys.auth",
                    "is not base64url; send the value the browser gave",
                );
                None
            }
            Some(bytes) if bytes.len() != 16 => {
                errors.add(
                    "keys.auth",
                    format!(
                        "must be 16 bytes (22 base64url characters), not {} bytes",
                        bytes.len()
                    ),
                );
                None
            }
            Some(_) => Some(a.trim_end_matches('=').to_string()),
        },
    };
    match (endpoint, p256dh, auth) {
        (Some(endpoint), Some(p256dh), Some(auth)) if errors.is_empty() => {
            Ok(NewPushSubscription {
                endpoint,
                p256dh,
                auth,
            })
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

fn owner_missing(user: &UserId) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("there is no user {user}")),
        other => other.into(),
    }
}

/// Subscribe a browser to web push.
///
/// The body is the browser's `PushSubscription.toJSON()`. Posting an
/// endpoint again updates it (200) instead of adding another; a user keeps
/// at most `push_subscriptions_per_user` (default 20), the least recently
/// posted go first. `{"platform": "fcm"|"apns", ...}` (mobile push) is
/// answered 422 `mobile_push_unavailable` for now.
#[utoipa::path(
    post, path = "/v1/me/push-subscriptions", tag = "push",
    request_body = SubscriptionRequest,
    responses(
        (status = 201, description = "Subscribed", body = SubscriptionView),
        (status = 200, description = "The endpoint was subscribed already; updated", body = SubscriptionView),
        (status = 422, description = "Not a valid subscription (the errors name the fields)", body = Problem)
    ),
    security(("user_token" = []))
)]
#[tracing::instrument(skip_all, fields(user = %user))]
async fn create(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> ApiResult<Response> {
    let new = validate(req, &state.config.outbound)?;
    let (stored, created) = state
        .store
        .put_push_subscription(
            &user,
            new,
            state.config.push_subscriptions_per_user,
            state.clock.now(),
        )
        .await
        .map_err(owner_missing(&user))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SubscriptionView::from(stored))).into_response())
}

/// The user's push subscriptions, most recently posted first.
#[utoipa::path(
    get, path = "/v1/me/push-subscriptions", tag = "push",
    responses((status = 200, body = SubscriptionList)),
    security(("user_token" = []))
)]
async fn list(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<Json<SubscriptionList>> {
    let items = state
        .store
        .push_subscriptions(&user)
        .await
        .map_err(owner_missing(&user))?;
    Ok(Json(SubscriptionList {
        items: items.into_iter().map(SubscriptionView::from).collect(),
    }))
}

#[derive(Deserialize)]
struct IdPath {
    id: String,
}

/// Remove a push subscription (the browser unsubscribed).
#[utoipa::path(
    delete, path = "/v1/me/push-subscriptions/{id}", tag = "push",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)),
    security(("user_token" = []))
)]
async fn remove(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    Path(p): Path<IdPath>,
) -> ApiResult<StatusCode> {
    if state.store.delete_push_subscription(&user, &p.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "user {user} has no push subscription {}",
            p.id.escape_debug()
        )))
    }
}
