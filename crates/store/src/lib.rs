//! Belfry's storage: the [`Store`] trait, which speaks the domain's language
//! (send, list an inbox, mark read …) so that the layers above never see SQL,
//! and its backends. SQLite is the embedded default, PostgreSQL the one for
//! several nodes; every backend keeps the
//! same model: one row per notification, an inbox row per direct recipient,
//! broadcasts stored once with lazily written per-user state.
#![forbid(unsafe_code)]

pub mod admin;
pub mod documents;
pub mod events;
pub mod jobs;
mod plan;
pub mod postgres;
pub mod retention;
pub mod sqlite;
pub mod webhooks;

use async_trait::async_trait;
use belfry_core::inbox::Cursor;
use belfry_core::{
    Counts, EmailAddress, EntityRef, GroupId, InboxQuery, Millis, NewNotification, User, UserId,
    UserPatch,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use admin::{
    Admin, AdminSession, LogFilter, LogLine, NewAdmin, NewAdminSession, NotificationListQuery,
    NotificationRow, RuntimeSettings, StatBucket, UserListQuery,
};
pub use documents::{DocKind, Document, NewDocument};
pub use events::{BroadcastTargets, Published, StateChange, StoreEvent};
pub use jobs::{
    DeliveryContext, DeliveryEvent, DeliveryStatus, DevMail, Job, JobOutcome, JobPayload, JobStats,
    NewDevMail, Recipient, RecipientProfile,
};
pub use plan::answer::{AnswerReceipt, NewAnswer};
pub use plan::inbox::InboxChange;
pub use plan::log::{DeliveryCursor, DeliveryPage, DeliveryQuery};
pub use plan::policy::{Reason, Verdict, next_digest, uses_digest};

pub use postgres::{PgOptions, PgStore};
pub use sqlite::{SqliteOptions, SqliteStore, WalOptions, WalState};
pub use webhooks::{
    AttemptEffect, AttemptPage, AttemptStatus, NewWebhook, Webhook, WebhookAttempt, WebhookEvent,
    WebhookEventType, WebhookTarget,
};

/// What went wrong in the store, named so that the API can map it to a status
/// code without looking at messages.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A rule of the data refused the change (a uniqueness rule, …); what
    /// reaches a client is [`Constraint::message`], never the database's text.
    #[error("conflict: {constraint}")]
    Conflict { constraint: Constraint },
    #[error("unknown user ids: {}", .0.join(", "))]
    UnknownUsers(Vec<String>),
    #[error("unknown group ids: {}", .0.join(", "))]
    UnknownGroups(Vec<String>),
    /// A request that is well-formed but cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// The idempotency key was used, within its window, for a different
    /// request.
    #[error("the idempotency key '{key}' was used for a different request")]
    IdempotencyKeyReused { key: String },
    /// The error of one item of a batch; nothing of the batch was written.
    #[error("notifications[{index}]: {error}")]
    InItem {
        index: usize,
        error: Box<StoreError>,
    },
    #[error("the store is shutting down")]
    Closed,
    /// The database cannot take the request now; the same request may
    /// succeed later. The source (if any) is for the log.
    #[error("the database is unavailable: {kind}")]
    Unavailable {
        kind: Unavailable,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// A fault of the database or of stored data; the source is for the log.
    #[error("database error: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A fault of the database or of stored data, keeping its cause.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Backend(Arc::from(e.into()))
    }

    pub fn conflict(constraint: Constraint) -> StoreError {
        StoreError::Conflict { constraint }
    }

    /// The database cannot take the request now, keeping the cause.
    pub fn unavailable(
        kind: Unavailable,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Unavailable {
            kind,
            source: Some(Arc::from(source.into())),
        }
    }
}

/// Why the database cannot take a request now. Each is temporary: the API
/// answers 503 with `Retry-After`, never a hang and never the database's
/// own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// This node has more writes queued than it takes (the SQLite writer's
    /// queue, PostgreSQL's publishing queue): it sheds the request at once
    /// instead of letting the queue and every caller's wait grow.
    Overloaded,
    /// The database stayed locked (by another process, or a lock or
    /// serialization conflict gave up) for longer than the busy timeout.
    Busy,
    /// The disk (or the database's quota) is full.
    Full,
    /// The database does not answer: the connection is refused or lost, or
    /// no pooled connection could be had within the acquire timeout.
    Unreachable,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unavailable::Overloaded => "overloaded (the write queue is full)",
            Unavailable::Busy => "busy (locked for longer than the busy timeout)",
            Unavailable::Full => "full (no space left to write)",
            Unavailable::Unreachable => "unreachable",
        })
    }
}

/// The rule a conflicting write broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// The email address belongs to another user.
    UserEmail { email: EmailAddress, owner: UserId },
    /// Another request is using the idempotency key right now.
    IdempotencyKey { key: String },
    /// A `once` action was answered already: its `answered` JSON.
    AlreadyAnswered { answered: String },
    /// The email address belongs to another admin.
    AdminEmail { email: String },
    /// The last admin account cannot be deleted.
    LastAdmin,
    /// A rule the database enforced (its name or text, for the log only):
    /// normally a concurrent change that won a race.
    Database(String),
}

impl Constraint {
    /// Belfry's own words for a client.
    pub fn message(&self) -> String {
        match self {
            Constraint::UserEmail { email, owner } => {
                format!("the email address {email} already belongs to user {owner}")
            }
            Constraint::IdempotencyKey { key } => {
                format!("the idempotency key '{key}' is being used by another request")
            }
            Constraint::AlreadyAnswered { .. } => {
                "this notification was answered already; its item shows the answer".into()
            }
            Constraint::AdminEmail { email } => {
                format!("there is already an admin with the email address {email}")
            }
            Constraint::LastAdmin => {
                "this is the last admin account; create another admin before deleting it".into()
            }
            Constraint::Database(_) => {
                "the change conflicts with one made at the same time; retry".into()
            }
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Constraint::Database(name) => write!(f, "database constraint {name}"),
            other => f.write_str(&other.message()),
        }
    }
}

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    /// Waiting for its `send_at`.
    Scheduled,
    Published,
    Cancelled,
}

impl NotificationStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Scheduled => "scheduled",
            NotificationStatus::Published => "published",
            NotificationStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Result<NotificationStatus> {
        match value {
            "scheduled" => Ok(NotificationStatus::Scheduled),
            "published" => Ok(NotificationStatus::Published),
            "cancelled" => Ok(NotificationStatus::Cancelled),
            other => Err(StoreError::backend(format!(
                "unknown notification status '{other}'"
            ))),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a secret key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send notifications and read what this key sent.
    Send,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Result<Scope, String> {
        match value.trim() {
            "send" => Ok(Scope::Send),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope '{other}'; use send or admin")),
        }
    }
}

/// A secret key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    #[serde(serialize_with = "ser_millis")]
    #[schema(value_type = String)]
    pub created_at: Millis,
    #[serde(serialize_with = "ser_opt_millis")]
    #[schema(value_type = Option<String>)]
    pub revoked_at: Option<Millis>,
    /// The source (integration) the key is bound to: what it sends
    /// carries it, and it may name no other.
    pub source: Option<String>,
}

impl ApiKeyInfo {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

/// A key to be stored: the secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub prefix: String,
    pub hash: [u8; 32],
    /// The source it is bound to (`None`: any).
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Group {
    #[schema(value_type = String)]
    pub id: GroupId,
    pub name: Option<String>,
    /// Current members.
    pub members: i64,
    #[serde(serialize_with = "ser_millis")]
    #[schema(value_type = String)]
    pub created_at: Millis,
}

/// An external contact's own details (C9, S3), given when they subscribe:
/// their emails are in `locale` and greet them by `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactProfile {
    pub name: Option<String>,
    pub locale: Option<belfry_core::Locale>,
}

/// What an access-token revocation covers (`POST /v1/access-tokens/revoke`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessRevocation {
    /// One token, by its id (`jti`).
    Token(String),
    /// Every token of this contact issued until the revocation.
    Email(EmailAddress),
    /// Every token for this entity issued until the revocation.
    Entity(EntityRef),
}

impl AccessRevocation {
    /// Revocations made before this refuse no token that has not expired
    /// (tokens live at most `MAX_ACCESS_TOKEN_TTL_DAYS`): the backends
    /// forget them.
    pub fn forget_before(now: Millis) -> Millis {
        Millis(now.0 - belfry_core::MAX_ACCESS_TOKEN_TTL_DAYS * 24 * 3600 * 1000)
    }

    /// The stored `(kind, value)` of `access_revocations`.
    pub fn key(&self) -> (&'static str, String) {
        match self {
            AccessRevocation::Token(id) => ("token", id.clone()),
            AccessRevocation::Email(e) => ("email", e.to_string()),
            AccessRevocation::Entity(e) => ("entity", format!("{}:{}", e.kind, e.id)),
        }
    }
}

/// One access token as it is checked for revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRef {
    pub id: String,
    pub email: EmailAddress,
    pub entity: EntityRef,
    pub issued_at: Millis,
}

impl AccessTokenRef {
    /// The three revocations that could cover it, as stored keys.
    pub fn keys(&self) -> [(&'static str, String); 3] {
        [
            AccessRevocation::Token(self.id.clone()).key(),
            AccessRevocation::Email(self.email.clone()).key(),
            AccessRevocation::Entity(self.entity.clone()).key(),
        ]
    }
}

/// Who follows an entity: a user, or an email address (resolved at send
/// time to the user with that address, else an external contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscriber {
    User(UserId),
    Email(belfry_core::EmailAddress),
}

/// One subscription to an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub entity: EntityRef,
    /// The subscribed user, for user subscriptions.
    #[schema(value_type = Option<String>)]
    pub user: Option<UserId>,
    /// The subscribed address, for email subscriptions.
    #[schema(value_type = Option<String>)]
    pub email: Option<belfry_core::EmailAddress>,
    #[serde(serialize_with = "ser_millis")]
    #[schema(value_type = String)]
    pub created_at: Millis,
}

/// A browser's web push subscription (C5): where the push service takes
/// messages for it, and its keys for the payload encryption (RFC 8291).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: String,
    /// The push service's URL for this browser (http or https).
    pub endpoint: String,
    /// The browser's P-256 public key, uncompressed, base64url.
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    pub auth: String,
    pub created_at: Millis,
    /// When it was last posted (the cap drops the least recent first).
    pub updated_at: Millis,
}

/// A push subscription to be stored (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushSubscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// The mobile push services (C6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MobilePlatform {
    /// Firebase Cloud Messaging (HTTP v1 API): Android, and iOS apps that
    /// use Firebase.
    Fcm,
    /// Apple Push Notification service (token-based authentication).
    Apns,
}

impl MobilePlatform {
    pub const ALL: [MobilePlatform; 2] = [MobilePlatform::Fcm, MobilePlatform::Apns];

    pub fn as_str(self) -> &'static str {
        match self {
            MobilePlatform::Fcm => "fcm",
            MobilePlatform::Apns => "apns",
        }
    }

    pub fn parse(value: &str) -> Option<MobilePlatform> {
        MobilePlatform::ALL
            .into_iter()
            .find(|p| p.as_str() == value)
    }
}

impl std::fmt::Display for MobilePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mobile device registered for push (C6): the token its platform's
/// push service knows it by, and the app it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MobileDevice {
    pub id: String,
    pub platform: MobilePlatform,
    /// The device (registration) token, as the platform gave it to the app.
    pub token: String,
    /// The app: the APNs topic (bundle id), or the FCM app's package name.
    pub app_id: String,
    pub created_at: Millis,
    /// When it was last posted (the cap drops the least recent first).
    pub updated_at: Millis,
}

/// A mobile device to be stored (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMobileDevice {
    pub platform: MobilePlatform,
    pub token: String,
    pub app_id: String,
}

/// Whom a chat target belongs to (C7): a user (their own channel) or a
/// group (the group's channel, posted to once per notification).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatOwner {
    User(UserId),
    Group(GroupId),
}

/// The kinds of chat target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    /// A Slack incoming webhook (Block Kit message).
    Slack,
    /// A Microsoft Teams incoming webhook or workflow URL (Adaptive Card).
    Teams,
    /// A generic webhook, signed per the Standard Webhooks specification.
    Webhook,
}

impl ChatKind {
    pub const ALL: [ChatKind; 3] = [ChatKind::Slack, ChatKind::Teams, ChatKind::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Slack => "slack",
            ChatKind::Teams => "teams",
            ChatKind::Webhook => "webhook",
        }
    }

    pub fn parse(value: &str) -> Option<ChatKind> {
        ChatKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// Where the chat channel posts for one owner. The webhook secret never
/// appears in `Debug` output (`SecretString`).
#[derive(Debug, Clone)]
pub struct ChatTarget {
    pub kind: ChatKind,
    /// The http(s) URL posted to.
    pub url: String,
    /// The signing secret (`whsec_…`) of a `webhook` target.
    pub secret: Option<secrecy::SecretString>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A user's preferences as stored: their overrides, the administrator's
/// defaults, and their time zone (quiet hours and digests use it).
#[derive(Debug, Clone, PartialEq)]
pub struct UserPreferences {
    pub overrides: belfry_core::preferences::Overrides,
    pub defaults: belfry_core::preferences::Overrides,
    pub timezone: Option<belfry_core::TimeZoneName>,
}

/// Who sends, and when.
#[derive(Debug, Clone)]
pub struct SendContext {
    /// The key that sends; idempotency keys are scoped to it.
    pub key_id: String,
    pub now: Millis,
}

/// The answer to an accepted notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SendReceipt {
    pub id: String,
    /// Position in the global sequence; null while scheduled.
    pub seq: Option<i64>,
    /// Direct recipients (users and external contacts); null when the
    /// audience includes a broadcast (everyone or groups) or while scheduled.
    pub recipients: Option<i64>,
    /// True when this answers a repeated idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

/// A notification as its producer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub id: String,
    pub seq: Option<i64>,
    pub status: NotificationStatus,
    /// The key that sent it.
    pub sender: String,
    pub content_json: String,
    pub audience_json: String,
    pub channels_json: Option<String>,
    pub created_at: Millis,
    pub published_at: Option<Millis>,
    pub send_at: Option<Millis>,
    pub recipients: Option<i64>,
    /// Direct inbox entries that currently show it, and how many of them are read.
    pub inbox_entries: i64,
    pub inbox_read: i64,
    /// Users who read it through a broadcast (state written lazily).
    pub broadcast_read: i64,
    pub contacts: i64,
}

/// One page of an inbox: items already rendered as JSON objects.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    pub items: Vec<String>,
    pub next_cursor: Option<Cursor>,
}

/// A change of one inbox item's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOp {
    Read,
    Unread,
    Archive,
    Unarchive,
    Delete,
    /// A sticky notification was closed (I5): it stops reappearing.
    Dismiss,
}

/// The database connections of one node (SQLite: the read-only pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections lent out right now.
    pub in_use: u64,
    /// Connections open and idle.
    pub idle: u64,
    /// The most the pool opens.
    pub max: u64,
    /// Callers waiting for a connection, where the backend can count them.
    pub waiting: Option<u64>,
}

/// The storage of everything Belfry keeps. Implementations must be safe to
/// share between all request handlers (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers and this node takes writes
    /// (readiness): reads answer, and the write path is not shedding.
    async fn ping(&self) -> Result<()>;

    /// A named secret, created at random on first use and the same on every
    /// node afterwards (e.g. the key that signs user tokens).
    async fn secret(&self, name: &str) -> Result<Vec<u8>>;

    // --- secret keys ---
    async fn create_api_key(&self, key: NewApiKey, now: Millis) -> Result<ApiKeyInfo>;
    /// Stores `key` only if no key exists yet; true when it was stored.
    async fn create_first_api_key(&self, key: NewApiKey, now: Millis) -> Result<bool>;
    /// Stores `key` unless a key with the same hash exists.
    async fn ensure_api_key(&self, key: NewApiKey, now: Millis) -> Result<()>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>>;
    async fn revoke_api_key(&self, id: &str, now: Millis) -> Result<ApiKeyInfo>;
    /// Revokes every key bound to `source`; returns their ids.
    async fn revoke_source_keys(&self, source: &str, now: Millis) -> Result<Vec<String>>;
    /// The key with this hash, revoked or not.
    async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<ApiKeyInfo>>;

    // --- console administrators (issue 17) ---
    /// Conflict [`Constraint::AdminEmail`] when the address is taken.
    async fn create_admin(&self, admin: NewAdmin, now: Millis) -> Result<Admin>;
    /// Every admin, oldest first.
    async fn list_admins(&self) -> Result<Vec<Admin>>;
    /// The admin with this (lower-case) address, and its password hash.
    async fn admin_by_email(&self, email: &str) -> Result<Option<(Admin, String)>>;
    /// Deletes an admin and ends its sessions: `NotFound`, or Conflict
    /// [`Constraint::LastAdmin`] for the only admin.
    async fn delete_admin(&self, id: &str) -> Result<()>;
    /// The sign-in failures for `email` at or after `since`, oldest first.
    async fn admin_login_failures(&self, email: &str, since: Millis) -> Result<Vec<Millis>>;
    /// Records a failed sign-in for `email`, forgetting its failures
    /// before `forget_before`.
    async fn record_admin_login_failure(
        &self,
        email: &str,
        now: Millis,
        forget_before: Millis,
    ) -> Result<()>;
    async fn clear_admin_login_failures(&self, email: &str) -> Result<()>;
    async fn create_admin_session(&self, session: NewAdminSession, now: Millis) -> Result<()>;
    /// The session whose cookie has this SHA-256, unless it expired by `now`.
    async fn admin_session(&self, hash: [u8; 32], now: Millis) -> Result<Option<AdminSession>>;
    /// Marks a session used at `now`, now expiring at `expires_at`.
    async fn touch_admin_session(
        &self,
        hash: [u8; 32],
        now: Millis,
        expires_at: Millis,
    ) -> Result<()>;
    async fn delete_admin_session(&self, hash: [u8; 32]) -> Result<()>;
    /// Settings changed at run time (every node reads them here).
    async fn runtime_settings(&self) -> Result<RuntimeSettings>;
    async fn put_runtime_settings(&self, settings: RuntimeSettings, now: Millis) -> Result<()>;

    // --- the console's lists (issue 17) ---
    /// Up to `limit` notifications, newest first.
    async fn list_notifications(
        &self,
        query: NotificationListQuery,
    ) -> Result<Vec<NotificationRow>>;
    /// Up to `limit` lines of the delivery log across notifications,
    /// newest first.
    async fn delivery_log(&self, filter: LogFilter) -> Result<Vec<LogLine>>;
    /// Delivery-log lines with `since <= at < until` counted per bucket of
    /// `bucket_ms`, channel and status.
    async fn delivery_stats(
        &self,
        since: Millis,
        until: Millis,
        bucket_ms: i64,
    ) -> Result<Vec<StatBucket>>;
    /// How many people a send to `audience` reaches now (users once however
    /// often they are named, and email addresses of no user); unknown users
    /// and groups are `UnknownUsers` / `UnknownGroups` as for a send.
    async fn audience_size(&self, audience: &belfry_core::Audience) -> Result<i64>;
    /// Up to `limit` users by internal id, with that id (the cursor).
    async fn list_users(&self, query: UserListQuery) -> Result<Vec<(i64, User)>>;

    // --- users and groups ---
    /// Creates or updates a user; true when it was created.
    async fn put_user(&self, id: &UserId, patch: UserPatch, now: Millis) -> Result<(User, bool)>;
    async fn get_user(&self, id: &UserId) -> Result<Option<User>>;
    /// Removes the user, their memberships, inbox and inbox state, and
    /// revokes their tokens issued until `now` (a user re-created with the
    /// same id does not accept them).
    async fn delete_user(&self, id: &UserId, now: Millis) -> Result<()>;
    /// Revokes every token of the user issued until `now` (see
    /// `plan::users::revoke_tokens` for the rule); returns the stored
    /// `after`. `NotFound` for an unknown user.
    async fn revoke_tokens(&self, id: &UserId, now: Millis) -> Result<Millis>;
    /// The token revocations whose `after` is at or after `since`: what a
    /// node loads on start (and after it may have missed events).
    async fn token_revocations(&self, since: Millis) -> Result<Vec<(UserId, Millis)>>;
    /// Creates or renames a group; true when it was created.
    async fn put_group(
        &self,
        id: &GroupId,
        name: Option<String>,
        now: Millis,
    ) -> Result<(Group, bool)>;
    async fn list_groups(&self) -> Result<Vec<Group>>;

    // --- categories ---
    /// Every category, by id.
    async fn list_categories(&self) -> Result<Vec<belfry_core::CategoryDef>>;
    async fn get_category(
        &self,
        id: &belfry_core::Category,
    ) -> Result<Option<belfry_core::CategoryDef>>;
    /// Stores a category (whole); true when it was created.
    async fn put_category(&self, def: belfry_core::CategoryDef, now: Millis) -> Result<bool>;
    /// True when there was such a category.
    async fn delete_category(&self, id: &belfry_core::Category) -> Result<bool>;
    /// Creates those of `ids` that do not exist yet, with default settings
    /// (`BELFRY_AUTO_CATEGORIES`).
    async fn ensure_categories(&self, ids: Vec<belfry_core::Category>, now: Millis) -> Result<()>;

    // --- configuration documents (templates) ---
    /// Stores (or replaces) a document; true when it is new.
    async fn put_document(&self, kind: DocKind, id: &str, doc: String, now: Millis)
    -> Result<bool>;
    async fn get_document(&self, kind: DocKind, id: &str) -> Result<Option<Document>>;
    /// Every document of a kind, by id.
    async fn list_documents(&self, kind: DocKind) -> Result<Vec<Document>>;
    /// True when there was such a document.
    async fn delete_document(&self, kind: DocKind, id: &str) -> Result<bool>;
    /// Stores (or replaces) `put` and deletes `delete` in one transaction:
    /// all or nothing (`belfry rules import`).
    async fn write_documents(
        &self,
        put: Vec<NewDocument>,
        delete: Vec<(DocKind, String)>,
        now: Millis,
    ) -> Result<()>;
    /// Once per database: when the marker `marker` is not set yet, sets it
    /// and stores those of `docs` that do not exist, in one transaction;
    /// true when this call did it. Several nodes starting at once: one
    /// installs, the others see the marker. A document an administrator
    /// later deletes or edits stays so (the built-in starter rules).
    async fn install_documents_once(
        &self,
        marker: &str,
        docs: Vec<NewDocument>,
        now: Millis,
    ) -> Result<bool>;

    // --- preferences ---
    /// `NotFound` for an unknown user.
    async fn preferences(&self, user: &UserId) -> Result<UserPreferences>;
    /// Replaces a user's overrides. `NotFound` for an unknown user.
    async fn put_preferences(
        &self,
        user: &UserId,
        overrides: belfry_core::preferences::Overrides,
        now: Millis,
    ) -> Result<()>;
    /// What a user without overrides gets.
    async fn preference_defaults(&self) -> Result<belfry_core::preferences::Overrides>;
    async fn put_preference_defaults(
        &self,
        defaults: belfry_core::preferences::Overrides,
        now: Millis,
    ) -> Result<()>;

    // --- entity subscriptions ---
    /// Subscribes; true when it is new. `NotFound` for an unknown user.
    async fn subscribe(&self, entity: &EntityRef, who: Subscriber, now: Millis) -> Result<bool>;
    /// Unsubscribes; true when there was such a subscription.
    async fn unsubscribe(&self, entity: &EntityRef, who: Subscriber) -> Result<bool>;
    /// The subscribers of an entity, oldest first.
    async fn subscribers(&self, entity: &EntityRef) -> Result<Vec<Subscription>>;
    /// What a user follows (by user id or by their email address).
    /// `NotFound` for an unknown user.
    async fn subscriptions_of(&self, user: &UserId) -> Result<Vec<Subscription>>;

    // --- external contacts and access tokens (C9) ---
    /// Stores an external contact's name and language (the given ones
    /// replace, the missing ones stay).
    async fn put_contact(
        &self,
        email: &EmailAddress,
        profile: ContactProfile,
        now: Millis,
    ) -> Result<()>;
    /// Records a revocation at `now`: a token by id, or every token of a
    /// contact or an entity issued at or before `now`.
    async fn revoke_access(&self, revocation: AccessRevocation, now: Millis) -> Result<()>;
    /// Whether a revocation covers this token.
    async fn access_revoked(&self, token: &AccessTokenRef) -> Result<bool>;

    // --- web push subscriptions ---
    /// Stores a push subscription of `user`: the same endpoint posted
    /// again (by this or another user) updates the row and moves it to
    /// `user`, never duplicates it; then only the user's `cap` most
    /// recently posted ones are kept. Returns it and whether it is new.
    /// `NotFound` for an unknown user.
    async fn put_push_subscription(
        &self,
        user: &UserId,
        subscription: NewPushSubscription,
        cap: usize,
        now: Millis,
    ) -> Result<(PushSubscription, bool)>;
    /// A user's push subscriptions, most recently posted first. `NotFound`
    /// for an unknown user.
    async fn push_subscriptions(&self, user: &UserId) -> Result<Vec<PushSubscription>>;
    /// Removes one of `user`'s push subscriptions; true when there was one.
    async fn delete_push_subscription(&self, user: &UserId, id: &str) -> Result<bool>;

    // --- mobile devices (C6) ---
    /// Stores a mobile device of `user`: the same platform and token
    /// posted again (by this or another user) updates the row and moves it
    /// to `user`, never duplicates it; then only the user's `cap` most
    /// recently posted devices are kept. Returns it and whether it is new.
    /// `NotFound` for an unknown user.
    async fn put_mobile_device(
        &self,
        user: &UserId,
        device: NewMobileDevice,
        cap: usize,
        now: Millis,
    ) -> Result<(MobileDevice, bool)>;
    /// A user's mobile devices, most recently posted first. `NotFound`
    /// for an unknown user.
    async fn mobile_devices(&self, user: &UserId) -> Result<Vec<MobileDevice>>;
    /// Removes one of `user`'s mobile devices; true when there was one.
    async fn delete_mobile_device(&self, user: &UserId, id: &str) -> Result<bool>;

    // --- chat targets (C7) ---
    /// Stores (or replaces) `owner`'s target of `kind`; true when it is
    /// new. `NotFound` for an unknown user or group.
    async fn put_chat_target(
        &self,
        owner: &ChatOwner,
        kind: ChatKind,
        url: String,
        secret: Option<secrecy::SecretString>,
        now: Millis,
    ) -> Result<(ChatTarget, bool)>;
    /// `owner`'s targets, in kind order. `NotFound` for an unknown user or
    /// group.
    async fn chat_targets(&self, owner: &ChatOwner) -> Result<Vec<ChatTarget>>;
    /// Removes `owner`'s target of `kind`; true when there was one.
    /// `NotFound` for an unknown user or group.
    async fn delete_chat_target(&self, owner: &ChatOwner, kind: ChatKind) -> Result<bool>;

    // --- producer webhooks (C7) ---
    /// Stores a webhook, or replaces the one with its id (which keeps its
    /// secret and is enabled again, its failure run forgotten); true when
    /// it is new.
    async fn put_webhook(&self, hook: NewWebhook, now: Millis) -> Result<(Webhook, bool)>;
    /// Gives a webhook a new secret. `NotFound` for an unknown id.
    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: secrecy::SecretString,
        now: Millis,
    ) -> Result<Webhook>;
    async fn get_webhook(&self, id: &str) -> Result<Option<Webhook>>;
    /// Every webhook, by id.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>>;
    /// Removes a webhook, its attempts and its waiting jobs; true when
    /// there was one.
    async fn delete_webhook(&self, id: &str) -> Result<bool>;
    /// Where a webhook's job sends; None when it is gone.
    async fn webhook_target(&self, id: &str) -> Result<Option<WebhookTarget>>;
    /// A page of a webhook's attempts, newest first, older than `before`
    /// (an attempt's cursor). `NotFound` for an unknown webhook.
    async fn webhook_attempts(
        &self,
        id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<AttemptPage>;
    /// Forget the in-memory snapshot of who subscribes to what (another
    /// node changed the webhooks, or its events may have been missed): the
    /// next use reads the table again.
    fn webhooks_changed(&self) {}

    // --- sending ---
    /// Accepts notifications atomically: all are stored, or none (the error
    /// names the item). Repeated idempotency keys answer the first receipt.
    async fn send(&self, ctx: SendContext, batch: Vec<NewNotification>)
    -> Result<Vec<SendReceipt>>;
    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>>;
    /// Cancels a notification and removes it from every inbox.
    async fn delete_notification(&self, id: &str, now: Millis) -> Result<()>;

    /// A recipient answers a callback action (I7). `NotFound` when the
    /// user cannot see the notification; for a `once` action answered
    /// already, `Conflict` with [`Constraint::AlreadyAnswered`]. The
    /// answer's event shows it to every recipient after the commit.
    async fn answer_action(&self, user: &UserId, answer: NewAnswer) -> Result<AnswerReceipt>;

    // --- one user's inbox ---
    async fn list_inbox(&self, user: &UserId, query: InboxQuery, now: Millis) -> Result<InboxPage>;
    async fn counts(&self, user: &UserId, now: Millis) -> Result<Counts> {
        Ok(self.counts_at(user, now).await?.0)
    }
    /// The counts and the seq they are as of: they include every
    /// notification with a seq up to it and none above it, so that a client
    /// that receives notifications can carry them forward itself (a new
    /// entry above that seq is one more unread and unseen item).
    async fn counts_at(&self, user: &UserId, now: Millis) -> Result<(Counts, i64)>;
    /// Applies one change a user makes to their inbox, in one transaction,
    /// and emits its event after the commit (`plan::inbox` decides both);
    /// returns how many items changed. `NotFound` for an unknown user (and
    /// for one item the user cannot see).
    async fn inbox_change(&self, user: &UserId, change: InboxChange, now: Millis) -> Result<i64>;
    /// Changes one item; `NotFound` when the user cannot see it.
    async fn update_item(&self, user: &UserId, id: &str, op: ItemOp, now: Millis) -> Result<()> {
        let id = id.to_string();
        self.inbox_change(user, InboxChange::Item { id, op }, now)
            .await
            .map(|_| ())
    }
    /// Marks everything (or one category) read; returns how many items changed.
    async fn read_all(
        &self,
        user: &UserId,
        category: Option<belfry_core::Category>,
        now: Millis,
    ) -> Result<i64> {
        self.inbox_change(user, InboxChange::ReadAll(category), now)
            .await
    }
    /// The drawer was opened: everything is seen.
    async fn seen_all(&self, user: &UserId, now: Millis) -> Result<()> {
        self.inbox_change(user, InboxChange::SeenAll, now)
            .await
            .map(|_| ())
    }
    /// Archives several items; ids the user cannot see are ignored. Returns
    /// how many were archived.
    async fn archive_many(&self, user: &UserId, ids: Vec<String>, now: Millis) -> Result<i64> {
        self.inbox_change(user, InboxChange::Archive(ids), now)
            .await
    }
    /// The user viewed this entity in the host application: all about it is read.
    async fn read_entity(&self, user: &UserId, entity: &EntityRef, now: Millis) -> Result<i64> {
        self.inbox_change(user, InboxChange::ReadEntity(entity.clone()), now)
            .await
    }

    // --- jobs and delivery ---
    /// Claims up to `limit` due jobs (run_at <= now, not leased or lease
    /// expired) for `lease_ms`, counting an attempt on each.
    async fn claim_jobs(
        &self,
        now: Millis,
        lease_ms: i64,
        limit: usize,
        owner: &str,
    ) -> Result<Vec<Job>>;
    /// Records a job's outcome and its delivery events atomically.
    async fn finish_job(&self, job: i64, outcome: JobOutcome, now: Millis) -> Result<()>;
    /// When the next job is due (leases considered), if any.
    async fn next_job_at(&self) -> Result<Option<Millis>>;
    /// Queues the daily digest job of `user` at `at` unless they have one
    /// (one per user: `jobs.dedup`); with `reschedule`, a waiting one (not
    /// claimed right now) moves to `at` and keeps its window.
    async fn schedule_digest(
        &self,
        user: &UserId,
        at: Millis,
        reschedule: bool,
        now: Millis,
    ) -> Result<()>;
    /// Notified after a commit that queued jobs, so that workers start at once.
    fn jobs_wakeup(&self) -> Arc<tokio::sync::Notify>;
    /// Publishes a scheduled notification that is due (its recipients are
    /// resolved now). Nothing happens if it was cancelled meanwhile.
    async fn publish_due(&self, nid: i64, now: Millis) -> Result<()>;
    /// Queues delivery jobs on `channel` for the next `limit` members of a
    /// broadcast's audience after `after_uid`; the cursor of the next page,
    /// or None when all are queued.
    async fn expand_broadcast(
        &self,
        nid: i64,
        channel: belfry_core::Channel,
        after_uid: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Option<i64>>;
    /// What delivering one notification to one recipient on `channel`
    /// needs, with the delivery decision at `now` (`fallback`: the email
    /// fallback delay has passed; whether it was seen or read in the app
    /// decides); None when the notification no longer exists.
    async fn delivery_context(
        &self,
        nid: i64,
        recipient: &Recipient,
        channel: belfry_core::Channel,
        now: Millis,
        fallback: bool,
    ) -> Result<Option<DeliveryContext>>;
    /// One page of a notification's delivery log (in-app deliveries first,
    /// then every recorded event in order); see `plan::log`.
    async fn deliveries(&self, notification_id: &str, query: DeliveryQuery)
    -> Result<DeliveryPage>;
    async fn job_stats(&self, now: Millis) -> Result<JobStats>;
    /// The database connections of this node, for the metrics.
    fn pool_stats(&self) -> PoolStats;

    // --- retention ---
    /// One bounded step (one short transaction) of the retention run at
    /// `cursor`: what it deleted and where the next step starts.
    async fn retention_step(
        &self,
        cursor: retention::RetentionCursor,
        policy: retention::RetentionPolicy,
        now: Millis,
    ) -> Result<retention::RetentionStep>;
    /// Queues the retention job to run at `first_run` unless there is one
    /// already (durable: restarts and other nodes find it); whether it was
    /// added.
    async fn ensure_retention_job(&self, first_run: Millis, now: Millis) -> Result<bool>;

    // --- development mailbox ---
    async fn mailbox_put(&self, mail: NewDevMail, now: Millis) -> Result<DevMail>;
    /// Newest first.
    async fn mailbox_list(&self, limit: usize) -> Result<Vec<DevMail>>;
    async fn mailbox_get(&self, id: &str) -> Result<Option<DevMail>>;
    async fn mailbox_clear(&self) -> Result<i64>;

    // --- real time ---
    /// Events committed from now on, in commit order, batched per commit.
    /// A receiver that falls behind gets `Lagged` and must assume it missed
    /// events (streams then resume from the store).
    fn events(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<StoreEvent>>>;
    /// The highest seq committed so far, as this node knows it without
    /// asking the database. With several nodes it may lag behind seqs that
    /// other nodes committed; see [`Store::refresh_last_seq`].
    fn last_seq(&self) -> i64;
    /// The highest seq committed by any node, read from the database when
    /// the backend is shared by several nodes (it also brings `last_seq` up
    /// to date). Ask it before refusing something for being ahead of
    /// `last_seq`.
    async fn refresh_last_seq(&self) -> Result<i64> {
        Ok(self.last_seq())
    }
    /// The items of a user's inbox that arrived after `after_seq` (and are
    /// still there), oldest first, at most `limit`: `(seq, item JSON)`.
    async fn replay(
        &self,
        user: &UserId,
        after_seq: i64,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<(i64, String)>>;
}

/// The store shared by every handler.
pub type SharedStore = Arc<dyn Store>;

pub(crate) fn ser_millis<S: serde::Serializer>(m: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_rfc3339())
}

pub(crate) fn ser_opt_millis<S: serde::Serializer>(
    m: &Option<Millis>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(&m.to_rfc3339()),
        None => s.serialize_none(),
    }
}
