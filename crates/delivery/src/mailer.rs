//! Where emails go: an SMTP server (lettre, with STARTTLS or TLS and
//! credentials from the URL), or, when none is configured, the development
//! mailbox in the store, so that no email is ever dropped.

use crate::channel::SendError;
use async_trait::async_trait;
use belfry_core::Clock;
use belfry_store::{NewDevMail, SharedStore};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};
use std::sync::Arc;
use std::time::Duration;

/// Checks a From mailbox such as `Belfry <belfry@example.com>`.
pub fn check_mailbox(value: &str) -> Result<(), String> {
    value
        .parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("not a mailbox ({e}); write e.g. Belfry <belfry@example.com>"))
}

/// A rendered email, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `<…@…>`; the same for every attempt of one delivery.
    pub message_id: String,
    /// The one-click unsubscribe URL (RFC 8058): sent as `List-Unsubscribe`
    /// with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub list_unsubscribe: Option<String>,
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// "smtp" or "mailbox", for metrics and logs.
    fn name(&self) -> &'static str;
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError>;
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    /// STARTTLS, refusing to go on without it when required.
    StartTls {
        required: bool,
    },
}

/// Where and how to connect, parsed from an `smtp://` URL.
struct Target {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
}

/// Sends through an SMTP server, over a small pool of connections.
///
/// For `smtp://` URLs (plain or STARTTLS) Belfry opens the TCP connections
/// itself with TCP_NODELAY: lettre writes a message's body and its final
/// `.` separately, and with Nagle's algorithm that costs a delayed ACK
/// (about 40 ms) per email. `smtps://` (implicit TLS) uses lettre's own
/// transport.
pub struct SmtpMailer {
    target: Option<Target>,
    fallback: Option<AsyncSmtpTransport<Tokio1Executor>>,
    idle: tokio::sync::Mutex<Vec<AsyncSmtpConnection>>,
    hello: ClientId,
    timeout: Duration,
}

/// Idle connections kept for reuse.
const POOL: usize = 32;

/// Decodes `%XX` escapes of the user name or password. Errors never echo
/// the value: it may be the password.
fn percent_decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad %-escape in the {what}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not UTF-8"))
}

fn parse_target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("smtp://")
        .ok_or("the URL must start with smtp:// or smtps://")?;
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let base = base.trim_end_matches('/');
    let (userinfo, hostport) = match base.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, base),
    };
    let mut security = Security::Plain;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        security = match pair {
            "tls=required" => Security::StartTls { required: true },
            "tls=opportunistic" => Security::StartTls { required: false },
            other => {
                return Err(format!(
                    "unknown URL parameter '{other}' (use tls=required or tls=opportunistic)"
                ));
            }
        };
    }
    let default_port = if security == Security::Plain { 25 } else { 587 };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            // Not echoed: a URL missing its '@host' has the password here.
            p.parse::<u16>()
                .map_err(|_| "the port is not a number from 1 to 65535".to_string())?,
        ),
        _ => (hostport.to_string(), default_port),
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    let credentials = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').ok_or("give user:password before the @")?;
            Some(Credentials::new(
                percent_decode(user, "user name")?,
                percent_decode(pass, "password")?,
            ))
        }
        None => None,
    };
    Ok(Target {
        host,
        port,
        security,
        credentials,
    })
}

/// 5xx answers are final; everything else (4xx, timeouts, broken
/// connections) is worth another attempt later.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::permanent(format!("SMTP: {e}"))
    } else {
        SendError::temporary(format!("SMTP: {e}"))
    }
}

impl SmtpMailer {
    /// From a URL: `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host:465` (TLS).
    /// Must be called inside the Tokio runtime (lettre's pool starts a task).
    /// The URL is a secret (it may hold the password); errors do not repeat it.
    pub fn from_url(url: &SecretString, timeout: Duration) -> Result<Self, String> {
        let url = url.expose_secret();
        let (target, fallback) = if url.starts_with("smtps://") {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(|e| format!("invalid SMTP URL: {e}"))?
                .timeout(Some(timeout))
                .build();
            (None, Some(transport))
        } else {
            let target = parse_target(url).map_err(|e| format!("invalid SMTP URL: {e}"))?;
            (Some(target), None)
        };
        Ok(Self {
            target,
            fallback,
            idle: tokio::sync::Mutex::new(Vec::new()),
            hello: ClientId::default(),
            timeout,
        })
    }

    async fn connect(&self, target: &Target) -> Result<AsyncSmtpConnection, SendError> {
        let address = (target.host.as_str(), target.port);
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| SendError::temporary("SMTP: connecting timed out"))?
            .map_err(|e| SendError::temporary(format!("SMTP: cannot connect: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::temporary(format!("SMTP: {e}")))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
            .await
            .map_err(classify)?;
        if let Security::StartTls { required } = target.security {
            if conn.can_starttls() {
                let tls = TlsParameters::new(target.host.clone()).map_err(classify)?;
                conn.starttls(tls, &self.hello).await.map_err(classify)?;
            } else if required {
                return Err(SendError::temporary(
                    "SMTP: the server does not offer STARTTLS, which the URL requires",
                ));
            }
        }
        if let Some(credentials) = &target.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(classify)?;
        }
        Ok(conn)
    }

    /// Connects, greets, negotiates TLS and logs in as a send would, then
    /// says goodbye: what `belfry check-config` reports.
    pub async fn check(&self) -> Result<(), SendError> {
        match (&self.target, &self.fallback) {
            (Some(target), _) => {
                let mut conn = tokio::time::timeout(self.timeout, self.connect(target))
                    .await
                    .unwrap_or_else(|_| Err(SendError::temporary("SMTP: connecting timed out")))?;
                let _ = conn.quit().await;
                Ok(())
            }
            (None, Some(transport)) => match transport.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SendError::temporary("SMTP: the server did not answer")),
                Err(e) => Err(classify(e)),
            },
            (None, None) => Err(SendError::permanent("no SMTP server is configured")),
        }
    }

    async fn send_pooled(&self, target: &Target, msg: &lettre::Message) -> Result<(), SendError> {
        let envelope = msg.envelope().clone();
        let bytes = msg.formatted();
        // A pooled connection may have been closed by the server meanwhile:
        // on a network error with one, try once more on a new connection.
        let reused = self.idle.lock().await.pop();
        let mut conn = match reused {
            Some(mut c) => match c.send(&envelope, &bytes).await {
                Ok(_) => {
                    self.give_back(c).await;
                    return Ok(());
                }
                Err(e) if e.is_response() => return Err(classify(e)),
                Err(_) => self.connect(target).await?,
            },
            None => self.connect(target).await?,
        };
        conn.send(&envelope, &bytes).await.map_err(classify)?;
        self.give_back(conn).await;
        Ok(())
    }

    async fn give_back(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().await;
        if idle.len() < POOL {
            idle.push(conn);
        }
    }
}

fn message(email: &OutgoingEmail) -> Result<lettre::Message, SendError> {
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| SendError::permanent(format!("invalid From address '{}': {e}", email.from)))?;
    let to_address = email.to.parse().map_err(|e| {
        SendError::permanent(format!("invalid recipient address '{}': {e}", email.to))
    })?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(Mailbox::new(email.to_name.clone(), to_address))
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()));
    if let Some(url) = &email.list_unsubscribe {
        // RFC 8058: an https URL the mail client POSTs
        // `List-Unsubscribe=One-Click` to, with no further step.
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
}

#[async_trait]
impl Mailer for SmtpMailer {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let msg = message(email)?;
        match (&self.target, &self.fallback) {
            (Some(target), _) => tokio::time::timeout(self.timeout, self.send_pooled(target, &msg))
                .await
                .unwrap_or_else(|_| Err(SendError::temporary("SMTP: the conversation timed out"))),
            (None, Some(transport)) => transport.send(msg).await.map(|_| ()).map_err(classify),
            (None, None) => Err(SendError::permanent("no SMTP server is configured")),
        }
    }
}

/// Keeps emails in the store's development mailbox
/// (`GET /v1/dev/mailbox`) instead of sending them.
pub struct MailboxMailer {
    store: SharedStore,
    clock: Arc<dyn Clock>,
}

impl MailboxMailer {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl Mailer for MailboxMailer {
    fn name(&self) -> &'static str {
        "mailbox"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        // The same checks as for SMTP, so that the mailbox never accepts
        // what a real server would have been given malformed.
        message(email)?;
        let to = match &email.to_name {
            Some(name) => format!("{name} <{}>", email.to),
            None => email.to.clone(),
        };
        self.store
            .mailbox_put(
                NewDevMail {
                    to,
                    subject: email.subject.clone(),
                    text: email.text.clone(),
                    html: email.html.clone(),
                    message_id: email.message_id.clone(),
                },
                self.clock.now(),
            )
            .await
            .map(|_| ())
            .map_err(|e| SendError::temporary(format!("the development mailbox failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn smtp_urls() {
        let t = parse_target("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("127.0.0.1", 2525, Security::Plain)
        );
        assert!(t.credentials.is_none());
        let t = parse_target("smtp://bel%40fry:p%3Ass@mail.example.com?tls=required").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("mail.example.com", 587));
        assert_eq!(t.security, Security::StartTls { required: true });
        assert!(t.credentials.is_some());
        let t = parse_target("smtp://[::1]:25").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 25));
        assert!(parse_target("smtp://host?tls=maybe").is_err());
        assert!(parse_target("smtp://:25").is_err());
        assert!(parse_target("smtp://h:bad").is_err());
        let url = |u: &str| SecretString::from(u);
        assert!(
            SmtpMailer::from_url(&url("smtps://u:p@mail.example.com"), Duration::from_secs(1))
                .is_ok()
        );
        assert!(SmtpMailer::from_url(&url("http://x"), Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn errors_never_repeat_the_password() {
        for bad in [
            "smtp://user:s3cr%zzet@mail.example.com",
            "smtp://user:s3cr%ffet@mail.example.com",
            "smtp://user:s3cret",
        ] {
            let e = SmtpMailer::from_url(&SecretString::from(bad), Duration::from_secs(1))
                .err()
                .expect("invalid");
            assert!(!e.contains("s3cr"), "{e}");
        }
    }
}
