//! Belfry's delivery engine: workers that run due jobs from the store's
//! queue (scheduled sends, deliveries, broadcast expansion) with leases,
//! retries and back-off, and one adapter per channel behind a small trait
//! (email, web push, mobile push, chat), producer webhooks, with the outbound safety rules of requests to URLs
//! that users and producers give.
#![forbid(unsafe_code)]

pub mod access;
pub mod channel;
pub mod chat;
pub mod email;
pub mod engine;
pub mod mailer;
pub mod mobile;
pub mod outbound;
mod p256key;
pub mod signing;
mod targets;
pub mod webhooks;
pub mod webpush;

pub use access::{AccessKey, AccessTokens, Unsubscribe, UnsubscribeTokens};
pub use channel::{ChannelAdapter, Message, SendError};
pub use chat::{ChatAdapter, ChatSettings};
pub use email::{AccessLinks, Digest, DigestItem, DigestKind, EmailAdapter, EmailSettings};
pub use engine::{Engine, EngineConfig, RecipientLimit};
pub use mailer::{MailboxMailer, Mailer, SmtpMailer};
pub use mobile::{
    ApnsCredentials, ApnsSettings, FcmCredentials, FcmSettings, MobileAdapter, MobileSettings,
};
pub use outbound::OutboundPolicy;
pub use webhooks::{WebhookSender, WebhookSettings};
pub use webpush::{VapidKey, WebPushAdapter, WebPushSettings};
