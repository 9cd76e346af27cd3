//! Web push (C5): the VAPID key pair, and the adapter that sends one
//! notification to every push subscription of a user.
//!
//! - RFC 8030: a POST to the subscription's endpoint with `TTL`,
//!   `Urgency` (high for sticky notifications) and, for a stacked
//!   notification, `Topic` (derived from the stack key), so that the push
//!   service replaces a newer push of the same stack for an older one
//!   still waiting for the browser.
//! - RFC 8291: the payload encrypted for the browser's keys (`aes128gcm`),
//!   by `web-push-native`.
//! - RFC 8292: `Authorization: vapid t=<JWT>, k=<public key>`, an ES256
//!   JWT for the endpoint's origin (`aud`), valid 12 hours, with the
//!   operator's contact (`sub`); signed once per origin and reused until
//!   an hour before it expires.
//!
//! The push service's answer decides what happens to each subscription:
//! 404 and 410 remove it (the browser unsubscribed or the subscription
//! expired); 413 sends it again with a shortened payload (no body, no
//! actions); 429 and 5xx make the job retry, not before `Retry-After`.
//! When some of a user's subscriptions must be retried, the retry sends
//! only to those that did not take it (the job's payload keeps the ids of
//! those that did); the payload's `tag` makes a browser that shows a
//! notification of the same stack replace it rather than add one.
//!
//! Endpoints are reached only through [`OutboundPolicy`]: http(s), public
//! addresses (unless allowed), no redirects.

use crate::channel::{ChannelAdapter, Message, SendError};
use crate::outbound::OutboundPolicy;
use crate::targets::{Outcome, combine_targets, pending, unanswered};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use belfry_core::{Channel, Content, UserId};
use belfry_store::{PushSubscription, Recipient, SharedStore};
use reqwest::{StatusCode, Url};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use web_push_native::p256;

/// The most plaintext one aes128gcm record of a 4096-byte push message
/// holds (RFC 8291: 86 bytes of header, 1 padding delimiter, 16 of tag).
pub const MAX_PAYLOAD: usize = 4096 - 86 - 17;

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
const JWT_LIFETIME_SECS: u64 = 12 * 3600;
/// A cached JWT is replaced this long before it expires.
const JWT_MARGIN_SECS: u64 = 3600;
/// The longest `Retry-After` honoured; longer ones are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The application server's P-256 key pair (RFC 8292). The private half
/// never appears in `Debug` output or logs.
pub struct VapidKey {
    encoding: jsonwebtoken::EncodingKey,
    /// Uncompressed public point, base64url (what browsers take as
    /// `applicationServerKey`).
    public: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public)
            .field("private", &"[REDACTED]")
            .finish()
    }
}

impl VapidKey {
    /// From the private key as the usual tools print it: the 32-byte
    /// scalar, base64url (with or without padding).
    pub fn from_base64url(private: &SecretString) -> Result<VapidKey, String> {
        crate::p256key::from_base64url(
            private,
            "is not base64url; give the 32-byte private key as base64url \
             (e.g. what `npx web-push generate-vapid-keys` prints as the private key)",
        )
        .map(VapidKey::from_pair)
    }

    /// A key derived from a stored random secret (the same on every node
    /// that shares the database): SHA-256 of the secret and a counter,
    /// the first value that is a valid scalar.
    pub fn derive(seed: &[u8]) -> VapidKey {
        crate::p256key::derive(b"belfry vapid p-256 key\0", seed, |pair| {
            Ok(VapidKey::from_pair(pair))
        })
    }

    fn from_pair(pair: crate::p256key::Keypair) -> VapidKey {
        VapidKey {
            encoding: pair.encoding,
            public: B64.encode(&pair.public),
        }
    }

    /// The public key, uncompressed (65 bytes), base64url without padding.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// A signed VAPID JWT for `audience` (an origin) until `exp` (Unix
    /// seconds), with the contact `subject`.
    fn sign(&self, audience: &str, exp: u64, subject: &str) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            exp: u64,
            sub: &'a str,
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &Claims {
                aud: audience,
                exp,
                sub: subject,
            },
            &self.encoding,
        )
        .map_err(|e| format!("signing the VAPID JWT failed: {e}"))
    }
}

/// Settings of web push.
#[derive(Debug, Clone)]
pub struct WebPushSettings {
    /// The contact the VAPID JWT names (`sub`): `mailto:` or `https:`.
    pub subject: String,
    /// How long a push service keeps a message for a browser that is
    /// offline (RFC 8030 `TTL`); a notification's `expires_at` shortens it.
    pub ttl: Duration,
    /// Base URL of the host application; relative notification links
    /// (`/tickets/123`) are made absolute with it. Without it they are
    /// passed on as they are (the service worker resolves them against
    /// its own origin).
    pub app_url: Option<String>,
    /// Timeout of one request to a push service.
    pub timeout: Duration,
    /// Where requests may go.
    pub outbound: OutboundPolicy,
}

impl Default for WebPushSettings {
    fn default() -> Self {
        Self {
            subject: "mailto:belfry@localhost".into(),
            ttl: Duration::from_secs(24 * 3600),
            app_url: None,
            timeout: Duration::from_secs(15),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// Checks a VAPID subject (`BELFRY_VAPID_SUBJECT`).
pub fn check_subject(subject: &str) -> Result<(), String> {
    let ok = match subject.split_once(':') {
        Some(("mailto", rest)) => rest.contains('@') && !rest.contains(char::is_whitespace),
        Some(("https", _)) => Url::parse(subject).is_ok_and(|u| u.host().is_some()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(
            "give a contact for push services: mailto:ops@example.com or https://example.com"
                .into(),
        )
    }
}

/// What the service worker receives (JSON, at most [`MAX_PAYLOAD`] bytes).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Payload {
    /// The notification's id (to mark it read on click).
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// The notification's link, opened on click.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The browser replaces a shown notification with the same tag: the
    /// stack key, else the id.
    pub tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<PayloadAction>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
}

/// A button of the shown notification (`NotificationAction`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PayloadAction {
    pub action: String,
    pub title: String,
    /// Where a link action goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

pub(crate) fn absolute(link: &str, app_url: Option<&str>) -> String {
    let lower = link.to_ascii_lowercase();
    match app_url {
        Some(base) if !(lower.starts_with("https://") || lower.starts_with("http://")) => {
            format!("{}{link}", base.trim_end_matches('/'))
        }
        _ => link.to_string(),
    }
}

pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

impl Payload {
    /// The full payload of `content`, made to fit [`MAX_PAYLOAD`]: the
    /// body is cut, then actions and body are left out if need be.
    pub fn of(id: &str, content: &Content, app_url: Option<&str>) -> Payload {
        let actions = content
            .actions
            .iter()
            // Links only: a callback is answered in the application.
            .filter(|a| a.kind == belfry_core::ActionKind::Link)
            .take(2) // what browsers show
            .map(|a| PayloadAction {
                action: a.id.clone(),
                title: cut(&a.label, 40),
                url: a.url.as_deref().map(|u| absolute(u, app_url)),
            })
            .collect();
        let icon = content
            .actor
            .as_ref()
            .and_then(|a| a.avatar_url.clone())
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
        let full = Payload {
            id: id.to_string(),
            title: cut(content.push_title(), 200),
            body: content.push_body().map(|b| cut(b, 1000)),
            icon,
            url: content.url.as_deref().map(|u| absolute(u, app_url)),
            tag: content.stack_key.clone().unwrap_or_else(|| id.to_string()),
            actions,
            sticky: content.sticky,
        };
        if full.to_json().len() <= MAX_PAYLOAD {
            full
        } else {
            full.shortened()
        }
    }

    /// The payload without body and actions (after a 413, or when the
    /// full one is too large), with a cut title, link and icon as needed.
    pub fn shortened(&self) -> Payload {
        let mut short = Payload {
            body: None,
            actions: Vec::new(),
            title: cut(&self.title, 100),
            ..self.clone()
        };
        if short.to_json().len() > MAX_PAYLOAD {
            short.icon = None;
        }
        if short.to_json().len() > MAX_PAYLOAD {
            short.url = None;
        }
        if short.to_json().len() > MAX_PAYLOAD {
            short.tag = short.id.clone();
        }
        short
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payload serialises")
    }
}

/// Whether `bytes` is a P-256 public key (SEC1 encoding) a payload can
/// be encrypted for.
pub fn is_p256_point(bytes: &[u8]) -> bool {
    p256::PublicKey::from_sec1_bytes(bytes).is_ok()
}

/// RFC 8030 `Topic`: at most 32 characters of the base64url alphabet,
/// the same for every push of one stack.
pub fn topic(stack_key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, stack_key.as_bytes());
    B64.encode(digest.as_ref())[..32].to_string()
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let now = jiff::Timestamp::try_from(now).ok()?;
    let secs = (at.as_second() - now.as_second()).max(0) as u64;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The web push channel.
pub struct WebPushAdapter {
    store: SharedStore,
    key: std::sync::Arc<VapidKey>,
    settings: WebPushSettings,
    client: reqwest::Client,
    /// Signed JWTs per audience (origin), with their `exp`.
    jwts: Mutex<HashMap<String, (String, u64)>>,
}

impl WebPushAdapter {
    pub fn new(
        store: SharedStore,
        key: std::sync::Arc<VapidKey>,
        settings: WebPushSettings,
    ) -> WebPushAdapter {
        let client = settings.outbound.client(settings.timeout);
        WebPushAdapter {
            store,
            key,
            settings,
            client,
            jwts: Mutex::new(HashMap::new()),
        }
    }

    /// The `Authorization` header for `audience`, from the cache while
    /// its JWT has more than an hour left.
    fn authorization(&self, audience: &str) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut cache = self.jwts.lock().unwrap_or_else(|p| p.into_inner());
        let token = match cache.get(audience) {
            Some((jwt, exp)) if *exp > now + JWT_MARGIN_SECS => jwt.clone(),
            _ => {
                let exp = now + JWT_LIFETIME_SECS;
                let jwt = self.key.sign(audience, exp, &self.settings.subject)?;
                if cache.len() > 10_000 {
                    cache.retain(|_, (_, e)| *e > now + JWT_MARGIN_SECS);
                }
                cache.insert(audience.to_string(), (jwt.clone(), exp));
                jwt
            }
        };
        Ok(format!("vapid t={token}, k={}", self.key.public_key()))
    }

    fn ttl(&self, content: &Content) -> Duration {
        let ttl = self.settings.ttl;
        match content.expires_at {
            Some(at) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as i64;
                Duration::from_millis((at.0 - now).max(0) as u64).min(ttl)
            }
            None => ttl,
        }
    }

    /// Sends `payload` to one subscription; a 413 sends it once more,
    /// shortened.
    async fn deliver(
        &self,
        user: &UserId,
        sub: &PushSubscription,
        payload: &Payload,
        content: &Content,
    ) -> Outcome {
        let url = match Url::parse(&sub.endpoint) {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(format!("the endpoint is not a URL: {e}")),
        };
        if let Err(refused) = self.settings.outbound.check_url(&url) {
            return Outcome::Failed(format!(
                "the endpoint {}: {refused}",
                url.origin().ascii_serialization()
            ));
        }
        let keys = B64
            .decode(sub.p256dh.trim_end_matches('='))
            .ok()
            .and_then(|k| p256::PublicKey::from_sec1_bytes(&k).ok());
        let auth = B64
            .decode(sub.auth.trim_end_matches('='))
            .ok()
            .filter(|a| a.len() == 16);
        let (Some(public), Some(auth)) = (keys, auth) else {
            return Outcome::Failed("the subscription's keys are invalid".into());
        };
        let auth = web_push_native::Auth::clone_from_slice(&auth);
        let audience = url.origin().ascii_serialization();
        let authorization = match self.authorization(&audience) {
            Ok(a) => a,
            Err(e) => return Outcome::Retry(e, None),
        };
        let mut body = payload.clone();
        for attempt in 0..2 {
            let encrypted =
                match web_push_native::encrypt(body.to_json().into_bytes(), &public, &auth) {
                    Ok(e) => e,
                    Err(e) => {
                        return Outcome::Failed(format!("encrypting the payload failed: {e}"));
                    }
                };
            let mut request = self
                .client
                .post(url.clone())
                .header("TTL", self.ttl(content).as_secs().to_string())
                .header("Urgency", if content.sticky { "high" } else { "normal" })
                .header("Content-Encoding", "aes128gcm")
                .header("Content-Type", "application/octet-stream")
                .header("Authorization", &authorization)
                .body(encrypted);
            if let Some(key) = &content.stack_key {
                request = request.header("Topic", topic(key));
            }
            let started = Instant::now();
            let response = request.send().await;
            metrics::histogram!("belfry_web_push_request_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    metrics::counter!("belfry_web_push_requests_total", "status" => "error")
                        .increment(1);
                    return unanswered(&audience, &e);
                }
            };
            let status = response.status();
            metrics::counter!("belfry_web_push_requests_total", "status" => status_class(status))
                .increment(1);
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now()));
            let said = response_text(response).await;
            match status {
                s if s.is_success() => return Outcome::Delivered,
                StatusCode::NOT_FOUND | StatusCode::GONE => {
                    return match self.store.delete_push_subscription(user, &sub.id).await {
                        Ok(_) => Outcome::Gone,
                        Err(e) => Outcome::Retry(
                            format!(
                                "{audience} answered {status} (subscription gone) but removing it failed: {e}"
                            ),
                            None,
                        ),
                    };
                }
                StatusCode::PAYLOAD_TOO_LARGE if attempt == 0 => {
                    body = body.shortened();
                    continue;
                }
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    return Outcome::Retry(format!("{audience} answered {s}{said}"), wait);
                }
                s => return Outcome::Failed(format!("{audience} refused the push: {s}{said}")),
            }
        }
        Outcome::Failed(format!(
            "{audience} refused the push as too large (413), also shortened"
        ))
    }
}

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "2xx",
        404 | 410 => "gone",
        413 => "413",
        429 => "429",
        500..=599 => "5xx",
        _ => "4xx",
    }
}

/// A short excerpt of the push service's answer, for the delivery log.
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
impl ChannelAdapter for WebPushAdapter {
    fn channel(&self) -> Channel {
        Channel::WebPush
    }

    fn skip_reason(&self, message: &Message) -> Option<String> {
        match message.recipient {
            Recipient::User(_) => None,
            Recipient::Contact(_) => {
                Some("an external contact has no push subscriptions".to_string())
            }
            Recipient::Group(_) => Some("a group has no push subscriptions".to_string()),
        }
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let Recipient::User(user) = &message.recipient else {
            return Err(SendError::skipped(
                "an external contact has no push subscriptions",
            ));
        };
        let subs = match self.store.push_subscriptions(user).await {
            Ok(s) => s,
            Err(belfry_store::StoreError::NotFound) => {
                return Err(SendError::skipped("the user no longer exists"));
            }
            Err(e) => {
                return Err(SendError::temporary(format!(
                    "reading the push subscriptions failed: {e}"
                )));
            }
        };
        let payload = Payload::of(
            &message.notification_id,
            &message.content,
            self.settings.app_url.as_deref(),
        );
        self.to_all(user, &subs, &payload, &message.content, &message.done)
            .await
    }

    /// The rate limit's summary ("3 more notifications"), as one push to
    /// each of the user's subscriptions; it opens the first one listed.
    async fn send_digest(&self, digest: &crate::email::Digest) -> Result<(), SendError> {
        let (id, content) = summary_content(digest)?;
        let user = &digest.user;
        let subs = match self.store.push_subscriptions(user).await {
            Ok(s) => s,
            Err(belfry_store::StoreError::NotFound) => {
                return Err(SendError::skipped("the user no longer exists"));
            }
            Err(e) => {
                return Err(SendError::temporary(format!(
                    "reading the push subscriptions failed: {e}"
                )));
            }
        };
        let payload = Payload::of(&id, &content, self.settings.app_url.as_deref());
        self.to_all(user, &subs, &payload, &content, &[]).await
    }
}

/// The rate limit's summary ("3 more notifications") as the content of
/// one push (web or mobile), with the id it opens: the first listed
/// notification's. Only summaries are pushed; the daily digest is email's.
pub(crate) fn summary_content(
    digest: &crate::email::Digest,
) -> Result<(String, Content), SendError> {
    if digest.kind != crate::email::DigestKind::Summary {
        return Err(SendError::permanent(
            "the daily digest is sent by email, not as a push",
        ));
    }
    let german = digest.locale.as_ref().is_some_and(|l| l.language() == "de");
    let title = match (digest.total, german) {
        (1, false) => "1 more notification".to_string(),
        (n, false) => format!("{n} more notifications"),
        (1, true) => "1 weitere Benachrichtigung".to_string(),
        (n, true) => format!("{n} weitere Benachrichtigungen"),
    };
    let body: Vec<&str> = digest
        .items
        .iter()
        .take(3)
        .map(|i| i.title.as_str())
        .collect();
    // Every field of `Content` (it has no defaults).
    let content: Content = serde_json::from_value(serde_json::json!({
        "title": title,
        "body": body.join("\n"),
        "url": digest.items.first().and_then(|i| i.url.clone()),
        "category": null, "source": null, "actor": null, "entity": null, "data": null,
        "actions": [],
        "stack_key": format!("belfry-summary-{}", digest.user),
        "sticky": false,
        "expires_at": null,
    }))
    .map_err(|e| SendError::permanent(format!("building the summary failed: {e}")))?;
    let id = digest
        .items
        .first()
        .map_or_else(|| digest.delivery_id.clone(), |i| i.id.clone());
    Ok((id, content))
}

impl WebPushAdapter {
    /// One payload to every subscription of `user` but those in `done`
    /// (they took it in an earlier attempt): delivered if any took it;
    /// retried (no earlier than the longest `Retry-After`) if any may take
    /// it later, naming those that took it now.
    async fn to_all(
        &self,
        user: &UserId,
        subs: &[PushSubscription],
        payload: &Payload,
        content: &Content,
        done: &[String],
    ) -> Result<(), SendError> {
        let pending = match pending(
            subs,
            done,
            |t| &t.id,
            "the user has no push subscription (any more)",
        ) {
            Ok(p) => p,
            Err(over) => return over,
        };
        let outcomes = futures::future::join_all(
            pending
                .iter()
                .map(|t| self.deliver(user, t, payload, content)),
        )
        .await;
        combine_targets(
            &format!("user:{user}"),
            &pending,
            |t| &t.id,
            outcomes,
            "404/410",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(json: serde_json::Value) -> Content {
        let mut base = serde_json::json!({"title":"t","body":null,"url":null,"category":null,"source":null,"actor":null,"entity":null,"data":null,"actions":[],"stack_key":null,"sticky":false,"expires_at":null});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn push_texts_replace_title_and_body() {
        let c = content(serde_json::json!({
            "title": "Ticket #7 was assigned to you by Bo",
            "body": "Printer jam on floor 3",
            "texts": {"push_title": "#7 is yours", "push_body": "Printer jam"}
        }));
        let p = Payload::of("n1", &c, None);
        assert_eq!(p.title, "#7 is yours");
        assert_eq!(p.body.as_deref(), Some("Printer jam"));
        let plain = content(serde_json::json!({"title": "Hello", "body": "World"}));
        let p = Payload::of("n1", &plain, None);
        assert_eq!(
            (p.title.as_str(), p.body.as_deref()),
            ("Hello", Some("World"))
        );
    }

    #[test]
    fn keys_from_configuration_and_derived_ones() {
        // The key pair of RFC 8292's example format (32-byte scalar).
        let private = SecretString::from("RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw");
        let key = VapidKey::from_base64url(&private).unwrap();
        let public = B64.decode(key.public_key()).unwrap();
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 4, "uncompressed");
        assert!(!format!("{key:?}").contains("RS0W"));
        assert!(VapidKey::from_base64url(&SecretString::from("abc")).is_err());
        assert!(VapidKey::from_base64url(&SecretString::from("!!")).is_err());
        let a = VapidKey::derive(b"seed");
        assert_eq!(a.public_key(), VapidKey::derive(b"seed").public_key());
        assert_ne!(a.public_key(), VapidKey::derive(b"other").public_key());
    }

    #[test]
    fn the_jwt_verifies_with_the_public_key() {
        let key = VapidKey::derive(b"seed");
        let jwt = key
            .sign(
                "https://push.example.net",
                4_000_000_000,
                "mailto:ops@example.com",
            )
            .unwrap();
        let public = B64.decode(key.public_key()).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            &B64.encode(&public[1..33]),
            &B64.encode(&public[33..]),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["https://push.example.net"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &decoding, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "mailto:ops@example.com");
    }

    #[test]
    fn payloads_fit_and_shorten() {
        let c = content(serde_json::json!({
            "title": "Ticket #1",
            "body": "x".repeat(5000),
            "url": "/t/1",
            "stack_key": "ticket:1",
            "actions": [{"id":"open","label":"Open","kind":"link","url":"/t/1","style":"primary"}]
        }));
        let p = Payload::of("N1", &c, Some("https://desk.example.com/"));
        assert!(p.to_json().len() <= MAX_PAYLOAD);
        assert_eq!(p.url.as_deref(), Some("https://desk.example.com/t/1"));
        assert_eq!(p.tag, "ticket:1");
        assert_eq!(
            p.body.as_ref().unwrap().chars().count(),
            1001,
            "cut with an ellipsis"
        );
        assert_eq!(
            p.actions[0].url.as_deref(),
            Some("https://desk.example.com/t/1")
        );
        let short = p.shortened();
        assert!(short.body.is_none() && short.actions.is_empty());
        assert_eq!(short.id, "N1");
        let huge = content(
            serde_json::json!({"title": "y".repeat(200), "url": format!("https://a.example/{}", "z".repeat(5000))}),
        );
        assert!(Payload::of("N2", &huge, None).to_json().len() <= MAX_PAYLOAD);
    }

    #[test]
    fn topics_and_retry_after() {
        let t = topic("ticket:123:replies");
        assert_eq!(t.len(), 32);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(t, topic("ticket:123:replies"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(0))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:59:37 GMT", now),
            Some(Duration::from_secs(600))
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn a_summary_makes_push_content() {
        let item = |id: &str, title: &str| crate::email::DigestItem {
            id: id.into(),
            title: title.into(),
            body: None,
            url: Some(format!("/t/{id}")),
            category: None,
            at: belfry_core::Millis(0),
        };
        let mut digest = crate::email::Digest {
            kind: crate::email::DigestKind::Summary,
            user: UserId::parse("ana").unwrap(),
            delivery_id: "d1".into(),
            to: None,
            name: None,
            locale: None,
            timezone: None,
            items: vec![item("n2", "Second"), item("n1", "First")],
            total: 2,
            since: belfry_core::Millis(0),
        };
        let (id, content) = summary_content(&digest).unwrap();
        assert_eq!(id, "n2", "opens the newest");
        assert_eq!(content.title, "2 more notifications");
        assert_eq!(content.body.as_deref(), Some("Second\nFirst"));
        assert_eq!(content.url.as_deref(), Some("/t/n2"));
        digest.kind = crate::email::DigestKind::Daily;
        assert!(summary_content(&digest).unwrap_err().permanent);
    }

    #[test]
    fn subjects() {
        assert!(check_subject("mailto:ops@example.com").is_ok());
        assert!(check_subject("https://example.com").is_ok());
        assert!(check_subject("ops@example.com").is_err());
        assert!(check_subject("http://example.com").is_err());
    }
}
