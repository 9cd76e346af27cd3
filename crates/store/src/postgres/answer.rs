//! Answering a callback action on PostgreSQL (I7): see `plan::answer`.
//! `UPDATE … WHERE answered IS NULL` takes the notification's row lock, so
//! of concurrent answers on several nodes exactly the first one sets it;
//! the others wait for its commit, see the column set and are refused.

use super::read;
use super::write::locate;
use crate::plan::answer::{AnswerReceipt, NewAnswer, answered_event, answered_json, submitted};
use crate::plan::stored::StoredAudience;
use crate::webhooks::WebhookEventType;
use crate::{Constraint, Result, StoreError, StoreEvent};
use belfry_core::UserId;
use sqlx::PgConnection;

/// Also answers whether a webhook job was queued (`action.submitted`).
pub(crate) async fn answer(
    c: &mut PgConnection,
    snapshot: &crate::webhooks::Snapshot,
    user: &UserId,
    a: &NewAnswer,
) -> Result<(AnswerReceipt, Option<StoreEvent>, bool)> {
    let u = read::inbox_user(c, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    if locate(c, &u, &a.notification, a.at).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    let (nid, seq, audience): (i64, Option<i64>, String) =
        sqlx::query_as("SELECT nid, seq, audience FROM notifications WHERE id = $1")
            .bind(&a.notification)
            .fetch_one(&mut *c)
            .await?;
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE uid = $1")
        .bind(u.uid)
        .fetch_one(&mut *c)
        .await?;
    let answered = if a.once {
        let json = answered_json(a, user, name.as_deref());
        let set = sqlx::query(
            "UPDATE notifications SET answered = $1 WHERE nid = $2 AND answered IS NULL",
        )
        .bind(&json)
        .bind(nid)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if set == 0 {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT answered FROM notifications WHERE nid = $1")
                    .bind(nid)
                    .fetch_one(&mut *c)
                    .await?;
            return Err(StoreError::conflict(Constraint::AlreadyAnswered {
                answered: existing.unwrap_or_else(|| "null".into()),
            }));
        }
        Some(json)
    } else {
        None
    };
    sqlx::query(
        "INSERT INTO action_responses (id, nid, action, uid, \"values\", created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&a.response_id)
    .bind(nid)
    .bind(&a.action)
    .bind(u.uid)
    .bind(&a.values)
    .bind(a.at.0)
    .execute(&mut *c)
    .await?;
    // The producer hears of it (`action.submitted`), in this transaction.
    let mut queued = false;
    if super::webhooks::subscribed(snapshot, c)
        .await?
        .wants(WebhookEventType::ActionSubmitted)
    {
        let content: String =
            sqlx::query_scalar("SELECT content FROM notifications WHERE nid = $1")
                .bind(nid)
                .fetch_one(&mut *c)
                .await?;
        let (source, data) = submitted(a, user, name.as_deref(), &content);
        queued = super::webhooks::enqueue(
            c,
            WebhookEventType::ActionSubmitted,
            source.as_deref(),
            data,
            a.at,
        )
        .await?;
    }
    let event = match &answered {
        None => None,
        Some(json) => {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT u.id FROM inbox i JOIN users u ON u.uid = i.uid WHERE i.nid = $1",
            )
            .bind(nid)
            .fetch_all(&mut *c)
            .await?;
            let users = ids
                .iter()
                .map(|id| UserId::parse(id).map_err(StoreError::backend))
                .collect::<Result<Vec<UserId>>>()?;
            let has_broadcast = match seq {
                Some(seq) => {
                    sqlx::query_scalar::<_, i32>("SELECT 1 FROM broadcasts WHERE seq = $1 LIMIT 1")
                        .bind(seq)
                        .fetch_optional(&mut *c)
                        .await?
                        .is_some()
                }
                None => false,
            };
            let broadcast = if has_broadcast {
                StoredAudience::decode(&audience)?.broadcast()
            } else {
                None
            };
            Some(answered_event(
                &a.notification,
                json.clone(),
                users,
                broadcast,
            ))
        }
    };
    Ok((
        AnswerReceipt {
            response_id: a.response_id.clone(),
            answered,
        },
        event,
        queued,
    ))
}
