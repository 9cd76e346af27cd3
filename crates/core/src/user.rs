//! Users as the host application describes them (`PUT /v1/users/{id}`), with
//! merge semantics: a field left out keeps its value, `null` clears it.

use crate::ids::{EmailAddress, GroupId, UserId};
use crate::time::Millis;
use crate::validation::{self, ValidationErrors};
use serde::{Deserialize, Deserializer, Serialize};

/// The longest lifetime of a user token, in seconds (30 days). A token
/// revocation older than this refuses nothing that has not expired anyway,
/// so it may be forgotten.
pub const MAX_USER_TOKEN_TTL_SECS: i64 = 30 * 24 * 3600;

/// The longest lifetime of an access token of an external contact, in days
/// (C9). An access-token revocation older than this refuses nothing that
/// has not expired anyway, so it may be forgotten.
pub const MAX_ACCESS_TOKEN_TTL_DAYS: i64 = 365;

/// A field of an update: left out, set to null, or given a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(|v| match v {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}

impl<T> Patch<T> {
    fn try_map<U>(self, f: impl FnOnce(T) -> Option<U>) -> Patch<U> {
        match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Value(v) => match f(v) {
                Some(u) => Patch::Value(u),
                None => Patch::Absent,
            },
        }
    }

    /// The new value given the current one.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Absent => current,
            Patch::Null => None,
            Patch::Value(v) => Some(v),
        }
    }
}

/// A BCP 47 language tag such as `de` or `de-AT`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Locale(String);

impl Locale {
    pub fn parse(value: &str) -> Result<Locale, String> {
        let bad = || {
            format!(
                "'{}' is not a language tag; write e.g. en, de or pt-BR",
                value.escape_debug()
            )
        };
        let mut parts = value.split(['-', '_']);
        let lang = parts.next().unwrap_or("");
        if !(2..=3).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        let mut out = lang.to_ascii_lowercase();
        for p in parts {
            if p.is_empty() || p.len() > 8 || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            out.push('-');
            if p.len() == 2 {
                out.push_str(&p.to_ascii_uppercase());
            } else {
                out.push_str(p);
            }
        }
        Ok(Locale(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The primary language (`de` of `de-AT`).
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or("en")
    }
}

/// An IANA time-zone name known to the bundled time-zone database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(value: &str) -> Result<TimeZoneName, String> {
        match jiff::tz::TimeZone::get(value) {
            Ok(_) if !value.is_empty() => Ok(TimeZoneName(value.to_string())),
            _ => Err(format!(
                "'{}' is not an IANA time zone; write e.g. Europe/Berlin or UTC",
                value.escape_debug()
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `PUT /v1/users/{id}` as sent.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub email: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Patch<String>,
    /// BCP 47 language tag, e.g. `de`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub locale: Patch<String>,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub timezone: Patch<String>,
    /// The complete list of the user's groups (replaces the current one).
    /// Groups that do not exist yet are created.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub groups: Patch<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Patch<serde_json::Value>,
}

/// A validated user update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    pub email: Patch<EmailAddress>,
    pub name: Patch<String>,
    pub avatar_url: Patch<String>,
    pub locale: Patch<Locale>,
    pub timezone: Patch<TimeZoneName>,
    /// `None`: memberships unchanged.
    pub groups: Option<Vec<GroupId>>,
    pub data: Patch<serde_json::Value>,
}

impl UserRequest {
    pub fn validate(self) -> Result<UserPatch, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let email = self
            .email
            .try_map(|v| e.take("email", EmailAddress::parse(&v)));
        let name = self
            .name
            .try_map(|v| e.take("name", validation::text(&v, 200, true)));
        let avatar_url = self
            .avatar_url
            .try_map(|v| e.take("avatar_url", validation::link(&v)));
        let locale = self.locale.try_map(|v| e.take("locale", Locale::parse(&v)));
        let timezone = self
            .timezone
            .try_map(|v| e.take("timezone", TimeZoneName::parse(&v)));
        let groups = match self.groups {
            Patch::Absent => None,
            Patch::Null => Some(Vec::new()),
            Patch::Value(list) => {
                if list.len() > 100 {
                    e.add("groups", "has more than 100 entries");
                }
                let mut out: Vec<GroupId> = Vec::new();
                for (i, g) in list.iter().enumerate() {
                    if let Some(g) = e.take(&format!("groups[{i}]"), GroupId::parse(g))
                        && !out.contains(&g)
                    {
                        out.push(g);
                    }
                }
                Some(out)
            }
        };
        let data = self.data.try_map(|v| match v {
            serde_json::Value::Object(_) => {
                if serde_json::to_string(&v).map(|s| s.len()).unwrap_or(0) > 16 * 1024 {
                    e.add("data", "is larger than 16 KiB");
                    None
                } else {
                    Some(v)
                }
            }
            _ => {
                e.add("data", "must be a JSON object");
                None
            }
        });
        e.finish(UserPatch {
            email,
            name,
            avatar_url,
            locale,
            timezone,
            groups,
            data,
        })
    }
}

/// A user as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    #[schema(value_type = String)]
    pub id: UserId,
    #[schema(value_type = Option<String>)]
    pub email: Option<EmailAddress>,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    #[schema(value_type = Option<String>)]
    pub locale: Option<Locale>,
    #[schema(value_type = Option<String>)]
    pub timezone: Option<TimeZoneName>,
    #[schema(value_type = Vec<String>)]
    pub groups: Vec<GroupId>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    #[serde(serialize_with = "ser_millis")]
    #[schema(value_type = String)]
    pub created_at: Millis,
    #[serde(serialize_with = "ser_millis")]
    #[schema(value_type = String)]
    pub updated_at: Millis,
}

fn ser_millis<S: serde::Serializer>(m: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_distinguishes_absent_and_null() {
        let r: UserRequest = serde_json::from_str(r#"{"name":null,"email":"A@B.C"}"#).unwrap();
        let p = r.validate().unwrap();
        assert_eq!(p.name, Patch::Null);
        assert_eq!(p.email, Patch::Value(EmailAddress::parse("a@b.c").unwrap()));
        assert_eq!(p.locale, Patch::Absent);
        assert_eq!(p.groups, None);
        assert_eq!(Patch::<i32>::Absent.apply(Some(1)), Some(1));
        assert_eq!(Patch::<i32>::Null.apply(Some(1)), None);
    }

    #[test]
    fn locales_and_zones() {
        assert_eq!(Locale::parse("de_at").unwrap().as_str(), "de-AT");
        assert_eq!(Locale::parse("pt-BR").unwrap().language(), "pt");
        assert!(Locale::parse("deutsch").is_err());
        assert!(TimeZoneName::parse("Europe/Berlin").is_ok());
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn bad_fields_are_named() {
        let r: UserRequest =
            serde_json::from_str(r#"{"email":"x","groups":["ok","no way"],"data":5}"#).unwrap();
        let e = r.validate().unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "groups[1]", "data"]);
    }
}
