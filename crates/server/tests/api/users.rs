//! Users and groups.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn users_are_created_merged_read_and_deleted() {
    let app = spawn_app().await;
    let u = app
        .put_user(
            "u-17",
            json!({"email": "Ana@Example.com", "name": "Ana", "locale": "de_de",
                                 "timezone": "Europe/Berlin", "groups": ["support", "admins"],
                                 "data": {"team": "blue"}}),
        )
        .await;
    assert_eq!(u["email"], "ana@example.com");
    assert_eq!(u["locale"], "de-DE");
    assert_eq!(u["groups"], json!(["admins", "support"]));

    // Fields left out keep their value; null clears.
    let u = app
        .put_user("u-17", json!({"name": null, "groups": ["support"]}))
        .await;
    assert_eq!(u["name"], Value::Null);
    assert_eq!(u["email"], "ana@example.com");
    assert_eq!(u["timezone"], "Europe/Berlin");
    assert_eq!(u["groups"], json!(["support"]));
    let got: Value = app
        .admin(Method::GET, "/v1/users/u-17", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, u);

    // One user per email address.
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/u-18",
            Some(json!({"email": "ana@example.com"})),
        )
        .await;
    assert_problem(r, StatusCode::CONFLICT, "conflict").await;

    let r = app
        .admin(
            Method::PUT,
            "/v1/users/u-18",
            Some(json!({"email": "x", "timezone": "Mars/Base", "locale": 7})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/u-18",
            Some(json!({"email": "x", "timezone": "Mars/Base"})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 2);
    let r = app
        .admin(Method::PUT, "/v1/users/bad%20id", Some(json!({})))
        .await;
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_path").await;

    app.notify("u-17", "hi").await;
    let r = app.admin(Method::DELETE, "/v1/users/u-17", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.admin(Method::GET, "/v1/users/u-17", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.admin(Method::DELETE, "/v1/users/u-17", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // Re-created, the user starts with an empty inbox.
    app.users(&["u-17"]).await;
    let t = app.token("u-17").await;
    assert_eq!(app.counts(&t).await, (0, 0));
}

#[tokio::test]
async fn groups_are_listed_with_members() {
    let app = spawn_app().await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/groups/support",
            Some(json!({"name": "Support team"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.put_user("a", json!({"groups": ["support", "sales"]}))
        .await;
    app.put_user("b", json!({"groups": ["support"]})).await;
    let v: Value = app
        .admin(Method::GET, "/v1/groups", None)
        .await
        .json()
        .await
        .unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], "sales");
    assert_eq!(items[0]["members"], 1);
    assert_eq!(items[1]["id"], "support");
    assert_eq!(items[1]["name"], "Support team");
    assert_eq!(items[1]["members"], 2);

    let r = app
        .admin(
            Method::PUT,
            "/v1/groups/support",
            Some(json!({"name": "Help desk"})),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Help desk");
    let r = app.admin(Method::PUT, "/v1/groups/no%20spaces", None).await;
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_path").await;
    let r = app
        .admin(Method::PUT, "/v1/groups/x", Some(json!({"name": ""})))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
}

#[tokio::test]
async fn group_broadcasts_reach_members_who_joined_before() {
    let app = spawn_app().await;
    app.put_user("early", json!({"groups": ["support"]})).await;
    app.put_user("other", json!({"groups": ["sales"]})).await;
    let r = app
        .send_ok(json!({"to": {"groups": ["support"]}, "title": "training on Friday"}))
        .await;
    assert_eq!(
        r["recipients"],
        Value::Null,
        "broadcasts have no recipient count"
    );
    app.put_user("late", json!({"groups": ["support"]})).await;

    let early = app.token("early").await;
    let other = app.token("other").await;
    let late = app.token("late").await;
    assert_eq!(app.titles(&early, "").await, ["training on Friday"]);
    assert_eq!(app.counts(&early).await, (1, 1));
    assert!(app.titles(&other, "").await.is_empty());
    assert!(
        app.titles(&late, "").await.is_empty(),
        "joined after it was sent"
    );
}

#[tokio::test]
async fn deleting_a_user_ends_their_open_streams_at_once() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let ana = app.token("ana").await;
    let bo = app.token("bo").await;
    let mut sse = app.sse(&ana, None).await;
    let mut ws = app.ws(&ana, None).await;
    let mut bos = app.ws(&bo, None).await;
    // Every stream is connected once it has delivered a notification.
    app.send_ok(json!({"to": {"users": ["ana", "bo"]}, "title": "hello"}))
        .await;
    sse.notification().await;
    ws.next_of("notification").await;
    bos.next_of("notification").await;

    let r = app.admin(Method::DELETE, "/v1/users/ana", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Both of Ana's streams end without waiting for anything else (the
    // WebSocket with the code that says "get a new token").
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(e) = sse.next().await {
            assert_ne!(e.event, "notification");
        }
        ws.closed().await
    })
    .await;
    assert_eq!(
        ended.expect("the deleted user's streams ended"),
        (4001, "token revoked".to_string())
    );
    // Bo's stream stays open.
    app.notify("bo", "still here").await;
    assert_eq!(
        bos.next_of("notification").await["data"]["title"],
        "still here"
    );
}
