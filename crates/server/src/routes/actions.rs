//! Answering a notification's callback actions (I7):
//! `POST /v1/me/notifications/{id}/actions/{action_id}` with the form's
//! values (user token; `/v1/users/{user_id}/…` for admin keys answering
//! for a user). The action and its form come from the notification as it
//! was sent; the answer is checked against the form (422 naming each
//! field), stored, and, for a `once` action, the first answer wins (409
//! `already_answered` for the others) and every recipient's item shows it
//! live.

use crate::AppState;
use crate::auth::InboxOwner;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::OptionalJson;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use belfry_core::action::check_answer;
use belfry_core::{ActionKind, Content};
use belfry_store::{Constraint, NewAnswer, StoreError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(answer))
}

/// The same endpoint for admin keys, under `/v1/users/{user_id}`.
pub(super) fn mirror_routes() -> Router<AppState> {
    Router::new().route(
        "/v1/users/{user_id}/notifications/{id}/actions/{action_id}",
        post(answer),
    )
}

#[derive(Deserialize)]
struct AnswerPath {
    id: String,
    action_id: String,
}

/// An answer: the values of the action's form (none for an action without one).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AnswerRequest {
    /// The form's field names and their values: strings for text,
    /// textarea, select (an option's value) and date (`YYYY-MM-DD`), true
    /// or false for a checkbox.
    #[schema(value_type = Option<Object>)]
    values: Option<serde_json::Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AnswerAccepted {
    /// The answer's id; the `action.submitted` webhook carries it.
    response_id: String,
    /// For a `once` action: what every recipient's item now shows
    /// (`{"action", "label", "by": {"id", "name"}, "at"}`); else null.
    #[schema(value_type = Option<Object>)]
    answered: Option<serde_json::Value>,
}

/// Answer a callback action of a notification.
///
/// The values are checked against the action's form; an action without a
/// form takes none. A `once` action is answered once for everyone: the
/// first answer wins, later ones get 409 `already_answered`, and every
/// recipient's item shows `answered` (live, as a `state` event).
#[utoipa::path(
    post, path = "/v1/me/notifications/{id}/actions/{action_id}", tag = "inbox",
    params(("id" = String, Path), ("action_id" = String, Path)),
    request_body(content = Option<AnswerRequest>),
    responses(
        (status = 202, description = "Recorded", body = AnswerAccepted),
        (status = 404, description = "No such notification in this inbox, or no such action", body = Problem),
        (status = 409, description = "A once action answered already", body = Problem),
        (status = 422, description = "The values do not fit the form, or the action is a link", body = Problem)
    ),
    security(("user_token" = []))
)]
#[tracing::instrument(skip_all, fields(user = %user, notification = %p.id, action = %p.action_id))]
async fn answer(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    Path(p): Path<AnswerPath>,
    OptionalJson(req): OptionalJson<AnswerRequest>,
) -> ApiResult<Response> {
    let missing = || ApiError::NotFound(format!("there is no notification {} in this inbox", p.id));
    let record = state
        .store
        .get_notification(&p.id)
        .await?
        .ok_or_else(missing)?;
    let content: Content = serde_json::from_str(&record.content_json)
        .map_err(|e| ApiError::Internal(format!("stored content of {}: {e}", p.id)))?;
    let action = content
        .actions
        .iter()
        .find(|a| a.id == p.action_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "notification {} has no action '{}'",
                p.id,
                p.action_id.escape_debug()
            ))
        })?;
    if action.kind == ActionKind::Link {
        return Err(ApiError::Unprocessable {
            code: "not_a_callback",
            detail: format!(
                "action '{}' is a link: the client opens its url; only callback actions are answered",
                action.id
            ),
            errors: vec![],
        });
    }
    let values = check_answer(action.form.as_ref(), req.values).map_err(ApiError::Validation)?;
    let answer = NewAnswer {
        notification: p.id.clone(),
        action: action.id.clone(),
        label: action.label.clone(),
        once: action.once,
        values: serde_json::Value::Object(values).to_string(),
        response_id: ulid::Ulid::new().to_string(),
        at: state.clock.now(),
    };
    let receipt = match state.store.answer_action(&user, answer).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(missing()),
        Err(StoreError::Conflict {
            constraint: Constraint::AlreadyAnswered { answered },
        }) => {
            let by = serde_json::from_str::<serde_json::Value>(&answered).unwrap_or_default();
            let who = by["by"]["name"]
                .as_str()
                .or(by["by"]["id"].as_str())
                .unwrap_or("someone");
            return Err(ApiError::ConflictWith {
                code: "already_answered",
                detail: format!(
                    "this notification was answered already ({} by {who}); only the first answer counts",
                    by["label"].as_str().unwrap_or("answered")
                ),
            });
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(response = %receipt.response_id, once = action.once, "action answered");
    metrics::counter!("belfry_action_answers_total", "once" => if action.once { "true" } else { "false" })
        .increment(1);
    let answered = receipt
        .answered
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok());
    Ok((
        StatusCode::ACCEPTED,
        Json(AnswerAccepted {
            response_id: receipt.response_id,
            answered,
        }),
    )
        .into_response())
}
