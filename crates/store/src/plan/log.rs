//! A notification's delivery log, page by page. The log is three parts, read
//! in this order, each by a keyset range scan of its own index (never an
//! OFFSET, so the ten-thousandth page of a broadcast costs what the first
//! does):
//!
//! 1. the in-app deliveries to direct recipients: the inbox rows
//!    themselves, by `uid` (index `inbox_nid (nid, uid)`);
//! 2. the in-app deliveries of a broadcast: its rows, one per targeted
//!    group, by `gid` (0 is everyone);
//! 3. every logged line (queued, scheduled, each attempt, skipped,
//!    cancelled), by its `id` (index `deliveries_nid (nid, id)`), so in the
//!    order they happened.
//!
//! A cursor names a part and the key of the last row returned; the next
//! page continues after it. Rows appended later (a retry's outcome) land
//! after every cursor already handed out in the same part, so a client
//! paging through a live log neither skips nor repeats a line.
//!
//! The backends only run the reads [`LogPager::next_read`] asks for and hand
//! the rows back; the pager decides where a page ends and what its cursor is.

use super::StoredLine;
use crate::jobs::{DeliveryEvent, DeliveryStatus};
use crate::{Result, StoreError};
use belfry_core::{Channel, Millis};

/// A part of the delivery log, in the order they are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// In-app deliveries to direct recipients (inbox rows, by uid).
    Inbox,
    /// In-app deliveries of a broadcast (broadcast rows, by gid).
    Broadcasts,
    /// Logged lines (by id).
    Logged,
}

impl Part {
    fn letter(self) -> char {
        match self {
            Part::Inbox => 'i',
            Part::Broadcasts => 'b',
            Part::Logged => 'l',
        }
    }

    fn next(self) -> Option<Part> {
        match self {
            Part::Inbox => Some(Part::Broadcasts),
            Part::Broadcasts => Some(Part::Logged),
            Part::Logged => None,
        }
    }
}

/// Where the next page of a delivery log starts: after the row with key
/// `after` of one part. As text: the part's letter and the key, e.g.
/// `l1742` (what `next_cursor` carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCursor {
    part: Part,
    after: i64,
}

impl DeliveryCursor {
    /// The form clients pass back (`^[ibl](0|[1-9][0-9]{0,17})$`).
    pub fn encode(&self) -> String {
        format!("{}{}", self.part.letter(), self.after)
    }

    /// A cursor as [`DeliveryCursor::encode`] writes it.
    pub fn decode(value: &str) -> std::result::Result<DeliveryCursor, String> {
        let bad = || "is not a cursor returned by this API (use next_cursor as given)".to_string();
        let mut chars = value.chars();
        let part = match chars.next() {
            Some('i') => Part::Inbox,
            Some('b') => Part::Broadcasts,
            Some('l') => Part::Logged,
            _ => return Err(bad()),
        };
        let key = chars.as_str();
        let canonical = key == "0" || (!key.starts_with('0') && (1..=18).contains(&key.len()));
        if !canonical || !key.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let after = key.parse::<i64>().map_err(|_| bad())?;
        Ok(DeliveryCursor { part, after })
    }
}

/// Which page of a delivery log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// None: from the start.
    pub cursor: Option<DeliveryCursor>,
    /// Lines on the page, 1 to [`DeliveryQuery::MAX_LIMIT`].
    pub limit: usize,
}

impl DeliveryQuery {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;
}

impl Default for DeliveryQuery {
    fn default() -> Self {
        DeliveryQuery {
            cursor: None,
            limit: DeliveryQuery::DEFAULT_LIMIT,
        }
    }
}

/// One page of a delivery log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryEvent>,
    /// Where the next page starts; None on the last page.
    pub next_cursor: Option<DeliveryCursor>,
}

/// One keyset read a backend runs for the pager: up to `limit` rows of
/// `part` whose key is greater than `after`, in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    pub part: Part,
    /// Exclusive; -1 reads from the first row (every key is >= 0).
    pub after: i64,
    pub limit: usize,
}

/// The rows of one [`Read`].
pub(crate) enum Rows {
    /// `(uid, user id)` of inbox rows.
    Inbox(Vec<(i64, String)>),
    /// `(gid, group id)` of broadcast rows (gid 0: everyone, no group).
    Broadcasts(Vec<(i64, Option<String>)>),
    /// `(id, line)` of logged lines.
    Logged(Vec<(i64, StoredLine)>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Inbox(r) => r.len(),
            Rows::Broadcasts(r) => r.len(),
            Rows::Logged(r) => r.len(),
        }
    }
}

/// Builds one page: asks for reads until it holds one line more than the
/// page (so it knows whether another page follows) or the log ends.
pub(crate) struct LogPager {
    /// The in-app deliveries happened when the notification was published.
    published: Millis,
    limit: usize,
    /// The next read: its part and the key it continues after.
    position: Option<(Part, i64)>,
    items: Vec<(Part, i64, DeliveryEvent)>,
}

impl LogPager {
    pub fn new(query: DeliveryQuery, published: Option<Millis>) -> LogPager {
        let position = match query.cursor {
            Some(c) => (c.part, c.after),
            None => (Part::Inbox, -1),
        };
        LogPager {
            published: published.unwrap_or(Millis(0)),
            limit: query.limit.clamp(1, DeliveryQuery::MAX_LIMIT),
            position: Some(position),
            items: Vec::new(),
        }
    }

    /// The next read to run; None when the page is complete.
    pub fn next_read(&self) -> Option<Read> {
        let want = self.limit + 1 - self.items.len();
        let (part, after) = self.position?;
        (want > 0).then_some(Read {
            part,
            after,
            limit: want,
        })
    }

    /// Takes the rows of `read`.
    pub fn push(&mut self, read: Read, rows: Rows) -> Result<()> {
        let exhausted = rows.len() < read.limit;
        let at = self.published;
        let sent = |recipient: String| DeliveryEvent {
            recipient,
            channel: Channel::InApp,
            status: DeliveryStatus::Sent,
            attempt: 1,
            error: None,
            at,
            reason: None,
            until: None,
        };
        let mut last = read.after;
        match rows {
            Rows::Inbox(rows) => {
                for (uid, id) in rows {
                    self.items
                        .push((Part::Inbox, uid, sent(format!("user:{id}"))));
                    last = uid;
                }
            }
            Rows::Broadcasts(rows) => {
                for (gid, group) in rows {
                    let label = if gid == 0 {
                        "all".to_string()
                    } else {
                        format!("group:{}", group.unwrap_or_default())
                    };
                    self.items.push((Part::Broadcasts, gid, sent(label)));
                    last = gid;
                }
            }
            Rows::Logged(rows) => {
                for (id, (recipient, channel, status, attempt, error, at, reason, until)) in rows {
                    let event = DeliveryEvent {
                        recipient,
                        channel: Channel::parse(&channel).map_err(StoreError::backend)?,
                        status: DeliveryStatus::parse(&status).ok_or_else(|| {
                            StoreError::backend(format!("unknown delivery status {status}"))
                        })?,
                        attempt,
                        error,
                        at: Millis(at),
                        reason: reason
                            .map(|r| {
                                serde_json::from_value(serde_json::Value::String(r))
                                    .map_err(StoreError::backend)
                            })
                            .transpose()?,
                        until: until.map(Millis),
                    };
                    self.items.push((Part::Logged, id, event));
                    last = id;
                }
            }
        }
        self.position = if exhausted {
            read.part.next().map(|p| (p, -1))
        } else {
            Some((read.part, last))
        };
        Ok(())
    }

    /// The page: at most `limit` lines, and a cursor when more follow.
    pub fn finish(mut self) -> DeliveryPage {
        let more = self.items.len() > self.limit;
        self.items.truncate(self.limit);
        let next_cursor = more.then(|| {
            let (part, after, _) = self.items.last().expect("a full page");
            DeliveryCursor {
                part: *part,
                after: *after,
            }
        });
        DeliveryPage {
            items: self.items.into_iter().map(|(_, _, e)| e).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A log held in memory, read the way a backend reads it.
    struct Log {
        inbox: Vec<(i64, String)>,
        broadcasts: Vec<(i64, Option<String>)>,
        logged: Vec<(i64, StoredLine)>,
    }

    impl Log {
        fn read(&self, r: Read) -> Rows {
            match r.part {
                Part::Inbox => Rows::Inbox(
                    self.inbox
                        .iter()
                        .filter(|(k, _)| *k > r.after)
                        .take(r.limit)
                        .cloned()
                        .collect(),
                ),
                Part::Broadcasts => Rows::Broadcasts(
                    self.broadcasts
                        .iter()
                        .filter(|(k, _)| *k > r.after)
                        .take(r.limit)
                        .cloned()
                        .collect(),
                ),
                Part::Logged => Rows::Logged(
                    self.logged
                        .iter()
                        .filter(|(k, _)| *k > r.after)
                        .take(r.limit)
                        .cloned()
                        .collect(),
                ),
            }
        }

        fn page(&self, query: DeliveryQuery) -> (DeliveryPage, usize) {
            let mut pager = LogPager::new(query, Some(Millis(7)));
            let mut reads = 0;
            while let Some(r) = pager.next_read() {
                reads += 1;
                pager.push(r, self.read(r)).unwrap();
            }
            (pager.finish(), reads)
        }

        /// Every line, page by page.
        fn all(&self, limit: usize) -> (Vec<DeliveryEvent>, usize) {
            let mut out = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let (page, _) = self.page(DeliveryQuery { cursor, limit });
                pages += 1;
                assert!(page.items.len() <= limit);
                out.extend(page.items);
                match page.next_cursor {
                    Some(c) => {
                        let text = c.encode();
                        cursor = Some(DeliveryCursor::decode(&text).unwrap());
                    }
                    None => return (out, pages),
                }
            }
        }
    }

    fn line(n: i64) -> (i64, StoredLine) {
        (
            n * 3,
            (
                format!("email:m{n}@example.com"),
                "email".into(),
                "queued".into(),
                0,
                None,
                n,
                None,
                None,
            ),
        )
    }

    fn log(users: usize, groups: usize, lines: usize) -> Log {
        Log {
            inbox: (0..users as i64)
                .map(|u| (u * 2 + 1, format!("u{u}")))
                .collect(),
            broadcasts: (0..groups as i64)
                .map(|g| (g, (g > 0).then(|| format!("g{g}"))))
                .collect(),
            logged: (1..=lines as i64).map(line).collect(),
        }
    }

    #[test]
    fn the_parts_follow_each_other_in_order() {
        let l = log(2, 2, 2);
        let (page, reads) = l.page(DeliveryQuery::default());
        assert_eq!(page.next_cursor, None);
        assert_eq!(reads, 3, "one read per part");
        let labels: Vec<&str> = page.items.iter().map(|e| e.recipient.as_str()).collect();
        assert_eq!(
            labels,
            [
                "user:u0",
                "user:u1",
                "all",
                "group:g1",
                "email:m1@example.com",
                "email:m2@example.com"
            ]
        );
        assert!(page.items[..4].iter().all(|e| e.channel == Channel::InApp
            && e.status == DeliveryStatus::Sent
            && e.attempt == 1
            && e.at == Millis(7)));
        assert_eq!(page.items[4].channel, Channel::Email);
        assert_eq!(page.items[4].status, DeliveryStatus::Queued);
    }

    #[test]
    fn a_full_page_reads_one_more_line_and_points_after_its_last() {
        let l = log(3, 0, 0);
        let (page, _) = l.page(DeliveryQuery {
            cursor: None,
            limit: 3,
        });
        assert_eq!(page.items.len(), 3);
        // Exactly three lines: the extra read found nothing more.
        assert_eq!(page.next_cursor, None);
        let (page, _) = l.page(DeliveryQuery {
            cursor: None,
            limit: 2,
        });
        assert_eq!(page.next_cursor.unwrap().encode(), "i3");
        let (page, _) = l.page(DeliveryQuery {
            cursor: page.next_cursor,
            limit: 2,
        });
        assert_eq!(page.items[0].recipient, "user:u2");
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn lines_logged_after_a_page_appear_on_the_next() {
        let mut l = log(0, 0, 2);
        let (page, _) = l.page(DeliveryQuery {
            cursor: None,
            limit: 1,
        });
        let cursor = page.next_cursor;
        l.logged.push(line(3)); // a retry's outcome, logged meanwhile
        let (page, _) = l.page(DeliveryQuery { cursor, limit: 10 });
        let labels: Vec<&str> = page.items.iter().map(|e| e.recipient.as_str()).collect();
        assert_eq!(labels, ["email:m2@example.com", "email:m3@example.com"]);
    }

    #[test]
    fn cursors_are_strict() {
        for good in ["i0", "b12", "l999999999999999999"] {
            assert_eq!(DeliveryCursor::decode(good).unwrap().encode(), good);
        }
        for bad in [
            "",
            "x1",
            "i",
            "i-1",
            "i01",
            "l1a",
            "L1",
            "l9999999999999999999",
            " i1",
        ] {
            assert!(DeliveryCursor::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_stored_line_that_cannot_be_read_is_a_backend_fault() {
        let l = Log {
            inbox: vec![],
            broadcasts: vec![],
            logged: vec![(
                1,
                (
                    "r".into(),
                    "fax".into(),
                    "queued".into(),
                    0,
                    None,
                    0,
                    None,
                    None,
                ),
            )],
        };
        let mut pager = LogPager::new(DeliveryQuery::default(), None);
        let mut result = Ok(());
        while let Some(r) = pager.next_read() {
            result = pager.push(r, l.read(r));
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(StoreError::Backend(_))));
    }

    proptest! {
        /// Paging through a log of any shape with any page size yields
        /// every line once, in order, and reads at most three ranges a page.
        #[test]
        fn pages_cover_the_log_exactly_once(
            users in 0usize..12,
            groups in 0usize..4,
            lines in 0usize..12,
            limit in 1usize..8,
        ) {
            let l = log(users, groups, lines);
            let whole = l.page(DeliveryQuery { cursor: None, limit: DeliveryQuery::MAX_LIMIT }).0.items;
            let (paged, pages) = l.all(limit);
            prop_assert_eq!(&paged, &whole);
            prop_assert_eq!(whole.len(), users + groups + lines);
            prop_assert_eq!(pages, whole.len().div_ceil(limit).max(1));
            let mut cursor = None;
            loop {
                let (page, reads) = l.page(DeliveryQuery { cursor, limit });
                prop_assert!(reads <= 3);
                match page.next_cursor { Some(c) => cursor = Some(c), None => break }
            }
        }
    }
}
