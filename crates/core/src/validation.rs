//! Collecting input errors: every invalid field is reported at once, by its
//! JSON path, with a message that says what to fix.

use serde::Serialize;
use std::fmt;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `to.users[2]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// All problems found in one request; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok when nothing was recorded, so a parser can end with `errors.finish(value)`.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Records the error of a field parser and returns its value if it parsed.
    pub fn take<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.add(field, message);
                None
            }
        }
    }

    /// Prefixes every field path, for errors of an item inside a list.
    pub fn prefixed(self, prefix: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|e| FieldError {
                    field: if e.field.is_empty() {
                        prefix.to_string()
                    } else if e.field.starts_with('[') {
                        format!("{prefix}{}", e.field)
                    } else {
                        format!("{prefix}.{}", e.field)
                    },
                    message: e.message,
                })
                .collect(),
        )
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if e.field.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.field, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Checks a free text field: trimmed length bounds, no control characters
/// other than newlines and tabs.
pub fn text(value: &str, max_chars: usize, required: bool) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return if required {
            Err("must not be empty".into())
        } else {
            Ok(String::new())
        };
    }
    let count = trimmed.chars().count();
    if count > max_chars {
        return Err(format!(
            "is {count} characters long; at most {max_chars} are allowed"
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_string())
}

/// A link a notification may carry: an absolute `http`/`https` URL, or a path
/// relative to the host application (starting with a single `/`). Anything
/// else (`javascript:`, `data:` …) is refused so that no link can run script.
pub fn link(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.len() > 2048 {
        return Err("is longer than 2048 bytes".into());
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let lower = v.to_ascii_lowercase();
    let absolute = ["http://", "https://"]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| &v[p.len()..]);
    match absolute {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() || host.contains('@') {
                Err("must name a host (and no user info), e.g. https://desk.example.com/tickets/1".into())
            } else {
                Ok(v.to_string())
            }
        }
        None if v.starts_with('/') && !v.starts_with("//") && !v.starts_with("/\\") => {
            Ok(v.to_string())
        }
        None => Err(
            "must be an http(s) URL or a path starting with '/', e.g. https://desk.example.com/tickets/1"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_allow_http_and_relative_paths_only() {
        assert!(link("https://desk.example.com/t/1").is_ok());
        assert!(link("HTTP://desk.example.com").is_ok());
        assert!(link("/tickets/123?x=1").is_ok());
        assert!(link("javascript:alert(1)").is_err());
        assert!(link("data:text/html,hi").is_err());
        assert!(link("//evil.example.com").is_err());
        assert!(link("https://").is_err());
        assert!(link("https://user@evil.example.com").is_err());
        assert!(link("https://a b").is_err());
    }

    #[test]
    fn text_trims_and_bounds() {
        assert_eq!(text("  hi ", 5, true).unwrap(), "hi");
        assert!(text("   ", 5, true).is_err());
        assert_eq!(text("   ", 5, false).unwrap(), "");
        assert!(text("abcdef", 5, true).is_err());
        assert!(text("a\u{0}b", 5, true).is_err());
        assert!(text("a\nb", 5, true).is_ok());
    }

    #[test]
    fn errors_are_prefixed_and_displayed() {
        let mut e = ValidationErrors::new();
        e.add("title", "must not be empty");
        e.add("[2]", "bad");
        let e = e.prefixed("notifications[1]");
        assert_eq!(
            e.to_string(),
            "notifications[1].title: must not be empty; notifications[1][2]: bad"
        );
    }
}
