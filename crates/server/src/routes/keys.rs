//! Secret keys from the API (issue 17), admin scope (a key or a console
//! session): `GET /v1/keys`, `POST /v1/keys` (the secret shown once),
//! `DELETE /v1/keys/{key_id}` (revokes; never the caller's own key). Keys
//! bound to a source are made with `POST /v1/sources/{id}/keys`.

use super::console::Page;
use crate::AppState;
use crate::auth::{AdminKey, generate_key};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use belfry_core::{ValidationErrors, validation};
use belfry_store::{ApiKeyInfo, Scope, StoreError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// Every key, revoked ones too, oldest first (never a secret).
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = Page<ApiKeyInfo>)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn list_keys(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<Page<ApiKeyInfo>>> {
    Ok(Json(Page {
        items: state.store.list_api_keys().await?,
        next_cursor: None,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    /// Who uses the key, e.g. "billing service" (1-100 characters).
    name: Option<String>,
    /// `send` (send, and read what it sent) and/or `admin` (everything).
    #[schema(value_type = Vec<String>)]
    scopes: Option<Vec<serde_json::Value>>,
}

/// A new key: the secret is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedKey {
    /// The secret (`bfy_sk_…`): store it now, it is not shown again.
    secret: String,
    #[serde(flatten)]
    key: ApiKeyInfo,
}

/// Create a key.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys",
    request_body = KeyRequest,
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedKey),
        (status = 422, body = Problem),
    ),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn create_key(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(req): ApiJson<KeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let mut e = ValidationErrors::new();
    let name = match req.name.as_deref() {
        None => {
            e.add("name", "is required");
            None
        }
        Some(n) => e.take("name", validation::text(n, 100, true)),
    };
    let mut scopes = Vec::new();
    match req.scopes {
        None => e.add("scopes", "is required: [\"send\"] or [\"admin\"]"),
        Some(list) if list.is_empty() => e.add("scopes", "name at least one: send or admin"),
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                match s.as_str().map(Scope::parse) {
                    Some(Ok(scope)) if !scopes.contains(&scope) => scopes.push(scope),
                    Some(Ok(_)) => {}
                    _ => e.add(format!("scopes[{i}]"), "must be send or admin"),
                }
            }
        }
    }
    let name = e.finish(name)?.expect("checked");
    let (secret, record) = generate_key(&name, scopes);
    let key = state
        .store
        .create_api_key(record, state.clock.now())
        .await?;
    tracing::info!(key = %key.id, "key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { secret, key })))
}

/// Revoke a key: it is refused from now on (within 10 s on other nodes).
///
/// A key cannot revoke itself (409 `own_key`): revoke it with another
/// admin key, the console, or `belfry keys revoke`. Revoking a revoked key
/// is 204 again.
#[utoipa::path(
    delete, path = "/v1/keys/{key_id}", tag = "keys",
    params(("key_id" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, body = Problem),
        (status = 409, description = "The key making the request (`own_key`)", body = Problem),
    ),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn revoke_key(
    State(state): State<AppState>,
    AdminKey(caller): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if caller.id == id {
        return Err(ApiError::ConflictWith {
            code: "own_key",
            detail: "a key cannot revoke itself; use another admin key or the console".into(),
        });
    }
    match state.store.revoke_api_key(&id, state.clock.now()).await {
        Ok(_) => {
            state.keys.forget(&id);
            tracing::info!(key = %id, "key revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!("no key {id}"))),
        Err(e) => Err(e.into()),
    }
}
