//! Reading an inbox: which broadcasts reach a user (membership windows),
//! how the direct and the broadcast part merge into a page or a replay,
//! what counts as read and seen, and the counts. The backends run the
//! range scans these windows describe.

use belfry_core::inbox::merge_newest_first;
use belfry_core::{Counts, Cursor, InboxItemMeta, InboxQuery, Millis};
use std::collections::BTreeSet;

/// The columns of `users` that reading an inbox needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InboxUser {
    pub uid: i64,
    /// Broadcasts to everyone with a higher seq reach the user.
    pub created_seq: i64,
    /// Broadcasts up to this seq are read ("mark all read").
    pub read_wm: i64,
    /// Everything up to this seq was seen (the drawer was opened).
    pub seen_wm: i64,
}

/// The broadcasts of one target that reach a user: `after < seq <= until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The target: a group, or 0 for everyone.
    pub gid: i64,
    pub after: i64,
    pub until: i64,
}

impl Window {
    /// The part of the window above `floor`; None when nothing is left.
    pub fn above(self, floor: i64) -> Option<Window> {
        let after = self.after.max(floor);
        (after < self.until).then_some(Window { after, ..self })
    }
}

/// The windows of a user: everyone's broadcasts after the user was
/// created, and each group's while the user was a member. `memberships`:
/// `(gid, joined_seq, left_seq)`, left_seq None while still a member.
pub(crate) fn windows(
    u: &InboxUser,
    memberships: impl IntoIterator<Item = (i64, i64, Option<i64>)>,
) -> Vec<Window> {
    let mut out = vec![Window {
        gid: 0,
        after: u.created_seq,
        until: i64::MAX,
    }];
    out.extend(
        memberships
            .into_iter()
            .map(|(gid, joined, left)| Window {
                gid,
                after: joined,
                until: left.unwrap_or(i64::MAX),
            })
            .filter(|w| w.after < w.until),
    );
    out
}

/// Narrows which broadcasts count as unread when marking read (read-all
/// of one category, or reading everything about one entity).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BroadcastFilter<'a> {
    pub category: Option<&'a str>,
    pub entity: Option<(&'a str, &'a str)>,
}

/// What one page of a listing scans: entries below `before`, of
/// `category` if given, `fetch` of each part (one more than the page holds,
/// to know whether there is a next page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageScan<'q> {
    pub before: i64,
    pub category: Option<&'q str>,
    pub fetch: i64,
}

impl<'q> PageScan<'q> {
    pub fn of(q: &'q InboxQuery) -> PageScan<'q> {
        PageScan {
            before: q.cursor.map(|c| c.before_seq).unwrap_or(i64::MAX),
            category: q.category.as_ref().map(|c| c.as_str()),
            fetch: (q.limit + 1) as i64,
        }
    }
}

/// An inbox entry before its content is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: i64,
    pub nid: i64,
    pub read: bool,
    pub archived: bool,
    pub stack_count: i64,
    /// A sticky notification the user closed (I5).
    pub dismissed: bool,
}

impl From<(i64, i64, bool, bool, i64)> for Entry {
    fn from((seq, nid, read, archived, stack_count): (i64, i64, bool, bool, i64)) -> Entry {
        Entry {
            seq,
            nid,
            read,
            archived,
            stack_count,
            dismissed: false,
        }
    }
}

/// The broadcast part of a listing, gathered window by window: a
/// broadcast to several of the user's groups is listed once.
#[derive(Debug, Default)]
pub(crate) struct Broadcasts {
    seen: BTreeSet<i64>,
    entries: Vec<Entry>,
}

impl Broadcasts {
    pub fn add(&mut self, e: Entry) {
        if self.seen.insert(e.seq) {
            self.entries.push(e);
        }
    }

    /// At most `limit` entries, newest first, or oldest first.
    fn take(mut self, limit: usize, newest_first: bool) -> Vec<Entry> {
        if newest_first {
            self.entries
                .sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
        } else {
            self.entries.sort_unstable_by_key(|e| e.seq);
        }
        self.entries.truncate(limit);
        self.entries
    }
}

/// One page of a newest-first listing: `direct` (newest first, up to
/// limit + 1) and the broadcasts merged; the cursor when there is more.
pub(crate) fn page(
    direct: Vec<Entry>,
    broadcasts: Broadcasts,
    limit: usize,
) -> (Vec<Entry>, Option<Cursor>) {
    let broadcast = broadcasts.take(limit + 1, true);
    merge_newest_first(direct, broadcast, limit, |e| e.seq)
}

/// What a replay sends: `direct` (oldest first) and the broadcasts merged,
/// oldest first, at most `limit`.
pub(crate) fn replay(direct: Vec<Entry>, broadcasts: Broadcasts, limit: usize) -> Vec<Entry> {
    let broadcast = broadcasts.take(limit, false);
    // Oldest first: merge on the negated seq.
    merge_newest_first(direct, broadcast, limit, |e| -e.seq).0
}

/// The per-user state clients see in front of an entry's content: a read
/// item is also seen, and so is everything up to the seen watermark.
pub(crate) fn item(
    u: &InboxUser,
    e: &Entry,
    id: String,
    at: Millis,
    answered: Option<String>,
) -> InboxItemMeta {
    InboxItemMeta {
        answered,
        id,
        seq: e.seq,
        created_at: at,
        read: e.read,
        seen: e.read || e.seq <= u.seen_wm,
        archived: e.archived,
        stack_count: e.stack_count,
        dismissed: e.dismissed,
    }
}

/// The counts as of seq `upto`: unread direct entries (and those of them
/// above the seen watermark), counted in the snapshot that read `upto`,
/// plus the unread broadcasts up to it (read in a later snapshot, which may
/// hold newer ones: they are not counted).
pub(crate) fn counts(
    u: &InboxUser,
    direct_unread: i64,
    direct_unseen: i64,
    broadcast_unread: &BTreeSet<i64>,
    upto: i64,
) -> Counts {
    let unread = broadcast_unread.range(..=upto).count() as i64;
    // The seen watermark may be above `upto` (the user saw everything).
    let unseen = if u.seen_wm < upto {
        broadcast_unread.range(u.seen_wm + 1..=upto).count() as i64
    } else {
        0
    };
    Counts {
        unread: direct_unread + unread,
        unseen: direct_unseen + unseen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> InboxUser {
        InboxUser {
            uid: 1,
            created_seq: 10,
            read_wm: 15,
            seen_wm: 20,
        }
    }

    fn e(seq: i64) -> Entry {
        Entry::from((seq, seq, false, false, 1))
    }

    #[test]
    fn windows_of_everyone_and_memberships() {
        let w = windows(
            &user(),
            [(3, 12, None), (4, 30, Some(30)), (5, 5, Some(18))],
        );
        assert_eq!(
            w,
            vec![
                Window {
                    gid: 0,
                    after: 10,
                    until: i64::MAX
                },
                Window {
                    gid: 3,
                    after: 12,
                    until: i64::MAX
                },
                // Joined and left at once: nothing (gid 4 dropped).
                Window {
                    gid: 5,
                    after: 5,
                    until: 18
                },
            ]
        );
        // Above the read watermark, the old membership leaves little.
        assert_eq!(w[2].above(15).map(|w| w.after), Some(15));
        assert_eq!(w[2].above(18), None);
    }

    #[test]
    fn broadcasts_are_listed_once_and_merged_in_order() {
        let mut b = Broadcasts::default();
        for seq in [7, 3, 7, 9] {
            b.add(e(seq));
        }
        let (entries, cursor) = page(vec![e(8), e(2)], b, 3);
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![9, 8, 7]);
        assert_eq!(cursor, Some(Cursor { before_seq: 7 }));

        let mut b = Broadcasts::default();
        for seq in [7, 3, 3] {
            b.add(e(seq));
        }
        let seqs: Vec<i64> = replay(vec![e(2), e(8)], b, 10)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![2, 3, 7, 8]);
    }

    #[test]
    fn seen_and_counts() {
        let u = user();
        assert!(item(&u, &e(20), "a".into(), Millis(0), None).seen);
        assert!(!item(&u, &e(21), "a".into(), Millis(0), None).seen);
        let read = Entry {
            read: true,
            ..e(30)
        };
        assert!(item(&u, &read, "a".into(), Millis(0), None).seen);
        let c = counts(&u, 2, 1, &BTreeSet::from([19, 21, 22]), 22);
        assert_eq!((c.unread, c.unseen), (5, 3));
        // A broadcast above the seq the direct part was counted at is not counted.
        let c = counts(&u, 2, 1, &BTreeSet::from([19, 21, 22]), 21);
        assert_eq!((c.unread, c.unseen), (4, 2));
        // Everything up to it seen.
        let c = counts(&u, 2, 1, &BTreeSet::from([19, 21, 22]), u.seen_wm);
        assert_eq!(c.unseen, 1);
    }
}
