//! Web push (C5) for browsers and mobile push (C6) for apps: the VAPID
//! public key a page subscribes with (`GET /v1/push/vapid-public-key`, no
//! credentials: it is public), and a user's push subscriptions
//! (`/v1/me/push-subscriptions`, user token;
//! `/v1/users/{user_id}/push-subscriptions` for admin keys). A browser
//! subscription is what the browser's `PushSubscription.toJSON()` gives;
//! a mobile one is `{"platform": "fcm"|"apns", "token", "app_id"}`, the
//! device token the platform gave the app. Every part is checked here, so
//! that the delivery never meets a subscription it cannot use; a mobile
//! platform this server is not configured for is refused (422
//! `mobile_push_unavailable`) rather than stored and never delivered.

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
use belfry_delivery::MobileSettings;
use belfry_store::{
    MobileDevice, MobilePlatform, NewMobileDevice, NewPushSubscription, PushSubscription,
    StoreError,
};
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

/// A browser's `PushSubscription.toJSON()`, or a mobile device:
/// `{"platform", "token", "app_id"}`.
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
    /// `fcm` or `apns`: a mobile device (then `token` and `app_id`, and no
    /// `endpoint` or `keys`).
    platform: Option<String>,
    /// The device token: for APNs the hex device token (64 or more hex
    /// digits), for FCM the registration token the Firebase SDK gives.
    token: Option<String>,
    /// The app: for APNs its bundle id, used as the `apns-topic`; for FCM
    /// its package name (the service account's project decides which
    /// apps can be reached; the package name is kept to tell devices
    /// apart). Reverse-DNS form, e.g. `com.example.desk`.
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

/// What kind of push subscription an item is.
#[derive(Serialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SubscriptionKind {
    /// A browser's web push subscription (`endpoint`).
    Web,
    /// A mobile device (`platform`, `token`, `app_id`).
    Mobile,
}

/// A push subscription as listed (a browser's keys are not shown).
#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionView {
    id: String,
    kind: SubscriptionKind,
    /// A browser's push service URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    /// A mobile device's platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<MobilePlatform>,
    /// A mobile device's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// A mobile device's app (APNs topic / FCM package name).
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
    created_at: String,
    /// When it was last posted.
    updated_at: String,
}

impl From<PushSubscription> for SubscriptionView {
    fn from(s: PushSubscription) -> Self {
        SubscriptionView {
            id: s.id,
            kind: SubscriptionKind::Web,
            endpoint: Some(s.endpoint),
            platform: None,
            token: None,
            app_id: None,
            created_at: s.created_at.to_rfc3339(),
            updated_at: s.updated_at.to_rfc3339(),
        }
    }
}

impl From<MobileDevice> for SubscriptionView {
    fn from(d: MobileDevice) -> Self {
        SubscriptionView {
            id: d.id,
            kind: SubscriptionKind::Mobile,
            endpoint: None,
            platform: Some(d.platform),
            token: Some(d.token),
            app_id: Some(d.app_id),
            created_at: d.created_at.to_rfc3339(),
            updated_at: d.updated_at.to_rfc3339(),
        }
    }
}

/// A subscription to be stored: a browser's or a device's.
enum NewSubscription {
    Web(NewPushSubscription),
    Mobile(NewMobileDevice),
}

/// The shortest and longest APNs device token (hex digits): 32 bytes
/// today; Apple says they may grow.
const APNS_TOKEN: std::ops::RangeInclusive<usize> = 64..=200;
/// The shortest and longest FCM registration token accepted (they are
/// about 150 to 200 characters today).
const FCM_TOKEN: std::ops::RangeInclusive<usize> = 64..=4096;
/// The longest app id (bundle ids and package names are far shorter).
const MAX_APP_ID: usize = 155;

/// Checks a device token for `platform`; the token as stored (APNs hex in
/// lower case).
fn check_token(platform: MobilePlatform, token: &str) -> Result<String, String> {
    match platform {
        MobilePlatform::Apns => {
            if !token.chars().all(|c| c.is_ascii_hexdigit()) {
                Err("must be the APNs device token in hex (the bytes of \
                     didRegisterForRemoteNotificationsWithDeviceToken as hex digits)"
                    .into())
            } else if !APNS_TOKEN.contains(&token.len()) || !token.len().is_multiple_of(2) {
                Err(format!(
                    "must be an even number of hex digits, {} to {}, not {}",
                    APNS_TOKEN.start(),
                    APNS_TOKEN.end(),
                    token.len()
                ))
            } else {
                Ok(token.to_ascii_lowercase())
            }
        }
        MobilePlatform::Fcm => {
            if !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
            {
                Err(
                    "must be the FCM registration token as the Firebase SDK gives it \
                     (letters, digits, '-', '_' and ':')"
                        .into(),
                )
            } else if !FCM_TOKEN.contains(&token.len()) {
                Err(format!(
                    "must be {} to {} characters long, not {}; send the registration token as it is",
                    FCM_TOKEN.start(),
                    FCM_TOKEN.end(),
                    token.len()
                ))
            } else {
                Ok(token.to_string())
            }
        }
    }
}

/// Checks an app id: a bundle id or package name in reverse-DNS form, at
/// least two parts of letters, digits, '-' and '_'.
fn check_app_id(app_id: &str) -> Result<(), String> {
    let parts: Vec<&str> = app_id.split('.').collect();
    let ok = app_id.len() <= MAX_APP_ID
        && parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be the app's bundle id (APNs topic) or package name in reverse-DNS form, \
             e.g. com.example.desk (at most {MAX_APP_ID} characters)"
        ))
    }
}

/// Checks a mobile subscription request field by field.
fn validate_mobile(
    platform: &str,
    req: SubscriptionRequest,
    mobile: &MobileSettings,
) -> ApiResult<NewMobileDevice> {
    let Some(platform) = MobilePlatform::parse(platform) else {
        return Err(ApiError::Validation(ValidationErrors::single(
            "platform",
            format!(
                "'{}' is not a mobile platform; use fcm or apns, or send a browser's \
                 PushSubscription ({{\"endpoint\", \"keys\"}}) without platform",
                platform.escape_debug()
            ),
        )));
    };
    if !mobile.configured(platform) {
        let name = match platform {
            MobilePlatform::Fcm => "FCM",
            MobilePlatform::Apns => "APNs",
        };
        return Err(ApiError::Unprocessable {
            code: "mobile_push_unavailable",
            detail: format!(
                "mobile push through {name} ({platform}) is not configured on this server; \
                 the administrator sets {}",
                MobileSettings::setting_of(platform)
            ),
            errors: vec![],
        });
    }
    let mut errors = ValidationErrors::new();
    if req.endpoint.is_some() {
        errors.add("endpoint", BROWSER_ONLY);
    }
    if req.keys.is_some() {
        errors.add("keys", BROWSER_ONLY);
    }
    if req.expiration_time.is_some() {
        errors.add("expirationTime", BROWSER_ONLY);
    }
    let token = match req.token.as_deref().map(str::trim) {
        None | Some("") => {
            errors.add(
                "token",
                "is required: the device token the platform gave the app",
            );
            None
        }
        Some(t) => match check_token(platform, t) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.add("token", e);
                None
            }
        },
    };
    let app_id = match req.app_id.as_deref().map(str::trim) {
        None | Some("") => {
            errors.add(
                "app_id",
                "is required: the app's bundle id (APNs topic) or package name (FCM)",
            );
            None
        }
        Some(a) => match check_app_id(a) {
            Ok(()) => Some(a.to_string()),
            Err(e) => {
                errors.add("app_id", e);
                None
            }
        },
    };
    match (token, app_id) {
        (Some(token), Some(app_id)) if errors.is_empty() => Ok(NewMobileDevice {
            platform,
            token,
            app_id,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

const BROWSER_ONLY: &str = "belongs to browser subscriptions (PushSubscription.toJSON()); \
     a mobile subscription has platform, token and app_id only";

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
    mobile: &MobileSettings,
) -> ApiResult<NewSubscription> {
    if let Some(platform) = req.platform.clone() {
        return validate_mobile(&platform, req, mobile).map(NewSubscription::Mobile);
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
            Ok(NewSubscription::Web(NewPushSubscription {
                endpoint,
                p256dh,
                auth,
            }))
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

/// Subscribe a browser to web push, or register a mobile device.
///
/// The body is the browser's `PushSubscription.toJSON()`, or
/// `{"platform": "fcm"|"apns", "token", "app_id"}` for a device. Posting
/// an endpoint (a platform's token) again updates it (200) instead of
/// adding another; a user keeps at most `push_subscriptions_per_user`
/// (default 20) browsers and as many devices, the least recently posted
/// go first. A platform this server has no credentials for is answered
/// 422 `mobile_push_unavailable`, naming the setting to configure.
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
    let cap = state.config.push_subscriptions_per_user;
    let now = state.clock.now();
    let (view, created) = match validate(req, &state.config.outbound, &state.config.mobile)? {
        NewSubscription::Web(new) => {
            let (stored, created) = state
                .store
                .put_push_subscription(&user, new, cap, now)
                .await
                .map_err(owner_missing(&user))?;
            (SubscriptionView::from(stored), created)
        }
        NewSubscription::Mobile(new) => {
            let (stored, created) = state
                .store
                .put_mobile_device(&user, new, cap, now)
                .await
                .map_err(owner_missing(&user))?;
            (SubscriptionView::from(stored), created)
        }
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// The user's push subscriptions (browsers and mobile devices, `kind`
/// tells which), most recently posted first.
#[utoipa::path(
    get, path = "/v1/me/push-subscriptions", tag = "push",
    responses((status = 200, body = SubscriptionList)),
    security(("user_token" = []))
)]
async fn list(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<Json<SubscriptionList>> {
    let browsers = state
        .store
        .push_subscriptions(&user)
        .await
        .map_err(owner_missing(&user))?;
    let devices = state
        .store
        .mobile_devices(&user)
        .await
        .map_err(owner_missing(&user))?;
    let mut items: Vec<(belfry_core::Millis, SubscriptionView)> = browsers
        .into_iter()
        .map(|s| (s.updated_at, SubscriptionView::from(s)))
        .chain(
            devices
                .into_iter()
                .map(|d| (d.updated_at, SubscriptionView::from(d))),
        )
        .collect();
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
    Ok(Json(SubscriptionList {
        items: items.into_iter().map(|(_, v)| v).collect(),
    }))
}

#[derive(Deserialize)]
struct IdPath {
    id: String,
}

/// Remove a push subscription (the browser unsubscribed, the app signed
/// out on the device).
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
    if state.store.delete_push_subscription(&user, &p.id).await?
        || state.store.delete_mobile_device(&user, &p.id).await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "user {user} has no push subscription {}",
            p.id.escape_debug()
        )))
    }
}
