//! Groups: teams, departments, roles. Membership is a user's `groups` list.

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::OptionalJson;
use axum::Json;
use axum::extract::{Path, State};
use belfry_core::{GroupId, ValidationErrors, validation};
use belfry_store::Group;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_group))
        .routes(routes!(list_groups))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GroupRequest {
    /// Display name, e.g. "Support team".
    name: Option<String>,
}

/// Create a group or rename it.
#[utoipa::path(
    put, path = "/v1/groups/{group_id}", tag = "users",
    params(("group_id" = String, Path)),
    request_body(content = Option<GroupRequest>),
    responses((status = 200, body = Group), (status = 422, body = Problem)),
    security(("secret_key" = []))
)]
async fn put_group(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<GroupRequest>,
) -> ApiResult<Json<Group>> {
    let id = GroupId::parse(&id).map_err(|e| ApiError::bad_request("invalid_path", e))?;
    let name = match request.name {
        Some(n) => {
            Some(validation::text(&n, 200, true).map_err(|e| ValidationErrors::single("name", e))?)
        }
        None => None,
    };
    let (group, _) = state.store.put_group(&id, name, state.clock.now()).await?;
    Ok(Json(group))
}

#[derive(Serialize, utoipa::ToSchema)]
struct GroupList {
    items: Vec<Group>,
}

/// All groups with their current member counts.
#[utoipa::path(
    get, path = "/v1/groups", tag = "users",
    responses((status = 200, body = GroupList)),
    security(("secret_key" = []))
)]
async fn list_groups(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<GroupList>> {
    Ok(Json(GroupList {
        items: state.store.list_groups().await?,
    }))
}
