//! Sending: who receives a notification, and everything publishing or
//! scheduling it writes. Both backends look the facts up (in batches, in
//! their own transaction discipline), hand them to [`resolve`] and
//! [`Publication::new`] / [`Schedule::new`], write what the plan says and
//! hand back only what the database decided (the new row's id, stack
//! counts) to [`Publication::finish`].
//!
//! The audience rules, written once:
//! - a send now refuses unknown users and groups; a scheduled send being
//!   published skips them and says so in the delivery log;
//! - each person once, whichever targets name them (user id, email address,
//!   entity subscription);
//! - never the actor;
//! - nobody the broadcast part reaches: with `all`, no direct recipient at
//!   all; with groups, none of their current members;
//! - an address that belongs to no user is an external contact (email only).

use super::event;
use super::stored::{audience_json, broadcast_targets, channels_json, request_json};
use crate::jobs::{DeliveryEvent, DeliveryStatus, JobPayload, Recipient};
use crate::{Published, Result, SendReceipt, StoreError, StoreEvent};
use belfry_core::{Channel, EmailAddress, EntityRef, Millis, NewNotification, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How long an idempotency key is remembered.
pub(crate) const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Idempotency keys stored after this moment still answer.
pub(crate) fn idempotency_since(now: Millis) -> i64 {
    now.0 - IDEMPOTENCY_WINDOW_MS
}

/// The fingerprint kept with an idempotency key: the SHA-256 of the
/// request's stored form, with the key itself left out (a key given as a
/// header or as a field is the same request) and `send_at` as requested
/// (a retry after a scheduled time passed is still the same request).
/// Serialisation is canonical: fields in declaration order, JSON objects
/// (`data`) with sorted keys.
pub(crate) fn fingerprint(n: &NewNotification) -> Result<Vec<u8>> {
    let mut canonical = n.clone();
    canonical.idempotency_key = None;
    // Derived from the category when accepted, not part of the request.
    canonical.category_email = false;
    canonical.category_web_push = false;
    canonical.category_chat = false;
    canonical.category_mobile_push = false;
    canonical.send_at = n.requested_send_at;
    let json = request_json(&canonical)?;
    Ok(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, json.as_bytes())
            .as_ref()
            .to_vec(),
    )
}

/// A key seen within the window: the same request replays the first
/// receipt (Ok); a different one is refused, like Stripe does, instead of
/// answering a receipt for something else. Keys stored without a
/// fingerprint (before it was kept) replay.
pub(crate) fn repeated_key(key: &str, stored: Option<&[u8]>, this: &[u8]) -> Result<()> {
    match stored {
        Some(stored) if stored != this => Err(StoreError::IdempotencyKeyReused {
            key: key.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The answer to a repeated idempotency key: the first send's receipt.
pub(crate) fn replayed(id: String, seq: Option<i64>, recipients: Option<i64>) -> SendReceipt {
    SendReceipt {
        id,
        seq,
        recipients,
        replayed: true,
    }
}

/// A send's `send_at`, if it lies in the future; None: publish now.
pub(crate) fn scheduled_for(n: &NewNotification, now: Millis) -> Option<Millis> {
    n.send_at.filter(|at| *at > now)
}

/// The error of one item of a batch, named by its index (a batch of one
/// answers the item's own error).
pub(crate) fn in_item(batch_len: usize, index: usize, error: StoreError) -> StoreError {
    if batch_len == 1 {
        error
    } else {
        StoreError::InItem {
            index,
            error: Box::new(error),
        }
    }
}

/// A subscriber of the audience's entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscriberFact {
    User {
        uid: i64,
        id: UserId,
    },
    /// An address (of a user or not: resolved with the other addresses).
    Email(EmailAddress),
}

impl SubscriberFact {
    /// A stored subscription row: `kind` is `user` (with the user's uid) or
    /// `email`.
    pub fn from_row(kind: &str, subscriber: &str, uid: Option<i64>) -> Result<SubscriberFact> {
        Ok(match (kind, uid) {
            ("user", Some(uid)) => SubscriberFact::User {
                uid,
                id: UserId::parse(subscriber).map_err(StoreError::backend)?,
            },
            _ => {
                SubscriberFact::Email(EmailAddress::parse(subscriber).map_err(StoreError::backend)?)
            }
        })
    }
}

/// What a backend looked up for an audience, each list in the order of
/// the request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The actor's uid, when the actor is a known user.
    pub actor_uid: Option<i64>,
    /// The uid of each of `audience.users` (None: no such user).
    pub users: Vec<Option<i64>>,
    /// The gid of each of `audience.groups` (None: no such group).
    pub groups: Vec<Option<i64>>,
    /// The subscribers of `audience.entity`.
    pub subscribers: Vec<SubscriberFact>,
}

/// The addresses whose owners a backend looks up (after [`Facts`]): the
/// audience's, then those of the entity's email subscribers. The owners go
/// to [`resolve`] in this order.
pub(crate) fn addresses<'a>(
    n: &'a NewNotification,
    subscribers: &'a [SubscriberFact],
) -> impl Iterator<Item = &'a EmailAddress> {
    n.audience
        .emails
        .iter()
        .chain(subscribers.iter().filter_map(|s| match s {
            SubscriberFact::Email(address) => Some(address),
            SubscriberFact::User { .. } => None,
        }))
}

/// A scheduled send's targets must exist when it is accepted (they are
/// resolved again when it is published).
pub(crate) fn require_known(
    n: &NewNotification,
    users: &[Option<i64>],
    groups: &[Option<i64>],
) -> Result<()> {
    let a = &n.audience;
    let unknown_users: Vec<String> = a
        .users
        .iter()
        .zip(users)
        .filter(|(_, uid)| uid.is_none())
        .map(|(u, _)| u.to_string())
        .collect();
    if !unknown_users.is_empty() {
        return Err(StoreError::UnknownUsers(unknown_users));
    }
    let unknown_groups: Vec<String> = a
        .groups
        .iter()
        .zip(groups)
        .filter(|(_, gid)| gid.is_none())
        .map(|(g, _)| g.to_string())
        .collect();
    if !unknown_groups.is_empty() {
        return Err(StoreError::UnknownGroups(unknown_groups));
    }
    Ok(())
}

/// An audience resolved into people, groups and contacts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub actor_uid: Option<i64>,
    /// Subscribe the actor to the notification's entity when publishing.
    pub subscribe_actor: bool,
    /// Users who get an inbox entry (and their per-person deliveries).
    pub direct: Vec<(i64, UserId)>,
    /// The targeted groups that exist.
    pub gids: Vec<i64>,
    /// Addresses that belong to no user, each once.
    pub contacts: Vec<EmailAddress>,
    /// Log lines of targets that no longer exist (scheduled sends only).
    pub skipped: Vec<DeliveryEvent>,
    /// The direct recipients who have a web push subscription (looked up
    /// by a backend when [`Resolved::needs_push_lookup`]): only they get a
    /// web push job.
    pub pushable: HashSet<i64>,
    /// Whether anyone has a web push subscription (looked up first: when
    /// nobody has, `pushable` needs no look-up): only then is a
    /// broadcast's web push expansion queued.
    pub push_anyone: bool,
    /// The direct recipients whose preferences switch email on for this
    /// notification although its category does not email by default
    /// (looked up by a backend when [`Resolved::opt_in_channels`] names
    /// email): they get an email job.
    pub email_opt_in: HashSet<i64>,
    /// The same for web push (they also need a subscription).
    pub push_opt_in: HashSet<i64>,
    /// The direct recipients who have a mobile device (C6; looked up by a
    /// backend when [`Resolved::needs_mobile_lookup`]): only they get a
    /// mobile push job.
    pub mobile: HashSet<i64>,
    /// Whether anyone has a mobile device: only then is a broadcast's
    /// mobile push expansion queued.
    pub mobile_anyone: bool,
    /// The same as `email_opt_in` for mobile push (they also need a device).
    pub mobile_opt_in: HashSet<i64>,
    /// The same for chat (they also need a chat target).
    pub chat_opt_in: HashSet<i64>,
    /// The direct recipients with a chat target (looked up by a backend
    /// when [`Resolved::needs_chat_lookup`]).
    pub chattable: HashSet<i64>,
    /// The targeted groups (of `gids`) that have a chat target of their
    /// own (looked up with `chattable`): each gets one chat job.
    pub chat_groups: Vec<belfry_core::GroupId>,
}

/// Resolves an audience from the looked-up facts and the owners of
/// [`addresses`] (same order). `strict` (a send now) refuses unknown
/// users, groups and actors; otherwise (a scheduled send being published)
/// they are skipped and logged.
pub(crate) fn resolve(
    n: &NewNotification,
    facts: Facts,
    owners: Vec<Option<(i64, UserId)>>,
    strict: bool,
    now: Millis,
) -> Result<Resolved> {
    let a = &n.audience;
    let mut skipped = Vec::new();
    let subscribe_actor = match (n.subscribe_actor, n.actor_id(), &n.content.entity) {
        (true, Some(actor), Some(_)) => match facts.actor_uid {
            Some(_) => true,
            None if strict => {
                return Err(StoreError::Invalid(format!(
                    "subscribe_actor: the actor {actor} is not a known user"
                )));
            }
            None => false,
        },
        _ => false,
    };

    let mut direct: Vec<(i64, UserId)> = Vec::with_capacity(a.users.len() + a.emails.len());
    let mut missing = Vec::new();
    for (user, uid) in a.users.iter().zip(&facts.users) {
        match uid {
            Some(uid) => direct.push((*uid, user.clone())),
            None => missing.push(user.to_string()),
        }
    }
    if strict && !missing.is_empty() {
        return Err(StoreError::UnknownUsers(missing));
    }
    skipped.extend(missing.drain(..).map(|user| {
        event(
            format!("user:{user}"),
            Channel::InApp,
            DeliveryStatus::Skipped,
            Some("the user no longer exists".into()),
            now,
        )
    }));
    let mut gids = Vec::with_capacity(a.groups.len());
    for (group, gid) in a.groups.iter().zip(&facts.groups) {
        match gid {
            Some(gid) => gids.push(*gid),
            None => missing.push(group.to_string()),
        }
    }
    if strict && !missing.is_empty() {
        return Err(StoreError::UnknownGroups(missing));
    }
    skipped.extend(missing.drain(..).map(|group| {
        event(
            format!("group:{group}"),
            Channel::InApp,
            DeliveryStatus::Skipped,
            Some("the group no longer exists".into()),
            now,
        )
    }));

    let mut subscribed_emails = Vec::new();
    for s in facts.subscribers {
        match s {
            SubscriberFact::User { uid, id } => direct.push((uid, id)),
            SubscriberFact::Email(address) => subscribed_emails.push(address),
        }
    }
    let mut contacts = Vec::new();
    let mut owners = owners.into_iter();
    for address in a.emails.iter().chain(&subscribed_emails) {
        match owners.next().flatten() {
            Some(owner) => direct.push(owner),
            None => contacts.push(address.clone()),
        }
    }
    if contacts.len() > 1 {
        let mut seen = HashSet::with_capacity(contacts.len());
        contacts.retain(|c| seen.insert(c.clone()));
    }

    // Each person once; never the actor; nobody the broadcast part reaches
    // (groups: see `exclude_covered`).
    let mut unique = HashSet::with_capacity(direct.len());
    direct.retain(|(uid, _)| unique.insert(*uid) && Some(*uid) != facts.actor_uid);
    if a.all {
        direct.clear();
    }
    Ok(Resolved {
        actor_uid: facts.actor_uid,
        subscribe_actor,
        direct,
        gids,
        contacts,
        skipped,
        pushable: HashSet::new(),
        push_anyone: false,
        email_opt_in: HashSet::new(),
        push_opt_in: HashSet::new(),
        mobile: HashSet::new(),
        mobile_anyone: false,
        mobile_opt_in: HashSet::new(),
        chat_opt_in: HashSet::new(),
        chattable: HashSet::new(),
        chat_groups: Vec::new(),
    })
}

impl Resolved {
    /// Whether some direct recipients may be members of the targeted
    /// groups: then a backend looks up which of [`Resolved::direct_uids`]
    /// currently belong to one of `gids`, for [`Resolved::exclude_covered`].
    pub fn needs_coverage(&self) -> bool {
        !self.gids.is_empty() && !self.direct.is_empty()
    }

    pub fn direct_uids(&self) -> impl Iterator<Item = i64> + '_ {
        self.direct.iter().map(|(uid, _)| *uid)
    }

    /// Whether the notification goes to web push: then a backend looks up
    /// which of [`Resolved::direct_uids`] have a push subscription
    /// ([`Resolved::pushable`], after [`Resolved::exclude_covered`]) and,
    /// for a broadcast, whether anyone has one ([`Resolved::push_anyone`]).
    pub fn needs_push_lookup(&self, n: &NewNotification) -> bool {
        (n.wants(Channel::WebPush, false) && (!self.direct.is_empty() || n.audience.is_broadcast()))
            || !self.push_opt_in.is_empty()
    }

    /// Whether the notification goes to mobile push (C6): then a backend
    /// looks up which of [`Resolved::direct_uids`] have a mobile device
    /// ([`Resolved::mobile`]) and, for a broadcast, whether anyone has one
    /// ([`Resolved::mobile_anyone`]), as for web push.
    pub fn needs_mobile_lookup(&self, n: &NewNotification) -> bool {
        (n.wants(Channel::MobilePush, false)
            && (!self.direct.is_empty() || n.audience.is_broadcast()))
            || !self.mobile_opt_in.is_empty()
    }

    /// Whether the notification goes to chat: then a backend looks up
    /// which of [`Resolved::direct_uids`] have a chat target
    /// ([`Resolved::chattable`], after [`Resolved::exclude_covered`] and
    /// the opt-ins) and which of `gids` have one ([`Resolved::chat_groups`]).
    pub fn needs_chat_lookup(&self, n: &NewNotification) -> bool {
        (n.wants(Channel::Chat, false) && (!self.direct.is_empty() || !self.gids.is_empty()))
            || !self.chat_opt_in.is_empty()
    }

    /// The channels a direct recipient may switch on for this notification
    /// although it does not take them by default (P5): email, web push and chat,
    /// when the send names no `channels` and has a category or source to
    /// choose by. A backend then reads the direct recipients' preferences
    /// and fills [`Resolved::email_opt_in`] and [`Resolved::push_opt_in`]
    /// with [`crate::plan::policy::opts_in`] (before the push look-up).
    /// Members reached through a broadcast are not looked up.
    pub fn opt_in_channels(&self, n: &NewNotification) -> Vec<Channel> {
        if n.channels.is_some()
            || self.direct.is_empty()
            || (n.content.category.is_none() && n.content.source.is_none())
        {
            return Vec::new();
        }
        [
            Channel::Email,
            Channel::WebPush,
            Channel::MobilePush,
            Channel::Chat,
        ]
        .into_iter()
        .filter(|c| !n.wants(*c, false))
        .collect()
    }

    /// Records what direct recipient `uid` switched on of `channels` (from
    /// [`Resolved::opt_in_channels`]), given the administrators' defaults
    /// and the user's stored overrides (None: none; a document that no
    /// longer parses counts as none rather than failing the send).
    pub fn add_opt_ins(
        &mut self,
        n: &NewNotification,
        channels: &[Channel],
        defaults: &belfry_core::preferences::Overrides,
        uid: i64,
        own: Option<&str>,
    ) {
        let own: belfry_core::preferences::Overrides = own
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        for channel in channels {
            if super::policy::opts_in(
                defaults,
                &own,
                n.content.category.as_ref(),
                n.content.source.as_ref(),
                *channel,
            ) {
                match channel {
                    Channel::Email => self.email_opt_in.insert(uid),
                    Channel::Chat => self.chat_opt_in.insert(uid),
                    Channel::MobilePush => self.mobile_opt_in.insert(uid),
                    _ => self.push_opt_in.insert(uid),
                };
            }
        }
    }

    /// Drops the direct recipients the broadcast part reaches already.
    pub fn exclude_covered(&mut self, covered: &HashSet<i64>) {
        self.direct.retain(|(uid, _)| !covered.contains(uid));
    }
}

/// The columns an inbox entry or a broadcast row copies from its notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryColumns<'n> {
    pub stack_key: Option<&'n str>,
    pub expires_at: Option<i64>,
    pub category: Option<&'n str>,
    pub entity_type: Option<&'n str>,
    pub entity_id: Option<&'n str>,
}

impl<'n> EntryColumns<'n> {
    pub fn of(n: &'n NewNotification) -> EntryColumns<'n> {
        let c = &n.content;
        EntryColumns {
            stack_key: c.stack_key.as_deref(),
            expires_at: c.expires_at.map(|m| m.0),
            category: c.category.as_ref().map(|c| c.as_str()),
            entity_type: c.entity.as_ref().map(|e| e.kind.as_str()),
            entity_id: c.entity.as_ref().map(|e| e.id.as_str()),
        }
    }
}

/// Everything publishing one notification writes, decided before anything
/// is written: apply it in one transaction (savepoint), then
/// [`Publication::finish`].
#[derive(Debug)]
pub(crate) struct Publication<'n> {
    pub n: &'n NewNotification,
    pub seq: i64,
    /// The public id (of the scheduled row, or a new one).
    pub id: String,
    pub sender: &'n str,
    pub now: Millis,
    pub actor_uid: Option<i64>,
    /// Subscribe the actor to the entity (before anything else).
    pub subscribe_actor: Option<(&'n UserId, &'n EntityRef)>,
    /// Direct recipients and external contacts; None with a broadcast part.
    pub recipients: Option<i64>,
    pub content_json: String,
    pub columns: EntryColumns<'n>,
    /// Users who get an inbox entry: the direct recipients, when the
    /// notification goes to the in-app channel.
    pub inbox: Vec<(i64, UserId)>,
    /// One broadcast row per gid (0: everyone).
    pub broadcast_gids: Vec<i64>,
    /// External contacts to record with the notification.
    pub contacts: Vec<EmailAddress>,
    /// Per-person jobs on the other channels (due now) and the log lines
    /// of the publication.
    pub jobs: Vec<JobPayload>,
    pub log: Vec<DeliveryEvent>,
}

impl<'n> Publication<'n> {
    /// Plans publishing `n` as `seq` to its resolved audience; `id` is the
    /// scheduled row's, or None for a new notification.
    pub fn new(
        n: &'n NewNotification,
        r: Resolved,
        seq: i64,
        id: Option<String>,
        sender: &'n str,
        now: Millis,
    ) -> Publication<'n> {
        let a = &n.audience;
        let in_app = n.wants(Channel::InApp, false);
        let recipients = (!a.is_broadcast()).then_some((r.direct.len() + r.contacts.len()) as i64);
        let push = super::Push {
            users: &r.pushable,
            anyone: r.push_anyone,
        };
        let mobile = super::Push {
            users: &r.mobile,
            anyone: r.mobile_anyone,
        };
        let opted = super::OptedIn {
            email: &r.email_opt_in,
            push: &r.push_opt_in,
            mobile: &r.mobile_opt_in,
        };
        let chat = super::Chat {
            users: &r.chattable,
            opted: &r.chat_opt_in,
            groups: &r.chat_groups,
        };
        let plan = super::delivery_plan(n, &r.direct, push, mobile, opted, chat, &r.contacts, now);
        let mut log = r.skipped;
        log.extend(plan.log);
        let broadcast_gids = match (in_app, a.all) {
            (false, _) => Vec::new(),
            (true, true) => vec![0],
            (true, false) => r.gids,
        };
        Publication {
            n,
            seq,
            id: id.unwrap_or_else(|| ulid::Ulid::new().to_string()),
            sender,
            now,
            actor_uid: r.actor_uid,
            subscribe_actor: match (r.subscribe_actor, n.actor_id(), &n.content.entity) {
                (true, Some(actor), Some(entity)) => Some((actor, entity)),
                _ => None,
            },
            recipients,
            content_json: n.content.to_json(),
            columns: EntryColumns::of(n),
            inbox: if in_app { r.direct } else { Vec::new() },
            broadcast_gids,
            contacts: r.contacts,
            jobs: plan.jobs,
            log,
        }
    }

    /// The audience column (of a new row).
    pub fn audience_json(&self) -> String {
        audience_json(self.n)
    }

    /// The channels column (of a new row).
    pub fn channels_json(&self) -> Option<String> {
        channels_json(self.n)
    }

    pub fn inbox_uids(&self) -> impl Iterator<Item = i64> + '_ {
        self.inbox.iter().map(|(uid, _)| *uid)
    }

    /// The stream event and the receipt, once applied; `stacked` holds the
    /// count of each recipient's entry that grew a stack (others count 1).
    pub fn finish(self, stacked: &HashMap<i64, i64>) -> (StoreEvent, SendReceipt) {
        let a = &self.n.audience;
        let direct = self
            .inbox
            .into_iter()
            .map(|(uid, user)| (user, stacked.get(&uid).copied().unwrap_or(1)))
            .collect();
        let event = StoreEvent::Published(Arc::new(Published {
            seq: self.seq,
            id: self.id.clone(),
            created_at: self.now,
            content_json: self.content_json,
            direct,
            broadcast: if self.broadcast_gids.is_empty() {
                None
            } else {
                broadcast_targets(a.all, &a.groups)
            },
            actor: self.n.actor_id().cloned(),
        }));
        let receipt = SendReceipt {
            id: self.id,
            seq: Some(self.seq),
            recipients: self.recipients,
            replayed: false,
        };
        (event, receipt)
    }
}

/// Everything scheduling one notification writes.
#[derive(Debug)]
pub(crate) struct Schedule<'n> {
    pub id: String,
    pub sender: &'n str,
    pub now: Millis,
    pub at: Millis,
    pub content_json: String,
    pub audience_json: String,
    pub channels_json: Option<String>,
    /// The whole request, resolved again when it is due.
    pub request_json: String,
    pub columns: EntryColumns<'n>,
    /// "scheduled" for each requested target.
    pub log: Vec<DeliveryEvent>,
    /// The job that publishes it, due at `at`.
    pub job: JobPayload,
}

impl<'n> Schedule<'n> {
    /// Plans holding `n` until `at`; its targets must exist now.
    pub fn new(
        n: &'n NewNotification,
        users: &[Option<i64>],
        groups: &[Option<i64>],
        sender: &'n str,
        now: Millis,
        at: Millis,
    ) -> Result<Schedule<'n>> {
        require_known(n, users, groups)?;
        let log = super::target_labels(n)
            .into_iter()
            .map(|label| event(label, Channel::InApp, DeliveryStatus::Scheduled, None, at))
            .collect();
        Ok(Schedule {
            id: ulid::Ulid::new().to_string(),
            sender,
            now,
            at,
            content_json: n.content.to_json(),
            audience_json: audience_json(n),
            channels_json: channels_json(n),
            request_json: request_json(n)?,
            columns: EntryColumns::of(n),
            log,
            job: JobPayload::Publish,
        })
    }

    pub fn receipt(&self) -> SendReceipt {
        SendReceipt {
            id: self.id.clone(),
            seq: None,
            recipients: None,
            replayed: false,
        }
    }
}

/// A page of a broadcast's audience turned into deliveries on `channel`:
/// one job and one "queued" line per member, never the actor.
pub(crate) fn expansion(
    members: Vec<(i64, String)>,
    actor_uid: Option<i64>,
    channel: Channel,
    now: Millis,
) -> Result<(Vec<JobPayload>, Vec<DeliveryEvent>)> {
    let mut jobs = Vec::with_capacity(members.len());
    let mut log = Vec::with_capacity(members.len());
    for (uid, id) in members {
        if Some(uid) == actor_uid {
            continue;
        }
        let recipient = Recipient::User(UserId::parse(&id).map_err(StoreError::backend)?);
        log.push(event(
            recipient.label(),
            channel,
            DeliveryStatus::Queued,
            None,
            now,
        ));
        jobs.push(JobPayload::deliver(channel, recipient));
    }
    Ok((jobs, log))
}

/// Where the next page of an expansion starts; None after the last page.
pub(crate) fn next_page(members: &[(i64, String)], limit: usize) -> Option<i64> {
    (members.len() == limit)
        .then(|| members.last().map(|m| m.0))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::notification as n;
    use proptest::prelude::*;

    fn uid_of(name: &str) -> i64 {
        name.trim_start_matches('u').parse::<i64>().unwrap()
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn validated(json: &str, now: Millis) -> NewNotification {
        serde_json::from_str::<belfry_core::SendRequest>(json)
            .unwrap()
            .validate(now)
            .unwrap()
    }

    #[test]
    fn a_repeated_key_replays_the_same_request_and_refuses_another() {
        let now = Millis(1_800_000_000_000);
        let first = validated(
            r#"{"to":{"users":["u1"]},"title":"t","data":{"a":1,"b":2},"idempotency_key":"k"}"#,
            now,
        );
        let fp = fingerprint(&first).unwrap();
        assert_eq!(fp.len(), 32);
        // The key's place (header or field) and the order of keys in
        // `data` do not make another request.
        let same = validated(
            r#"{"title":"t","data":{"b":2,"a":1},"to":{"users":["u1"]}}"#,
            now,
        );
        assert_eq!(fingerprint(&same).unwrap(), fp);
        assert!(repeated_key("k", Some(&fp), &fp).is_ok());
        let other = validated(r#"{"to":{"users":["u1"]},"title":"t2"}"#, now);
        let other_fp = fingerprint(&other).unwrap();
        assert_ne!(other_fp, fp);
        match repeated_key("k", Some(&fp), &other_fp) {
            Err(StoreError::IdempotencyKeyReused { key }) => assert_eq!(key, "k"),
            other => panic!("{other:?}"),
        }
        // Stored before fingerprints were kept: replays.
        assert!(repeated_key("k", None, &other_fp).is_ok());
    }

    #[test]
    fn a_retry_after_the_scheduled_time_is_the_same_request() {
        let at = Millis(1_800_000_030_000);
        let json = format!(
            r#"{{"to":{{"users":["u1"]}},"title":"t","send_at":"{}"}}"#,
            at.to_rfc3339()
        );
        let before = validated(&json, Millis(1_800_000_000_000));
        let after = validated(&json, Millis(1_800_000_040_000));
        assert_eq!(before.send_at, Some(at));
        assert_eq!(after.send_at, None, "due: sent now");
        assert_eq!(fingerprint(&before).unwrap(), fingerprint(&after).unwrap());
        let later = validated(
            &json.replace(&at.to_rfc3339(), &Millis(at.0 + 1000).to_rfc3339()),
            Millis(1_800_000_000_000),
        );
        assert_ne!(fingerprint(&before).unwrap(), fingerprint(&later).unwrap());
    }

    #[test]
    fn strict_refuses_unknown_targets_and_later_skips_them() {
        let n = n(r#"{"to":{"users":["u1","u2"],"groups":["g"]},"title":"t"}"#);
        let facts = || Facts {
            users: vec![Some(1), None],
            groups: vec![None],
            ..Facts::default()
        };
        match resolve(&n, facts(), vec![], true, Millis(1)) {
            Err(StoreError::UnknownUsers(ids)) => assert_eq!(ids, vec!["u2"]),
            other => panic!("{other:?}"),
        }
        let r = resolve(&n, facts(), vec![], false, Millis(1)).unwrap();
        assert_eq!(r.direct, vec![(1, user("u1"))]);
        let labels: Vec<_> = r.skipped.iter().map(|e| e.recipient.as_str()).collect();
        assert_eq!(labels, vec!["user:u2", "group:g"]);
        assert!(
            r.skipped
                .iter()
                .all(|e| e.status == DeliveryStatus::Skipped)
        );
    }

    #[test]
    fn subscribe_actor_needs_a_known_actor_when_strict() {
        let n = n(
            r#"{"to":{"users":["u1"]},"title":"t","entity":{"type":"t","id":"1"},"actor":{"id":"u9"},"subscribe_actor":true}"#,
        );
        let facts = Facts {
            users: vec![Some(1)],
            ..Facts::default()
        };
        assert!(matches!(
            resolve(&n, facts.clone(), vec![], true, Millis(1)),
            Err(StoreError::Invalid(_))
        ));
        assert!(
            !resolve(&n, facts.clone(), vec![], false, Millis(1))
                .unwrap()
                .subscribe_actor
        );
        let known = Facts {
            actor_uid: Some(9),
            ..facts
        };
        let r = resolve(&n, known, vec![], true, Millis(1)).unwrap();
        let p = Publication::new(&n, r, 5, None, "k", Millis(1));
        assert_eq!(
            p.subscribe_actor.map(|(a, e)| (a.as_str(), e.id.as_str())),
            Some(("u9", "1"))
        );
    }

    #[test]
    fn addresses_of_users_are_users_and_others_contacts() {
        let n = n(
            r#"{"to":{"emails":["a@example.com","x@example.com","x@example.com"],"entity":{"type":"t","id":"1"}},"title":"t"}"#,
        );
        let facts = Facts {
            subscribers: vec![
                SubscriberFact::from_row("email", "y@example.com", None).unwrap(),
                SubscriberFact::from_row("user", "u3", Some(3)).unwrap(),
            ],
            ..Facts::default()
        };
        let asked: Vec<&str> = addresses(&n, &facts.subscribers)
            .map(|a| a.as_str())
            .collect();
        // The request's addresses (de-duplicated when validated), then subscribers'.
        assert_eq!(
            asked,
            vec!["a@example.com", "x@example.com", "y@example.com"]
        );
        let owners = vec![Some((1, user("u1"))), None, None];
        let r = resolve(&n, facts, owners, true, Millis(1)).unwrap();
        assert_eq!(r.direct, vec![(3, user("u3")), (1, user("u1"))]);
        let contacts: Vec<&str> = r.contacts.iter().map(|c| c.as_str()).collect();
        assert_eq!(contacts, vec!["x@example.com", "y@example.com"]);
        let p = Publication::new(&n, r, 7, None, "k", Millis(1));
        assert_eq!(p.recipients, Some(4));
        assert_eq!(p.inbox.len(), 2);
        // Contacts get email by default, users in-app only.
        assert_eq!(p.jobs.len(), 2);
    }

    #[test]
    fn a_broadcast_is_stored_once_and_counts_no_recipients() {
        let n = n(r#"{"to":{"all":true,"users":["u1"]},"title":"t"}"#);
        let facts = Facts {
            users: vec![Some(1)],
            ..Facts::default()
        };
        let r = resolve(&n, facts, vec![], true, Millis(1)).unwrap();
        assert!(r.direct.is_empty());
        let p = Publication::new(&n, r, 3, None, "k", Millis(1));
        assert_eq!(p.broadcast_gids, vec![0]);
        assert_eq!(p.recipients, None);
        let (event, receipt) = p.finish(&HashMap::new());
        assert_eq!(receipt.seq, Some(3));
        let StoreEvent::Published(p) = event else {
            panic!()
        };
        assert!(p.broadcast.as_ref().unwrap().all);
    }

    #[test]
    fn without_in_app_nothing_reaches_inboxes() {
        let n = n(r#"{"to":{"users":["u1"],"groups":["g"]},"title":"t","channels":["email"]}"#);
        let facts = Facts {
            users: vec![Some(1)],
            groups: vec![Some(4)],
            ..Facts::default()
        };
        let r = resolve(&n, facts, vec![], true, Millis(1)).unwrap();
        let p = Publication::new(&n, r, 3, None, "k", Millis(1));
        assert!(p.inbox.is_empty());
        assert!(p.broadcast_gids.is_empty());
        // One email to the user, one expansion of the group.
        assert_eq!(p.jobs.len(), 2);
        let (event, _) = p.finish(&HashMap::new());
        let StoreEvent::Published(p) = event else {
            panic!()
        };
        assert!(p.direct.is_empty() && p.broadcast.is_none());
    }

    #[test]
    fn stack_counts_come_from_the_database() {
        let n = n(r#"{"to":{"users":["u1","u2"]},"title":"t","stack_key":"k"}"#);
        let facts = Facts {
            users: vec![Some(1), Some(2)],
            ..Facts::default()
        };
        let r = resolve(&n, facts, vec![], true, Millis(1)).unwrap();
        let p = Publication::new(&n, r, 3, Some("ID".into()), "k", Millis(1));
        assert_eq!(p.columns.stack_key, Some("k"));
        let (event, receipt) = p.finish(&HashMap::from([(2, 5)]));
        assert_eq!(receipt.id, "ID");
        let StoreEvent::Published(p) = event else {
            panic!()
        };
        assert_eq!(p.direct, vec![(user("u1"), 1), (user("u2"), 5)]);
    }

    #[test]
    fn scheduling_needs_existing_targets() {
        let n = n(r#"{"to":{"users":["u1"],"groups":["g"]},"title":"t"}"#);
        assert!(matches!(
            Schedule::new(&n, &[None], &[Some(1)], "k", Millis(1), Millis(9)),
            Err(StoreError::UnknownUsers(_))
        ));
        assert!(matches!(
            Schedule::new(&n, &[Some(1)], &[None], "k", Millis(1), Millis(9)),
            Err(StoreError::UnknownGroups(_))
        ));
        let s = Schedule::new(&n, &[Some(1)], &[Some(1)], "k", Millis(1), Millis(9)).unwrap();
        assert_eq!(s.log.len(), 2);
        assert!(s.log.iter().all(|e| e.at == Millis(9)));
        assert_eq!(s.receipt().seq, None);
    }

    #[test]
    fn expansion_skips_the_actor() {
        let members = vec![(1, "u1".to_string()), (2, "u2".to_string())];
        assert_eq!(next_page(&members, 2), Some(2));
        assert_eq!(next_page(&members, 3), None);
        let (jobs, log) = expansion(members, Some(2), Channel::Email, Millis(1)).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(log[0].recipient, "user:u1");
    }

    /// A random audience over a small population: users u1..u8, each with
    /// an address, some of them subscribers; some members of the group.
    #[derive(Debug, Clone)]
    struct World {
        users: Vec<u8>,
        emails: Vec<u8>,
        subscribers: Vec<u8>,
        actor: Option<u8>,
        group: bool,
        all: bool,
        members: Vec<u8>,
    }

    fn world() -> impl Strategy<Value = World> {
        let some = || proptest::collection::vec(1u8..=8, 0..6);
        (
            some(),
            some(),
            some(),
            proptest::option::of(1u8..=8),
            any::<bool>(),
            any::<bool>(),
            some(),
        )
            .prop_map(
                |(users, emails, subscribers, actor, group, all, members)| World {
                    users,
                    emails,
                    subscribers,
                    actor,
                    group,
                    all,
                    members,
                },
            )
    }

    fn run(w: &World) -> Resolved {
        let name = |u: &u8| format!("u{u}");
        let mut req = serde_json::json!({
            "to": {
                "users": w.users.iter().map(name).collect::<Vec<_>>(),
                "emails": w.emails.iter().map(|u| format!("u{u}@example.com")).collect::<Vec<_>>(),
                "all": w.all,
                "entity": {"type": "t", "id": "1"},
            },
            "title": "t",
        });
        if w.group {
            req["to"]["groups"] = serde_json::json!(["g"]);
        }
        if let Some(a) = w.actor {
            req["actor"] = serde_json::json!({"id": name(&a)});
        }
        let n = n(&req.to_string());
        let facts = Facts {
            actor_uid: w.actor.map(i64::from),
            users: n
                .audience
                .users
                .iter()
                .map(|u| Some(uid_of(u.as_str())))
                .collect(),
            groups: n.audience.groups.iter().map(|_| Some(100)).collect(),
            subscribers: w
                .subscribers
                .iter()
                .map(|u| SubscriberFact::User {
                    uid: i64::from(*u),
                    id: user(&name(u)),
                })
                .collect(),
        };
        let owners = addresses(&n, &facts.subscribers)
            .map(|a| {
                let u = a.as_str().split('@').next().unwrap();
                Some((uid_of(u), user(u)))
            })
            .collect();
        let mut r = resolve(&n, facts, owners, true, Millis(1)).unwrap();
        if r.needs_coverage() {
            let covered = r
                .direct_uids()
                .filter(|uid| w.members.iter().any(|m| i64::from(*m) == *uid))
                .collect();
            r.exclude_covered(&covered);
        }
        r
    }

    proptest! {
        #[test]
        fn each_person_once_never_the_actor_never_covered(w in world()) {
            let r = run(&w);
            let uids: Vec<i64> = r.direct_uids().collect();
            let unique: HashSet<i64> = uids.iter().copied().collect();
            prop_assert_eq!(unique.len(), uids.len(), "someone twice: {:?}", uids);
            prop_assert!(w.actor.is_none_or(|a| !unique.contains(&i64::from(a))));
            if w.all {
                prop_assert!(uids.is_empty());
            } else if w.group {
                prop_assert!(w.members.iter().all(|m| !unique.contains(&i64::from(*m))));
            }
            for (uid, id) in &r.direct {
                prop_assert_eq!(id.as_str(), format!("u{uid}"));
            }
            // Every addressed person who is not the actor nor reached by
            // the broadcast part is a direct recipient.
            if !w.all {
                let named = w.users.iter().chain(&w.emails).chain(&w.subscribers);
                for u in named {
                    let u = i64::from(*u);
                    let covered = w.group && w.members.iter().any(|m| i64::from(*m) == u);
                    if Some(u) != w.actor.map(i64::from) && !covered {
                        prop_assert!(unique.contains(&u), "u{} left out", u);
                    }
                }
            }
            prop_assert!(r.contacts.is_empty());
        }

        #[test]
        fn contacts_are_unique(addresses in proptest::collection::vec(1u8..=5, 1..8)) {
            let emails: Vec<String> = addresses.iter().map(|a| format!("c{a}@example.com")).collect();
            let n = n(&serde_json::json!({"to": {"emails": emails}, "title": "t"}).to_string());
            let owners = addresses_of(&n);
            let r = resolve(&n, Facts::default(), owners, true, Millis(1)).unwrap();
            let unique: HashSet<&EmailAddress> = r.contacts.iter().collect();
            prop_assert_eq!(unique.len(), r.contacts.len());
            let distinct: HashSet<u8> = addresses.iter().copied().collect();
            prop_assert_eq!(r.contacts.len(), distinct.len());
        }
    }

    fn addresses_of(n: &NewNotification) -> Vec<Option<(i64, UserId)>> {
        addresses(n, &[]).map(|_| None).collect()
    }
}
