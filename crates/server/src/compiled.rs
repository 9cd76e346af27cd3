//! Templates compiled once for events (S8): an event renders its rule's
//! template for each language, and compiling the eight texts of a template
//! costs more than rendering them. The stored document is still read per
//! event, so a change on any node (or by `belfry rules import`) is used at
//! once: a compiled template is reused only while its stored JSON is the
//! same, byte for byte.

use belfry_core::template::{Compiled, TemplateDef};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compiled templates by id, with the document they were compiled from.
#[derive(Default)]
pub struct CompiledTemplates {
    entries: Mutex<HashMap<String, (String, Arc<Compiled>)>>,
}

impl CompiledTemplates {
    /// At most this many templates are kept; past it the map starts over.
    const MAX: usize = 1_000;

    /// The compiled form of the template `id` stored as `doc`.
    pub fn get(&self, id: &str, doc: &str) -> Result<Arc<Compiled>, serde_json::Error> {
        if let Some((stored, c)) = self.entries.lock().expect("templates").get(id)
            && stored == doc
        {
            return Ok(c.clone());
        }
        let def: TemplateDef = serde_json::from_str(doc)?;
        let compiled = Arc::new(Compiled::new(def));
        let mut entries = self.entries.lock().expect("templates");
        if entries.len() >= Self::MAX {
            entries.clear();
        }
        entries.insert(id.to_string(), (doc.to_string(), compiled.clone()));
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_document_is_compiled_again() {
        let cache = CompiledTemplates::default();
        let a = r#"{"default_locale":"en","locales":{"en":{"title":"A {{ x }}"}}}"#;
        let b = r#"{"default_locale":"en","locales":{"en":{"title":"B {{ x }}"}}}"#;
        let ctx = belfry_core::template::context(&serde_json::json!({"x": 1}));
        let first = cache.get("t", a).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get("t", a).unwrap()));
        assert_eq!(first.render(None, &ctx).unwrap().title, "A 1");
        let second = cache.get("t", b).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.render(None, &ctx).unwrap().title, "B 1");
        assert!(cache.get("t", "not json").is_err());
    }
}
