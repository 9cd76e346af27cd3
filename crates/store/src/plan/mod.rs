//! Decisions every backend makes the same way, kept in one place: how a
//! notification's request and targets are stored and named in the delivery
//! log, and which delivery jobs (and "skipped" lines) a resolved audience
//! gives on the channels other than in-app.

use crate::jobs::{DeliveryEvent, DeliveryStatus, JobPayload, Recipient};
use crate::{Result, StoreError};
use belfry_core::{Channel, EmailAddress, Millis, NewNotification, UserId};

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
    }
}

/// The requested targets, kept for the producer's view of the notification.
pub(crate) fn audience_json(n: &NewNotification) -> String {
    let a = &n.audience;
    serde_json::json!({
        "users": a.users,
        "emails": a.emails,
        "groups": a.groups,
        "all": a.all,
        "entity": a.entity,
    })
    .to_string()
}

/// The requested channels as stored; None for the defaults.
pub(crate) fn channels_json(n: &NewNotification) -> Option<String> {
    n.channels.as_ref().map(|list| {
        serde_json::to_string(&list.iter().map(|c| c.as_str()).collect::<Vec<_>>())
            .expect("channel names serialise")
    })
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

/// Plans the deliveries of `n` to its resolved direct users (ids) and
/// external contacts (addresses).
pub(crate) fn delivery_plan(
    n: &NewNotification,
    direct: &[&str],
    contacts: &[&str],
    now: Millis,
) -> Result<DeliveryPlan> {
    let a = &n.audience;
    let mut planned: Vec<(JobPayload, String)> = Vec::new();
    let mut log = Vec::new();
    if n.wants(Channel::Email, false) {
        for id in direct {
            let user = UserId::parse(id).map_err(StoreError::Backend)?;
            let label = format!("user:{user}");
            let recipient = Recipient::User(user);
            planned.push((
                JobPayload::Deliver {
                    channel: Channel::Email,
                    recipient,
                },
                label,
            ));
        }
        if a.is_broadcast() {
            let label = if a.all {
                "all".to_string()
            } else {
                a.groups
                    .iter()
                    .map(|g| format!("group:{g}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            planned.push((
                JobPayload::Expand {
                    channel: Channel::Email,
                    after_uid: 0,
                },
                label,
            ));
        }
    }
    for address in contacts {
        let label = format!("email:{address}");
        if n.wants(Channel::Email, true) {
            let address = EmailAddress::parse(address).map_err(StoreError::Backend)?;
            planned.push((
                JobPayload::Deliver {
                    channel: Channel::Email,
                    recipient: Recipient::Contact(address),
                },
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
        log.push(event(
            label,
            Channel::Email,
            DeliveryStatus::Queued,
            None,
            now,
        ));
        jobs.push(job);
    }
    Ok(DeliveryPlan { jobs, log })
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::SendRequest;

    fn n(json: &str) -> NewNotification {
        serde_json::from_str::<SendRequest>(json)
            .unwrap()
            .validate(Millis(0))
            .unwrap()
    }

    #[test]
    fn defaults_email_contacts_only() {
        let plan = delivery_plan(
            &n(r#"{"to":{"users":["a"],"emails":["x@example.com"]},"title":"t"}"#),
            &["a"],
            &["x@example.com"],
            Millis(5),
        )
        .unwrap();
        assert_eq!(plan.jobs.len(), 1, "users get in-app only by default");
        assert_eq!(plan.log.len(), 1);
        assert_eq!(plan.log[0].recipient, "email:x@example.com");
        assert_eq!(plan.log[0].status, DeliveryStatus::Queued);
    }

    #[test]
    fn email_to_users_and_broadcasts_and_skipped_contacts() {
        let plan = delivery_plan(
            &n(r#"{"to":{"users":["a"],"groups":["g1","g2"]},"title":"t","channels":["email"]}"#),
            &["a"],
            &[],
            Millis(5),
        )
        .unwrap();
        assert_eq!(plan.jobs.len(), 2);
        assert!(matches!(
            plan.jobs[1],
            JobPayload::Expand { after_uid: 0, .. }
        ));
        assert_eq!(plan.log[1].recipient, "group:g1,group:g2");
        let plan = delivery_plan(
            &n(r#"{"to":{"emails":["x@example.com"]},"title":"t","channels":["in_app"]}"#),
            &[],
            &["x@example.com"],
            Millis(5),
        )
        .unwrap();
        assert!(plan.jobs.is_empty());
        assert_eq!(plan.log[0].status, DeliveryStatus::Skipped);
    }
}
