//! Email: the built-in layout (HTML and plain text, rendered with
//! auto-escaping so producer content can never inject markup), its strings
//! in English and German, dates in the recipient's time zone, and the
//! adapter that hands the message to a [`Mailer`].

use crate::channel::{ChannelAdapter, Message, SendError};
use crate::mailer::{Mailer, OutgoingEmail};
use async_trait::async_trait;
use belfry_core::{Channel, Content, Millis};
use belfry_store::Recipient;
use minijinja::{Environment, context};
use std::sync::Arc;
use std::time::Instant;

/// Settings of outgoing email.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// The From header, e.g. `Belfry <belfry@example.com>`.
    pub from: String,
    /// Base URL of the host application; relative notification links
    /// (`/tickets/123`) are made absolute with it. Without it they are
    /// shown as text only.
    pub app_url: Option<String>,
    /// The product name shown in the footer.
    pub product: String,
    /// Host part of Message-IDs.
    pub message_id_host: String,
    /// The host application's page that lists all notifications (the
    /// digest's "see all" link: `app_url` + this path).
    pub notifications_path: String,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            from: "Belfry <belfry@localhost>".into(),
            app_url: None,
            product: "Belfry".into(),
            message_id_host: "belfry.localhost".into(),
            notifications_path: "/notifications".into(),
        }
    }
}

/// The strings of the layout in one language.
struct Strings {
    lang: &'static str,
    greeting: &'static str,
    open: &'static str,
    fallback: &'static str,
    from_actor: &'static str,
    about: &'static str,
    sent: &'static str,
    footer: &'static str,
    months: [&'static str; 12],
    /// The digest: subject and heading for one / several unread, the
    /// line under the five listed, and the link to all.
    digest_one: &'static str,
    digest_many: &'static str,
    digest_more: &'static str,
    see_all: &'static str,
    /// The rate-limit summary: subject and heading for one / several held.
    summary_one: &'static str,
    summary_many: &'static str,
    /// The footer of an external contact's email (C9).
    contact_footer: &'static str,
    /// The one-click unsubscribe link's text (RFC 8058).
    unsubscribe: &'static str,
}

const EN: Strings = Strings {
    lang: "en",
    greeting: "Hello {name},",
    open: "Open",
    fallback: "Or open this link:",
    from_actor: "From {actor}",
    about: "About {entity}",
    sent: "Sent {date}",
    footer: "You receive this email because {product} notifies you about your work.",
    digest_one: "1 unread notification since {date}",
    digest_many: "{count} unread notifications since {date}",
    digest_more: "… and {count} more.",
    see_all: "See all notifications",
    summary_one: "1 more notification since {date}",
    summary_many: "{count} more notifications since {date}",
    contact_footer: "You receive this email because you follow {entity} through {product}.",
    unsubscribe: "Unsubscribe",
    months: [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
};

const DE: Strings = Strings {
    lang: "de",
    greeting: "Hallo {name},",
    open: "Öffnen",
    fallback: "Oder diesen Link öffnen:",
    from_actor: "Von {actor}",
    about: "Betrifft {entity}",
    sent: "Gesendet am {date}",
    footer: "Sie erhalten diese E-Mail, weil {product} Sie über Ihre Arbeit benachrichtigt.",
    digest_one: "1 ungelesene Benachrichtigung seit {date}",
    digest_many: "{count} ungelesene Benachrichtigungen seit {date}",
    digest_more: "… und {count} weitere.",
    see_all: "Alle Benachrichtigungen ansehen",
    summary_one: "1 weitere Benachrichtigung seit {date}",
    summary_many: "{count} weitere Benachrichtigungen seit {date}",
    contact_footer: "Sie erhalten diese E-Mail, weil Sie {entity} über {product} folgen.",
    unsubscribe: "Abbestellen",
    months: [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
};

fn strings(language: &str) -> &'static Strings {
    match language {
        "de" => &DE,
        _ => &EN,
    }
}

/// A date and time in the recipient's zone, written their way.
pub fn format_date(at: Millis, zone: Option<&str>, language: &str) -> String {
    let s = strings(language);
    let tz = zone
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let name = zone.unwrap_or("UTC");
    let Ok(ts) = jiff::Timestamp::from_millisecond(at.0) else {
        return at.to_rfc3339();
    };
    let z = ts.to_zoned(tz);
    let month = s.months[(z.month() as usize).saturating_sub(1).min(11)];
    match s.lang {
        "de" => format!(
            "{}. {month} {} um {:02}:{:02} Uhr ({name})",
            z.day(),
            z.year(),
            z.hour(),
            z.minute()
        ),
        _ => {
            let (h, ampm) = match z.hour() {
                0 => (12, "AM"),
                h @ 1..=11 => (h, "AM"),
                12 => (12, "PM"),
                h => (h - 12, "PM"),
            };
            format!(
                "{month} {}, {} at {h}:{:02} {ampm} ({name})",
                z.day(),
                z.year(),
                z.minute()
            )
        }
    }
}

/// A link usable in an email: absolute http(s), or a host-application path
/// made absolute with `app_url`.
fn absolute(link: &str, app_url: Option<&str>) -> Option<String> {
    let lower = link.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Some(link.to_string());
    }
    let base = app_url?;
    Some(format!("{}{link}", base.trim_end_matches('/')))
}

/// The footer: why this email came (an external contact follows the entity).
fn footer(s: &Strings, product: &str, followed: Option<&belfry_core::EntityRef>) -> String {
    match followed {
        Some(e) => s
            .contact_footer
            .replace("{entity}", &format!("{} #{}", e.kind, e.id))
            .replace("{product}", product),
        None => s.footer.replace("{product}", product),
    }
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Renders the layout. Producer content enters only as template values,
/// so the HTML part escapes it.
pub struct Renderer {
    env: Environment<'static>,
    settings: EmailSettings,
}

/// The per-recipient links of one email (C9): an external contact's link
/// to the entity with an access token (it replaces the notification's own
/// link), and the one-click unsubscribe link (also the `List-Unsubscribe`
/// header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientLinks {
    /// An external contact's link to the entity (with the access token).
    pub access: Option<String>,
    /// The unsubscribe page (`GET` shows it, `POST` unsubscribes).
    pub unsubscribe: Option<String>,
    /// The email goes to an external contact (the footer says why).
    pub contact: bool,
    /// One-click answers to the callback actions without a form (users
    /// only): (label, the page that asks and then answers).
    pub answers: Vec<(String, String)>,
}

#[derive(serde::Serialize)]
struct LinkView {
    label: String,
    url: String,
}

impl Renderer {
    pub fn new(settings: EmailSettings) -> Self {
        let mut env = Environment::new();
        env.add_template("email.html", include_str!("../templates/email.html"))
            .expect("the HTML layout parses");
        env.add_template("email.txt", include_str!("../templates/email.txt"))
            .expect("the text layout parses");
        env.add_template("digest.html", include_str!("../templates/digest.html"))
            .expect("the digest's HTML layout parses");
        env.add_template("digest.txt", include_str!("../templates/digest.txt"))
            .expect("the digest's text layout parses");
        Self { env, settings }
    }

    pub fn render(
        &self,
        content: &Content,
        name: Option<&str>,
        language: &str,
        zone: Option<&str>,
        at: Millis,
    ) -> Rendered {
        self.render_for(
            content,
            name,
            language,
            zone,
            at,
            &RecipientLinks::default(),
        )
    }

    /// [`Renderer::render`] with the recipient's own links.
    pub fn render_for(
        &self,
        content: &Content,
        name: Option<&str>,
        language: &str,
        zone: Option<&str>,
        at: Millis,
        recipient: &RecipientLinks,
    ) -> Rendered {
        let s = strings(language);
        let app = self.settings.app_url.as_deref();
        let actor = content.actor.as_ref().and_then(|a| {
            a.name
                .clone()
                .or_else(|| a.id.as_ref().map(|i| i.to_string()))
        });
        let mut links: Vec<LinkView> = content
            .actions
            .iter()
            .filter(|a| a.kind == belfry_core::notification::ActionKind::Link)
            .filter_map(|a| {
                a.url
                    .as_deref()
                    .and_then(|u| absolute(u, app))
                    .map(|url| LinkView {
                        label: a.label.clone(),
                        url,
                    })
            })
            .collect();
        links.extend(recipient.answers.iter().map(|(label, url)| LinkView {
            label: label.clone(),
            url: url.clone(),
        }));
        let texts = content.texts.as_ref();
        let subject = texts
            .and_then(|t| t.email_subject.as_deref())
            .unwrap_or(&content.title)
            .replace(['\r', '\n'], " ");
        let ctx = context! {
            lang => s.lang,
            subject => subject.as_str(),
            custom_text => texts.and_then(|t| t.email_text.as_deref()),
            custom_html => texts.and_then(|t| t.email_html.as_deref()),
            greeting => name.map(|n| s.greeting.replace("{name}", n)),
            category => content.category.as_ref().map(|c| c.to_string()),
            title => content.title.as_str(),
            body => content.body.as_deref(),
            actor => actor.map(|a| s.from_actor.replace("{actor}", &a)),
            entity => content.entity.as_ref().map(|e| s.about.replace("{entity}", &format!("{} #{}", e.kind, e.id))),
            link => recipient.access.clone().or_else(|| content.url.as_deref().and_then(|u| absolute(u, app))),
            links => minijinja::Value::from(minijinja::value::Serde(&links)),
            open_label => s.open,
            fallback_label => s.fallback,
            sent_line => s.sent.replace("{date}", &format_date(at, zone, s.lang)),
            footer => footer(s, &self.settings.product, content.entity.as_ref().filter(|_| recipient.contact)),
            unsubscribe => recipient.unsubscribe.as_deref(),
            unsubscribe_label => s.unsubscribe,
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "email layout failed to render");
                    content.title.clone()
                })
        };
        Rendered {
            text: render("email.txt"),
            html: render("email.html"),
            subject,
        }
    }
}

#[derive(serde::Serialize)]
struct DigestItemView {
    category: Option<String>,
    title: String,
    body: Option<String>,
    date: String,
    link: Option<String>,
}

impl Renderer {
    /// The daily digest: the newest unread notifications (at most five
    /// are given), how many are unread in all since `since`, and the link
    /// to the host application's notifications page.
    pub fn render_digest(&self, digest: &Digest, language: &str) -> Rendered {
        self.render_digest_for(digest, language, None)
    }

    /// [`Renderer::render_digest`] with the recipient's unsubscribe link.
    pub fn render_digest_for(
        &self,
        digest: &Digest,
        language: &str,
        unsubscribe: Option<&str>,
    ) -> Rendered {
        let s = strings(language);
        let app = self.settings.app_url.as_deref();
        let zone = digest.timezone.as_deref();
        let since = format_date(digest.since, zone, s.lang);
        let count = digest.total.to_string();
        let (one, many) = match digest.kind {
            DigestKind::Daily => (s.digest_one, s.digest_many),
            DigestKind::Summary => (s.summary_one, s.summary_many),
        };
        let heading = if digest.total == 1 {
            one.replace("{date}", &since)
        } else {
            many.replace("{count}", &count).replace("{date}", &since)
        };
        let items: Vec<DigestItemView> = digest
            .items
            .iter()
            .map(|i| DigestItemView {
                category: i.category.clone(),
                title: i.title.clone(),
                body: i.body.clone(),
                date: format_date(i.at, zone, s.lang),
                link: i.url.as_deref().and_then(|u| absolute(u, app)),
            })
            .collect();
        let hidden = digest.total - digest.items.len() as i64;
        let see_all = app.map(|a| {
            format!(
                "{}/{}",
                a.trim_end_matches('/'),
                self.settings.notifications_path.trim_start_matches('/')
            )
        });
        let ctx = context! {
            lang => s.lang,
            subject => heading.as_str(),
            greeting => digest.name.as_deref().map(|n| s.greeting.replace("{name}", n)),
            intro => heading.as_str(),
            items => minijinja::Value::from(minijinja::value::Serde(&items)),
            more => (hidden > 0).then(|| s.digest_more.replace("{count}", &hidden.to_string())),
            see_all => see_all,
            see_all_label => s.see_all,
            open_label => s.open,
            footer => s.footer.replace("{product}", &self.settings.product),
            unsubscribe => unsubscribe,
            unsubscribe_label => s.unsubscribe,
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "digest layout failed to render");
                    heading.clone()
                })
        };
        Rendered {
            subject: heading.replace(['\r', '\n'], " "),
            text: render("digest.txt"),
            html: render("digest.html"),
        }
    }
}

/// One notification listed in a digest.
#[derive(Debug, Clone)]
pub struct DigestItem {
    /// The notification's public id.
    pub id: String,
    pub title: String,
    pub body: Option<String>,
    /// Its link (relative ones are made absolute with `app_url`).
    pub url: Option<String>,
    pub category: Option<String>,
    /// When it arrived.
    pub at: Millis,
}

impl DigestItem {
    /// An item of an inbox listing (the JSON the widget gets); None when
    /// it lacks an id, a title or a valid `created_at`.
    pub fn from_inbox_item(item: &serde_json::Value) -> Option<DigestItem> {
        let text = |k: &str| item.get(k).and_then(|v| v.as_str()).map(String::from);
        Some(DigestItem {
            id: text("id")?,
            title: text("title")?,
            body: text("body"),
            url: text("url"),
            category: text("category"),
            at: Millis::parse_rfc3339(item.get("created_at")?.as_str()?).ok()?,
        })
    }
}

/// A user's daily digest, ready to render.
#[derive(Debug, Clone)]
pub struct Digest {
    pub kind: DigestKind,
    /// Whose it is (push summaries find the user's devices with it).
    pub user: belfry_core::UserId,
    /// Unique per digest run; the Message-ID is made from it, so that a
    /// retry of the same run is recognisable.
    pub delivery_id: String,
    /// The user's address (None: a push summary to a user without one).
    pub to: Option<belfry_core::EmailAddress>,
    pub name: Option<String>,
    pub locale: Option<belfry_core::Locale>,
    pub timezone: Option<String>,
    /// The newest unread, newest first (at most five).
    pub items: Vec<DigestItem>,
    /// Unread in the window in all.
    pub total: i64,
    /// The start of the window (the last digest).
    pub since: Millis,
}

/// What a [`Digest`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    /// The daily digest (C4): unread notifications since the last one.
    Daily,
    /// The summary of what the per-recipient rate limit held back in its
    /// window (P6): "N more notifications since …".
    Summary,
}

/// The email channel: renders the built-in layout and sends it with a
/// [`Mailer`] (SMTP, or the development mailbox).
pub struct EmailAdapter {
    renderer: Renderer,
    settings: EmailSettings,
    mailer: Arc<dyn Mailer>,
    access: Option<AccessLinks>,
}

/// What the per-recipient links of emails are made with (C9): access
/// tokens for external contacts, minted at send time, and the one-click
/// unsubscribe of every email.
pub struct AccessLinks {
    pub tokens: crate::access::AccessTokens,
    pub unsubscribe: crate::access::UnsubscribeTokens,
    /// Belfry's own public URL: the unsubscribe endpoint is under it.
    pub public_url: String,
    /// Where a contact's link points (`BELFRY_CONTACT_LINK_URL`, with
    /// `{token}`, `{entity_type}`, `{entity_id}`); None: the notification's
    /// `url` with `access_token=<token>` added.
    pub contact_link_url: Option<String>,
    /// How long contacts' access tokens are valid, in days.
    pub ttl_days: i64,
    /// When tokens are issued.
    pub clock: Arc<dyn belfry_core::Clock>,
}

impl AccessLinks {
    /// The one-click answer links of the callback actions without a form.
    fn answer_urls(
        &self,
        message: &Message,
        user: &belfry_core::UserId,
        language: &str,
    ) -> Vec<(String, String)> {
        message
            .content
            .actions
            .iter()
            .filter(|a| {
                a.kind == belfry_core::notification::ActionKind::Callback && a.form.is_none()
            })
            .map(|a| {
                let token = self.unsubscribe.sign_answer(
                    &crate::access::AnswerLink {
                        user: user.clone(),
                        notification: message.notification_id.clone(),
                        action: a.id.clone(),
                    },
                    strings(language).lang,
                    self.clock.now(),
                );
                (
                    a.label.clone(),
                    format!(
                        "{}/v1/answer/{token}",
                        self.public_url.trim_end_matches('/')
                    ),
                )
            })
            .collect()
    }

    fn unsubscribe_url(&self, what: &crate::access::Unsubscribe, language: &str) -> String {
        let token = self
            .unsubscribe
            .sign(what, strings(language).lang, self.clock.now());
        format!(
            "{}/v1/unsubscribe/{token}",
            self.public_url.trim_end_matches('/')
        )
    }
}

impl EmailAdapter {
    pub fn new(settings: EmailSettings, mailer: Arc<dyn Mailer>) -> Self {
        Self {
            renderer: Renderer::new(settings.clone()),
            settings,
            mailer,
            access: None,
        }
    }

    /// Emails carry access links for contacts and one-click unsubscribe.
    pub fn with_access(mut self, access: AccessLinks) -> Self {
        self.access = Some(access);
        self
    }

    /// The links of one message's recipient.
    fn links_for(&self, message: &Message, language: &str) -> RecipientLinks {
        use crate::access::{Unsubscribe, fill_pattern, with_access_token};
        let Some(a) = &self.access else {
            return RecipientLinks::default();
        };
        match &message.recipient {
            Recipient::Contact(email) => {
                let Some(entity) = &message.content.entity else {
                    // Nothing to open and no subscription to end: a
                    // contact addressed directly, about no entity.
                    return RecipientLinks {
                        contact: true,
                        ..Default::default()
                    };
                };
                let minted = a.tokens.mint(email, entity, a.clock.now(), a.ttl_days);
                let access = match &a.contact_link_url {
                    Some(pattern) => Some(fill_pattern(pattern, entity, &minted.token)),
                    None => message
                        .content
                        .url
                        .as_deref()
                        .and_then(|u| absolute(u, self.settings.app_url.as_deref()))
                        .map(|u| with_access_token(&u, &minted.token)),
                };
                RecipientLinks {
                    access,
                    unsubscribe: Some(a.unsubscribe_url(
                        &Unsubscribe::Contact {
                            email: email.clone(),
                            entity: entity.clone(),
                        },
                        language,
                    )),
                    contact: true,
                    answers: Vec::new(),
                }
            }
            Recipient::User(user) => RecipientLinks {
                unsubscribe: Some(a.unsubscribe_url(
                    &Unsubscribe::User {
                        user: user.clone(),
                        category: message.content.category.clone(),
                    },
                    language,
                )),
                answers: a.answer_urls(message, user, language),
                ..Default::default()
            },
            Recipient::Group(_) => RecipientLinks::default(),
        }
    }
}

#[async_trait]
impl ChannelAdapter for EmailAdapter {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn skip_reason(&self, message: &Message) -> Option<String> {
        message
            .profile
            .email
            .is_none()
            .then(|| "the user has no email address".to_string())
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let ctx = &message.profile;
        let to = ctx
            .email
            .as_ref()
            .ok_or_else(|| SendError::permanent("no email address"))?;
        let language = ctx.locale.as_ref().map(|l| l.language()).unwrap_or("en");
        let links = self.links_for(message, language);
        let rendered = self.renderer.render_for(
            &message.content,
            ctx.name.as_deref(),
            language,
            ctx.timezone.as_ref().map(|t| t.as_str()),
            message.published_at,
            &links,
        );
        let email = OutgoingEmail {
            from: self.settings.from.clone(),
            to: to.to_string(),
            to_name: ctx.name.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            message_id: format!(
                "<{}@{}>",
                message.delivery_id, self.settings.message_id_host
            ),
            list_unsubscribe: links.unsubscribe,
        };
        let started = Instant::now();
        let result = self.mailer.send(&email).await;
        metrics::histogram!("belfry_email_send_duration_seconds", "mailer" => self.mailer.name())
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn send_digest(&self, digest: &Digest) -> Result<(), SendError> {
        let language = digest.locale.as_ref().map(|l| l.language()).unwrap_or("en");
        // A digest mixes categories: its link switches the email channel off.
        let unsubscribe = self.access.as_ref().map(|a| {
            a.unsubscribe_url(
                &crate::access::Unsubscribe::User {
                    user: digest.user.clone(),
                    category: None,
                },
                language,
            )
        });
        let rendered = self
            .renderer
            .render_digest_for(digest, language, unsubscribe.as_deref());
        let to = digest
            .to
            .as_ref()
            .ok_or_else(|| SendError::permanent("no email address"))?;
        let email = OutgoingEmail {
            from: self.settings.from.clone(),
            to: to.to_string(),
            to_name: digest.name.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            message_id: format!("<{}@{}>", digest.delivery_id, self.settings.message_id_host),
            list_unsubscribe: unsubscribe,
        };
        let started = Instant::now();
        let result = self.mailer.send(&email).await;
        metrics::histogram!("belfry_email_send_duration_seconds", "mailer" => self.mailer.name())
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(json: &str) -> Content {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn escapes_producer_content_in_html_only() {
        let r = Renderer::new(EmailSettings::default());
        let c = content(
            r#"{"title":"<img src=x onerror=alert(1)>","body":"a & b","url":"https://x.example/1","category":null,"source":null,"actor":null,"entity":null,"data":null,"actions":[],"stack_key":null,"sticky":false,"expires_at":null}"#,
        );
        let out = r.render(&c, Some("Ana"), "en", None, Millis(0));
        assert!(!out.html.contains("<img src=x"), "{}", out.html);
        assert!(out.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(out.html.contains("a &amp; b"));
        assert!(
            out.text.contains("<img src=x onerror=alert(1)>"),
            "plain text is not HTML"
        );
        assert!(out.text.contains("Open: https://x.example/1"));
        assert_eq!(out.subject, "<img src=x onerror=alert(1)>");
    }

    #[test]
    fn german_strings_and_zone() {
        let r = Renderer::new(EmailSettings {
            app_url: Some("https://desk.example.com/".into()),
            ..Default::default()
        });
        let c = content(
            r#"{"title":"Ticket zugewiesen","body":null,"url":"/tickets/9","category":"assignment","source":null,"actor":{"id":"u-3","name":"Bo","avatar_url":null},"entity":{"type":"ticket","id":"9"},"data":null,"actions":[{"id":"open","label":"Ansehen","kind":"link","url":"/t/9","style":"primary"},{"id":"ok","label":"OK","kind":"callback","url":null,"style":"primary"}],"stack_key":null,"sticky":false,"expires_at":null}"#,
        );
        // 2026-11-21T08:05:00Z is 09:05 in Berlin.
        let at = Millis::parse_rfc3339("2026-11-21T08:05:00Z").unwrap();
        let out = r.render(&c, Some("Ana"), "de", Some("Europe/Berlin"), at);
        assert!(out.text.contains("Hallo Ana,"));
        assert!(
            out.text
                .contains("Öffnen: https://desk.example.com/tickets/9")
        );
        assert!(out.text.contains("Ansehen: https://desk.example.com/t/9"));
        assert!(!out.text.contains("OK:"), "callback actions are not links");
        assert!(
            out.text
                .contains("Gesendet am 21. November 2026 um 09:05 Uhr (Europe/Berlin)")
        );
        assert!(out.text.contains("Von Bo"));
        assert!(out.html.contains("lang=\"de\""));
    }

    #[test]
    fn relative_links_without_app_url_are_left_out() {
        assert_eq!(absolute("/x", None), None);
        assert_eq!(
            absolute("https://a.b/x", None).as_deref(),
            Some("https://a.b/x")
        );
        assert_eq!(
            format_date(Millis(0), None, "en"),
            "January 1, 1970 at 12:00 AM (UTC)"
        );
    }

    fn item(n: i64, title: &str) -> DigestItem {
        DigestItem {
            id: format!("n{n}"),
            title: title.into(),
            body: Some("a & b".into()),
            url: Some(format!("/t/{n}")),
            category: Some("mention".into()),
            at: Millis::parse_rfc3339("2026-11-21T08:05:00Z").unwrap(),
        }
    }

    #[test]
    fn the_digest_lists_items_counts_the_rest_and_links_to_all() {
        let r = Renderer::new(EmailSettings {
            app_url: Some("https://desk.example.com/".into()),
            notifications_path: "/inbox".into(),
            ..Default::default()
        });
        let d = Digest {
            kind: DigestKind::Daily,
            user: belfry_core::UserId::parse("ana").unwrap(),
            delivery_id: "digest.1.2".into(),
            to: Some(belfry_core::EmailAddress::parse("ana@example.com").unwrap()),
            name: Some("Ana".into()),
            locale: None,
            timezone: Some("Europe/Berlin".into()),
            items: vec![item(2, "<b>two</b>"), item(1, "one")],
            total: 7,
            since: Millis::parse_rfc3339("2026-11-20T17:00:00Z").unwrap(),
        };
        let out = r.render_digest(&d, "en");
        assert_eq!(
            out.subject,
            "7 unread notifications since November 20, 2026 at 6:00 PM (Europe/Berlin)"
        );
        assert!(out.text.contains("- [mention] <b>two</b>"), "{}", out.text);
        assert!(out.text.contains("Open: https://desk.example.com/t/2"));
        assert!(out.text.contains("… and 5 more."));
        assert!(
            out.text
                .contains("See all notifications: https://desk.example.com/inbox")
        );
        assert!(out.html.contains("&lt;b&gt;two&lt;"), "escaped");
        assert!(!out.html.contains("<b>two"));
        assert!(out.html.contains("a &amp; b"));
        let de = r.render_digest(
            &Digest {
                total: 1,
                items: vec![item(1, "eins")],
                ..d.clone()
            },
            "de",
        );
        assert_eq!(
            de.subject,
            "1 ungelesene Benachrichtigung seit 20. November 2026 um 18:00 Uhr (Europe/Berlin)"
        );
        assert!(!de.text.contains("weitere"), "nothing hidden");
        assert!(
            de.text
                .contains("Alle Benachrichtigungen ansehen: https://desk.example.com/inbox")
        );
        // Without the app's URL there is no link to all (nor relative links).
        let bare = Renderer::new(EmailSettings::default()).render_digest(&d, "en");
        assert!(!bare.text.contains("See all"), "{}", bare.text);
        assert!(!bare.text.contains("/t/2"));
        // The rate limit's summary says "more", not "unread".
        let summary = Digest {
            kind: DigestKind::Summary,
            ..d.clone()
        };
        assert_eq!(
            r.render_digest(&summary, "en").subject,
            "7 more notifications since November 20, 2026 at 6:00 PM (Europe/Berlin)"
        );
        assert_eq!(
            r.render_digest(&summary, "de").subject,
            "7 weitere Benachrichtigungen seit 20. November 2026 um 18:00 Uhr (Europe/Berlin)"
        );
    }
}
