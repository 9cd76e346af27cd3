//! A generator of realistic test data for benchmarks: many users in groups,
//! millions of direct notifications (some stacked, most read, a few
//! archived, skewed towards busy users) and broadcasts interleaved among
//! them. It writes an empty SQLite database directly, in large
//! transactions, because going through the API would take hours at this
//! size; the benchmark then measures the server over HTTP.

use super::{SqliteOptions, SqliteStore};
use crate::{Result, StoreError};
use rusqlite::{Connection, params};

/// What to generate.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    pub users: u64,
    pub groups: u64,
    pub direct: u64,
    pub broadcasts: u64,
    /// Seed of the pseudo-random choices, so that runs are repeatable.
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct FixtureSummary {
    pub users: u64,
    pub direct: u64,
    pub broadcasts: u64,
    pub last_seq: i64,
    /// The user with the most direct notifications, and how many.
    pub busiest_user: String,
    pub busiest_count: u64,
}

/// xorshift64*: small, fast, good enough to spread test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A float in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The user id of the n-th generated user (1-based).
pub fn fixture_user_id(n: u64) -> String {
    format!("user-{n}")
}

/// Writes the fixture into a new database at `path` (which must not exist).
pub fn generate(path: &std::path::Path, spec: &FixtureSpec) -> Result<FixtureSummary> {
    if path.exists() {
        return Err(StoreError::Invalid(format!(
            "{} exists; the generator writes a new database",
            path.display()
        )));
    }
    // Create the schema through the store, then write with a plain connection.
    drop(SqliteStore::open(SqliteOptions::new(path))?);
    let mut c = Connection::open(path)?;
    c.execute_batch(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000; PRAGMA temp_store = MEMORY;",
    )?;
    let mut rng = Rng(spec.seed.max(1));
    let now: i64 = 1_790_000_000_000;
    let users = spec.users.max(1);
    let groups = spec.groups.max(1);

    let tx = c.transaction()?;
    {
        let mut g =
            tx.prepare("INSERT INTO groups (gid, id, name, created_at) VALUES (?1, ?2, ?3, ?4)")?;
        for gid in 1..=groups {
            g.execute(params![
                gid as i64,
                format!("group-{gid}"),
                format!("Group {gid}"),
                now
            ])?;
        }
    }
    tx.commit()?;

    // Users, each in one or two groups.
    let mut n = 1;
    while n <= users {
        let tx = c.transaction()?;
        {
            let mut u = tx.prepare(
                "INSERT INTO users (uid, id, email, name, locale, timezone, created_seq, read_wm, seen_wm, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'en', 'Europe/Berlin', 0, 0, 0, ?5, ?5)",
            )?;
            let mut m = tx.prepare(
                "INSERT OR IGNORE INTO memberships (uid, gid, joined_seq) VALUES (?1, ?2, 0)",
            )?;
            let end = (n + 100_000).min(users + 1);
            for uid in n..end {
                let id = fixture_user_id(uid);
                u.execute(params![
                    uid as i64,
                    id,
                    format!("{id}@example.com"),
                    format!("User {uid}"),
                    now
                ])?;
                m.execute(params![uid as i64, 1 + rng.below(groups) as i64])?;
                if rng.unit() < 0.5 {
                    m.execute(params![uid as i64, 1 + rng.below(groups) as i64])?;
                }
            }
            n = end;
        }
        tx.commit()?;
    }

    // Notifications in seq order: broadcasts spread evenly among the direct ones.
    let total = spec.direct + spec.broadcasts;
    let every = total
        .checked_div(spec.broadcasts)
        .map_or(u64::MAX, |n| n.max(1));
    let mut per_user = vec![0u32; users as usize + 1];
    let mut seq: i64 = 0;
    let (mut sent_direct, mut sent_broadcasts) = (0u64, 0u64);
    while sent_direct + sent_broadcasts < total {
        let tx = c.transaction()?;
        {
            let mut notif = tx.prepare_cached(
                "INSERT INTO notifications (nid, id, seq, status, sender, content, audience, recipients,
                                            stack_key, created_at, published_at)
                 VALUES (?1, ?2, ?1, 'published', 'fixture', ?3, ?4, ?5, ?6, ?7, ?7)",
            )?;
            let mut inbox = tx.prepare_cached(
                "INSERT INTO inbox (uid, seq, nid, stack_key, stack_count, read_at, archived_at, category, entity_type, entity_id)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, 'ticket', ?8)",
            )?;
            let mut bcast = tx.prepare_cached(
                "INSERT INTO broadcasts (gid, seq, nid, category) VALUES (?1, ?2, ?2, 'announcement')",
            )?;
            let mut i = 0;
            while i < 100_000 && sent_direct + sent_broadcasts < total {
                i += 1;
                seq += 1;
                let at = now + seq * 10;
                let broadcast_turn = sent_broadcasts < spec.broadcasts
                    && ((seq as u64).is_multiple_of(every) || sent_direct >= spec.direct);
                if broadcast_turn {
                    sent_broadcasts += 1;
                    // A quarter go to everyone, the rest to one group.
                    let gid = if rng.below(4) == 0 {
                        0
                    } else {
                        1 + rng.below(groups) as i64
                    };
                    let content = format!(
                        r#"{{"title":"Announcement {seq}: mandatory security training on Friday","body":"All staff please attend the session in room 4. Bring your badge.","url":"https://intranet.example.com/news/{seq}","category":"announcement","source":null,"actor":{{"id":null,"name":"IT Security","avatar_url":null}},"entity":null,"data":null,"actions":[],"stack_key":null,"sticky":false,"expires_at":null}}"#
                    );
                    let audience = if gid == 0 {
                        r#"{"all":true}"#.to_string()
                    } else {
                        format!(r#"{{"groups":["group-{gid}"]}}"#)
                    };
                    notif.execute(params![
                        seq,
                        ulid_like(&mut rng, at),
                        content,
                        audience,
                        None::<i64>,
                        None::<String>,
                        at
                    ])?;
                    bcast.execute(params![gid, seq])?;
                } else {
                    sent_direct += 1;
                    // Skewed: a few busy users get most of the notifications.
                    let uid = 1 + ((users as f64) * rng.unit().powi(3)) as u64;
                    let uid = uid.min(users);
                    per_user[uid as usize] += 1;
                    let ticket = rng.below(1_000_000);
                    let (category, title) = match rng.below(4) {
                        0 => ("assignment", format!("Ticket #{ticket} assigned to you")),
                        1 => ("mention", format!("Bo mentioned you on ticket #{ticket}")),
                        2 => ("reply", format!("Customer replied on ticket #{ticket}")),
                        _ => ("reopened", format!("Ticket #{ticket} was reopened")),
                    };
                    let stacked = rng.unit() < 0.1;
                    let stack_key = stacked.then(|| format!("ticket:{ticket}:replies:{seq}"));
                    let content = format!(
                        r#"{{"title":"{title}","body":"The printer on floor 3 is jammed again and the customer is waiting for an answer.","url":"https://desk.example.com/tickets/{ticket}","category":"{category}","source":"helpdesk","actor":{{"id":"user-1","name":"Bo Agent","avatar_url":"https://desk.example.com/avatars/1.png"}},"entity":{{"type":"ticket","id":"{ticket}"}},"data":{{"priority":"normal"}},"actions":[],"stack_key":{},"sticky":false,"expires_at":null}}"#,
                        stack_key
                            .as_ref()
                            .map(|k| format!("\"{k}\""))
                            .unwrap_or_else(|| "null".into())
                    );
                    notif.execute(params![
                        seq,
                        ulid_like(&mut rng, at),
                        content,
                        format!(r#"{{"users":["user-{uid}"]}}"#),
                        1,
                        stack_key,
                        at
                    ])?;
                    let read = rng.unit() < 0.7;
                    let archived = read && rng.unit() < 0.07;
                    inbox.execute(params![
                        uid as i64,
                        seq,
                        stack_key,
                        if stacked { 2 + rng.below(4) as i64 } else { 1 },
                        read.then_some(at + 60_000),
                        archived.then_some(at + 120_000),
                        category,
                        ticket.to_string()
                    ])?;
                }
            }
        }
        tx.commit()?;
    }
    // Half of the users have pressed "mark all read" / opened the drawer at some point.
    c.execute(
        "UPDATE users SET read_wm = (uid * 7919) % (?1 + 1), seen_wm = (uid * 7919) % (?1 + 1) WHERE uid % 2 = 0",
        [seq],
    )?;
    c.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?;
    let (busiest, count) = per_user
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(uid, n)| (uid as u64, *n as u64))
        .unwrap_or((1, 0));
    Ok(FixtureSummary {
        users,
        direct: sent_direct,
        broadcasts: sent_broadcasts,
        last_seq: seq,
        busiest_user: fixture_user_id(busiest.max(1)),
        busiest_count: count,
    })
}

/// A ULID-shaped unique id (time prefix, random suffix).
fn ulid_like(rng: &mut Rng, at: i64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = String::with_capacity(26);
    let mut t = at as u64;
    let mut time = [0u8; 10];
    for slot in time.iter_mut().rev() {
        *slot = ALPHABET[(t % 32) as usize];
        t /= 32;
    }
    out.extend(time.iter().map(|b| *b as char));
    for _ in 0..16 {
        out.push(ALPHABET[rng.below(32) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use belfry_core::{InboxQuery, Millis, UserId};

    #[tokio::test]
    async fn generates_a_readable_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let summary = generate(
            &path,
            &FixtureSpec {
                users: 50,
                groups: 3,
                direct: 500,
                broadcasts: 20,
                seed: 7,
            },
        )
        .unwrap();
        assert_eq!(summary.direct, 500);
        assert_eq!(summary.broadcasts, 20);
        assert_eq!(summary.last_seq, 520);
        assert!(
            generate(
                &path,
                &FixtureSpec {
                    users: 1,
                    groups: 1,
                    direct: 1,
                    broadcasts: 0,
                    seed: 1
                }
            )
            .is_err()
        );

        let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
        let user = UserId::parse(&summary.busiest_user).unwrap();
        let now = Millis(1_800_000_000_000);
        let page = store
            .list_inbox(&user, InboxQuery::default(), now)
            .await
            .unwrap();
        assert!(!page.items.is_empty());
        for item in &page.items {
            let v: serde_json::Value = serde_json::from_str(item).unwrap();
            assert!(v["title"].is_string());
        }
        let counts = store.counts(&user, now).await.unwrap();
        assert!(counts.unread > 0);
    }
}
