//! The built-in starter rules and templates over HTTP: installed once into
//! a new database, each one from event to inbox entries in the
//! recipients' languages, never the actor, and an administrator's edits
//! and deletions kept across restarts.

use crate::helpers::*;
use belfry_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn config() -> Config {
    Config {
        starter_rules: true,
        ..Config::default()
    }
}

async fn agents(app: &TestApp) {
    for (id, name, locale, groups) in [
        ("ana", "Ana", "en", json!(["sales"])),
        ("bo", "Bo", "de", json!(["sales"])),
        ("carl", "Carl", "en", json!(["sales"])),
        ("dora", "Dora", "de-AT", json!([])),
    ] {
        app.put_user(
            id,
            json!({"name": name, "locale": locale, "groups": groups}),
        )
        .await;
    }
}

async fn event(app: &TestApp, body: Value) -> Value {
    let r = app.admin(Method::POST, "/v1/events", Some(body)).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn ticket(id: &str, title: &str) -> Value {
    json!({"type": "ticket", "id": id, "title": title, "url": format!("https://desk.example/t/{id}")})
}

async fn items(app: &TestApp, user: &str) -> Vec<Value> {
    let t = app.token(user).await;
    app.inbox(&t, "").await["items"].as_array().unwrap().clone()
}

async fn ids(app: &TestApp, path: &str) -> Vec<String> {
    let list: Value = app
        .admin(Method::GET, path, None)
        .await
        .json()
        .await
        .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

const RULES: [&str; 6] = [
    "record.changed",
    "record.created",
    "ticket.assigned",
    "ticket.customer_replied",
    "ticket.mentioned",
    "ticket.reopened",
];

#[tokio::test]
async fn a_ticket_assigned_reaches_the_assignee_in_their_language_and_never_oneself() {
    let app = spawn_app_with(config()).await;
    agents(&app).await;
    assert_eq!(ids(&app, "/v1/rules").await, RULES);
    assert_eq!(ids(&app, "/v1/templates").await, RULES);

    let v = event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "carl", "name": "Carl"},
               "entity": ticket("7", "#7 Drucker streikt"), "data": {"assignee": "bo", "message": "Bitte heute noch"}}),
    )
    .await;
    assert_eq!(v["notifications"][0]["rule"], "ticket.assigned", "{v}");
    assert_eq!(v["notifications"][0]["locale"], "de");
    let bo = items(&app, "bo").await;
    assert_eq!(bo.len(), 1);
    assert_eq!(
        bo[0]["title"],
        "Carl hat Ihnen ein Ticket zugewiesen: #7 Drucker streikt"
    );
    assert_eq!(bo[0]["body"], "Bitte heute noch");
    assert_eq!(bo[0]["category"], "assignment");
    assert_eq!(bo[0]["url"], "https://desk.example/t/7");

    event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "bo", "name": "Bo"},
               "entity": ticket("8", "#8 Printer on fire"), "data": {"assignee": "ana"}}),
    )
    .await;
    let ana = items(&app, "ana").await;
    assert_eq!(
        ana[0]["title"],
        "Bo assigned you a ticket: #8 Printer on fire"
    );
    assert!(ana[0]["body"].is_null(), "no message, no body: {}", ana[0]);

    // Assigning a ticket to oneself tells nobody.
    let v = event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "carl", "name": "Carl"},
               "entity": ticket("9", "#9"), "data": {"assignee": "carl"}}),
    )
    .await;
    assert_eq!(v["notifications"], json!([]), "{v}");
    assert_eq!(v["skipped"][0]["reason"], "no recipients");
    assert!(items(&app, "carl").await.is_empty());
}

#[tokio::test]
async fn three_mentions_on_one_ticket_stack_per_agent_and_a_failing_rule_stops_nothing() {
    let app = spawn_app_with(config()).await;
    agents(&app).await;
    // A rule of the administrator's for the same event, failing on this data.
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/watchers",
            Some(
                json!({"event": "ticket.commented", "to": {"users": ["{{ data.watchers }}"]},
                        "template": "ticket.mentioned", "category": "mention"}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for n in 1..=3 {
        let v = event(
            &app,
            json!({"type": "ticket.commented", "actor": {"id": "carl", "name": "Carl"},
                   "entity": ticket("7", "#7 Printer"),
                   "data": {"mentions": ["ana", "dora", "carl"], "comment": format!("Comment {n}"),
                            "watchers": {"not": "ids"}}}),
        )
        .await;
        assert_eq!(v["rules"], 2);
        assert_eq!(
            v["notifications"].as_array().unwrap().len(),
            2,
            "one per language: {v}"
        );
        assert_eq!(v["skipped"][0]["rule"], "watchers");
        assert!(
            v["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("failed: to.users[0]"),
            "{v}"
        );
    }
    let ana = items(&app, "ana").await;
    assert_eq!(ana.len(), 1, "{ana:?}");
    assert_eq!(ana[0]["stack_count"], 3);
    assert_eq!(ana[0]["title"], "Carl mentioned you on #7 Printer");
    assert_eq!(ana[0]["body"], "Comment 3");
    assert_eq!(ana[0]["category"], "mention");
    let dora = items(&app, "dora").await;
    assert_eq!(dora.len(), 1, "{dora:?}");
    assert_eq!(dora[0]["stack_count"], 3);
    assert_eq!(dora[0]["title"], "Carl hat Sie in #7 Printer erwähnt");
    assert!(items(&app, "carl").await.is_empty(), "never the actor");
    // Another ticket is another stack.
    event(
        &app,
        json!({"type": "ticket.commented", "actor": {"id": "carl", "name": "Carl"},
               "entity": ticket("8", "#8"), "data": {"mentions": ["ana"]}}),
    )
    .await;
    assert_eq!(items(&app, "ana").await.len(), 2);
}

#[tokio::test]
async fn a_customer_reply_and_a_reopened_ticket_reach_the_assignee_and_the_subscribers() {
    let app = spawn_app_with(config()).await;
    agents(&app).await;
    // Assigning subscribes the assignee (bo) to the ticket; dora follows it too.
    event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "carl", "name": "Carl"},
               "entity": ticket("5", "#5 Refund"), "data": {"assignee": "bo"}}),
    )
    .await;
    let r = app
        .admin(Method::PUT, "/v1/subscriptions/ticket/5/users/dora", None)
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app
        .admin(Method::PUT, "/v1/subscriptions/ticket/5/users/ana", None)
        .await;
    assert!(r.status().is_success());

    let customer = json!({"id": "cust-1", "name": "Erika Muster"});
    let v = event(
        &app,
        json!({"type": "ticket.customer_replied", "actor": customer, "entity": ticket("5", "#5 Refund"),
               "data": {"assignee": "carl", "message": "Any news?"}}),
    )
    .await;
    assert_eq!(v["skipped"], json!([]), "{v}");
    let carl = items(&app, "carl").await;
    assert_eq!(carl[0]["title"], "Erika Muster replied to #5 Refund");
    assert_eq!(carl[0]["body"], "Any news?");
    assert_eq!(carl[0]["category"], "customer_reply");
    // The ticket's followers, each in their own language, once (bo, the
    // German assignee who follows the ticket, too).
    for (user, title) in [
        ("bo", "Erika Muster hat auf #5 Refund geantwortet"),
        ("dora", "Erika Muster hat auf #5 Refund geantwortet"),
        ("ana", "Erika Muster replied to #5 Refund"),
    ] {
        let replies: Vec<Value> = items(&app, user)
            .await
            .iter()
            .filter(|i| i["category"] == "customer_reply")
            .map(|i| i["title"].clone())
            .collect();
        assert_eq!(replies, [json!(title)], "{user}");
    }

    // Reopened by the customer, the assignee told in German; an agent
    // reopening it (ana, a subscriber) is not told of her own action.
    let v = event(
        &app,
        json!({"type": "ticket.reopened", "actor": customer, "entity": ticket("5", "#5 Refund"),
               "data": {"assignee": "bo"}}),
    )
    .await;
    assert_eq!(v["skipped"], json!([]), "{v}");
    let bo = items(&app, "bo").await;
    assert!(
        bo.iter().any(
            |i| i["title"] == "Erika Muster hat #5 Refund wieder geöffnet"
                && i["category"] == "reopened"
        ),
        "{bo:?}"
    );
    let before = items(&app, "ana").await.len();
    event(
        &app,
        json!({"type": "ticket.reopened", "actor": {"id": "ana", "name": "Ana"},
               "entity": ticket("5", "#5 Refund"), "data": {"assignee": "ana"}}),
    )
    .await;
    assert_eq!(items(&app, "ana").await.len(), before, "never the actor");
    assert!(
        items(&app, "dora")
            .await
            .iter()
            .any(|i| i["title"] == "Ana hat #5 Refund wieder geöffnet"),
        "dora follows the ticket and reads German"
    );
}

#[tokio::test]
async fn records_created_or_changed_reach_the_group_but_not_the_actor() {
    let app = spawn_app_with(config()).await;
    agents(&app).await;
    let order = json!({"type": "order", "id": "1042", "title": "Order #1042"});
    let v = event(
        &app,
        json!({"type": "record.created", "actor": {"id": "carl", "name": "Carl"}, "entity": order,
               "data": {"group": "sales"}}),
    )
    .await;
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1, "{v}");
    for user in ["ana", "bo"] {
        let i = items(&app, user).await;
        assert_eq!(i[0]["title"], "Carl created Order #1042", "{user}");
        assert_eq!(i[0]["category"], "record");
    }
    assert!(
        items(&app, "carl").await.is_empty(),
        "a member, but the actor"
    );
    assert!(items(&app, "dora").await.is_empty(), "not a member");
    for changes in [json!(["status"]), json!(["total", "address"])] {
        event(
            &app,
            json!({"type": "record.changed", "actor": {"id": "ana", "name": "Ana"}, "entity": order,
                   "data": {"group": "sales", "changes": changes}}),
        )
        .await;
    }
    let carl = items(&app, "carl").await;
    assert_eq!(carl.len(), 2, "{carl:?}");
    assert_eq!(carl[0]["title"], "Ana changed Order #1042");
    assert_eq!(carl[0]["body"], "Changed: total, address");
    assert_eq!(carl[1]["body"], "Changed: status");
    assert!(
        items(&app, "ana")
            .await
            .iter()
            .all(|i| i["title"] != "Ana changed Order #1042"),
        "never the actor"
    );
    // Without a group: nobody, and no error.
    let v = event(
        &app,
        json!({"type": "record.created", "actor": {"id": "carl"}, "entity": order}),
    )
    .await;
    assert_eq!(v["skipped"][0]["reason"], "no recipients", "{v}");
}

#[tokio::test]
async fn edited_disabled_and_deleted_starter_rules_stay_so_after_a_restart() {
    let app = spawn_app_with(config()).await;
    agents(&app).await;
    let r = app
        .admin(Method::DELETE, "/v1/rules/record.created", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .admin(Method::DELETE, "/v1/templates/record.created", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut rule: Value = app
        .admin(Method::GET, "/v1/rules/ticket.reopened", None)
        .await
        .json()
        .await
        .unwrap();
    for k in ["id", "created_at", "updated_at"] {
        rule.as_object_mut().unwrap().remove(k);
    }
    rule["enabled"] = json!(false);
    let r = app
        .admin(Method::PUT, "/v1/rules/ticket.reopened", Some(rule))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/ticket.assigned",
            Some(json!({"locales": {"en": {"title": "Yours now: {{ entity.title }}"}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let app = app.restart().await;
    let rules = ids(&app, "/v1/rules").await;
    assert!(!rules.contains(&"record.created".to_string()), "{rules:?}");
    assert_eq!(rules.len(), 5);
    assert!(
        !ids(&app, "/v1/templates")
            .await
            .contains(&"record.created".to_string())
    );
    let v = event(
        &app,
        json!({"type": "ticket.reopened", "actor": {"id": "carl"}, "entity": ticket("1", "#1"),
               "data": {"assignee": "ana"}}),
    )
    .await;
    assert_eq!(v["rules"], 0, "disabled: {v}");
    event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "carl"}, "entity": ticket("1", "#1"),
               "data": {"assignee": "bo"}}),
    )
    .await;
    assert_eq!(items(&app, "bo").await[0]["title"], "Yours now: #1");
}

#[tokio::test]
async fn the_starter_set_is_installed_once_by_one_of_several_nodes_starting_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::fresh(&dir).await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(db.open().await);
    }
    let now = belfry_core::Millis(1_700_000_000_000);
    let installed = futures::future::join_all(
        stores
            .iter()
            .map(|s| belfry_server::rulebook::install_starter(s, now)),
    )
    .await;
    let installed: Vec<bool> = installed.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        installed.iter().filter(|i| **i).count(),
        1,
        "exactly one node installs: {installed:?}"
    );
    let store = &stores[0];
    assert_eq!(
        store
            .list_documents(belfry_store::DocKind::Rule)
            .await
            .unwrap()
            .len(),
        6
    );
    assert!(
        store
            .get_category(&belfry_core::Category::parse("record").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    // Deleted, it does not come back.
    assert!(
        store
            .delete_document(belfry_store::DocKind::Rule, "ticket.assigned")
            .await
            .unwrap()
    );
    assert!(
        !belfry_server::rulebook::install_starter(&stores[1], now)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .list_documents(belfry_store::DocKind::Rule)
            .await
            .unwrap()
            .len(),
        5
    );
}

mod actor_property {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[a-e]{0,4}".prop_map(Value::from),
            Just(json!("sales")),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{1,8}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const EVENTS: [&str; 6] = [
        "ticket.assigned",
        "ticket.commented",
        "ticket.customer_replied",
        "ticket.reopened",
        "record.created",
        "record.changed",
    ];
    const AGENTS: [&str; 4] = ["ana", "bo", "carl", "dora"];
    const FIELDS: [&str; 3] = ["assignee", "mentions", "group"];

    /// Over HTTP, through every starter rule, with any data, the actor's id
    /// put anywhere in it (an id, in a list, their group) and the actor
    /// following the entity: the actor's inbox gets nothing of the event
    /// (direct recipients, group and subscriber broadcasts alike).
    #[test]
    fn the_actor_never_hears_of_their_own_event_whatever_the_data() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let (app, tokens) = rt.block_on(async {
            let app = spawn_app_with(config()).await;
            agents(&app).await;
            let mut tokens = Vec::new();
            for a in AGENTS {
                tokens.push(app.token(a).await);
            }
            (app, tokens)
        });
        let case = std::sync::atomic::AtomicUsize::new(0);
        let strategy = (
            0..EVENTS.len(),
            0..AGENTS.len(),
            proptest::collection::btree_map("[a-z]{1,8}", any_json(), 0..4),
            proptest::collection::vec((0..FIELDS.len(), 0..3usize), 0..4),
            any::<bool>(),
        );
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 40,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let reached_others = std::sync::atomic::AtomicUsize::new(0);
        runner
            .run(&strategy, |(kind, actor, data, placed, follows)| {
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let actor_id = AGENTS[actor];
                let entity = format!("p{n}");
                let mut data: serde_json::Map<String, Value> = data.into_iter().collect();
                for (field, how) in placed {
                    let v = match how {
                        0 => json!(actor_id),
                        1 => json!(["ana", actor_id, "dora"]),
                        _ => json!("sales"),
                    };
                    data.insert(FIELDS[field].to_string(), v);
                }
                let (made, mine) = rt.block_on(async {
                    // Someone else follows the entity, so that the rules
                    // for followers reach somebody.
                    let other = AGENTS[(actor + 1) % AGENTS.len()];
                    let r = app
                        .admin(
                            Method::PUT,
                            &format!("/v1/subscriptions/ticket/{entity}/users/{other}"),
                            None,
                        )
                        .await;
                    assert!(r.status().is_success());
                    if follows {
                        let r = app
                            .admin(
                                Method::PUT,
                                &format!("/v1/subscriptions/ticket/{entity}/users/{actor_id}"),
                                None,
                            )
                            .await;
                        assert!(r.status().is_success());
                    }
                    let v = event(
                        &app,
                        json!({"type": EVENTS[kind], "actor": {"id": actor_id, "name": "X"},
                               "entity": {"type": "ticket", "id": entity, "title": "P"},
                               "data": data}),
                    )
                    .await;
                    let inbox = app.inbox(&tokens[actor], "").await;
                    let mine = inbox["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|i| i["entity"]["id"] == json!(entity))
                        .count();
                    (v["notifications"].as_array().unwrap().len(), mine)
                });
                if made > 0 {
                    reached_others.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                prop_assert_eq!(mine, 0, "{} by {}: {:?}", EVENTS[kind], actor_id, data);
                Ok(())
            })
            .unwrap();
        let reached_others = reached_others.into_inner();
        assert!(
            reached_others > 5,
            "the events reached other people: {reached_others}"
        );
        drop(app);
    }
}

#[tokio::test]
async fn the_assignment_email_reaches_the_smtp_server_in_each_recipients_language() {
    let sink = SmtpSink::start("accept");
    let mut c = config();
    c.smtp_url = Some(sink.url().into());
    c.email.app_url = Some("https://desk.example.com".into());
    let app = spawn_app_with(c).await;
    app.put_user(
        "ana",
        json!({"name": "Ana", "locale": "en", "email": "ana@example.com"}),
    )
    .await;
    app.put_user(
        "bo",
        json!({"name": "Bo", "locale": "de", "email": "bo@example.com"}),
    )
    .await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/categories/assignment",
            Some(json!({"defaults": {"email": "instant", "web_push": false, "mobile_push": false, "chat": false}})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    for (id, to) in [("7", "ana"), ("8", "bo")] {
        event(
            &app,
            json!({"type": "ticket.assigned", "actor": {"id": "carl", "name": "Carl"},
                   "entity": ticket(id, &format!("#{id} Printer")),
                   "data": {"assignee": to, "message": "Paper jam & smoke"}}),
        )
        .await;
    }
    let mails = sink.wait_for(2).await;
    let to = |addr: &str| {
        mails
            .iter()
            .find(|m| m["rcpt_tos"][0] == addr)
            .unwrap_or_else(|| panic!("no mail to {addr}: {mails:?}"))
            .clone()
    };
    let (ana, bo) = (to("ana@example.com"), to("bo@example.com"));
    // The template's email texts, inside Belfry's layout (greeting, link,
    // footer), in each recipient's language.
    assert_eq!(ana["subject"], "Assigned to you: #7 Printer");
    assert_eq!(bo["subject"], "Ihnen zugewiesen: #8 Printer");
    let text = |m: &Value| m["text"].as_str().unwrap().replace("\r\n", "\n");
    let (ana_text, bo_text) = (text(&ana), text(&bo));
    assert!(
        ana_text.starts_with(
            "Hello Ana,\n\nCarl assigned the ticket \"#7 Printer\" to you.\n\n\
             Paper jam & smoke\n\nOpen: https://desk.example/t/7\n"
        ),
        "{ana_text}"
    );
    assert!(
        bo_text.starts_with(
            "Hallo Bo,\n\nCarl hat Ihnen das Ticket „#8 Printer“ zugewiesen.\n\n\
             Paper jam & smoke\n\nÖffnen: https://desk.example/t/8\n"
        ),
        "{bo_text}"
    );
    let html = |m: &Value| m["html"].as_str().unwrap().replace("\r\n", "\n");
    let bo_html = html(&bo);
    assert!(bo_html.contains("<html lang=\"de\">"), "{bo_html}");
    assert!(
        bo_html.contains(
            "<p>Carl hat Ihnen das Ticket <strong>#8 Printer</strong> zugewiesen.</p>\n\
             <blockquote>Paper jam &amp; smoke</blockquote>"
        ),
        "escaped once: {bo_html}"
    );
    let ana_html = html(&ana);
    assert!(
        ana_html.contains("<p>Carl assigned the ticket <strong>#7 Printer</strong> to you.</p>"),
        "{ana_html}"
    );
    // In the app, the title and body.
    assert_eq!(
        items(&app, "bo").await[0]["title"],
        "Carl hat Ihnen ein Ticket zugewiesen: #8 Printer"
    );
}
