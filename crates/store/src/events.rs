//! What a commit changed, as the real-time layer needs to know it. Events
//! are produced inside the writer's transaction and published only after it
//! committed, in commit order; the store stays the source of truth, so a
//! consumer that misses events recovers by reading the store.

use crate::ItemOp;
use belfry_core::{Category, EntityRef, GroupId, Millis, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A committed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StoreEvent {
    /// A notification appeared in inboxes.
    Published(Arc<Published>),
    /// A user changed the state of their inbox.
    State { user: UserId, change: StateChange },
    /// A user's current groups (after a change).
    Groups { user: UserId, groups: Vec<GroupId> },
    /// A user and their inbox are gone.
    UserDeleted { user: UserId },
    /// The user's tokens issued at or before `after` are revoked: every
    /// node refuses them from now on and ends the streams they opened.
    TokensRevoked {
        user: UserId,
        #[serde(with = "millis")]
        after: Millis,
    },
    /// A `once` action of notification `id` was answered: every recipient
    /// (these users and the broadcast's audience) sees `answered`.
    Answered {
        id: String,
        answered: String,
        users: Vec<UserId>,
        broadcast: Option<BroadcastTargets>,
    },
    /// The producer webhooks changed (stored, removed, disabled): every
    /// node reloads its snapshot of who subscribes to what.
    WebhooksChanged,
    /// A notification was cancelled and removed from these inboxes.
    Removed {
        id: String,
        users: Vec<UserId>,
        broadcast: Option<BroadcastTargets>,
    },
}

/// A notification that became visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub seq: i64,
    pub id: String,
    #[serde(with = "millis")]
    pub created_at: Millis,
    /// The content object recipients see.
    pub content_json: String,
    /// Direct recipients and the stack count of their entry after this one.
    pub direct: Vec<(UserId, i64)>,
    pub broadcast: Option<BroadcastTargets>,
    /// Never delivered to this user.
    pub actor: Option<UserId>,
}

/// The broadcast part of an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastTargets {
    pub all: bool,
    pub groups: Vec<GroupId>,
}

/// What a user did to their inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StateChange {
    /// One state change of the listed items.
    Items {
        op: ItemOp,
        ids: Vec<String>,
    },
    ReadAll {
        category: Option<Category>,
    },
    SeenAll,
    ReadEntity {
        entity: EntityRef,
    },
}

mod millis {
    use belfry_core::Millis;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(m.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        i64::deserialize(d).map(Millis)
    }
}
