//! Sources (S9), admin keys: `PUT|GET|DELETE /v1/sources/{id}`,
//! `GET /v1/sources` and `POST /v1/sources/{id}/keys`. A source is an
//! integration that sends (the help desk, the CRM, the build server), with
//! a name and an icon people see next to what it sent, and by which they
//! can turn its notifications off (per-source preferences). A key created
//! for a source is a `send` key bound to it: what it sends or posts
//! carries `source` = that id, and naming another source is 403.
//! Deleting a source revokes its keys.

use crate::AppState;
use crate::auth::{AdminKey, generate_key};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use belfry_core::{Category, ValidationErrors, validation};
use belfry_store::{ApiKeyInfo, DocKind, Document, Scope};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, put, remove))
        .routes(routes!(create_key))
}

#[derive(Deserialize)]
struct IdPath {
    #[serde(rename = "source_id")]
    id: String,
}

fn source_id(p: &IdPath) -> ApiResult<String> {
    Category::parse(&p.id)
        .map(Category::into_string)
        .map_err(|e| ApiError::bad_request("invalid_path", format!("source id: {e}")))
}

/// `PUT /v1/sources/{id}`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SourceRequest {
    /// What people see, e.g. "Help desk" (required, at most 100 characters).
    name: Option<String>,
    /// An http(s) URL or a path of the host application; null: none.
    icon: Option<String>,
}

/// A source as stored.
#[derive(Serialize, Deserialize, Clone, utoipa::ToSchema)]
struct SourceDef {
    name: String,
    icon: Option<String>,
}

/// A source.
#[derive(Serialize, utoipa::ToSchema)]
struct SourceView {
    id: String,
    name: String,
    icon: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SourceList {
    items: Vec<SourceView>,
}

impl SourceRequest {
    fn validate(self) -> Result<SourceDef, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let name = match &self.name {
            Some(n) => e.take("name", validation::text(n, 100, true)),
            None => {
                e.add("name", "is required, e.g. \"Help desk\"");
                None
            }
        };
        let icon = self
            .icon
            .as_deref()
            .and_then(|i| e.take("icon", validation::link(i)));
        e.finish(SourceDef {
            name: name.unwrap_or_default(),
            icon,
        })
    }
}

fn view(d: Document) -> ApiResult<SourceView> {
    let def: SourceDef = serde_json::from_str(&d.doc)
        .map_err(|e| ApiError::Internal(format!("stored source {}: {e}", d.id)))?;
    Ok(SourceView {
        id: d.id,
        name: def.name,
        icon: def.icon,
        created_at: d.created_at.to_rfc3339(),
        updated_at: d.updated_at.to_rfc3339(),
    })
}

/// Every source, by id.
#[utoipa::path(
    get, path = "/v1/sources", tag = "sources",
    responses((status = 200, body = SourceList)),
    security(("secret_key" = []))
)]
async fn list(State(state): State<AppState>, AdminKey(_): AdminKey) -> ApiResult<Json<SourceList>> {
    let docs = state.store.list_documents(DocKind::Source).await?;
    Ok(Json(SourceList {
        items: docs.into_iter().map(view).collect::<ApiResult<_>>()?,
    }))
}

/// One source.
#[utoipa::path(
    get, path = "/v1/sources/{source_id}", tag = "sources",
    params(("source_id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_one(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
) -> ApiResult<Json<SourceView>> {
    let id = source_id(&p)?;
    match state.store.get_document(DocKind::Source, &id).await? {
        Some(d) => Ok(Json(view(d)?)),
        None => Err(ApiError::NotFound(format!("there is no source '{id}'"))),
    }
}

/// Create or update a source.
///
/// `name` (required) and `icon`. Its id is what notifications carry as
/// `source` and what per-source preferences name.
#[utoipa::path(
    put, path = "/v1/sources/{source_id}", tag = "sources",
    params(("source_id" = String, Path)),
    request_body = SourceRequest,
    responses(
        (status = 201, description = "Created", body = SourceView),
        (status = 200, description = "Updated", body = SourceView),
        (status = 422, description = "Invalid fields", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(source = %p.id))]
async fn put(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
    ApiJson(req): ApiJson<SourceRequest>,
) -> ApiResult<Response> {
    let id = source_id(&p)?;
    let def = req.validate().map_err(ApiError::Validation)?;
    let doc = serde_json::to_string(&def).expect("a source serialises");
    let (status, stored) = super::store_document(&state, DocKind::Source, &id, doc).await?;
    Ok((status, Json(view(stored)?)).into_response())
}

/// Delete a source; its keys are revoked.
#[utoipa::path(
    delete, path = "/v1/sources/{source_id}", tag = "sources",
    params(("source_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn remove(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
) -> ApiResult<StatusCode> {
    let id = source_id(&p)?;
    if !state.store.delete_document(DocKind::Source, &id).await? {
        return Err(ApiError::NotFound(format!("there is no source '{id}'")));
    }
    let revoked = state
        .store
        .revoke_source_keys(&id, state.clock.now())
        .await?;
    for key in &revoked {
        state.keys.forget(key);
    }
    tracing::info!(keys = revoked.len(), "source deleted, its keys revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sources/{id}/keys`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    /// What the key is for, e.g. "help desk production" (default: the
    /// source's name).
    name: Option<String>,
}

/// A new key: the secret is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedKey {
    /// The secret (`bfy_sk_…`): store it now, it is not shown again.
    secret: String,
    #[serde(flatten)]
    key: ApiKeyInfo,
}

/// Create a send key bound to a source.
///
/// What it sends (`POST /v1/notifications`, `/batch`) and posts
/// (`POST /v1/events`) carries `source` = this source; naming another
/// source is 403. Revoke it like any key; deleting the source revokes it.
#[utoipa::path(
    post, path = "/v1/sources/{source_id}/keys", tag = "sources",
    params(("source_id" = String, Path)),
    request_body = KeyRequest,
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedKey),
        (status = 404, body = Problem),
        (status = 422, description = "Invalid fields", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(source = %p.id))]
async fn create_key(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
    ApiJson(req): ApiJson<KeyRequest>,
) -> ApiResult<Response> {
    let id = source_id(&p)?;
    let Some(doc) = state.store.get_document(DocKind::Source, &id).await? else {
        return Err(ApiError::NotFound(format!(
            "there is no source '{id}'; create it with PUT /v1/sources/{id}"
        )));
    };
    let source = view(doc)?;
    let name = match req.name.as_deref() {
        Some(n) => validation::text(n, 100, true)
            .map_err(|m| ApiError::Validation(ValidationErrors::single("name", m)))?,
        None => source.name,
    };
    let (secret, mut record) = generate_key(&name, vec![Scope::Send]);
    record.source = Some(id);
    let key = state
        .store
        .create_api_key(record, state.clock.now())
        .await?;
    tracing::info!(key = %key.id, "source key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { secret, key })).into_response())
}
