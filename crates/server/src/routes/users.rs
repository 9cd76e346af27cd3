//! Users (create, update, read, delete) and the user tokens browsers use.

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, OptionalJson};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use belfry_core::{User, UserId, UserRequest, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_user, get_user, delete_user))
        .routes(routes!(issue_token, revoke_tokens))
}

fn user_id(raw: &str) -> ApiResult<UserId> {
    UserId::parse(raw).map_err(|e| ApiError::bad_request("invalid_path", e))
}

/// Create or update a user.
///
/// Fields left out keep their value; `null` clears one. `groups` is the
/// complete list of the user's groups (missing groups are created); joining
/// a group does not deliver its earlier broadcasts.
#[utoipa::path(
    put, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path)),
    request_body = UserRequest,
    responses(
        (status = 200, body = User),
        (status = 409, description = "The email belongs to another user", body = Problem),
        (status = 422, body = Problem),
    ),
    security(("secret_key" = []))
)]
async fn put_user(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UserRequest>,
) -> ApiResult<Json<User>> {
    let id = user_id(&id)?;
    let patch = request.validate()?;
    let (user, _created) = state.store.put_user(&id, patch, state.clock.now()).await?;
    Ok(Json(user))
}

/// Read a user.
#[utoipa::path(
    get, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_user(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let id = user_id(&id)?;
    state
        .store
        .get_user(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("there is no user {id}")))
}

/// A store error about a user: NotFound names the user.
fn no_such_user(e: belfry_store::StoreError, id: &UserId) -> ApiError {
    match e {
        belfry_store::StoreError::NotFound => ApiError::NotFound(format!("there is no user {id}")),
        other => other.into(),
    }
}

/// Delete a user with their inbox, inbox state and memberships.
///
/// Their tokens are revoked and their open streams end: a user created
/// again with the same id does not accept the old tokens.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn delete_user(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = user_id(&id)?;
    let now = state.clock.now();
    state
        .store
        .delete_user(&id, now)
        .await
        .map_err(|e| no_such_user(e, &id))?;
    // Refused on this node at once; the event reaches every node.
    state.hub.revocations.record(&id, now, now);
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke all of a user's tokens.
///
/// Every token issued for the user until now is refused from now on, on
/// every node, and the streams they opened end (SSE: the response ends;
/// WebSocket: close code 4001), so that the widget asks its
/// `tokenProvider` for a new token and resumes where it was. Tokens issued
/// after this call work.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}/tokens", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn revoke_tokens(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = user_id(&id)?;
    let now = state.clock.now();
    let after = state
        .store
        .revoke_tokens(&id, now)
        .await
        .map_err(|e| no_such_user(e, &id))?;
    // Refused on this node at once; the event reaches every node.
    state.hub.revocations.record(&id, after, now);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// Lifetime in seconds (default 3600, at most the server's maximum of 30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    ttl_seconds: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TokenResponse {
    token: String,
    expires_at: String,
}

/// Issue a user token for a browser.
///
/// The host application's backend calls this for its logged-in user and
/// hands the token to the widget, which sends it as a bearer token (or
/// `?token=` on stream endpoints). It reaches only that user's `/v1/me/...`.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/tokens", tag = "users",
    params(("user_id" = String, Path)),
    request_body(content = Option<TokenRequest>),
    responses((status = 201, body = TokenResponse), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("secret_key" = []))
)]
async fn issue_token(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<TokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let id = user_id(&id)?;
    let max = state.config.token_max_ttl_secs;
    let ttl = request.ttl_seconds.unwrap_or(state.config.token_ttl_secs);
    if !(1..=max).contains(&ttl) {
        return Err(ValidationErrors::single(
            "ttl_seconds",
            format!("must be between 1 and {max} seconds"),
        )
        .into());
    }
    if state.store.get_user(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "there is no user {id}; create it with PUT /v1/users/{id} first"
        )));
    }
    let issued_at = state.hub.revocations.issue_time(&id, state.clock.now());
    let (token, expires_at) = state.tokens.issue(&id, issued_at, ttl);
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token,
            expires_at: expires_at.to_rfc3339(),
        }),
    ))
}
