//! Limits that keep one client from exhausting the server: open streams
//! per user, named recipients per send request, requests per key and second.

use crate::helpers::*;
use belfry_server::Config;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn opening_one_stream_too_many_closes_the_users_oldest() {
    let mut config = Config::default();
    config.streams.max_streams_per_user = 2;
    let app = spawn_app_with(config).await;
    app.users(&["ana", "bo"]).await;
    let ana = app.token("ana").await;
    let bo = app.token("bo").await;

    let mut first = app.sse(&ana, None).await;
    first.next_of("counts").await;
    let mut second = app.ws(&ana, None).await;
    second.next_of("counts").await;
    let mut bos = app.sse(&bo, None).await;
    bos.next_of("counts").await;

    // A third stream of Ana's: her oldest (the SSE one) ends.
    let mut third = app.sse(&ana, None).await;
    third.next_of("counts").await;
    loop {
        match first.next().await {
            None => break,
            Some(e) => assert_ne!(e.event, "notification", "the oldest stream was closed"),
        }
    }
    // A fourth: now the WebSocket is the oldest.
    let mut fourth = app.ws(&ana, None).await;
    fourth.next_of("counts").await;
    loop {
        match second.next().await {
            Err(_) => break,
            Ok(m) => assert_ne!(m["type"], "notification", "the oldest socket was closed"),
        }
    }

    // The newest streams, and other users', go on.
    app.notify("ana", "still here").await;
    assert_eq!(third.notification().await.data["title"], "still here");
    assert_eq!(
        fourth.next_of("notification").await["data"]["title"],
        "still here"
    );
    app.notify("bo", "bo too").await;
    assert_eq!(bos.notification().await.data["title"], "bo too");
    assert_eq!(app.hub.connections(), 3);
}

#[tokio::test]
async fn named_recipients_per_request_are_limited_broadcasts_are_not() {
    let app = spawn_app_with(Config {
        max_recipients: 5,
        ..Config::default()
    })
    .await;
    app.users(&["u-1", "u-2", "u-3"]).await;
    app.admin(
        reqwest::Method::PUT,
        "/v1/groups/support",
        Some(json!({"name": "Support"})),
    )
    .await;

    let six: Vec<String> = (1..=6).map(|i| format!("u-{i}")).collect();
    let r = app.send(json!({"to": {"users": six}, "title": "x"})).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "too_many_recipients").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("6 recipients") && detail.contains("at most 5"),
        "{p}"
    );

    // Users and emails count together; up to the limit is fine.
    app.send_ok(json!({"to": {"users": ["u-1", "u-2", "u-3"],
        "emails": ["a@example.com", "b@example.com"]}, "title": "five"}))
        .await;
    let r = app
        .send(json!({"to": {"users": ["u-1", "u-2", "u-3"],
            "emails": ["a@example.com", "b@example.com", "c@example.com"]}, "title": "six"}))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "too_many_recipients").await;

    // Summed over a batch.
    let item = json!({"to": {"users": ["u-1", "u-2", "u-3"]}, "title": "x"});
    let r = app
        .admin(
            reqwest::Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": [item, item]})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "too_many_recipients").await;

    // Broadcasts are stored once and do not count.
    app.send_ok(json!({"to": {"all": true}, "title": "everyone"}))
        .await;
    app.send_ok(json!({"to": {"groups": ["support"], "users": ["u-1", "u-2"]}, "title": "g"}))
        .await;
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let app = crate::helpers::spawn_app_with(belfry_server::Config {
        rate_limit: 2,
        ..Default::default()
    })
    .await;
    let other = app.key_with_scope(belfry_store::Scope::Admin).await;
    // The server's clock stands still: a burst of 2, then refused.
    for _ in 0..2 {
        let r = app.admin(reqwest::Method::GET, "/v1/groups", None).await;
        assert_eq!(r.status(), reqwest::StatusCode::OK);
    }
    let r = app.admin(reqwest::Method::GET, "/v1/groups", None).await;
    assert_eq!(r.headers()["retry-after"], "1");
    crate::helpers::assert_problem(r, reqwest::StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Per key: another key is not limited by this one.
    let r = app
        .call(reqwest::Method::GET, "/v1/groups", &other, None)
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // A second later the burst is back.
    app.clock.advance_secs(1);
    let r = app.admin(reqwest::Method::GET, "/v1/groups", None).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
}
