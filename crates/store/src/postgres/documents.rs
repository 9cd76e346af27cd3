//! Configuration documents on PostgreSQL (see `crate::documents`).

use crate::{DocKind, Document, NewDocument, Result};
use belfry_core::Millis;
use sqlx::PgConnection;

type Row = (String, String, i64, i64);

fn document((id, doc, created, updated): Row) -> Document {
    Document {
        id,
        doc,
        created_at: Millis(created),
        updated_at: Millis(updated),
    }
}

pub(crate) async fn put(
    c: &mut PgConnection,
    kind: DocKind,
    id: &str,
    doc: &str,
    now: Millis,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "INSERT INTO documents (kind, id, doc, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at
         RETURNING (xmax = 0)",
    )
    .bind(kind.as_str())
    .bind(id)
    .bind(doc)
    .bind(now.0)
    .fetch_one(&mut *c)
    .await?)
}

pub(crate) async fn get(c: &mut PgConnection, kind: DocKind, id: &str) -> Result<Option<Document>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, doc, created_at, updated_at FROM documents WHERE kind = $1 AND id = $2",
    )
    .bind(kind.as_str())
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(document))
}

pub(crate) async fn list(c: &mut PgConnection, kind: DocKind) -> Result<Vec<Document>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, doc, created_at, updated_at FROM documents WHERE kind = $1 ORDER BY id",
    )
    .bind(kind.as_str())
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.into_iter().map(document).collect())
}

pub(crate) async fn delete(c: &mut PgConnection, kind: DocKind, id: &str) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM documents WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected()
            > 0,
    )
}

/// See `Store::write_documents` (`c`: a transaction).
pub(crate) async fn write_all(
    c: &mut PgConnection,
    put_docs: &[NewDocument],
    delete_docs: &[(DocKind, String)],
    now: Millis,
) -> Result<()> {
    for (kind, id) in delete_docs {
        delete(c, *kind, id).await?;
    }
    for d in put_docs {
        put(c, d.kind, &d.id, &d.doc, now).await?;
    }
    Ok(())
}

/// See `Store::install_documents_once` (`c`: a transaction). A second
/// node inserting the same marker waits for the first one's transaction
/// and then finds it set.
pub(crate) async fn install_once(
    c: &mut PgConnection,
    marker: &str,
    docs: &[NewDocument],
    now: Millis,
) -> Result<bool> {
    let set =
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(marker)
            .bind(now.0.to_string().into_bytes())
            .execute(&mut *c)
            .await?
            .rows_affected();
    if set == 0 {
        return Ok(false);
    }
    for d in docs {
        sqlx::query(
            "INSERT INTO documents (kind, id, doc, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (kind, id) DO NOTHING",
        )
        .bind(d.kind.as_str())
        .bind(&d.id)
        .bind(&d.doc)
        .bind(now.0)
        .execute(&mut *c)
        .await?;
    }
    Ok(true)
}
