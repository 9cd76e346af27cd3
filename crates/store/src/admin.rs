//! The administration console's data (issue 17): admin accounts, their
//! console sessions and sign-in failures, settings changed at run time, and
//! the read models of the console's lists (notifications, the delivery log
//! across notifications, delivery counts per hour, users, audience sizes).

use crate::jobs::DeliveryEvent;
use belfry_core::{GroupId, Millis};
use serde::Serialize;

/// An administrator of the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Admin {
    /// `adm_` and 16 hex digits.
    pub id: String,
    /// Lower-case; one admin per address.
    pub email: String,
    pub name: String,
    #[serde(serialize_with = "crate::ser_millis")]
    #[schema(value_type = String)]
    pub created_at: Millis,
}

/// An admin to store: the password only as its argon2id hash (PHC string).
#[derive(Debug, Clone)]
pub struct NewAdmin {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
}

/// A console session: only the SHA-256 of the cookie value is stored.
#[derive(Debug, Clone)]
pub struct NewAdminSession {
    pub hash: [u8; 32],
    pub admin_id: String,
    pub csrf_token: String,
    pub expires_at: Millis,
}

/// A live console session and its admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    pub admin: Admin,
    pub csrf_token: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
}

/// Which notifications to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct NotificationListQuery {
    /// Created at or after.
    pub since: Option<Millis>,
    pub category: Option<String>,
    pub source: Option<String>,
    /// Continue below this internal id (the cursor).
    pub before: Option<i64>,
    pub limit: usize,
}

/// One notification of the console's list.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    /// The internal id (the cursor).
    pub nid: i64,
    pub id: String,
    pub status: String,
    pub sender: String,
    pub content_json: String,
    pub audience_json: String,
    pub created_at: Millis,
    pub published_at: Option<Millis>,
    pub send_at: Option<Millis>,
    pub recipients: Option<i64>,
    /// Lines of its delivery log by channel and status.
    pub deliveries: Vec<(String, String, i64)>,
}

/// Which lines of the delivery log across notifications to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// As logged: `user:<id>`, `email:<address>`, `group:<id>`, `all`.
    pub recipient: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub category: Option<String>,
    pub source: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Continue below this line id (the cursor).
    pub before: Option<i64>,
    pub limit: usize,
}

/// One line of the delivery log across notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub id: i64,
    pub notification_id: String,
    pub event: DeliveryEvent,
}

/// Delivery-log lines of one channel and status in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatBucket {
    #[serde(serialize_with = "crate::ser_millis")]
    #[schema(value_type = String)]
    pub start: Millis,
    pub channel: String,
    pub status: String,
    pub count: i64,
}

/// Which users to list, by id.
#[derive(Debug, Clone, Default)]
pub struct UserListQuery {
    /// Case-insensitive prefix of the id, the name or the email address.
    pub query: Option<String>,
    /// Current members of this group only.
    pub group: Option<GroupId>,
    /// Continue after this internal id (the cursor).
    pub after: Option<i64>,
    pub limit: usize,
}

/// The smallest string greater than every string starting with `prefix`
/// (for index range scans of a prefix); None if there is none.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        // Skip the surrogate range, which no char holds.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `LIKE` pattern of a prefix, `\` escaping `%`, `_` and `\`.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Settings changed at run time (`PUT /v1/settings`), stored in the
/// database so that every node uses them; None: the node's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuntimeSettings {
    /// Days read or archived inbox items are kept; 0: kept.
    pub retention_days: Option<u32>,
    /// Days delivery-log lines are kept; 0: kept.
    pub delivery_log_retention_days: Option<u32>,
    /// Days development-mailbox entries are kept; 0: kept.
    pub mailbox_retention_days: Option<u32>,
}

impl RuntimeSettings {
    /// `policy` with the stored settings applied.
    pub fn apply(
        &self,
        mut policy: crate::retention::RetentionPolicy,
    ) -> crate::retention::RetentionPolicy {
        let days = |d: u32| (d > 0).then_some(i64::from(d) * 24 * 3600 * 1000);
        if let Some(d) = self.retention_days {
            policy.read_items = days(d);
        }
        if let Some(d) = self.delivery_log_retention_days {
            policy.delivery_log = days(d);
        }
        if let Some(d) = self.mailbox_retention_days {
            policy.mailbox = days(d);
        }
        policy
    }
}

/// A stored delivery-log line as an event (what the per-notification log
/// shows for the same row).
pub(crate) fn logged_event(line: crate::plan::StoredLine) -> crate::Result<DeliveryEvent> {
    use crate::StoreError;
    use crate::jobs::DeliveryStatus;
    let (recipient, channel, status, attempt, error, at, reason, until) = line;
    Ok(DeliveryEvent {
        recipient,
        channel: belfry_core::Channel::parse(&channel).map_err(StoreError::backend)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::backend(format!("unknown delivery status {status}")))?,
        attempt,
        error,
        at: Millis(at),
        reason: reason
            .map(|r| {
                serde_json::from_value(serde_json::Value::String(r)).map_err(StoreError::backend)
            })
            .transpose()?,
        until: until.map(Millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_exactly_the_strings_with_the_prefix() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end(""), None);
        for s in ["ab", "abz", "ab\u{10FFFF}"] {
            assert!(s < prefix_end("ab").unwrap().as_str());
        }
        assert!("ac" >= prefix_end("ab").unwrap().as_str());
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn stored_settings_override_the_policy_and_zero_keeps() {
        let base = crate::retention::RetentionPolicy::default();
        let s = RuntimeSettings {
            retention_days: Some(10),
            delivery_log_retention_days: Some(0),
            mailbox_retention_days: None,
        };
        let p = s.apply(base);
        assert_eq!(p.read_items, Some(10 * 24 * 3600 * 1000));
        assert_eq!(p.delivery_log, None);
        assert_eq!(p.mailbox, base.mailbox);
    }
}
