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
    OpenApiRouter::new()
        .routes(routes!(answer))
        .routes(routes!(answer_page, answer_by_link))
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
    let (receipt, _) = record(&state, &user, &p.id, &p.action_id, req.values).await?;
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

/// Checks and stores one answer: the action and its form come from the
/// notification as it was sent. Also answers the action's label.
async fn record(
    state: &AppState,
    user: &belfry_core::UserId,
    id: &str,
    action_id: &str,
    values: Option<serde_json::Value>,
) -> ApiResult<(belfry_store::AnswerReceipt, String)> {
    let missing = || ApiError::NotFound(format!("there is no notification {} in this inbox", id));
    let record = state
        .store
        .get_notification(id)
        .await?
        .ok_or_else(missing)?;
    let content: Content = serde_json::from_str(&record.content_json)
        .map_err(|e| ApiError::Internal(format!("stored content of {}: {e}", id)))?;
    let action = content
        .actions
        .iter()
        .find(|a| a.id == action_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "notification {} has no action '{}'",
                id,
                action_id.escape_debug()
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
    let values = check_answer(action.form.as_ref(), values).map_err(ApiError::Validation)?;
    let answer = NewAnswer {
        notification: id.to_string(),
        action: action.id.clone(),
        label: action.label.clone(),
        once: action.once,
        values: serde_json::Value::Object(values).to_string(),
        response_id: ulid::Ulid::new().to_string(),
        at: state.clock.now(),
    };
    let receipt = match state.store.answer_action(user, answer).await {
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
    Ok((receipt, action.label.clone()))
}

/// The words of the answer pages, in the email's language.
struct Words {
    lang: &'static str,
    /// `{label}`, `{title}`.
    question: &'static str,
    done: &'static str,
    taken: &'static str,
    gone: &'static str,
}

fn words(language: &str) -> Words {
    match language {
        "de" => Words {
            lang: "de",
            question: "„{label}“ für „{title}“ senden?",
            done: "Ihre Antwort „{label}“ ist angekommen.",
            taken: "Darauf wurde schon geantwortet: {detail}",
            gone: "Diese Benachrichtigung gibt es nicht mehr.",
        },
        _ => Words {
            lang: "en",
            question: "Send “{label}” for “{title}”?",
            done: "Your answer “{label}” was recorded.",
            taken: "This was answered already: {detail}",
            gone: "This notification is no longer there.",
        },
    }
}

fn read_link(
    state: &AppState,
    token: &str,
) -> ApiResult<(belfry_delivery::access::AnswerLink, Words)> {
    let (link, language) = state.unsubscribe.read_answer(token).ok_or_else(|| {
        ApiError::NotFound(
            "this answer link is not valid (cut short, or not from this server)".into(),
        )
    })?;
    Ok((link, words(&language)))
}

/// The page of a one-click answer link in an email: it asks, with a
/// button that POSTs (a GET answers nothing, so link scanners and
/// previews approve nothing).
#[utoipa::path(
    get, path = "/v1/answer/{token}", tag = "inbox",
    params(("token" = String, Path, description = "The signed token of the email's link")),
    responses((status = 200, description = "An HTML page with the button", content_type = "text/html"), (status = 404, body = Problem))
)]
async fn answer_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    use super::access::{escape, html_page};
    let (link, w) = read_link(&state, &token)?;
    let record = state.store.get_notification(&link.notification).await?;
    let found = record.and_then(|r| {
        let c: Content = serde_json::from_str(&r.content_json).ok()?;
        let a = c.actions.iter().find(|a| a.id == link.action)?.clone();
        Some((c.title, a.label))
    });
    let Some((title, label)) = found else {
        return Ok(html_page(w.lang, "Belfry", &format!("<p>{}</p>", w.gone)));
    };
    Ok(html_page(
        w.lang,
        &escape(&title),
        &format!(
            "<p>{}</p>\n<form method=\"post\">\n\
             <button type=\"submit\" style=\"font-size:1rem;padding:.5rem 1rem;\">{}</button>\n</form>",
            w.question
                .replace("{label}", &escape(&label))
                .replace("{title}", &escape(&title)),
            escape(&label)
        ),
    ))
}

/// A one-click answer from an email (no credentials: the token is signed
/// and names the user, the notification and the action, a callback
/// without a form). Recorded like an answer in the application; the page
/// says what happened.
#[utoipa::path(
    post, path = "/v1/answer/{token}", tag = "inbox",
    params(("token" = String, Path, description = "The signed token of the email's link")),
    responses(
        (status = 200, description = "An HTML page saying what happened: recorded, answered already (by whom), or no longer there", content_type = "text/html"),
        (status = 404, description = "Not a link Belfry signed", body = Problem)
    )
)]
#[tracing::instrument(skip_all)]
async fn answer_by_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    use super::access::{escape, html_page};
    let (link, w) = read_link(&state, &token)?;
    // A person reads the outcome: the page says it (always 200, like the
    // unsubscribe pages).
    let page = |text: String| html_page(w.lang, "Belfry", &format!("<p>{text}</p>"));
    match record(&state, &link.user, &link.notification, &link.action, None).await {
        Ok((_, label)) => Ok(page(w.done.replace("{label}", &escape(&label)))),
        Err(ApiError::ConflictWith { detail, .. }) => {
            Ok(page(w.taken.replace("{detail}", &escape(&detail))))
        }
        Err(ApiError::NotFound(_)) => Ok(page(w.gone.to_string())),
        Err(e) => Err(e),
    }
}
