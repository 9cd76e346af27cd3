//! Chat targets (C7), admin keys: a user's or a group's Slack incoming
//! webhook, Microsoft Teams incoming webhook (or workflow URL), and generic
//! webhook signed per the Standard Webhooks specification, one per kind:
//! `PUT|GET|DELETE /v1/users/{user_id}/channels/{kind}` and
//! `/v1/groups/{group_id}/channels/{kind}`. A user manages their own with
//! their user token under `/v1/me/channels/{kind}` (their preferred
//! channel); the same rules apply. A webhook's signing secret is
//! made here and answered once, by the PUT that stores it (every PUT of a
//! webhook makes a new one); GET never shows it.
//!
//! The URL is checked as far as it can be before anything is sent: http or
//! https, a host, no user name or password, and an address written in it
//! must be one the outbound policy allows. A host name that resolves to a
//! private address is refused when the message is sent (the delivery log
//! says so), because what a name resolves to can change.

use crate::AppState;
use crate::auth::{AdminKey, InboxOwner};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use belfry_core::{GroupId, UserId, ValidationErrors};
use belfry_store::{ChatKind, ChatOwner, ChatTarget, StoreError};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_user_targets))
        .routes(routes!(list_group_targets))
        .routes(routes!(
            get_user_target,
            put_user_target,
            delete_user_target
        ))
        .routes(routes!(
            get_group_target,
            put_group_target,
            delete_group_target
        ))
}

/// A user's own targets, with their user token.
pub(super) fn me_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/me/channels", axum::routing::get(list_user_targets))
        .route(
            "/v1/me/channels/{kind}",
            axum::routing::get(get_user_target)
                .put(put_user_target)
                .delete(delete_user_target),
        )
}

/// The longest URL accepted (Slack's and Teams' are 80 to 400 bytes).
const MAX_URL: usize = 2048;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TargetRequest {
    /// Where to post: a Slack incoming webhook
    /// (`https://hooks.slack.com/services/…`), a Teams incoming webhook or
    /// workflow URL, or any http(s) endpoint for `webhook`.
    url: Option<String>,
}

/// A chat target.
#[derive(Serialize, utoipa::ToSchema)]
struct TargetView {
    /// `slack`, `teams` or `webhook`.
    kind: ChatKind,
    url: String,
    /// The signing secret (`whsec_…`) of a webhook: only in the answer to
    /// the PUT that made it; keep it, it is not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    created_at: String,
    updated_at: String,
}

impl TargetView {
    fn of(t: ChatTarget, show_secret: bool) -> TargetView {
        TargetView {
            kind: t.kind,
            url: t.url,
            secret: t
                .secret
                .filter(|_| show_secret)
                .map(|s| s.expose_secret().to_string()),
            created_at: t.created_at.to_rfc3339(),
            updated_at: t.updated_at.to_rfc3339(),
        }
    }
}

/// An owner's chat targets (one per kind at most), secrets not shown.
#[derive(Serialize, utoipa::ToSchema)]
struct TargetList {
    /// In the order slack, teams, webhook; kinds not set are absent.
    items: Vec<TargetView>,
}

/// The kind of `/v1/users/{user_id}/channels/{kind}` or
/// `/v1/me/channels/{kind}` (the user is [`InboxOwner`]'s).
#[derive(Deserialize)]
struct UserPath {
    kind: String,
}

#[derive(Deserialize)]
struct GroupIdPath {
    group_id: String,
}

#[derive(Deserialize)]
struct GroupPath {
    group_id: String,
    kind: String,
}

fn kind(value: &str) -> ApiResult<ChatKind> {
    ChatKind::parse(value).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_path",
            format!(
                "'{}' is not a chat channel kind; use slack, teams or webhook",
                value.escape_debug()
            ),
        )
    })
}

fn user_owner(user: UserId, p: &UserPath) -> ApiResult<(ChatOwner, ChatKind)> {
    Ok((ChatOwner::User(user), kind(&p.kind)?))
}

fn group_owner(p: &GroupPath) -> ApiResult<(ChatOwner, ChatKind)> {
    let group =
        GroupId::parse(&p.group_id).map_err(|e| ApiError::bad_request("invalid_path", e))?;
    Ok((ChatOwner::Group(group), kind(&p.kind)?))
}

fn describe(owner: &ChatOwner) -> String {
    match owner {
        ChatOwner::User(u) => format!("user {u}"),
        ChatOwner::Group(g) => format!("group {g}"),
    }
}

fn owner_missing(owner: &ChatOwner) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("there is no {}", describe(owner))),
        other => other.into(),
    }
}

/// Checks the URL of a target.
fn validate(req: TargetRequest, outbound: &belfry_delivery::OutboundPolicy) -> ApiResult<String> {
    let mut errors = ValidationErrors::new();
    match req.url.as_deref().map(str::trim) {
        None | Some("") => errors.add("url", "is required: the http(s) URL to post to"),
        Some(u) if u.len() > MAX_URL => {
            errors.add("url", format!("is longer than {MAX_URL} characters"))
        }
        Some(u) => match url::Url::parse(u) {
            Err(e) => errors.add("url", format!("is not a URL ({e})")),
            Ok(url) if !matches!(url.scheme(), "https" | "http") => {
                errors.add("url", "must be an https (or http) URL")
            }
            Ok(url) if url.host().is_none() => errors.add("url", "has no host"),
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                errors.add("url", "must not carry a user name or password")
            }
            Ok(url) => match outbound.check_url(&url) {
                Err(refused) => errors.add("url", refused.0),
                Ok(()) => return Ok(u.to_string()),
            },
        },
    }
    Err(ApiError::Validation(errors))
}

async fn put_target(
    state: &AppState,
    owner: ChatOwner,
    kind: ChatKind,
    req: TargetRequest,
) -> ApiResult<Response> {
    let url = validate(req, &state.config.outbound)?;
    let secret = (kind == ChatKind::Webhook).then(belfry_delivery::chat::new_webhook_secret);
    let (stored, created) = state
        .store
        .put_chat_target(&owner, kind, url, secret, state.clock.now())
        .await
        .map_err(owner_missing(&owner))?;
    tracing::info!(owner = %describe(&owner), kind = kind.as_str(), created, "chat target stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(TargetView::of(stored, true))).into_response())
}

async fn get_target(
    state: &AppState,
    owner: ChatOwner,
    kind: ChatKind,
) -> ApiResult<Json<TargetView>> {
    let targets = state
        .store
        .chat_targets(&owner)
        .await
        .map_err(owner_missing(&owner))?;
    match targets.into_iter().find(|t| t.kind == kind) {
        Some(t) => Ok(Json(TargetView::of(t, false))),
        None => Err(ApiError::NotFound(format!(
            "{} has no {} target",
            describe(&owner),
            kind.as_str()
        ))),
    }
}

async fn list_targets(state: &AppState, owner: ChatOwner) -> ApiResult<Json<TargetList>> {
    let mut items = state
        .store
        .chat_targets(&owner)
        .await
        .map_err(owner_missing(&owner))?;
    items.sort_by_key(|t| t.kind.as_str());
    Ok(Json(TargetList {
        items: items
            .into_iter()
            .map(|t| TargetView::of(t, false))
            .collect(),
    }))
}

async fn delete_target(
    state: &AppState,
    owner: ChatOwner,
    kind: ChatKind,
) -> ApiResult<StatusCode> {
    if state
        .store
        .delete_chat_target(&owner, kind)
        .await
        .map_err(owner_missing(&owner))?
    {
        tracing::info!(owner = %describe(&owner), kind = kind.as_str(), "chat target removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "{} has no {} target",
            describe(&owner),
            kind.as_str()
        )))
    }
}

/// A user's chat targets (a webhook's secret is not shown).
///
/// A user reads their own with their user token at `/v1/me/channels`.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/channels", tag = "chat",
    params(("user_id" = String, Path)),
    responses((status = 200, body = TargetList), (status = 404, description = "No such user", body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(user = %user))]
async fn list_user_targets(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<Json<TargetList>> {
    list_targets(&state, ChatOwner::User(user)).await
}

/// A group's chat targets (a webhook's secret is not shown).
#[utoipa::path(
    get, path = "/v1/groups/{group_id}/channels", tag = "chat",
    params(("group_id" = String, Path)),
    responses((status = 200, body = TargetList), (status = 404, description = "No such group", body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(group = %p.group_id))]
async fn list_group_targets(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<GroupIdPath>,
) -> ApiResult<Json<TargetList>> {
    let group =
        GroupId::parse(&p.group_id).map_err(|e| ApiError::bad_request("invalid_path", e))?;
    list_targets(&state, ChatOwner::Group(group)).await
}

/// Set a user's chat target of one kind (their own Slack, Teams or webhook).
///
/// Replaces the user's target of that kind. A user sets their own with
/// their user token under `/v1/me/channels/{kind}`. For `webhook`, the answer
/// carries the signing secret (`whsec_…`), once; each PUT makes a new one.
#[utoipa::path(
    put, path = "/v1/users/{user_id}/channels/{kind}", tag = "chat",
    params(("user_id" = String, Path), ("kind" = ChatKind, Path)),
    request_body = TargetRequest,
    responses(
        (status = 201, description = "Stored", body = TargetView),
        (status = 200, description = "Replaced", body = TargetView),
        (status = 404, description = "No such user", body = Problem),
        (status = 422, description = "Not a valid URL", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(user = %user, kind = %p.kind))]
async fn put_user_target(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    Path(p): Path<UserPath>,
    ApiJson(req): ApiJson<TargetRequest>,
) -> ApiResult<Response> {
    let (owner, kind) = user_owner(user, &p)?;
    put_target(&state, owner, kind, req).await
}

/// A user's chat target of one kind (a webhook's secret is not shown).
#[utoipa::path(
    get, path = "/v1/users/{user_id}/channels/{kind}", tag = "chat",
    params(("user_id" = String, Path), ("kind" = ChatKind, Path)),
    responses((status = 200, body = TargetView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(user = %user, kind = %p.kind))]
async fn get_user_target(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    Path(p): Path<UserPath>,
) -> ApiResult<Json<TargetView>> {
    let (owner, kind) = user_owner(user, &p)?;
    get_target(&state, owner, kind).await
}

/// Remove a user's chat target of one kind.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}/channels/{kind}", tag = "chat",
    params(("user_id" = String, Path), ("kind" = ChatKind, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(user = %user, kind = %p.kind))]
async fn delete_user_target(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    Path(p): Path<UserPath>,
) -> ApiResult<StatusCode> {
    let (owner, kind) = user_owner(user, &p)?;
    delete_target(&state, owner, kind).await
}

/// Set a group's chat target of one kind (the group's channel).
///
/// A notification to the group (audience `groups`) on the chat channel is
/// posted once to each of the group's targets, not once per member. For
/// `webhook`, the answer carries the signing secret (`whsec_…`), once.
#[utoipa::path(
    put, path = "/v1/groups/{group_id}/channels/{kind}", tag = "chat",
    params(("group_id" = String, Path), ("kind" = ChatKind, Path)),
    request_body = TargetRequest,
    responses(
        (status = 201, description = "Stored", body = TargetView),
        (status = 200, description = "Replaced", body = TargetView),
        (status = 404, description = "No such group", body = Problem),
        (status = 422, description = "Not a valid URL", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(group = %p.group_id, kind = %p.kind))]
async fn put_group_target(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<GroupPath>,
    ApiJson(req): ApiJson<TargetRequest>,
) -> ApiResult<Response> {
    let (owner, kind) = group_owner(&p)?;
    put_target(&state, owner, kind, req).await
}

/// A group's chat target of one kind (a webhook's secret is not shown).
#[utoipa::path(
    get, path = "/v1/groups/{group_id}/channels/{kind}", tag = "chat",
    params(("group_id" = String, Path), ("kind" = ChatKind, Path)),
    responses((status = 200, body = TargetView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(group = %p.group_id, kind = %p.kind))]
async fn get_group_target(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<GroupPath>,
) -> ApiResult<Json<TargetView>> {
    let (owner, kind) = group_owner(&p)?;
    get_target(&state, owner, kind).await
}

/// Remove a group's chat target of one kind.
#[utoipa::path(
    delete, path = "/v1/groups/{group_id}/channels/{kind}", tag = "chat",
    params(("group_id" = String, Path), ("kind" = ChatKind, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all, fields(group = %p.group_id, kind = %p.kind))]
async fn delete_group_target(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<GroupPath>,
) -> ApiResult<StatusCode> {
    let (owner, kind) = group_owner(&p)?;
    delete_target(&state, owner, kind).await
}
