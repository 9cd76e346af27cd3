//! The console's sign-in and its administrators (issue 17):
//! `POST /v1/admin/sessions`, `GET|DELETE /v1/admin/session`, and
//! `GET|POST /v1/admins`, `DELETE /v1/admins/{admin_id}` (admin scope: a
//! key or a session). See [`crate::admin`] for sessions and CSRF.

use crate::AppState;
use crate::admin::{
    self, LOCKOUT_FAILURES, LOCKOUT_WINDOW_MS, check_csrf, check_origin, clear_cookie, is_https,
    set_cookie,
};
use crate::auth::{AdminKey, hash_key};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use belfry_core::Millis;
use belfry_store::{Admin, AdminSession, Constraint, NewAdminSession, StoreError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(get_session, sign_out))
        .routes(routes!(list_admins, create_admin))
        .routes(routes!(delete_admin))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: Option<String>,
    password: Option<String>,
}

/// A console session.
#[derive(Serialize, utoipa::ToSchema)]
struct SessionView {
    admin: Admin,
    /// Send as `X-CSRF-Token` with every request that changes something.
    csrf_token: String,
    /// When the session ends unless used before (each use moves it on).
    expires_at: String,
}

fn view(session: &AdminSession) -> SessionView {
    SessionView {
        admin: session.admin.clone(),
        csrf_token: session.csrf_token.clone(),
        expires_at: session.expires_at.to_rfc3339(),
    }
}

fn with_cookie(mut response: Response, cookie: String) -> ApiResult<Response> {
    let value = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::Internal(format!("cookie header: {e}")))?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn invalid_credentials() -> ApiError {
    ApiError::Status {
        status: StatusCode::UNAUTHORIZED,
        code: "invalid_credentials",
        detail: "the email address or the password is wrong".into(),
        retry_after: None,
    }
}

/// Sign in to the console.
///
/// Answers the session (with its CSRF token) and sets the `belfry_admin`
/// cookie (`HttpOnly; SameSite=Strict`, `Secure` over https). A wrong
/// address or password is the same 401 `invalid_credentials`; after 5
/// failures for one address within 15 minutes, every attempt for it is
/// 429 `locked_out` (with `Retry-After`) until the window has passed.
#[utoipa::path(
    post, path = "/v1/admin/sessions", tag = "admin",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the cookie is set", body = SessionView,
         headers(("Set-Cookie" = String, description = "belfry_admin=…; HttpOnly; SameSite=Strict; Path=/; Max-Age=…"))),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = Problem),
        (status = 403, description = "Posted from another origin (`csrf_failed`)", body = Problem),
        (status = 422, body = Problem),
        (status = 429, description = "Too many failures for this address (`locked_out`); retry after `Retry-After` seconds", body = Problem,
         headers(("Retry-After" = i64, description = "Seconds until the lock ends"))),
    )
)]
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> ApiResult<Response> {
    check_origin(&headers, &state)?;
    let mut e = belfry_core::ValidationErrors::new();
    if body.email.is_none() {
        e.add("email", "is required");
    }
    if body.password.is_none() {
        e.add("password", "is required");
    }
    e.finish(())?;
    let email = body.email.unwrap_or_default().trim().to_lowercase();
    let password = body.password.unwrap_or_default();
    let now = state.clock.now();
    let window_start = Millis(now.0 - LOCKOUT_WINDOW_MS);
    let failures = state
        .store
        .admin_login_failures(&email, Millis(window_start.0 + 1))
        .await?;
    if failures.len() >= LOCKOUT_FAILURES {
        // Unlocked when the oldest of the last five leaves the window.
        let oldest = failures[failures.len() - LOCKOUT_FAILURES];
        let wait_ms = oldest.0 + LOCKOUT_WINDOW_MS - now.0;
        let retry_after = u32::try_from((wait_ms + 999) / 1000)
            .unwrap_or(u32::MAX)
            .max(1);
        return Err(ApiError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "locked_out",
            detail: format!(
                "too many failed sign-ins for this address; try again in {retry_after} s"
            ),
            retry_after: Some(retry_after),
        });
    }
    let found = if password.len() > admin::MAX_PASSWORD_BYTES {
        None
    } else {
        state.store.admin_by_email(&email).await?
    };
    let hash = found
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| admin::decoy_hash().to_string());
    let checked = password.clone();
    let matches = tokio::task::spawn_blocking(move || admin::verify_password(&checked, &hash))
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
    let Some((account, _)) = found.filter(|_| matches) else {
        state
            .store
            .record_admin_login_failure(&email, now, window_start)
            .await?;
        return Err(invalid_credentials());
    };
    state.store.clear_admin_login_failures(&email).await?;
    let value = admin::random_token();
    let session = AdminSession {
        admin: account,
        csrf_token: admin::random_token(),
        created_at: now,
        last_seen_at: now,
        expires_at: admin::idle_expiry(&state, now, now),
    };
    state
        .store
        .create_admin_session(
            NewAdminSession {
                hash: hash_key(&value),
                admin_id: session.admin.id.clone(),
                csrf_token: session.csrf_token.clone(),
                expires_at: session.expires_at,
            },
            now,
        )
        .await?;
    let secure = is_https(&headers, &state);
    with_cookie(
        Json(view(&session)).into_response(),
        set_cookie(&value, secure),
    )
}

/// The current console session (from the cookie), with its CSRF token.
#[utoipa::path(
    get, path = "/v1/admin/session", tag = "admin",
    responses(
        (status = 200, body = SessionView),
        (status = 401, description = "No live session (`unauthorized`)", body = Problem),
    ),
    security(("admin_session" = []))
)]
async fn get_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let (_, session) = admin::live_session(&headers, &state)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("not signed in to the console".into()))?;
    let mut response = Json(view(&session)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Sign out: ends the session on every node and clears the cookie.
///
/// Needs `X-CSRF-Token` like every change made with the session; without
/// a live session there is nothing to end (204 all the same).
#[utoipa::path(
    delete, path = "/v1/admin/session", tag = "admin",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 403, description = "Missing or wrong X-CSRF-Token, or another origin (`csrf_failed`)", body = Problem),
    ),
    security((), ("admin_session" = []))
)]
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some((hash, session)) = admin::live_session(&headers, &state).await? {
        check_csrf(&Method::DELETE, &headers, &state, &session)?;
        state.store.delete_admin_session(hash).await?;
    }
    with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        clear_cookie(is_https(&headers, &state)),
    )
}

#[derive(Serialize, utoipa::ToSchema)]
struct AdminList {
    items: Vec<Admin>,
}

/// The console's administrators.
#[utoipa::path(
    get, path = "/v1/admins", tag = "admin",
    responses((status = 200, body = AdminList)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn list_admins(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<AdminList>> {
    Ok(Json(AdminList {
        items: state.store.list_admins().await?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AdminRequest {
    email: Option<String>,
    name: Option<String>,
    /// At least 12 characters; stored only as its argon2id hash.
    password: Option<String>,
}

/// Create an administrator.
#[utoipa::path(
    post, path = "/v1/admins", tag = "admin",
    request_body = AdminRequest,
    responses(
        (status = 201, body = Admin),
        (status = 409, description = "An admin has this email address (`conflict`)", body = Problem),
        (status = 422, body = Problem),
    ),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn create_admin(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(body): ApiJson<AdminRequest>,
) -> ApiResult<(StatusCode, Json<Admin>)> {
    let fields = admin::validate_new_admin(
        body.email.as_deref(),
        body.name.as_deref(),
        body.password.as_deref(),
    )?;
    let record = tokio::task::spawn_blocking(move || fields.into_record())
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing: {e}")))?
        .map_err(ApiError::Internal)?;
    let created = state.store.create_admin(record, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Delete an administrator; its sessions end.
///
/// The last admin cannot be deleted (409 `last_admin`).
#[utoipa::path(
    delete, path = "/v1/admins/{admin_id}", tag = "admin",
    params(("admin_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem),
        (status = 409, description = "The last admin (`last_admin`)", body = Problem),
    ),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn delete_admin(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    match state.store.delete_admin(&id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!("no admin {id}"))),
        Err(StoreError::Conflict {
            constraint: Constraint::LastAdmin,
        }) => Err(ApiError::ConflictWith {
            code: "last_admin",
            detail: Constraint::LastAdmin.message(),
        }),
        Err(e) => Err(e.into()),
    }
}
