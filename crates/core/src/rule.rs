//! Rules (S8): what an event of the host application turns into. A rule
//! names the event type it handles, an optional condition, the recipients
//! (user ids written literally or as `{{ expression }}` over the event —
//! one id or a list of ids —, groups, the entity's subscribers, the
//! entity's creator), the category, the template and the stack key. The
//! condition and recipient expressions are minijinja expressions, checked
//! when the rule is saved and evaluated with the templates' fuel limit and
//! no file or network access. The actor is never a recipient.

use crate::ids::{Category, GroupId, UserId};
use crate::template::environment;
use crate::validation::ValidationErrors;
use minijinja::{Environment, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub mod limits {
    /// Recipient entries (users or groups) of one rule.
    pub const ENTRIES: usize = 50;
    /// Characters of one expression.
    pub const EXPRESSION_CHARS: usize = 2_000;
    /// Users one rule may address for one event (after expanding lists).
    pub const RECIPIENTS: usize = 1_000;
}

/// Whom a rule addresses, as an administrator writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleTargets {
    /// User ids, or `{{ expression }}` giving an id or a list of ids
    /// (`{{ data.assignee }}`, `{{ data.mentions }}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group ids (broadcasts), or `{{ expression }}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Everyone who follows the event's entity.
    #[serde(default)]
    pub entity_subscribers: bool,
    /// The entity's creator (`entity.creator` of the event).
    #[serde(default)]
    pub creator: bool,
}

/// `PUT /v1/rules/{id}`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    /// The event type it handles, e.g. `ticket.assigned`.
    pub event: Option<String>,
    /// A condition (`data.priority == "high"`); null: always.
    pub when: Option<String>,
    pub to: Option<RuleTargets>,
    pub category: Option<String>,
    /// The template's id.
    pub template: Option<String>,
    /// A template for the stack key, e.g. `mention:{{ entity.id }}`.
    pub stack_key: Option<String>,
    /// Who then follows the entity: `actor`, `recipients`.
    pub subscribe: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleDef {
    pub event: String,
    pub when: Option<String>,
    pub to: RuleTargets,
    pub category: Option<String>,
    pub template: String,
    pub stack_key: Option<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
    pub enabled: bool,
}

/// An event type: like a category id (`[a-z0-9._-]`, at most 64).
pub fn event_type(value: &str) -> Result<String, String> {
    Category::parse(value).map(Category::into_string)
}

/// The expression inside `{{ … }}`, or None for a literal.
fn expression(entry: &str) -> Option<&str> {
    let t = entry.trim();
    t.strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .map(str::trim)
}

fn check_expression(env: &Environment<'_>, source: &str) -> Result<(), String> {
    if source.chars().count() > limits::EXPRESSION_CHARS {
        return Err(format!(
            "is longer than {} characters",
            limits::EXPRESSION_CHARS
        ));
    }
    env.compile_expression(source)
        .map(|_| ())
        .map_err(|e| format!("does not parse: {}", e.detail().unwrap_or(&e.to_string())))
}

impl RuleRequest {
    /// Checks the rule; expressions and the stack key template must parse.
    pub fn validate(self) -> Result<RuleDef, ValidationErrors> {
        let env = environment();
        let mut errors = ValidationErrors::new();
        let event = match self.event {
            Some(e) => errors.take("event", event_type(&e)),
            None => {
                errors.add(
                    "event",
                    "is required: the event type, e.g. \"ticket.assigned\"",
                );
                None
            }
        };
        if let Some(w) = &self.when {
            errors.take("when", check_expression(&env, w));
        }
        let to = self.to.unwrap_or_default();
        if to.users.is_empty() && to.groups.is_empty() && !to.entity_subscribers && !to.creator {
            errors.add(
                "to",
                "names nobody: give users, groups, entity_subscribers or creator",
            );
        }
        for (kind, list) in [("users", &to.users), ("groups", &to.groups)] {
            if list.len() > limits::ENTRIES {
                errors.add(
                    format!("to.{kind}"),
                    format!(
                        "has {} entries; at most {} are allowed",
                        list.len(),
                        limits::ENTRIES
                    ),
                );
                continue;
            }
            for (i, entry) in list.iter().enumerate() {
                let field = format!("to.{kind}[{i}]");
                match expression(entry) {
                    Some(expr) => {
                        errors.take(&field, check_expression(&env, expr));
                    }
                    None if kind == "users" => {
                        errors.take(&field, UserId::parse(entry).map(|_| ()));
                    }
                    None => {
                        errors.take(&field, GroupId::parse(entry).map(|_| ()));
                    }
                }
            }
        }
        let category = self
            .category
            .and_then(|c| errors.take("category", Category::parse(&c).map(Category::into_string)));
        let template = match self.template {
            Some(t) => errors.take("template", event_type(&t)),
            None => {
                errors.add(
                    "template",
                    "is required: the id of a template (PUT /v1/templates/{id})",
                );
                None
            }
        };
        if let Some(k) = &self.stack_key
            && let Err(e) = env.template_from_str(k)
        {
            errors.add(
                "stack_key",
                format!("does not parse: {}", e.detail().unwrap_or(&e.to_string())),
            );
        }
        let subscribe = self.subscribe.unwrap_or_default();
        for (i, s) in subscribe.iter().enumerate() {
            if s != "actor" && s != "recipients" {
                errors.add(
                    format!("subscribe[{i}]"),
                    format!("'{}' is not actor or recipients", s.escape_debug()),
                );
            }
        }
        match (event, template) {
            (Some(event), Some(template)) if errors.is_empty() => Ok(RuleDef {
                event,
                when: self.when,
                to,
                category,
                template,
                stack_key: self.stack_key,
                subscribe,
                enabled: self.enabled.unwrap_or(true),
            }),
            _ => Err(errors),
        }
    }
}

/// Whom a rule addresses for one event, after evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressed {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub entity_subscribers: bool,
}

fn ids_of(v: &Value, out: &mut BTreeSet<String>) -> Result<(), String> {
    if v.is_undefined() || v.is_none() {
        return Ok(());
    }
    if let Some(s) = v.as_str() {
        if !s.is_empty() {
            out.insert(s.to_string());
        }
        return Ok(());
    }
    if v.kind() == minijinja::value::ValueKind::Number {
        out.insert(v.to_string());
        return Ok(());
    }
    if v.kind() == minijinja::value::ValueKind::Seq {
        for item in v.try_iter().map_err(|e| e.to_string())? {
            ids_of(&item, out)?;
        }
        return Ok(());
    }
    Err(format!(
        "gave {} ({}), not an id or a list of ids",
        v,
        v.kind()
    ))
}

impl RuleDef {
    /// Whether the condition holds for the event `ctx`.
    pub fn applies(&self, env: &Environment<'_>, ctx: &Value) -> Result<bool, String> {
        match &self.when {
            None => Ok(true),
            Some(w) => env
                .compile_expression(w)
                .and_then(|e| e.eval(ctx))
                .map(|v| v.is_true())
                .map_err(|e| format!("when: {}", e.detail().unwrap_or(&e.to_string()))),
        }
    }

    /// Evaluates the recipients; the actor (`actor`) is removed.
    pub fn addressed(
        &self,
        env: &Environment<'_>,
        ctx: &Value,
        actor: Option<&str>,
        creator: Option<&str>,
    ) -> Result<Addressed, String> {
        let mut out = Addressed {
            entity_subscribers: self.to.entity_subscribers,
            ..Addressed::default()
        };
        for (kind, list, set) in [
            ("users", &self.to.users, &mut out.users),
            ("groups", &self.to.groups, &mut out.groups),
        ] {
            for (i, entry) in list.iter().enumerate() {
                match expression(entry) {
                    None => {
                        set.insert(entry.clone());
                    }
                    Some(expr) => {
                        let v = env
                            .compile_expression(expr)
                            .and_then(|e| e.eval(ctx))
                            .map_err(|e| {
                                format!("to.{kind}[{i}]: {}", e.detail().unwrap_or(&e.to_string()))
                            })?;
                        ids_of(&v, set).map_err(|e| format!("to.{kind}[{i}] {e}"))?;
                    }
                }
            }
        }
        if self.to.creator
            && let Some(c) = creator
        {
            out.users.insert(c.to_string());
        }
        if let Some(a) = actor {
            out.users.remove(a);
        }
        if out.users.len() > limits::RECIPIENTS {
            return Err(format!(
                "addresses {} users; at most {} per event",
                out.users.len(),
                limits::RECIPIENTS
            ));
        }
        Ok(out)
    }

    /// The stack key for the event, if the rule has one (empty: none).
    pub fn stack_key(&self, env: &Environment<'_>, ctx: &Value) -> Result<Option<String>, String> {
        let Some(k) = &self.stack_key else {
            return Ok(None);
        };
        let out = env
            .render_str(k, ctx)
            .map_err(|e| format!("stack_key: {}", e.detail().unwrap_or(&e.to_string())))?;
        let out = out.trim().to_string();
        Ok((!out.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rule(v: serde_json::Value) -> Result<RuleDef, ValidationErrors> {
        serde_json::from_value::<RuleRequest>(v).unwrap().validate()
    }

    fn ctx(v: serde_json::Value) -> Value {
        Value::from(minijinja::value::Serde(v))
    }

    #[test]
    fn recipients_from_data_without_the_actor() {
        let r = rule(json!({"event": "ticket.commented", "template": "t",
            "to": {"users": ["{{ data.assignee }}", "{{ data.mentions }}", "lead"], "creator": true},
            "when": "data.internal != true", "stack_key": "comment:{{ entity.id }}"}))
        .unwrap();
        let env = environment();
        let c = ctx(json!({"actor": {"id": "bo"}, "entity": {"id": "7"},
            "data": {"assignee": "ana", "mentions": ["bo", "cy", "ana"]}}));
        assert!(r.applies(&env, &c).unwrap());
        let a = r.addressed(&env, &c, Some("bo"), Some("dee")).unwrap();
        assert_eq!(
            a.users.into_iter().collect::<Vec<_>>(),
            ["ana", "cy", "dee", "lead"]
        );
        assert_eq!(r.stack_key(&env, &c).unwrap().as_deref(), Some("comment:7"));
        let internal = ctx(json!({"data": {"internal": true}}));
        assert!(!r.applies(&env, &internal).unwrap());
        // A missing field addresses nobody through that entry; a wrong type is an error.
        let a = r
            .addressed(&env, &ctx(json!({"data": {}})), None, None)
            .unwrap();
        assert_eq!(a.users.into_iter().collect::<Vec<_>>(), ["lead"]);
        let e = r
            .addressed(
                &env,
                &ctx(json!({"data": {"assignee": {"x": 1}}})),
                None,
                None,
            )
            .unwrap_err();
        assert!(e.starts_with("to.users[0]"), "{e}");
    }

    #[test]
    fn rules_are_checked_by_field() {
        let e = rule(json!({"event": "Bad Type", "when": "data.x ==", "to": {"users": ["{{ data. }}", "not valid id!"]},
            "stack_key": "{% if %}", "subscribe": ["everyone"]}))
        .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "event",
                "when",
                "to.users[0]",
                "to.users[1]",
                "template",
                "stack_key",
                "subscribe[0]"
            ]
        );
        let e = rule(json!({"event": "x", "template": "t"})).unwrap_err();
        assert_eq!(e.0[0].field, "to");
    }

    proptest! {
        /// Whatever the data, the actor is never among a rule's recipients.
        #[test]
        fn the_actor_is_never_a_recipient(
            actor in "[a-d]",
            assignee in "[a-d]",
            mentions in proptest::collection::vec("[a-d]", 0..6),
            creator in proptest::option::of("[a-d]"),
        ) {
            let r = rule(json!({"event": "e", "template": "t",
                "to": {"users": ["{{ data.assignee }}", "{{ data.mentions }}", "a"], "creator": true}})).unwrap();
            let c = ctx(json!({"data": {"assignee": assignee, "mentions": mentions}}));
            let a = r.addressed(&environment(), &c, Some(&actor), creator.as_deref()).unwrap();
            prop_assert!(!a.users.contains(&actor));
        }
    }
}
