//! What events (S8) read, kept ready: the enabled rules by event type and
//! their templates with every text compiled (compiling a template's eight
//! texts costs more than rendering them, and reading and parsing every
//! rule per event more than the rest of an event).
//!
//! The snapshot is read from the store at most once a second
//! ([`RuleCache::FRESH`]), and at once after this node changed a rule or a
//! template ([`RuleCache::invalidate`]): a change made on another node or
//! by `belfry rules import` is used within a second. A template is
//! compiled again only when its stored JSON changed.

use belfry_core::rule::RuleDef;
use belfry_core::template::{Compiled, Environment, TemplateDef};
use belfry_store::{DocKind, SharedStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rules and templates events use, as of one read of the store.
pub struct RuleSnapshot {
    /// Enabled rules by event type, each list by rule id.
    pub rules: HashMap<String, Vec<(String, RuleDef)>>,
    /// Every template by id (None: stored but unreadable).
    pub templates: HashMap<String, Option<Arc<Compiled>>>,
    /// The environment rule expressions are evaluated in.
    pub env: Environment<'static>,
}

/// A snapshot and when it was read.
type Taken = (Instant, Arc<RuleSnapshot>);

/// The snapshot, and the compiled templates it is made of.
#[derive(Default)]
pub struct RuleCache {
    /// The generation (bumped by each invalidation) and the snapshot.
    snapshot: Mutex<(u64, Option<Taken>)>,
    compiled: CompiledTemplates,
}

impl RuleCache {
    /// How long a snapshot is used before the store is read again.
    pub const FRESH: Duration = Duration::from_secs(1);

    /// Forgets the snapshot (this node changed a rule or template).
    pub fn invalidate(&self) {
        let mut slot = self.snapshot.lock().expect("rule cache");
        slot.0 += 1;
        slot.1 = None;
    }

    /// The current snapshot.
    pub async fn current(&self, store: &SharedStore) -> belfry_store::Result<Arc<RuleSnapshot>> {
        let generation = {
            let slot = self.snapshot.lock().expect("rule cache");
            if let Some((at, s)) = slot.1.as_ref()
                && at.elapsed() < Self::FRESH
            {
                return Ok(s.clone());
            }
            slot.0
        };
        let read_at = Instant::now();
        let mut rules: HashMap<String, Vec<(String, RuleDef)>> = HashMap::new();
        for d in store.list_documents(DocKind::Rule).await? {
            match serde_json::from_str::<RuleDef>(&d.doc) {
                Ok(def) if def.enabled => rules
                    .entry(def.event.clone())
                    .or_default()
                    .push((d.id, def)),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(rule = %d.id, error = %e, "a stored rule does not parse: left out")
                }
            }
        }
        let mut templates = HashMap::new();
        for d in store.list_documents(DocKind::Template).await? {
            let compiled = match self.compiled.get(&d.id, &d.doc) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(template = %d.id, error = %e, "a stored template does not parse");
                    None
                }
            };
            templates.insert(d.id, compiled);
        }
        let snapshot = Arc::new(RuleSnapshot {
            rules,
            templates,
            env: belfry_core::template::environment(),
        });
        let mut slot = self.snapshot.lock().expect("rule cache");
        // Not kept when a change came while it was read: it may be older
        // than the change (this event uses it, the next reads again).
        if slot.0 == generation {
            slot.1 = Some((read_at, snapshot.clone()));
        }
        Ok(snapshot)
    }
}

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
