//! Retention (P7): the daily clean-up that keeps the database from growing
//! without end. One durable job (`retention`) walks the tables in phases,
//! each step one short write transaction of at most `batch` rows (50: a
//! few milliseconds on a 4 GB database), and the job rests as long as each
//! step took before the next, so that it holds the writer half the time at
//! most and sends queue behind one step at most:
//!
//! 1. `inbox`: notifications in the order they were created, up to those
//!    created `read_items` ago. Inbox entries of them that are read or
//!    archived go, and so do entries and broadcasts whose `expires_at` has
//!    passed; a notification that no one can see any longer (no inbox
//!    entry, no stack member, no broadcast row, nothing scheduled or queued
//!    for it) goes with its delivery log.
//! 2. `deliveries`: delivery-log lines older than `delivery_log`.
//! 3. `idempotency`: keys past their window (24 hours).
//! 4. `mailbox`: development mailbox entries older than `mailbox`.
//! 5. `webhook_attempts`: the producer webhooks' attempts log, kept as long
//!    as the delivery log (`delivery_log`).
//!
//! Unread entries stay however old they are: retention never takes away
//! something a person has not dealt with. A broadcast stays until it
//! expires or is cancelled (it is one row, whatever its audience).

use belfry_core::Millis;
use serde::{Deserialize, Serialize};

/// How long things are kept (milliseconds); None keeps them for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Read or archived inbox entries of notifications created longer ago.
    pub read_items: Option<i64>,
    /// Delivery-log lines.
    pub delivery_log: Option<i64>,
    /// Development mailbox entries.
    pub mailbox: Option<i64>,
    /// Rows looked at (or deleted) per transaction.
    pub batch: usize,
    /// Time between the end of one run and the start of the next.
    pub every: i64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            read_items: Some(90 * DAY_MS),
            delivery_log: Some(30 * DAY_MS),
            mailbox: Some(7 * DAY_MS),
            batch: 50,
            every: DAY_MS,
        }
    }
}

impl RetentionPolicy {
    /// The creation time up to which notifications are looked at.
    pub fn items_before(&self, now: Millis) -> Option<i64> {
        self.read_items.map(|age| now.0 - age)
    }

    pub fn deliveries_before(&self, now: Millis) -> Option<i64> {
        self.delivery_log.map(|age| now.0 - age)
    }

    pub fn mailbox_before(&self, now: Millis) -> Option<i64> {
        self.mailbox.map(|age| now.0 - age)
    }
}

/// Where a run is: its phase and the position in it (kept in the job's
/// payload, so a restart or another node continues where it stopped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum RetentionCursor {
    /// Notifications from this nid on.
    Inbox { from_nid: i64 },
    /// Delivery-log lines after this id.
    Deliveries { after_id: i64 },
    /// Idempotency keys after this (scope, key).
    Idempotency { after: Option<(String, String)> },
    /// Mailbox entries after this id.
    Mailbox { after_id: i64 },
    /// Webhook attempts after this id.
    WebhookAttempts { after_id: i64 },
}

impl RetentionCursor {
    pub fn start() -> Self {
        RetentionCursor::Inbox { from_nid: 0 }
    }

    /// The first position of the phase after this one; None after the last.
    pub fn next_phase(&self) -> Option<Self> {
        match self {
            RetentionCursor::Inbox { .. } => Some(RetentionCursor::Deliveries { after_id: 0 }),
            RetentionCursor::Deliveries { .. } => {
                Some(RetentionCursor::Idempotency { after: None })
            }
            RetentionCursor::Idempotency { .. } => Some(RetentionCursor::Mailbox { after_id: 0 }),
            RetentionCursor::Mailbox { .. } => {
                Some(RetentionCursor::WebhookAttempts { after_id: 0 })
            }
            RetentionCursor::WebhookAttempts { .. } => None,
        }
    }
}

/// Rows one step deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDeleted {
    pub inbox: u64,
    pub notifications: u64,
    pub deliveries: u64,
    pub idempotency: u64,
    pub mailbox: u64,
    pub webhook_attempts: u64,
}

impl RetentionDeleted {
    pub fn add(&mut self, other: RetentionDeleted) {
        self.inbox += other.inbox;
        self.notifications += other.notifications;
        self.deliveries += other.deliveries;
        self.idempotency += other.idempotency;
        self.mailbox += other.mailbox;
        self.webhook_attempts += other.webhook_attempts;
    }

    pub fn total(&self) -> u64 {
        self.inbox
            + self.notifications
            + self.deliveries
            + self.idempotency
            + self.mailbox
            + self.webhook_attempts
    }

    /// `(what, rows)` for the metrics.
    pub fn parts(&self) -> [(&'static str, u64); 6] {
        [
            ("inbox", self.inbox),
            ("notifications", self.notifications),
            ("deliveries", self.deliveries),
            ("idempotency", self.idempotency),
            ("mailbox", self.mailbox),
            ("webhook_attempts", self.webhook_attempts),
        ]
    }
}

/// What one step did and where the next one starts (None: the run is over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionStep {
    pub deleted: RetentionDeleted,
    pub next: Option<RetentionCursor>,
}

impl RetentionStep {
    /// The step of a phase with nothing (more) to do.
    pub fn phase_done(cursor: &RetentionCursor, deleted: RetentionDeleted) -> Self {
        RetentionStep {
            deleted,
            next: cursor.next_phase(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_run_in_order_and_end() {
        let mut c = RetentionCursor::start();
        let mut seen = vec![];
        loop {
            seen.push(serde_json::to_value(&c).unwrap()["phase"].clone());
            match c.next_phase() {
                Some(n) => c = n,
                None => break,
            }
        }
        assert_eq!(
            seen,
            [
                "inbox",
                "deliveries",
                "idempotency",
                "mailbox",
                "webhook_attempts"
            ]
            .map(serde_json::Value::from)
        );
    }

    #[test]
    fn cutoffs_follow_the_policy() {
        let p = RetentionPolicy {
            read_items: Some(1000),
            delivery_log: None,
            ..Default::default()
        };
        assert_eq!(p.items_before(Millis(5000)), Some(4000));
        assert_eq!(p.deliveries_before(Millis(5000)), None);
        assert_eq!(p.mailbox_before(Millis(5000)), Some(5000 - 7 * DAY_MS));
    }
}
