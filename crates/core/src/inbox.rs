//! Reading an inbox: filters, the pagination cursor, counts and the rendering
//! of one inbox item (per-user state spliced in front of the shared content).

use crate::ids::Category;
use crate::time::Millis;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// Which part of the inbox to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Unread and not archived.
    Unread,
    /// Everything not archived.
    #[default]
    All,
    /// Archived only.
    Archived,
}

impl Filter {
    pub fn parse(value: &str) -> Result<Filter, String> {
        match value {
            "unread" => Ok(Filter::Unread),
            "all" => Ok(Filter::All),
            "archived" => Ok(Filter::Archived),
            other => Err(format!(
                "'{}' is not a filter; use unread, all or archived",
                other.escape_debug()
            )),
        }
    }
}

/// Position in a newest-first listing: items strictly older (lower `seq`)
/// than the last one returned. New arrivals always get a higher `seq`, so a
/// cursor never skips nor repeats an item while notifications keep coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub before_seq: i64,
}

impl Cursor {
    /// The seq as a decimal: a format the OpenAPI description can state
    /// exactly (`^[1-9][0-9]{0,18}$`); clients still pass it on as given.
    pub fn encode(&self) -> String {
        self.before_seq.to_string()
    }

    /// A cursor as [`Cursor::encode`] writes it, or the earlier base64url
    /// form (`v1:<seq>`), so that pages open across an upgrade still continue.
    pub fn decode(value: &str) -> Result<Cursor, String> {
        let bad = || "is not a cursor returned by this API (use next_cursor as given)".to_string();
        let seq = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            value.parse::<i64>().ok()
        } else {
            let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| bad())?;
            let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
            text.strip_prefix("v1:").and_then(|s| s.parse::<i64>().ok())
        };
        let seq = seq.filter(|s| *s > 0).ok_or_else(bad)?;
        Ok(Cursor { before_seq: seq })
    }
}

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 100;

/// A validated inbox listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxQuery {
    pub filter: Filter,
    pub category: Option<Category>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for InboxQuery {
    fn default() -> Self {
        Self {
            filter: Filter::All,
            category: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// Unread and unseen counts of one inbox (archived and expired items excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub unread: i64,
    pub unseen: i64,
}

/// The per-user part of an inbox item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxItemMeta {
    pub id: String,
    pub seq: i64,
    #[serde(serialize_with = "ser_millis")]
    pub created_at: Millis,
    pub read: bool,
    pub seen: bool,
    pub archived: bool,
    pub stack_count: i64,
    /// The user closed this sticky notification (it stops reappearing).
    pub dismissed: bool,
    /// The first answer to a `once` action (stored JSON, written as it is),
    /// or null.
    #[serde(serialize_with = "ser_raw")]
    pub answered: Option<String>,
}

fn ser_raw<S: serde::Serializer>(raw: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    match raw {
        None => s.serialize_none(),
        Some(json) => serde_json::value::RawValue::from_string(json.clone())
            .map_err(serde::ser::Error::custom)?
            .serialize(s),
    }
}

fn ser_millis<S: serde::Serializer>(m: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_rfc3339())
}

impl InboxItemMeta {
    /// The item as JSON: these fields followed by the stored content object's
    /// fields, without parsing the content again. Channel texts (email,
    /// push, chat) are not for the inbox: left out.
    pub fn render(&self, content_json: &str) -> String {
        let meta = serde_json::to_string(self).expect("meta serialises");
        splice_objects(&meta, &without_texts(content_json))
    }
}

/// The content without its `texts` (the last key when present): only
/// content that has them is parsed.
fn without_texts(content_json: &str) -> std::borrow::Cow<'_, str> {
    if !content_json.contains("\"texts\":{") {
        return std::borrow::Cow::Borrowed(content_json);
    }
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(content_json) {
        Ok(mut map) => {
            if map.remove("texts").is_none() {
                return std::borrow::Cow::Borrowed(content_json);
            }
            std::borrow::Cow::Owned(serde_json::to_string(&map).expect("a JSON object serialises"))
        }
        Err(_) => std::borrow::Cow::Borrowed(content_json),
    }
}

/// Joins two JSON objects (`{"a":1}` + `{"b":2}` → `{"a":1,"b":2}`). Both
/// must be non-empty objects produced by serde_json.
pub fn splice_objects(first: &str, second: &str) -> String {
    let head = first.strip_suffix('}').unwrap_or(first);
    let tail = second.strip_prefix('{').unwrap_or(second);
    let mut out = String::with_capacity(head.len() + tail.len() + 1);
    out.push_str(head);
    if tail != "}" {
        out.push(',');
    }
    out.push_str(tail);
    out
}

/// Merges two newest-first lists (each fetched with `limit + 1` items) into one page
/// of at most `limit` items, and the cursor of the next page if there may be one.
pub fn merge_newest_first<T>(
    a: Vec<T>,
    b: Vec<T>,
    limit: usize,
    seq: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<Cursor>) {
    let more = a.len() + b.len() > limit;
    let mut out = Vec::with_capacity(limit.min(a.len() + b.len()));
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    while out.len() < limit {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => seq(x) >= seq(y),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
    let next = if more {
        out.last().map(|last| Cursor {
            before_seq: seq(last),
        })
    } else {
        None
    };
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn render_splices_meta_and_content() {
        let meta = InboxItemMeta {
            id: "n1".into(),
            seq: 7,
            created_at: Millis(0),
            read: false,
            seen: true,
            archived: false,
            stack_count: 2,
            dismissed: false,
            answered: Some(r#"{"action":"ok"}"#.into()),
        };
        let out = meta.render(r#"{"title":"Hi"}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], "n1");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["title"], "Hi");
        assert_eq!(v["stack_count"], 2);
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["answered"]["action"], "ok");
    }

    #[test]
    fn items_leave_channel_texts_out_and_keep_data_named_texts() {
        let meta = InboxItemMeta {
            id: "n1".into(),
            seq: 1,
            created_at: Millis(0),
            read: false,
            seen: false,
            archived: false,
            stack_count: 1,
            dismissed: false,
            answered: None,
        };
        let out = meta.render(
            r#"{"title":"Hi","data":{"texts":{"a":1}},"texts":{"email_subject":"S","chat":"C"}}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["title"], "Hi");
        assert_eq!(v["data"]["texts"]["a"], 1);
        assert!(v.get("texts").is_none(), "{out}");
        // Content without texts is spliced as stored.
        let plain = r#"{"title":"Hi","data":{"texts":{"a":1}}}"#;
        assert!(meta.render(plain).ends_with(&plain[1..]));
    }

    #[test]
    fn filters_parse() {
        assert_eq!(Filter::parse("unread").unwrap(), Filter::Unread);
        assert!(Filter::parse("new").is_err());
    }

    #[test]
    fn bad_cursors_are_refused() {
        assert!(Cursor::decode("zzz").is_err());
        assert!(Cursor::decode("").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v1:-5")).is_err());
        assert!(Cursor::decode("0").is_err());
        assert!(Cursor::decode("99999999999999999999").is_err());
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("v1:42")).unwrap(),
            Cursor { before_seq: 42 },
            "cursors of earlier versions still work"
        );
    }

    proptest! {
        #[test]
        fn cursor_round_trips(seq in 1i64..i64::MAX) {
            let c = Cursor { before_seq: seq };
            prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }

        /// Merging the direct and broadcast parts of an inbox page gives the
        /// newest `limit` items of their union, in order, and paging with the
        /// returned cursor visits every item exactly once.
        #[test]
        fn merged_paging_neither_skips_nor_repeats(
            seqs in proptest::collection::btree_set(1i64..10_000, 0..200),
            split in proptest::collection::vec(any::<bool>(), 200),
            limit in 1usize..20,
        ) {
            let all: Vec<i64> = seqs.iter().rev().copied().collect();
            type Part = Vec<(usize, i64)>;
            let (a, b): (Part, Part) =
                all.iter().copied().enumerate().partition(|(i, _)| split[*i]);
            let mut cursor: Option<Cursor> = None;
            let mut visited = Vec::new();
            loop {
                let part = |list: &[(usize, i64)]| -> Vec<i64> {
                    list.iter().map(|(_, s)| *s)
                        .filter(|s| cursor.is_none_or(|c| *s < c.before_seq))
                        .take(limit + 1).collect()
                };
                let (page, next) = merge_newest_first(part(&a), part(&b), limit, |s| *s);
                visited.extend(page);
                match next { Some(c) => cursor = Some(c), None => break }
            }
            prop_assert_eq!(visited, all);
        }
    }
}
