//! Belfry's delivery engine: workers that run due jobs from the store's
//! queue (scheduled sends, deliveries, broadcast expansion) with leases,
//! retries and back-off, and one adapter per channel behind a small trait.
#![forbid(unsafe_code)]

pub mod channel;
pub mod email;
pub mod engine;
pub mod mailer;

pub use channel::{ChannelAdapter, Message, SendError};
pub use email::{Digest, DigestItem, DigestKind, EmailAdapter, EmailSettings};
pub use engine::{Engine, EngineConfig, RecipientLimit};
pub use mailer::{MailboxMailer, Mailer, SmtpMailer};
