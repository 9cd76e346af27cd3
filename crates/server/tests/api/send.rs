//! Sending: validation, recipients, idempotency, stacking, batches, a
//! producer's view and cancellation.

use crate::helpers::*;
use belfry_core::Clock as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn send_to_users_by_id_and_email_and_to_contacts() {
    let app = spawn_app().await;
    app.put_user("u-17", json!({"email": "Ana@Example.com"}))
        .await;
    app.users(&["u-18"]).await;
    let r = app
        .send_ok(json!({
            "to": {"users": ["u-18"], "emails": ["ana@example.COM", "guest@example.org"]},
            "title": "Ticket #123 assigned to you",
            "body": "Printer on floor 3 is jammed",
            "url": "https://desk.example.com/tickets/123",
            "category": "assignment",
            "entity": {"type": "ticket", "id": "123"},
            "actor": {"id": "u-3", "name": "Bo", "avatar_url": "https://example.com/bo.png"},
            "data": {"priority": "high"},
            "actions": [{"id": "open", "label": "Open", "kind": "link", "url": "https://desk.example.com/tickets/123"}]
        }))
        .await;
    assert_eq!(r["recipients"], 3, "two users and one external contact");
    assert!(r["seq"].as_i64().unwrap() > 0);
    let id = r["id"].as_str().unwrap();

    let ana = app.token("u-17").await;
    let page = app.inbox(&ana, "").await;
    let item = &page["items"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["title"], "Ticket #123 assigned to you");
    assert_eq!(item["body"], "Printer on floor 3 is jammed");
    assert_eq!(item["entity"], json!({"type": "ticket", "id": "123"}));
    assert_eq!(item["actor"]["name"], "Bo");
    assert_eq!(item["data"]["priority"], "high");
    assert_eq!(
        item["actions"][0]["url"],
        "https://desk.example.com/tickets/123"
    );
    assert_eq!(item["read"], false);
    assert_eq!(item["seen"], false);
    assert_eq!(item["stack_count"], 1);
    assert_eq!(item["seq"], r["seq"]);

    let view: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "published");
    assert_eq!(view["title"], "Ticket #123 assigned to you");
    assert_eq!(
        view["to"]["emails"],
        json!(["ana@example.com", "guest@example.org"])
    );
    assert_eq!(view["summary"]["inbox_entries"], 2);
    assert_eq!(view["summary"]["contacts"], 1);
    assert_eq!(view["summary"]["inbox_read"], 0);
}

#[tokio::test]
async fn malformed_and_invalid_bodies_are_explained() {
    let app = spawn_app().await;
    app.users(&["u-1"]).await;

    let raw = |body: &'static str| {
        app.client
            .post(app.url("/v1/notifications"))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let p = assert_problem(
        raw("{\"to\": ").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    assert_problem(
        raw("").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;

    let p = assert_problem(
        raw(r#"{"to": {"users": ["u-1"]}, "title": 5}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "title");

    let p = assert_problem(
        raw(r#"{"to": {"users": ["u-1"]}, "titel": "x"}"#)
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("titel"), "{p}");

    let r = app.send(json!({"to": {"users": ["u-1"]}})).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(
        p["errors"],
        json!([{"field": "title", "message": "is required"}])
    );

    for to in [json!({}), json!({"users": []}), json!({"all": false})] {
        let r = app.send(json!({"to": to, "title": "x"})).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], "to");
    }

    let r = app
        .send(
            json!({"to": {"users": ["u-1"], "emails": ["not-an-address"]}, "title": "x",
                     "url": "javascript:alert(1)", "data": "nope", "channels": ["fax"],
                     "entity": {"type": "ticket"}}),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["to.emails[0]", "url", "entity.id", "data", "channels[0]"]
    );

    let r = app
        .client
        .post(app.url("/v1/notifications"))
        .bearer_auth(&app.admin_key)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // Nothing of the above was stored.
    let token = app.token("u-1").await;
    assert_eq!(app.counts(&token).await, (0, 0));
}

#[tokio::test]
async fn unknown_recipients_are_refused_by_name() {
    let app = spawn_app().await;
    app.users(&["u-1"]).await;
    let r = app
        .send(json!({"to": {"users": ["u-1", "ghost", "phantom"]}, "title": "x"}))
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_user").await;
    assert!(
        p["detail"].as_str().unwrap().contains("ghost, phantom"),
        "{p}"
    );
    assert_eq!(p["errors"].as_array().unwrap().len(), 2);
    let r = app
        .send(json!({"to": {"groups": ["nowhere"]}, "title": "x"}))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_group").await;
    let token = app.token("u-1").await;
    assert_eq!(
        app.counts(&token).await,
        (0, 0),
        "u-1 got nothing from the refused send"
    );
}

#[tokio::test]
async fn too_large_body_is_413() {
    let app = spawn_app_with(belfry_server::Config {
        body_limit: 2048,
        ..Default::default()
    })
    .await;
    app.users(&["u-1"]).await;
    let r = app
        .send(json!({"to": {"users": ["u-1"]}, "title": "x", "body": "y".repeat(3000)}))
        .await;
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Without a Content-Length header (chunked) too.
    let stream = futures_body("z".repeat(5000));
    let r = app
        .client
        .post(app.url("/v1/notifications"))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/json")
        .body(stream)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

fn futures_body(text: String) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(c.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn idempotency_key_never_creates_two() {
    let app = spawn_app().await;
    app.users(&["u-1"]).await;
    let body = json!({"to": {"users": ["u-1"]}, "title": "once"});
    let send = |key: &'static str| {
        app.client
            .post(app.url("/v1/notifications"))
            .bearer_auth(&app.admin_key)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send("req-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = first.json().await.unwrap();
    let again = send("req-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);

    // Concurrent repeats also produce one notification.
    let results = futures::future::join_all((0..8).map(|_| send("req-2"))).await;
    let ids: std::collections::HashSet<String> =
        futures::future::join_all(results.into_iter().map(|r| async {
            r.unwrap().json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }))
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 1);

    // The field works like the header.
    let with_field =
        json!({"to": {"users": ["u-1"]}, "title": "field", "idempotency_key": "req-3"});
    let a = app.send_ok(with_field.clone()).await;
    let b = app.send_ok(with_field).await;
    assert_eq!(a["id"], b["id"]);

    let token = app.token("u-1").await;
    assert_eq!(app.titles(&token, "").await, ["field", "once", "once"]);

    // After 24 hours the key may be used again.
    app.clock.advance_secs(24 * 3600 + 1);
    let later: Value = send("req-1").await.unwrap().json().await.unwrap();
    assert_ne!(later["id"], first["id"]);

    let r = app
        .client
        .post(app.url("/v1/notifications"))
        .bearer_auth(&app.admin_key)
        .header("idempotency-key", "has space")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_header").await;
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_request_is_refused() {
    let app = spawn_app().await;
    app.users(&["u-1", "u-2"]).await;
    let token = app.token("u-1").await;
    let send = |key: &'static str, body: Value| {
        app.client
            .post(app.url("/v1/notifications"))
            .bearer_auth(&app.admin_key)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let body = json!({"to": {"users": ["u-1"]}, "title": "first", "data": {"a": 1, "b": 2}});
    let first: Value = send("k", body).await.unwrap().json().await.unwrap();

    // Another title under the same key: refused, nothing created.
    let r = send("k", json!({"to": {"users": ["u-1"]}, "title": "second"}))
        .await
        .unwrap();
    let p = assert_problem(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("'k'"), "{p}");
    // Another audience too.
    let r = send(
        "k",
        json!({"to": {"users": ["u-2"]}, "title": "first", "data": {"a": 1, "b": 2}}),
    )
    .await
    .unwrap();
    assert_problem(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;

    // The same request (keys of `data` in another order, the key as a
    // field instead of the header) still replays.
    let again = app
        .send_ok(json!({"idempotency_key": "k", "data": {"b": 2, "a": 1}, "title": "first", "to": {"users": ["u-1"]}}))
        .await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.titles(&token, "").await, ["first"]);

    // Batch items: the same request replays, another is refused (the
    // item named) and nothing of that batch is stored.
    let batch = |items: Value| {
        app.admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": items})),
        )
    };
    let r = batch(json!([
        {"to": {"users": ["u-1"]}, "title": "b1", "idempotency_key": "b"},
        {"to": {"users": ["u-1"]}, "title": "first", "data": {"a": 1, "b": 2}, "idempotency_key": "k"},
    ]))
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][1]["id"], first["id"]);
    let r = batch(json!([
        {"to": {"users": ["u-1"]}, "title": "not stored"},
        {"to": {"users": ["u-1"]}, "title": "b1 changed", "idempotency_key": "b"},
    ]))
    .await;
    let p = assert_problem(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("notifications[1]"),
        "{p}"
    );
    // Two different requests with one key in the same batch.
    let r = batch(json!([
        {"to": {"users": ["u-1"]}, "title": "x", "idempotency_key": "twice"},
        {"to": {"users": ["u-1"]}, "title": "y", "idempotency_key": "twice"},
    ]))
    .await;
    assert_problem(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.titles(&token, "").await, ["b1", "first"]);

    // A scheduled send retried after its time came is the same request.
    let at = app.clock.now().plus_secs(30).to_rfc3339();
    let scheduled = json!({"to": {"users": ["u-1"]}, "title": "later", "send_at": at});
    let s1: Value = send("s", scheduled.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.clock.advance_secs(40);
    let r = send("s", scheduled).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let s2: Value = r.json().await.unwrap();
    assert_eq!(s1["id"], s2["id"]);

    // After 24 hours the key is free for another request.
    app.clock.advance_secs(24 * 3600 + 1);
    let r = send("k", json!({"to": {"users": ["u-1"]}, "title": "second"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn idempotency_keys_are_per_sending_key() {
    let app = spawn_app().await;
    app.users(&["u-1"]).await;
    let other = app.key_with_scope(belfry_store::Scope::Send).await;
    let body = json!({"to": {"users": ["u-1"]}, "title": "x", "idempotency_key": "k"});
    let a = app.send_ok(body.clone()).await;
    let b: Value = app
        .call(Method::POST, "/v1/notifications", &other, Some(body))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn the_actor_is_never_notified() {
    let app = spawn_app().await;
    app.put_user("u-3", json!({"email": "bo@example.com"}))
        .await;
    app.users(&["u-1"]).await;
    let r = app
        .send_ok(
            json!({"to": {"users": ["u-3", "u-1"]}, "title": "assigned", "actor": {"id": "u-3"}}),
        )
        .await;
    assert_eq!(r["recipients"], 1);
    let r = app
        .send_ok(json!({"to": {"emails": ["bo@example.com"]}, "title": "self by email", "actor": {"id": "u-3"}}))
        .await;
    assert_eq!(
        r["recipients"], 0,
        "assigning yourself produces nothing for you"
    );
    let bo = app.token("u-3").await;
    assert_eq!(app.counts(&bo).await, (0, 0));
    let one = app.token("u-1").await;
    assert_eq!(app.titles(&one, "").await, ["assigned"]);
}

#[tokio::test]
async fn stacking_collapses_into_one_entry_that_moves_up() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let ana = app.token("ana").await;
    let reply = |n: i32| json!({"to": {"users": ["ana", "bo"]}, "title": format!("{n} new replies on ticket 123"), "stack_key": "ticket:123:replies"});
    app.send_ok(reply(1)).await;
    app.notify("ana", "other").await;
    app.send_ok(reply(2)).await;
    let last = app.send_ok(reply(3)).await;

    let page = app.inbox(&ana, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["title"], "3 new replies on ticket 123",
        "newest content, on top"
    );
    assert_eq!(items[0]["stack_count"], 3);
    assert_eq!(items[0]["id"], last["id"]);
    assert_eq!(items[1]["title"], "other");
    assert_eq!(app.counts(&ana).await, (2, 2));

    // Read, then one more reply: unread again, on top, counting afresh.
    app.me_post(
        &ana,
        &format!("/notifications/{}/read", last["id"].as_str().unwrap()),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    app.notify("ana", "newer").await;
    app.send_ok(reply(4)).await;
    let items = app.inbox(&ana, "").await["items"].clone();
    assert_eq!(items[0]["title"], "4 new replies on ticket 123");
    assert_eq!(items[0]["read"], false);
    assert_eq!(items[0]["stack_count"], 1);
    assert_eq!(items.as_array().unwrap().len(), 3);

    // Bo's stack is his own.
    let bo = app.token("bo").await;
    let items = app.inbox(&bo, "").await["items"].clone();
    assert_eq!(items[0]["stack_count"], 4);
}

#[tokio::test]
async fn cancelling_a_stacked_notification_shrinks_its_stack() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let ana = app.token("ana").await;
    let bo = app.token("bo").await;
    let reply = |n: i32| json!({"to": {"users": ["ana", "bo"]}, "title": format!("{n} new replies"), "stack_key": "ticket:9"});
    let id = |v: Value| v["id"].as_str().unwrap().to_string();
    let one = id(app.send_ok(reply(1)).await);
    let two = id(app.send_ok(reply(2)).await);
    app.notify("ana", "other").await;
    let three = id(app.send_ok(reply(3)).await);
    let cancel = |id: String| {
        let app = &app;
        async move {
            let r = app
                .admin(Method::DELETE, &format!("/v1/notifications/{id}"), None)
                .await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
    };
    let entry = |page: Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["title"].as_str().unwrap().ends_with("new replies"))
            .cloned()
    };

    // The newest member: the stack counts one less and shows the one before.
    cancel(three).await;
    let e = entry(app.inbox(&ana, "").await).expect("the stack stays");
    assert_eq!(e["id"], two.as_str());
    assert_eq!(e["title"], "2 new replies");
    assert_eq!(e["stack_count"], 2);
    assert_eq!(app.counts(&ana).await, (2, 2));

    // An older member: only the count goes down.
    cancel(one).await;
    let e = entry(app.inbox(&ana, "").await).expect("the stack stays");
    assert_eq!(e["id"], two.as_str());
    assert_eq!(e["stack_count"], 1);
    let e = entry(app.inbox(&bo, "").await).expect("Bo's stack stays");
    assert_eq!(
        (e["id"].as_str(), e["stack_count"].as_i64()),
        (Some(two.as_str()), Some(1))
    );

    // The only member: the entry goes.
    cancel(two).await;
    assert!(entry(app.inbox(&ana, "").await).is_none());
    assert_eq!(app.titles(&ana, "").await, ["other"]);
    assert_eq!(app.counts(&bo).await, (0, 0));
}

#[tokio::test]
async fn batch_is_in_order_and_all_or_nothing() {
    let app = spawn_app().await;
    app.users(&["a", "b", "c"]).await;
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": [
                {"to": {"users": ["a"]}, "title": "1"},
                {"to": {"users": ["b"]}, "title": "2", "idempotency_key": "k2"},
                {"to": {"users": ["c"]}, "title": "3"},
            ]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let seqs: Vec<i64> = results.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    // One invalid item: nothing stored, the item named.
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": [
                {"to": {"users": ["a"]}, "title": "ok"},
                {"to": {"users": ["a"]}},
            ]})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"][0]["field"], "notifications[1].title");
    // An unknown user in one item: nothing stored either.
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": [
                {"to": {"users": ["a"]}, "title": "ok"},
                {"to": {"users": ["a"]}, "title": "ok"},
                {"to": {"users": ["zed"]}, "title": "bad"},
            ]})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_user").await;
    assert!(
        p["detail"].as_str().unwrap().contains("notifications[2]"),
        "{p}"
    );
    let a = app.token("a").await;
    assert_eq!(app.titles(&a, "").await, ["1"]);

    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": []})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"to": {"users": ["a"]}, "title": "x"}))
        .collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": many})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;

    // Replaying an idempotency key inside a batch answers the first receipt.
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": [
                {"to": {"users": ["b"]}, "title": "2", "idempotency_key": "k2"},
            ]})),
        )
        .await;
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["results"][0]["id"], results[1]["id"]);
}

#[tokio::test]
async fn deleting_a_notification_removes_it_everywhere() {
    let app = spawn_app().await;
    app.users(&["a", "b"]).await;
    let r = app
        .send_ok(json!({"to": {"users": ["a", "b"]}, "title": "oops"}))
        .await;
    let id = r["id"].as_str().unwrap();
    let a = app.token("a").await;
    assert_eq!(app.counts(&a).await, (1, 1));
    let r = app
        .admin(Method::DELETE, &format!("/v1/notifications/{id}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.counts(&a).await, (0, 0));
    assert!(app.titles(&a, "").await.is_empty());
    let view: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "cancelled");
    let r = app
        .admin(Method::DELETE, &format!("/v1/notifications/{id}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "idempotent");
    let r = app
        .admin(Method::DELETE, "/v1/notifications/nope", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}
