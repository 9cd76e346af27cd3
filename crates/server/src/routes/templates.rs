//! Templates (S8), admin keys: `PUT|GET|DELETE /v1/templates/{id}`,
//! `GET /v1/templates`, and `POST /v1/templates/{id}/preview`, which
//! renders a stored template with a sample event for every channel. A
//! template that does not parse is refused when it is saved: 422
//! `invalid_template`, each mistake with its locale, field, line and
//! column (`template_errors`).

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, PROBLEM_JSON, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use belfry_core::Category;
use belfry_core::template::{TemplateDef, TemplateError, TemplateRefused, TemplateRequest};
use belfry_store::{DocKind, Document};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, put, remove))
        .routes(routes!(preview))
}

#[derive(Deserialize)]
struct IdPath {
    #[serde(rename = "template_id")]
    id: String,
}

/// A template's id: like a category's (`[a-z0-9._-]`, at most 64).
fn template_id(p: &IdPath) -> ApiResult<String> {
    Category::parse(&p.id)
        .map(Category::into_string)
        .map_err(|e| ApiError::bad_request("invalid_path", format!("template id: {e}")))
}

/// A stored template.
#[derive(Serialize, utoipa::ToSchema)]
struct TemplateView {
    id: String,
    #[serde(flatten)]
    def: TemplateDef,
    created_at: String,
    updated_at: String,
}

fn view(d: Document) -> ApiResult<TemplateView> {
    let def: TemplateDef = serde_json::from_str(&d.doc)
        .map_err(|e| ApiError::Internal(format!("stored template {}: {e}", d.id)))?;
    Ok(TemplateView {
        id: d.id,
        def,
        created_at: d.created_at.to_rfc3339(),
        updated_at: d.updated_at.to_rfc3339(),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
struct TemplateList {
    items: Vec<TemplateView>,
}

/// Every template, by id.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = TemplateList)),
    security(("secret_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<TemplateList>> {
    let docs = state.store.list_documents(DocKind::Template).await?;
    Ok(Json(TemplateList {
        items: docs.into_iter().map(view).collect::<ApiResult<_>>()?,
    }))
}

/// One template.
#[utoipa::path(
    get, path = "/v1/templates/{template_id}", tag = "templates",
    params(("template_id" = String, Path)),
    responses((status = 200, body = TemplateView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_one(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
) -> ApiResult<Json<TemplateView>> {
    let id = template_id(&p)?;
    match state.store.get_document(DocKind::Template, &id).await? {
        Some(d) => Ok(Json(view(d)?)),
        None => Err(ApiError::NotFound(format!("there is no template '{id}'"))),
    }
}

/// The 422 of a template that does not parse.
fn invalid_template(errors: Vec<TemplateError>) -> Response {
    let first = &errors[0];
    let detail = format!(
        "the template does not parse: locales.{}.{} line {}, column {}: {}{}",
        first.locale,
        first.field,
        first.line,
        first.column,
        first.message,
        if errors.len() > 1 {
            format!(" (and {} more)", errors.len() - 1)
        } else {
            String::new()
        }
    );
    let field_errors = errors
        .iter()
        .map(|e| belfry_core::FieldError {
            field: format!("locales.{}.{}", e.locale, e.field),
            message: format!("line {}, column {}: {}", e.line, e.column, e.message),
        })
        .collect();
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut body = serde_json::to_value(Problem {
        kind: "https://belfry.dev/problems/invalid_template".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        code: "invalid_template".into(),
        errors: field_errors,
    })
    .expect("a problem serialises");
    body["template_errors"] = serde_json::to_value(&errors).expect("errors serialise");
    (
        status,
        [(header::CONTENT_TYPE, PROBLEM_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// Create or replace a template.
///
/// Texts per locale (`title`, `body`, `email_subject`, `email_text`,
/// `email_html`, `push_title`, `push_body`, `chat`), each a minijinja
/// template over the event (`event`, `actor`, `entity`, `data`) and the
/// recipient (`recipient.name`, …). The default locale needs a `title`; a
/// field another locale leaves out comes from it. `email_html` is
/// HTML-escaped. A text that does not parse is 422 `invalid_template` with
/// `template_errors`: locale, field, line, column and message.
#[utoipa::path(
    put, path = "/v1/templates/{template_id}", tag = "templates",
    params(("template_id" = String, Path)),
    request_body = TemplateRequest,
    responses(
        (status = 201, description = "Created", body = TemplateView),
        (status = 200, description = "Replaced", body = TemplateView),
        (status = 422, description = "Invalid, or a text that does not parse (invalid_template)", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(template = %p.id))]
async fn put(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
    ApiJson(req): ApiJson<TemplateRequest>,
) -> ApiResult<Response> {
    let id = template_id(&p)?;
    let def = match req.validate() {
        Ok(def) => def,
        Err(TemplateRefused::Invalid(errors)) => return Err(ApiError::Validation(errors)),
        Err(TemplateRefused::Syntax(errors)) => return Ok(invalid_template(errors)),
    };
    let doc = serde_json::to_string(&def).expect("a template serialises");
    let (status, stored) = super::store_document(&state, DocKind::Template, &id, doc).await?;
    state.rules.invalidate();
    Ok((status, Json(view(stored)?)).into_response())
}

/// Delete a template.
#[utoipa::path(
    delete, path = "/v1/templates/{template_id}", tag = "templates",
    params(("template_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn remove(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
) -> ApiResult<StatusCode> {
    let id = template_id(&p)?;
    if state.store.delete_document(DocKind::Template, &id).await? {
        state.rules.invalidate();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("there is no template '{id}'")))
    }
}

/// A sample event to render a template with.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SampleEvent {
    /// The event type, e.g. `ticket.assigned`.
    #[serde(rename = "type")]
    kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    actor: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(value_type = Option<Object>)]
    entity: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/templates/{id}/preview`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    /// The recipient's locale (default: the template's default).
    locale: Option<String>,
    event: Option<SampleEvent>,
    /// The recipient as the texts see it (`{"id", "name"}`).
    #[schema(value_type = Option<Object>)]
    recipient: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TitleBody {
    title: String,
    body: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EmailPreview {
    subject: String,
    text: Option<String>,
    html: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ChatPreview {
    text: String,
}

/// What each channel gets.
#[derive(Serialize, utoipa::ToSchema)]
struct Preview {
    /// The locale whose texts were used (a field it lacks came from the default).
    locale: String,
    in_app: TitleBody,
    email: EmailPreview,
    web_push: TitleBody,
    mobile_push: TitleBody,
    chat: ChatPreview,
}

/// Render a template with a sample event, for every channel.
#[utoipa::path(
    post, path = "/v1/templates/{template_id}/preview", tag = "templates",
    params(("template_id" = String, Path)),
    request_body = PreviewRequest,
    responses(
        (status = 200, body = Preview),
        (status = 404, body = Problem),
        (status = 422, description = "Invalid sample, or the render failed (render_failed)", body = Problem)
    ),
    security(("secret_key" = []))
)]
async fn preview(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<IdPath>,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    let id = template_id(&p)?;
    let doc = state
        .store
        .get_document(DocKind::Template, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no template '{id}'")))?;
    let def: TemplateDef = serde_json::from_str(&doc.doc)
        .map_err(|e| ApiError::Internal(format!("stored template {id}: {e}")))?;
    let locale = match req.locale {
        None => None,
        Some(l) => Some(
            belfry_core::Locale::parse(&l)
                .map_err(|e| {
                    ApiError::Validation(belfry_core::ValidationErrors::single("locale", e))
                })?
                .as_str()
                .to_string(),
        ),
    };
    let event = req.event.unwrap_or_default();
    let ctx = serde_json::json!({
        "event": {"type": event.kind, "actor": event.actor, "entity": event.entity, "data": event.data},
        "actor": event.actor,
        "entity": event.entity,
        "data": event.data,
        "recipient": req.recipient,
        "now": state.clock.now().to_rfc3339(),
    });
    let env = belfry_core::template::environment();
    let r = def
        .render_json(&env, locale.as_deref(), &ctx)
        .map_err(|e| ApiError::Unprocessable {
            code: "render_failed",
            detail: format!("the template could not be rendered: {e}"),
            errors: vec![belfry_core::FieldError {
                field: format!("locales.{}.{}", e.locale, e.field),
                message: e.message,
            }],
        })?;
    Ok(Json(Preview {
        locale: r.locale,
        in_app: TitleBody {
            title: r.title,
            body: r.body,
        },
        email: EmailPreview {
            subject: r.email_subject,
            text: r.email_text,
            html: r.email_html,
        },
        web_push: TitleBody {
            title: r.push_title.clone(),
            body: r.push_body.clone(),
        },
        mobile_push: TitleBody {
            title: r.push_title,
            body: r.push_body,
        },
        chat: ChatPreview { text: r.chat },
    }))
}
