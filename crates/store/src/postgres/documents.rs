//! Configuration documents on PostgreSQL (see `crate::documents`).

use crate::{DocKind, Document, Result};
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
