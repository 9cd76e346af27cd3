//! Rules and templates as a whole (issue 16): the built-in starter set,
//! installed once into a new database, and the files of
//! `belfry rules export|import`: one pretty JSON document per rule and
//! template, in the form `PUT /v1/rules/{id}` and `PUT /v1/templates/{id}`
//! take, checked by the same code as those routes and applied all or
//! nothing.

use belfry_core::rule::{RuleDef, RuleRequest};
use belfry_core::template::{TemplateDef, TemplateRefused, TemplateRequest};
use belfry_core::{Category, FieldError, Millis};
use belfry_store::{DocKind, NewDocument, SharedStore};
use std::collections::{BTreeMap, BTreeSet};

/// Installs the starter rules, templates and their categories unless this
/// database already had them (deleted or edited ones stay so); true when
/// this call installed them. Safe on several nodes starting at once.
pub async fn install_starter(store: &SharedStore, now: Millis) -> anyhow::Result<bool> {
    let mut docs = Vec::new();
    for (id, def) in belfry_core::starter::templates() {
        docs.push(NewDocument {
            kind: DocKind::Template,
            id,
            doc: serde_json::to_string(&def)?,
        });
    }
    for (id, def) in belfry_core::starter::rules() {
        docs.push(NewDocument {
            kind: DocKind::Rule,
            id,
            doc: serde_json::to_string(&def)?,
        });
    }
    let installed = store
        .install_documents_once(belfry_core::starter::MARKER, docs, now)
        .await?;
    if installed {
        // Its categories beyond the built-in ones. (A send through a rule
        // creates a missing category anyway: this gives it its name.)
        for c in belfry_core::starter::categories() {
            if store.get_category(&c.id).await?.is_none() {
                store.put_category(c, now).await?;
            }
        }
        tracing::info!(
            "installed the starter rules and templates (English and German); edit, disable or delete them with the rules and templates API"
        );
    }
    Ok(installed)
}

/// Every rule and template, each as the text of its file: pretty JSON
/// with a final newline, fields in a fixed order, locales sorted, so that
/// an unchanged set exports byte for byte the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleFiles {
    /// Id → file text.
    pub rules: BTreeMap<String, String>,
    pub templates: BTreeMap<String, String>,
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a document serialises");
    s.push('\n');
    s
}

/// The stored rules and templates as files.
pub async fn export(store: &SharedStore) -> anyhow::Result<RuleFiles> {
    let mut out = RuleFiles::default();
    for d in store.list_documents(DocKind::Rule).await? {
        let def: RuleDef = serde_json::from_str(&d.doc)
            .map_err(|e| anyhow::anyhow!("stored rule {}: {e}", d.id))?;
        out.rules.insert(d.id, pretty(&def));
    }
    for d in store.list_documents(DocKind::Template).await? {
        let def: TemplateDef = serde_json::from_str(&d.doc)
            .map_err(|e| anyhow::anyhow!("stored template {}: {e}", d.id))?;
        out.templates.insert(d.id, pretty(&def));
    }
    Ok(out)
}

/// A rule's or template's id, checked like the routes' path.
pub fn document_id(id: &str) -> Result<String, String> {
    Category::parse(id).map(Category::into_string)
}

/// Checks a template as `PUT /v1/templates/{id}` does; each error as
/// `field: message` (a text that does not parse with its line and column).
pub fn check_template(text: &str) -> Result<TemplateDef, Vec<String>> {
    let req: TemplateRequest = serde_json::from_str(text).map_err(|e| vec![e.to_string()])?;
    req.validate().map_err(|e| match e {
        TemplateRefused::Invalid(errors) => messages(&errors.0),
        TemplateRefused::Syntax(errors) => errors
            .iter()
            .map(|e| {
                format!(
                    "locales.{}.{}: line {}, column {}: {}",
                    e.locale, e.field, e.line, e.column, e.message
                )
            })
            .collect(),
    })
}

/// Checks a rule as `PUT /v1/rules/{id}` does (without its references).
pub fn check_rule(text: &str) -> Result<RuleDef, Vec<String>> {
    let req: RuleRequest = serde_json::from_str(text).map_err(|e| vec![e.to_string()])?;
    req.validate().map_err(|e| messages(&e.0))
}

fn messages(errors: &[FieldError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect()
}

/// The error of a rule naming a template that does not exist (also 422
/// `unknown_template` of `PUT /v1/rules/{id}`).
pub fn unknown_template(template: &str) -> FieldError {
    FieldError {
        field: "template".into(),
        message: format!("'{template}' does not exist"),
    }
}

/// The error of a rule naming a category that does not exist.
pub fn unknown_category(category: &str) -> FieldError {
    FieldError {
        field: "category".into(),
        message: format!(
            "'{category}' does not exist; create it with PUT /v1/categories/{category}"
        ),
    }
}

/// What an import would do, once every file checked out.
#[derive(Debug, Clone, Default)]
pub struct ImportPlan {
    /// Rules and templates new or different from what is stored.
    pub write: Vec<NewDocument>,
    /// Stored rules and templates no file names (with `prune`).
    pub delete: Vec<(DocKind, String)>,
    /// Files equal to what is stored.
    pub unchanged: usize,
}

/// One file that is wrong, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// `rules/<id>.json` or `templates/<id>.json`.
    pub file: String,
    pub errors: Vec<String>,
}

/// Checks every file (templates must parse, rules must be valid and name
/// templates and categories that exist — in the files or stored, unless
/// pruned); every problem of every file, or the plan.
pub async fn plan_import(
    store: &SharedStore,
    files: &RuleFiles,
    prune: bool,
) -> anyhow::Result<Result<ImportPlan, Vec<FileProblem>>> {
    let mut problems = Vec::new();
    let mut templates = BTreeMap::new();
    for (id, text) in &files.templates {
        let file = format!("templates/{id}.json");
        let mut errors = Vec::new();
        if let Err(e) = document_id(id) {
            errors.push(format!("the file name is not a valid id: {e}"));
        }
        match check_template(text) {
            Ok(def) if errors.is_empty() => {
                templates.insert(id.clone(), def);
            }
            Ok(_) => {}
            Err(e) => errors.extend(e),
        }
        if !errors.is_empty() {
            problems.push(FileProblem { file, errors });
        }
    }
    let stored_templates: BTreeMap<String, String> = store
        .list_documents(DocKind::Template)
        .await?
        .into_iter()
        .map(|d| (d.id, d.doc))
        .collect();
    let stored_rules: BTreeMap<String, String> = store
        .list_documents(DocKind::Rule)
        .await?
        .into_iter()
        .map(|d| (d.id, d.doc))
        .collect();
    let categories: BTreeSet<String> = store
        .list_categories()
        .await?
        .into_iter()
        .map(|c| c.id.into_string())
        .collect();
    let mut rules = BTreeMap::new();
    for (id, text) in &files.rules {
        let file = format!("rules/{id}.json");
        let mut errors = Vec::new();
        if let Err(e) = document_id(id) {
            errors.push(format!("the file name is not a valid id: {e}"));
        }
        match check_rule(text) {
            Ok(def) => {
                let template_known = files.templates.contains_key(&def.template)
                    || (!prune && stored_templates.contains_key(&def.template));
                if !template_known {
                    let e = unknown_template(&def.template);
                    errors.push(format!(
                        "{}: {}: add templates/{}.json",
                        e.field, e.message, def.template
                    ));
                }
                if let Some(c) = &def.category
                    && !categories.contains(c)
                {
                    let e = unknown_category(c);
                    errors.push(format!("{}: {}", e.field, e.message));
                }
                if errors.is_empty() {
                    rules.insert(id.clone(), def);
                }
            }
            Err(e) => errors.extend(e),
        }
        if !errors.is_empty() {
            problems.push(FileProblem { file, errors });
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let mut plan = ImportPlan::default();
    let same = |stored: Option<&String>, new: &serde_json::Value| {
        stored
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .is_some_and(|s| &s == new)
    };
    for (id, def) in &templates {
        let v = serde_json::to_value(def)?;
        if same(stored_templates.get(id), &v) {
            plan.unchanged += 1;
        } else {
            plan.write.push(NewDocument {
                kind: DocKind::Template,
                id: id.clone(),
                doc: v.to_string(),
            });
        }
    }
    for (id, def) in &rules {
        let v = serde_json::to_value(def)?;
        if same(stored_rules.get(id), &v) {
            plan.unchanged += 1;
        } else {
            plan.write.push(NewDocument {
                kind: DocKind::Rule,
                id: id.clone(),
                doc: v.to_string(),
            });
        }
    }
    if prune {
        for id in stored_rules.keys().filter(|id| !rules.contains_key(*id)) {
            plan.delete.push((DocKind::Rule, id.clone()));
        }
        for id in stored_templates
            .keys()
            .filter(|id| !templates.contains_key(*id))
        {
            plan.delete.push((DocKind::Template, id.clone()));
        }
    }
    Ok(Ok(plan))
}

/// Applies a plan in one transaction.
pub async fn apply_import(
    store: &SharedStore,
    plan: ImportPlan,
    now: Millis,
) -> anyhow::Result<()> {
    store.write_documents(plan.write, plan.delete, now).await?;
    Ok(())
}
