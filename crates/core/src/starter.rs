//! The built-in starter rules and templates (issue 16), English and
//! German, for the help-desk cases of the seeds: a ticket assigned (to
//! `data.assignee`), an @mention (each user in `data.mentions`, stacked
//! per ticket), a customer reply and a reopened ticket (to `data.assignee`
//! and the ticket's subscribers), and a record created or changed (to the
//! group in `data.group`). They are data: `starter/rules/<id>.json` and
//! `starter/templates/<id>.json`, in the format `belfry rules export`
//! writes and `PUT /v1/rules/{id}` / `PUT /v1/templates/{id}` take. The
//! server installs them once into a new database; administrators edit,
//! disable or delete them like any other.

use crate::category::{CategoryDef, CategoryDefaults};
use crate::ids::Category;
use crate::rule::{RuleDef, RuleRequest};
use crate::template::{TemplateDef, TemplateRequest};

/// The marker a database keeps once the starter set was installed.
pub const MARKER: &str = "installed:starter-rules:1";

/// (id, file) of every starter template.
pub const TEMPLATE_FILES: [(&str, &str); 6] = [
    (
        "ticket.assigned",
        include_str!("starter/templates/ticket.assigned.json"),
    ),
    (
        "ticket.mentioned",
        include_str!("starter/templates/ticket.mentioned.json"),
    ),
    (
        "ticket.customer_replied",
        include_str!("starter/templates/ticket.customer_replied.json"),
    ),
    (
        "ticket.reopened",
        include_str!("starter/templates/ticket.reopened.json"),
    ),
    (
        "record.created",
        include_str!("starter/templates/record.created.json"),
    ),
    (
        "record.changed",
        include_str!("starter/templates/record.changed.json"),
    ),
];

/// (id, file) of every starter rule.
pub const RULE_FILES: [(&str, &str); 6] = [
    (
        "ticket.assigned",
        include_str!("starter/rules/ticket.assigned.json"),
    ),
    (
        "ticket.mentioned",
        include_str!("starter/rules/ticket.mentioned.json"),
    ),
    (
        "ticket.customer_replied",
        include_str!("starter/rules/ticket.customer_replied.json"),
    ),
    (
        "ticket.reopened",
        include_str!("starter/rules/ticket.reopened.json"),
    ),
    (
        "record.created",
        include_str!("starter/rules/record.created.json"),
    ),
    (
        "record.changed",
        include_str!("starter/rules/record.changed.json"),
    ),
];

/// The starter templates, checked as `PUT /v1/templates/{id}` checks them.
pub fn templates() -> Vec<(String, TemplateDef)> {
    TEMPLATE_FILES
        .iter()
        .map(|(id, file)| {
            let req: TemplateRequest =
                serde_json::from_str(file).unwrap_or_else(|e| panic!("starter template {id}: {e}"));
            let def = req
                .validate()
                .unwrap_or_else(|e| panic!("starter template {id}: {e:?}"));
            (id.to_string(), def)
        })
        .collect()
}

/// The starter rules, checked as `PUT /v1/rules/{id}` checks them.
pub fn rules() -> Vec<(String, RuleDef)> {
    RULE_FILES
        .iter()
        .map(|(id, file)| {
            let req: RuleRequest =
                serde_json::from_str(file).unwrap_or_else(|e| panic!("starter rule {id}: {e}"));
            let def = req
                .validate()
                .unwrap_or_else(|e| panic!("starter rule {id}: {e:?}"));
            (id.to_string(), def)
        })
        .collect()
}

/// Categories the starter rules name beyond the built-in ones
/// ([`crate::category::builtin`]): created with them when missing.
pub fn categories() -> Vec<CategoryDef> {
    vec![CategoryDef {
        name: "Record changes".into(),
        icon: Some("record".into()),
        defaults: CategoryDefaults::default(),
        ..CategoryDef::new(Category::parse("record").expect("a valid id"))
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FIELDS, environment};
    use serde_json::json;

    #[test]
    fn every_file_is_valid_and_in_the_export_format() {
        let templates = templates();
        let rules = rules();
        for ((id, def), (_, file)) in templates.iter().zip(TEMPLATE_FILES) {
            // Byte for byte what `belfry rules export` writes.
            let mut pretty = serde_json::to_string_pretty(def).unwrap();
            pretty.push('\n');
            assert_eq!(pretty, file, "templates/{id}.json");
            for locale in ["en", "de"] {
                for field in FIELDS {
                    assert!(
                        def.locales[locale].get(field).is_some(),
                        "{id}: {locale}.{field} is missing"
                    );
                }
            }
        }
        let mut categories: Vec<String> = crate::category::builtin()
            .into_iter()
            .chain(self::categories())
            .map(|c| c.id.into_string())
            .collect();
        categories.sort();
        for ((id, def), (_, file)) in rules.iter().zip(RULE_FILES) {
            let mut pretty = serde_json::to_string_pretty(def).unwrap();
            pretty.push('\n');
            assert_eq!(pretty, file, "rules/{id}.json");
            assert!(
                templates.iter().any(|(t, _)| *t == def.template),
                "{id}: template {}",
                def.template
            );
            let c = def.category.as_ref().expect("a category");
            assert!(categories.binary_search(c).is_ok(), "{id}: category {c}");
        }
    }

    fn render(id: &str, locale: &str, ctx: serde_json::Value) -> crate::template::Rendered {
        let t = templates().into_iter().find(|(t, _)| t == id).unwrap().1;
        t.render_json(&environment(), Some(locale), &ctx).unwrap()
    }

    #[test]
    fn the_texts_read_well_in_both_languages() {
        let ctx = json!({
            "actor": {"id": "carl", "name": "Carl"},
            "entity": {"type": "ticket", "id": "7", "title": "#7 Printer jams", "url": "https://desk.example/t/7"},
            "data": {"assignee": "ana", "message": "Please call the <customer> back"}
        });
        let en = render("ticket.assigned", "en", ctx.clone());
        assert_eq!(en.title, "Carl assigned you a ticket: #7 Printer jams");
        assert_eq!(en.email_subject, "Assigned to you: #7 Printer jams");
        // Belfry's email layout adds the greeting, the link and the footer.
        assert_eq!(
            en.email_text.as_deref(),
            Some(
                "Carl assigned the ticket \"#7 Printer jams\" to you.\n\nPlease call the <customer> back"
            )
        );
        assert_eq!(
            en.email_html.as_deref(),
            Some(
                "<p>Carl assigned the ticket <strong>#7 Printer jams</strong> to you.</p>\n\
                 <blockquote>Please call the &lt;customer&gt; back</blockquote>"
            )
        );
        assert_eq!(en.push_title, "New ticket for you");
        assert_eq!(
            en.push_body.as_deref(),
            Some("Carl assigned #7 Printer jams to you")
        );
        // A chat message shows the title as its header and a link button.
        assert_eq!(en.chat, "Carl: “Please call the <customer> back”");
        let de = render("ticket.assigned", "de", ctx);
        assert_eq!(
            de.title,
            "Carl hat Ihnen ein Ticket zugewiesen: #7 Printer jams"
        );
        assert_eq!(
            de.email_text.as_deref(),
            Some(
                "Carl hat Ihnen das Ticket „#7 Printer jams“ zugewiesen.\n\nPlease call the <customer> back"
            )
        );
        assert_eq!(de.chat, "Carl: „Please call the <customer> back“");
        // Without a message, a name or a link.
        let bare =
            json!({"actor": {"id": "carl"}, "entity": {"type": "ticket", "id": "7"}, "data": {}});
        let en = render("ticket.assigned", "en", bare.clone());
        assert_eq!(en.title, "carl assigned you a ticket: 7");
        assert_eq!(en.body, None);
        assert_eq!(
            en.email_text.as_deref(),
            Some("carl assigned the ticket \"7\" to you.")
        );
        assert_eq!(en.chat, "carl assigned this ticket to you.");
        let de = render(
            "ticket.customer_replied",
            "de",
            json!({"entity": {"id": "7", "title": "#7"}}),
        );
        assert_eq!(de.title, "Die Kundin oder der Kunde hat auf #7 geantwortet");
        assert_eq!(
            de.push_body.as_deref(),
            Some("Die Kundin oder der Kunde hat geantwortet")
        );
        let changed = |changes: serde_json::Value| {
            render(
                "record.changed",
                "en",
                json!({"actor": {"name": "Ana"}, "entity": {"type": "order", "id": "1042", "title": "Order #1042"},
                "data": {"changes": changes}}),
            )
        };
        assert_eq!(
            changed(json!(["status", "total"])).body.as_deref(),
            Some("Changed: status, total")
        );
        assert_eq!(
            changed(json!("the address")).body.as_deref(),
            Some("Changed: the address")
        );
        assert_eq!(
            changed(json!(null)).push_body.as_deref(),
            Some("Ana made changes")
        );
        assert_eq!(changed(json!({"odd": 1})).title, "Ana changed Order #1042");
    }

    #[test]
    fn every_template_renders_whatever_the_data() {
        let odd = [
            json!({}),
            json!({"actor": null, "entity": null, "data": null}),
            json!({"data": {"message": 5, "comment": [1, 2], "changes": 3, "summary": {"a": 1}}}),
            json!({"actor": {"id": "x"}, "entity": {"id": "1"}, "data": {"changes": [{"a": 1}, null]}}),
        ];
        for (id, t) in templates() {
            for ctx in &odd {
                for locale in ["en", "de"] {
                    let r = t.render_json(&environment(), Some(locale), ctx);
                    assert!(r.is_ok(), "{id} {locale} {ctx}: {r:?}");
                }
            }
        }
    }

    use proptest::prelude::*;
    use serde_json::Value;

    /// Any JSON: null, booleans, numbers, short strings, lists and objects,
    /// nested.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-20i64..20).prop_map(Value::from),
            "[a-d0-9]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{1,9}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS_WITH_PEOPLE: [&str; 5] = ["assignee", "mentions", "group", "watchers", "owner"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever the data, and wherever the actor's id is put in it (as
        /// an id, in a list, in a nested list, as a number), no rule —
        /// the starter rules and one reading every field — addresses the
        /// actor. (Group and entity-subscriber broadcasts leave the actor
        /// out when they are stored: see the starter tests over HTTP.)
        #[test]
        fn the_actor_is_never_a_recipient_whatever_the_data(
            data in proptest::collection::btree_map("[a-z]{1,9}", any_json(), 0..6),
            actor in "[a-d0-9]{1,3}",
            placed in proptest::collection::vec((0..5usize, 0..4usize, any_json()), 0..5),
            creator_is_actor in any::<bool>(),
        ) {
            let mut data: serde_json::Map<String, Value> = data.into_iter().collect();
            for (field, how, other) in placed {
                let field = FIELDS_WITH_PEOPLE[field];
                let v = match how {
                    0 => json!(actor),
                    1 => json!([other, actor, "zed"]),
                    2 => json!([[actor], [other]]),
                    _ => actor.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(actor)),
                };
                data.insert(field.to_string(), v);
            }
            let ctx = crate::template::context(&json!({
                "actor": {"id": actor}, "entity": {"type": "ticket", "id": "7", "creator": actor},
                "data": data,
            }));
            let creator = if creator_is_actor { Some(actor.as_str()) } else { Some("zed") };
            let every_field = crate::rule::RuleRequest {
                event: Some("e".into()),
                template: Some("t".into()),
                to: Some(crate::rule::RuleTargets {
                    users: FIELDS_WITH_PEOPLE.iter().map(|f| format!("{{{{ data.{f} }}}}")).collect(),
                    groups: vec![],
                    entity_subscribers: true,
                    creator: true,
                }),
                ..Default::default()
            }
            .validate()
            .unwrap();
            let env = environment();
            for (id, rule) in rules().into_iter().chain([("every-field".to_string(), every_field)]) {
                // A rule may fail on odd data (it then sends nothing); when
                // it does not, the actor is not among its users.
                if let Ok(a) = rule.addressed(&env, &ctx, Some(&actor), creator) {
                    prop_assert!(!a.users.contains(&actor), "{}: {:?}", id, a.users);
                }
            }
        }
    }
}
