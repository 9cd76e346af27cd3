//! The development mailbox on PostgreSQL: mail the development mailer
//! "sent", kept for the console instead of going to an SMTP server.

use crate::Result;
use crate::jobs::{DevMail, NewDevMail};
use belfry_core::Millis;
use sqlx::PgPool;

type MailRow = (i64, String, String, String, String, String, i64);

fn to_mail((id, to, subject, text, html, message_id, created_at): MailRow) -> DevMail {
    DevMail {
        id: id.to_string(),
        to,
        subject,
        text,
        html,
        message_id,
        created_at: Millis(created_at),
    }
}

pub(crate) async fn mailbox_put(pool: &PgPool, mail: &NewDevMail, now: Millis) -> Result<DevMail> {
    let row: MailRow = sqlx::query_as(
        "INSERT INTO mailbox (recipient, subject, text, html, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, recipient, subject, text, html, message_id, created_at",
    )
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(&mail.html)
    .bind(&mail.message_id)
    .bind(now.0)
    .fetch_one(pool)
    .await?;
    Ok(to_mail(row))
}

pub(crate) async fn mailbox_list(pool: &PgPool, limit: usize) -> Result<Vec<DevMail>> {
    let rows: Vec<MailRow> = sqlx::query_as(
        "SELECT id, recipient, subject, text, html, message_id, created_at FROM mailbox
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(to_mail).collect())
}

pub(crate) async fn mailbox_get(pool: &PgPool, id: &str) -> Result<Option<DevMail>> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    let row: Option<MailRow> = sqlx::query_as(
        "SELECT id, recipient, subject, text, html, message_id, created_at FROM mailbox WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(to_mail))
}

pub(crate) async fn mailbox_clear(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query("DELETE FROM mailbox")
        .execute(pool)
        .await?
        .rows_affected() as i64)
}
