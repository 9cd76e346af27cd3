//! Audiences: broadcasts to everyone and to groups (stored once, per-user
//! state written lazily), entity subscriptions, de-duplication, actor
//! exclusion, sticky and expiring notifications.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn broadcast_to_everyone_reaches_existing_users_only() {
    let app = spawn_app().await;
    app.users(&["a", "b"]).await;
    let r = app
        .send_ok(json!({"to": {"all": true}, "title": "Mandatory security training on Friday", "category": "announcement"}))
        .await;
    assert_eq!(r["recipients"], Value::Null);
    app.users(&["c"]).await;
    for (user, expected) in [("a", 1), ("b", 1), ("c", 0)] {
        let t = app.token(user).await;
        assert_eq!(app.counts(&t).await, (expected, expected), "{user}");
        assert_eq!(app.titles(&t, "").await.len(), expected as usize, "{user}");
    }
    let view: Value = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{}", r["id"].as_str().unwrap()),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["to"]["all"], true);
}

#[tokio::test]
async fn group_membership_before_and_after_a_broadcast() {
    let app = spawn_app().await;
    app.put_user("stays", json!({"groups": ["support"]})).await;
    app.put_user("leaves", json!({"groups": ["support"]})).await;
    app.put_user("sales", json!({"groups": ["sales"]})).await;
    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "first"}))
        .await;

    // Leaving keeps what was received while a member; joining does not
    // deliver what was sent before.
    app.put_user("leaves", json!({"groups": []})).await;
    app.put_user("sales", json!({"groups": ["sales", "support"]}))
        .await;
    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "second"}))
        .await;

    let t = |u: &'static str| app.token(u);
    assert_eq!(app.titles(&t("stays").await, "").await, ["second", "first"]);
    assert_eq!(app.titles(&t("leaves").await, "").await, ["first"]);
    assert_eq!(app.titles(&t("sales").await, "").await, ["second"]);

    // Rejoining reaches only what comes after.
    app.put_user("leaves", json!({"groups": ["support"]})).await;
    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "third"}))
        .await;
    assert_eq!(app.titles(&t("leaves").await, "").await, ["third", "first"]);
}

#[tokio::test]
async fn a_user_token_never_sees_another_groups_broadcast() {
    let app = spawn_app().await;
    app.put_user("agent", json!({"groups": ["support"]})).await;
    app.put_user("seller", json!({"groups": ["sales"]})).await;
    let r = app
        .send_ok(json!({"to": {"groups": ["sales"]}, "title": "sales only"}))
        .await;
    let id = r["id"].as_str().unwrap();
    let agent = app.token("agent").await;
    assert!(app.titles(&agent, "").await.is_empty());
    assert_eq!(app.counts(&agent).await, (0, 0));
    for action in ["read", "archive", "unread"] {
        let r = app
            .me(
                Method::POST,
                &format!("/notifications/{id}/{action}"),
                &agent,
                None,
            )
            .await;
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    let seller = app.token("seller").await;
    assert_eq!(
        app.counts(&seller).await,
        (1, 1),
        "untouched by the attempts"
    );
}

#[tokio::test]
async fn state_of_broadcasts_is_per_user() {
    let app = spawn_app().await;
    app.put_user("a", json!({"groups": ["support"]})).await;
    app.put_user("b", json!({"groups": ["support"]})).await;
    let one = app
        .send_ok(json!({"to": {"all": true}, "title": "one", "category": "announcement"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let two = app
        .send_ok(
            json!({"to": {"groups": ["support"]}, "title": "two", "category": "system",
                                 "entity": {"type": "change", "id": "7"}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.notify("a", "direct").await;
    let a = app.token("a").await;
    let b = app.token("b").await;
    assert_eq!(app.counts(&a).await, (3, 3));

    app.me_post(
        &a,
        &format!("/notifications/{one}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.counts(&a).await, (2, 2));
    assert_eq!(app.counts(&b).await, (2, 2), "b's state is b's own");
    let page = app.inbox(&a, "").await;
    let item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == one.as_str())
        .unwrap();
    assert_eq!(item["read"], true);

    app.me_post(
        &a,
        &format!("/notifications/{one}/unread"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.counts(&a).await.0, 3);
    app.me_post(
        &a,
        &format!("/notifications/{two}/archive"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.titles(&a, "").await, ["direct", "one"]);
    assert_eq!(app.titles(&a, "?filter=archived").await, ["two"]);
    app.me_post(
        &a,
        &format!("/notifications/{two}/unarchive"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        app.titles(&a, "?filter=unread").await,
        ["direct", "two", "one"]
    );

    // Seen-all clears unseen only; read-all moves the watermark.
    app.me_post(&a, "/notifications/seen-all", None, StatusCode::NO_CONTENT)
        .await;
    assert_eq!(app.counts(&a).await, (3, 0));
    let v = app
        .me_post(
            &a,
            "/notifications/read-all",
            Some(json!({"category": "system"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["updated"], 1);
    assert_eq!(app.titles(&a, "?filter=unread").await, ["direct", "one"]);
    let v = app
        .me_post(&a, "/notifications/read-all", None, StatusCode::OK)
        .await;
    assert_eq!(v["updated"], 2);
    assert_eq!(app.counts(&a).await, (0, 0));
    // Marking a broadcast unread below the watermark works, and read-all covers it again.
    app.me_post(
        &a,
        &format!("/notifications/{one}/unread"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.titles(&a, "?filter=unread").await, ["one"]);
    app.me_post(&a, "/notifications/read-all", None, StatusCode::OK)
        .await;
    assert_eq!(app.counts(&a).await, (0, 0));

    // Reading an entity covers broadcasts about it; deleting hides one for this user only.
    app.me_post(&b, "/entities/change/7/read", None, StatusCode::OK)
        .await;
    assert_eq!(app.titles(&b, "?filter=unread").await, ["one"]);
    let r = app
        .me(Method::DELETE, &format!("/notifications/{one}"), &b, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.titles(&b, "").await, ["two"]);
    assert_eq!(app.titles(&a, "").await, ["direct", "two", "one"]);
    let v = app
        .me_post(
            &b,
            "/notifications/archive",
            Some(json!({"ids": [two]})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["archived"], 1);
    assert_eq!(app.counts(&b).await, (0, 0));
}

#[tokio::test]
async fn entity_subscriptions_for_users_and_emails() {
    let app = spawn_app().await;
    app.put_user("creator", json!({"email": "creator@example.com"}))
        .await;
    app.put_user("agent", json!({"email": "agent@example.com"}))
        .await;
    app.users(&["bystander"]).await;

    let sub = |path: &str| {
        let url = format!("/v1/subscriptions/ticket/123{path}");
        let app = &app;
        async move { app.admin(Method::PUT, &url, None).await }
    };
    let r = sub("/users/agent").await;
    assert_eq!(r.json::<Value>().await.unwrap()["created"], true);
    let r = sub("/users/agent").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["created"],
        false,
        "idempotent"
    );
    assert_eq!(
        sub("/emails/Guest@Example.org").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        sub("/emails/agent@example.com").await.status(),
        StatusCode::OK
    );
    assert_problem(
        sub("/users/ghost").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        sub("/emails/not-an-address").await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;

    // The creator opens the ticket and follows it from then on.
    let r = app
        .send_ok(json!({"to": {"entity": {"type": "ticket", "id": "123"}}, "title": "Ticket #123 created",
                        "actor": {"id": "creator"}, "subscribe_actor": true}))
        .await;
    assert_eq!(
        r["recipients"], 2,
        "agent (by id and by email, once) and the guest contact"
    );
    let creator = app.token("creator").await;
    assert!(
        app.titles(&creator, "").await.is_empty(),
        "the actor is not notified"
    );

    let r = app
        .send_ok(
            json!({"to": {"entity": {"type": "ticket", "id": "123"}}, "title": "Customer replied",
                        "actor": {"id": "agent"}}),
        )
        .await;
    assert_eq!(
        r["recipients"], 2,
        "the creator and the guest; not the replying agent"
    );
    assert_eq!(app.titles(&creator, "").await, ["Customer replied"]);
    let item = &app.inbox(&creator, "").await["items"][0];
    assert_eq!(
        item["entity"],
        json!({"type": "ticket", "id": "123"}),
        "about the entity it was sent to"
    );
    let agent = app.token("agent").await;
    assert_eq!(app.titles(&agent, "").await, ["Ticket #123 created"]);
    let bystander = app.token("bystander").await;
    assert!(app.titles(&bystander, "").await.is_empty());

    let subs: Value = app
        .admin(Method::GET, "/v1/subscriptions/ticket/123", None)
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<String> = subs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["user"]
                .as_str()
                .or(s["email"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    // Oldest first; at the same instant emails before users, then by name.
    assert_eq!(
        listed,
        ["agent@example.com", "guest@example.org", "agent", "creator"]
    );
    let mine: Value = app
        .admin(Method::GET, "/v1/users/agent/subscriptions", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        mine["items"].as_array().unwrap().len(),
        2,
        "by id and by email"
    );
    assert_eq!(
        mine["items"][0]["entity"],
        json!({"type": "ticket", "id": "123"})
    );

    // Unsubscribing stops further notifications.
    for path in [
        "/users/agent",
        "/emails/agent@example.com",
        "/emails/guest@example.org",
    ] {
        let r = app
            .admin(
                Method::DELETE,
                &format!("/v1/subscriptions/ticket/123{path}"),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = app
        .admin(
            Method::DELETE,
            "/v1/subscriptions/ticket/123/users/agent",
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "idempotent");
    let r = app
        .send_ok(json!({"to": {"entity": {"type": "ticket", "id": "123"}}, "title": "Closed"}))
        .await;
    assert_eq!(r["recipients"], 1);
    assert_eq!(app.titles(&agent, "").await, ["Ticket #123 created"]);

    // A send key manages subscriptions but does not list them.
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    let r = app
        .call(
            Method::PUT,
            "/v1/subscriptions/ticket/9/users/agent",
            &send_key,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .call(Method::GET, "/v1/subscriptions/ticket/9", &send_key, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .admin(Method::PUT, "/v1/subscriptions/Ticket!/9/users/agent", None)
        .await;
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_path").await;

    // subscribe_actor needs an entity and a known actor.
    let r = app
        .send(json!({"to": {"users": ["agent"]}, "title": "x", "actor": {"id": "agent"}, "subscribe_actor": true}))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .send(
            json!({"to": {"users": ["agent"]}, "title": "x", "actor": {"id": "stranger"},
                     "entity": {"type": "ticket", "id": "5"}, "subscribe_actor": true}),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(p["detail"].as_str().unwrap().contains("stranger"), "{p}");
}

#[tokio::test]
async fn targets_combine_and_each_person_gets_it_once() {
    let app = spawn_app().await;
    app.put_user(
        "ana",
        json!({"email": "ana@example.com", "groups": ["support"]}),
    )
    .await;
    app.put_user("bo", json!({"groups": ["sales"]})).await;
    app.users(&["cy"]).await;
    app.admin(Method::PUT, "/v1/subscriptions/ticket/1/users/cy", None)
        .await;
    app.admin(Method::PUT, "/v1/subscriptions/ticket/1/users/ana", None)
        .await;
    let r = app
        .send_ok(
            json!({"to": {"users": ["ana", "cy"], "emails": ["ana@example.com", "ext@example.org"],
                               "groups": ["support"], "entity": {"type": "ticket", "id": "1"}},
                        "title": "everything at once"}),
        )
        .await;
    assert_eq!(
        r["recipients"],
        Value::Null,
        "with a group part the count is not known"
    );
    for user in ["ana", "cy"] {
        let t = app.token(user).await;
        assert_eq!(
            app.titles(&t, "").await,
            ["everything at once"],
            "{user} once"
        );
        assert_eq!(app.counts(&t).await, (1, 1), "{user}");
    }
    let bo = app.token("bo").await;
    assert!(app.titles(&bo, "").await.is_empty());
    let view: Value = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{}", r["id"].as_str().unwrap()),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["summary"]["inbox_entries"], 1,
        "cy directly; ana through the group"
    );
    assert_eq!(view["summary"]["contacts"], 1);
}

#[tokio::test]
async fn the_actor_is_excluded_from_broadcasts_too() {
    let app = spawn_app().await;
    app.put_user("boss", json!({"groups": ["all-staff"]})).await;
    app.put_user("worker", json!({"groups": ["all-staff"]}))
        .await;
    app.send_ok(json!({"to": {"groups": ["all-staff"]}, "title": "I am out on Friday", "actor": {"id": "boss"}}))
        .await;
    app.send_ok(json!({"to": {"all": true}, "title": "Welcome!", "actor": {"id": "boss"}}))
        .await;
    let boss = app.token("boss").await;
    assert_eq!(app.counts(&boss).await, (0, 0));
    assert!(app.titles(&boss, "").await.is_empty());
    let worker = app.token("worker").await;
    assert_eq!(app.counts(&worker).await, (2, 2));
}

#[tokio::test]
async fn sticky_round_trips_and_broadcasts_expire() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    app.send_ok(
        json!({"to": {"users": ["ana"]}, "title": "Call the customer back", "sticky": true}),
    )
    .await;
    let now = belfry_core::Clock::now(app.clock.as_ref());
    let soon = belfry_core::Millis(now.0 + 60_000).to_rfc3339();
    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "Outage now", "expires_at": soon}))
        .await;
    app.send_ok(json!({"to": {"all": true}, "title": "Lunch is served", "expires_at": soon}))
        .await;
    let t = app.token("ana").await;
    let page = app.inbox(&t, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["sticky"], true);
    assert_eq!(items[1]["sticky"], false);
    assert_eq!(items[0]["expires_at"], soon);
    assert_eq!(app.counts(&t).await, (3, 3));

    app.clock.advance_secs(61);
    assert_eq!(app.titles(&t, "").await, ["Call the customer back"]);
    assert_eq!(app.counts(&t).await, (1, 1));
    assert_eq!(
        app.titles(&t, "?filter=unread").await,
        ["Call the customer back"]
    );
}

#[tokio::test]
async fn bad_audiences_are_explained() {
    let app = spawn_app().await;
    app.users(&["a"]).await;
    for (to, field) in [
        (json!({"groups": ["no such group!"]}), "to.groups[0]"),
        (json!({"entity": {"type": "ticket"}}), "to.entity.id"),
        (json!({"entity": {"id": "1"}}), "to.entity.type"),
        (json!({"emails": ["a@"]}), "to.emails[0]"),
        (json!({"users": [], "groups": []}), "to"),
    ] {
        let r = app.send(json!({"to": to, "title": "x"})).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let r = app
        .send(json!({"to": {"groups": ["ghosts"]}, "title": "x"}))
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_group").await;
    assert!(p["detail"].as_str().unwrap().contains("ghosts"));
    // An entity without subscribers is a valid audience of nobody.
    let r = app
        .send_ok(json!({"to": {"entity": {"type": "ticket", "id": "404"}}, "title": "x"}))
        .await;
    assert_eq!(r["recipients"], 0);
}
