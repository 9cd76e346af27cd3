//! Categories (admin): what kind of notification something is, its default
//! channels and email mode, whether users may switch it off, its email
//! fallback and whether it bypasses quiet hours.

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::OptionalJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use belfry_core::{Category, CategoryDef, CategoryRequest};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_category, get_category, delete_category))
        .routes(routes!(list_categories))
}

fn category_id(raw: &str) -> ApiResult<Category> {
    Category::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_path", format!("category id {e}")))
}

/// Create or change a category.
///
/// Fields left out keep their value (a new category starts with the
/// defaults: named after its id, no icon, not critical, email off, pushes
/// on, chat off, no fallback, quiet hours respected). Every node sees the
/// change within seconds.
#[utoipa::path(
    put, path = "/v1/categories/{category_id}", tag = "categories",
    params(("category_id" = String, Path, description = "1 to 64 of a-z 0-9 - _ .")),
    request_body(content = Option<CategoryRequest>),
    responses(
        (status = 200, body = CategoryDef),
        (status = 400, description = "Invalid category id", body = Problem),
        (status = 422, body = Problem),
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(category = %id))]
async fn put_category(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<CategoryRequest>,
) -> ApiResult<Json<CategoryDef>> {
    let id = category_id(&id)?;
    let current = state.store.get_category(&id).await?;
    // Digest mode needs no job here: a user's digest job is created when
    // their first email is digested.
    let def = request.apply(id, current)?;
    state
        .store
        .put_category(def.clone(), state.clock.now())
        .await?;
    state.categories.reload().await?;
    Ok(Json(def))
}

/// Read a category.
#[utoipa::path(
    get, path = "/v1/categories/{category_id}", tag = "categories",
    params(("category_id" = String, Path)),
    responses(
        (status = 200, body = CategoryDef),
        (status = 400, description = "Invalid category id", body = Problem),
        (status = 404, body = Problem),
    ),
    security(("secret_key" = []))
)]
async fn get_category(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Json<CategoryDef>> {
    let id = category_id(&id)?;
    state
        .store
        .get_category(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("there is no category {id}")))
}

/// Delete a category.
///
/// Notifications already sent keep naming it; new sends naming it are
/// refused (422 `unknown_category`) unless categories are auto-created.
#[utoipa::path(
    delete, path = "/v1/categories/{category_id}", tag = "categories",
    params(("category_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid category id", body = Problem),
        (status = 404, body = Problem),
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(category = %id))]
async fn delete_category(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = category_id(&id)?;
    if !state.store.delete_category(&id).await? {
        return Err(ApiError::NotFound(format!("there is no category {id}")));
    }
    state.categories.reload().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct CategoryList {
    /// By id.
    items: Vec<CategoryDef>,
}

/// All categories.
#[utoipa::path(
    get, path = "/v1/categories", tag = "categories",
    responses((status = 200, body = CategoryList)),
    security(("secret_key" = []))
)]
async fn list_categories(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<CategoryList>> {
    Ok(Json(CategoryList {
        items: state.store.list_categories().await?,
    }))
}
