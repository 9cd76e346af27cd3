//! Configuration documents on SQLite (see `crate::documents`).

use crate::{DocKind, Document, NewDocument, Result};
use belfry_core::Millis;
use rusqlite::{Connection, OptionalExtension as _, Row, params};

fn document(r: &Row<'_>) -> rusqlite::Result<Document> {
    Ok(Document {
        id: r.get(0)?,
        doc: r.get(1)?,
        created_at: Millis(r.get(2)?),
        updated_at: Millis(r.get(3)?),
    })
}

pub(crate) fn put(c: &Connection, kind: DocKind, id: &str, doc: &str, now: Millis) -> Result<bool> {
    let existed = c
        .prepare_cached("SELECT 1 FROM documents WHERE kind = ?1 AND id = ?2")?
        .exists(params![kind.as_str(), id])?;
    c.prepare_cached(
        "INSERT INTO documents (kind, id, doc, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
    )?
    .execute(params![kind.as_str(), id, doc, now.0])?;
    Ok(!existed)
}

pub(crate) fn get(c: &Connection, kind: DocKind, id: &str) -> Result<Option<Document>> {
    Ok(c.prepare_cached(
        "SELECT id, doc, created_at, updated_at FROM documents WHERE kind = ?1 AND id = ?2",
    )?
    .query_row(params![kind.as_str(), id], document)
    .optional()?)
}

pub(crate) fn list(c: &Connection, kind: DocKind) -> Result<Vec<Document>> {
    Ok(c.prepare_cached(
        "SELECT id, doc, created_at, updated_at FROM documents WHERE kind = ?1 ORDER BY id",
    )?
    .query_map([kind.as_str()], document)?
    .collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn delete(c: &Connection, kind: DocKind, id: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM documents WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind.as_str(), id])?
            > 0,
    )
}

/// See `Store::write_documents` (the caller's savepoint makes it all or
/// nothing).
pub(crate) fn write_all(
    c: &Connection,
    put_docs: &[NewDocument],
    delete_docs: &[(DocKind, String)],
    now: Millis,
) -> Result<()> {
    for (kind, id) in delete_docs {
        delete(c, *kind, id)?;
    }
    for d in put_docs {
        put(c, d.kind, &d.id, &d.doc, now)?;
    }
    Ok(())
}

/// See `Store::install_documents_once`.
pub(crate) fn install_once(
    c: &Connection,
    marker: &str,
    docs: &[NewDocument],
    now: Millis,
) -> Result<bool> {
    let set = c
        .prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )?
        .execute(params![marker, now.0.to_string().into_bytes()])?;
    if set == 0 {
        return Ok(false);
    }
    for d in docs {
        c.prepare_cached(
            "INSERT INTO documents (kind, id, doc, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (kind, id) DO NOTHING",
        )?
        .execute(params![d.kind.as_str(), d.id, d.doc, now.0])?;
    }
    Ok(true)
}
