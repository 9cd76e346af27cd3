//! Where emails go: an SMTP server (lettre, with STARTTLS or TLS and
//! credentials from the URL), or, when none is configured, the development
//! mailbox in the store, so that no email is ever dropped.

use crate::channel::SendError;
use async_trait::async_trait;
use belfry_core::Clock;
use belfry_store::{NewDevMail, SharedStore};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
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
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// "smtp" or "mailbox", for metrics and logs.
    fn name(&self) -> &'static str;
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError>;
}

/// Sends through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    /// From a URL: `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host:465` (TLS).
    pub fn from_url(url: &str, timeout: Duration) -> Result<Self, String> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("invalid SMTP URL: {e}"))?;
        Ok(Self {
            transport: builder.timeout(Some(timeout)).build(),
        })
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
    lettre::Message::builder()
        .from(from)
        .to(Mailbox::new(email.to_name.clone(), to_address))
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
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
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            // 5xx: the server refused for good (unknown mailbox, policy).
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
            // 4xx, timeouts, refused or broken connections: try again later.
            Err(e) => Err(SendError::temporary(format!("SMTP: {e}"))),
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
