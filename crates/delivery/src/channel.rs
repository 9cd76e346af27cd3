//! The contract between the engine and a channel: deliver one message to
//! one recipient, and say whether a failure is worth retrying (and not
//! before when). Email and web push implement it; mobile push and chat
//! adapters implement the same trait. The message is the same for every
//! channel: what each channel needs beyond the content and the
//! recipient's profile it reads itself (web push its subscriptions).

use async_trait::async_trait;
use belfry_core::{Channel, Content, Millis};
use belfry_store::{Recipient, RecipientProfile};
use std::time::Duration;

/// One notification for one recipient on one channel.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique per delivery job; adapters use it to make a retry
    /// recognisable (e.g. the email's Message-ID).
    pub delivery_id: String,
    /// The notification's public id.
    pub notification_id: String,
    pub recipient: Recipient,
    /// Who the recipient is: address, name, language, time zone.
    pub profile: RecipientProfile,
    pub content: Content,
    /// When the notification was published.
    pub published_at: Millis,
    /// The recipient's targets that took this message in an earlier
    /// attempt (ids; channels with several targets per recipient skip
    /// them on a retry).
    pub done: Vec<String>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// A permanent failure (refused address, bad request) is not retried.
    pub permanent: bool,
    /// Nothing to deliver to after all (logged as skipped, not failed).
    pub skipped: bool,
    pub message: String,
    /// The receiving service asked not to be tried again before this
    /// long (`Retry-After`); the engine's back-off waits at least this.
    pub retry_after: Option<Duration>,
    /// With a temporary failure: the targets that took the message in
    /// this attempt (ids), so that the retry leaves them out.
    pub delivered: Vec<String>,
}

impl SendError {
    pub fn temporary(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            skipped: false,
            message: message.into(),
            retry_after: None,
            delivered: Vec::new(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::temporary(message)
        }
    }

    /// There was nothing to deliver to (e.g. no push subscription any
    /// more): not retried, logged as skipped.
    pub fn skipped(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            skipped: true,
            ..Self::temporary(message)
        }
    }

    /// The targets (ids) that took the message in this attempt.
    pub fn delivered(mut self, ids: Vec<String>) -> Self {
        self.delivered = ids;
        self
    }

    /// Not before `after` (a temporary failure's `Retry-After`).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

/// A delivery channel.
#[async_trait]
pub trait ChannelAdapter: Send + Sync + 'static {
    fn channel(&self) -> Channel;
    /// Why this message cannot be delivered at all (e.g. no address), so
    /// that it is logged as skipped instead of attempted.
    fn skip_reason(&self, message: &Message) -> Option<String>;
    /// Delivers the message once.
    async fn send(&self, message: &Message) -> Result<(), SendError>;
    /// Delivers a user's daily digest once; only email sends digests.
    async fn send_digest(&self, _digest: &crate::email::Digest) -> Result<(), SendError> {
        Err(SendError::permanent(format!(
            "the {} channel does not send digests",
            self.channel().as_str()
        )))
    }
}
