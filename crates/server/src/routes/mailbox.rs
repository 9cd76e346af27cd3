//! The development mailbox: with no SMTP server configured, emails are kept
//! here (never dropped) so that they can be read while trying Belfry.

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use axum::Json;
use axum::extract::{Path, State};
use belfry_store::DevMail;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, clear))
        .routes(routes!(get_one))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Mailbox {
    /// Newest first, at most 200.
    items: Vec<DevMail>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Cleared {
    deleted: i64,
}

/// Emails kept in the development mailbox, newest first.
#[utoipa::path(
    get, path = "/v1/dev/mailbox", tag = "users",
    responses((status = 200, body = Mailbox)),
    security(("secret_key" = []))
)]
async fn list(State(state): State<AppState>, AdminKey(_): AdminKey) -> ApiResult<Json<Mailbox>> {
    Ok(Json(Mailbox {
        items: state.store.mailbox_list(200).await?,
    }))
}

/// One email of the development mailbox.
#[utoipa::path(
    get, path = "/v1/dev/mailbox/{id}", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, body = DevMail), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_one(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Json<DevMail>> {
    state
        .store
        .mailbox_get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no email {id} in the development mailbox")))
}

/// Empty the development mailbox.
#[utoipa::path(
    delete, path = "/v1/dev/mailbox", tag = "users",
    responses((status = 200, body = Cleared)),
    security(("secret_key" = []))
)]
async fn clear(State(state): State<AppState>, AdminKey(_): AdminKey) -> ApiResult<Json<Cleared>> {
    Ok(Json(Cleared {
        deleted: state.store.mailbox_clear().await?,
    }))
}
