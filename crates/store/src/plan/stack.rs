//! Stacking: notifications with the same `stack_key` collapse into one
//! inbox entry per user, and cancelling one of them shrinks that entry.
//!
//! - Growing (written into both backends' SQL by [`grow_stack_count!`]): a
//!   new member moves the user's entry to the top with the new content;
//!   its count goes up by one while the entry is unread and not archived,
//!   and starts again at 1 otherwise (the user has dealt with the earlier
//!   ones).
//! - Members: every stacked inbox row is recorded in `stack_members`
//!   (uid, stack key, seq, nid); an entry with count `c` stands for the
//!   user's `c` newest members.
//! - Cancelling ([`on_cancel`]): an entry that counts the cancelled
//!   notification among its members goes down by one and shows the newest
//!   member that remains; an entry whose only member it was is removed.
//!   Entries that do not count it (it was read and stacked over since) do
//!   not change.

use super::stored::StoredAudience;
use crate::{NotificationStatus, Result, StoreEvent};
use belfry_core::UserId;

/// The columns of a notification that cancelling it needs: nid, seq,
/// status, audience, stack key.
pub(crate) type CancelRow = (i64, Option<i64>, String, String, Option<String>);

/// Whether a notification in `status` is still to be cancelled (a second
/// cancellation changes nothing).
pub(crate) fn needs_cancelling(status: &str) -> Result<bool> {
    Ok(NotificationStatus::parse(status)? != NotificationStatus::Cancelled)
}

/// The event of a cancellation: the users whose inbox changed and, when its
/// broadcast rows were removed, the broadcast's targets (from the stored
/// audience).
pub(crate) fn removed(
    id: &str,
    users: Vec<UserId>,
    broadcast_removed: bool,
    audience: &str,
) -> Result<StoreEvent> {
    let broadcast = if broadcast_removed {
        StoredAudience::decode(audience)?.broadcast()
    } else {
        None
    };
    Ok(StoreEvent::Removed {
        id: id.to_string(),
        users,
        broadcast,
    })
}

/// The SQL expression of an entry's new count when a member joins it
/// (in an `UPDATE inbox … WHERE uid = … AND stack_key = …`).
macro_rules! grow_stack_count {
    () => {
        "CASE WHEN read_at IS NULL AND archived_at IS NULL THEN stack_count + 1 ELSE 1 END"
    };
}
pub(crate) use grow_stack_count;

/// An inbox entry that may show a cancelled notification, as looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub uid: i64,
    pub user: UserId,
    /// The entry's seq (its key with `uid`).
    pub seq: i64,
    /// The notification it shows.
    pub nid: i64,
    pub count: i64,
    /// The user's members of the stack, newest first: (seq, nid). Empty
    /// for an entry that is no stack (or was stacked before members were
    /// recorded).
    pub members: Vec<(i64, i64)>,
}

/// What cancelling does to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Keep,
    Remove,
    /// The entry now counts `count` members; `show`: the member (seq, nid)
    /// it shows from now on, when it showed the cancelled one.
    Shrink {
        count: i64,
        show: Option<(i64, i64)>,
    },
}

/// What cancelling notification `nid` does to `entry`.
pub(crate) fn on_cancel(nid: i64, entry: &Entry) -> Change {
    let counted = entry.members.len().min(entry.count.max(0) as usize);
    let members = &entry.members[..counted];
    let member = members.iter().any(|m| m.1 == nid);
    let shows_it = entry.nid == nid;
    if !member && !shows_it {
        return Change::Keep;
    }
    let remaining = members.iter().find(|m| m.1 != nid).copied();
    match remaining {
        Some(newest) if entry.count > 1 => Change::Shrink {
            count: entry.count - 1,
            show: shows_it.then_some(newest),
        },
        _ if shows_it || entry.count <= 1 => Change::Remove,
        // Counted but its members are not all recorded: only the count moves.
        _ => Change::Shrink {
            count: entry.count - 1,
            show: None,
        },
    }
}

/// A shrunk entry, to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shrink {
    pub uid: i64,
    pub seq: i64,
    pub count: i64,
    pub show: Option<(i64, i64)>,
}

/// Every change cancelling one notification makes to inboxes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cancellation {
    /// Entries to delete: (uid, seq).
    pub remove: Vec<(i64, i64)>,
    pub shrink: Vec<Shrink>,
    /// Users whose inbox changed (their streams are told).
    pub users: Vec<UserId>,
}

/// Plans cancelling `nid` for the looked-up entries.
pub(crate) fn cancel(nid: i64, entries: Vec<Entry>) -> Cancellation {
    let mut out = Cancellation::default();
    for entry in entries {
        match on_cancel(nid, &entry) {
            Change::Keep => continue,
            Change::Remove => out.remove.push((entry.uid, entry.seq)),
            Change::Shrink { count, show } => out.shrink.push(Shrink {
                uid: entry.uid,
                seq: entry.seq,
                count,
                show,
            }),
        }
        out.users.push(entry.user);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(nid: i64, count: i64, members: &[i64]) -> Entry {
        Entry {
            uid: 1,
            user: UserId::parse("u1").unwrap(),
            seq: nid * 10,
            nid,
            count,
            // Member n has seq 10 n; newest first.
            members: members.iter().rev().map(|n| (n * 10, *n)).collect(),
        }
    }

    #[test]
    fn cancelling_the_newest_shows_the_one_before() {
        let e = entry(3, 3, &[1, 2, 3]);
        assert_eq!(
            on_cancel(3, &e),
            Change::Shrink {
                count: 2,
                show: Some((20, 2))
            }
        );
    }

    #[test]
    fn cancelling_an_older_one_only_counts_down() {
        let e = entry(3, 3, &[1, 2, 3]);
        assert_eq!(
            on_cancel(1, &e),
            Change::Shrink {
                count: 2,
                show: None
            }
        );
    }

    #[test]
    fn cancelling_the_only_member_removes_the_entry() {
        assert_eq!(on_cancel(1, &entry(1, 1, &[1])), Change::Remove);
        // A plain entry (no stack): removed.
        assert_eq!(on_cancel(1, &entry(1, 1, &[])), Change::Remove);
    }

    #[test]
    fn members_before_a_reset_do_not_count() {
        // 1 and 2 were read; 3 started the count again.
        let e = entry(3, 1, &[1, 2, 3]);
        assert_eq!(on_cancel(2, &e), Change::Keep);
        assert_eq!(on_cancel(3, &e), Change::Remove);
    }

    #[test]
    fn a_plan_names_the_users_it_touched() {
        let mut other = entry(3, 2, &[2, 3]);
        other.uid = 2;
        other.user = UserId::parse("u2").unwrap();
        let plan = cancel(1, vec![entry(1, 1, &[1]), other]);
        assert_eq!(plan.remove, vec![(1, 10)]);
        assert!(plan.shrink.is_empty());
        assert_eq!(plan.users, vec![UserId::parse("u1").unwrap()]);
    }

    proptest! {
        /// Cancelling members one by one, in any order, counts the entry
        /// down to its removal, and it always shows its newest remaining member.
        #[test]
        fn cancelling_every_member_empties_the_stack(
            n in 1usize..7,
            order in proptest::sample::subsequence((1..=6i64).collect::<Vec<_>>(), 6)
                .prop_shuffle(),
        ) {
            let mut members: Vec<i64> = (1..=n as i64).collect();
            let mut e = entry(n as i64, n as i64, &members);
            for nid in order.into_iter().filter(|m| *m <= n as i64) {
                match on_cancel(nid, &e) {
                    Change::Keep => prop_assert!(false, "member {} kept", nid),
                    Change::Remove => {
                        prop_assert_eq!(members.len(), 1);
                        members.clear();
                        break;
                    }
                    Change::Shrink { count, show } => {
                        members.retain(|m| *m != nid);
                        prop_assert_eq!(count as usize, members.len());
                        let newest = *members.last().unwrap();
                        if let Some((seq, shown)) = show {
                            prop_assert_eq!(shown, newest);
                            e.seq = seq;
                            e.nid = shown;
                        }
                        prop_assert_eq!(e.nid, newest);
                        e.count = count;
                        e.members.retain(|m| m.1 != nid);
                    }
                }
            }
        }
    }
}
