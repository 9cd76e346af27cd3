//! The console's lists, counts and settings (issue 17), admin scope (a key
//! or a console session): `GET /v1/notifications`, `GET /v1/deliveries`,
//! `GET /v1/stats/deliveries`, `POST /v1/audience/size`, `GET /v1/users`,
//! `POST /v1/users/import` (CSV), `GET|PUT /v1/settings`.
//!
//! Lists are `{"items", "next_cursor"}`, newest first where time matters,
//! filtered in the database, with keyset cursors (never an OFFSET).

use crate::AppState;
use crate::auth::AdminKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use belfry_core::notification::TargetsRequest;
use belfry_core::{
    Category, Channel, FieldError, GroupId, Millis, SendRequest, User, UserId, UserRequest,
    ValidationErrors,
};
use belfry_store::{
    DeliveryEvent, DeliveryStatus, LogFilter, NotificationListQuery, RuntimeSettings, StatBucket,
    StoreError, UserListQuery,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(list_deliveries))
        .routes(routes!(delivery_stats))
        .routes(routes!(audience_size))
        .routes(routes!(list_users))
        .routes(routes!(import_users))
        .routes(routes!(get_settings, put_settings))
}

pub(super) const DEFAULT_LIMIT: usize = 50;
pub(super) const MAX_LIMIT: usize = 200;

/// `limit` (1 to 200, default 50) and a numeric `cursor`.
fn page(
    e: &mut ValidationErrors,
    limit: Option<String>,
    cursor: Option<String>,
) -> (usize, Option<i64>) {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                e.add("limit", format!("must be a number from 1 to {MAX_LIMIT}"));
                DEFAULT_LIMIT
            }
        },
    };
    let cursor = cursor.filter(|c| !c.is_empty()).and_then(|c| {
        let ok = !c.starts_with('0') && c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit());
        match c.parse::<i64>() {
            Ok(n) if ok => Some(n),
            _ => {
                e.add(
                    "cursor",
                    "is not a cursor returned by this API (use next_cursor as given)",
                );
                None
            }
        }
    });
    (limit, cursor)
}

fn time(e: &mut ValidationErrors, field: &str, value: Option<String>) -> Option<Millis> {
    value
        .filter(|v| !v.is_empty())
        .and_then(|v| e.take(field, Millis::parse_rfc3339(&v)))
}

fn category(e: &mut ValidationErrors, field: &str, value: Option<String>) -> Option<String> {
    value
        .filter(|v| !v.is_empty())
        .and_then(|v| e.take(field, Category::parse(&v)))
        .map(|c| c.to_string())
}

/// Query values that are well-formed but wrong (a time that is not RFC
/// 3339, too long ago, an unknown recipient form): 422 naming each.
fn bad_query(e: ValidationErrors) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_query",
        detail: e.to_string(),
        errors: e.0,
    }
}

/// One page of a list.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Splits `rows` (asked for `limit + 1`) into a page and its cursor.
pub(super) fn paged<R, T>(
    mut rows: Vec<R>,
    limit: usize,
    key: impl Fn(&R) -> i64,
    item: impl Fn(R) -> ApiResult<T>,
) -> ApiResult<Page<T>> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|r| key(r).to_string())
    } else {
        None
    };
    Ok(Page {
        items: rows.into_iter().map(item).collect::<ApiResult<_>>()?,
        next_cursor,
    })
}

// --- GET /v1/notifications ----------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationParams {
    /// Created at or after (RFC 3339).
    since: Option<String>,
    category: Option<String>,
    /// The `source` the notifications were sent with.
    #[param(pattern = "^([a-z0-9._-]{1,64})?$")]
    source: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// A notification in the console's list.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NotificationItem {
    id: String,
    created_at: String,
    published_at: Option<String>,
    send_at: Option<String>,
    /// `published`, `scheduled` or `cancelled`.
    status: String,
    category: Option<String>,
    source: Option<String>,
    title: String,
    /// Id of the key (or admin, for the console) that sent it.
    sender: String,
    /// The targets as sent.
    #[schema(value_type = Object)]
    to: serde_json::Value,
    /// The targets in a few words, e.g. `groups: support, sales; 2 users`.
    audience: String,
    /// Direct recipients when sent (null with a broadcast part: groups and
    /// everyone are stored once).
    recipients: Option<i64>,
    /// Delivery-log lines per channel and status, e.g.
    /// `{"email": {"queued": 3, "sent": 2, "suppressed": 1}}`.
    deliveries: BTreeMap<String, BTreeMap<String, i64>>,
}

/// The targets of a stored audience in a few words.
fn audience_summary(to: &serde_json::Value) -> String {
    let list = |key: &str| -> Vec<String> {
        to.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut parts = Vec::new();
    if to.get("all").and_then(|v| v.as_bool()) == Some(true) {
        parts.push("everyone".to_string());
    }
    let groups = list("groups");
    if !groups.is_empty() {
        parts.push(format!("groups: {}", groups.join(", ")));
    }
    let count = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let users = list("users");
    match users.len() {
        0 => {}
        1 => parts.push(format!("user {}", users[0])),
        n => parts.push(count(n, "user", "users")),
    }
    let emails = list("emails");
    if !emails.is_empty() {
        parts.push(count(emails.len(), "email address", "email addresses"));
    }
    if let Some(entity) = to.get("entity").filter(|e| !e.is_null()) {
        parts.push(format!(
            "subscribers of {}/{}",
            entity.get("type").and_then(|v| v.as_str()).unwrap_or("?"),
            entity.get("id").and_then(|v| v.as_str()).unwrap_or("?")
        ));
    }
    if parts.is_empty() {
        "nobody".into()
    } else {
        parts.join("; ")
    }
}

/// The notifications, newest first (admin).
#[utoipa::path(
    get, path = "/v1/notifications", tag = "notifications",
    params(NotificationParams),
    responses((status = 200, body = Page<NotificationItem>), (status = 422, description = "A query value that is well-formed but wrong (`invalid_query`)", body = Problem)),
    security(("secret_key" = []), ("admin_session" = []))
)]
pub(super) async fn list_notifications(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiQuery(p): ApiQuery<NotificationParams>,
) -> ApiResult<Json<Page<NotificationItem>>> {
    let mut e = ValidationErrors::new();
    let since = time(&mut e, "since", p.since);
    let category = category(&mut e, "category", p.category);
    let source = self::category(&mut e, "source", p.source);
    let (limit, before) = page(&mut e, p.limit, p.cursor);
    e.finish(()).map_err(bad_query)?;
    let rows = state
        .store
        .list_notifications(NotificationListQuery {
            since,
            category,
            source,
            before,
            limit: limit + 1,
        })
        .await?;
    paged(
        rows,
        limit,
        |r| r.nid,
        |r| {
            let content: serde_json::Value = serde_json::from_str(&r.content_json)
                .map_err(|e| ApiError::Internal(format!("stored content: {e}")))?;
            let to: serde_json::Value = serde_json::from_str(&r.audience_json)
                .map_err(|e| ApiError::Internal(format!("stored audience: {e}")))?;
            let text = |k: &str| content.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let mut deliveries: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for (channel, status, n) in r.deliveries {
                deliveries.entry(channel).or_default().insert(status, n);
            }
            Ok(NotificationItem {
                id: r.id,
                created_at: r.created_at.to_rfc3339(),
                published_at: r.published_at.map(Millis::to_rfc3339),
                send_at: r.send_at.map(Millis::to_rfc3339),
                status: r.status,
                category: text("category"),
                source: text("source"),
                title: text("title").unwrap_or_default(),
                sender: r.sender,
                audience: audience_summary(&to),
                to,
                recipients: r.recipients,
                deliveries,
            })
        },
    )
    .map(Json)
}

// --- GET /v1/deliveries -------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogParams {
    /// As logged (`user:<id>`, `email:<address>`, `group:<id>`, `all`), or
    /// a user id, or an email address.
    #[param(max_length = 300)]
    recipient: Option<String>,
    /// `in_app`, `email`, `web_push`, `mobile_push`, `chat`.
    #[param(pattern = "^(in_app|email|web_push|mobile_push|chat)?$")]
    channel: Option<String>,
    /// `queued`, `scheduled`, `sent`, `failed`, `skipped`, `cancelled`,
    /// `held`, `digested`, `suppressed`.
    #[param(
        pattern = "^(queued|scheduled|sent|failed|skipped|cancelled|held|digested|suppressed)?$"
    )]
    status: Option<String>,
    category: Option<String>,
    #[param(pattern = "^([a-z0-9._-]{1,64})?$")]
    source: Option<String>,
    /// At or after (RFC 3339).
    since: Option<String>,
    /// Before (RFC 3339).
    until: Option<String>,
    cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// A line of the delivery log across notifications.
#[derive(Serialize, utoipa::ToSchema)]
struct LogItem {
    /// The notification it belongs to (`GET /v1/notifications/{id}`).
    notification_id: String,
    #[serde(flatten)]
    event: DeliveryEvent,
}

/// `recipient` as the log writes it.
fn recipient(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "all" {
        return Ok(value.into());
    }
    if let Some((kind, rest)) = value.split_once(':')
        && matches!(kind, "user" | "email" | "group")
    {
        return match kind {
            "user" => UserId::parse(rest).map(|u| format!("user:{u}")),
            "group" => GroupId::parse(rest).map(|g| format!("group:{g}")),
            _ => belfry_core::EmailAddress::parse(rest).map(|m| format!("email:{}", m.as_str())),
        };
    }
    if value.contains('@') {
        belfry_core::EmailAddress::parse(value).map(|m| format!("email:{}", m.as_str()))
    } else {
        UserId::parse(value).map(|u| format!("user:{u}"))
    }
}

/// The delivery log across notifications, newest first (admin).
///
/// The logged lines (queued, scheduled, each attempt, held, digested,
/// suppressed with its reason, failed, cancelled) of every notification;
/// in-app deliveries are the inbox itself and are listed per notification
/// (`GET /v1/notifications/{id}/deliveries`).
#[utoipa::path(
    get, path = "/v1/deliveries", tag = "notifications",
    params(LogParams),
    responses((status = 200, body = Page<LogItem>), (status = 422, description = "A query value that is well-formed but wrong (`invalid_query`)", body = Problem)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn list_deliveries(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiQuery(p): ApiQuery<LogParams>,
) -> ApiResult<Json<Page<LogItem>>> {
    let mut e = ValidationErrors::new();
    let recipient = p
        .recipient
        .filter(|r| !r.is_empty())
        .and_then(|r| e.take("recipient", recipient(&r)));
    let channel = p
        .channel
        .filter(|c| !c.is_empty())
        .and_then(|c| e.take("channel", Channel::parse(&c)))
        .map(|c| c.as_str().to_string());
    let status = p.status.filter(|s| !s.is_empty()).and_then(|s| {
        let parsed = DeliveryStatus::parse(&s).map(|s| s.as_str().to_string());
        if parsed.is_none() {
            e.add(
                "status",
                "use one of queued, scheduled, sent, failed, skipped, cancelled, held, digested, suppressed",
            );
        }
        parsed
    });
    let category = category(&mut e, "category", p.category);
    let source = self::category(&mut e, "source", p.source);
    let since = time(&mut e, "since", p.since);
    let until = time(&mut e, "until", p.until);
    let (limit, before) = page(&mut e, p.limit, p.cursor);
    e.finish(()).map_err(bad_query)?;
    let rows = state
        .store
        .delivery_log(LogFilter {
            recipient,
            channel,
            status,
            category,
            source,
            since,
            until,
            before,
            limit: limit + 1,
        })
        .await?;
    paged(
        rows,
        limit,
        |l| l.id,
        |l| {
            Ok(LogItem {
                notification_id: l.notification_id,
                event: l.event,
            })
        },
    )
    .map(Json)
}

// --- GET /v1/stats/deliveries -------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsParams {
    /// `hour` (default) or `day`.
    #[param(pattern = "^(hour|day)?$")]
    bucket: Option<String>,
    /// From (RFC 3339); default 72 hours ago, at most 31 days ago.
    since: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Stats {
    /// The buckets that have lines, by start, channel and status; a
    /// bucket starts at a whole hour (day) in UTC.
    buckets: Vec<StatBucket>,
}

const HOUR_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Delivery-log lines per hour (or day), channel and status (admin).
#[utoipa::path(
    get, path = "/v1/stats/deliveries", tag = "notifications",
    params(StatsParams),
    responses((status = 200, body = Stats), (status = 422, description = "A query value that is well-formed but wrong (`invalid_query`)", body = Problem)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn delivery_stats(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiQuery(p): ApiQuery<StatsParams>,
) -> ApiResult<Json<Stats>> {
    let mut e = ValidationErrors::new();
    let bucket = match p.bucket.as_deref().filter(|b| !b.is_empty()) {
        None | Some("hour") => HOUR_MS,
        Some("day") => DAY_MS,
        Some(_) => {
            e.add("bucket", "use hour or day");
            HOUR_MS
        }
    };
    let now = state.clock.now();
    let since = time(&mut e, "since", p.since).unwrap_or(Millis(now.0 - 72 * HOUR_MS));
    if since.0 < now.0 - 31 * DAY_MS {
        e.add("since", "may be at most 31 days ago");
    }
    e.finish(()).map_err(bad_query)?;
    // Whole buckets: from the start of the bucket `since` falls in.
    let since = Millis(since.0.div_euclid(bucket) * bucket);
    let buckets = state
        .store
        .delivery_stats(since, Millis(now.0 + 1), bucket)
        .await?;
    Ok(Json(Stats { buckets }))
}

// --- POST /v1/audience/size ---------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SizeRequest {
    /// The same targets as a send's `to`.
    to: Option<TargetsRequest>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Size {
    /// People a send to these targets reaches now: users (once each) and
    /// email addresses that belong to no user.
    count: i64,
}

/// How many people a send would reach (admin).
#[utoipa::path(
    post, path = "/v1/audience/size", tag = "notifications",
    request_body = SizeRequest,
    responses((status = 200, body = Size), (status = 422, description = "Invalid targets, unknown users or groups (`invalid_body`, `unknown_user`, `unknown_group`)", body = Problem)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn audience_size(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(body): ApiJson<SizeRequest>,
) -> ApiResult<Json<Size>> {
    let Some(to) = body.to else {
        return Err(ValidationErrors::single("to", "is required").into());
    };
    // The send's own validation, with a stand-in title.
    let request = SendRequest {
        to: Some(to),
        title: Some("audience size".into()),
        ..Default::default()
    };
    let n = request.validate(state.clock.now())?;
    let count = state.store.audience_size(&n.audience).await?;
    Ok(Json(Size { count }))
}

// --- GET /v1/users ------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UserParams {
    /// The start of an id, a name or an email address (case-insensitive
    /// for names and addresses).
    #[param(max_length = 200)]
    query: Option<String>,
    /// Current members of this group only.
    #[param(pattern = "^([A-Za-z0-9._:@+=-]{1,64})?$")]
    group: Option<String>,
    cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// Users, in the order they were created, searched and filtered (admin).
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    params(UserParams),
    responses((status = 200, body = Page<User>), (status = 422, description = "A query value that is well-formed but wrong (`invalid_query`)", body = Problem)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn list_users(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiQuery(p): ApiQuery<UserParams>,
) -> ApiResult<Json<Page<User>>> {
    let mut e = ValidationErrors::new();
    let query = p
        .query
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    if query.as_ref().is_some_and(|q| q.chars().count() > 200) {
        e.add("query", "is longer than 200 characters");
    }
    let group = p
        .group
        .filter(|g| !g.is_empty())
        .and_then(|g| e.take("group", GroupId::parse(&g)));
    let (limit, after) = page(&mut e, p.limit, p.cursor);
    e.finish(()).map_err(bad_query)?;
    let rows = state
        .store
        .list_users(UserListQuery {
            query,
            group,
            after,
            limit: limit + 1,
        })
        .await?;
    paged(rows, limit, |(uid, _)| *uid, |(_, u)| Ok(u)).map(Json)
}

// --- POST /v1/users/import ----------------------------------------------

/// Largest CSV accepted, in bytes.
pub const IMPORT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most rows in one import (the header not counted).
pub const IMPORT_MAX_ROWS: usize = 10_000;
const IMPORT_COLUMNS: [&str; 6] = ["id", "email", "name", "locale", "timezone", "groups"];

#[derive(Serialize, utoipa::ToSchema)]
struct ImportReport {
    created: usize,
    updated: usize,
    /// The rows not applied, each problem once; the header is row 1.
    errors: Vec<RowError>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct RowError {
    row: usize,
    field: String,
    message: String,
}

/// Splits CSV text (RFC 4180: quotes, doubled quotes, CRLF or LF) into
/// records; an unterminated quote is an error naming its row.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut field_started = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                quoted = true;
                field_started = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                field_started = false;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if quoted {
        return Err(format!(
            "row {}: a quoted field is not closed",
            records.len() + 1
        ));
    }
    if field_started || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// Create or update users from CSV (admin).
///
/// `Content-Type: text/csv`, a header row naming the columns `id`,
/// `email`, `name`, `locale`, `timezone`, `groups` (any order; `id`
/// required, the others optional); `groups` is `;`-separated and replaces
/// the user's groups. An empty cell leaves the value as it is. Each valid
/// row is applied on its own; a row with a problem is not applied at all
/// and is reported (rows count from 1, the header). At most 10,000 rows
/// and 4 MiB.
#[utoipa::path(
    post, path = "/v1/users/import", tag = "users",
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, body = ImportReport),
        (status = 413, body = Problem),
        (status = 415, description = "Not text/csv (`unsupported_media_type`)", body = Problem),
        (status = 422, description = "No header, unknown columns, too many rows, or not CSV (`invalid_csv`)", body = Problem),
    ),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn import_users(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    request: axum::extract::Request,
) -> ApiResult<Json<ImportReport>> {
    let essence = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if essence != "text/csv" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the users as CSV with Content-Type: text/csv (got {})",
            if essence.is_empty() { "none" } else { &essence }
        )));
    }
    if request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > IMPORT_MAX_BYTES)
    {
        return Err(ApiError::PayloadTooLarge(IMPORT_MAX_BYTES));
    }
    let body = axum::body::to_bytes(request.into_body(), IMPORT_MAX_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(IMPORT_MAX_BYTES))?;
    let invalid = |detail: String| ApiError::Unprocessable {
        code: "invalid_csv",
        detail,
        errors: vec![],
    };
    let text =
        std::str::from_utf8(&body).map_err(|_| invalid("the CSV is not UTF-8 text".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = parse_csv(text).map_err(invalid)?;
    let Some((header, rows)) = records.split_first() else {
        return Err(invalid(format!(
            "the CSV is empty; the first row names the columns: {}",
            IMPORT_COLUMNS.join(",")
        )));
    };
    let mut columns = Vec::new();
    for name in header {
        let name = name.trim().to_ascii_lowercase();
        if !IMPORT_COLUMNS.contains(&name.as_str()) {
            return Err(invalid(format!(
                "row 1: unknown column '{}'; the columns are {}",
                name.escape_debug(),
                IMPORT_COLUMNS.join(",")
            )));
        }
        if columns.contains(&name) {
            return Err(invalid(format!("row 1: the column {name} appears twice")));
        }
        columns.push(name);
    }
    if !columns.iter().any(|c| c == "id") {
        return Err(invalid("row 1: the column id is required".into()));
    }
    if rows.len() > IMPORT_MAX_ROWS {
        return Err(invalid(format!(
            "{} rows; import at most {IMPORT_MAX_ROWS} at a time",
            rows.len()
        )));
    }
    let mut report = ImportReport {
        created: 0,
        updated: 0,
        errors: Vec::new(),
    };
    for (i, cells) in rows.iter().enumerate() {
        let row = i + 2;
        // A blank line is no user.
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut fail = |field: &str, message: String| {
            report.errors.push(RowError {
                row,
                field: field.to_string(),
                message,
            })
        };
        if cells.len() != columns.len() {
            fail(
                "",
                format!(
                    "has {} cells; the header has {}",
                    cells.len(),
                    columns.len()
                ),
            );
            continue;
        }
        let mut id = None;
        let mut request = UserRequest::default();
        for (name, cell) in columns.iter().zip(cells) {
            let cell = cell.trim();
            if name == "id" {
                id = Some(cell.to_string());
                continue;
            }
            if cell.is_empty() {
                continue;
            }
            let value = belfry_core::Patch::Value(cell.to_string());
            match name.as_str() {
                "email" => request.email = value,
                "name" => request.name = value,
                "locale" => request.locale = value,
                "timezone" => request.timezone = value,
                _ => {
                    request.groups = belfry_core::Patch::Value(
                        cell.split(';')
                            .map(str::trim)
                            .filter(|g| !g.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                }
            }
        }
        let id = match UserId::parse(id.as_deref().unwrap_or_default()) {
            Ok(id) => id,
            Err(m) => {
                fail("id", m);
                continue;
            }
        };
        let patch = match request.validate() {
            Ok(p) => p,
            Err(errors) => {
                for FieldError { field, message } in errors.0 {
                    // `groups[2]` is the third group of the cell.
                    let column = field.split('[').next().unwrap_or(&field).to_string();
                    fail(&column, message);
                }
                continue;
            }
        };
        match state.store.put_user(&id, patch, state.clock.now()).await {
            Ok((_, true)) => report.created += 1,
            Ok((_, false)) => report.updated += 1,
            Err(StoreError::Conflict { constraint }) => fail("email", constraint.message()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(report))
}

// --- GET|PUT /v1/settings -----------------------------------------------

/// What an administrator changes at run time; stored in the database, so
/// every node uses it.
#[derive(Serialize, utoipa::ToSchema)]
struct Settings {
    /// Days read or archived inbox items are kept; 0: kept for good.
    retention_days: u32,
    /// Days delivery-log lines are kept; 0: kept for good.
    delivery_log_retention_days: u32,
    /// Days development-mailbox entries are kept; 0: kept for good.
    mailbox_retention_days: u32,
    /// Whether this node runs the retention job (`--no-retention` turns
    /// it off); the days apply wherever it runs.
    retention_job: bool,
    /// What users without choices of their own get (as
    /// `GET /v1/preferences/defaults`).
    default_preferences: super::preferences::PreferencesView,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    /// 0 to 3650; 0 keeps them for good.
    retention_days: Option<serde_json::Value>,
    delivery_log_retention_days: Option<serde_json::Value>,
    mailbox_retention_days: Option<serde_json::Value>,
    /// A merge patch of the defaults (as `PUT /v1/preferences/defaults`).
    #[schema(value_type = Option<Object>)]
    default_preferences: Option<serde_json::Value>,
}

fn days_of(ms: Option<i64>) -> u32 {
    ms.map(|m| u32::try_from(m / DAY_MS).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

async fn read_settings(state: &AppState) -> ApiResult<Settings> {
    let stored = state.store.runtime_settings().await?;
    let policy = stored.apply(state.config.delivery.retention.unwrap_or_default());
    Ok(Settings {
        retention_days: days_of(policy.read_items),
        delivery_log_retention_days: days_of(policy.delivery_log),
        mailbox_retention_days: days_of(policy.mailbox),
        retention_job: state.config.delivery.retention.is_some(),
        default_preferences: super::preferences::read_defaults(state).await?,
    })
}

/// The settings an administrator can change at run time (admin).
#[utoipa::path(
    get, path = "/v1/settings", tag = "admin",
    responses((status = 200, body = Settings)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn get_settings(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
) -> ApiResult<Json<Settings>> {
    read_settings(&state).await.map(Json)
}

/// Change settings at run time (admin); fields left out stay.
///
/// Retention days take effect at the retention job's next run on every
/// node; default preferences at once.
#[utoipa::path(
    put, path = "/v1/settings", tag = "admin",
    request_body = SettingsUpdate,
    responses((status = 200, body = Settings), (status = 422, body = Problem)),
    security(("secret_key" = []), ("admin_session" = []))
)]
async fn put_settings(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(body): ApiJson<SettingsUpdate>,
) -> ApiResult<Json<Settings>> {
    let mut e = ValidationErrors::new();
    let mut days = |field: &str, v: Option<serde_json::Value>| -> Option<u32> {
        let v = v?;
        match v.as_u64() {
            Some(d) if d <= 3650 => Some(d as u32),
            _ => {
                e.add(
                    field,
                    "must be a whole number of days from 0 (keep) to 3650",
                );
                None
            }
        }
    };
    let retention = days("retention_days", body.retention_days);
    let delivery_log = days(
        "delivery_log_retention_days",
        body.delivery_log_retention_days,
    );
    let mailbox = days("mailbox_retention_days", body.mailbox_retention_days);
    if body
        .default_preferences
        .as_ref()
        .is_some_and(|p| !p.is_object())
    {
        e.add(
            "default_preferences",
            "must be a JSON object (a merge patch)",
        );
    }
    e.finish(())?;
    if let Some(patch) = &body.default_preferences {
        super::preferences::patch_defaults(&state, patch).await?;
    }
    if retention.is_some() || delivery_log.is_some() || mailbox.is_some() {
        let stored = state.store.runtime_settings().await?;
        let next = RuntimeSettings {
            retention_days: retention.or(stored.retention_days),
            delivery_log_retention_days: delivery_log.or(stored.delivery_log_retention_days),
            mailbox_retention_days: mailbox.or(stored.mailbox_retention_days),
        };
        state
            .store
            .put_runtime_settings(next, state.clock.now())
            .await?;
    }
    read_settings(&state).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_line_ends() {
        let rows = parse_csv("id,name\r\nu1,\"Doe, Jane\"\nu2,\"say \"\"hi\"\"\"\n\nu3,").unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["id", "name"],
                vec!["u1", "Doe, Jane"],
                vec!["u2", "say \"hi\""],
                vec![""],
                vec!["u3", ""],
            ]
        );
        assert!(parse_csv("id\n\"open").unwrap_err().contains("row 2"));
    }

    #[test]
    fn recipients_are_written_as_the_log_writes_them() {
        assert_eq!(recipient("ana").unwrap(), "user:ana");
        assert_eq!(
            recipient("Ana@Example.com").unwrap(),
            "email:ana@example.com"
        );
        assert_eq!(recipient("group:support").unwrap(), "group:support");
        assert_eq!(recipient("all").unwrap(), "all");
        assert!(recipient("user:").is_err());
    }

    #[test]
    fn audiences_are_summed_up() {
        let to = serde_json::json!({"users": ["a", "b"], "emails": [], "groups": ["support"],
            "all": false, "entity": {"type": "ticket", "id": "7"}});
        assert_eq!(
            audience_summary(&to),
            "groups: support; 2 users; subscribers of ticket/7"
        );
        assert_eq!(
            audience_summary(&serde_json::json!({"all": true})),
            "everyone"
        );
    }
}
