//! Categories (`PUT /v1/categories/{id}`): what kind of notification
//! something is, the channels it uses by default (including the email mode),
//! whether users may switch it off, its email fallback delay and whether it
//! goes out during quiet hours. A fresh Belfry starts with the built-in ones
//! of [`builtin`]; all are editable.

use crate::ids::Category;
use crate::user::Patch;
use crate::validation::{self, ValidationErrors};
use serde::{Deserialize, Serialize};

/// How email reaches a person for one category or source.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum EmailMode {
    /// One email per notification, when it happens.
    Instant,
    /// Collected into the daily digest.
    Digest,
    /// No email.
    #[default]
    Off,
}

impl EmailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailMode::Instant => "instant",
            EmailMode::Digest => "digest",
            EmailMode::Off => "off",
        }
    }

    pub fn parse(value: &str) -> Result<EmailMode, String> {
        match value {
            "instant" => Ok(EmailMode::Instant),
            "digest" => Ok(EmailMode::Digest),
            "off" => Ok(EmailMode::Off),
            other => Err(format!(
                "'{}' is not an email mode; use instant, digest or off",
                other.escape_debug()
            )),
        }
    }
}

/// The channels a category uses when neither the send nor the recipient
/// says otherwise. In-app is always on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryDefaults {
    pub email: EmailMode,
    pub web_push: bool,
    pub mobile_push: bool,
    pub chat: bool,
}

impl Default for CategoryDefaults {
    /// Email only when a send asks for it (as before categories existed),
    /// pushes on, chat off.
    fn default() -> Self {
        CategoryDefaults {
            email: EmailMode::Off,
            web_push: true,
            mobile_push: true,
            chat: false,
        }
    }
}

/// The longest email fallback delay: a week.
pub const MAX_FALLBACK_SECS: i64 = 7 * 24 * 3600;

/// A category as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CategoryDef {
    #[schema(value_type = String)]
    pub id: Category,
    pub name: String,
    /// An icon name or URL the widget shows for this category.
    pub icon: Option<String>,
    /// Users cannot switch a critical category off (nor do their master
    /// and channel switches apply to it).
    pub critical: bool,
    pub defaults: CategoryDefaults,
    /// Seconds: email only if the notification was neither seen nor read
    /// in the app by then (null: no fallback).
    pub email_fallback_after: Option<i64>,
    /// Goes out during the recipient's quiet hours.
    pub bypass_quiet_hours: bool,
}

impl CategoryDef {
    /// A category with the default settings (as auto-created by a send).
    pub fn new(id: Category) -> CategoryDef {
        CategoryDef {
            name: id.as_str().to_string(),
            id,
            icon: None,
            critical: false,
            defaults: CategoryDefaults::default(),
            email_fallback_after: None,
            bypass_quiet_hours: false,
        }
    }
}

/// The categories a fresh database starts with (the seeds' cases); all
/// are editable and deletable.
pub fn builtin() -> Vec<CategoryDef> {
    let def = |id: &str, name: &str, icon: &str| CategoryDef {
        name: name.to_string(),
        icon: Some(icon.to_string()),
        ..CategoryDef::new(Category::parse(id).expect("a valid built-in id"))
    };
    vec![
        def("assignment", "Assignments", "assignment"),
        def("mention", "Mentions", "mention"),
        def("customer_reply", "Customer replies", "reply"),
        def("reopened", "Reopened tickets", "reopened"),
        def("announcement", "Announcements", "announcement"),
        def("reminder", "Reminders", "reminder"),
        CategoryDef {
            critical: true,
            bypass_quiet_hours: true,
            ..def("system", "System notices", "system")
        },
    ]
}

/// `PUT /v1/categories/{id}` as sent: fields left out keep their value
/// (or, for a new category, take the default).
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryRequest {
    /// Shown to users (default: the id). 1 to 100 characters.
    pub name: Option<String>,
    /// An icon name or an http(s) URL, at most 300 characters; null removes it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub icon: Patch<String>,
    pub critical: Option<bool>,
    /// Every field is required when `defaults` is given.
    pub defaults: Option<CategoryDefaults>,
    /// 60 to 604800 seconds; null: no fallback.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 60, maximum = 604800)]
    pub email_fallback_after: Patch<i64>,
    pub bypass_quiet_hours: Option<bool>,
}

impl CategoryRequest {
    /// The category after this change (`current`: what is stored, if any).
    pub fn apply(
        self,
        id: Category,
        current: Option<CategoryDef>,
    ) -> Result<CategoryDef, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let mut def = current.unwrap_or_else(|| CategoryDef::new(id));
        if let Some(name) = self.name
            && let Some(name) = e.take("name", validation::text(&name, 100, true))
        {
            def.name = name;
        }
        match self.icon {
            Patch::Absent => {}
            Patch::Null => def.icon = None,
            Patch::Value(icon) => {
                if let Some(icon) = e.take("icon", validation::text(&icon, 300, true)) {
                    def.icon = Some(icon);
                }
            }
        }
        if let Some(c) = self.critical {
            def.critical = c;
        }
        if let Some(d) = self.defaults {
            def.defaults = d;
        }
        match self.email_fallback_after {
            Patch::Absent => {}
            Patch::Null => def.email_fallback_after = None,
            Patch::Value(secs) if (60..=MAX_FALLBACK_SECS).contains(&secs) => {
                def.email_fallback_after = Some(secs)
            }
            Patch::Value(_) => e.add(
                "email_fallback_after",
                format!("must be 60 to {MAX_FALLBACK_SECS} seconds, or null for no fallback"),
            ),
        }
        if let Some(b) = self.bypass_quiet_hours {
            def.bypass_quiet_hours = b;
        }
        e.finish(def)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Category {
        Category::parse(s).unwrap()
    }

    #[test]
    fn a_new_category_takes_defaults_and_a_change_keeps_the_rest() {
        let r: CategoryRequest = serde_json::from_str(r#"{"icon":"bell"}"#).unwrap();
        let def = r.apply(id("news"), None).unwrap();
        assert_eq!(def.name, "news");
        assert_eq!(def.icon.as_deref(), Some("bell"));
        assert_eq!(def.defaults.email, EmailMode::Off);
        let r: CategoryRequest =
            serde_json::from_str(r#"{"critical":true,"email_fallback_after":600}"#).unwrap();
        let def = r.apply(id("news"), Some(def)).unwrap();
        assert!(def.critical);
        assert_eq!(def.icon.as_deref(), Some("bell"), "kept");
        assert_eq!(def.email_fallback_after, Some(600));
        let r: CategoryRequest =
            serde_json::from_str(r#"{"icon":null,"email_fallback_after":null}"#).unwrap();
        let def = r.apply(id("news"), Some(def)).unwrap();
        assert_eq!(def.icon, None);
        assert_eq!(def.email_fallback_after, None);
    }

    #[test]
    fn bad_fields_are_named() {
        let r: CategoryRequest =
            serde_json::from_str(r#"{"name":"","email_fallback_after":5}"#).unwrap();
        let e = r.apply(id("x"), None).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "email_fallback_after"]);
        assert!(
            serde_json::from_str::<CategoryRequest>(r#"{"defaults":{"email":"weekly"}}"#).is_err()
        );
    }

    #[test]
    fn builtins_cover_the_seeds() {
        let ids: Vec<_> = builtin().into_iter().map(|c| c.id.into_string()).collect();
        assert_eq!(
            ids,
            [
                "assignment",
                "mention",
                "customer_reply",
                "reopened",
                "announcement",
                "reminder",
                "system"
            ]
        );
    }
}
