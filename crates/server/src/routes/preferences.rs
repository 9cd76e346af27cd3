//! Preferences: a user's own (`/v1/me/preferences`, user token), any
//! user's (`/v1/users/{user_id}/preferences`, admin key) and the defaults
//! every user starts from (`/v1/preferences/defaults`, admin key). Reads
//! answer what applies (defaults overlaid with the user's choices); writes
//! are merge patches (`belfry_core::preferences::Overrides::patch`).

use crate::AppState;
use crate::auth::{AdminKey, InboxOwner};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::State;
use belfry_core::preferences::{ChannelOverride, Effective, Overrides, PatchError};
use belfry_core::{Category, CategoryDefaults, EmailMode, UserId};
use belfry_store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_mine, put_mine))
        .routes(routes!(get_user, put_user))
        .routes(routes!(get_defaults, put_defaults))
}

/// The channel switches; in-app is always on.
#[derive(Serialize, utoipa::ToSchema)]
struct ChannelsView {
    email: bool,
    web_push: bool,
    mobile_push: bool,
    chat: bool,
}

/// Choices for one category or source; a channel left out follows the
/// defaults.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OverrideView {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<EmailMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    web_push: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mobile_push: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<bool>,
}

impl From<&ChannelOverride> for OverrideView {
    fn from(o: &ChannelOverride) -> Self {
        OverrideView {
            email: o.email,
            web_push: o.web_push,
            mobile_push: o.mobile_push,
            chat: o.chat,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct DigestView {
    /// Local time of day of the daily digest, `HH:MM`.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    time: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct QuietHoursView {
    /// `HH:MM`, local.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    start: String,
    /// `HH:MM`, local; the next day when not after `start`.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    end: String,
    /// Days on which quiet hours start (default: every day).
    #[schema(inline)]
    days: Vec<Day>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AvailableCategory {
    id: String,
    name: String,
    icon: Option<String>,
    /// Cannot be switched off.
    critical: bool,
    /// What applies to the category's channels while neither the user nor
    /// the administrator's defaults choose for it (the widget shows it).
    defaults: CategoryDefaults,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AvailableSource {
    id: String,
    name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Available {
    categories: Vec<AvailableCategory>,
    /// The sources that have a choice (in these preferences or the
    /// defaults); sources are not registered yet.
    sources: Vec<AvailableSource>,
}

/// What applies: the defaults overlaid with the user's own choices.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PreferencesView {
    /// The master switch; in-app stays on regardless.
    enabled: bool,
    channels: ChannelsView,
    /// Per category (only those with a choice).
    categories: BTreeMap<String, OverrideView>,
    /// Per source (only those with a choice).
    sources: BTreeMap<String, OverrideView>,
    digest: DigestView,
    quiet_hours: Option<QuietHoursView>,
    /// The user's time zone (from the user record; null: UTC is used, and
    /// always null for the defaults).
    timezone: Option<String>,
    available: Available,
}

/// A merge patch: fields left out are kept, `null` clears a choice back to
/// the default. In-app cannot be switched; critical categories cannot be
/// switched off (422 `critical_category`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PreferencesUpdate {
    enabled: Option<bool>,
    #[schema(inline)]
    channels: Option<ChannelsUpdate>,
    /// Keys are existing category ids; each value is an object like
    /// `{"email": "instant"|"digest"|"off"|null, "web_push": true|false|null,
    /// "mobile_push": …, "chat": …}`, or null to clear the category's choices.
    #[schema(value_type = Option<Object>)]
    categories: Option<BTreeMap<String, Option<OverrideView>>>,
    /// Keys are source ids (1 to 64 of a-z 0-9 - _ .); values as for `categories`.
    #[schema(value_type = Option<Object>)]
    sources: Option<BTreeMap<String, Option<OverrideView>>>,
    #[schema(inline)]
    digest: Option<DigestUpdate>,
    #[schema(inline)]
    quiet_hours: Option<QuietHoursUpdate>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DigestUpdate {
    /// `HH:MM`, local; null: back to the default.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    time: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct QuietHoursUpdate {
    /// `HH:MM`, local.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    start: String,
    /// `HH:MM`, local, different from `start`; the next day when not after it.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    end: String,
    /// Days on which quiet hours start; left out: every day.
    #[schema(inline)]
    days: Option<Vec<Day>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ChannelsUpdate {
    email: Option<bool>,
    web_push: Option<bool>,
    mobile_push: Option<bool>,
    chat: Option<bool>,
}

fn view(
    effective: &Effective,
    timezone: Option<String>,
    categories: &HashMap<Category, std::sync::Arc<belfry_core::CategoryDef>>,
    named_sources: BTreeSet<String>,
) -> PreferencesView {
    let overrides = |m: &BTreeMap<Category, ChannelOverride>| {
        m.iter()
            .map(|(k, v)| (k.as_str().to_string(), OverrideView::from(v)))
            .collect()
    };
    let mut available: Vec<AvailableCategory> = categories
        .values()
        .map(|c| AvailableCategory {
            id: c.id.as_str().to_string(),
            name: c.name.clone(),
            icon: c.icon.clone(),
            critical: c.critical,
            defaults: c.defaults,
        })
        .collect();
    available.sort_by(|a, b| a.id.cmp(&b.id));
    PreferencesView {
        enabled: effective.enabled,
        channels: ChannelsView {
            email: effective.channels.email,
            web_push: effective.channels.web_push,
            mobile_push: effective.channels.mobile_push,
            chat: effective.channels.chat,
        },
        categories: overrides(&effective.categories),
        sources: overrides(&effective.sources),
        digest: DigestView {
            time: effective.digest.time.to_string(),
        },
        quiet_hours: effective.quiet_hours.as_ref().map(|q| QuietHoursView {
            start: q.start.to_string(),
            end: q.end.to_string(),
            days: q
                .days
                .iter()
                .filter_map(|d| serde_json::from_value(serde_json::Value::String(d.clone())).ok())
                .collect(),
        }),
        timezone,
        available: Available {
            categories: available,
            sources: named_sources
                .into_iter()
                .map(|id| AvailableSource {
                    name: id.clone(),
                    id,
                })
                .collect(),
        },
    }
}

fn sources_of(a: &Overrides, b: &Overrides) -> BTreeSet<String> {
    a.sources
        .keys()
        .chain(b.sources.keys())
        .map(|k| k.as_str().to_string())
        .collect()
}

fn no_such_user(user: &UserId) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("there is no user {user}")),
        other => other.into(),
    }
}

fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::Invalid(e) => ApiError::Validation(e),
        PatchError::Critical(e) => ApiError::Unprocessable {
            code: "critical_category",
            detail: e.to_string(),
            errors: e.0,
        },
    }
}

async fn read_user(state: &AppState, user: &UserId) -> ApiResult<PreferencesView> {
    let p = state
        .store
        .preferences(user)
        .await
        .map_err(no_such_user(user))?;
    let categories = state.categories.current().await?;
    Ok(view(
        &Effective::of(&p.defaults, &p.overrides),
        p.timezone.map(|t| t.as_str().to_string()),
        &categories,
        sources_of(&p.defaults, &p.overrides),
    ))
}

async fn critical_map(state: &AppState) -> ApiResult<HashMap<Category, bool>> {
    Ok(state
        .categories
        .current()
        .await?
        .iter()
        .map(|(k, v)| (k.clone(), v.critical))
        .collect())
}

async fn write_user(
    state: &AppState,
    user: &UserId,
    body: serde_json::Value,
) -> ApiResult<PreferencesView> {
    let mut p = state
        .store
        .preferences(user)
        .await
        .map_err(no_such_user(user))?;
    p.overrides
        .patch(&body, &critical_map(state).await?)
        .map_err(patch_error)?;
    let effective = Effective::of(&p.defaults, &p.overrides);
    state
        .store
        .put_preferences(user, p.overrides, state.clock.now())
        .await
        .map_err(no_such_user(user))?;
    // Choosing digest mode (or another digest time) queues or moves the
    // user's digest job; one who no longer takes a digest keeps theirs
    // until it runs and ends itself.
    let categories: Vec<_> = state
        .categories
        .current()
        .await?
        .values()
        .map(|c| c.as_ref().clone())
        .collect();
    if belfry_store::uses_digest(&effective, &categories) {
        belfry_delivery::engine::schedule_digest(
            state.store.as_ref(),
            user,
            true,
            state.clock.now(),
        )
        .await
        .map_err(no_such_user(user))?;
    }
    read_user(state, user).await
}

/// Your preferences.
///
/// What applies to you: the administrator's defaults overlaid with your own
/// choices, the categories and sources you can choose for, and your time
/// zone (quiet hours and the digest time are in it).
#[utoipa::path(
    get, path = "/v1/me/preferences", tag = "preferences",
    responses((status = 200, body = PreferencesView)),
    security(("user_token" = []))
)]
async fn get_mine(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<Json<PreferencesView>> {
    read_user(&state, &user).await.map(Json)
}

/// Change your preferences.
///
/// A merge patch: fields left out are kept; `null` clears a choice back to
/// the default (`{"categories": {"mention": null}}`, `{"quiet_hours": null}`).
/// Unknown categories, channels or fields and malformed times are 422 with
/// the field's path; switching a critical category off is 422
/// `critical_category`. Answers what applies afterwards.
#[utoipa::path(
    put, path = "/v1/me/preferences", tag = "preferences",
    request_body = PreferencesUpdate,
    responses((status = 200, body = PreferencesView), (status = 422, body = Problem)),
    security(("user_token" = []))
)]
#[tracing::instrument(skip_all)]
async fn put_mine(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<PreferencesView>> {
    write_user(&state, &user, body).await.map(Json)
}

/// A user's preferences (admin).
#[utoipa::path(
    get, path = "/v1/users/{user_id}/preferences", tag = "preferences",
    params(("user_id" = String, Path)),
    responses((status = 200, body = PreferencesView), (status = 404, body = Problem)),
    security(("secret_key" = []))
)]
async fn get_user(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<Json<PreferencesView>> {
    read_user(&state, &user).await.map(Json)
}

/// Change a user's preferences (admin); as `PUT /v1/me/preferences`.
#[utoipa::path(
    put, path = "/v1/users/{user_id}/preferences", tag = "preferences",
    params(("user_id" = String, Path)),
    request_body = PreferencesUpdate,
    responses(
        (status = 200, body = PreferencesView),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn put_user(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<PreferencesView>> {
    write_user(&state, &user, body).await.map(Json)
}

pub(super) async fn read_defaults(state: &AppState) -> ApiResult<PreferencesView> {
    let d = state.store.preference_defaults().await?;
    let categories = state.categories.current().await?;
    Ok(view(
        &Effective::of(&d, &Overrides::default()),
        None,
        &categories,
        sources_of(&d, &Overrides::default()),
    ))
}

/// The defaults (admin): what a user without choices of their own gets.
#[utoipa::path(
    get, path = "/v1/preferences/defaults", tag = "preferences",
    responses((status = 200, body = PreferencesView)),
    security(("secret_key" = []))
)]
async fn get_defaults(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<PreferencesView>> {
    read_defaults(&state).await.map(Json)
}

/// Change the defaults (admin).
///
/// The same merge patch as a user's; users' own choices stay and win.
#[utoipa::path(
    put, path = "/v1/preferences/defaults", tag = "preferences",
    request_body = PreferencesUpdate,
    responses((status = 200, body = PreferencesView), (status = 422, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn put_defaults(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<PreferencesView>> {
    patch_defaults(&state, &body).await?;
    read_defaults(&state).await.map(Json)
}

/// Applies a merge patch to the defaults (also `PUT /v1/settings`).
pub(super) async fn patch_defaults(state: &AppState, body: &serde_json::Value) -> ApiResult<()> {
    let mut d = state.store.preference_defaults().await?;
    d.patch(body, &critical_map(state).await?)
        .map_err(patch_error)?;
    state
        .store
        .put_preference_defaults(d, state.clock.now())
        .await?;
    Ok(())
}
