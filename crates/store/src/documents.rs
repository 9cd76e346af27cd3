//! Configuration documents (issue 16): what an administrator writes through
//! the API and Belfry reads whole, stored as JSON per kind and id
//! (templates now; rules and sources use the same table). The store keeps
//! them; the server parses and checks them.

use belfry_core::Millis;

/// The kinds of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// A template's texts per locale (`belfry_core::template::TemplateDef`).
    Template,
    /// What an event turns into (`belfry_core::rule::RuleDef`).
    Rule,
    /// An integration that sends (`{"name", "icon"}`), S9.
    Source,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Template => "template",
            DocKind::Rule => "rule",
            DocKind::Source => "source",
        }
    }
}

/// A document to write (`Store::write_documents`,
/// `Store::install_documents_once`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    pub kind: DocKind,
    pub id: String,
    /// The JSON document.
    pub doc: String,
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    /// The JSON document.
    pub doc: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}
