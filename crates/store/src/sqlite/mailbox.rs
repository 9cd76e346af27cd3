//! The development mailbox on SQLite: mail the development mailer "sent",
//! kept for the console instead of going to an SMTP server.

use crate::Result;
use crate::jobs::{DevMail, NewDevMail};
use belfry_core::Millis;
use rusqlite::{Connection, OptionalExtension, params};

fn mail_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DevMail> {
    Ok(DevMail {
        id: r.get::<_, i64>(0)?.to_string(),
        to: r.get(1)?,
        subject: r.get(2)?,
        text: r.get(3)?,
        html: r.get(4)?,
        message_id: r.get(5)?,
        created_at: Millis(r.get(6)?),
    })
}

const MAIL_COLUMNS: &str = "id, recipient, subject, text, html, message_id, created_at";

pub(crate) fn mailbox_put(c: &Connection, mail: &NewDevMail, now: Millis) -> Result<DevMail> {
    c.prepare_cached(
        "INSERT INTO mailbox (recipient, subject, text, html, message_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![mail.to, mail.subject, mail.text, mail.html, mail.message_id, now.0])?;
    let id = c.last_insert_rowid();
    Ok(
        c.prepare_cached(&format!("SELECT {MAIL_COLUMNS} FROM mailbox WHERE id = ?1"))?
            .query_row([id], mail_row)?,
    )
}

pub(crate) fn mailbox_list(c: &Connection, limit: usize) -> Result<Vec<DevMail>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {MAIL_COLUMNS} FROM mailbox ORDER BY id DESC LIMIT ?1"
    ))?
    .query_map([limit as i64], mail_row)?
    .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn mailbox_get(c: &Connection, id: &str) -> Result<Option<DevMail>> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    Ok(
        c.prepare_cached(&format!("SELECT {MAIL_COLUMNS} FROM mailbox WHERE id = ?1"))?
            .query_row([id], mail_row)
            .optional()?,
    )
}

pub(crate) fn mailbox_clear(c: &Connection) -> Result<i64> {
    Ok(c.execute("DELETE FROM mailbox", [])? as i64)
}
