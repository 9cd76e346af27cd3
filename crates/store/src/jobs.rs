//! The job queue and the delivery log, as the store exposes them: due work
//! (publishing a scheduled notification, delivering one message, expanding a
//! broadcast into deliveries) and what happened to each delivery.

use belfry_core::{Channel, EmailAddress, GroupId, Locale, Millis, TimeZoneName, UserId};
use serde::{Deserialize, Serialize};

/// Who one delivery is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Recipient {
    User(UserId),
    /// An external contact, known only by address.
    Contact(EmailAddress),
    /// A group's own chat targets (C7): one post per target, not one per
    /// member.
    Group(GroupId),
}

impl Recipient {
    /// `user:<id>`, `email:<address>` or `group:<id>`, as the delivery
    /// log shows it.
    pub fn label(&self) -> String {
        match self {
            Recipient::User(u) => format!("user:{u}"),
            Recipient::Contact(e) => format!("email:{e}"),
            Recipient::Group(g) => format!("group:{g}"),
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobPayload {
    /// Publish the scheduled notification `Job::nid`.
    Publish,
    /// Send notification `Job::nid` to one recipient on one channel.
    Deliver {
        channel: Channel,
        recipient: Recipient,
        /// The recipient's targets (mobile devices, push subscriptions)
        /// that took it already: a retry sends to the others only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        done: Vec<String>,
    },
    /// Queue deliveries on `channel` for a broadcast's audience, page by page.
    Expand { channel: Channel, after_uid: i64 },
    /// The email fallback (C8) of notification `Job::nid` for one user,
    /// after the category's delay: email unless it was seen or read in the
    /// app by now.
    Fallback { recipient: Recipient },
    /// The daily clean-up (`crate::retention`): None starts a run, else
    /// where the run stopped.
    Retention {
        cursor: Option<crate::retention::RetentionCursor>,
    },
    /// The daily digest of one user (no `Job::nid`): one job per user,
    /// unique by [`JobPayload::dedup`], moved to the next day after it
    /// runs. `since` is when the last digest ran (None: never; the first
    /// covers the last 24 hours).
    Digest {
        user: UserId,
        #[serde(default)]
        since: Option<Millis>,
    },
    /// The summary of what the per-recipient rate limit held back (P6):
    /// one message on `channel` to `user` at `until`, the end of the window
    /// that began at `since`, listing notifications `nids` (no `Job::nid`;
    /// unique by [`JobPayload::dedup`], so held deliveries join it).
    Summary {
        user: UserId,
        channel: Channel,
        since: Millis,
        until: Millis,
        nids: Vec<i64>,
        /// Held beyond the ids kept (`plan::summary::KEPT`).
        #[serde(default)]
        more: i64,
    },
    /// One event to one producer webhook (C7; no `Job::nid`): queued in the
    /// transaction of the change that caused it, retried on its own
    /// schedule (`belfry_delivery::webhooks`).
    Webhook {
        webhook: String,
        event: crate::webhooks::WebhookEvent,
    },
}

impl JobPayload {
    /// A delivery of a job's notification to `recipient` on `channel`.
    pub fn deliver(channel: Channel, recipient: Recipient) -> JobPayload {
        JobPayload::Deliver {
            channel,
            recipient,
            done: Vec::new(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobPayload::Publish => "publish",
            JobPayload::Deliver { .. } => "deliver",
            JobPayload::Expand { .. } => "expand",
            JobPayload::Fallback { .. } => "fallback",
            JobPayload::Retention { .. } => "retention",
            JobPayload::Digest { .. } => "digest",
            JobPayload::Summary { .. } => "summary",
            JobPayload::Webhook { .. } => "webhook",
        }
    }

    /// The key that makes a job unique (`jobs.dedup`): a user has at most
    /// one digest job, however many nodes or requests create it.
    pub fn dedup(&self) -> Option<String> {
        match self {
            JobPayload::Digest { user, .. } => Some(format!("digest:{user}")),
            JobPayload::Summary {
                user,
                channel,
                until,
                ..
            } => Some(format!("summary:{}:{}:{user}", channel.as_str(), until.0)),
            _ => None,
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub nid: Option<i64>,
    pub payload: JobPayload,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub run_at: Millis,
}

/// The outcome of one delivery attempt or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Scheduled,
    Sent,
    Failed,
    Skipped,
    Cancelled,
    /// Waiting for the recipient's quiet hours (or the email fallback
    /// delay) to end: see `until`.
    Held,
    /// Put into the recipient's daily digest.
    Digested,
    /// Not delivered because of the recipient's preferences or state: see
    /// `reason`.
    Suppressed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Scheduled => "scheduled",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Cancelled => "cancelled",
            DeliveryStatus::Held => "held",
            DeliveryStatus::Digested => "digested",
            DeliveryStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Queued,
            DeliveryStatus::Scheduled,
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
            DeliveryStatus::Skipped,
            DeliveryStatus::Cancelled,
            DeliveryStatus::Held,
            DeliveryStatus::Digested,
            DeliveryStatus::Suppressed,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One line of a delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryEvent {
    /// `user:<id>`, `email:<address>`, `group:<id>` or `all`.
    pub recipient: String,
    #[schema(value_type = String)]
    pub channel: Channel,
    pub status: DeliveryStatus,
    /// 1 for the first attempt; 0 for events that are not attempts.
    pub attempt: i64,
    pub error: Option<String>,
    /// When it happened (for `scheduled`: when it is due; for a failed
    /// attempt that will be retried, the error says when).
    #[serde(serialize_with = "crate::ser_millis")]
    #[schema(value_type = String)]
    pub at: Millis,
    /// Why a `suppressed` line was not delivered.
    pub reason: Option<crate::Reason>,
    /// Until when a `held` line waits.
    #[serde(serialize_with = "crate::ser_opt_millis")]
    #[schema(value_type = Option<String>)]
    pub until: Option<Millis>,
}

/// What to do with a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done: remove the job and log these events.
    Done(Vec<DeliveryEvent>),
    /// Try again at `at`, logging these events (and with a new payload,
    /// if given: what the attempt got done).
    Retry {
        at: Millis,
        error: String,
        log: Vec<DeliveryEvent>,
        payload: Option<JobPayload>,
    },
    /// Run again at once with a new payload (the next page of a long task).
    Continue(JobPayload),
    /// Not yet: run again at `at` (with a new payload, if given), logging
    /// these events; the attempt its claim counted does not count (quiet
    /// hours, the email fallback delay).
    Later {
        at: Millis,
        payload: Option<JobPayload>,
        log: Vec<DeliveryEvent>,
    },
    /// The daily digest ran (sent, or found nothing unread): run again at
    /// `at` with `payload`, counting attempts from zero again, and log
    /// `lines` on the notifications it listed (by their public id).
    Digest {
        at: Millis,
        payload: JobPayload,
        lines: Vec<(String, DeliveryEvent)>,
    },
    /// The per-recipient rate limit held this delivery back: remove the
    /// job, log `log`, and add its notification to the summary job
    /// `summary` (a [`JobPayload::Summary`] with this one nid), made if
    /// the recipient has none for that window yet. Should that summary be
    /// running already, the notification joins the next window's.
    Summarise {
        summary: JobPayload,
        log: Vec<DeliveryEvent>,
    },
    /// Done: remove the job and log each line on the notification with
    /// that public id (a summary's notifications).
    DoneLines(Vec<(String, DeliveryEvent)>),
    /// Not started after all (the node is stopping): free it at once, and
    /// the attempt its claim counted does not count.
    Release,
    /// An attempt of a webhook job: log it, update the webhook's failure
    /// run (disabling it when that is long enough, or at once on 410), and
    /// retry at `next_retry_at` (unless the webhook is disabled now) or
    /// remove the job.
    Webhook(crate::webhooks::AttemptEffect),
}

/// What Belfry knows about a recipient that a channel may need to reach
/// and address them: the email channel their address, every channel their
/// name, language and time zone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecipientProfile {
    /// None for a user without an address.
    pub email: Option<EmailAddress>,
    pub name: Option<String>,
    pub locale: Option<Locale>,
    pub timezone: Option<TimeZoneName>,
}

/// Everything a delivery of one notification to one recipient on one
/// channel needs, read by the worker that runs its job.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryContext {
    pub notification_id: String,
    pub status: crate::NotificationStatus,
    pub content_json: String,
    pub published_at: Millis,
    pub profile: RecipientProfile,
    /// What the recipient's preferences say about delivering it on this
    /// channel now (`plan::policy`); always `Now` for external contacts.
    pub verdict: crate::Verdict,
}

/// How much work is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobStats {
    /// Due and not being worked on: what the workers have not caught up
    /// with. Jobs waiting for a later time (a scheduled send, tomorrow's
    /// digest or retention run) are not counted.
    pub queued: i64,
    /// Claimed by a worker right now.
    pub running: i64,
    /// Waiting for a retry after a failed attempt.
    pub retrying: i64,
}

/// An email for the development mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
}

/// An email kept in the development mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DevMail {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
    #[serde(serialize_with = "crate::ser_millis")]
    #[schema(value_type = String)]
    pub created_at: Millis,
}
