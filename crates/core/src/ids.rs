//! Identifier newtypes, each parsed once at the edge so that inner code can
//! trust them: user and group ids, email addresses, entity references and
//! category/source names.

use serde::{Deserialize, Serialize};
use std::fmt;

fn id_chars_ok(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '+' | '='))
}

fn parse_id(value: &str, what: &str, max: usize) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > max {
        return Err(format!("{what} is longer than {max} characters"));
    }
    if !id_chars_ok(value) {
        return Err(format!(
            "{what} '{}' may only contain letters, digits and - _ . : @ + =",
            value.escape_debug()
        ));
    }
    Ok(value.to_string())
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A user id chosen by the host application (1–128 characters of
    /// letters, digits and `- _ . : @ + =`).
    UserId
);
string_newtype!(
    /// A group id (team, department, role), same alphabet as user ids, at most 64.
    GroupId
);
string_newtype!(
    /// A normalised (lower-case) email address.
    EmailAddress
);
string_newtype!(
    /// A category (`assignment`, `mention` …) or source name: lower-case
    /// letters, digits and `- _ .`, at most 64.
    Category
);

impl UserId {
    pub fn parse(value: &str) -> Result<UserId, String> {
        parse_id(value, "a user id", 128).map(UserId)
    }
}

impl GroupId {
    pub fn parse(value: &str) -> Result<GroupId, String> {
        parse_id(value, "a group id", 64).map(GroupId)
    }
}

impl Category {
    pub fn parse(value: &str) -> Result<Category, String> {
        if value.is_empty() || value.len() > 64 {
            return Err("must be 1 to 64 characters long".into());
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "'{}' may only contain lower-case letters, digits and - _ .",
                value.escape_debug()
            ));
        }
        Ok(Category(value.to_string()))
    }
}

impl EmailAddress {
    /// Accepts `local@domain` with a plausible local part and a domain made of
    /// DNS labels; the result is lower-cased so that addresses compare equal
    /// whatever case a producer used.
    pub fn parse(value: &str) -> Result<EmailAddress, String> {
        let v = value.trim();
        let bad = || format!("'{}' is not an email address", v.escape_debug());
        if v.len() > 254 {
            return Err(format!("{} (longer than 254 characters)", bad()));
        }
        if !v.is_ascii() {
            // SMTP without SMTPUTF8 carries ASCII addresses only.
            return Err(format!(
                "{} (internationalized addresses are not supported; use the ASCII form)",
                bad()
            ));
        }
        let (local, domain) = v.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        {
            return Err(bad());
        }
        if domain.is_empty()
            || !domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        {
            return Err(bad());
        }
        Ok(EmailAddress(v.to_lowercase()))
    }
}

/// Something in the host application a notification is about: a ticket, a
/// video session, an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntityRef {
    /// Kind of entity, e.g. `ticket` (lower-case letters, digits, `- _ .`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The entity's id in the host application, e.g. `123`.
    pub id: String,
}

impl EntityRef {
    pub fn parse(kind: &str, id: &str) -> Result<EntityRef, String> {
        let kind = Category::parse(kind)
            .map_err(|e| format!("entity type {e}"))?
            .into_string();
        if id.is_empty() || id.len() > 128 {
            return Err("entity id must be 1 to 128 characters long".into());
        }
        if !id_chars_ok(id) {
            return Err(format!(
                "entity id '{}' may only contain letters, digits and - _ . : @ + =",
                id.escape_debug()
            ));
        }
        Ok(EntityRef {
            kind,
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(UserId::parse("u-17").is_ok());
        assert!(UserId::parse("ana@example.com").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("a/b").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            EmailAddress::parse(" Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
        assert!(EmailAddress::parse("ana@localhost").is_ok());
        assert!(EmailAddress::parse("ana").is_err());
        assert!(EmailAddress::parse("@example.com").is_err());
        assert!(EmailAddress::parse("ana@").is_err());
        assert!(EmailAddress::parse("ana@exa mple.com").is_err());
        assert!(EmailAddress::parse("ana@-x.com").is_err());
        assert!(EmailAddress::parse("a..b@x.com").is_err());
        let e = EmailAddress::parse("jürgen@münchen.de").unwrap_err();
        assert!(e.contains("ASCII"), "{e}");
        assert!(EmailAddress::parse("o'brien+x@mail.example.com").is_ok());
        assert!(EmailAddress::parse("ana@x..com").is_err());
    }

    #[test]
    fn categories_and_entities() {
        assert!(Category::parse("assignment").is_ok());
        assert!(Category::parse("Assignment").is_err());
        assert!(EntityRef::parse("ticket", "123").is_ok());
        assert!(EntityRef::parse("", "123").is_err());
        assert!(EntityRef::parse("ticket", "").is_err());
    }
}
