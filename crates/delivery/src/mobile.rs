//! Mobile push (C6): the adapter that sends one notification to every
//! mobile device of a user, through Firebase Cloud Messaging (HTTP v1 API)
//! or Apple's push service (APNs), whichever each device registered with.
//!
//! - FCM: a service account (the JSON file Firebase gives) signs an RS256
//!   JWT (`iss` = its `client_email`, `scope` = firebase.messaging, `aud` =
//!   its `token_uri`, one hour), exchanged at `token_uri` for an OAuth
//!   access token (JWT-bearer grant), kept until five minutes before it
//!   expires; then `POST {base}/v1/projects/{project_id}/messages:send`.
//!   A 401 fetches a new access token once.
//! - APNs: token-based authentication, an ES256 JWT (`iss` = team id,
//!   `iat`; header `kid` = key id) signed with the `.p8` key, kept for 50
//!   minutes (Apple refuses tokens older than an hour and new ones more
//!   often than every 20 minutes); `POST {base}/3/device/{token}` over
//!   HTTP/2 (ALPN on https, prior knowledge on a plain http base URL, as
//!   local stand-ins use). A 403 `ExpiredProviderToken` signs a new JWT once.
//!
//! Answers that say the token is dead remove the device (FCM
//! `UNREGISTERED`, `INVALID_ARGUMENT` about the registration token,
//! `SENDER_ID_MISMATCH`; APNs 410 `Unregistered`, 400 `BadDeviceToken`,
//! `DeviceTokenNotForTopic`); 429 and 5xx retry with the engine's back-off,
//! not before `Retry-After`; anything else fails that device. One device's
//! failure never stops the others (`targets::combine`). A retry sends only
//! to the devices that did not take it (the job's payload keeps the ids of
//! those that did); the collapse id (APNs `apns-collapse-id`, Android
//! `collapse_key` and notification `tag`), the stack key or else the
//! notification id, also makes a device that shows a notification of the
//! same stack replace it rather than add one.
//!
//! The base URLs and the `token_uri` come from the administrator's
//! configuration, so they are trusted: their hosts are added to the
//! outbound policy of this adapter's clients, which otherwise follow the
//! same conventions (no redirects, no proxy, timeouts).

use crate::channel::{ChannelAdapter, Message, SendError};
use crate::outbound::OutboundPolicy;
use crate::targets::{Outcome, combine_targets, pending, unanswered};
use async_trait::async_trait;
use belfry_core::{Channel, Content, UserId};
use belfry_store::{MobileDevice, MobilePlatform, Recipient, SharedStore};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret as _, SecretString};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The OAuth scope of FCM's HTTP v1 API.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// FCM's public base URL.
pub const FCM_BASE_URL: &str = "https://fcm.googleapis.com";
/// APNs' production base URL (the sandbox is `https://api.sandbox.push.apple.com`).
pub const APNS_BASE_URL: &str = "https://api.push.apple.com";
/// How long an APNs provider token is used (Apple: at most an hour, and
/// not renewed more often than every 20 minutes).
const APNS_JWT_LIFETIME: Duration = Duration::from_secs(50 * 60);
/// An OAuth access token is replaced this long before it expires.
const OAUTH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The longest APNs collapse id (bytes).
const MAX_COLLAPSE_ID: usize = 64;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The DER of a PEM-encoded PKCS#8 private key.
fn pkcs8_der(pem: &str, what: &str) -> Result<pkcs8::SecretDocument, String> {
    let (label, doc) = pkcs8::SecretDocument::from_pem(pem.trim()).map_err(|e| {
        format!("{what} is not a PEM private key (-----BEGIN PRIVATE KEY-----): {e}")
    })?;
    if label != "PRIVATE KEY" {
        return Err(format!(
            "{what} is a PEM '{label}'; a PKCS#8 'PRIVATE KEY' is needed"
        ));
    }
    Ok(doc)
}

/// A Firebase service account: who signs, for which project, where its
/// tokens are issued. The private key never appears in `Debug` output.
pub struct FcmCredentials {
    pub project_id: String,
    pub client_email: String,
    /// Where the signed JWT is exchanged for an access token.
    pub token_uri: Url,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for FcmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmCredentials")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri.as_str())
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

impl FcmCredentials {
    /// From the service-account JSON file's text (`"type":
    /// "service_account"`, `project_id`, `client_email`, `private_key`,
    /// `token_uri`). The key is checked by signing once.
    pub fn from_json(text: &SecretString) -> Result<FcmCredentials, String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(rename = "type")]
            kind: Option<String>,
            project_id: Option<String>,
            client_email: Option<String>,
            private_key: Option<SecretString>,
            token_uri: Option<String>,
        }
        let file: File = serde_json::from_str(text.expose_secret())
            .map_err(|e| format!("is not a service-account JSON file: {e}"))?;
        if let Some(kind) = &file.kind
            && kind != "service_account"
        {
            return Err(format!(
                "is a '{kind}' credential; a service account's key file (\"type\": \"service_account\") is needed"
            ));
        }
        let field = |v: Option<String>, name: &str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| format!("has no {name}; download the service account's key file from the Firebase console"))
        };
        let project_id = field(file.project_id, "project_id")?;
        if !project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':' || c == '.')
        {
            return Err(format!(
                "has a project_id that is not a Firebase project id: {}",
                project_id.escape_debug()
            ));
        }
        let client_email = field(file.client_email, "client_email")?;
        let token_uri = field(file.token_uri, "token_uri")?;
        let token_uri = Url::parse(&token_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| format!("has a token_uri that is not an http(s) URL: {token_uri}"))?;
        let private_key = file
            .private_key
            .ok_or("has no private_key; download the service account's key file again")?;
        let der = pkcs8_der(private_key.expose_secret(), "its private_key")?;
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
            .map_err(|e| format!("has a private_key that is not PKCS#8: {e}"))?;
        // rsaEncryption
        if info.algorithm.oid.to_string() != "1.2.840.113549.1.1.1" {
            return Err("has a private_key that is not an RSA key".into());
        }
        let credentials = FcmCredentials {
            project_id,
            client_email,
            token_uri,
            key: jsonwebtoken::EncodingKey::from_rsa_der(info.private_key),
        };
        credentials
            .assertion(unix_now())
            .map_err(|e| format!("has a private_key that cannot sign: {e}"))?;
        Ok(credentials)
    }

    /// The signed JWT-bearer assertion, valid one hour from `now`.
    fn assertion(&self, now: u64) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &Claims {
                iss: &self.client_email,
                scope: FCM_SCOPE,
                aud: self.token_uri.as_str(),
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )
        .map_err(|e| e.to_string())
    }
}

/// An APNs signing key (`AuthKey_<key id>.p8`) with its key id and team
/// id. The key never appears in `Debug` output.
pub struct ApnsCredentials {
    pub key_id: String,
    pub team_id: String,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for ApnsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsCredentials")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// Apple's key and team ids: ten upper-case letters or digits.
fn apple_id(value: &str, what: &str) -> Result<String, String> {
    let value = value.trim();
    if value.len() == 10
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{what} '{}' is not an Apple id (10 upper-case letters or digits, as the developer account shows it)",
            value.escape_debug()
        ))
    }
}

impl ApnsCredentials {
    /// From the `.p8` file's text (a PKCS#8 P-256 key), checked by signing
    /// once.
    pub fn from_p8(
        pem: &SecretString,
        key_id: &str,
        team_id: &str,
    ) -> Result<ApnsCredentials, String> {
        let key_id = apple_id(key_id, "the key id")?;
        let team_id = apple_id(team_id, "the team id")?;
        let der = pkcs8_der(pem.expose_secret(), "the key")?;
        let credentials = ApnsCredentials {
            key_id,
            team_id,
            key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
        };
        credentials.sign(unix_now()).map_err(|e| {
            format!("the key cannot sign ES256 (is it the .p8 file of an APNs key?): {e}")
        })?;
        Ok(credentials)
    }

    /// A provider token issued at `iat`.
    fn sign(&self, iat: u64) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            iat: u64,
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.team_id,
                iat,
            },
            &self.key,
        )
        .map_err(|e| e.to_string())
    }
}

/// FCM as configured.
#[derive(Debug, Clone)]
pub struct FcmSettings {
    pub credentials: Arc<FcmCredentials>,
    /// `https://fcm.googleapis.com` unless configured otherwise.
    pub base_url: Url,
}

/// APNs as configured.
#[derive(Debug, Clone)]
pub struct ApnsSettings {
    pub credentials: Arc<ApnsCredentials>,
    /// `https://api.push.apple.com` (or the sandbox) unless configured
    /// otherwise.
    pub base_url: Url,
}

/// Settings of mobile push; a platform left out cannot be registered for.
#[derive(Debug, Clone)]
pub struct MobileSettings {
    pub fcm: Option<FcmSettings>,
    pub apns: Option<ApnsSettings>,
    /// Base URL of the host application: relative links are made absolute.
    pub app_url: Option<String>,
    /// How long the push service keeps a message for an offline device; a
    /// notification's `expires_at` shortens it.
    pub ttl: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Where requests may go (the configured hosts are added).
    pub outbound: OutboundPolicy,
}

impl Default for MobileSettings {
    fn default() -> Self {
        Self {
            fcm: None,
            apns: None,
            app_url: None,
            ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(15),
            outbound: OutboundPolicy::default(),
        }
    }
}

impl MobileSettings {
    /// Whether devices of `platform` can be reached.
    pub fn configured(&self, platform: MobilePlatform) -> bool {
        match platform {
            MobilePlatform::Fcm => self.fcm.is_some(),
            MobilePlatform::Apns => self.apns.is_some(),
        }
    }

    /// What an administrator sets to enable `platform`.
    pub fn setting_of(platform: MobilePlatform) -> &'static str {
        match platform {
            MobilePlatform::Fcm => "BELFRY_FCM_SERVICE_ACCOUNT (--fcm-service-account FILE)",
            MobilePlatform::Apns => {
                "BELFRY_APNS_KEY, BELFRY_APNS_KEY_ID and BELFRY_APNS_TEAM_ID \
                 (--apns-key FILE --apns-key-id --apns-team-id)"
            }
        }
    }
}

/// What a device shows, the same for both platforms.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The notification's id (the app marks it read with it).
    pub id: String,
    pub title: String,
    pub body: Option<String>,
    /// The notification's link, absolute when the host's URL is known.
    pub url: Option<String>,
    /// Replaces a shown notification with the same value: the stack key,
    /// else the id.
    pub collapse: String,
    pub stack_key: Option<String>,
    /// Sticky notifications go at high priority.
    pub urgent: bool,
    /// When the push service may drop it (Unix seconds).
    pub expires: u64,
}

impl Alert {
    fn of(id: &str, content: &Content, settings: &MobileSettings) -> Alert {
        let now = unix_now();
        let mut expires = now + settings.ttl.as_secs();
        if let Some(at) = content.expires_at {
            expires = expires.min((at.0 / 1000).max(0) as u64);
        }
        Alert {
            id: id.to_string(),
            title: crate::webpush::cut(content.push_title(), 200),
            body: content.push_body().map(|b| crate::webpush::cut(b, 1000)),
            url: content
                .url
                .as_deref()
                .map(|u| crate::webpush::absolute(u, settings.app_url.as_deref())),
            collapse: content.stack_key.clone().unwrap_or_else(|| id.to_string()),
            stack_key: content.stack_key.clone(),
            urgent: content.sticky,
            expires,
        }
    }

    /// The custom data both platforms carry (strings only, as FCM wants).
    fn data(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut data = serde_json::Map::new();
        data.insert("notification_id".into(), self.id.clone().into());
        if let Some(url) = &self.url {
            data.insert("url".into(), url.clone().into());
        }
        if let Some(key) = &self.stack_key {
            data.insert("stack_key".into(), key.clone().into());
        }
        data
    }

    /// `{"title", "body"}`, without a body the notification has none.
    fn alert(&self) -> serde_json::Value {
        let mut alert = serde_json::json!({"title": self.title});
        if let Some(body) = &self.body {
            alert["body"] = body.clone().into();
        }
        alert
    }

    /// The FCM v1 `messages:send` body for `token`.
    pub fn fcm_body(&self, token: &str) -> serde_json::Value {
        let ttl = self.expires.saturating_sub(unix_now());
        serde_json::json!({
            "message": {
                "token": token,
                "notification": self.alert(),
                "data": self.data(),
                "android": {
                    "collapse_key": self.collapse,
                    "priority": if self.urgent { "high" } else { "normal" },
                    "ttl": format!("{ttl}s"),
                    "notification": {"tag": self.collapse}
                },
                "apns": {
                    "headers": {"apns-collapse-id": collapse_id(&self.collapse)}
                }
            }
        })
    }

    /// The APNs body: the alert, the stack as `thread-id`, the data beside.
    pub fn apns_body(&self) -> serde_json::Value {
        let mut aps = serde_json::json!({"alert": self.alert(), "sound": "default"});
        if let Some(key) = &self.stack_key {
            aps["thread-id"] = key.clone().into();
        }
        let mut body = self.data();
        body.insert("aps".into(), aps);
        serde_json::Value::Object(body)
    }
}

/// An APNs collapse id (at most 64 bytes, and a valid header value): the
/// value, or a digest of a longer one or one with other than printable
/// ASCII.
pub fn collapse_id(value: &str) -> String {
    if value.len() <= MAX_COLLAPSE_ID && value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        value.to_string()
    } else {
        crate::webpush::topic(value)
    }
}

/// An OAuth access token and when to stop using it.
struct AccessToken {
    token: SecretString,
    until: Instant,
}

struct Fcm {
    settings: FcmSettings,
    client: reqwest::Client,
    /// Held while fetching, so that concurrent sends wait for one fetch.
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

struct Apns {
    settings: ApnsSettings,
    client: reqwest::Client,
    /// The provider token and when it was signed.
    jwt: Mutex<Option<(String, Instant)>>,
}

/// The mobile push channel.
pub struct MobileAdapter {
    store: SharedStore,
    settings: MobileSettings,
    fcm: Option<Fcm>,
    apns: Option<Apns>,
}

/// What a push service said, parsed enough to decide.
struct Answer {
    status: StatusCode,
    wait: Option<Duration>,
    /// FCM `error.details[].errorCode` (else `error.status`) or APNs `reason`.
    reason: String,
    /// FCM's `error.message`.
    message: String,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::webpush::retry_after(v, SystemTime::now()));
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let error = &body["error"];
    let reason = error["details"]
        .as_array()
        .and_then(|d| d.iter().find_map(|x| x["errorCode"].as_str()))
        .or_else(|| error["status"].as_str())
        .or_else(|| body["reason"].as_str())
        .unwrap_or_default()
        .to_string();
    let message = crate::webpush::cut(error["message"].as_str().unwrap_or_default(), 200);
    Answer {
        status,
        wait,
        reason,
        message,
    }
}

impl Answer {
    fn said(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!(" {}", self.reason),
            (false, false) => format!(" {} ({})", self.reason, self.message),
        }
    }
}

impl MobileAdapter {
    pub fn new(store: SharedStore, settings: MobileSettings) -> MobileAdapter {
        let fcm = settings.fcm.clone().map(|fcm| {
            let policy = settings
                .outbound
                .trusting(&fcm.base_url)
                .trusting(&fcm.credentials.token_uri);
            Fcm {
                client: policy.client(settings.timeout),
                settings: fcm,
                token: tokio::sync::Mutex::new(None),
            }
        });
        let apns = settings.apns.clone().map(|apns| {
            let mut builder = settings
                .outbound
                .trusting(&apns.base_url)
                .builder(settings.timeout);
            // APNs speaks HTTP/2 only: negotiated by ALPN over TLS, assumed
            // on a plain-text base URL (h2c, local stand-ins).
            if apns.base_url.scheme() == "http" {
                builder = builder.http2_prior_knowledge();
            }
            Apns {
                client: builder
                    .build()
                    .expect("the HTTP client's settings are valid"),
                settings: apns,
                jwt: Mutex::new(None),
            }
        });
        MobileAdapter {
            store,
            settings,
            fcm,
            apns,
        }
    }

    /// Removes a device the push service called dead.
    async fn remove(&self, user: &UserId, device: &MobileDevice, said: String) -> Outcome {
        match self.store.delete_mobile_device(user, &device.id).await {
            Ok(_) => {
                tracing::info!(%user, device = %device.id, platform = %device.platform, said, "device token invalid: removed");
                Outcome::Gone
            }
            Err(e) => Outcome::Retry(
                format!("{said} (device gone) but removing it failed: {e}"),
                None,
            ),
        }
    }

    async fn deliver(&self, user: &UserId, device: &MobileDevice, alert: &Alert) -> Outcome {
        let outcome = match device.platform {
            MobilePlatform::Fcm => match &self.fcm {
                Some(fcm) => self.to_fcm(fcm, user, device, alert).await,
                None => Outcome::Failed(format!(
                    "FCM is not configured; set {}",
                    MobileSettings::setting_of(MobilePlatform::Fcm)
                )),
            },
            MobilePlatform::Apns => match &self.apns {
                Some(apns) => self.to_apns(apns, user, device, alert).await,
                None => Outcome::Failed(format!(
                    "APNs is not configured; set {}",
                    MobileSettings::setting_of(MobilePlatform::Apns)
                )),
            },
        };
        let status = match &outcome {
            Outcome::Delivered => "sent",
            Outcome::Gone => "gone",
            Outcome::Failed(_) => "failed",
            Outcome::Retry(..) => "retry",
        };
        metrics::counter!("belfry_mobile_push_requests_total",
            "platform" => device.platform.as_str(), "outcome" => status)
        .increment(1);
        outcome
    }

    async fn to_fcm(
        &self,
        fcm: &Fcm,
        user: &UserId,
        device: &MobileDevice,
        alert: &Alert,
    ) -> Outcome {
        let url = match fcm.settings.base_url.join(&format!(
            "v1/projects/{}/messages:send",
            fcm.settings.credentials.project_id
        )) {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(format!("the FCM URL is invalid: {e}")),
        };
        let body = alert.fcm_body(&device.token);
        for attempt in 0..2 {
            let token = match fcm.access_token(attempt > 0).await {
                Ok(t) => t,
                Err(e) => return e,
            };
            let response = fcm
                .client
                .post(url.clone())
                .bearer_auth(token.expose_secret())
                .json(&body)
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => return unanswered("FCM", &e),
            };
            let a = answer(response).await;
            let said = format!("FCM answered {}{}", a.status, a.said());
            match a.status {
                s if s.is_success() => return Outcome::Delivered,
                StatusCode::UNAUTHORIZED if attempt == 0 => continue,
                _ if a.reason == "UNREGISTERED"
                    || a.reason == "SENDER_ID_MISMATCH"
                    || (a.reason == "INVALID_ARGUMENT"
                        && a.message
                            .to_ascii_lowercase()
                            .contains("registration token")) =>
                {
                    return self.remove(user, device, said).await;
                }
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    return Outcome::Retry(said, a.wait);
                }
                _ => return Outcome::Failed(said),
            }
        }
        Outcome::Failed("FCM refused the access token twice (401)".into())
    }

    async fn to_apns(
        &self,
        apns: &Apns,
        user: &UserId,
        device: &MobileDevice,
        alert: &Alert,
    ) -> Outcome {
        let url = match apns
            .settings
            .base_url
            .join(&format!("3/device/{}", device.token))
        {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(format!("the APNs URL is invalid: {e}")),
        };
        let body = alert.apns_body();
        for attempt in 0..2 {
            let jwt = match apns.provider_token(attempt > 0) {
                Ok(j) => j,
                Err(e) => {
                    return Outcome::Retry(format!("signing the APNs token failed: {e}"), None);
                }
            };
            let response = apns
                .client
                .post(url.clone())
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", &device.app_id)
                .header("apns-push-type", "alert")
                .header("apns-priority", if alert.urgent { "10" } else { "5" })
                .header("apns-expiration", alert.expires.to_string())
                .header("apns-collapse-id", collapse_id(&alert.collapse))
                .json(&body)
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                // Without the URL: its path holds the device token.
                Err(e) => return unanswered("APNs", &e.without_url()),
            };
            let a = answer(response).await;
            let said = format!("APNs answered {}{}", a.status, a.said());
            match a.status {
                s if s.is_success() => return Outcome::Delivered,
                StatusCode::FORBIDDEN if a.reason == "ExpiredProviderToken" && attempt == 0 => {
                    continue;
                }
                StatusCode::GONE => return self.remove(user, device, said).await,
                StatusCode::BAD_REQUEST
                    if a.reason == "BadDeviceToken" || a.reason == "DeviceTokenNotForTopic" =>
                {
                    return self.remove(user, device, said).await;
                }
                s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    return Outcome::Retry(said, a.wait);
                }
                _ => return Outcome::Failed(said),
            }
        }
        Outcome::Failed(
            "APNs refused a freshly signed provider token (ExpiredProviderToken)".into(),
        )
    }

    /// One alert to every device of `user` but those in `done` (they took
    /// it in an earlier attempt); a temporary failure names the devices
    /// that took it now.
    async fn to_all(&self, user: &UserId, alert: &Alert, done: &[String]) -> Result<(), SendError> {
        let devices = match self.store.mobile_devices(user).await {
            Ok(d) => d,
            Err(belfry_store::StoreError::NotFound) => {
                return Err(SendError::skipped("the user no longer exists"));
            }
            Err(e) => {
                return Err(SendError::temporary(format!(
                    "reading the mobile devices failed: {e}"
                )));
            }
        };
        let pending = match pending(
            &devices,
            done,
            |t| &t.id,
            "the user has no mobile device (any more)",
        ) {
            Ok(p) => p,
            Err(over) => return over,
        };
        let outcomes =
            futures::future::join_all(pending.iter().map(|t| self.deliver(user, t, alert))).await;
        combine_targets(
            &format!("user:{user}"),
            &pending,
            |t| &t.id,
            outcomes,
            "the token is invalid",
        )
    }
}

impl Fcm {
    /// The cached access token, or a new one (`fresh`: after a 401).
    async fn access_token(&self, fresh: bool) -> Result<SecretString, Outcome> {
        let mut cached = self.token.lock().await;
        if !fresh
            && let Some(t) = cached.as_ref()
            && t.until > Instant::now()
        {
            return Ok(t.token.clone());
        }
        let credentials = &self.settings.credentials;
        let assertion = credentials
            .assertion(unix_now())
            .map_err(|e| Outcome::Retry(format!("signing the FCM assertion failed: {e}"), None))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let response = self
            .client
            .post(credentials.token_uri.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| unanswered("the FCM token endpoint", &e))?;
        let status = response.status();
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: SecretString,
            expires_in: Option<u64>,
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let said = format!(
                "the FCM token endpoint answered {status}: {}",
                crate::webpush::cut(text.trim(), 200)
            );
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    Outcome::Retry(said, None)
                } else {
                    Outcome::Failed(said)
                },
            );
        }
        let granted: Granted = response.json().await.map_err(|e| {
            Outcome::Retry(
                format!("the FCM token endpoint's answer is not a token: {e}"),
                None,
            )
        })?;
        let lifetime = Duration::from_secs(granted.expires_in.unwrap_or(3600));
        *cached = Some(AccessToken {
            token: granted.access_token.clone(),
            until: Instant::now() + lifetime.saturating_sub(OAUTH_MARGIN),
        });
        Ok(granted.access_token)
    }
}

impl Apns {
    /// The cached provider token, or a new one (`fresh`: after
    /// `ExpiredProviderToken`).
    fn provider_token(&self, fresh: bool) -> Result<String, String> {
        let mut cached = self.jwt.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh
            && let Some((jwt, at)) = cached.as_ref()
            && at.elapsed() < APNS_JWT_LIFETIME
        {
            return Ok(jwt.clone());
        }
        let jwt = self.settings.credentials.sign(unix_now())?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }
}

#[async_trait]
impl ChannelAdapter for MobileAdapter {
    fn channel(&self) -> Channel {
        Channel::MobilePush
    }

    fn skip_reason(&self, message: &Message) -> Option<String> {
        match message.recipient {
            Recipient::User(_) => None,
            Recipient::Contact(_) => Some("an external contact has no mobile devices".to_string()),
            Recipient::Group(_) => Some("a group has no mobile devices".to_string()),
        }
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let Recipient::User(user) = &message.recipient else {
            return Err(SendError::skipped("only users have mobile devices"));
        };
        let alert = Alert::of(&message.notification_id, &message.content, &self.settings);
        self.to_all(user, &alert, &message.done).await
    }

    /// The rate limit's summary ("3 more notifications"), as one push to
    /// each of the user's devices.
    async fn send_digest(&self, digest: &crate::email::Digest) -> Result<(), SendError> {
        let (id, content) = crate::webpush::summary_content(digest)?;
        let alert = Alert::of(&id, &content, &self.settings);
        self.to_all(&digest.user, &alert, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_ids_fit() {
        assert_eq!(collapse_id("ticket:1"), "ticket:1");
        let long = "x".repeat(100);
        assert!(collapse_id(&long).len() <= MAX_COLLAPSE_ID);
        assert_eq!(collapse_id(&long), collapse_id(&long));
        let unicode = collapse_id("ticket:Übergabe\n1");
        assert!(unicode.is_ascii() && unicode.len() <= MAX_COLLAPSE_ID);
        assert!(reqwest::header::HeaderValue::from_str(&unicode).is_ok());
    }

    #[test]
    fn credentials_are_checked_and_redacted() {
        let bad = SecretString::from(r#"{"type":"authorized_user"}"#);
        assert!(
            FcmCredentials::from_json(&bad)
                .unwrap_err()
                .contains("authorized_user")
        );
        let no_key = SecretString::from(
            r#"{"type":"service_account","project_id":"p","client_email":"a@p.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token"}"#,
        );
        assert!(
            FcmCredentials::from_json(&no_key)
                .unwrap_err()
                .contains("private_key")
        );
        let junk = SecretString::from(
            r#"{"type":"service_account","project_id":"p","client_email":"a@p","token_uri":"https://o/t","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
        );
        let e = FcmCredentials::from_json(&junk).unwrap_err();
        assert!(!e.contains("AAAA"), "{e}");
        assert!(ApnsCredentials::from_p8(&SecretString::from("x"), "ABC", "DEF1234567").is_err());
        // A real P-256 key in a .p8 (PKCS#8) signs; Debug shows no key.
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let pem = pkcs8::der::pem::encode_string(
            "PRIVATE KEY",
            pkcs8::der::pem::LineEnding::LF,
            der.as_ref(),
        )
        .unwrap();
        let apns =
            ApnsCredentials::from_p8(&SecretString::from(pem.clone()), "ABCDE12345", "TEAM123456")
                .unwrap();
        let shown = format!("{apns:?}");
        assert!(
            shown.contains("ABCDE12345") && !shown.contains(&pem[30..60]),
            "{shown}"
        );
        assert!(ApnsCredentials::from_p8(&SecretString::from(pem), "abc", "TEAM123456").is_err());
    }
}
