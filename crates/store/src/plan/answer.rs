//! Answering a callback action (I7): what a `once` action's first answer
//! records on the notification, and the event that shows it live to every
//! recipient. The backends check that the user can see the notification,
//! set `notifications.answered` only while it is NULL (the first answer
//! wins, atomically, also across nodes) and keep every answer in
//! `action_responses`.

use crate::{BroadcastTargets, StoreEvent};
use belfry_core::{Millis, UserId};
use serde_json::json;

/// An answer to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnswer {
    /// The notification's public id.
    pub notification: String,
    /// The action's id and label (the label shows in "Approved by …").
    pub action: String,
    pub label: String,
    /// The first answer wins; later answers are refused.
    pub once: bool,
    /// The checked values, a JSON object.
    pub values: String,
    /// The answer's id (ULID), the API's `response_id`.
    pub response_id: String,
    pub at: Millis,
}

/// What answering stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerReceipt {
    pub response_id: String,
    /// The notification's `answered` JSON (a `once` action's), if set now.
    pub answered: Option<String>,
}

/// The `answered` JSON of a `once` action's first answer.
pub(crate) fn answered_json(answer: &NewAnswer, user: &UserId, name: Option<&str>) -> String {
    json!({
        "action": answer.action,
        "label": answer.label,
        "by": {"id": user.as_str(), "name": name},
        "at": answer.at.to_rfc3339(),
    })
    .to_string()
}

/// The event that shows the answer on every recipient's item.
pub(crate) fn answered_event(
    id: &str,
    answered: String,
    users: Vec<UserId>,
    broadcast: Option<BroadcastTargets>,
) -> StoreEvent {
    StoreEvent::Answered {
        id: id.to_string(),
        answered,
        users,
        broadcast,
    }
}

/// The `action.submitted` webhook event of an answer: the notification's
/// source (webhooks may filter on it) and the event's `data`.
pub(crate) fn submitted(
    answer: &NewAnswer,
    user: &UserId,
    name: Option<&str>,
    content_json: &str,
) -> (Option<String>, serde_json::Value) {
    let (source, category) = crate::webhooks::source_and_category(content_json);
    let content: serde_json::Value = serde_json::from_str(content_json).unwrap_or_default();
    let values: serde_json::Value = serde_json::from_str(&answer.values).unwrap_or_default();
    let data = json!({
        "response_id": answer.response_id,
        "notification_id": answer.notification,
        "action": {"id": answer.action, "label": answer.label, "once": answer.once},
        "values": values,
        "user": {"id": user.as_str(), "name": name},
        "at": answer.at.to_rfc3339(),
        "source": source,
        "category": category,
        "entity": content.get("entity").cloned().unwrap_or_default(),
        "title": content.get("title").cloned().unwrap_or_default(),
    });
    (source, data)
}
