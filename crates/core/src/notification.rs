//! A notification as producers send it: the wire request, its validation into
//! the domain type, the audience (who it is for) and the content (what the
//! recipient sees), plus the pure rules on them.

use crate::ids::{Category, EmailAddress, EntityRef, GroupId, UserId};
use crate::time::Millis;
use crate::validation::{self, ValidationErrors};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Upper bounds on what one notification may carry.
pub mod limits {
    pub const TITLE_CHARS: usize = 500;
    pub const BODY_CHARS: usize = 10_000;
    pub const NAME_CHARS: usize = 200;
    pub const LABEL_CHARS: usize = 100;
    pub const STACK_KEY_CHARS: usize = 200;
    pub const DATA_BYTES: usize = 16 * 1024;
    pub const ACTIONS: usize = 5;
    pub const USERS: usize = 1000;
    pub const EMAILS: usize = 1000;
    pub const GROUPS: usize = 100;
    pub const IDEMPOTENCY_KEY_BYTES: usize = 255;
    pub const BATCH: usize = 1000;
    /// How far in the past a `send_at` may lie (clock skew between the
    /// producer and Belfry): such a notification is sent at once; older is refused.
    pub const SEND_AT_PAST_MILLIS: i64 = 60_000;
}

/// The targets of a send, as a producer writes them.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsRequest {
    /// User ids.
    pub users: Option<Vec<String>>,
    /// Email addresses; an address that belongs to no user is an external contact.
    pub emails: Option<Vec<String>>,
    /// Group ids: a broadcast to every member, stored once.
    pub groups: Option<Vec<String>>,
    /// Everybody: a broadcast stored once.
    pub all: Option<bool>,
    /// Every subscriber of this entity.
    pub entity: Option<EntityRequest>,
}

#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRequest {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorRequest {
    /// The user who triggered the notification; never notified about it.
    pub id: Option<String>,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub id: Option<String>,
    pub label: Option<String>,
    /// `link` (opens `url`) or `callback` (answered to the producer).
    pub kind: Option<String>,
    pub url: Option<String>,
    /// `primary`, `secondary` or `danger`.
    pub style: Option<String>,
    /// A callback answered once for everyone: the first answer wins, later
    /// ones get 409 (an approval any one of several managers may give).
    pub once: Option<bool>,
    /// Fields a callback's answer fills in.
    pub form: Option<crate::action::FormRequest>,
}

/// `POST /v1/notifications`: one notification as a producer sends it.
/// Unknown fields are refused, so that a misspelt field is reported instead
/// of silently ignored.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub to: Option<TargetsRequest>,
    pub category: Option<String>,
    pub source: Option<String>,
    pub actor: Option<ActorRequest>,
    /// Required.
    pub title: Option<String>,
    pub body: Option<String>,
    /// Where clicking the notification goes: http(s) URL or a path of the host application.
    pub url: Option<String>,
    pub entity: Option<EntityRequest>,
    /// Any JSON object, passed through to clients (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub actions: Option<Vec<ActionRequest>>,
    /// Notifications with the same stack key collapse into one inbox entry per user.
    pub stack_key: Option<String>,
    /// Kept on screen until closed.
    pub sticky: Option<bool>,
    /// RFC 3339; hold the notification until then.
    pub send_at: Option<String>,
    /// RFC 3339; removed from every inbox and count from then on.
    pub expires_at: Option<String>,
    /// Narrows or widens the channels: `in_app`, `email`, `web_push`, `mobile_push`, `chat`.
    pub channels: Option<Vec<String>>,
    /// Same as the `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// With `entity` and `actor.id`: subscribe the actor to the entity.
    pub subscribe_actor: Option<bool>,
    /// What it says on other channels when that differs from title and
    /// body: `email_subject`, `email_text`, `email_html`, `push_title`,
    /// `push_body`, `chat` (each optional; templates fill them per language).
    pub texts: Option<crate::texts::ChannelTexts>,
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    InApp,
    Email,
    WebPush,
    MobilePush,
    Chat,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::InApp,
        Channel::Email,
        Channel::WebPush,
        Channel::MobilePush,
        Channel::Chat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
            Channel::Email => "email",
            Channel::WebPush => "web_push",
            Channel::MobilePush => "mobile_push",
            Channel::Chat => "chat",
        }
    }

    pub fn parse(value: &str) -> Result<Channel, String> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown channel '{}'; use one of in_app, email, web_push, mobile_push, chat",
                    value.escape_debug()
                )
            })
    }
}

/// Who a notification is for, validated and de-duplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    pub users: Vec<UserId>,
    pub emails: Vec<EmailAddress>,
    pub groups: Vec<GroupId>,
    pub all: bool,
    pub entity: Option<EntityRef>,
}

impl Audience {
    /// A broadcast part is stored once and read lazily by each member.
    pub fn is_broadcast(&self) -> bool {
        self.all || !self.groups.is_empty()
    }
}

/// The person who triggered a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    pub id: Option<UserId>,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

/// What pressing an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Opens the action's `url`.
    Link,
    /// Answered to the producer.
    Callback,
}

impl ActionKind {
    pub fn parse(value: &str) -> Result<ActionKind, String> {
        match value {
            "link" => Ok(ActionKind::Link),
            "callback" => Ok(ActionKind::Callback),
            other => Err(format!(
                "'{}' is not link or callback",
                other.escape_debug()
            )),
        }
    }
}

/// How an action's button looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionStyle {
    Primary,
    Secondary,
    Danger,
}

impl ActionStyle {
    pub fn parse(value: &str) -> Result<ActionStyle, String> {
        match value {
            "primary" => Ok(ActionStyle::Primary),
            "secondary" => Ok(ActionStyle::Secondary),
            "danger" => Ok(ActionStyle::Danger),
            _ => Err("must be primary, secondary or danger".into()),
        }
    }
}

/// A button on a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Action {
    pub id: String,
    pub label: String,
    pub kind: ActionKind,
    pub url: Option<String>,
    pub style: ActionStyle,
    /// Answered once for everyone (callbacks only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub once: bool,
    /// What a callback's answer fills in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<crate::action::Form>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a recipient sees; stored once per notification as JSON and spliced
/// into every inbox item and stream event without being parsed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Content {
    pub title: String,
    pub body: Option<String>,
    pub url: Option<String>,
    pub category: Option<Category>,
    pub source: Option<Category>,
    pub actor: Option<Actor>,
    pub entity: Option<EntityRef>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub actions: Vec<Action>,
    pub stack_key: Option<String>,
    pub sticky: bool,
    /// RFC 3339, or null.
    #[serde(with = "opt_rfc3339")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Millis>,
    /// Per-channel texts (kept last: inbox items leave them out, see
    /// [`crate::InboxItemMeta::render`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texts: Option<crate::texts::ChannelTexts>,
}

impl Content {
    /// The push message's title: its own text, else the title.
    pub fn push_title(&self) -> &str {
        self.texts
            .as_ref()
            .and_then(|t| t.push_title.as_deref())
            .unwrap_or(&self.title)
    }

    /// The push message's body: its own text, else the body.
    pub fn push_body(&self) -> Option<&str> {
        self.texts
            .as_ref()
            .and_then(|t| t.push_body.as_deref())
            .or(self.body.as_deref())
    }

    /// The chat message's text, when one is given (else chat shows the
    /// title and body).
    pub fn chat_text(&self) -> Option<&str> {
        self.texts.as_ref().and_then(|t| t.chat.as_deref())
    }

    /// The stored JSON object; always has at least the `title` key.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("content serialises")
    }
}

/// A validated send (kept as JSON while a scheduled send waits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    pub audience: Audience,
    pub content: Content,
    /// Hold until then (only when in the future at validation time).
    pub send_at: Option<Millis>,
    /// The `send_at` as the request gave it, even when it had passed (a
    /// retry after the time came is still the same request: see the
    /// idempotency fingerprint in the store's planner). Not stored.
    #[serde(skip)]
    pub requested_send_at: Option<Millis>,
    /// `None`: the defaults (in-app for users, email for external contacts).
    pub channels: Option<Vec<Channel>>,
    pub idempotency_key: Option<String>,
    pub subscribe_actor: bool,
    /// The category's defaults turn email on (`"email": "instant"`): users
    /// get email without `channels` asking for it. Set by the server from
    /// its categories when the send is accepted (kept with a scheduled
    /// send); the recipient's preferences decide when the email's job runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub category_email: bool,
    /// The category's defaults turn web push on: users who have a push
    /// subscription get a web push job without `channels` asking for it
    /// (set by the server like `category_email`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub category_web_push: bool,
    /// The category's defaults post to chat targets (C7), set by the
    /// server like `category_email`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub category_chat: bool,
    /// The category's defaults turn mobile push on (C6): users who have a
    /// mobile device get a mobile push job without `channels` asking for
    /// it (set by the server like `category_email`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub category_mobile_push: bool,
}

impl NewNotification {
    /// Whether the notification goes to this channel. Without an explicit
    /// list: in-app for users (and email and web push when the category's
    /// defaults turn them on), email for external contacts.
    pub fn wants(&self, channel: Channel, contact: bool) -> bool {
        match &self.channels {
            Some(list) => list.contains(&channel),
            None => {
                if contact {
                    channel == Channel::Email
                } else {
                    channel == Channel::InApp
                        || (channel == Channel::Email && self.category_email)
                        || (channel == Channel::WebPush && self.category_web_push)
                        || (channel == Channel::Chat && self.category_chat)
                        || (channel == Channel::MobilePush && self.category_mobile_push)
                }
            }
        }
    }

    /// The actor's user id, who must never receive this notification.
    pub fn actor_id(&self) -> Option<&UserId> {
        self.content.actor.as_ref().and_then(|a| a.id.as_ref())
    }
}

mod opt_rfc3339 {
    use crate::time::Millis;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => s.serialize_str(&m.to_rfc3339()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        v.map(|s| Millis::parse_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn dedup<T: Clone + Eq + std::hash::Hash>(items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// Validates a list of strings with `parse`, recording each bad element by index.
fn parse_list<T>(
    errors: &mut ValidationErrors,
    field: &str,
    values: Option<Vec<String>>,
    max: usize,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let values = values.unwrap_or_default();
    if values.len() > max {
        errors.add(
            field,
            format!("has {} entries; at most {max} are allowed", values.len()),
        );
        return Vec::new();
    }
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| errors.take(&format!("{field}[{i}]"), parse(v)))
        .collect()
}

fn optional_text(
    errors: &mut ValidationErrors,
    field: &str,
    value: Option<String>,
    max: usize,
) -> Option<String> {
    let value = value?;
    errors
        .take(field, validation::text(&value, max, false))
        .filter(|v| !v.is_empty())
}

fn entity(errors: &mut ValidationErrors, field: &str, e: EntityRequest) -> Option<EntityRef> {
    match (e.kind, e.id) {
        (Some(kind), Some(id)) => errors.take(field, EntityRef::parse(&kind, &id)),
        (None, _) => {
            errors.add(format!("{field}.type"), "is required, e.g. \"ticket\"");
            None
        }
        (_, None) => {
            errors.add(format!("{field}.id"), "is required, e.g. \"123\"");
            None
        }
    }
}

impl SendRequest {
    /// Checks every field and builds the domain notification. `now` decides
    /// whether `send_at` lies in the future and whether `expires_at` has passed.
    pub fn validate(self, now: Millis) -> Result<NewNotification, ValidationErrors> {
        let mut errors = ValidationErrors::new();

        let audience = match self.to {
            None => {
                errors.add(
                    "to",
                    "is required: give users, emails, groups, all or entity",
                );
                Audience::default()
            }
            Some(to) => {
                let audience = Audience {
                    users: dedup(parse_list(
                        &mut errors,
                        "to.users",
                        to.users,
                        limits::USERS,
                        UserId::parse,
                    )),
                    emails: dedup(parse_list(
                        &mut errors,
                        "to.emails",
                        to.emails,
                        limits::EMAILS,
                        EmailAddress::parse,
                    )),
                    groups: dedup(parse_list(
                        &mut errors,
                        "to.groups",
                        to.groups,
                        limits::GROUPS,
                        GroupId::parse,
                    )),
                    all: to.all.unwrap_or(false),
                    entity: to.entity.and_then(|e| entity(&mut errors, "to.entity", e)),
                };
                if errors.is_empty()
                    && audience.users.is_empty()
                    && audience.emails.is_empty()
                    && audience.groups.is_empty()
                    && !audience.all
                    && audience.entity.is_none()
                {
                    errors.add(
                        "to",
                        "names no recipient: give at least one of users, emails, groups, all: true or entity",
                    );
                }
                audience
            }
        };

        let title = match self.title {
            None => {
                errors.add("title", "is required");
                String::new()
            }
            Some(t) => errors
                .take("title", validation::text(&t, limits::TITLE_CHARS, true))
                .unwrap_or_default(),
        };
        let body = optional_text(&mut errors, "body", self.body, limits::BODY_CHARS);
        let url = self
            .url
            .and_then(|u| errors.take("url", validation::link(&u)));
        let category = self
            .category
            .and_then(|c| errors.take("category", Category::parse(&c)));
        let source = self
            .source
            .and_then(|c| errors.take("source", Category::parse(&c)));
        let actor = self.actor.map(|a| Actor {
            id: a
                .id
                .and_then(|id| errors.take("actor.id", UserId::parse(&id))),
            name: optional_text(&mut errors, "actor.name", a.name, limits::NAME_CHARS),
            avatar_url: a
                .avatar_url
                .and_then(|u| errors.take("actor.avatar_url", validation::link(&u))),
        });
        // Without its own entity, a notification sent to an entity's
        // subscribers is about that entity.
        let entity_ref = self
            .entity
            .and_then(|e| entity(&mut errors, "entity", e))
            .or_else(|| audience.entity.clone());

        let data = match self.data {
            None | Some(serde_json::Value::Null) => None,
            Some(v @ serde_json::Value::Object(_)) => {
                let size = serde_json::to_string(&v).map(|s| s.len()).unwrap_or(0);
                if size > limits::DATA_BYTES {
                    errors.add(
                        "data",
                        format!(
                            "is {size} bytes as JSON; at most {} are allowed",
                            limits::DATA_BYTES
                        ),
                    );
                    None
                } else {
                    Some(v)
                }
            }
            Some(_) => {
                errors.add("data", "must be a JSON object");
                None
            }
        };

        let actions = validate_actions(&mut errors, self.actions.unwrap_or_default());

        let stack_key = optional_text(
            &mut errors,
            "stack_key",
            self.stack_key,
            limits::STACK_KEY_CHARS,
        );

        let send_at = self
            .send_at
            .and_then(|s| errors.take("send_at", Millis::parse_rfc3339(&s)));
        if let Some(t) = send_at
            && t.0 < now.0 - limits::SEND_AT_PAST_MILLIS
        {
            errors.add(
                "send_at",
                "is more than a minute in the past; give a time in the future, or leave it out to send now",
            );
        }
        let requested_send_at = send_at;
        let send_at = send_at.filter(|t| *t > now);
        let expires_at = self
            .expires_at
            .and_then(|s| errors.take("expires_at", Millis::parse_rfc3339(&s)));
        if let Some(exp) = expires_at {
            let start = send_at.unwrap_or(now);
            if exp <= start {
                errors.add(
                    "expires_at",
                    if send_at.is_some() {
                        "must be later than send_at"
                    } else {
                        "is in the past; give a time in the future or leave it out"
                    },
                );
            }
        }

        let channels = self.channels.map(|list| {
            let parsed = parse_list(&mut errors, "channels", Some(list), 16, Channel::parse);
            dedup(parsed)
        });
        if let Some(list) = &channels
            && list.is_empty()
            && errors.is_empty()
        {
            errors.add(
                "channels",
                "is empty; leave it out for the defaults or name at least one channel",
            );
        }

        let idempotency_key = self
            .idempotency_key
            .and_then(|k| errors.take("idempotency_key", validate_idempotency_key(&k)));

        let subscribe_actor = self.subscribe_actor.unwrap_or(false);
        let texts = self.texts.and_then(|t| t.validate(&mut errors, "texts"));
        if subscribe_actor
            && (entity_ref.is_none() || actor.as_ref().and_then(|a| a.id.as_ref()).is_none())
        {
            errors.add(
                "subscribe_actor",
                "needs both entity and actor.id: the actor is subscribed to the entity",
            );
        }

        let content = Content {
            title,
            body,
            url,
            category,
            source,
            actor,
            entity: entity_ref,
            data,
            actions,
            stack_key,
            sticky: self.sticky.unwrap_or(false),
            expires_at,
            texts,
        };
        errors.finish(NewNotification {
            audience,
            content,
            send_at,
            requested_send_at,
            channels,
            idempotency_key,
            subscribe_actor,
            category_email: false,
            category_web_push: false,
            category_chat: false,
            category_mobile_push: false,
        })
    }
}

/// An idempotency key: 1 to 255 printable ASCII characters.
pub fn validate_idempotency_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.len() > limits::IDEMPOTENCY_KEY_BYTES {
        return Err("must be 1 to 255 characters long".into());
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err("may only contain printable ASCII characters without spaces".into());
    }
    Ok(key.to_string())
}

fn validate_actions(errors: &mut ValidationErrors, actions: Vec<ActionRequest>) -> Vec<Action> {
    if actions.len() > limits::ACTIONS {
        errors.add(
            "actions",
            format!(
                "has {} entries; at most {} are allowed",
                actions.len(),
                limits::ACTIONS
            ),
        );
        return Vec::new();
    }
    let mut ids = HashSet::new();
    let mut out = Vec::with_capacity(actions.len());
    for (i, a) in actions.into_iter().enumerate() {
        let f = |name: &str| format!("actions[{i}].{name}");
        let id = match a.id {
            Some(id) => errors.take(&f("id"), Category::parse(&id).map(Category::into_string)),
            None => {
                errors.add(f("id"), "is required, e.g. \"approve\"");
                None
            }
        };
        if let Some(id) = &id
            && !ids.insert(id.clone())
        {
            errors.add(f("id"), format!("'{id}' is used by two actions"));
        }
        let label = match a.label {
            Some(l) => errors.take(&f("label"), validation::text(&l, limits::LABEL_CHARS, true)),
            None => {
                errors.add(f("label"), "is required");
                None
            }
        };
        let kind = match a.kind.as_deref().map(ActionKind::parse) {
            None => Some(ActionKind::Link),
            Some(parsed) => errors.take(&f("kind"), parsed),
        };
        let url = match (kind, a.url) {
            (Some(ActionKind::Link), Some(u)) => errors.take(&f("url"), validation::link(&u)),
            (Some(ActionKind::Link), None) => {
                errors.add(f("url"), "is required for a link action");
                None
            }
            (Some(ActionKind::Callback), Some(_)) => {
                errors.add(f("url"), "is only for link actions");
                None
            }
            (Some(ActionKind::Callback), None) | (None, _) => None,
        };
        let style = match a.style.as_deref().map(ActionStyle::parse) {
            None => Some(ActionStyle::Secondary),
            Some(parsed) => errors.take(&f("style"), parsed),
        };
        let callback = kind == Some(ActionKind::Callback);
        let once = a.once.unwrap_or(false);
        if once && kind == Some(ActionKind::Link) {
            errors.add(f("once"), "is only for callback actions");
        }
        let form = match a.form {
            Some(_) if kind == Some(ActionKind::Link) => {
                errors.add(f("form"), "is only for callback actions");
                None
            }
            Some(form) => crate::action::validate_form(errors, &f("form"), form),
            None => None,
        };
        if let (Some(id), Some(label), Some(kind), Some(style)) = (id, label, kind, style) {
            out.push(Action {
                id,
                label,
                kind,
                url,
                style,
                once: once && callback,
                form,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> SendRequest {
        serde_json::from_str(json).unwrap()
    }

    const NOW: Millis = Millis(1_800_000_000_000);

    #[test]
    fn minimal_send_is_valid() {
        let n = req(r#"{"to":{"users":["u-1","u-1","u-2"]},"title":" Hi "}"#)
            .validate(NOW)
            .unwrap();
        assert_eq!(n.audience.users.len(), 2, "duplicates removed");
        assert_eq!(n.content.title, "Hi");
        assert!(!n.audience.is_broadcast());
        assert_eq!(n.send_at, None);
    }

    #[test]
    fn every_problem_is_reported() {
        let e = req(r#"{"to":{"users":["a b"],"emails":["nope"]},"url":"javascript:x","data":[1],"channels":["fax"]}"#)
            .validate(NOW)
            .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "to.users[0]",
                "to.emails[0]",
                "title",
                "url",
                "data",
                "channels[0]"
            ]
        );
    }

    #[test]
    fn empty_audience_is_refused() {
        let e = req(r#"{"to":{},"title":"x"}"#).validate(NOW).unwrap_err();
        assert_eq!(e.0[0].field, "to");
        let e = req(r#"{"title":"x"}"#).validate(NOW).unwrap_err();
        assert_eq!(e.0[0].field, "to");
        let e = req(r#"{"to":{"all":false,"users":[]},"title":"x"}"#)
            .validate(NOW)
            .unwrap_err();
        assert_eq!(e.0[0].field, "to");
    }

    #[test]
    fn entity_needs_type_and_id() {
        let e = req(r#"{"to":{"entity":{"id":"1"}},"title":"x"}"#)
            .validate(NOW)
            .unwrap_err();
        assert_eq!(e.0[0].field, "to.entity.type");
    }

    #[test]
    fn times() {
        let past = req(r#"{"to":{"users":["u"]},"title":"x","send_at":"2020-01-01T00:00:00Z"}"#)
            .validate(NOW)
            .unwrap_err();
        assert_eq!(past.0[0].field, "send_at", "long past: refused");
        let skewed = SendRequest {
            send_at: Some(Millis(NOW.0 - 59_000).to_rfc3339()),
            ..req(r#"{"to":{"users":["u"]},"title":"x"}"#)
        }
        .validate(NOW)
        .unwrap();
        assert_eq!(
            skewed.send_at, None,
            "a few seconds late (clock skew): sent now"
        );
        let e = SendRequest {
            send_at: Some(Millis(NOW.0 - 61_000).to_rfc3339()),
            ..req(r#"{"to":{"users":["u"]},"title":"x"}"#)
        }
        .validate(NOW)
        .unwrap_err();
        assert_eq!(e.0[0].field, "send_at");
        let e = req(r#"{"to":{"users":["u"]},"title":"x","expires_at":"2020-01-01T00:00:00Z"}"#)
            .validate(NOW)
            .unwrap_err();
        assert_eq!(e.0[0].field, "expires_at");
        let e = req(r#"{"to":{"users":["u"]},"title":"x","send_at":"soon"}"#)
            .validate(NOW)
            .unwrap_err();
        assert_eq!(e.0[0].field, "send_at");
    }

    #[test]
    fn actions_are_checked() {
        let e = req(r#"{"to":{"users":["u"]},"title":"x","actions":[{"id":"a","label":"A","kind":"link"},{"id":"a","label":"B","kind":"callback"}]}"#)
            .validate(NOW)
            .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["actions[0].url", "actions[1].id"]);

        // once and form belong to callbacks; a form is checked by path.
        let e = req(r#"{"to":{"users":["u"]},"title":"x","actions":[
            {"id":"l","label":"L","url":"/x","once":true,"form":{"fields":[{"name":"a","label":"A","type":"text"}]}},
            {"id":"c","label":"C","kind":"callback","form":{"fields":[{"name":"s","label":"S","type":"select"}]}}]}"#)
            .validate(NOW)
            .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "actions[0].once",
                "actions[0].form",
                "actions[1].form.fields[0].options"
            ]
        );
        let n = req(r#"{"to":{"users":["u"]},"title":"x","actions":[
            {"id":"approve","label":"Approve","kind":"callback","style":"primary","once":true,
             "form":{"fields":[{"name":"note","label":"Note","type":"textarea"}]}}]}"#)
        .validate(NOW)
        .unwrap();
        let a = &n.content.actions[0];
        assert!(a.once);
        assert_eq!(a.form.as_ref().unwrap().fields[0].name, "note");
        let json = n.content.to_json();
        assert!(
            json.contains(r#""once":true,"form":{"fields":[{"name":"note""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Content>(&json).unwrap(), n.content);
    }

    #[test]
    fn content_json_round_trips() {
        let n = req(r#"{"to":{"users":["u"]},"title":"x","expires_at":"2099-01-01T00:00:00Z","entity":{"type":"ticket","id":"1"}}"#)
            .validate(NOW)
            .unwrap();
        let json = n.content.to_json();
        assert!(json.starts_with("{\"title\":\"x\""));
        let back: Content = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n.content);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<SendRequest>(r#"{"titel":"x"}"#).is_err());
    }
}
