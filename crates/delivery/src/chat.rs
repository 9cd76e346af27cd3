//! Chat and personal webhooks (C7): the adapter that posts one
//! notification to every chat target of a user (their own Slack, Teams or
//! webhook URL) or of a group (the group's channel, once, not once per
//! member).
//!
//! - Slack: an incoming webhook takes a Block Kit message: a header with
//!   the title, a section with the body, a context line naming the actor,
//!   an actions block with a link button to the notification's URL (made
//!   absolute with the host application's URL), and `text` as the
//!   fallback notifications and old clients show.
//! - Microsoft Teams: an incoming webhook (or a Power Automate workflow
//!   URL) takes a `message` with one Adaptive Card attachment
//!   (`application/vnd.microsoft.card.adaptive`): TextBlocks for title,
//!   body and actor, an `Action.OpenUrl` for the link.
//! - Generic webhooks: JSON `{"type": "notification.created", "timestamp",
//!   "data": {...}}`, signed per the Standard Webhooks specification
//!   (`webhook-id` = the delivery id, the same on every retry of this
//!   delivery; `webhook-timestamp`; `webhook-signature: v1,<base64
//!   HMAC-SHA256 of "{id}.{timestamp}.{body}">`, see [`crate::signing`]).
//!
//! Answers: 2xx delivered; 404 and 410 (Slack and Teams say a webhook was
//! removed so) and other 4xx fail for good (the target is kept, and the
//! failure logged: an administrator replaces it); 429 and 5xx retry, not
//! before `Retry-After`. When some of an owner's targets must be retried,
//! the retry posts to all of them again (each target of one owner is one
//! delivery job).
//!
//! URLs are reached only through [`OutboundPolicy`]: http(s), public
//! addresses (unless `BELFRY_OUTBOUND_ALLOW` allows them), no redirects.

use crate::channel::{ChannelAdapter, Message, SendError};
use crate::outbound::OutboundPolicy;
use crate::targets::{Outcome, combine, unanswered};
use async_trait::async_trait;
use belfry_core::{Channel, Content};
use belfry_store::{ChatKind, ChatOwner, ChatTarget, Recipient, SharedStore};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::signing::{SECRET_PREFIX, new_webhook_secret, sign};

/// Settings of the chat channel.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Base URL of the host application; relative notification links
    /// (`/tickets/123`) are made absolute with it (a chat client cannot
    /// resolve them). Without it, a relative link gets no button.
    pub app_url: Option<String>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Where requests may go.
    pub outbound: OutboundPolicy,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            app_url: None,
            timeout: Duration::from_secs(15),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The notification's link, absolute (http or https), if it can be.
fn link(content: &Content, app_url: Option<&str>) -> Option<String> {
    absolute(content.url.as_deref()?, app_url)
}

/// The notification's link actions a chat message can show, as
/// (label, absolute URL, style); callback actions are answered in the
/// application, not from a chat.
fn link_actions<'a>(
    content: &'a Content,
    app_url: Option<&str>,
) -> Vec<(&'a str, String, belfry_core::ActionStyle)> {
    content
        .actions
        .iter()
        .filter(|a| a.kind == belfry_core::ActionKind::Link)
        .filter_map(|a| {
            Some((
                a.label.as_str(),
                absolute(a.url.as_deref()?, app_url)?,
                a.style,
            ))
        })
        .collect()
}

fn absolute(url: &str, app_url: Option<&str>) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Some(url.to_string());
    }
    let base = app_url?;
    Some(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        url.trim_start_matches('/')
    ))
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn actor_name(content: &Content) -> Option<String> {
    let actor = content.actor.as_ref()?;
    actor
        .name
        .clone()
        .or_else(|| actor.id.as_ref().map(|id| id.to_string()))
}

/// The Slack message (Block Kit, with `text` as the fallback).
pub fn slack_payload(content: &Content, app_url: Option<&str>) -> Value {
    // Slack refuses a message whose header text is over 150 characters or
    // whose section text is over 3000 (the ellipsis and the escapes count).
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&content.title, 149), "emoji": true}
    })];
    if let Some(body) = content.chat_text().or(content.body.as_deref()) {
        let mut text = slack_escape(&cut(body, 2900));
        if text.chars().count() > 3000 {
            text = slack_escape(&cut(body, 590));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": text}
        }));
    }
    if let Some(actor) = actor_name(content) {
        let mut elements = Vec::new();
        if let Some(avatar) = content
            .actor
            .as_ref()
            .and_then(|a| a.avatar_url.as_deref())
            .filter(|u| u.starts_with("https://"))
        {
            elements.push(json!({"type": "image", "image_url": avatar, "alt_text": actor}));
        }
        elements.push(json!({"type": "mrkdwn", "text": format!("by *{}*", slack_escape(&actor))}));
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    let mut buttons = Vec::new();
    if let Some(url) = link(content, app_url) {
        buttons.push(json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Open"},
            "url": url,
            "style": "primary",
            "action_id": "belfry_open"
        }));
    }
    for (i, (label, url, style)) in link_actions(content, app_url).into_iter().enumerate() {
        let mut b = json!({
            "type": "button",
            "text": {"type": "plain_text", "text": cut(label, 75)},
            "url": url,
            "action_id": format!("belfry_action_{i}")
        });
        match style {
            belfry_core::ActionStyle::Primary if buttons.is_empty() => {
                b["style"] = json!("primary")
            }
            belfry_core::ActionStyle::Danger => b["style"] = json!("danger"),
            _ => {}
        }
        buttons.push(b);
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    let fallback = match (content.chat_text(), &content.body) {
        (Some(chat), _) => cut(chat, 300),
        (None, Some(body)) => format!("{}: {}", content.title, cut(body, 300)),
        (None, None) => content.title.clone(),
    };
    json!({"text": slack_escape(&fallback), "blocks": blocks})
}

/// The Teams message: one Adaptive Card (schema 1.4).
pub fn teams_payload(content: &Content, app_url: Option<&str>) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "text": cut(&content.title, 300), "weight": "Bolder",
        "size": "Medium", "wrap": true
    })];
    if let Some(text) = content.chat_text().or(content.body.as_deref()) {
        body.push(json!({"type": "TextBlock", "text": cut(text, 3000), "wrap": true}));
    }
    if let Some(actor) = actor_name(content) {
        body.push(json!({
            "type": "TextBlock", "text": format!("by {actor}"), "isSubtle": true,
            "size": "Small", "wrap": true
        }));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    let mut actions: Vec<Value> = link(content, app_url)
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Open", "url": url}))
        .into_iter()
        .collect();
    for (label, url, _) in link_actions(content, app_url) {
        actions.push(json!({"type": "Action.OpenUrl", "title": cut(label, 100), "url": url}));
    }
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card
        }]
    })
}

/// The generic webhook's body.
pub fn webhook_payload(message: &Message, app_url: Option<&str>, timestamp: u64) -> Value {
    let c = &message.content;
    let at = jiff::Timestamp::from_second(timestamp as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    json!({
        "type": "notification.created",
        "timestamp": at,
        "data": {
            "id": message.notification_id,
            "title": c.title,
            "body": c.body,
            "text": c.chat_text(),
            "url": link(c, app_url).or_else(|| c.url.clone()),
            "category": c.category,
            "source": c.source,
            "actor": c.actor,
            "entity": c.entity,
            "data": c.data,
            "recipient": message.recipient.label(),
            "published_at": message.published_at.to_rfc3339(),
        }
    })
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    crate::webpush::retry_after(value, SystemTime::now()).map(|d| d.min(MAX_RETRY_AFTER))
}

/// The chat channel.
pub struct ChatAdapter {
    store: SharedStore,
    settings: ChatSettings,
    client: reqwest::Client,
}

impl ChatAdapter {
    pub fn new(store: SharedStore, settings: ChatSettings) -> ChatAdapter {
        let client = settings.outbound.client(settings.timeout);
        ChatAdapter {
            store,
            settings,
            client,
        }
    }

    async fn deliver(&self, message: &Message, target: &ChatTarget) -> Outcome {
        let kind = target.kind.as_str();
        let url = match Url::parse(&target.url) {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(format!("{kind}: the stored URL is invalid: {e}")),
        };
        if let Err(refused) = self.settings.outbound.check_url(&url) {
            return Outcome::Failed(format!("{kind} {}: {refused}", host(&url)));
        }
        let app_url = self.settings.app_url.as_deref();
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "Belfry");
        let body = match target.kind {
            ChatKind::Slack => slack_payload(&message.content, app_url).to_string(),
            ChatKind::Teams => teams_payload(&message.content, app_url).to_string(),
            ChatKind::Webhook => {
                let Some(secret) = &target.secret else {
                    return Outcome::Failed("webhook: the target has no signing secret".into());
                };
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let body = webhook_payload(message, app_url, timestamp).to_string();
                // Stable across retries of this delivery (receivers
                // de-duplicate by it), unique per notification and owner.
                let id = format!("msg_{}", message.delivery_id);
                let signed = match crate::signing::headers(secret, &id, timestamp, &body) {
                    Ok(h) => h,
                    Err(e) => return Outcome::Failed(format!("webhook: {e}")),
                };
                for (name, value) in signed {
                    request = request.header(name, value);
                }
                body
            }
        };
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                // Without the URL: a Slack or Teams URL's path is its credential.
                return unanswered(&format!("{kind} {}", host(&url)), &e.without_url());
            }
        };
        let status = response.status();
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let said = response_text(response).await;
        let host = host(&url);
        match status {
            s if s.is_success() => Outcome::Delivered,
            StatusCode::NOT_FOUND | StatusCode::GONE => Outcome::Failed(format!(
                "{kind} {host} answered {status}{said}: the webhook was removed or its URL is \
                 wrong; replace the target"
            )),
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                Outcome::Retry(format!("{kind} {host} answered {s}{said}"), wait)
            }
            s => Outcome::Failed(format!("{kind} {host} refused the message: {s}{said}")),
        }
    }
}

/// The host (and port) of a URL, for the log (never the path: Slack's and
/// Teams' paths are the webhook's credentials).
fn host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "?".to_string(),
    }
}

/// A short excerpt of the answer, for the delivery log.
async fn response_text(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", cut(&text.replace(['\r', '\n'], " "), 200))
    }
}

#[async_trait]
impl ChannelAdapter for ChatAdapter {
    fn channel(&self) -> Channel {
        Channel::Chat
    }

    fn skip_reason(&self, message: &Message) -> Option<String> {
        match message.recipient {
            Recipient::Contact(_) => Some("an external contact has no chat targets".to_string()),
            Recipient::User(_) | Recipient::Group(_) => None,
        }
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let owner = match &message.recipient {
            Recipient::User(u) => ChatOwner::User(u.clone()),
            Recipient::Group(g) => ChatOwner::Group(g.clone()),
            Recipient::Contact(_) => {
                return Err(SendError::skipped(
                    "an external contact has no chat targets",
                ));
            }
        };
        let targets = match self.store.chat_targets(&owner).await {
            Ok(t) => t,
            Err(belfry_store::StoreError::NotFound) => {
                return Err(SendError::skipped(format!(
                    "{} no longer exists",
                    message.recipient.label()
                )));
            }
            Err(e) => {
                return Err(SendError::temporary(format!(
                    "reading the chat targets failed: {e}"
                )));
            }
        };
        if targets.is_empty() {
            return Err(SendError::skipped(format!(
                "{} has no chat target (any more)",
                message.recipient.label()
            )));
        }
        let outcomes =
            futures::future::join_all(targets.iter().map(|t| self.deliver(message, t))).await;
        combine(&message.recipient.label(), outcomes, "404/410")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(json: Value) -> Content {
        let mut base = json!({"title":"t","body":null,"url":null,"category":null,"source":null,"actor":null,"entity":null,"data":null,"actions":[],"stack_key":null,"sticky":false,"expires_at":null});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_chat_text_replaces_the_body_in_slack_teams_and_webhooks() {
        let c = content(json!({
            "title": "Ticket #7 assigned",
            "body": "Printer jam",
            "texts": {"chat": "Bo assigned *#7* to you", "push_title": "#7"}
        }));
        let s = slack_payload(&c, None);
        assert_eq!(s["text"], "Bo assigned *#7* to you");
        assert_eq!(s["blocks"][0]["text"]["text"], "Ticket #7 assigned");
        assert_eq!(s["blocks"][1]["text"]["text"], "Bo assigned *#7* to you");
        let t = teams_payload(&c, None);
        assert_eq!(
            t["attachments"][0]["content"]["body"][1]["text"],
            "Bo assigned *#7* to you"
        );
        let plain = content(json!({"title": "Ticket #7 assigned", "body": "Printer jam"}));
        assert_eq!(
            slack_payload(&plain, None)["text"],
            "Ticket #7 assigned: Printer jam"
        );
    }

    #[test]
    fn link_actions_become_buttons_and_callbacks_do_not() {
        let c = content(json!({
            "title": "Approve the order",
            "url": "/orders/5",
            "actions": [
                {"id": "view", "label": "View order", "kind": "link", "url": "/orders/5/lines", "style": "secondary"},
                {"id": "no", "label": "Report", "kind": "link", "url": "https://x.example/r", "style": "danger"},
                {"id": "ok", "label": "Approve", "kind": "callback", "url": null, "style": "primary"}
            ]
        }));
        let s = slack_payload(&c, Some("https://desk.example.com"));
        let buttons = s["blocks"].as_array().unwrap().last().unwrap()["elements"]
            .as_array()
            .unwrap()
            .clone();
        let labels: Vec<&str> = buttons
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["Open", "View order", "Report"]);
        assert_eq!(buttons[1]["url"], "https://desk.example.com/orders/5/lines");
        assert!(buttons[1].get("style").is_none());
        assert_eq!(buttons[2]["style"], "danger");
        let t = teams_payload(&c, Some("https://desk.example.com"));
        let actions = t["attachments"][0]["content"]["actions"]
            .as_array()
            .unwrap();
        let titles: Vec<&str> = actions
            .iter()
            .map(|a| a["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Open", "View order", "Report"]);
        assert_eq!(actions[2]["url"], "https://x.example/r");
    }

    #[test]
    fn slack_and_teams_shapes() {
        let c = content(json!({
            "title": "Ticket <#1>",
            "body": "Disk & CPU",
            "url": "/t/1",
            "actor": {"id": "ann", "name": "Ann"}
        }));
        let s = slack_payload(&c, Some("https://desk.example.com/"));
        assert_eq!(s["text"], "Ticket &lt;#1&gt;: Disk &amp; CPU");
        assert_eq!(s["blocks"][0]["type"], "header");
        assert_eq!(s["blocks"][0]["text"]["text"], "Ticket <#1>");
        assert_eq!(s["blocks"][1]["text"]["text"], "Disk &amp; CPU");
        assert_eq!(s["blocks"][2]["elements"][0]["text"], "by *Ann*");
        assert_eq!(
            s["blocks"][3]["elements"][0]["url"],
            "https://desk.example.com/t/1"
        );
        let t = teams_payload(&c, Some("https://desk.example.com"));
        let card = &t["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["body"][0]["text"], "Ticket <#1>");
        assert_eq!(card["content"]["actions"][0]["type"], "Action.OpenUrl");
        // A relative link without the application's URL gets no button.
        let s = slack_payload(&c, None);
        assert_eq!(s["blocks"].as_array().unwrap().len(), 3);
        // Within Slack's limits, however long.
        let long = content(json!({"title": "t".repeat(400), "body": "&".repeat(5000)}));
        let s = slack_payload(&long, None);
        let header = s["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), 150);
        let section = s["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.chars().count() <= 3000, "{}", section.len());
    }
}
