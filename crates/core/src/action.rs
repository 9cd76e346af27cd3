//! Forms on callback actions (I7): what a producer may ask of a recipient
//! (text, textarea, select, checkbox and date fields), and the check of a
//! recipient's answer against it. A form is validated when the notification
//! is sent, so that an answer is only ever checked against a sound form; an
//! answer is checked field by field and every problem is reported at once,
//! by its path (`values.reason`).

use crate::validation::{self, ValidationErrors};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashSet;

pub mod limits {
    /// Fields of one form.
    pub const FIELDS: usize = 20;
    /// Options of one select field.
    pub const OPTIONS: usize = 50;
    /// A field's name (the key of its value in the answer).
    pub const NAME_CHARS: usize = 64;
    /// A field's or an option's label.
    pub const LABEL_CHARS: usize = 200;
    /// An option's value.
    pub const VALUE_CHARS: usize = 200;
    /// A text field's answer.
    pub const TEXT_CHARS: usize = 1_000;
    /// A textarea's answer.
    pub const TEXTAREA_CHARS: usize = 10_000;
}

/// A form as a producer writes it (inside a callback action).
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormRequest {
    pub fields: Option<Vec<FieldRequest>>,
}

/// One field of a form, as a producer writes it.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRequest {
    /// The key of the field's value in an answer: letters, digits, `_`, `-`.
    pub name: Option<String>,
    pub label: Option<String>,
    /// `text`, `textarea`, `select`, `checkbox` or `date`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// An answer must fill it in (a checkbox: must check it).
    pub required: Option<bool>,
    /// The choices of a `select` (and only of a select).
    pub options: Option<Vec<ChoiceRequest>>,
}

/// One choice of a select field, as a producer writes it.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoiceRequest {
    pub value: Option<String>,
    /// Shown to the recipient; the value when left out.
    pub label: Option<String>,
}

/// A validated form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Form {
    pub fields: Vec<Field>,
}

/// A validated field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Field {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
}

/// The kinds of field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// Several lines of text.
    Textarea,
    /// One of the field's options (its `value`).
    Select,
    /// true or false.
    Checkbox,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
}

impl FieldKind {
    fn parse(value: &str) -> Result<FieldKind, String> {
        match value {
            "text" => Ok(FieldKind::Text),
            "textarea" => Ok(FieldKind::Textarea),
            "select" => Ok(FieldKind::Select),
            "checkbox" => Ok(FieldKind::Checkbox),
            "date" => Ok(FieldKind::Date),
            other => Err(format!(
                "'{}' is not a field type; use text, textarea, select, checkbox or date",
                other.escape_debug()
            )),
        }
    }
}

/// A validated choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

fn field_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.chars().count() > limits::NAME_CHARS {
        return Err(format!("must be 1 to {} characters", limits::NAME_CHARS));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "'{}' may only contain letters, digits, '_' and '-'",
            value.escape_debug()
        ));
    }
    Ok(value.to_string())
}

/// Checks a form; its errors are recorded under `path` (e.g.
/// `actions[0].form`). None when it has errors.
pub fn validate_form(errors: &mut ValidationErrors, path: &str, req: FormRequest) -> Option<Form> {
    let before = errors.0.len();
    let fields = match req.fields {
        Some(f) if f.is_empty() => {
            errors.add(
                format!("{path}.fields"),
                "has no fields; leave the form out instead",
            );
            return None;
        }
        Some(f) if f.len() > limits::FIELDS => {
            errors.add(
                format!("{path}.fields"),
                format!(
                    "has {} fields; at most {} are allowed",
                    f.len(),
                    limits::FIELDS
                ),
            );
            return None;
        }
        Some(f) => f,
        None => {
            errors.add(format!("{path}.fields"), "is required: the form's fields");
            return None;
        }
    };
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(fields.len());
    for (i, f) in fields.into_iter().enumerate() {
        let at = |name: &str| format!("{path}.fields[{i}].{name}");
        let name = match f.name {
            Some(n) => errors.take(&at("name"), field_name(&n)),
            None => {
                errors.add(at("name"), "is required, e.g. \"reason\"");
                None
            }
        };
        if let Some(n) = &name
            && !names.insert(n.clone())
        {
            errors.add(at("name"), format!("'{n}' is used by two fields"));
        }
        let label = match f.label {
            Some(l) => errors.take(
                &at("label"),
                validation::text(&l, limits::LABEL_CHARS, true),
            ),
            None => {
                errors.add(at("label"), "is required");
                None
            }
        };
        let kind = match f.kind {
            Some(k) => errors.take(&at("type"), FieldKind::parse(&k)),
            None => {
                errors.add(
                    at("type"),
                    "is required: text, textarea, select, checkbox or date",
                );
                None
            }
        };
        let options = match (kind, f.options) {
            (Some(FieldKind::Select), None) => {
                errors.add(at("options"), "is required for a select field");
                Vec::new()
            }
            (Some(FieldKind::Select), Some(o)) if o.is_empty() => {
                errors.add(
                    at("options"),
                    "is empty; a select needs at least one option",
                );
                Vec::new()
            }
            (Some(FieldKind::Select), Some(o)) if o.len() > limits::OPTIONS => {
                errors.add(
                    at("options"),
                    format!(
                        "has {} options; at most {} are allowed",
                        o.len(),
                        limits::OPTIONS
                    ),
                );
                Vec::new()
            }
            (Some(FieldKind::Select), Some(o)) => {
                let mut values = HashSet::new();
                let mut choices = Vec::with_capacity(o.len());
                for (j, c) in o.into_iter().enumerate() {
                    let at = |name: &str| format!("{path}.fields[{i}].options[{j}].{name}");
                    let value = match c.value {
                        Some(v) => errors.take(
                            &at("value"),
                            validation::text(&v, limits::VALUE_CHARS, true),
                        ),
                        None => {
                            errors.add(at("value"), "is required");
                            None
                        }
                    };
                    if let Some(v) = &value
                        && !values.insert(v.clone())
                    {
                        errors.add(at("value"), format!("'{v}' is used by two options"));
                    }
                    let label = match c.label {
                        Some(l) => errors.take(
                            &at("label"),
                            validation::text(&l, limits::LABEL_CHARS, true),
                        ),
                        None => value.clone(),
                    };
                    if let (Some(value), Some(label)) = (value, label) {
                        choices.push(Choice { value, label });
                    }
                }
                choices
            }
            (Some(_), Some(_)) => {
                errors.add(at("options"), "is only for select fields");
                Vec::new()
            }
            (_, None) | (None, Some(_)) => Vec::new(),
        };
        if let (Some(name), Some(label), Some(kind)) = (name, label, kind) {
            out.push(Field {
                name,
                label,
                kind,
                required: f.required.unwrap_or(false),
                options,
            });
        }
    }
    (errors.0.len() == before).then_some(Form { fields: out })
}

/// Checks a recipient's answer (`values`, a JSON object or absent) against
/// the action's form (None: an action without a form takes no values).
/// Returns the values to keep: the form's fields that were filled in,
/// text trimmed. Errors are reported under `values.<field>`.
pub fn check_answer(
    form: Option<&Form>,
    values: Option<Value>,
) -> Result<Map<String, Value>, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let mut given = match values {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ValidationErrors::single(
                "values",
                "must be an object of the form's field names and their values",
            ));
        }
    };
    let fields: &[Field] = form.map(|f| f.fields.as_slice()).unwrap_or_default();
    let mut out = Map::new();
    for field in fields {
        let at = format!("values.{}", field.name);
        let value = given.remove(&field.name).unwrap_or(Value::Null);
        let kept = match (field.kind, value) {
            (_, Value::Null) => None,
            (FieldKind::Text | FieldKind::Textarea, Value::String(s)) => {
                let max = if field.kind == FieldKind::Text {
                    limits::TEXT_CHARS
                } else {
                    limits::TEXTAREA_CHARS
                };
                let s = s.trim();
                if s.chars().count() > max {
                    errors.add(&at, format!("is longer than {max} characters"));
                    None
                } else if field.kind == FieldKind::Text && s.contains(['\n', '\r']) {
                    errors.add(&at, "is one line: it may not contain line breaks");
                    None
                } else if s.is_empty() {
                    None
                } else {
                    Some(Value::String(s.to_string()))
                }
            }
            (FieldKind::Select, Value::String(s)) => {
                if field.options.iter().any(|c| c.value == s) {
                    Some(Value::String(s))
                } else {
                    let allowed: Vec<&str> =
                        field.options.iter().map(|c| c.value.as_str()).collect();
                    errors.add(
                        &at,
                        format!(
                            "'{}' is not one of the options ({})",
                            s.escape_debug(),
                            allowed.join(", ")
                        ),
                    );
                    None
                }
            }
            (FieldKind::Checkbox, Value::Bool(b)) => {
                if field.required && !b {
                    errors.add(&at, "must be checked");
                }
                Some(Value::Bool(b))
            }
            (FieldKind::Date, Value::String(s)) => match s.parse::<jiff::civil::Date>() {
                Ok(d) if s.len() == 10 => Some(Value::String(d.to_string())),
                _ => {
                    errors.add(
                        &at,
                        format!("'{}' is not a date; write YYYY-MM-DD", s.escape_debug()),
                    );
                    None
                }
            },
            (kind, _) => {
                errors.add(
                    &at,
                    match kind {
                        FieldKind::Checkbox => "must be true or false",
                        FieldKind::Date => "must be a date string, YYYY-MM-DD",
                        _ => "must be a string",
                    },
                );
                None
            }
        };
        match kept {
            Some(v) => {
                out.insert(field.name.clone(), v);
            }
            None if field.required && !errors.0.iter().any(|e| e.field == at) => {
                errors.add(&at, "is required");
            }
            None => {}
        }
    }
    let mut unknown: Vec<String> = given.into_iter().map(|(k, _)| k).collect();
    unknown.sort();
    for key in unknown {
        errors.add(
            format!("values.{key}"),
            if fields.is_empty() {
                "this action has no form: send no values".to_string()
            } else {
                "is not a field of this action's form".to_string()
            },
        );
    }
    errors.finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(fields: Value) -> Result<Form, ValidationErrors> {
        let req: FormRequest = serde_json::from_value(json!({ "fields": fields })).unwrap();
        let mut errors = ValidationErrors::new();
        let form = validate_form(&mut errors, "actions[0].form", req);
        errors.finish(form.unwrap_or(Form { fields: vec![] }))
    }

    fn approval() -> Form {
        form(json!([
            {"name": "decision", "label": "Decision", "type": "select", "required": true,
             "options": [{"value": "yes", "label": "Approve"}, {"value": "no"}]},
            {"name": "reason", "label": "Reason", "type": "textarea"},
            {"name": "ok", "label": "I checked the budget", "type": "checkbox", "required": true},
            {"name": "from", "label": "From", "type": "date"},
            {"name": "ref", "label": "Reference", "type": "text"}
        ]))
        .unwrap()
    }

    fn fields_of(e: ValidationErrors) -> Vec<String> {
        e.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_sound_form_is_kept_with_option_labels_defaulted() {
        let f = approval();
        assert_eq!(f.fields.len(), 5);
        assert_eq!(f.fields[0].options[1].label, "no");
        assert!(f.fields[0].required);
        assert!(!f.fields[1].required);
    }

    #[test]
    fn bad_forms_are_reported_by_path() {
        let e = form(json!([
            {"name": "a", "label": "A", "type": "radio"},
            {"name": "a", "label": "B", "type": "text"},
            {"name": "s", "label": "S", "type": "select"},
            {"name": "t", "label": "T", "type": "text", "options": [{"value": "x"}]},
            {"name": "bad name", "label": "X", "type": "text"},
            {"label": "no name", "type": "date"},
            {"name": "dup", "label": "D", "type": "select", "options": [{"value": "x"}, {"value": "x"}]}
        ]))
        .unwrap_err();
        assert_eq!(
            fields_of(e),
            [
                "actions[0].form.fields[0].type",
                "actions[0].form.fields[1].name",
                "actions[0].form.fields[2].options",
                "actions[0].form.fields[3].options",
                "actions[0].form.fields[4].name",
                "actions[0].form.fields[5].name",
                "actions[0].form.fields[6].options[1].value",
            ]
        );
        assert_eq!(
            fields_of(form(json!([])).unwrap_err()),
            ["actions[0].form.fields"]
        );
    }

    #[test]
    fn a_good_answer_keeps_the_filled_fields() {
        let out = check_answer(
            Some(&approval()),
            Some(json!({"decision": "yes", "reason": "  fine  ", "ok": true, "from": "2026-12-24", "ref": ""})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"decision": "yes", "reason": "fine", "ok": true, "from": "2026-12-24"})
        );
    }

    #[test]
    fn a_bad_answer_names_every_field() {
        let e = check_answer(
            Some(&approval()),
            Some(json!({"decision": "maybe", "ok": false, "from": "24.12.2026", "ref": "a\nb", "extra": 1})),
        )
        .unwrap_err();
        assert_eq!(
            fields_of(e.clone()),
            [
                "values.decision",
                "values.ok",
                "values.from",
                "values.ref",
                "values.extra"
            ]
        );
        assert!(e.0[0].message.contains("yes, no"), "{:?}", e.0[0]);
        let e = check_answer(Some(&approval()), None).unwrap_err();
        assert_eq!(fields_of(e), ["values.decision", "values.ok"]);
        let e = check_answer(
            Some(&approval()),
            Some(json!({"decision": 1, "ok": "yes", "from": 3})),
        )
        .unwrap_err();
        assert_eq!(
            fields_of(e),
            ["values.decision", "values.ok", "values.from"]
        );
        let e = check_answer(Some(&approval()), Some(json!(["yes"]))).unwrap_err();
        assert_eq!(fields_of(e), ["values"]);
        let e = check_answer(
            Some(&approval()),
            Some(json!({"decision": "yes", "ok": true, "from": "2026-02-30"})),
        )
        .unwrap_err();
        assert_eq!(fields_of(e), ["values.from"]);
    }

    #[test]
    fn an_action_without_a_form_takes_no_values() {
        assert!(check_answer(None, None).unwrap().is_empty());
        assert!(check_answer(None, Some(json!({}))).unwrap().is_empty());
        let e = check_answer(None, Some(json!({"x": 1}))).unwrap_err();
        assert_eq!(fields_of(e), ["values.x"]);
    }
}
