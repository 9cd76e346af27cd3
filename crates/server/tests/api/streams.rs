//! Real time: SSE and WebSocket streams with real clients against the
//! running server.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits until `check` holds, polling (for background effects like disconnects).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn sse_delivers_every_audience_to_the_right_users_only() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    app.put_user("bo", json!({"groups": ["sales"]})).await;
    app.admin(Method::PUT, "/v1/subscriptions/ticket/7/users/ana", None)
        .await;
    let mut ana = app.sse(&app.token("ana").await, None).await;
    let mut bo = app.sse(&app.token("bo").await, None).await;
    // On connect: the current counts.
    assert_eq!(
        ana.next_of("counts").await.data,
        json!({"unread": 0, "unseen": 0, "seq": 0})
    );

    let direct = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "direct"}))
        .await;
    let e = ana.notification().await;
    assert_eq!(e.data["title"], "direct");
    assert_eq!(e.data["id"], direct["id"]);
    assert_eq!(e.id, direct["seq"].as_i64());
    assert_eq!(e.data["read"], false);
    assert_eq!(
        ana.next_of("counts").await.data,
        json!({"unread": 1, "unseen": 1, "seq": direct["seq"]})
    );

    let group = app
        .send_ok(json!({"to": {"groups": ["support"]}, "title": "to support"}))
        .await;
    assert_eq!(ana.notification().await.data["title"], "to support");
    assert_eq!(
        ana.next_of("counts").await.data,
        json!({"unread": 2, "unseen": 2, "seq": group["seq"]})
    );
    app.send_ok(json!({"to": {"entity": {"type": "ticket", "id": "7"}}, "title": "ticket 7"}))
        .await;
    assert_eq!(ana.notification().await.data["title"], "ticket 7");
    app.send_ok(json!({"to": {"all": true}, "title": "everyone"}))
        .await;
    assert_eq!(ana.notification().await.data["title"], "everyone");

    // Bo got only what was for everyone: the next notification he sees is that one.
    assert_eq!(bo.notification().await.data["title"], "everyone");
    app.send_ok(json!({"to": {"groups": ["sales"]}, "title": "to sales"}))
        .await;
    assert_eq!(bo.notification().await.data["title"], "to sales");
    // ...and Ana never sees Bo's: her next one is the next one for her.
    app.notify("ana", "after").await;
    assert_eq!(ana.notification().await.data["title"], "after");
}

#[tokio::test]
async fn websocket_delivers_and_never_across_users() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    app.users(&["bo"]).await;
    let mut ana = app.ws(&app.token("ana").await, None).await;
    let mut bo = app.ws(&app.token("bo").await, None).await;
    let counts = ana.next_of("counts").await;
    assert_eq!(counts["seq"], Value::Null);

    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "for ana", "stack_key": "k"}))
        .await;
    let m = ana.next_of("notification").await;
    assert_eq!(m["seq"], r["seq"]);
    assert_eq!(m["data"]["title"], "for ana");
    assert_eq!(m["data"]["stack_count"], 1);
    let again = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "for ana again", "stack_key": "k"}))
        .await;
    let m = ana.next_of("notification").await;
    assert_eq!(
        m["data"]["stack_count"], 2,
        "the stacked entry, with its count"
    );
    // Counted again (a stack that grew): as of the newest notification.
    ana.counts_settle(json!({"unread": 1, "unseen": 1, "seq": again["seq"]}))
        .await;

    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "support only"}))
        .await;
    assert_eq!(
        ana.next_of("notification").await["data"]["title"],
        "support only"
    );
    app.notify("bo", "for bo").await;
    assert_eq!(
        bo.next_of("notification").await["data"]["title"],
        "for bo",
        "bo saw nothing before"
    );
}

/// Sends `n` notifications to `user` one after another; returns their ids.
fn producer(app: &TestApp, user: &'static str, n: usize) -> tokio::task::JoinHandle<Vec<String>> {
    let client = app.client.clone();
    let url = app.url("/v1/notifications");
    let key = app.admin_key.clone();
    tokio::spawn(async move {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let r: Value = client
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"to": {"users": [user]}, "title": format!("n{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(r["id"].as_str().unwrap().to_string());
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        ids
    })
}

#[tokio::test]
async fn sse_resume_has_no_gap_and_no_duplicate_while_sending_continues() {
    let app = spawn_app().await;
    app.users(&["ana", "other"]).await;
    let token = app.token("ana").await;
    let mut received: Vec<(i64, String)> = Vec::new();
    let mut stream = app.sse(&token, None).await;
    let total = 80;
    let sending = producer(&app, "ana", total);
    // Noise for another user shares the seq space.
    let noise = producer(&app, "other", 40);
    let mut reconnects = 0;
    while received.len() < total {
        let e = stream.notification().await;
        received.push((e.id.unwrap(), e.data["id"].as_str().unwrap().to_string()));
        if received.len().is_multiple_of(15) {
            // Drop and resume from the last event id while the producer goes on.
            drop(stream);
            reconnects += 1;
            stream = app.sse(&token, received.last().map(|r| r.0)).await;
        }
    }
    let sent = sending.await.unwrap();
    noise.await.unwrap();
    assert!(reconnects >= 5);
    let ids: Vec<String> = received.iter().map(|r| r.1.clone()).collect();
    assert_eq!(ids, sent, "every notification once, in order");
    assert!(received.windows(2).all(|w| w[0].0 < w[1].0));
}

#[tokio::test]
async fn websocket_resume_has_no_gap_and_no_duplicate_while_sending_continues() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["g"]})).await;
    let token = app.token("ana").await;
    let mut received: Vec<String> = Vec::new();
    let mut last_seq = 0;
    let mut socket = app.ws(&token, None).await;
    let total = 60;
    let sending = producer(&app, "ana", total);
    while received.len() < total {
        let m = socket.next_of("notification").await;
        let seq = m["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "in order, no duplicate");
        last_seq = seq;
        received.push(m["data"]["id"].as_str().unwrap().to_string());
        if received.len().is_multiple_of(13) {
            drop(socket);
            socket = app.ws(&token, Some(last_seq)).await;
        }
    }
    assert_eq!(received, sending.await.unwrap());
}

#[tokio::test]
async fn replay_includes_broadcasts_and_current_state() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    let token = app.token("ana").await;
    let first = app.notify("ana", "before").await;
    let cursor = app.inbox(&token, "").await["items"][0]["seq"]
        .as_i64()
        .unwrap();
    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "group while away"}))
        .await;
    let read_me = app.notify("ana", "read elsewhere").await;
    app.me_post(
        &token,
        &format!("/notifications/{read_me}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    app.notify("ana", "last").await;

    let mut s = app.sse(&token, Some(cursor)).await;
    let titles: Vec<(String, bool)> = [
        s.notification().await,
        s.notification().await,
        s.notification().await,
    ]
    .iter()
    .map(|e| {
        (
            e.data["title"].as_str().unwrap().to_string(),
            e.data["read"].as_bool().unwrap(),
        )
    })
    .collect();
    assert_eq!(
        titles,
        [
            ("group while away".to_string(), false),
            ("read elsewhere".to_string(), true),
            ("last".to_string(), false)
        ]
    );
    let _ = first;
    // A cursor of 0 replays everything.
    let mut ws = app.ws(&token, Some(0)).await;
    assert_eq!(ws.next_of("notification").await["data"]["title"], "before");
}

#[tokio::test]
async fn counts_and_state_reach_every_connection_of_the_user() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let mut phone = app.sse(&token, None).await;
    let mut desktop = app.ws(&token, None).await;
    let id = app.notify("ana", "hello").await;
    assert_eq!(phone.notification().await.data["id"], id.as_str());
    assert_eq!(
        desktop.next_of("notification").await["data"]["id"],
        id.as_str()
    );

    // Read on the phone (the API call), seen on the desktop (the stream).
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let state = desktop.next_of("state").await;
    assert_eq!(
        state["data"],
        json!({"action": "items", "op": "read", "ids": [id]})
    );
    // A recount started before the read may still arrive first (the hub
    // promises that the last value is right): wait for the settled one.
    desktop
        .counts_settle(json!({"unread": 0, "unseen": 0}))
        .await;
    assert_eq!(phone.next_of("state").await.data["op"], "read");

    app.seen_all(&token).await;
    assert_eq!(
        desktop.next_of("state").await["data"],
        json!({"action": "seen_all"})
    );
    app.me_post(
        &token,
        "/notifications/read-all",
        Some(json!({"category": "mention"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        desktop.next_of("state").await["data"],
        json!({"action": "read_all", "category": "mention"})
    );
    app.me_post(&token, "/entities/ticket/1/read", None, StatusCode::OK)
        .await;
    assert_eq!(
        desktop.next_of("state").await["data"],
        json!({"action": "read_entity", "entity": {"type": "ticket", "id": "1"}})
    );
    // The producer cancels a notification: it disappears everywhere.
    let gone = app.notify("ana", "cancelled soon").await;
    app.admin(Method::DELETE, &format!("/v1/notifications/{gone}"), None)
        .await;
    let m = loop {
        let m = desktop.next_of("state").await;
        if m["data"]["action"] == "delete" {
            break m;
        }
    };
    assert_eq!(m["data"]["ids"], json!([gone]));
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_off_with_bounded_memory() {
    let mut config = belfry_server::Config::default();
    config.streams.queue = 8;
    let app = spawn_app_with(config).await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;

    // A raw client that sends its request and never reads.
    let mut stuck = stuck_request(
        &app,
        &format!("GET /v1/me/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"),
    )
    .await;
    eventually("the stream is registered", || app.hub.connections() == 1).await;

    fill_until_cut_off(&app, "ana").await;

    // The server closed the socket: after what was in flight, the client reads EOF.
    assert!(
        closed_by_server(&mut stuck).await,
        "the connection was closed by the server"
    );

    // A healthy client of the same user is unaffected and resumes where it wants.
    let mut s = app.sse(&token, None).await;
    app.notify("ana", "still works").await;
    assert_eq!(s.notification().await.data["title"], "still works");
}

#[tokio::test]
async fn idle_streams_get_heartbeats() {
    let mut config = belfry_server::Config::default();
    config.streams.heartbeat = Duration::from_millis(200);
    let app = spawn_app_with(config).await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let mut s = app.sse(&token, None).await;
    s.next_of("heartbeat").await;
    s.next_of("heartbeat").await;
    let mut ws = app.ws(&token, None).await;
    ws.next_of("heartbeat").await;
}

#[tokio::test]
async fn bad_tokens_and_cursors_are_refused_before_the_stream_opens() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let r = app
        .client
        .get(app.url("/v1/me/stream"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .client
        .get(app.url("/v1/me/stream?token=garbage"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .call(Method::GET, "/v1/me/stream", &app.admin_key, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    let r = app
        .admin(
            Method::POST,
            "/v1/users/ana/tokens",
            Some(json!({"ttl_seconds": 30})),
        )
        .await;
    let short = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    app.clock.advance_secs(31);
    let r = app
        .client
        .get(app.url(&format!("/v1/me/stream?token={short}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let ws_url = format!(
        "{}/v1/me/ws?token={short}",
        app.base.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401 before the upgrade, got {other:?}"),
    }

    let token = app.token("ana").await;
    for bad in ["abc", "-1", "999999"] {
        let r = app
            .client
            .get(app.url("/v1/me/stream"))
            .bearer_auth(&token)
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::BAD_REQUEST, "invalid_cursor").await;
        let ws_url = format!(
            "{}/v1/me/ws?token={token}&after={bad}",
            app.base.replace("http://", "ws://")
        );
        match tokio_tungstenite::connect_async(ws_url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
            other => panic!("expected 400 before the upgrade, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn shutdown_closes_streams_and_clients_resume_after_restart() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let mut s = app.sse(&token, None).await;
    let mut ws = app.ws(&token, None).await;
    let first = app.notify("ana", "before").await;
    let seq = s.notification().await.id.unwrap();
    assert_eq!(
        ws.next_of("notification").await["data"]["id"],
        first.as_str()
    );

    let app = app.restart().await;
    // The SSE stream ended; the WebSocket was closed with 1012 (service restart).
    loop {
        match s.next().await {
            None => break,
            Some(e) => assert_ne!(e.event, "notification"),
        }
    }
    loop {
        match ws.next().await {
            Err(code) => {
                assert_eq!(code, Some(1012));
                break;
            }
            Ok(m) => assert_ne!(m["type"], "notification"),
        }
    }
    // What was sent while away arrives on resume.
    app.notify("ana", "while restarting").await;
    let mut s = app.sse(&token, Some(seq)).await;
    assert_eq!(s.notification().await.data["title"], "while restarting");
    assert_eq!(app.hub.connections(), 1);
}

/// PostgreSQL only: one SQLite file has one writer, so it runs no second node.
#[tokio::test]
async fn a_cursor_from_another_node_is_accepted_and_resumes() {
    let a = spawn_app().await;
    if !a.db.is_postgres() {
        return;
    }
    let b = a.another_node().await;
    a.users(&["ana"]).await;
    let first = a
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "one"}))
        .await;
    let second = a
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "two"}))
        .await;
    // B committed nothing itself; its store reads what A committed.
    let token = b.token("ana").await;
    assert_eq!(b.titles(&token, "").await, ["two", "one"]);
    // A client saw "one" through A and reconnects to B, which has not
    // heard of that seq yet: B asks the database instead of refusing it.
    let mut sse = b.sse(&token, first["seq"].as_i64()).await;
    let e = sse.notification().await;
    assert_eq!(e.id, second["seq"].as_i64());
    assert_eq!(e.data["title"], "two");
    // A cursor beyond everything committed is still refused.
    let ahead = second["seq"].as_i64().unwrap() + 100;
    let r = b
        .client
        .get(b.url("/v1/me/stream"))
        .bearer_auth(&token)
        .header("last-event-id", ahead.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_cursor").await;
}

/// Opens an SSE stream and reads its body to the end in the background:
/// Ok(body) when the response ended cleanly, Err when it was cut off.
async fn sse_to_end(
    app: &TestApp,
    token: &str,
    after: Option<i64>,
) -> tokio::task::JoinHandle<Result<String, String>> {
    let mut req = app.client.get(app.url("/v1/me/stream")).bearer_auth(token);
    if let Some(a) = after {
        req = req.header("last-event-id", a.to_string());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), r.text())
            .await
            .map_err(|_| "the stream did not end within 10 s".to_string())?
            .map_err(|e| format!("the stream was cut off: {e}"))
    })
}

/// The titles of the notifications in an SSE body.
fn notification_titles(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|block| block.contains("event: notification"))
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| {
            serde_json::from_str::<Value>(data).unwrap()["title"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn revoking_tokens_ends_their_streams_cleanly_and_a_new_token_resumes_without_loss() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let old = app.token("ana").await;
    let bo = app.token("bo").await;
    let mut ws = app.ws(&old, None).await;
    let mut bos = app.ws(&bo, None).await;
    let sse = sse_to_end(&app, &old, None).await;
    let one = app
        .send_ok(json!({"to": {"users": ["ana", "bo"]}, "title": "one"}))
        .await;
    ws.next_of("notification").await;
    bos.next_of("notification").await;
    assert_eq!(app.hub.connections(), 3);

    let r = app
        .admin(Method::DELETE, "/v1/users/ana/tokens", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // The SSE response ends (not cut off), the WebSocket closes with 4001.
    let body = sse.await.unwrap().expect("a clean end");
    assert_eq!(notification_titles(&body), ["one"]);
    assert_eq!(ws.closed().await, (4001, "token revoked".to_string()));
    eventually("ana's connections are gone", || app.hub.connections() == 1).await;
    // Bo's stream stays open.
    app.notify("bo", "still here").await;
    assert_eq!(
        bos.next_of("notification").await["data"]["title"],
        "still here"
    );

    // Sent while Ana had no stream: a new token resumes from the cursor and
    // misses nothing; the old token cannot reconnect.
    app.notify("ana", "two").await;
    let r = app
        .client
        .get(app.url("/v1/me/stream"))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let fresh = app.token("ana").await;
    let after = one["seq"].as_i64();
    let mut sse = app.sse(&fresh, after).await;
    assert_eq!(sse.notification().await.data["title"], "two");
    let mut ws = app.ws(&fresh, after).await;
    assert_eq!(ws.next_of("notification").await["data"]["title"], "two");
    // Streams of the new token are not ended by the revocation before it.
    app.notify("ana", "three").await;
    assert_eq!(sse.notification().await.data["title"], "three");
    assert_eq!(ws.next_of("notification").await["data"]["title"], "three");
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let r = app
        .admin(
            Method::POST,
            "/v1/users/ana/tokens",
            Some(json!({"ttl_seconds": 1})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let short: Value = r.json().await.unwrap();
    let short = short["token"].as_str().unwrap().to_string();
    let mut ws = app.ws(&short, None).await;
    let sse = sse_to_end(&app, &short, None).await;
    // Within the token's second: both end, cleanly.
    sse.await.unwrap().expect("a clean end");
    assert_eq!(ws.closed().await, (4001, "token expired".to_string()));
}

#[tokio::test]
async fn a_stream_ends_when_the_clock_passes_its_tokens_expiry() {
    // Belfry's clock, not only the timer set on connecting, decides: the
    // check runs with every heartbeat.
    let mut config = belfry_server::Config::default();
    config.streams.heartbeat = Duration::from_millis(100);
    let app = spawn_app_with(config).await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let mut ws = app.ws(&token, None).await;
    let sse = sse_to_end(&app, &token, None).await;
    ws.next_of("heartbeat").await;
    app.clock.advance_secs(30 * 24 * 3600);
    sse.await.unwrap().expect("a clean end");
    assert_eq!(ws.closed().await, (4001, "token expired".to_string()));
}

/// A raw client with a small receive buffer that sends `request` and then
/// reads nothing.
async fn stuck_request(app: &TestApp, request: &str) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    stuck.write_all(request.as_bytes()).await.unwrap();
    stuck
}

/// A WebSocket client that upgrades and then reads nothing.
async fn stuck_websocket(app: &TestApp, token: &str) -> tokio::net::TcpStream {
    stuck_request(
        app,
        &format!(
            "GET /v1/me/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        ),
    )
    .await
}

/// A server whose streams queue `queue` frames, and Ana's WebSocket that
/// reads nothing, registered.
async fn app_with_a_stuck_websocket(queue: usize) -> (TestApp, tokio::net::TcpStream) {
    let mut config = belfry_server::Config::default();
    config.streams.queue = queue;
    let app = spawn_app_with(config).await;
    app.users(&["ana"]).await;
    let stuck = stuck_websocket(&app, &app.token("ana").await).await;
    eventually("the socket is registered", || app.hub.connections() == 1).await;
    (app, stuck)
}

/// Sends `count` notifications of about 18 KB each to `user`, 200 per batch.
async fn send_big(app: &TestApp, user: &str, count: usize) {
    let big = "x".repeat(9_000);
    for _ in 0..count.div_ceil(200) {
        let batch: Vec<Value> = (0..200)
            .map(|i| json!({"to": {"users": [user]}, "title": format!("big {i}"), "body": big, "data": {"pad": big}}))
            .collect();
        let r = app
            .admin(
                Method::POST,
                "/v1/notifications/batch",
                Some(json!({"notifications": batch})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
}

/// Sends big notifications to `user`'s only stream, which reads nothing,
/// until the hub cuts it off for being too slow.
async fn fill_until_cut_off(app: &TestApp, user: &str) {
    let mut sent = 0;
    while app.hub.connections() > 0 {
        if sent >= 6_000 {
            let m = app.text("/metrics").await;
            let lines: Vec<&str> = m.lines().filter(|l| l.contains("stream")).collect();
            panic!("the stuck client was never disconnected: {lines:#?}");
        }
        send_big(app, user, 200).await;
        sent += 200;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("belfry_stream_slow_disconnects_total"),
        "{metrics}"
    );
}

/// Reads until the server closes the connection; false if it stays open.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_websocket_that_stops_reading_is_cut_off_even_while_its_write_waits() {
    let (app, mut stuck) = app_with_a_stuck_websocket(8).await;
    fill_until_cut_off(&app, "ana").await;
    assert!(
        closed_by_server(&mut stuck).await,
        "the socket was closed by the server"
    );
}

#[tokio::test]
async fn a_stuck_websocket_whose_token_is_revoked_is_cut_off_after_the_grace() {
    // A queue large enough that the hub never cuts it for being slow.
    let (app, mut stuck) = app_with_a_stuck_websocket(100_000).await;
    // About 36 MB: far more than the socket buffers hold, so the
    // connection's task waits in a write.
    send_big(&app, "ana", 2_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.hub.connections(), 1);

    let r = app
        .admin(Method::DELETE, "/v1/users/ana/tokens", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Asked to end cleanly, it cannot: its write waits for a reader...
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.hub.connections(),
        1,
        "a clean end waits for the write in progress"
    );
    // ...so it is cut off once the grace is over.
    eventually("the stuck socket is cut off", || app.hub.connections() == 0).await;
    assert!(
        closed_by_server(&mut stuck).await,
        "the socket was closed by the server"
    );
}

/// The WebSocket's task polls the socket for the client's messages only
/// when the socket woke it, not for every frame it writes: a client that
/// closes, cleanly or by dropping the connection, after many frames is
/// still noticed at once, and its hub slot freed.
#[tokio::test]
async fn the_server_notices_a_websocket_client_leaving_after_many_frames() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let ana = app.token("ana").await;
    let bo = app.token("bo").await;
    let mut a = app.ws(&ana, None).await;
    let mut b = app.ws(&bo, None).await;
    eventually("both are registered", || app.hub.connections() == 2).await;
    for i in 0..20 {
        app.notify("ana", &format!("a{i}")).await;
        app.notify("bo", &format!("b{i}")).await;
    }
    for i in 0..20 {
        assert_eq!(
            a.next_of("notification").await["data"]["title"],
            format!("a{i}")
        );
        assert_eq!(
            b.next_of("notification").await["data"]["title"],
            format!("b{i}")
        );
    }
    // A close frame: the server answers it and lets go.
    a.close().await;
    eventually("ana's socket is gone", || app.hub.connections() == 1).await;
    // A dropped connection: the server reads the end of the stream.
    drop(b);
    eventually("bo's socket is gone", || app.hub.connections() == 0).await;
}

/// The hub delivers a broadcast to the connected members of its audience,
/// each once: a member of two of its groups gets one frame, a member of
/// none gets nothing but what goes to everyone.
#[tokio::test]
async fn a_broadcast_to_several_groups_reaches_each_connected_member_once() {
    let app = spawn_app().await;
    app.put_user("both", json!({"groups": ["support", "sales"]}))
        .await;
    app.put_user("one", json!({"groups": ["sales"]})).await;
    app.put_user("none", json!({"groups": ["hr"]})).await;
    let mut both = app.ws(&app.token("both").await, None).await;
    let mut one = app.ws(&app.token("one").await, None).await;
    let mut none = app.ws(&app.token("none").await, None).await;
    eventually("all are registered", || app.hub.connections() == 3).await;
    for (to, title) in [
        (json!({"groups": ["support", "sales"]}), "two groups"),
        (json!({"groups": ["sales"]}), "one group"),
        (json!({"all": true}), "everyone"),
    ] {
        app.send_ok(json!({"to": to, "title": title})).await;
    }
    for ws in [&mut both, &mut one] {
        for title in ["two groups", "one group", "everyone"] {
            assert_eq!(ws.next_of("notification").await["data"]["title"], title);
        }
    }
    assert_eq!(
        none.next_of("notification").await["data"]["title"],
        "everyone"
    );
}
