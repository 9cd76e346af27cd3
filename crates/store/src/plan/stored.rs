//! Stored forms, written and read in this one place by both backends: a
//! notification's request (the audience as requested, a typed struct never
//! read back as untyped JSON; the requested channels; the whole request of
//! a scheduled send), subscriptions, and what an email needs.

use super::policy::{Reason, Situation, Verdict, decide};
use crate::jobs::{DeliveryContext, Recipient, RecipientProfile};
use crate::{BroadcastTargets, NotificationStatus, Result, StoreError, Subscriber, Subscription};
use belfry_core::CategoryDef;
use belfry_core::preferences::{Effective, Overrides};
use belfry_core::{
    Channel, EmailAddress, EntityRef, GroupId, Locale, Millis, NewNotification, TimeZoneName, User,
    UserId,
};
use serde::{Deserialize, Serialize};

/// The audience column. The fields are in alphabetical order, which keeps
/// the stored text the same as that of earlier versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAudience {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub emails: Vec<EmailAddress>,
    #[serde(default)]
    pub entity: Option<EntityRef>,
    #[serde(default)]
    pub groups: Vec<GroupId>,
    #[serde(default)]
    pub users: Vec<UserId>,
}

impl StoredAudience {
    #[cfg(test)]
    pub fn of(a: &belfry_core::Audience) -> StoredAudience {
        StoredAudience {
            all: a.all,
            emails: a.emails.clone(),
            entity: a.entity.clone(),
            groups: a.groups.clone(),
            users: a.users.clone(),
        }
    }

    pub fn decode(json: &str) -> Result<StoredAudience> {
        serde_json::from_str(json).map_err(StoreError::backend)
    }

    /// The broadcast part (everyone, or groups), if any.
    pub fn broadcast(&self) -> Option<BroadcastTargets> {
        broadcast_targets(self.all, &self.groups)
    }
}

/// The broadcast part of an audience; the groups are left out when it
/// reaches everyone.
pub(crate) fn broadcast_targets(all: bool, groups: &[GroupId]) -> Option<BroadcastTargets> {
    (all || !groups.is_empty()).then(|| BroadcastTargets {
        all,
        groups: if all { Vec::new() } else { groups.to_vec() },
    })
}

/// The audience column of `n`.
pub(crate) fn audience_json(n: &NewNotification) -> String {
    // Serialised from borrowed fields: no copy of the lists.
    #[derive(Serialize)]
    struct Borrowed<'a> {
        all: bool,
        emails: &'a [EmailAddress],
        entity: &'a Option<EntityRef>,
        groups: &'a [GroupId],
        users: &'a [UserId],
    }
    let a = &n.audience;
    serde_json::to_string(&Borrowed {
        all: a.all,
        emails: &a.emails,
        entity: &a.entity,
        groups: &a.groups,
        users: &a.users,
    })
    .expect("an audience serialises")
}

/// The channels column; None for the defaults.
pub(crate) fn channels_json(n: &NewNotification) -> Option<String> {
    n.channels
        .as_ref()
        .map(|list| serde_json::to_string::<[Channel]>(list).expect("channel names serialise"))
}

/// The request column of a scheduled send.
pub(crate) fn request_json(n: &NewNotification) -> Result<String> {
    serde_json::to_string(n).map_err(StoreError::backend)
}

/// A scheduled send's request, read back when it is due.
pub(crate) fn decode_request(id: &str, json: &str) -> Result<NewNotification> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::backend(format!("stored request of {id}: {e}")))
}

/// A subscriber as stored: its kind (`user` or `email`) and its id or address.
pub(crate) fn subscriber_columns(who: &Subscriber) -> (&'static str, &str) {
    match who {
        Subscriber::User(user) => ("user", user.as_str()),
        Subscriber::Email(address) => ("email", address.as_str()),
    }
}

/// A subscription row: entity type and id, kind, subscriber, created at.
pub(crate) type SubscriptionRow = (String, String, String, String, i64);

pub(crate) fn subscription(
    (kind, id, sub_kind, subscriber, at): SubscriptionRow,
) -> Result<Subscription> {
    let (user, email) = if sub_kind == "user" {
        (
            Some(UserId::parse(&subscriber).map_err(StoreError::backend)?),
            None,
        )
    } else {
        (
            None,
            Some(EmailAddress::parse(&subscriber).map_err(StoreError::backend)?),
        )
    };
    Ok(Subscription {
        entity: EntityRef { kind, id },
        user,
        email,
        created_at: Millis(at),
    })
}

/// A user row: id, email, name, avatar URL, locale, time zone, data,
/// created at, updated at.
pub(crate) type UserRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

/// Stored values were validated before they were written; a value that no
/// longer parses is reported as a backend error rather than trusted.
fn reparse<T>(
    v: Option<String>,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    v.map(|s| parse(&s).map_err(StoreError::backend))
        .transpose()
}

/// A user from its row and the ids of its current groups.
pub(crate) fn user(row: UserRow, groups: Vec<String>) -> Result<User> {
    let (id, email, name, avatar_url, locale, timezone, data, created_at, updated_at) = row;
    Ok(User {
        id: UserId::parse(&id).map_err(StoreError::backend)?,
        email: reparse(email, EmailAddress::parse)?,
        name,
        avatar_url,
        locale: reparse(locale, Locale::parse)?,
        timezone: reparse(timezone, TimeZoneName::parse)?,
        groups: groups
            .iter()
            .map(|g| GroupId::parse(g).map_err(StoreError::backend))
            .collect::<Result<_>>()?,
        data: data
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(StoreError::backend)?,
        created_at: Millis(created_at),
        updated_at: Millis(updated_at),
    })
}

/// The notification's columns an email needs: id, status, content,
/// published at, created at.
pub(crate) type EmailNotificationRow = (String, String, String, Option<i64>, i64);

/// A user's columns an email needs: email, name, locale, time zone, and
/// the preference documents (the user's overrides, the defaults).
pub(crate) type EmailUserRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Whether a notification was seen or read in the app, asked at the end
/// of the email fallback delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    Yes,
    No,
}

/// The category a notification's content names, which the delivery
/// decision needs (read before the user's row, to look its category up).
pub(crate) fn content_category(content: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        category: Option<String>,
    }
    serde_json::from_str::<Named>(content).ok()?.category
}

/// What delivering the notification to `recipient` on `channel` needs;
/// `user` is the recipient user's row (when it is a user that still
/// exists, or the contact's stored name and locale). Stored values that
/// no longer parse are left out.
pub(crate) fn delivery_context(
    (id, status, content, published, created): EmailNotificationRow,
    recipient: &Recipient,
    channel: Channel,
    user: Option<EmailUserRow>,
    category: Option<String>,
    now: Millis,
    seen: Option<Seen>,
) -> Result<DeliveryContext> {
    let mut ctx = DeliveryContext {
        notification_id: id,
        status: NotificationStatus::parse(&status)?,
        content_json: content,
        published_at: Millis(published.unwrap_or(created)),
        profile: RecipientProfile::default(),
        verdict: Verdict::Now,
    };
    match (recipient, user) {
        // External contacts have no preferences: they asked for this
        // entity. Their name and language are those they subscribed with.
        (Recipient::Contact(address), contact) => {
            ctx.profile.email = Some(address.clone());
            if let Some((_, name, locale, ..)) = contact {
                ctx.profile.name = name;
                ctx.profile.locale = locale.and_then(|l| Locale::parse(&l).ok());
            }
        }
        (Recipient::User(_), Some((email, name, locale, timezone, own, defaults))) => {
            ctx.profile = RecipientProfile {
                email: email.and_then(|e| EmailAddress::parse(&e).ok()),
                name,
                locale: locale.and_then(|l| Locale::parse(&l).ok()),
                timezone: timezone.and_then(|t| TimeZoneName::parse(&t).ok()),
            };
            let overrides = |json: Option<String>| -> Result<Overrides> {
                json.map(|j| serde_json::from_str(&j).map_err(StoreError::backend))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let prefs = Effective::of(&overrides(defaults)?, &overrides(own)?);
            let category: Option<CategoryDef> =
                category.and_then(|json| serde_json::from_str(&json).ok());
            let content: belfry_core::Content =
                serde_json::from_str(&ctx.content_json).map_err(StoreError::backend)?;
            let zone = ctx
                .profile
                .timezone
                .as_ref()
                .and_then(|t| jiff::tz::TimeZone::get(t.as_str()).ok())
                .unwrap_or(jiff::tz::TimeZone::UTC);
            // The job is this recipient's delivery on `channel`: the send
            // (or the category) asked for it.
            let requested = [channel];
            let situation = Situation {
                requested: Some(&requested),
                category: category.as_ref(),
                source: content.source.as_ref(),
                prefs: &prefs,
                zone: &zone,
                has_email: ctx.profile.email.is_some(),
                fallback_checked: seen.is_some(),
            };
            ctx.verdict = match seen {
                Some(Seen::Yes) => Verdict::Suppressed(Reason::SeenInApp),
                _ => decide(&situation, now)
                    .into_iter()
                    .find_map(|(c, v)| (c == channel).then_some(v))
                    .unwrap_or(Verdict::Now),
            };
        }
        // A group's chat targets: the group asked for its channel; no
        // one's preferences or quiet hours apply.
        (Recipient::User(_), None) | (Recipient::Group(_), _) => {}
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::notification as n;

    #[test]
    fn audience_round_trips_in_the_stored_form() {
        let n = n(
            r#"{"to":{"users":["a"],"emails":["x@example.com"],"groups":["g"],"entity":{"type":"t","id":"1"}},"title":"t"}"#,
        );
        let json = audience_json(&n);
        // The text earlier versions stored (keys in alphabetical order).
        assert_eq!(
            json,
            r#"{"all":false,"emails":["x@example.com"],"entity":{"type":"t","id":"1"},"groups":["g"],"users":["a"]}"#
        );
        let back = StoredAudience::decode(&json).unwrap();
        assert_eq!(back, StoredAudience::of(&n.audience));
        assert_eq!(
            back.broadcast(),
            Some(BroadcastTargets {
                all: false,
                groups: vec![GroupId::parse("g").unwrap()]
            })
        );
    }

    #[test]
    fn everyone_needs_no_groups() {
        let n =
            n(r#"{"to":{"all":true,"groups":["g"]},"title":"t","channels":["in_app","email"]}"#);
        let back = StoredAudience::decode(&audience_json(&n)).unwrap();
        assert_eq!(back.broadcast().unwrap().groups, Vec::<GroupId>::new());
        assert_eq!(channels_json(&n).unwrap(), r#"["in_app","email"]"#);
    }
}
