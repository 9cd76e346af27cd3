//! Channel texts: what a notification says on a channel when that differs
//! from its title and body (an email's subject and text, a push message's
//! shorter title, a chat line). Templates (S8, P8) render them per
//! language; a producer may also give them with a send (`texts`). A channel
//! whose text is not given uses the title and body.

use crate::validation::{self, ValidationErrors};
use serde::{Deserialize, Serialize};

pub mod limits {
    pub const EMAIL_SUBJECT_CHARS: usize = 300;
    pub const EMAIL_TEXT_CHARS: usize = 20_000;
    pub const EMAIL_HTML_BYTES: usize = 100 * 1024;
    pub const PUSH_TITLE_CHARS: usize = 200;
    pub const PUSH_BODY_CHARS: usize = 2_000;
    pub const CHAT_CHARS: usize = 4_000;
}

/// Per-channel texts of one notification (each optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelTexts {
    /// The email's subject (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
    /// The email's plain-text body (in place of title and body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_text: Option<String>,
    /// The email's HTML body (in place of title and body, inside Belfry's
    /// layout with its links and footer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_html: Option<String>,
    /// Web and mobile push: the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_title: Option<String>,
    /// Web and mobile push: the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_body: Option<String>,
    /// Slack, Teams and chat webhooks: the message text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
}

impl ChannelTexts {
    pub fn is_empty(&self) -> bool {
        *self == ChannelTexts::default()
    }

    /// Trims and checks every text; empty ones are dropped. `None` when
    /// nothing is left.
    pub fn validate(self, errors: &mut ValidationErrors, prefix: &str) -> Option<ChannelTexts> {
        let mut check = |field: &str, value: Option<String>, max: usize| -> Option<String> {
            let v = value?;
            errors
                .take(
                    &format!("{prefix}.{field}"),
                    validation::text(&v, max, false),
                )
                .filter(|t| !t.is_empty())
        };
        let email_subject = check(
            "email_subject",
            self.email_subject,
            limits::EMAIL_SUBJECT_CHARS,
        )
        .map(|s| s.replace(['\r', '\n'], " "));
        let email_text = check("email_text", self.email_text, limits::EMAIL_TEXT_CHARS);
        let push_title = check("push_title", self.push_title, limits::PUSH_TITLE_CHARS);
        let push_body = check("push_body", self.push_body, limits::PUSH_BODY_CHARS);
        let chat = check("chat", self.chat, limits::CHAT_CHARS);
        let email_html = self.email_html.and_then(|h| {
            let field = format!("{prefix}.email_html");
            if h.len() > limits::EMAIL_HTML_BYTES {
                errors.add(
                    field,
                    format!("is larger than {} bytes", limits::EMAIL_HTML_BYTES),
                );
                None
            } else if h.chars().any(|c| c.is_control() && !c.is_whitespace()) {
                errors.add(field, "must not contain control characters");
                None
            } else {
                Some(h).filter(|h| !h.trim().is_empty())
            }
        });
        let texts = ChannelTexts {
            email_subject,
            email_text,
            email_html,
            push_title,
            push_body,
            chat,
        };
        (!texts.is_empty()).then_some(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_checked_and_empty_ones_dropped() {
        let mut e = ValidationErrors::new();
        let t = ChannelTexts {
            email_subject: Some(" New\nreply ".into()),
            push_title: Some("   ".into()),
            chat: Some("x".repeat(limits::CHAT_CHARS + 1)),
            email_html: Some("<p>Hi</p>\u{7}".into()),
            ..Default::default()
        }
        .validate(&mut e, "texts");
        let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["texts.chat", "texts.email_html"]);
        assert_eq!(t.unwrap().email_subject.as_deref(), Some("New reply"));

        let mut e = ValidationErrors::new();
        let none = ChannelTexts {
            push_body: Some(" ".into()),
            ..Default::default()
        }
        .validate(&mut e, "texts");
        assert!(none.is_none() && e.is_empty());
    }
}
