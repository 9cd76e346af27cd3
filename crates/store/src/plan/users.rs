//! Users: applying a `UserPatch` to the stored user (one email address per
//! user), the membership changes of a new group list, and the events user
//! changes send to the streams.

use crate::{Constraint, Result, StoreError, StoreEvent};
use belfry_core::{EmailAddress, GroupId, Locale, Millis, TimeZoneName, User, UserId, UserPatch};
use std::collections::HashSet;

/// The user's columns after a patch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserRow {
    pub email: Option<EmailAddress>,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub locale: Option<Locale>,
    pub timezone: Option<TimeZoneName>,
    /// The JSON object, as stored.
    pub data: Option<String>,
    /// The groups to be a member of exactly; None: memberships unchanged.
    pub groups: Option<Vec<GroupId>>,
}

impl UserRow {
    pub fn email(&self) -> Option<&str> {
        self.email.as_ref().map(|e| e.as_str())
    }

    pub fn locale(&self) -> Option<&str> {
        self.locale.as_ref().map(|l| l.as_str())
    }

    pub fn timezone(&self) -> Option<&str> {
        self.timezone.as_ref().map(|t| t.as_str())
    }
}

/// Applies `patch` to the `current` user (None: a new one). `email_owner`
/// is the user who has the patch's new address, if anyone does.
pub(crate) fn apply_patch(
    id: &UserId,
    patch: UserPatch,
    current: Option<&User>,
    email_owner: Option<&UserId>,
) -> Result<UserRow> {
    if let belfry_core::Patch::Value(email) = &patch.email
        && let Some(owner) = email_owner
        && owner != id
    {
        return Err(StoreError::conflict(Constraint::UserEmail {
            email: email.clone(),
            owner: owner.clone(),
        }));
    }
    Ok(UserRow {
        email: patch.email.apply(current.and_then(|u| u.email.clone())),
        name: patch.name.apply(current.and_then(|u| u.name.clone())),
        avatar_url: patch
            .avatar_url
            .apply(current.and_then(|u| u.avatar_url.clone())),
        locale: patch.locale.apply(current.and_then(|u| u.locale.clone())),
        timezone: patch
            .timezone
            .apply(current.and_then(|u| u.timezone.clone())),
        data: patch
            .data
            .apply(current.and_then(|u| u.data.clone()))
            .map(|d| d.to_string()),
        groups: patch.groups,
    })
}

/// The groups (gids) to leave and to join to be a member of exactly `wanted`.
pub(crate) fn membership_changes(
    wanted: &HashSet<i64>,
    current: &HashSet<i64>,
) -> (Vec<i64>, Vec<i64>) {
    let mut leave: Vec<i64> = current.difference(wanted).copied().collect();
    let mut join: Vec<i64> = wanted.difference(current).copied().collect();
    leave.sort_unstable();
    join.sort_unstable();
    (leave, join)
}

/// The event of a user update: the user's groups, when the patch set them.
pub(crate) fn updated(user: &User, groups_set: bool) -> Option<StoreEvent> {
    groups_set.then(|| StoreEvent::Groups {
        user: user.id.clone(),
        groups: user.groups.clone(),
    })
}

/// Revoking a user's tokens at `now` (`DELETE /v1/users/{id}/tokens`, and
/// deleting the user): tokens issued at or before the stored `after` are
/// refused. The rule is strict (`issued_at <= after` is revoked), so a token
/// issued in the revoking millisecond is revoked too, whichever came first;
/// the server issues tokens after a revocation from `after + 1` on (see
/// `Revocations` in the server's auth). The stored `after` is `now`, or one
/// past the stored one if that is not earlier (the backends write
/// `max(now, stored + 1)` in the upsert): a second revocation in the same
/// millisecond also refuses the tokens issued at `after + 1` since the
/// first, and a clock set back cannot bring revoked tokens back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revocation {
    pub user: UserId,
    pub after: Millis,
    /// Stored revocations before this refuse nothing unexpired any more
    /// (tokens live at most `MAX_USER_TOKEN_TTL_SECS`): they are deleted.
    pub forget_before: Millis,
}

pub(crate) fn revoke_tokens(user: &UserId, now: Millis) -> Revocation {
    Revocation {
        user: user.clone(),
        after: now,
        forget_before: Millis(now.0 - belfry_core::MAX_USER_TOKEN_TTL_SECS * 1000),
    }
}

impl Revocation {
    /// The event, with the `after` the store kept (the later one).
    pub fn event(&self, stored_after: Millis) -> StoreEvent {
        StoreEvent::TokensRevoked {
            user: self.user.clone(),
            after: stored_after,
        }
    }
}

/// What deleting a user at `now` does besides removing their rows: their
/// tokens are revoked (a user re-created with the same id must not accept
/// them), and their open streams end. The backend stores the revocation and
/// emits `revocation.event(..)` then [`deleted`], in this order.
pub(crate) fn delete(user: &UserId, now: Millis) -> Revocation {
    revoke_tokens(user, now)
}

/// The event of a deleted user: their open streams end.
pub(crate) fn deleted(user: &UserId) -> StoreEvent {
    StoreEvent::UserDeleted { user: user.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::{Patch, UserRequest};

    fn patch(json: &str) -> UserPatch {
        serde_json::from_str::<UserRequest>(json)
            .unwrap()
            .validate()
            .unwrap()
    }

    fn id(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn existing() -> User {
        User {
            id: id("u1"),
            email: Some(EmailAddress::parse("a@example.com").unwrap()),
            name: Some("Ana".into()),
            avatar_url: None,
            locale: None,
            timezone: None,
            groups: vec![],
            data: Some(serde_json::json!({"k": 1})),
            created_at: Millis(0),
            updated_at: Millis(0),
        }
    }

    #[test]
    fn absent_keeps_null_clears_value_sets() {
        let row = apply_patch(
            &id("u1"),
            patch(r#"{"name": null, "avatar_url": "https://x.test/a.png"}"#),
            Some(&existing()),
            None,
        )
        .unwrap();
        assert_eq!(row.email(), Some("a@example.com"));
        assert_eq!(row.name, None);
        assert_eq!(row.avatar_url.as_deref(), Some("https://x.test/a.png"));
        assert_eq!(row.data.as_deref(), Some(r#"{"k":1}"#));
    }

    #[test]
    fn an_address_belongs_to_one_user() {
        let p = patch(r#"{"email": "a@example.com"}"#);
        assert!(matches!(p.email, Patch::Value(_)));
        match apply_patch(&id("u2"), p.clone(), None, Some(&id("u1"))) {
            Err(StoreError::Conflict {
                constraint: Constraint::UserEmail { owner, .. },
            }) => assert_eq!(owner, id("u1")),
            other => panic!("{other:?}"),
        }
        // Setting one's own address again is fine.
        assert!(apply_patch(&id("u1"), p, Some(&existing()), Some(&id("u1"))).is_ok());
    }

    #[test]
    fn memberships_move_by_difference() {
        let wanted = HashSet::from([1, 2, 3]);
        let current = HashSet::from([3, 4]);
        assert_eq!(membership_changes(&wanted, &current), (vec![4], vec![1, 2]));
    }

    #[test]
    fn events() {
        let u = existing();
        assert!(updated(&u, false).is_none());
        assert!(matches!(updated(&u, true), Some(StoreEvent::Groups { .. })));
        assert_eq!(deleted(&u.id), StoreEvent::UserDeleted { user: id("u1") });
    }

    #[test]
    fn revocations_are_kept_as_long_as_the_longest_token() {
        let now = Millis(1_800_000_000_000);
        let r = revoke_tokens(&id("u1"), now);
        assert_eq!(r.after, now);
        assert_eq!(
            now.0 - r.forget_before.0,
            belfry_core::MAX_USER_TOKEN_TTL_SECS * 1000
        );
        assert_eq!(delete(&id("u1"), now), r);
        assert_eq!(
            r.event(Millis(now.0 + 5)),
            StoreEvent::TokensRevoked {
                user: id("u1"),
                after: Millis(now.0 + 5)
            }
        );
    }
}
