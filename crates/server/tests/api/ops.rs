//! Health, readiness, metrics, OpenAPI, problem documents for framework
//! errors, and durability across restarts.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn metrics_text(app: &TestApp) -> String {
    app.text("/metrics").await
}

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");

    app.users(&["u-1"]).await;
    app.notify("u-1", "counted").await;
    let text = metrics_text(&app).await;
    assert!(
        text.contains("belfry_notifications_accepted_total"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"belfry_http_requests_total{method="POST",route="/v1/notifications",status="202"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("belfry_http_request_duration_seconds_bucket"),
        "{text}"
    );
    // Where the database's time goes: the pool's gauges on both backends,
    // and on SQLite the writer's transactions, the reads and the WAL.
    assert!(text.contains("belfry_db_pool_max_connections"), "{text}");
    if !app.db.is_postgres() {
        for name in [
            "belfry_sqlite_write_batch_duration_seconds_count",
            "belfry_sqlite_read_duration_seconds_count",
            "belfry_db_pool_waiting",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
        // The checkpointer reports the WAL's size every 500 ms.
        let mut text = text.clone();
        for _ in 0..50 {
            if text.contains("belfry_sqlite_wal_bytes") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            text = metrics_text(&app).await;
        }
        assert!(text.contains("belfry_sqlite_wal_bytes"), "{text}");
    } else {
        // The send above went the bulk path: one statement took the seq
        // counter, and reported how long it waited for it.
        for name in [
            r#"belfry_pg_seq_lock_hold_seconds_count{path="bulk"}"#,
            r#"belfry_pg_seq_lock_wait_seconds_count{path="bulk"}"#,
            "belfry_pg_bulk_batch_notifications_count",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
    }

    let doc: Value = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/notifications",
        "/v1/notifications/batch",
        "/v1/notifications/{id}",
        "/v1/me/notifications",
        "/v1/me/counts",
        "/v1/me/notifications/{id}/read",
        "/v1/me/notifications/read-all",
        "/v1/me/notifications/seen-all",
        "/v1/me/notifications/archive",
        "/v1/me/entities/{entity_type}/{entity_id}/read",
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/tokens",
        "/v1/groups",
        "/v1/groups/{group_id}",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    assert!(doc["components"]["schemas"]["SendRequest"].is_object());
    // Every reference points at something the document has (a schema used
    // only by a query parameter is easily left out of the components).
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(
        all.len() > 50,
        "the document uses references: {}",
        all.len()
    );
    for r in all {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
    }
}

/// The sum of the request counter's series whose labels contain `labels`.
fn requests_counted(text: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("belfry_http_requests_total{") && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Every request is counted once (the handles kept per route, method and
/// status keep counting); a method of the client's own is labelled OTHER,
/// so made-up methods cannot add series without end.
#[tokio::test]
async fn every_request_is_counted_and_made_up_methods_share_one_label() {
    let app = spawn_app().await;
    let before = metrics_text(&app).await;
    let method = Method::from_bytes(b"BELFRYPROBE").unwrap();
    for _ in 0..3 {
        let r = app
            .client
            .request(method.clone(), app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let after = metrics_text(&app).await;
    assert_eq!(
        requests_counted(&after, r#"method="OTHER""#)
            - requests_counted(&before, r#"method="OTHER""#),
        3,
        "{after}"
    );
    assert!(!after.contains("BELFRYPROBE"), "{after}");
}

#[tokio::test]
async fn framework_errors_are_problem_documents() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.admin(Method::PATCH, "/v1/notifications", None).await;
    assert_problem(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    let id = app.notify("ana", "before restart").await;
    app.send_ok(json!({"to": {"groups": ["support"]}, "title": "broadcast before restart"}))
        .await;
    let t = app.token("ana").await;
    app.me_post(
        &t,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;

    let app = app.restart().await;
    // Same admin key, same token signing secret, same data, and seq continues.
    let page = app.inbox(&t, "").await;
    assert_eq!(page["items"][0]["title"], "broadcast before restart");
    assert_eq!(page["items"][1]["title"], "before restart");
    assert_eq!(page["items"][1]["read"], true);
    let last_seq = page["items"][0]["seq"].as_i64().unwrap();
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "after"}))
        .await;
    assert_eq!(r["seq"].as_i64().unwrap(), last_seq + 1);
    assert_eq!(app.counts(&t).await, (2, 2));
}

/// The value of an unlabelled counter in the metrics text (0 before its
/// first increment).
fn counter_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Every frame queued on a stream is counted in
/// `belfry_stream_events_sent_total`, which the hub adds once per commit
/// for all the frames it queued: a direct send to one user with two
/// connections, then a broadcast to two users with three. Tests running
/// alongside may add to the counter (it is the process's), never take away.
#[tokio::test]
async fn frames_queued_on_streams_are_counted() {
    const NAME: &str = "belfry_stream_events_sent_total";
    let app = spawn_app().await;
    app.users(&["mc-ana", "mc-bo"]).await;
    let ana = app.token("mc-ana").await;
    let mut a1 = app.ws(&ana, None).await;
    let mut a2 = app.ws(&ana, None).await;
    let mut b1 = app.ws(&app.token("mc-bo").await, None).await;
    for s in [&mut a1, &mut a2, &mut b1] {
        s.next_of("counts").await;
    }
    let before = counter_value(&metrics_text(&app).await, NAME);
    app.notify("mc-ana", "direct").await;
    for s in [&mut a1, &mut a2] {
        assert_eq!(s.next_of("notification").await["data"]["title"], "direct");
    }
    app.send_ok(json!({"to": {"all": true}, "title": "everyone"}))
        .await;
    for s in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(s.next_of("notification").await["data"]["title"], "everyone");
    }
    // Each notification frame, and a counts frame behind it on each
    // connection that does not derive its counts (these do not ask to).
    let after = counter_value(&metrics_text(&app).await, NAME);
    assert!(after >= before + 10, "{before} → {after}");
}

/// An optional body (here a category's) may be left out or be `null`; when
/// one is sent it must be JSON: white space alone is refused, not taken
/// for no body (schemathesis sent a lone tab and got 200).
#[tokio::test]
async fn an_optional_body_is_absent_null_or_json_never_white_space() {
    let app = spawn_app().await;
    let put = |id: &str, body: &'static str| {
        app.client
            .put(app.url(&format!("/v1/categories/{id}")))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (id, body) in [
        ("opt-empty", ""),
        ("opt-null", "null"),
        ("opt-null-2", " null\n"),
    ] {
        let r = put(id, body).await.unwrap();
        assert!(r.status().is_success(), "{body:?}: {}", r.status());
    }
    for body in ["\t", " ", "\r\n", "{", "nul"] {
        let p = assert_problem(
            put("opt-bad", body).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("JSON"), "{p}");
    }
    // Nothing was stored by the refused ones.
    let r = app.admin(Method::GET, "/v1/categories/opt-bad", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
