//! Webhooks to producers (C7): what a registered webhook is, the events it
//! may subscribe to, the events themselves (queued as jobs in the same
//! transaction as the change that causes them), the attempts log, and the
//! in-memory "who subscribes to what" snapshot that keeps the hot paths
//! (mark read, a delivery's outcome) free of any extra work when no
//! enabled webhook subscribes to their event.

use belfry_core::Millis;
use serde::{Deserialize, Serialize};

/// The events a webhook may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WebhookEventType {
    /// A recipient answered a callback action (`POST /v1/me/notifications/{id}/actions/{action_id}`).
    #[serde(rename = "action.submitted")]
    ActionSubmitted,
    /// A delivery failed for good (after its retries).
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    /// A delivery went out.
    #[serde(rename = "delivery.sent")]
    DeliverySent,
    /// A recipient read a notification.
    #[serde(rename = "notification.read")]
    NotificationRead,
}

impl WebhookEventType {
    pub const ALL: [WebhookEventType; 4] = [
        WebhookEventType::ActionSubmitted,
        WebhookEventType::DeliveryFailed,
        WebhookEventType::DeliverySent,
        WebhookEventType::NotificationRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::ActionSubmitted => "action.submitted",
            WebhookEventType::DeliveryFailed => "delivery.failed",
            WebhookEventType::DeliverySent => "delivery.sent",
            WebhookEventType::NotificationRead => "notification.read",
        }
    }

    pub fn parse(value: &str) -> Option<WebhookEventType> {
        WebhookEventType::ALL
            .into_iter()
            .find(|e| e.as_str() == value)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Which event types at least one enabled webhook subscribes to: the
/// snapshot each backend keeps in memory. It may say yes when no webhook
/// subscribes any more (the exact set is read in the transaction that
/// queues the events), never no when one does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subscribed(u8);

impl Subscribed {
    pub fn of<'a>(events: impl IntoIterator<Item = &'a [WebhookEventType]>) -> Subscribed {
        let mut bits = 0;
        for list in events {
            for e in list {
                bits |= e.bit();
            }
        }
        Subscribed(bits)
    }

    pub fn wants(self, event: WebhookEventType) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }
}

/// A registered webhook, as the API shows it (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    /// Only events of notifications from this source; None: all.
    pub source: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<Millis>,
    /// Consecutive failed attempts (0 after a success).
    pub failure_streak: i64,
    /// When the current run of failures began.
    pub failing_since: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a webhook's job needs to send: where, with which secret, and
/// whether it is still enabled.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: secrecy::SecretString,
    pub enabled: bool,
}

/// A webhook to store (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: String,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub source: Option<String>,
    /// The secret of a new webhook (a replaced one keeps its own).
    pub secret: secrecy::SecretString,
}

/// One event for one webhook, as its job carries it: the same id and body
/// on every retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// `msg_<ulid>`: the `webhook-id` header.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WebhookEventType,
    /// When it happened.
    pub at: Millis,
    pub data: serde_json::Value,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// 2xx.
    Succeeded,
    /// Failed; tried again at `next_retry_at`.
    Retrying,
    /// Failed, and the event is given up (out of retries, or the webhook
    /// was disabled).
    Failed,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Retrying => "retrying",
            AttemptStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<AttemptStatus> {
        [
            AttemptStatus::Succeeded,
            AttemptStatus::Retrying,
            AttemptStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One attempt to deliver an event to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttempt {
    pub webhook: String,
    pub event_id: String,
    pub event_type: WebhookEventType,
    /// 1 for the first.
    pub attempt: i64,
    pub status: AttemptStatus,
    /// The HTTP status, when there was an answer.
    pub response_code: Option<i64>,
    /// A short excerpt of the answer, or the error.
    pub response: Option<String>,
    pub duration_ms: i64,
    pub at: Millis,
    pub next_retry_at: Option<Millis>,
}

/// What an attempt does to its webhook (decided by the engine, applied by
/// the store with the attempt, in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEffect {
    pub attempt: WebhookAttempt,
    /// Disable the webhook at once with this reason (410 Gone).
    pub disable_now: Option<String>,
    /// A failure disables the webhook when its run of failures began at or
    /// before this time (every attempt failed for that long).
    pub disable_if_failing_since: Option<Millis>,
}

/// A page of the attempts log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AttemptPage {
    pub items: Vec<WebhookAttempt>,
    /// Where the next page starts (older attempts).
    pub next_cursor: Option<i64>,
}

/// The `data` of a `delivery.sent` / `delivery.failed` event.
pub fn delivery_data(
    notification_id: &str,
    content_json: &str,
    line: &crate::DeliveryEvent,
) -> serde_json::Value {
    let (source, category) = source_and_category(content_json);
    let (kind, who) = line
        .recipient
        .split_once(':')
        .unwrap_or(("", line.recipient.as_str()));
    serde_json::json!({
        "notification_id": notification_id,
        "recipient": line.recipient,
        "user_id": (kind == "user").then_some(who),
        "email": (kind == "email").then_some(who),
        "group_id": (kind == "group").then_some(who),
        "channel": line.channel.as_str(),
        "attempt": line.attempt,
        "status": line.status.as_str(),
        "error": line.error,
        "at": line.at.to_rfc3339(),
        "source": source,
        "category": category,
    })
}

/// The event a final delivery-log line stands for: `delivery.sent` or
/// `delivery.failed` of a channel other than in-app.
pub fn delivery_event_type(line: &crate::DeliveryEvent) -> Option<WebhookEventType> {
    if line.channel == belfry_core::Channel::InApp {
        return None;
    }
    match line.status {
        crate::DeliveryStatus::Sent => Some(WebhookEventType::DeliverySent),
        crate::DeliveryStatus::Failed => Some(WebhookEventType::DeliveryFailed),
        _ => None,
    }
}

/// The `data` of a `notification.read` event.
pub fn read_data(
    notification_id: &str,
    content_json: &str,
    user: &belfry_core::UserId,
    at: Millis,
) -> serde_json::Value {
    let (source, category) = source_and_category(content_json);
    serde_json::json!({
        "notification_id": notification_id,
        "user_id": user.as_str(),
        "at": at.to_rfc3339(),
        "source": source,
        "category": category,
    })
}

/// A notification's source and category, from its stored content.
pub fn source_and_category(content_json: &str) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(content_json).unwrap_or_default();
    let text = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
    (text("source"), text("category"))
}

/// Whether a webhook (its events and source filter) takes an event of
/// `kind` about a notification from `source`.
pub fn matches(
    events: &[WebhookEventType],
    filter: Option<&str>,
    kind: WebhookEventType,
    source: Option<&str>,
) -> bool {
    events.contains(&kind) && filter.is_none_or(|f| Some(f) == source)
}

/// Parses the stored event list (a JSON array of names).
pub fn parse_events(json: &str) -> crate::Result<Vec<WebhookEventType>> {
    serde_json::from_str(json).map_err(crate::StoreError::backend)
}

/// A new event id (`msg_` and a ULID).
pub fn new_event_id() -> String {
    format!("msg_{}", ulid::Ulid::new())
}

/// Attempts kept per webhook by the retention run, whatever their age.
pub const ATTEMPTS_KEPT: i64 = 1000;
/// Attempts older than this are deleted by the retention run.
pub const ATTEMPTS_MAX_AGE_MS: i64 = 30 * 24 * 3600 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_all_and_read_entity_take_the_listed_items() {
        let items = vec![
            r#"{"id":"a","entity":{"type":"ticket","id":"7"},"source":"crm"}"#.to_string(),
            r#"{"id":"b","entity":null}"#.to_string(),
            r#"{"id":"c","entity":{"type":"ticket","id":"8"}}"#.to_string(),
        ];
        let all: Vec<String> = read_targets(&items, None)
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(all, ["a", "b", "c"]);
        let ticket = belfry_core::EntityRef {
            kind: "ticket".into(),
            id: "7".into(),
        };
        let one = read_targets(&items, Some(&ticket));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "a");
        assert_eq!(
            source_and_category(&one[0].1),
            (Some("crm".to_string()), None)
        );
    }

    #[test]
    fn the_snapshot_and_the_source_filter() {
        let s = Subscribed::of([&[WebhookEventType::DeliverySent][..]]);
        assert!(s.wants(WebhookEventType::DeliverySent));
        assert!(!s.wants(WebhookEventType::NotificationRead));
        assert!(!Subscribed::default().any());
        let ev = [WebhookEventType::NotificationRead];
        assert!(matches(&ev, None, WebhookEventType::NotificationRead, None));
        assert!(matches(
            &ev,
            Some("crm"),
            WebhookEventType::NotificationRead,
            Some("crm")
        ));
        assert!(!matches(
            &ev,
            Some("crm"),
            WebhookEventType::NotificationRead,
            Some("desk")
        ));
        assert!(!matches(
            &ev,
            Some("crm"),
            WebhookEventType::NotificationRead,
            None
        ));
        assert!(!matches(&ev, None, WebhookEventType::DeliverySent, None));
        let snap = Snapshot::default();
        let generation = snap.get().unwrap_err();
        snap.forget();
        snap.set(generation, s);
        assert!(
            snap.get().is_err(),
            "a load that raced with a change is not kept"
        );
        let generation = snap.get().unwrap_err();
        snap.set(generation, s);
        assert_eq!(snap.get(), Ok(s));
        snap.forget();
        assert!(snap.get().is_err());
        for e in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }
}

/// How many `notification.read` events one mark-all-read (or read-entity)
/// emits at most: one per notification it read, the newest first.
pub const READ_EVENTS_MAX: usize = belfry_core::inbox::MAX_LIMIT;

/// The notifications a mark-all-read (or, with `entity`, a read-entity)
/// reads, from the first page of the user's unread items listed before
/// it: `(notification id, item JSON)`.
pub(crate) fn read_targets(
    items: &[String],
    entity: Option<&belfry_core::EntityRef>,
) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|raw| {
            let v: serde_json::Value = serde_json::from_str(raw).ok()?;
            if let Some(e) = entity {
                let about = v.get("entity")?;
                if about.get("type")?.as_str()? != e.kind || about.get("id")?.as_str()? != e.id {
                    return None;
                }
            }
            Some((v.get("id")?.as_str()?.to_string(), raw.clone()))
        })
        .collect()
}

/// The query of the unread items a mark-all-read (or read-entity) reads.
pub(crate) fn unread_query(category: Option<&belfry_core::Category>) -> belfry_core::InboxQuery {
    belfry_core::InboxQuery {
        filter: belfry_core::inbox::Filter::Unread,
        category: category.cloned(),
        limit: READ_EVENTS_MAX,
        cursor: None,
    }
}

/// The snapshot a backend shared by several nodes keeps (PostgreSQL):
/// forgotten when this node changes the webhooks or hears that another did
/// (`StoreEvent::WebhooksChanged` on the bus, or events lost), and read
/// again at least every [`Snapshot::REFRESH`] in case such news never came
/// (nodes without NATS). A load that raced with a change is not kept.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// (generation, snapshot and when it was read): each change moves the
    /// generation on.
    state: std::sync::Mutex<(u64, Option<(Subscribed, std::time::Instant)>)>,
}

impl Snapshot {
    /// The longest a node uses its snapshot without reading the table.
    pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

    /// The snapshot if known, else the generation to load it for.
    pub fn get(&self) -> Result<Subscribed, u64> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.1 {
            Some((subscribed, at)) if at.elapsed() < Self::REFRESH => Ok(subscribed),
            _ => Err(s.0),
        }
    }

    /// Keeps a snapshot loaded at generation `generation`, unless the
    /// webhooks changed since.
    pub fn set(&self, generation: u64, subscribed: Subscribed) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == generation {
            s.1 = Some((subscribed, std::time::Instant::now()));
        }
    }

    pub fn forget(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1 = None;
    }
}

/// Why an attempt disables its webhook now, if it does: `disable_now`
/// (410), or a run of failures that began at or before the cutoff.
pub(crate) fn disable_reason(effect: &AttemptEffect, failing_since: Option<i64>) -> Option<String> {
    let a = &effect.attempt;
    if a.status == AttemptStatus::Succeeded {
        return None;
    }
    let since = failing_since.unwrap_or(a.at.0);
    effect.disable_now.clone().or_else(|| {
        effect
            .disable_if_failing_since
            .filter(|cutoff| since <= cutoff.0)
            .map(|_| {
                format!(
                    "every attempt failed since {}; the last: {}",
                    Millis(since).to_rfc3339(),
                    a.response.as_deref().unwrap_or("no answer")
                )
            })
    })
}
