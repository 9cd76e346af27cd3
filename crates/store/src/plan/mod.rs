//! The planner: every decision about what a write does, made once for both
//! backends, as pure code with no I/O. A backend looks facts up in batches,
//! asks the planner, and applies the plan in its own transaction
//! discipline; the plan also names the events to emit after the commit.
//!
//! - [`send`]: who receives a notification (audience rules), the rows,
//!   jobs, log lines, stream event and receipt of publishing or scheduling it;
//! - [`stack`]: what cancelling a notification does to stacked entries;
//! - [`answer`]: a callback action's answer and its event;
//! - [`inbox`]: the state change and the event of each inbox operation;
//! - [`reading`]: which broadcasts reach a user, how a page or a replay is
//!   merged, what is seen, the counts;
//! - [`users`]: applying a `UserPatch`, and the events of user changes;
//! - [`stored`]: how a notification's request is stored and read back;
//! - [`log`]: the delivery log, page by page (keyset reads, cursors);
//! - [`summary`]: how a delivery held by the per-recipient rate limit
//!   joins its recipient's summary job;
//! - here: the delivery jobs (and "skipped" lines) of a resolved audience
//!   on the channels other than in-app, and how the log names targets.

pub mod answer;
pub(crate) mod inbox;
pub(crate) mod log;
pub mod policy;
pub(crate) mod reading;
pub(crate) mod send;
pub(crate) mod stack;
pub(crate) mod stored;
pub(crate) mod summary;
pub(crate) mod users;

use crate::jobs::{DeliveryEvent, DeliveryStatus, JobPayload, Recipient};
use belfry_core::{Channel, EmailAddress, GroupId, Millis, NewNotification, UserId};
use std::collections::HashSet;

/// A log line that is not an attempt.
pub(crate) fn event(
    recipient: String,
    channel: Channel,
    status: DeliveryStatus,
    error: Option<String>,
    at: Millis,
) -> DeliveryEvent {
    DeliveryEvent {
        recipient,
        channel,
        status,
        attempt: 0,
        error,
        at,
        reason: None,
        until: None,
    }
}

/// How the log names the requested targets (of a scheduled send).
pub(crate) fn target_labels(n: &NewNotification) -> Vec<String> {
    let a = &n.audience;
    let mut out = Vec::new();
    if a.all {
        out.push("all".to_string());
    }
    out.extend(a.groups.iter().map(|g| format!("group:{g}")));
    out.extend(a.users.iter().map(|u| format!("user:{u}")));
    out.extend(a.emails.iter().map(|e| format!("email:{e}")));
    if let Some(e) = &a.entity {
        out.push(format!("entity:{}/{}", e.kind, e.id));
    }
    out
}

/// The delivery jobs a published notification needs beyond the in-app
/// channel, and the log lines that go with them: one job per direct user
/// and per external contact, and one expansion job for a broadcast's
/// audience (queued page by page, never in the publishing transaction).
pub(crate) struct DeliveryPlan {
    pub jobs: Vec<JobPayload>,
    /// "queued" for each job, "skipped" with the reason for the others.
    pub log: Vec<DeliveryEvent>,
}

/// How the log names a broadcast's audience.
fn broadcast_label(n: &NewNotification) -> String {
    let a = &n.audience;
    if a.all {
        "all".to_string()
    } else {
        a.groups
            .iter()
            .map(|g| format!("group:{g}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Who can receive web push (or, the same way, mobile push: who has a
/// mobile device), as a backend looked it up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Push<'a> {
    /// The direct recipients with a push subscription.
    pub users: &'a HashSet<i64>,
    /// Whether anyone has a push subscription.
    pub anyone: bool,
}

/// The direct recipients who switched a channel on that the notification
/// does not take by default (`Resolved::email_opt_in`, `push_opt_in`,
/// `mobile_opt_in`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OptedIn<'a> {
    pub email: &'a HashSet<i64>,
    pub push: &'a HashSet<i64>,
    pub mobile: &'a HashSet<i64>,
}

/// Who can receive chat (C7), as a backend looked it up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chat<'a> {
    /// The direct recipients with a chat target.
    pub users: &'a HashSet<i64>,
    /// The direct recipients who switched chat on for this notification
    /// although it does not post to chat by default.
    pub opted: &'a HashSet<i64>,
    /// The targeted groups with a chat target of their own.
    pub groups: &'a [GroupId],
}

/// Plans the deliveries of `n` to its resolved direct users and external
/// contacts. Chat goes to the direct users with a chat target (each
/// user's job posts to all of their targets) and once to each targeted
/// group's own targets (a job per group, not per member: members reached
/// through a group are not expanded on chat). Web push goes only to the direct users with a push
/// subscription (a user without one has nothing to deliver to, and a job
/// for each would cost every send a write); a broadcast's web push
/// expansion is queued only when anyone has one, and queues members with
/// one only. Mobile push (C6) follows the same rules with `mobile`: the
/// users with a mobile device.
#[allow(clippy::too_many_arguments)]
pub(crate) fn delivery_plan(
    n: &NewNotification,
    direct: &[(i64, UserId)],
    push: Push<'_>,
    mobile: Push<'_>,
    opted: OptedIn<'_>,
    chat: Chat<'_>,
    contacts: &[EmailAddress],
    now: Millis,
) -> DeliveryPlan {
    let a = &n.audience;
    let mut planned: Vec<(JobPayload, String)> = Vec::new();
    let mut log = Vec::new();
    for channel in [Channel::Email, Channel::WebPush, Channel::MobilePush] {
        let wanted = n.wants(channel, false);
        // Who can be reached on a push channel (None: anyone, email).
        let (opted_in, reach) = match channel {
            Channel::Email => (opted.email, None),
            Channel::WebPush => (opted.push, Some(push)),
            _ => (opted.mobile, Some(mobile)),
        };
        if !wanted && opted_in.is_empty() {
            continue;
        }
        for (uid, user) in direct {
            if reach.is_some_and(|r| !r.users.contains(uid)) {
                continue;
            }
            if !wanted && !opted_in.contains(uid) {
                continue;
            }
            planned.push((
                JobPayload::deliver(channel, Recipient::User(user.clone())),
                format!("user:{user}"),
            ));
        }
        if wanted && a.is_broadcast() && reach.is_none_or(|r| r.anyone) {
            planned.push((
                JobPayload::Expand {
                    channel,
                    after_uid: 0,
                },
                broadcast_label(n),
            ));
        }
    }
    let chat_wanted = n.wants(Channel::Chat, false);
    for (uid, user) in direct {
        if chat.users.contains(uid) && (chat_wanted || chat.opted.contains(uid)) {
            planned.push((
                JobPayload::deliver(Channel::Chat, Recipient::User(user.clone())),
                format!("user:{user}"),
            ));
        }
    }
    if chat_wanted {
        for group in chat.groups {
            planned.push((
                JobPayload::deliver(Channel::Chat, Recipient::Group(group.clone())),
                format!("group:{group}"),
            ));
        }
    }
    for address in contacts {
        let label = format!("email:{address}");
        if n.wants(Channel::Email, true) {
            planned.push((
                JobPayload::deliver(Channel::Email, Recipient::Contact(address.clone())),
                label,
            ));
        } else {
            log.push(event(
                label,
                Channel::Email,
                DeliveryStatus::Skipped,
                Some(
                    "an external contact has no inbox; this notification's channels exclude email"
                        .into(),
                ),
                now,
            ));
        }
    }
    let mut jobs = Vec::with_capacity(planned.len());
    for (job, label) in planned {
        let channel = match &job {
            JobPayload::Deliver { channel, .. } | JobPayload::Expand { channel, .. } => *channel,
            _ => Channel::Email,
        };
        log.push(event(label, channel, DeliveryStatus::Queued, None, now));
        jobs.push(job);
    }
    DeliveryPlan { jobs, log }
}

/// A line of the delivery log as stored: recipient, channel, status,
/// attempt, error, at.
pub(crate) type StoredLine = (
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
);

/// The log line of a pending job that a cancellation removed.
pub(crate) fn cancelled_line(payload: JobPayload, now: Millis) -> DeliveryEvent {
    let (recipient, channel) = match payload {
        JobPayload::Publish => ("scheduled".to_string(), Channel::InApp),
        JobPayload::Deliver {
            channel, recipient, ..
        } => (recipient.label(), channel),
        JobPayload::Fallback { recipient } => (recipient.label(), Channel::Email),
        JobPayload::Digest { user, .. } => (format!("user:{user}"), Channel::Email),
        JobPayload::Summary { user, channel, .. } => (format!("user:{user}"), channel),
        JobPayload::Expand { channel, .. } => ("broadcast".to_string(), channel),
        // Not tied to a notification: never cancelled with one.
        JobPayload::Retention { .. } => ("retention".to_string(), Channel::InApp),
        JobPayload::Webhook { webhook, .. } => (format!("webhook:{webhook}"), Channel::InApp),
    };
    event(recipient, channel, DeliveryStatus::Cancelled, None, now)
}

/// A validated notification from its JSON request (for tests).
#[cfg(test)]
pub(crate) fn notification(json: &str) -> NewNotification {
    serde_json::from_str::<belfry_core::SendRequest>(json)
        .unwrap()
        .validate(Millis(0))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::notification as n;
    use super::*;

    static NOBODY: std::sync::LazyLock<HashSet<i64>> = std::sync::LazyLock::new(HashSet::new);

    fn none() -> Push<'static> {
        Push {
            users: &NOBODY,
            anyone: false,
        }
    }

    fn no_chat() -> Chat<'static> {
        Chat {
            users: &NOBODY,
            opted: &NOBODY,
            groups: &[],
        }
    }

    fn no_opt_in() -> OptedIn<'static> {
        OptedIn {
            email: &NOBODY,
            push: &NOBODY,
            mobile: &NOBODY,
        }
    }

    #[test]
    fn defaults_email_contacts_only() {
        let plan = delivery_plan(
            &n(r#"{"to":{"users":["a"],"emails":["x@example.com"]},"title":"t"}"#),
            &[(1, UserId::parse("a").unwrap())],
            none(),
            none(),
            no_opt_in(),
            no_chat(),
            &[EmailAddress::parse("x@example.com").unwrap()],
            Millis(5),
        );
        assert_eq!(plan.jobs.len(), 1, "users get in-app only by default");
        assert_eq!(plan.log.len(), 1);
        assert_eq!(plan.log[0].recipient, "email:x@example.com");
        assert_eq!(plan.log[0].status, DeliveryStatus::Queued);
    }

    #[test]
    fn email_to_users_and_broadcasts_and_skipped_contacts() {
        let plan = delivery_plan(
            &n(r#"{"to":{"users":["a"],"groups":["g1","g2"]},"title":"t","channels":["email"]}"#),
            &[(1, UserId::parse("a").unwrap())],
            none(),
            none(),
            no_opt_in(),
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(plan.jobs.len(), 2);
        assert!(matches!(
            plan.jobs[1],
            JobPayload::Expand { after_uid: 0, .. }
        ));
        assert_eq!(plan.log[1].recipient, "group:g1,group:g2");
        let plan = delivery_plan(
            &n(r#"{"to":{"emails":["x@example.com"]},"title":"t","channels":["in_app"]}"#),
            &[],
            none(),
            none(),
            no_opt_in(),
            no_chat(),
            &[EmailAddress::parse("x@example.com").unwrap()],
            Millis(5),
        );
        assert!(plan.jobs.is_empty());
        assert_eq!(plan.log[0].status, DeliveryStatus::Skipped);
    }

    #[test]
    fn web_push_only_to_users_with_a_subscription() {
        let users = [
            (1, UserId::parse("a").unwrap()),
            (2, UserId::parse("b").unwrap()),
        ];
        let pushable = HashSet::from([2]);
        let push = Push {
            users: &pushable,
            anyone: true,
        };
        let broadcast =
            n(r#"{"to":{"users":["a","b"],"groups":["g"]},"title":"t","channels":["web_push"]}"#);
        // Nobody has a subscription: no expansion either.
        assert!(
            delivery_plan(
                &broadcast,
                &users,
                none(),
                none(),
                no_opt_in(),
                no_chat(),
                &[],
                Millis(5)
            )
            .jobs
            .is_empty()
        );
        let plan = delivery_plan(
            &broadcast,
            &users,
            push,
            none(),
            no_opt_in(),
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(
            plan.jobs,
            vec![
                JobPayload::deliver(
                    Channel::WebPush,
                    Recipient::User(UserId::parse("b").unwrap())
                ),
                JobPayload::Expand {
                    channel: Channel::WebPush,
                    after_uid: 0
                },
            ]
        );
        assert!(plan.log.iter().all(|l| l.channel == Channel::WebPush));
        assert_eq!(plan.log[1].recipient, "group:g");
        // The category's default turns it on without `channels`.
        let mut by_category = n(r#"{"to":{"users":["a","b"]},"title":"t"}"#);
        assert!(
            delivery_plan(
                &by_category,
                &users,
                push,
                none(),
                no_opt_in(),
                no_chat(),
                &[],
                Millis(5)
            )
            .jobs
            .is_empty()
        );
        by_category.category_web_push = true;
        let plan = delivery_plan(
            &by_category,
            &users,
            push,
            none(),
            no_opt_in(),
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(plan.log[0].recipient, "user:b");
    }

    #[test]
    fn those_who_opted_in_get_what_the_category_does_not_send_by_default() {
        let users = [
            (1, UserId::parse("a").unwrap()),
            (2, UserId::parse("b").unwrap()),
            (3, UserId::parse("c").unwrap()),
        ];
        let n = n(r#"{"to":{"users":["a","b","c"]},"title":"t","category":"mention"}"#);
        let email = HashSet::from([1]);
        let push_users = HashSet::from([2, 3]);
        let subscribed = HashSet::from([3]);
        let plan = delivery_plan(
            &n,
            &users,
            Push {
                users: &subscribed,
                anyone: false,
            },
            none(),
            OptedIn {
                email: &email,
                push: &push_users,
                mobile: &NOBODY,
            },
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(
            plan.jobs,
            vec![
                JobPayload::deliver(Channel::Email, Recipient::User(UserId::parse("a").unwrap())),
                // b opted into push but has no subscription.
                JobPayload::deliver(
                    Channel::WebPush,
                    Recipient::User(UserId::parse("c").unwrap())
                ),
            ]
        );
    }

    #[test]
    fn chat_to_users_with_a_target_and_once_per_group_target() {
        let users = [
            (1, UserId::parse("a").unwrap()),
            (2, UserId::parse("b").unwrap()),
            (3, UserId::parse("c").unwrap()),
        ];
        let with_target = HashSet::from([2, 3]);
        let opted = HashSet::from([3]);
        let groups = [GroupId::parse("ops").unwrap()];
        let chat = Chat {
            users: &with_target,
            opted: &opted,
            groups: &groups,
        };
        let wanted =
            n(r#"{"to":{"users":["a","b","c"],"groups":["ops"]},"title":"t","channels":["chat"]}"#);
        let plan = delivery_plan(
            &wanted,
            &users,
            none(),
            none(),
            no_opt_in(),
            chat,
            &[],
            Millis(5),
        );
        assert_eq!(
            plan.jobs,
            vec![
                JobPayload::deliver(Channel::Chat, Recipient::User(UserId::parse("b").unwrap())),
                JobPayload::deliver(Channel::Chat, Recipient::User(UserId::parse("c").unwrap())),
                JobPayload::deliver(
                    Channel::Chat,
                    Recipient::Group(GroupId::parse("ops").unwrap())
                ),
            ],
            "a has no target; no expansion of the group's members"
        );
        assert_eq!(plan.log[2].recipient, "group:ops");
        // Not wanted: only the user who opted in (and has a target); no
        // group post.
        let quiet =
            n(r#"{"to":{"users":["a","b","c"],"groups":["ops"]},"title":"t","category":"x"}"#);
        let plan = delivery_plan(
            &quiet,
            &users,
            none(),
            none(),
            no_opt_in(),
            chat,
            &[],
            Millis(5),
        );
        assert_eq!(
            plan.jobs,
            vec![JobPayload::deliver(
                Channel::Chat,
                Recipient::User(UserId::parse("c").unwrap())
            )]
        );
    }

    #[test]
    fn mobile_push_only_to_users_with_a_device() {
        let users = [
            (1, UserId::parse("a").unwrap()),
            (2, UserId::parse("b").unwrap()),
            (3, UserId::parse("c").unwrap()),
        ];
        let with_device = HashSet::from([2, 3]);
        let mobile = Push {
            users: &with_device,
            anyone: true,
        };
        let broadcast = n(
            r#"{"to":{"users":["a","b"],"groups":["g"]},"title":"t","channels":["mobile_push"]}"#,
        );
        // Nobody has a device: no job, no expansion.
        assert!(
            delivery_plan(
                &broadcast,
                &users[..2],
                none(),
                none(),
                no_opt_in(),
                no_chat(),
                &[],
                Millis(5)
            )
            .jobs
            .is_empty()
        );
        let plan = delivery_plan(
            &broadcast,
            &users[..2],
            none(),
            mobile,
            no_opt_in(),
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(
            plan.jobs,
            vec![
                JobPayload::deliver(
                    Channel::MobilePush,
                    Recipient::User(UserId::parse("b").unwrap())
                ),
                JobPayload::Expand {
                    channel: Channel::MobilePush,
                    after_uid: 0
                },
            ]
        );
        assert!(plan.log.iter().all(|l| l.channel == Channel::MobilePush));
        // Web push subscribers are not mobile devices, and the reverse.
        let web = n(r#"{"to":{"users":["a","b"]},"title":"t","channels":["web_push"]}"#);
        assert!(
            delivery_plan(
                &web,
                &users,
                none(),
                mobile,
                no_opt_in(),
                no_chat(),
                &[],
                Millis(5)
            )
            .jobs
            .is_empty()
        );
        // By the category's default, and by a user's opt-in (with a device).
        let mut by_category = n(r#"{"to":{"users":["a","b","c"]},"title":"t","category":"x"}"#);
        let opted = HashSet::from([1, 3]);
        let opt_in = OptedIn {
            email: &NOBODY,
            push: &NOBODY,
            mobile: &opted,
        };
        let plan = delivery_plan(
            &by_category,
            &users,
            none(),
            mobile,
            opt_in,
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(
            plan.jobs,
            vec![JobPayload::deliver(
                Channel::MobilePush,
                Recipient::User(UserId::parse("c").unwrap())
            )],
            "a opted in without a device; b did not opt in"
        );
        by_category.category_mobile_push = true;
        let plan = delivery_plan(
            &by_category,
            &users,
            none(),
            mobile,
            no_opt_in(),
            no_chat(),
            &[],
            Millis(5),
        );
        assert_eq!(plan.jobs.len(), 2);
    }
}
