//! Events and rules (S8) over HTTP: a help desk posts what happened, rules
//! decide who hears of it, templates say it in each recipient's language.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn setup(app: &TestApp) {
    app.put_user("ana", json!({"name": "Ana", "locale": "en"}))
        .await;
    app.put_user("bo", json!({"name": "Bo", "locale": "de"}))
        .await;
    app.put_user("carl", json!({"name": "Carl", "locale": "en"}))
        .await;
    for (id, body) in [
        (
            "ticket.assigned",
            json!({"default_locale": "en", "locales": {
                "en": {"title": "{{ actor.name }} assigned {{ entity.title }} to you", "body": "{{ data.summary }}"},
                "de": {"title": "{{ actor.name }} hat Ihnen {{ entity.title }} zugewiesen"}}}),
        ),
        (
            "mention",
            json!({"locales": {"en": {"title": "{{ actor.name }} mentioned you on {{ entity.title }}"}}}),
        ),
        (
            "reply",
            json!({"locales": {"en": {"title": "New reply on {{ entity.title }}"}}}),
        ),
    ] {
        let r = app
            .admin(Method::PUT, &format!("/v1/templates/{id}"), Some(body))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{id}");
    }
    for (id, body) in [
        (
            "assigned",
            json!({"event": "ticket.assigned", "to": {"users": ["{{ data.assignee }}"]},
                   "category": "assignment", "template": "ticket.assigned", "subscribe": ["actor", "recipients"]}),
        ),
        (
            "mentioned",
            json!({"event": "ticket.commented", "to": {"users": ["{{ data.mentions }}"]}, "category": "mention",
                   "template": "mention", "stack_key": "mention:{{ entity.id }}"}),
        ),
        (
            "replied",
            json!({"event": "ticket.replied", "to": {"entity_subscribers": true}, "when": "data.public",
                   "category": "customer_reply", "template": "reply"}),
        ),
    ] {
        let r = app
            .admin(Method::PUT, &format!("/v1/rules/{id}"), Some(body))
            .await;
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{id}: {}",
            r.text().await.unwrap()
        );
    }
}

async fn event(app: &TestApp, body: Value) -> Value {
    let r = app.admin(Method::POST, "/v1/events", Some(body)).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn ticket(id: &str) -> Value {
    json!({"type": "ticket", "id": id, "title": format!("#{id} Printer"), "url": format!("/tickets/{id}")})
}

#[tokio::test]
async fn an_assignment_reaches_the_assignee_in_their_language_and_never_the_actor() {
    let app = spawn_app().await;
    setup(&app).await;
    let v = event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "carl", "name": "Carl"},
               "entity": ticket("7"), "data": {"assignee": "bo", "summary": "Jam"}}),
    )
    .await;
    assert_eq!(v["rules"], 1);
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["notifications"][0]["rule"], "assigned");
    assert_eq!(v["notifications"][0]["locale"], "de");
    assert_eq!(v["notifications"][0]["recipients"], 1);
    let bo = app.token("bo").await;
    let inbox = app.inbox(&bo, "").await;
    let item = &inbox["items"][0];
    assert_eq!(item["title"], "Carl hat Ihnen #7 Printer zugewiesen");
    assert_eq!(item["body"], "Jam", "the body from the default locale");
    assert_eq!(item["category"], "assignment");
    assert_eq!(item["url"], "/tickets/7");
    assert_eq!(item["entity"], json!({"type": "ticket", "id": "7"}));
    assert_eq!(item["actor"]["name"], "Carl");

    // Assigning to oneself: nobody is told.
    let v = event(
        &app,
        json!({"type": "ticket.assigned", "actor": {"id": "carl", "name": "Carl"},
               "entity": ticket("8"), "data": {"assignee": "carl"}}),
    )
    .await;
    assert_eq!(v["notifications"], json!([]));
    assert_eq!(v["skipped"][0]["reason"], "no recipients", "{v}");
    let carl = app.token("carl").await;
    assert_eq!(app.titles(&carl, "").await, Vec::<String>::new());

    // The assignment subscribed the actor and the assignee to ticket 7: a
    // public reply reaches both (its actor, Ana, excluded); a private one nobody.
    let v = event(
        &app,
        json!({"type": "ticket.replied", "actor": {"id": "ana"}, "entity": ticket("7"), "data": {"public": true}}),
    )
    .await;
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(app.titles(&carl, "").await, ["New reply on #7 Printer"]);
    assert_eq!(app.titles(&bo, "").await[0], "New reply on #7 Printer");
    let ana = app.token("ana").await;
    assert!(app.titles(&ana, "").await.is_empty());
    let v = event(
        &app,
        json!({"type": "ticket.replied", "entity": ticket("7"), "data": {"public": false}}),
    )
    .await;
    assert_eq!(v["skipped"][0]["reason"], "condition false", "{v}");

    // No rule for the type.
    let v = event(&app, json!({"type": "order.created"})).await;
    assert_eq!(v["rules"], 0);
    assert_eq!(v["notifications"], json!([]));
}

#[tokio::test]
async fn mentions_stack_per_agent_and_a_failing_rule_does_not_stop_the_others() {
    let app = spawn_app().await;
    setup(&app).await;
    for _ in 0..3 {
        event(
            &app,
            json!({"type": "ticket.commented", "actor": {"id": "carl", "name": "Carl"},
                   "entity": ticket("9"), "data": {"mentions": ["ana", "bo", "carl"]}}),
        )
        .await;
    }
    for user in ["ana", "bo"] {
        let t = app.token(user).await;
        let inbox = app.inbox(&t, "").await;
        let items = inbox["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{user}: {inbox}");
        assert_eq!(items[0]["stack_count"], 3);
        assert_eq!(items[0]["title"], "Carl mentioned you on #9 Printer");
    }

    // A second rule for the same type whose recipients are of the wrong
    // type fails; the mention rule still works.
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/broken",
            Some(json!({"event": "ticket.commented", "to": {"users": ["{{ data.watchers }}"]}, "template": "mention"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v = event(
        &app,
        json!({"type": "ticket.commented", "actor": {"id": "carl"}, "entity": ticket("10"),
               "data": {"mentions": ["ana"], "watchers": {"not": "a list"}}}),
    )
    .await;
    assert_eq!(v["rules"], 2);
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["skipped"][0]["rule"], "broken");
    assert!(
        v["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("failed: to.users[0]"),
        "{v}"
    );
    // A disabled rule is not run.
    let mut rule = app
        .admin(Method::GET, "/v1/rules/broken", None)
        .await
        .json::<Value>()
        .await
        .unwrap();
    for k in ["id", "created_at", "updated_at"] {
        rule.as_object_mut().unwrap().remove(k);
    }
    rule["enabled"] = json!(false);
    let r = app.admin(Method::PUT, "/v1/rules/broken", Some(rule)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = event(
        &app,
        json!({"type": "ticket.commented", "entity": ticket("11"), "data": {"mentions": ["ana"]}}),
    )
    .await;
    assert_eq!(v["rules"], 1);
}

#[tokio::test]
async fn events_are_idempotent_and_validated_and_rules_are_checked() {
    let app = spawn_app().await;
    setup(&app).await;
    let body = json!({"type": "ticket.assigned", "actor": {"id": "carl"}, "entity": ticket("12"), "data": {"assignee": "ana"}});
    let first = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&app.admin_key)
        .header("idempotency-key", "evt-12")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again: Value = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&app.admin_key)
        .header("idempotency-key", "evt-12")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["notifications"][0]["id"], again["notifications"][0]["id"],
        "the same notification"
    );
    let ana = app.token("ana").await;
    assert_eq!(app.titles(&ana, "").await.len(), 1);

    for (body, field) in [
        (json!({}), "type"),
        (json!({"type": "Bad Type"}), "type"),
        (json!({"type": "x", "data": [1]}), "data"),
        (json!({"type": "x", "entity": {"type": "ticket"}}), "entity"),
        (json!({"type": "x", "actor": {"id": ""}}), "actor.id"),
    ] {
        let r = app.admin(Method::POST, "/v1/events", Some(body)).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/r1",
            Some(json!({"event": "x", "to": {"users": ["ana"]}, "template": "nope"})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_template").await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/r1",
            Some(json!({"event": "x", "to": {"users": ["ana"]}, "template": "mention", "category": "nope"})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_category").await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/r1",
            Some(json!({"event": "x", "to": {"users": ["{{ data. }}"]}, "template": "mention"})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"][0]["field"], "to.users[0]");
    let r = app.admin(Method::GET, "/v1/rules", None).await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    let r = app.admin(Method::DELETE, "/v1/rules/replied", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.admin(Method::GET, "/v1/rules/replied", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

/// A ticket's followers: users each in their language and once, contacts
/// (following by address) by email.
#[tokio::test]
async fn followers_hear_in_their_language_once_and_contacts_by_email() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(belfry_server::Config {
        smtp_url: Some(sink.url().into()),
        run_workers: true,
        ..Default::default()
    })
    .await;
    setup(&app).await;
    for (path, body) in [
        ("/v1/subscriptions/ticket/9/users/bo", Value::Null),
        ("/v1/subscriptions/ticket/9/users/ana", Value::Null),
        (
            "/v1/subscriptions/ticket/9/emails/erika@example.org",
            json!({"name": "Erika"}),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let r = app.admin(Method::PUT, path, body).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    // Bo is named and follows: one notification, in German.
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/replied",
            Some(json!({"event": "ticket.replied", "to": {"users": ["{{ data.assignee }}"], "entity_subscribers": true},
                        "category": "customer_reply", "template": "ticket.assigned"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = event(
        &app,
        json!({"type": "ticket.replied", "actor": {"id": "carl", "name": "Carl"}, "entity": ticket("9"),
               "data": {"assignee": "bo", "public": true}}),
    )
    .await;
    let made = v["notifications"].as_array().unwrap();
    assert_eq!(made.len(), 2, "one per language: {v}");
    let bo = app.token("bo").await;
    assert_eq!(
        app.titles(&bo, "").await,
        ["Carl hat Ihnen #9 Printer zugewiesen"]
    );
    let ana = app.token("ana").await;
    assert_eq!(
        app.titles(&ana, "").await,
        ["Carl assigned #9 Printer to you"]
    );
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0]["rcpt_tos"][0], "erika@example.org");
    assert_eq!(mails[0]["subject"], "Carl assigned #9 Printer to you");
}
