//! Belfry's domain: the model (users, groups, notifications, audiences, inbox
//! queries) and the pure decisions on it. Nothing in this crate performs I/O;
//! the store, the server and the binary build on it.
#![forbid(unsafe_code)]

pub mod action;
pub mod category;
pub mod ids;
pub mod inbox;
pub mod notification;
pub mod preferences;
pub mod rule;
pub mod starter;
pub mod template;
pub mod texts;
pub mod time;
pub mod user;
pub mod validation;

pub use category::{CategoryDef, CategoryDefaults, CategoryRequest, EmailMode};
pub use ids::{Category, EmailAddress, EntityRef, GroupId, UserId};
pub use inbox::{Counts, Cursor, Filter, InboxItemMeta, InboxQuery};
pub use notification::{
    Action, ActionKind, ActionStyle, Audience, Channel, Content, NewNotification, SendRequest,
};
pub use time::{Clock, ManualClock, Millis, SystemClock};
pub use user::{
    Locale, MAX_ACCESS_TOKEN_TTL_DAYS, MAX_USER_TOKEN_TTL_SECS, Patch, TimeZoneName, User,
    UserPatch, UserRequest,
};
pub use validation::{FieldError, ValidationErrors};
