-- Issue 16: templates (and, with the next steps, rules and sources).

-- Configuration an administrator writes through the API, stored as a JSON
-- document per kind and id and read whole: a template's texts per locale
-- (belfry_core::template::TemplateDef). The documents are few and small;
-- what uses them parses them.
CREATE TABLE documents (
    kind       TEXT NOT NULL,          -- 'template', 'rule'
    id         TEXT NOT NULL,
    doc        TEXT NOT NULL,          -- JSON
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
