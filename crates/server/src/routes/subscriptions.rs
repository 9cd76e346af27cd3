//! Entity subscriptions: who follows ticket 123, so that a notification sent
//! to `{"entity": {"type": "ticket", "id": "123"}}` reaches them.

use crate::AppState;
use crate::auth::{AdminKey, SendKey};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::OptionalJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use belfry_core::{EmailAddress, EntityRef, Locale, UserId, ValidationErrors};
use belfry_store::{ContactProfile, StoreError, Subscriber, Subscription};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subscribe_user, unsubscribe_user))
        .routes(routes!(subscribe_email, unsubscribe_email))
        .routes(routes!(subscribers))
        .routes(routes!(subscriptions_of))
}

#[derive(Deserialize)]
struct EntityPath {
    entity_type: String,
    entity_id: String,
}

#[derive(Deserialize)]
struct UserSubPath {
    entity_type: String,
    entity_id: String,
    user_id: String,
}

#[derive(Deserialize)]
struct EmailSubPath {
    entity_type: String,
    entity_id: String,
    email: String,
}

fn entity(kind: &str, id: &str) -> ApiResult<EntityRef> {
    EntityRef::parse(kind, id).map_err(|e| ApiError::bad_request("invalid_path", e))
}

fn user(id: &str) -> ApiResult<UserId> {
    UserId::parse(id).map_err(|e| ApiError::bad_request("invalid_path", e))
}

fn email(address: &str) -> ApiResult<EmailAddress> {
    EmailAddress::parse(address).map_err(|e| ApiError::bad_request("invalid_path", e))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Subscribed {
    /// False when the subscription already existed.
    created: bool,
}

async fn put(state: &AppState, entity: EntityRef, who: Subscriber) -> ApiResult<Json<Subscribed>> {
    let name = match &who {
        Subscriber::User(u) => u.to_string(),
        Subscriber::Email(e) => e.to_string(),
    };
    match state.store.subscribe(&entity, who, state.clock.now()).await {
        Ok(created) => Ok(Json(Subscribed { created })),
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!(
            "there is no user {name}; create it with PUT /v1/users/{name} first"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Subscribe a user to an entity.
#[utoipa::path(
    put, path = "/v1/subscriptions/{entity_type}/{entity_id}/users/{user_id}", tag = "subscriptions",
    params(("entity_type" = String, Path), ("entity_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = Subscribed), (status = 404, body = Problem), (status = 400, body = Problem)),
    security(("secret_key" = []))
)]
async fn subscribe_user(
    State(state): State<AppState>,
    SendKey(_): SendKey,
    Path(p): Path<UserSubPath>,
) -> ApiResult<Json<Subscribed>> {
    let e = entity(&p.entity_type, &p.entity_id)?;
    put(&state, e, Subscriber::User(user(&p.user_id)?)).await
}

/// Unsubscribe a user (204 also when there was no subscription).
#[utoipa::path(
    delete, path = "/v1/subscriptions/{entity_type}/{entity_id}/users/{user_id}", tag = "subscriptions",
    params(("entity_type" = String, Path), ("entity_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204, description = "Not subscribed any more")),
    security(("secret_key" = []))
)]
async fn unsubscribe_user(
    State(state): State<AppState>,
    SendKey(_): SendKey,
    Path(p): Path<UserSubPath>,
) -> ApiResult<StatusCode> {
    let e = entity(&p.entity_type, &p.entity_id)?;
    state
        .store
        .unsubscribe(&e, Subscriber::User(user(&p.user_id)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An external contact's details, given when they subscribe (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ContactRequest {
    /// The language of their emails, a BCP 47 tag such as `de` or `pt-BR`
    /// (emails are written in German or English; other languages fall
    /// back to English). Kept per address: the latest one given wins.
    locale: Option<String>,
    /// How their emails greet them (at most 200 characters).
    name: Option<String>,
}

impl ContactRequest {
    fn validate(self) -> Result<Option<ContactProfile>, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let locale = self
            .locale
            .and_then(|l| e.take("locale", Locale::parse(&l)));
        let name = self
            .name
            .and_then(|n| e.take("name", belfry_core::validation::text(&n, 200, true)));
        let given = locale.is_some() || name.is_some();
        e.finish(given.then_some(ContactProfile { name, locale }))
    }
}

/// Subscribe an email address to an entity.
///
/// At send time the address reaches the user who has it, or else an
/// external contact (who has no inbox and is reached by email). The
/// optional body gives the contact's language and name (C9): their emails
/// are written in it.
#[utoipa::path(
    put, path = "/v1/subscriptions/{entity_type}/{entity_id}/emails/{email}", tag = "subscriptions",
    params(("entity_type" = String, Path), ("entity_id" = String, Path), ("email" = String, Path)),
    request_body(content = Option<ContactRequest>, description = "Optional: the contact's `locale` and `name`"),
    responses((status = 200, body = Subscribed), (status = 400, body = Problem), (status = 422, body = Problem)),
    security(("secret_key" = []))
)]
async fn subscribe_email(
    State(state): State<AppState>,
    SendKey(_): SendKey,
    Path(p): Path<EmailSubPath>,
    OptionalJson(body): OptionalJson<ContactRequest>,
) -> ApiResult<Json<Subscribed>> {
    let e = entity(&p.entity_type, &p.entity_id)?;
    let address = email(&p.email)?;
    let profile = body.validate().map_err(ApiError::Validation)?;
    if let Some(profile) = profile {
        state
            .store
            .put_contact(&address, profile, state.clock.now())
            .await?;
    }
    put(&state, e, Subscriber::Email(address)).await
}

/// Unsubscribe an email address (204 also when there was no subscription).
#[utoipa::path(
    delete, path = "/v1/subscriptions/{entity_type}/{entity_id}/emails/{email}", tag = "subscriptions",
    params(("entity_type" = String, Path), ("entity_id" = String, Path), ("email" = String, Path)),
    responses((status = 204, description = "Not subscribed any more")),
    security(("secret_key" = []))
)]
async fn unsubscribe_email(
    State(state): State<AppState>,
    SendKey(_): SendKey,
    Path(p): Path<EmailSubPath>,
) -> ApiResult<StatusCode> {
    let e = entity(&p.entity_type, &p.entity_id)?;
    state
        .store
        .unsubscribe(&e, Subscriber::Email(email(&p.email)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct SubscriptionList {
    items: Vec<Subscription>,
}

/// The subscribers of an entity.
#[utoipa::path(
    get, path = "/v1/subscriptions/{entity_type}/{entity_id}", tag = "subscriptions",
    params(("entity_type" = String, Path), ("entity_id" = String, Path)),
    responses((status = 200, body = SubscriptionList)),
    security(("secret_key" = []))
)]
async fn subscribers(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(p): Path<EntityPath>,
) -> ApiResult<Json<SubscriptionList>> {
    let e = entity(&p.entity_type, &p.entity_id)?;
    Ok(Json(SubscriptionList {
        items: state.store.subscribers(&e).await?,
    }))
}

/// What a user follows (by user id or by their email address).
#[utoipa::path(
    get, path = "/v1/users/{user_id}/subscriptions", tag = "subscriptions",
    params(("user_id" = String, Path)),
    responses((status = 200, body = SubscriptionList), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn subscriptions_of(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Json<SubscriptionList>> {
    let u = user(&id)?;
    match state.store.subscriptions_of(&u).await {
        Ok(items) => Ok(Json(SubscriptionList { items })),
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!("there is no user {u}"))),
        Err(e) => Err(e.into()),
    }
}
