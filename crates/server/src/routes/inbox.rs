//! One user's inbox: listing, counts and state changes. The same handlers
//! serve `/v1/me/...` (user token) and `/v1/users/{user_id}/...` (admin key);
//! [`InboxOwner`] decides whose inbox it is.

use crate::AppState;
use crate::auth::InboxOwner;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use belfry_core::inbox::{Cursor, DEFAULT_LIMIT, MAX_LIMIT};
use belfry_core::{Category, EntityRef, Filter, InboxQuery, UserId, ValidationErrors};
use belfry_store::{ItemOp, StoreError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(counts))
        .routes(routes!(read))
        .routes(routes!(unread))
        .routes(routes!(archive))
        .routes(routes!(unarchive))
        .routes(routes!(delete_item))
        .routes(routes!(dismiss))
        .routes(routes!(read_all))
        .routes(routes!(seen_all))
        .routes(routes!(archive_many))
        .routes(routes!(read_entity))
}

/// The same endpoints for admin keys, under `/v1/users/{user_id}`.
pub(super) fn mirror_routes() -> Router<AppState> {
    Router::new().nest(
        "/v1/users/{user_id}",
        Router::new()
            .route("/notifications", get(list))
            .route("/counts", get(counts))
            .route("/notifications/{id}/read", post(read))
            .route("/notifications/{id}/unread", post(unread))
            .route("/notifications/{id}/archive", post(archive))
            .route("/notifications/{id}/unarchive", post(unarchive))
            .route("/notifications/{id}", delete(delete_item))
            .route("/notifications/{id}/dismiss", post(dismiss))
            .route("/notifications/read-all", post(read_all))
            .route("/notifications/seen-all", post(seen_all))
            .route("/notifications/archive", post(archive_many))
            .route(
                "/entities/{entity_type}/{entity_id}/read",
                post(read_entity),
            ),
    )
}

/// Maps "no such user" of a `/v1/me` request to a clear answer.
fn owner_missing(user: &UserId) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("there is no user {user}")),
        other => other.into(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// `unread`, `all` (default; everything not archived) or `archived`.
    filter: Option<String>,
    /// Only this category.
    category: Option<String>,
    /// 1 to 100, default 50.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListParams {
    fn parse(self) -> Result<InboxQuery, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let filter = self
            .filter
            .and_then(|f| e.take("filter", Filter::parse(&f)))
            .unwrap_or_default();
        let category = self
            .category
            .filter(|c| !c.is_empty())
            .and_then(|c| e.take("category", Category::parse(&c)));
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    e.add("limit", format!("must be a number from 1 to {MAX_LIMIT}"));
                    DEFAULT_LIMIT
                }
            },
        };
        let cursor = self
            .cursor
            .filter(|c| !c.is_empty())
            .and_then(|c| e.take("cursor", Cursor::decode(&c)));
        e.finish(InboxQuery {
            filter,
            category,
            limit,
            cursor,
        })
    }
}

/// An inbox item (documentation of the response).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct InboxItem {
    id: String,
    seq: i64,
    /// When it arrived in the inbox (for a stack: its newest member).
    created_at: String,
    read: bool,
    /// False for items that arrived since the drawer was last opened.
    seen: bool,
    archived: bool,
    /// How many notifications this entry stacks.
    stack_count: i64,
    #[schema(inline)]
    content: belfry_core::Content,
}

#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct InboxPageDoc {
    items: Vec<InboxItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// List the inbox, newest first.
///
/// Keyset pagination: a cursor neither skips nor repeats an item while new
/// notifications arrive (they appear at the top, before the first page).
#[utoipa::path(
    get, path = "/v1/me/notifications", tag = "inbox",
    params(ListParams),
    responses((status = 200, body = InboxPageDoc), (status = 422, body = Problem)),
    security(("user_token" = []))
)]
async fn list(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Response> {
    let query = params
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let page = state
        .store
        .list_inbox(&user, query, state.clock.now())
        .await
        .map_err(owner_missing(&user))?;
    let size: usize = page.items.iter().map(|i| i.len() + 1).sum();
    let mut body = String::with_capacity(size + 64);
    body.push_str("{\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("],\"next_cursor\":");
    match page.next_cursor {
        Some(c) => {
            body.push('"');
            body.push_str(&c.encode());
            body.push('"');
        }
        None => body.push_str("null"),
    }
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Unread and unseen counts, and the seq they are as of.
#[derive(Serialize, utoipa::ToSchema)]
struct CountsAt {
    unread: i64,
    unseen: i64,
    /// The counts include every notification up to this seq and none
    /// above it: a client that receives a new entry (`stack_count` 1) with
    /// a higher seq on a stream may add one to both itself.
    seq: i64,
}

/// Unread and unseen counts (archived and expired items do not count).
#[utoipa::path(
    get, path = "/v1/me/counts", tag = "inbox",
    responses((status = 200, body = CountsAt)),
    security(("user_token" = []))
)]
async fn counts(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<Json<CountsAt>> {
    let (c, seq) = state
        .store
        .counts_at(&user, state.clock.now())
        .await
        .map_err(owner_missing(&user))?;
    Ok(Json(CountsAt {
        unread: c.unread,
        unseen: c.unseen,
        seq,
    }))
}

#[derive(Deserialize)]
struct ItemPath {
    id: String,
}

async fn item_op(state: &AppState, user: &UserId, id: &str, op: ItemOp) -> ApiResult<StatusCode> {
    match state
        .store
        .update_item(user, id, op, state.clock.now())
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        // The same answer whether the notification does not exist or belongs
        // to someone else: its existence is not revealed.
        Err(StoreError::NotFound) => Err(ApiError::NotFound(format!(
            "no notification {id} in this inbox"
        ))),
        Err(e) => Err(e.into()),
    }
}

macro_rules! item_endpoint {
    ($name:ident, $method:ident, $path:literal, $op:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
                    $method, path = $path, tag = "inbox",
                    params(("id" = String, Path)),
                    responses((status = 204, description = "Done"), (status = 404, body = Problem)),
                    security(("user_token" = []))
                )]
        async fn $name(
            State(state): State<AppState>,
            InboxOwner(user): InboxOwner,
            Path(p): Path<ItemPath>,
        ) -> ApiResult<StatusCode> {
            item_op(&state, &user, &p.id, $op).await
        }
    };
}

item_endpoint!(
    read,
    post,
    "/v1/me/notifications/{id}/read",
    ItemOp::Read,
    "Mark one notification read."
);
item_endpoint!(
    unread,
    post,
    "/v1/me/notifications/{id}/unread",
    ItemOp::Unread,
    "Mark one notification unread."
);
item_endpoint!(
    archive,
    post,
    "/v1/me/notifications/{id}/archive",
    ItemOp::Archive,
    "Archive (dismiss) one notification."
);
item_endpoint!(
    unarchive,
    post,
    "/v1/me/notifications/{id}/unarchive",
    ItemOp::Unarchive,
    "Bring an archived notification back."
);
item_endpoint!(
    dismiss,
    post,
    "/v1/me/notifications/{id}/dismiss",
    ItemOp::Dismiss,
    "Record that a sticky notification was closed: it stops reappearing on every page, on every device."
);
item_endpoint!(
    delete_item,
    delete,
    "/v1/me/notifications/{id}",
    ItemOp::Delete,
    "Delete one notification from this inbox."
);

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReadAllRequest {
    /// Only this category.
    #[schema(pattern = "^[a-z0-9._-]{1,64}$")]
    category: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Updated {
    /// How many items changed.
    updated: i64,
}

/// Mark everything (or one category) read.
#[utoipa::path(
    post, path = "/v1/me/notifications/read-all", tag = "inbox",
    request_body(content = Option<ReadAllRequest>),
    responses((status = 200, body = Updated)),
    security(("user_token" = []))
)]
async fn read_all(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    OptionalJson(body): OptionalJson<ReadAllRequest>,
) -> ApiResult<Json<Updated>> {
    let category = match body.category {
        Some(c) => Some(Category::parse(&c).map_err(|e| ValidationErrors::single("category", e))?),
        None => None,
    };
    let updated = state
        .store
        .read_all(&user, category, state.clock.now())
        .await
        .map_err(owner_missing(&user))?;
    Ok(Json(Updated { updated }))
}

/// The drawer was opened: everything is seen (the red dot goes away).
#[utoipa::path(
    post, path = "/v1/me/notifications/seen-all", tag = "inbox",
    responses((status = 204, description = "Done")),
    security(("user_token" = []))
)]
async fn seen_all(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
) -> ApiResult<StatusCode> {
    state
        .store
        .seen_all(&user, state.clock.now())
        .await
        .map_err(owner_missing(&user))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ArchiveRequest {
    /// 1 to 1000 notification ids; ids not in this inbox are ignored.
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Archived {
    archived: i64,
}

/// Archive several notifications at once (shift-click close).
#[utoipa::path(
    post, path = "/v1/me/notifications/archive", tag = "inbox",
    request_body = ArchiveRequest,
    responses((status = 200, body = Archived), (status = 422, body = Problem)),
    security(("user_token" = []))
)]
async fn archive_many(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    ApiJson(body): ApiJson<ArchiveRequest>,
) -> ApiResult<Json<Archived>> {
    if body.ids.is_empty() || body.ids.len() > 1000 {
        return Err(ValidationErrors::single("ids", "give 1 to 1000 notification ids").into());
    }
    let archived = state
        .store
        .archive_many(&user, body.ids, state.clock.now())
        .await
        .map_err(owner_missing(&user))?;
    Ok(Json(Archived { archived }))
}

#[derive(Deserialize)]
struct EntityPath {
    entity_type: String,
    entity_id: String,
}

/// The user viewed this entity in the host application: everything about it
/// becomes read.
#[utoipa::path(
    post, path = "/v1/me/entities/{entity_type}/{entity_id}/read", tag = "inbox",
    params(("entity_type" = String, Path), ("entity_id" = String, Path)),
    responses((status = 200, body = Updated), (status = 400, body = Problem)),
    security(("user_token" = []))
)]
async fn read_entity(
    State(state): State<AppState>,
    InboxOwner(user): InboxOwner,
    Path(p): Path<EntityPath>,
) -> ApiResult<Json<Updated>> {
    let entity = EntityRef::parse(&p.entity_type, &p.entity_id)
        .map_err(|e| ApiError::bad_request("invalid_path", e))?;
    let updated = state
        .store
        .read_entity(&user, &entity, state.clock.now())
        .await
        .map_err(owner_missing(&user))?;
    Ok(Json(Updated { updated }))
}
