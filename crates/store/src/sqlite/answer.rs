//! Answering a callback action on SQLite (I7): see `plan::answer`. The
//! single writer orders answers, so `WHERE answered IS NULL` lets exactly
//! the first answer to a `once` action through.

use super::Writer;
use super::read;
use super::write::locate;
use crate::plan::answer::{AnswerReceipt, NewAnswer, answered_event, answered_json, submitted};
use crate::plan::stored::StoredAudience;
use crate::webhooks::WebhookEventType;
use crate::{Constraint, Result, StoreError};
use belfry_core::UserId;
use rusqlite::{OptionalExtension as _, params};

pub(crate) fn answer(w: &mut Writer, user: &UserId, a: &NewAnswer) -> Result<AnswerReceipt> {
    let c = &w.conn;
    let u = read::inbox_user(c, user)?.ok_or(StoreError::NotFound)?;
    if locate(c, &u, &a.notification, a.at)?.is_none() {
        return Err(StoreError::NotFound);
    }
    let (nid, seq, audience): (i64, Option<i64>, String) = c
        .prepare_cached("SELECT nid, seq, audience FROM notifications WHERE id = ?1")?
        .query_row([&a.notification], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let name: Option<String> = c
        .prepare_cached("SELECT name FROM users WHERE uid = ?1")?
        .query_row([u.uid], |r| r.get(0))?;
    let answered = if a.once {
        let json = answered_json(a, user, name.as_deref());
        let set = c
            .prepare_cached(
                "UPDATE notifications SET answered = ?1 WHERE nid = ?2 AND answered IS NULL",
            )?
            .execute(params![json, nid])?;
        if set == 0 {
            let existing: Option<String> = c
                .prepare_cached("SELECT answered FROM notifications WHERE nid = ?1")?
                .query_row([nid], |r| r.get(0))
                .optional()?
                .flatten();
            return Err(StoreError::conflict(Constraint::AlreadyAnswered {
                answered: existing.unwrap_or_else(|| "null".into()),
            }));
        }
        Some(json)
    } else {
        None
    };
    c.prepare_cached(
        "INSERT INTO action_responses (id, nid, action, uid, \"values\", created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        a.response_id,
        nid,
        a.action,
        u.uid,
        a.values,
        a.at.0
    ])?;
    // The producer hears of it (`action.submitted`), in this transaction.
    if super::webhooks::subscribed(w)?.wants(WebhookEventType::ActionSubmitted) {
        let content: String = w
            .conn
            .prepare_cached("SELECT content FROM notifications WHERE nid = ?1")?
            .query_row([nid], |r| r.get(0))?;
        let (source, data) = submitted(a, user, name.as_deref(), &content);
        super::webhooks::enqueue(
            w,
            WebhookEventType::ActionSubmitted,
            source.as_deref(),
            data,
            a.at,
        )?;
    }
    let c = &w.conn;
    if let Some(json) = &answered {
        let users = c
            .prepare_cached(
                "SELECT u.id FROM inbox i JOIN users u ON u.uid = i.uid WHERE i.nid = ?1",
            )?
            .query_map([nid], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?
            .into_iter()
            .map(|id| UserId::parse(&id).map_err(StoreError::backend))
            .collect::<Result<Vec<UserId>>>()?;
        let has_broadcast = match seq {
            Some(seq) => c
                .prepare_cached("SELECT 1 FROM broadcasts WHERE seq = ?1")?
                .exists([seq])?,
            None => false,
        };
        let broadcast = if has_broadcast {
            StoredAudience::decode(&audience)?.broadcast()
        } else {
            None
        };
        let event = answered_event(&a.notification, json.clone(), users, broadcast);
        w.emit(event);
    }
    Ok(AnswerReceipt {
        response_id: a.response_id.clone(),
        answered,
    })
}
