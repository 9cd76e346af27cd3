//! Rules (S8), admin keys: `PUT|GET|DELETE /v1/rules/{id}` and
//! `GET /v1/rules`. A rule turns an event (`POST /v1/events`) into
//! notifications: see `belfry_core::rule`. Saving checks its expressions,
//! that its template exists (422 `unknown_template`) and its category
//! (422 `unknown_category`, unless categories are created on first use).

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use belfry_core::Category;
use belfry_core::rule::{RuleDef, RuleRequest};
use belfry_store::{DocKind, Document};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, put, remove))
}

#[derive(Deserialize)]
struct IdPath {
    #[serde(rename = "rule_id")]
    id: String,
}

fn rule_id(p: &IdPath) -> ApiResult<String> {
    Category::parse(&p.id)
        .map(Category::into_string)
        .map_err(|e| ApiError::bad_request("invalid_path", format!("rule id: {e}")))
}

/// A stored rule.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RuleView {
    id: String,
    #[serde(flatten)]
    def: RuleDef,
    created_at: String,
    updated_at: String,
}

/// A stored rule document, parsed.
pub(super) fn parse(d: &Document) -> ApiResult<RuleDef> {
    serde_json::from_str(&d.doc)
        .map_err(|e| ApiError::Internal(format!("stored rule {}: {e}", d.id)))
}

fn view(d: Document) -> ApiResult<RuleView> {
    Ok(RuleView {
        def: parse(&d)?,
        id: d.id,
        created_at: d.created_at.to_rfc3339(),
        updated_at: d.updated_at.to_rfc3339(),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
struct RuleList {
    items: Vec<RuleView>,
}

/// Every rule, by id.
#[utoipa::path(
    get, path = "/v1/rules", tag = "rules",
    responses((status = 200, body = RuleList)),
    security(("secret_key" = []))
)]
async fn list(State(state): State<AppState>, AdminKey(_): AdminKey) -> ApiResult<Json<RuleList>> {
    let docs = state.store.list_documents(DocKind::Rule).await?;
    Ok(Json(RuleList {
        items: docs.into_iter().map(view).collect::<ApiResult<_>>()?,
    }))
}

/// One rule.
#[utoipa::path(
    get, path = "/v1/rules/{rule_id}", tag = "rules",
    params(("rule_id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_one(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
) -> ApiResult<Json<RuleView>> {
    let id = rule_id(&p)?;
    match state.store.get_document(DocKind::Rule, &id).await? {
        Some(d) => Ok(Json(view(d)?)),
        None => Err(ApiError::NotFound(format!("there is no rule '{id}'"))),
    }
}

/// Create or replace a rule.
///
/// `event` (the type it handles), `when` (an optional minijinja
/// expression over the event: `data.priority == "high"`), `to` (`users`:
/// ids or `{{ expression }}` giving an id or a list, e.g.
/// `{{ data.mentions }}`; `groups`; `entity_subscribers`; `creator`, the
/// event's `entity.creator`), `category`, `template` (its id), `stack_key`
/// (a template, e.g. `mention:{{ entity.id }}`), `subscribe` (`actor`,
/// `recipients`: they then follow the entity), `enabled` (default true).
/// The actor is never notified.
#[utoipa::path(
    put, path = "/v1/rules/{rule_id}", tag = "rules",
    params(("rule_id" = String, Path)),
    request_body = RuleRequest,
    responses(
        (status = 201, description = "Created", body = RuleView),
        (status = 200, description = "Replaced", body = RuleView),
        (status = 422, description = "Invalid; unknown_template; unknown_category", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(rule = %p.id))]
async fn put(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
    ApiJson(req): ApiJson<RuleRequest>,
) -> ApiResult<Response> {
    let id = rule_id(&p)?;
    let def = req.validate().map_err(ApiError::Validation)?;
    if state
        .store
        .get_document(DocKind::Template, &def.template)
        .await?
        .is_none()
    {
        return Err(ApiError::Unprocessable {
            code: "unknown_template",
            detail: format!(
                "there is no template '{}'; create it with PUT /v1/templates/{}",
                def.template, def.template
            ),
            errors: vec![crate::rulebook::unknown_template(&def.template)],
        });
    }
    let now = state.clock.now();
    if let Some(c) = &def.category {
        let c = Category::parse(c).map_err(|e| ApiError::Internal(e.to_string()))?;
        state
            .categories
            .check(&[("category".into(), c)], state.config.auto_categories, now)
            .await?;
    }
    let doc = serde_json::to_string(&def).expect("a rule serialises");
    let (status, stored) = super::store_document(&state, DocKind::Rule, &id, doc).await?;
    state.rules.invalidate();
    Ok((status, Json(view(stored)?)).into_response())
}

/// Delete a rule.
#[utoipa::path(
    delete, path = "/v1/rules/{rule_id}", tag = "rules",
    params(("rule_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn remove(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
) -> ApiResult<StatusCode> {
    let id = rule_id(&p)?;
    if state.store.delete_document(DocKind::Rule, &id).await? {
        state.rules.invalidate();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("there is no rule '{id}'")))
    }
}
