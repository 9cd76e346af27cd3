//! Preferences: what reaches a person where and when. A user's overrides
//! and the administrator's defaults are the same sparse document
//! ([`Overrides`]); what applies to a user is the defaults overlaid with
//! their overrides ([`Effective`]). Updates are merge patches on the JSON
//! form (`PUT /v1/me/preferences`): a field left out is kept, `null`
//! clears an override back to the default.

use crate::category::EmailMode;
use crate::ids::Category;
use crate::notification::Channel;
use crate::validation::ValidationErrors;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// A time of day, `HH:MM` (24 hours), in the user's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    pub hour: i8,
    pub minute: i8,
}

impl LocalTime {
    pub fn new(hour: i8, minute: i8) -> LocalTime {
        LocalTime { hour, minute }
    }

    pub fn parse(value: &str) -> Result<LocalTime, String> {
        let bad = || {
            format!(
                "'{}' is not a time of day; write HH:MM, e.g. 07:30 or 22:00",
                value.escape_debug()
            )
        };
        let (h, m) = value.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: i8 = h.parse().map_err(|_| bad())?;
        let minute: i8 = m.parse().map_err(|_| bad())?;
        if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
            return Err(bad());
        }
        Ok(LocalTime { hour, minute })
    }

    pub fn civil(self) -> jiff::civil::Time {
        jiff::civil::time(self.hour, self.minute, 0, 0)
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LocalTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The days of the week, as quiet hours name them.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Quiet hours: from `start` on each of `days` until the next `end`
/// (the next day when `end` is not after `start`), in the user's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: LocalTime,
    pub end: LocalTime,
    /// Days on which a quiet period starts, `mon` … `sun`, in week order.
    pub days: Vec<String>,
}

impl QuietHours {
    /// Whether a quiet period starts on this weekday (Monday = 1).
    pub fn starts_on(&self, weekday: jiff::civil::Weekday) -> bool {
        let name = DAYS[weekday.to_monday_zero_offset() as usize];
        self.days.iter().any(|d| d == name)
    }
}

/// Per-channel choices for one category or source; what is not given
/// follows the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_push: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_push: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
}

impl ChannelOverride {
    pub fn is_empty(&self) -> bool {
        *self == ChannelOverride::default()
    }

    /// Whether this override switches `channel` on (Some(true)), off
    /// (Some(false)), or says nothing. Email in digest mode is on.
    pub fn switch(&self, channel: Channel) -> Option<bool> {
        match channel {
            Channel::Email => self.email.map(|m| m != EmailMode::Off),
            Channel::WebPush => self.web_push,
            Channel::MobilePush => self.mobile_push,
            Channel::Chat => self.chat,
            Channel::InApp => None,
        }
    }

    /// `other`'s choices where it has them, else these.
    fn overlaid(&self, other: &ChannelOverride) -> ChannelOverride {
        ChannelOverride {
            email: other.email.or(self.email),
            web_push: other.web_push.or(self.web_push),
            mobile_push: other.mobile_push.or(self.mobile_push),
            chat: other.chat.or(self.chat),
        }
    }
}

/// The channel switches (P2). In-app is always on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSwitches {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_push: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_push: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
}

impl ChannelSwitches {
    fn get(&self, channel: Channel) -> Option<bool> {
        match channel {
            Channel::Email => self.email,
            Channel::WebPush => self.web_push,
            Channel::MobilePush => self.mobile_push,
            Channel::Chat => self.chat,
            Channel::InApp => Some(true),
        }
    }

    fn slot(&mut self, channel: Channel) -> Option<&mut Option<bool>> {
        match channel {
            Channel::Email => Some(&mut self.email),
            Channel::WebPush => Some(&mut self.web_push),
            Channel::MobilePush => Some(&mut self.mobile_push),
            Channel::Chat => Some(&mut self.chat),
            Channel::InApp => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<LocalTime>,
}

/// A user's overrides, or the administrator's defaults: sparse; what is
/// not given follows the next level (user → defaults → built-in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// The master switch (P1); in-app always stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub channels: ChannelSwitches,
    #[serde(default)]
    pub categories: BTreeMap<Category, ChannelOverride>,
    #[serde(default)]
    pub sources: BTreeMap<Category, ChannelOverride>,
    #[serde(default)]
    pub digest: DigestOverride,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

/// The built-in digest time, when neither the user nor the defaults say.
pub const DEFAULT_DIGEST_TIME: LocalTime = LocalTime {
    hour: 18,
    minute: 0,
};

/// What applies to one user: the defaults overlaid with their overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub enabled: bool,
    pub channels: EffectiveChannels,
    /// Only the categories with a choice; the others follow the category's
    /// own defaults.
    pub categories: BTreeMap<Category, ChannelOverride>,
    pub sources: BTreeMap<Category, ChannelOverride>,
    pub digest: EffectiveDigest,
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EffectiveChannels {
    pub email: bool,
    pub web_push: bool,
    pub mobile_push: bool,
    pub chat: bool,
}

impl EffectiveChannels {
    pub fn on(&self, channel: Channel) -> bool {
        match channel {
            Channel::InApp => true,
            Channel::Email => self.email,
            Channel::WebPush => self.web_push,
            Channel::MobilePush => self.mobile_push,
            Channel::Chat => self.chat,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EffectiveDigest {
    pub time: LocalTime,
}

impl Effective {
    pub fn of(defaults: &Overrides, user: &Overrides) -> Effective {
        let switch = |c: Channel| {
            user.channels
                .get(c)
                .or(defaults.channels.get(c))
                .unwrap_or(true)
        };
        let merge = |d: &BTreeMap<Category, ChannelOverride>,
                     u: &BTreeMap<Category, ChannelOverride>| {
            let mut out = d.clone();
            for (k, v) in u {
                let merged = out.get(k).cloned().unwrap_or_default().overlaid(v);
                out.insert(k.clone(), merged);
            }
            out
        };
        Effective {
            enabled: user.enabled.or(defaults.enabled).unwrap_or(true),
            channels: EffectiveChannels {
                email: switch(Channel::Email),
                web_push: switch(Channel::WebPush),
                mobile_push: switch(Channel::MobilePush),
                chat: switch(Channel::Chat),
            },
            categories: merge(&defaults.categories, &user.categories),
            sources: merge(&defaults.sources, &user.sources),
            digest: EffectiveDigest {
                time: user
                    .digest
                    .time
                    .or(defaults.digest.time)
                    .unwrap_or(DEFAULT_DIGEST_TIME),
            },
            quiet_hours: user
                .quiet_hours
                .clone()
                .or_else(|| defaults.quiet_hours.clone()),
        }
    }
}

/// Why an update was refused: fields that are wrong (422 `invalid_body`),
/// or a critical category switched off (422 `critical_category`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    Invalid(ValidationErrors),
    Critical(ValidationErrors),
}

/// The channels a preference document names, in its words.
const CHANNEL_KEYS: [(&str, Channel); 4] = [
    ("email", Channel::Email),
    ("web_push", Channel::WebPush),
    ("mobile_push", Channel::MobilePush),
    ("chat", Channel::Chat),
];

fn in_app_message() -> &'static str {
    "the in-app inbox is always on and cannot be switched; use email, web_push, mobile_push or chat"
}

fn object<'a>(
    e: &mut ValidationErrors,
    field: &str,
    v: &'a Value,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => {
            e.add(field, "must be an object (or null to clear it)");
            None
        }
    }
}

fn boolean(e: &mut ValidationErrors, field: &str, v: &Value) -> Option<Option<bool>> {
    match v {
        Value::Null => Some(None),
        Value::Bool(b) => Some(Some(*b)),
        _ => {
            e.add(field, "must be true, false or null");
            None
        }
    }
}

fn time(e: &mut ValidationErrors, field: &str, v: &Value) -> Option<LocalTime> {
    match v {
        Value::String(s) => e.take(field, LocalTime::parse(s)),
        _ => {
            e.add(field, "must be a time of day as \"HH:MM\"");
            None
        }
    }
}

impl Overrides {
    /// Applies a merge patch (the body of a `PUT …/preferences`).
    /// `categories` are the known categories with whether each is
    /// critical; a critical one cannot be switched off on any channel.
    /// Sources are checked for their form only (there is no list of
    /// sources yet).
    pub fn patch(
        &mut self,
        body: &Value,
        categories: &HashMap<Category, bool>,
    ) -> Result<(), PatchError> {
        let mut e = ValidationErrors::new();
        let mut critical = ValidationErrors::new();
        let Some(top) = object(&mut e, "", body) else {
            return Err(PatchError::Invalid(e));
        };
        for (key, v) in top {
            match key.as_str() {
                "enabled" => {
                    if let Some(b) = boolean(&mut e, "enabled", v) {
                        self.enabled = b;
                    }
                }
                "channels" => {
                    if v.is_null() {
                        self.channels = ChannelSwitches::default();
                    } else if let Some(m) = object(&mut e, "channels", v) {
                        for (name, v) in m {
                            let field = format!("channels.{name}");
                            match Channel::parse(name) {
                                Ok(Channel::InApp) => e.add(field, in_app_message()),
                                Ok(c) => {
                                    if let (Some(b), Some(slot)) =
                                        (boolean(&mut e, &field, v), self.channels.slot(c))
                                    {
                                        *slot = b;
                                    }
                                }
                                Err(msg) => e.add(field, msg),
                            }
                        }
                    }
                }
                "categories" | "sources" => {
                    let is_category = key == "categories";
                    let map = if is_category {
                        &mut self.categories
                    } else {
                        &mut self.sources
                    };
                    if v.is_null() {
                        map.clear();
                        continue;
                    }
                    let Some(m) = object(&mut e, key, v) else {
                        continue;
                    };
                    for (id, v) in m {
                        let field = format!("{key}.{id}");
                        let Some(id) = e.take(&field, Category::parse(id)) else {
                            continue;
                        };
                        let is_critical = if is_category {
                            match categories.get(&id) {
                                Some(c) => *c,
                                None => {
                                    e.add(
                                        &field,
                                        format!(
                                            "there is no category '{id}'; see `available.categories`"
                                        ),
                                    );
                                    continue;
                                }
                            }
                        } else {
                            false
                        };
                        if v.is_null() {
                            map.remove(&id);
                            continue;
                        }
                        let Some(inner) = object(&mut e, &field, v) else {
                            continue;
                        };
                        let mut o = map.get(&id).cloned().unwrap_or_default();
                        for (name, v) in inner {
                            let f = format!("{field}.{name}");
                            match name.as_str() {
                                "email" => match v {
                                    Value::Null => o.email = None,
                                    Value::String(s) => {
                                        if let Some(mode) = e.take(&f, EmailMode::parse(s)) {
                                            if is_critical && mode == EmailMode::Off {
                                                critical.add(&f, format!("'{id}' is a critical category: its email cannot be switched off (digest is allowed)"));
                                            }
                                            o.email = Some(mode);
                                        }
                                    }
                                    _ => e.add(&f, "must be \"instant\", \"digest\", \"off\" or null"),
                                },
                                "in_app" => e.add(&f, in_app_message()),
                                other => {
                                    let Some((_, c)) =
                                        CHANNEL_KEYS.iter().find(|(k, _)| *k == other)
                                    else {
                                        e.add(&f, format!("unknown channel '{}'; use email, web_push, mobile_push or chat", other.escape_debug()));
                                        continue;
                                    };
                                    if let Some(b) = boolean(&mut e, &f, v) {
                                        if is_critical && b == Some(false) {
                                            critical.add(&f, format!("'{id}' is a critical category and cannot be switched off"));
                                        }
                                        match c {
                                            Channel::WebPush => o.web_push = b,
                                            Channel::MobilePush => o.mobile_push = b,
                                            _ => o.chat = b,
                                        }
                                    }
                                }
                            }
                        }
                        if o.is_empty() {
                            map.remove(&id);
                        } else {
                            map.insert(id, o);
                        }
                    }
                }
                "digest" => {
                    if v.is_null() {
                        self.digest = DigestOverride::default();
                    } else if let Some(m) = object(&mut e, "digest", v) {
                        for (name, v) in m {
                            match name.as_str() {
                                "time" if v.is_null() => self.digest.time = None,
                                "time" => {
                                    if let Some(t) = time(&mut e, "digest.time", v) {
                                        self.digest.time = Some(t);
                                    }
                                }
                                other => e.add(
                                    format!("digest.{other}"),
                                    "unknown field; digest has only `time`",
                                ),
                            }
                        }
                    }
                }
                "quiet_hours" => {
                    if v.is_null() {
                        self.quiet_hours = None;
                    } else if let Some(q) = quiet_hours(&mut e, v) {
                        self.quiet_hours = Some(q);
                    }
                }
                "timezone" => e.add(
                    "timezone",
                    "is the user's own; change it with PUT /v1/users/{id} {\"timezone\"}",
                ),
                "available" => e.add("available", "is read-only"),
                other => e.add(
                    other,
                    "unknown field; use enabled, channels, categories, sources, digest or quiet_hours",
                ),
            }
        }
        if !e.is_empty() {
            return Err(PatchError::Invalid(e));
        }
        if !critical.is_empty() {
            return Err(PatchError::Critical(critical));
        }
        Ok(())
    }
}

fn quiet_hours(e: &mut ValidationErrors, v: &Value) -> Option<QuietHours> {
    let m = object(e, "quiet_hours", v)?;
    let before = e.0.len();
    let mut start = None;
    let mut end = None;
    let mut days: Vec<String> = DAYS.iter().map(|d| d.to_string()).collect();
    for (name, v) in m {
        let f = format!("quiet_hours.{name}");
        match name.as_str() {
            "start" => start = time(e, &f, v),
            "end" => end = time(e, &f, v),
            "days" => match v {
                Value::Array(list) => {
                    let mut seen = [false; 7];
                    for (i, d) in list.iter().enumerate() {
                        match d.as_str().and_then(|d| DAYS.iter().position(|x| *x == d)) {
                            Some(p) => seen[p] = true,
                            None => e.add(
                                format!("{f}[{i}]"),
                                "must be one of mon, tue, wed, thu, fri, sat, sun",
                            ),
                        }
                    }
                    days = DAYS
                        .iter()
                        .zip(seen)
                        .filter(|(_, s)| *s)
                        .map(|(d, _)| d.to_string())
                        .collect();
                }
                // null: every day.
                Value::Null => {}
                _ => e.add(&f, "must be a list of days, e.g. [\"mon\", \"tue\"]"),
            },
            other => e.add(
                format!("quiet_hours.{other}"),
                "unknown field; use start, end and days",
            ),
        }
    }
    if !m.contains_key("start") {
        e.add("quiet_hours.start", "is required, as \"HH:MM\"");
    }
    if !m.contains_key("end") {
        e.add("quiet_hours.end", "is required, as \"HH:MM\"");
    }
    if let (Some(s), Some(en)) = (start, end)
        && s == en
    {
        e.add("quiet_hours.end", "must differ from start");
    }
    if e.0.len() > before {
        return None;
    }
    Some(QuietHours {
        start: start?,
        end: end?,
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cats() -> HashMap<Category, bool> {
        HashMap::from([
            (Category::parse("mention").unwrap(), false),
            (Category::parse("system").unwrap(), true),
        ])
    }

    fn fields(e: PatchError) -> (bool, Vec<String>) {
        match e {
            PatchError::Invalid(e) => (false, e.0.into_iter().map(|f| f.field).collect()),
            PatchError::Critical(e) => (true, e.0.into_iter().map(|f| f.field).collect()),
        }
    }

    #[test]
    fn a_patch_keeps_what_it_leaves_out_and_null_clears() {
        let mut o = Overrides::default();
        o.patch(
            &json!({"enabled": false, "channels": {"email": false},
                    "categories": {"mention": {"email": "digest", "web_push": false}},
                    "sources": {"helpdesk": {"email": "off"}},
                    "digest": {"time": "07:30"},
                    "quiet_hours": {"start": "22:00", "end": "07:00", "days": ["sun", "mon"]}}),
            &cats(),
        )
        .unwrap();
        assert_eq!(o.quiet_hours.as_ref().unwrap().days, ["mon", "sun"]);
        o.patch(
            &json!({"channels": {"web_push": false}, "categories": {"mention": {"email": null}}}),
            &cats(),
        )
        .unwrap();
        assert_eq!(o.enabled, Some(false), "left out: kept");
        assert_eq!(o.channels.email, Some(false));
        assert_eq!(o.channels.web_push, Some(false));
        let mention = &o.categories[&Category::parse("mention").unwrap()];
        assert_eq!(mention.email, None);
        assert_eq!(mention.web_push, Some(false));
        o.patch(
            &json!({"enabled": null, "categories": {"mention": null}, "quiet_hours": null}),
            &cats(),
        )
        .unwrap();
        assert_eq!(o.enabled, None);
        assert!(o.categories.is_empty());
        assert_eq!(o.quiet_hours, None);
        // Stored and read back unchanged.
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Overrides>(&json).unwrap(), o);
    }

    #[test]
    fn wrong_fields_are_named_by_path() {
        let mut o = Overrides::default();
        let e = o
            .patch(
                &json!({"channels": {"in_app": false, "fax": true},
                        "categories": {"nope": {"email": "off"}, "mention": {"email": "weekly", "sms": true}},
                        "digest": {"time": "25:00"},
                        "quiet_hours": {"start": "7", "days": ["mon", "funday"]},
                        "timezone": "UTC", "colour": 1}),
                &cats(),
            )
            .unwrap_err();
        let (crit, mut f) = fields(e);
        assert!(!crit);
        f.sort();
        assert_eq!(
            f,
            [
                "categories.mention.email",
                "categories.mention.sms",
                "categories.nope",
                "channels.fax",
                "channels.in_app",
                "colour",
                "digest.time",
                "quiet_hours.days[1]",
                "quiet_hours.end",
                "quiet_hours.start",
                "timezone",
            ]
        );
        assert_eq!(o, Overrides::default(), "nothing applied");
    }

    #[test]
    fn critical_categories_cannot_be_switched_off() {
        let mut o = Overrides::default();
        let e = o
            .patch(
                &json!({"categories": {"system": {"email": "off", "web_push": false}}}),
                &cats(),
            )
            .unwrap_err();
        assert_eq!(
            fields(e),
            (
                true,
                vec![
                    "categories.system.email".to_string(),
                    "categories.system.web_push".to_string()
                ]
            )
        );
        o.patch(
            &json!({"categories": {"system": {"email": "digest"}}}),
            &cats(),
        )
        .unwrap();
    }

    #[test]
    fn effective_overlays_user_on_defaults() {
        let mut d = Overrides::default();
        d.patch(
            &json!({"channels": {"email": false}, "categories": {"mention": {"email": "digest", "chat": true}},
                    "quiet_hours": {"start": "20:00", "end": "06:00"}}),
            &cats(),
        )
        .unwrap();
        let mut u = Overrides::default();
        u.patch(
            &json!({"channels": {"email": true}, "categories": {"mention": {"email": "instant"}}}),
            &cats(),
        )
        .unwrap();
        let e = Effective::of(&d, &u);
        assert!(e.enabled && e.channels.email && e.channels.web_push);
        let m = &e.categories[&Category::parse("mention").unwrap()];
        assert_eq!((m.email, m.chat), (Some(EmailMode::Instant), Some(true)));
        assert_eq!(e.digest.time, DEFAULT_DIGEST_TIME);
        assert_eq!(e.quiet_hours.unwrap().start, LocalTime::new(20, 0));
        assert!(!Effective::of(&d, &Overrides::default()).channels.email);
    }
}
