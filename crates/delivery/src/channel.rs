//! The contract between the engine and a channel: deliver one message to
//! one recipient, and say whether a failure is worth retrying. Web push,
//! mobile push and chat adapters implement the same trait.

use async_trait::async_trait;
use belfry_core::{Channel, Content};
use belfry_store::{EmailContext, Recipient};

/// One notification for one recipient on one channel.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique per delivery job; adapters use it to make a retry
    /// recognisable (e.g. the email's Message-ID).
    pub delivery_id: String,
    pub recipient: Recipient,
    pub content: Content,
    pub context: EmailContext,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// A permanent failure (refused address, bad request) is not retried.
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn temporary(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
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
