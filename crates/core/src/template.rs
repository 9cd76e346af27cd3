//! Templates (S8): what a notification says, per channel and language,
//! written by an administrator and rendered from a producer's event. A
//! template has texts per locale (`title`, `body`, `email_subject`,
//! `email_text`, `email_html`, `push_title`, `push_body`, `chat`), one of
//! them the default: a recipient's locale picks its texts, and a field
//! missing there comes from the default locale. Every text is a minijinja
//! template, checked when it is saved (a mistake is reported with its
//! locale, field, line and column) and rendered with a fuel limit, with no
//! file or network access; `email_html` is HTML-escaped by default.

use crate::user::Locale;
use crate::validation::ValidationErrors;
pub use minijinja::Environment;
use minijinja::UndefinedBehavior;
pub use minijinja::Value as TemplateValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod limits {
    /// Characters of one text.
    pub const TEXT_CHARS: usize = 20_000;
    /// Locales of one template.
    pub const LOCALES: usize = 50;
    /// The work one render may do (minijinja fuel): loops over a huge
    /// list or a runaway recursion stop with an error instead.
    pub const FUEL: u64 = 100_000;
}

/// The fields of a locale's texts, in the order errors are reported.
pub const FIELDS: [&str; 8] = [
    "title",
    "body",
    "email_subject",
    "email_text",
    "email_html",
    "push_title",
    "push_body",
    "chat",
];

/// One locale's texts, each a minijinja template (all optional but the
/// default locale's `title`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocaleTexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
}

impl LocaleTexts {
    /// The text of `field` (one of [`FIELDS`]).
    pub fn get(&self, field: &str) -> Option<&str> {
        match field {
            "title" => self.title.as_deref(),
            "body" => self.body.as_deref(),
            "email_subject" => self.email_subject.as_deref(),
            "email_text" => self.email_text.as_deref(),
            "email_html" => self.email_html.as_deref(),
            "push_title" => self.push_title.as_deref(),
            "push_body" => self.push_body.as_deref(),
            "chat" => self.chat.as_deref(),
            _ => None,
        }
    }
}

/// `PUT /v1/templates/{id}`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// The locale whose texts fill what another locale leaves out
    /// (default `en`).
    pub default_locale: Option<String>,
    /// Texts per locale (`en`, `de`, `pt-BR`, …).
    pub locales: Option<BTreeMap<String, LocaleTexts>>,
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateDef {
    pub default_locale: String,
    pub locales: BTreeMap<String, LocaleTexts>,
}

/// Where a text does not parse (422 `invalid_template`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TemplateError {
    pub locale: String,
    pub field: String,
    /// 1-based; 0 when the engine gave no position.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a template was refused: the shape (field errors) or a text that
/// does not parse (with its position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRefused {
    Invalid(ValidationErrors),
    Syntax(Vec<TemplateError>),
}

/// The environment every template is parsed and rendered in: no loader
/// (no files), no network, strict about nothing it could not know, and a
/// fuel limit; templates named `….html` are HTML-escaped.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(limits::FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env
}

/// Template variables from JSON.
pub fn context(json: &serde_json::Value) -> TemplateValue {
    TemplateValue::from(minijinja::value::Serde(json))
}

/// The name a text is compiled under (its extension decides escaping).
pub fn text_name(id: &str, locale: &str, field: &str) -> String {
    let ext = if field == "email_html" { "html" } else { "txt" };
    format!("{id}/{locale}/{field}.{ext}")
}

fn position(source: &str, e: &minijinja::Error) -> (usize, usize) {
    let line = e.line().unwrap_or(0);
    let column = match e.range() {
        Some(r) => {
            let start = r.start.min(source.len());
            let before = &source[..start];
            let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
            before[line_start..].chars().count() + 1
        }
        None => 0,
    };
    (line, column)
}

impl TemplateRequest {
    /// Checks the shape and parses every text.
    pub fn validate(self) -> Result<TemplateDef, TemplateRefused> {
        let mut errors = ValidationErrors::new();
        let default_locale = match self.default_locale {
            None => Some("en".to_string()),
            Some(l) => errors.take(
                "default_locale",
                Locale::parse(&l).map(|l| l.as_str().to_string()),
            ),
        };
        let mut locales = BTreeMap::new();
        match self.locales {
            None => errors.add(
                "locales",
                "is required: the texts per locale, e.g. {\"en\": {\"title\": \"…\"}}",
            ),
            Some(l) if l.is_empty() => errors.add("locales", "has no locale"),
            Some(l) if l.len() > limits::LOCALES => errors.add(
                "locales",
                format!(
                    "has {} locales; at most {} are allowed",
                    l.len(),
                    limits::LOCALES
                ),
            ),
            Some(l) => {
                for (key, texts) in l {
                    let Some(locale) = errors.take(
                        &format!("locales.{key}"),
                        Locale::parse(&key).map(|l| l.as_str().to_string()),
                    ) else {
                        continue;
                    };
                    for field in FIELDS {
                        if let Some(text) = texts.get(field)
                            && text.chars().count() > limits::TEXT_CHARS
                        {
                            errors.add(
                                format!("locales.{key}.{field}"),
                                format!("is longer than {} characters", limits::TEXT_CHARS),
                            );
                        }
                    }
                    locales.insert(locale, texts);
                }
            }
        }
        if let Some(d) = &default_locale
            && !locales.is_empty()
        {
            match locales.get(d) {
                None => errors.add(
                    "default_locale",
                    format!("'{d}' has no texts in locales; add them or name another"),
                ),
                Some(t) if t.title.as_deref().is_none_or(|s| s.trim().is_empty()) => errors.add(
                    format!("locales.{d}.title"),
                    "is required in the default locale",
                ),
                Some(_) => {}
            }
        }
        let Some(default_locale) = default_locale else {
            return Err(TemplateRefused::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(TemplateRefused::Invalid(errors));
        }
        let def = TemplateDef {
            default_locale,
            locales,
        };
        def.check_syntax().map_err(TemplateRefused::Syntax)?;
        Ok(def)
    }
}

/// What a template renders for one recipient, per channel, after the
/// fallbacks (email subject → title, email text → body, push → title and
/// body, chat → title and body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rendered {
    /// The locale whose texts were used first.
    pub locale: String,
    pub title: String,
    pub body: Option<String>,
    pub email_subject: String,
    pub email_text: Option<String>,
    pub email_html: Option<String>,
    pub push_title: String,
    pub push_body: Option<String>,
    pub chat: String,
}

/// A render that failed (a filter on the wrong type, fuel used up): the
/// field and the engine's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{locale}.{field}: {message}")]
pub struct RenderError {
    pub locale: String,
    pub field: String,
    pub message: String,
}

/// A template with every text compiled once, for rendering many times
/// (events). Built from a stored template, which was checked when saved.
pub struct Compiled {
    pub def: TemplateDef,
    env: Environment<'static>,
}

impl Compiled {
    pub fn new(def: TemplateDef) -> Compiled {
        let mut env = environment();
        for (locale, texts) in &def.locales {
            for field in FIELDS {
                if let Some(source) = texts.get(field) {
                    // A text that does not compile is compiled (and its
                    // error reported) again when rendered.
                    let _ =
                        env.add_template_owned(text_name("t", locale, field), source.to_string());
                }
            }
        }
        Compiled { def, env }
    }

    /// [`TemplateDef::render`] with the compiled texts.
    pub fn render(
        &self,
        locale: Option<&str>,
        ctx: &minijinja::Value,
    ) -> Result<Rendered, RenderError> {
        self.def.render(&self.env, locale, ctx)
    }
}

impl Rendered {
    /// The channel texts a notification carries: those that differ from
    /// what the channel shows without them (title and body).
    pub fn channel_texts(&self) -> crate::texts::ChannelTexts {
        let differs = |text: &str, default: &str| (text != default).then(|| text.to_string());
        let default_chat = match &self.body {
            Some(b) => format!("{}\n{b}", self.title),
            None => self.title.clone(),
        };
        crate::texts::ChannelTexts {
            email_subject: differs(&self.email_subject, &self.title),
            email_text: self
                .email_text
                .clone()
                .filter(|t| Some(t) != self.body.as_ref()),
            email_html: self.email_html.clone(),
            push_title: differs(&self.push_title, &self.title),
            push_body: self
                .push_body
                .clone()
                .filter(|t| Some(t) != self.body.as_ref()),
            chat: differs(&self.chat, &default_chat),
        }
    }
}

impl TemplateDef {
    /// Parses every text; the errors with their positions.
    pub fn check_syntax(&self) -> Result<(), Vec<TemplateError>> {
        let env = environment();
        let mut out = Vec::new();
        for (locale, texts) in &self.locales {
            for field in FIELDS {
                let Some(source) = texts.get(field) else {
                    continue;
                };
                let name = text_name("t", locale, field);
                if let Err(e) = env.template_from_named_str(&name, source) {
                    let (line, column) = position(source, &e);
                    out.push(TemplateError {
                        locale: locale.clone(),
                        field: field.to_string(),
                        line,
                        column,
                        message: e.detail().unwrap_or(&e.to_string()).to_string(),
                    });
                }
            }
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// The locale to use for `wanted` (a recipient's locale): itself, its
    /// language (`pt` for `pt-BR`), else the default.
    pub fn pick_locale(&self, wanted: Option<&str>) -> &str {
        if let Some(w) = wanted {
            if let Some((k, _)) = self.locales.get_key_value(w) {
                return k;
            }
            let lang = w.split('-').next().unwrap_or(w);
            if let Some((k, _)) = self.locales.get_key_value(lang) {
                return k;
            }
        }
        &self.default_locale
    }

    /// The source of `field` for `locale`, falling back to the default
    /// locale's.
    fn source(&self, locale: &str, field: &str) -> Option<(&str, &str)> {
        self.locales
            .get_key_value(locale)
            .and_then(|(l, t)| t.get(field).map(|s| (l.as_str(), s)))
            .or_else(|| {
                self.locales
                    .get(&self.default_locale)
                    .and_then(|t| t.get(field))
                    .map(|s| (self.default_locale.as_str(), s))
            })
    }

    /// [`TemplateDef::render`] with the variables as JSON.
    pub fn render_json(
        &self,
        env: &Environment<'_>,
        locale: Option<&str>,
        ctx: &serde_json::Value,
    ) -> Result<Rendered, RenderError> {
        self.render(
            env,
            locale,
            &minijinja::Value::from(minijinja::value::Serde(ctx)),
        )
    }

    /// Renders every channel's texts for a recipient in `locale`, with
    /// `ctx` as the template's variables (the event, the recipient).
    pub fn render(
        &self,
        env: &Environment<'_>,
        locale: Option<&str>,
        ctx: &minijinja::Value,
    ) -> Result<Rendered, RenderError> {
        let locale = self.pick_locale(locale).to_string();
        let render = |field: &str| -> Result<Option<String>, RenderError> {
            let Some((from, source)) = self.source(&locale, field) else {
                return Ok(None);
            };
            let fail = |e: minijinja::Error| RenderError {
                locale: from.to_string(),
                field: field.to_string(),
                message: e.detail().unwrap_or(&e.to_string()).to_string(),
            };
            let name = text_name("t", from, field);
            // Compiled already in a [`Compiled`] template's environment;
            // else compiled now.
            let t = match env.get_template(&name) {
                Ok(t) => t,
                Err(_) => env.template_from_named_str(&name, source).map_err(fail)?,
            };
            let out = t.render(ctx).map_err(fail)?;
            let out = out.trim().to_string();
            Ok((!out.is_empty()).then_some(out))
        };
        let title = render("title")?.unwrap_or_default();
        let body = render("body")?;
        let email_subject = render("email_subject")?.unwrap_or_else(|| title.clone());
        let email_text = render("email_text")?.or_else(|| body.clone());
        let email_html = render("email_html")?;
        let push_title = render("push_title")?.unwrap_or_else(|| title.clone());
        let push_body = render("push_body")?.or_else(|| body.clone());
        let chat = render("chat")?.unwrap_or_else(|| match &body {
            Some(b) => format!("{title}\n{b}"),
            None => title.clone(),
        });
        Ok(Rendered {
            locale,
            title,
            body,
            email_subject,
            email_text,
            email_html,
            push_title,
            push_body,
            chat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> TemplateRequest {
        serde_json::from_value(v).unwrap()
    }

    fn assigned() -> TemplateDef {
        req(json!({
            "default_locale": "en",
            "locales": {
                "en": {"title": "{{ actor.name }} assigned {{ entity.title }} to you",
                       "body": "{{ data.summary }}",
                       "email_html": "<p>{{ data.summary }}</p>"},
                "de": {"title": "{{ actor.name }} hat Ihnen {{ entity.title }} zugewiesen"}
            }
        }))
        .validate()
        .unwrap()
    }

    fn ctx() -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(json!({
            "actor": {"id": "bo", "name": "Bo"},
            "entity": {"type": "ticket", "id": "7", "title": "#7 Printer"},
            "data": {"summary": "Jam on <floor 3>"}
        })))
    }

    #[test]
    fn channel_texts_keep_only_what_differs_from_title_and_body() {
        let t = req(json!({"locales": {"en": {
            "title": "{{ entity.title }}", "body": "{{ data.summary }}",
            "email_subject": "[Desk] {{ entity.title }}", "push_title": "{{ entity.title }}",
            "chat": "{{ entity.title }}\n{{ data.summary }}"}}}))
        .validate()
        .unwrap();
        let r = t.render(&environment(), None, &ctx()).unwrap();
        let texts = r.channel_texts();
        assert_eq!(texts.email_subject.as_deref(), Some("[Desk] #7 Printer"));
        assert_eq!(texts.push_title, None, "same as the title");
        assert_eq!(texts.chat, None, "same as what chat shows anyway");
        assert_eq!(texts.email_text, None);
        assert!(!texts.is_empty());
    }

    #[test]
    fn renders_per_locale_with_fallbacks_and_escaping() {
        let t = assigned();
        let env = environment();
        let en = t.render(&env, Some("en"), &ctx()).unwrap();
        assert_eq!(en.title, "Bo assigned #7 Printer to you");
        assert_eq!(
            en.email_subject, en.title,
            "subject falls back to the title"
        );
        assert_eq!(
            en.email_html.as_deref(),
            Some("<p>Jam on &lt;floor 3&gt;</p>")
        );
        assert_eq!(
            en.email_text.as_deref(),
            Some("Jam on <floor 3>"),
            "text is not escaped"
        );
        assert_eq!(en.chat, "Bo assigned #7 Printer to you\nJam on <floor 3>");
        let de = t.render(&env, Some("de-AT"), &ctx()).unwrap();
        assert_eq!(de.locale, "de");
        assert_eq!(de.title, "Bo hat Ihnen #7 Printer zugewiesen");
        assert_eq!(
            de.body.as_deref(),
            Some("Jam on <floor 3>"),
            "body from the default locale"
        );
        assert_eq!(t.render(&env, Some("fr"), &ctx()).unwrap().locale, "en");
        assert_eq!(t.render(&env, None, &ctx()).unwrap().locale, "en");
    }

    #[test]
    fn syntax_errors_name_locale_field_line_and_column() {
        let e = req(json!({"locales": {
            "en": {"title": "ok"},
            "de": {"title": "Hallo", "body": "line one\n  {{ data.x | }}"}
        }}))
        .validate()
        .unwrap_err();
        let TemplateRefused::Syntax(errors) = e else {
            panic!("{e:?}")
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].locale.as_str(), errors[0].field.as_str()),
            ("de", "body")
        );
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].column >= 3, "{:?}", errors[0]);
    }

    #[test]
    fn the_shape_is_checked() {
        for (body, field) in [
            (json!({}), "locales"),
            (json!({"locales": {}}), "locales"),
            (
                json!({"locales": {"en": {"body": "x"}}}),
                "locales.en.title",
            ),
            (
                json!({"default_locale": "de", "locales": {"en": {"title": "x"}}}),
                "default_locale",
            ),
            (
                json!({"locales": {"en": {"title": "x"}, "no such": {"title": "y"}}}),
                "locales.no such",
            ),
        ] {
            let e = req(body.clone()).validate().unwrap_err();
            let TemplateRefused::Invalid(errors) = e else {
                panic!("{body}: {e:?}")
            };
            assert_eq!(errors.0[0].field, field, "{body}");
        }
        assert!(
            serde_json::from_value::<TemplateRequest>(json!({"locales": {"en": {"titel": "x"}}}))
                .is_err()
        );
    }

    #[test]
    fn runaway_templates_stop() {
        let t = req(json!({"locales": {"en": {"title": "{% for i in range(1000000) %}{{ i }}{% endfor %}"}}}))
            .validate()
            .unwrap();
        let e = t.render(&environment(), None, &ctx()).unwrap_err();
        assert_eq!(e.field, "title");
    }
}
