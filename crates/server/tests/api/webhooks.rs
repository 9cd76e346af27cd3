//! Webhooks to producers (C7) end to end: webhooks registered through the
//! API, events caused by real deliveries and reads, and a receiver on
//! 127.0.0.1 standing in for the producer's endpoint. The receiver keeps
//! every request as it came and answers as each test scripts it; the
//! tests verify the Standard Webhooks signature themselves (HMAC-SHA256
//! computed here, with the secret the API returned), the headers and the
//! payload. Jobs run when the test drains the queue at the test clock's
//! time (the clock is moved, never slept on).

use crate::helpers::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    /// Which endpoint (the path's last segment).
    name: String,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Default)]
struct Script {
    /// Answers to give, in order (status, Retry-After); then 200.
    answers: VecDeque<(u16, Option<&'static str>)>,
    got: Vec<Got>,
}

#[derive(Clone)]
struct Endpoint {
    state: Arc<Mutex<Script>>,
    origin: String,
}

async fn take(
    State(state): State<Arc<Mutex<Script>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    s.got.push(Got {
        name,
        headers,
        body,
    });
    let (status, retry_after) = s.answers.pop_front().unwrap_or((200, None));
    let mut out = HeaderMap::new();
    if let Some(after) = retry_after {
        out.insert("retry-after", after.parse().unwrap());
    }
    (AxumStatus::from_u16(status).unwrap(), out, "thanks")
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .route("/in/{name}", axum::routing::post(take))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Endpoint {
            state,
            origin: format!("http://127.0.0.1:{port}"),
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/in/{name}", self.origin)
    }

    fn answer(&self, status: u16, retry_after: Option<&'static str>) {
        self.state
            .lock()
            .unwrap()
            .answers
            .push_back((status, retry_after));
    }

    fn got(&self, name: &str) -> Vec<Got> {
        self.state
            .lock()
            .unwrap()
            .got
            .iter()
            .filter(|g| g.name == name)
            .cloned()
            .collect()
    }
}

/// Checks a Standard Webhooks signature as a receiver does: HMAC-SHA256
/// of "{webhook-id}.{webhook-timestamp}.{body}" with the secret's bytes.
fn verify(secret: &str, g: &Got) -> bool {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signed = format!(
        "{}.{}.{}",
        g.header("webhook-id"),
        g.header("webhook-timestamp"),
        g.body
    );
    g.header("webhook-signature").split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|s| B64.decode(s).ok())
            .is_some_and(|tag| aws_lc_rs::hmac::verify(&key, signed.as_bytes(), &tag).is_ok())
    })
}

fn config(allow: &str) -> belfry_server::Config {
    belfry_server::Config {
        run_workers: false,
        outbound: belfry_delivery::OutboundPolicy::parse(allow).unwrap(),
        ..Default::default()
    }
}

/// Registers a webhook; returns the answer.
async fn put_hook(app: &TestApp, id: &str, body: Value, expect: StatusCode) -> Value {
    let r = app
        .admin(Method::PUT, &format!("/v1/webhooks/{id}"), Some(body))
        .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, expect, "PUT webhook {id}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let r = app.admin(Method::GET, path, None).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    get_json(app, &format!("/v1/webhooks/{id}/attempts")).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Runs due jobs until `name` got `n` requests (the webhook jobs a
/// finished job queued are due at once), or fails after 10 s.
async fn drain_until(app: &TestApp, endpoint: &Endpoint, name: &str, n: usize) -> Vec<Got> {
    for _ in 0..500 {
        app.run_due_jobs().await;
        let got = endpoint.got(name);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} got {} requests, not {n}", endpoint.got(name).len());
}

/// Runs everything due now, twice (jobs that jobs queued included).
async fn drain(app: &TestApp) {
    app.run_due_jobs().await;
    app.run_due_jobs().await;
}

#[tokio::test]
async fn webhooks_are_registered_validated_and_show_their_secret_once() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let created = put_hook(
        &app,
        "crm",
        json!({"url": "https://crm.example.com/belfry", "events": ["delivery.sent", "notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(
        created["events"],
        json!(["delivery.sent", "notification.read"])
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["source"], Value::Null);
    assert_eq!(created["failure_streak"], 0);

    // Never again: not on GET, not in the list, not on a replacing PUT.
    let got = get_json(&app, "/v1/webhooks/crm").await;
    assert!(got.get("secret").is_none(), "{got}");
    let replaced = put_hook(
        &app,
        "crm",
        json!({"url": "https://crm.example.com/v2", "events": ["action.submitted"], "source": "helpdesk"}),
        StatusCode::OK,
    )
    .await;
    assert!(replaced.get("secret").is_none(), "{replaced}");
    assert_eq!(replaced["url"], "https://crm.example.com/v2");
    assert_eq!(replaced["source"], "helpdesk");
    let list = get_json(&app, "/v1/webhooks").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none());
    assert_eq!(list["items"][0]["enabled"], true);
    assert_eq!(list["items"][0]["disabled_reason"], Value::Null);

    // A rotation answers a new secret.
    let r = app
        .admin(Method::POST, "/v1/webhooks/crm/rotate-secret", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // Validation: 422 naming the field.
    for (body, field) in [
        (
            json!({"url": "ftp://crm.example.com/x", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["delivery.sent"]}),
            "url",
        ),
        (json!({"events": ["delivery.sent"]}), "url"),
        (
            json!({"url": "https://u:p@crm.example.com/", "events": ["delivery.sent"]}),
            "url",
        ),
        (
            json!({"url": "https://crm.example.com/", "events": ["delivery.exploded"]}),
            "events[0]",
        ),
        (
            json!({"url": "https://crm.example.com/", "events": []}),
            "events",
        ),
        (json!({"url": "https://crm.example.com/"}), "events"),
        (
            json!({"url": "https://crm.example.com/", "events": ["delivery.sent"], "source": "Not A Source!"}),
            "source",
        ),
    ] {
        let r = app
            .admin(Method::PUT, "/v1/webhooks/bad", Some(body.clone()))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: {p}");
    }
    let r = app
        .admin(
            Method::PUT,
            "/v1/webhooks/bad",
            Some(
                json!({"url": "https://crm.example.com/", "events": ["delivery.sent"], "extra": 1}),
            ),
        )
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());

    // Unknown ids.
    for (method, path) in [
        (Method::GET, "/v1/webhooks/nope"),
        (Method::DELETE, "/v1/webhooks/nope"),
        (Method::GET, "/v1/webhooks/nope/attempts"),
        (Method::POST, "/v1/webhooks/nope/rotate-secret"),
    ] {
        let r = app.admin(method.clone(), path, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    // A send key is not enough.
    let r = app.admin(Method::DELETE, "/v1/webhooks/crm", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.admin(Method::GET, "/v1/webhooks/crm", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delivery_sent_is_signed_and_posted_after_an_email_and_a_chat_delivery() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    // Ana's own chat webhook (the chat channel's): a delivery on `chat`.
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/ana/channels/webhook",
            Some(json!({"url": endpoint.url("chat")})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let hook = put_hook(
        &app,
        "producer",
        json!({"url": endpoint.url("producer"), "events": ["delivery.sent"]}),
        StatusCode::CREATED,
    )
    .await;
    let secret = hook["secret"].as_str().unwrap();

    let sent = app
        .send_ok(
            json!({"to": {"users": ["ana"]}, "channels": ["in_app", "email", "chat"],
            "title": "Ticket 7 assigned", "category": "assignment", "source": "helpdesk"}),
        )
        .await;
    let id = sent["id"].as_str().unwrap();
    let got = drain_until(&app, &endpoint, "producer", 2).await;
    drain(&app).await;
    let got_now = endpoint.got("producer");
    assert_eq!(got_now.len(), 2, "one event per delivery: {got_now:?}");
    let mut channels = Vec::new();
    for g in &got {
        assert!(verify(secret, g), "the signature verifies: {g:?}");
        assert!(g.header("webhook-id").starts_with("msg_"));
        let ts: i64 = g.header("webhook-timestamp").parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - ts).abs() < 300, "a current timestamp: {ts}");
        assert_eq!(g.header("content-type"), "application/json");
        assert!(
            g.header("user-agent").starts_with("Belfry/"),
            "{:?}",
            g.headers
        );
        let v = g.json();
        assert_eq!(v["type"], "delivery.sent");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        let d = &v["data"];
        assert_eq!(d["notification_id"], id);
        assert_eq!(d["recipient"], "user:ana");
        assert_eq!(d["user_id"], "ana");
        assert_eq!(d["status"], "sent");
        assert_eq!(d["attempt"], 1);
        assert_eq!(d["error"], Value::Null);
        assert_eq!(d["source"], "helpdesk");
        assert_eq!(d["category"], "assignment");
        assert!(d["at"].as_str().is_some());
        channels.push(d["channel"].as_str().unwrap().to_string());
    }
    channels.sort();
    assert_eq!(channels, ["chat", "email"]);
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));

    // The attempts log: newest first, succeeded, with the answer.
    let log = attempts(&app, "producer").await;
    assert_eq!(log.len(), 2, "{log:?}");
    for a in &log {
        assert_eq!(a["status"], "succeeded");
        assert_eq!(a["event_type"], "delivery.sent");
        assert_eq!(a["response_code"], 200);
        assert_eq!(a["response"], "thanks");
        assert_eq!(a["attempt"], 1);
        assert_eq!(a["next_retry_at"], Value::Null);
        assert!(a["duration_ms"].as_i64().unwrap() >= 0);
    }
    let metrics = app.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("belfry_webhook_attempts_total")
                && l.contains("event=\"delivery.sent\"")
                && l.contains("outcome=\"succeeded\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn delivery_failed_follows_a_permanent_failure() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/ana/channels/webhook",
            Some(json!({"url": endpoint.url("chat")})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The chat receiver refuses the message for good (400).
    endpoint.answer(400, None);
    let hook = put_hook(
        &app,
        "producer",
        json!({"url": endpoint.url("producer"), "events": ["delivery.failed", "delivery.sent"]}),
        StatusCode::CREATED,
    )
    .await;
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["chat"], "title": "t"}))
        .await;
    let got = drain_until(&app, &endpoint, "producer", 1).await;
    drain(&app).await;
    assert_eq!(endpoint.got("producer").len(), 1);
    assert!(verify(hook["secret"].as_str().unwrap(), &got[0]));
    let v = got[0].json();
    assert_eq!(v["type"], "delivery.failed", "{v}");
    assert_eq!(v["data"]["notification_id"], sent["id"]);
    assert_eq!(v["data"]["channel"], "chat");
    assert_eq!(v["data"]["status"], "failed");
    assert!(v["data"]["error"].as_str().unwrap().contains("400"), "{v}");
}

#[tokio::test]
async fn notification_read_is_emitted_for_mark_read_and_mark_all_read() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let hook = put_hook(
        &app,
        "reads",
        json!({"url": endpoint.url("reads"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let secret = hook["secret"].as_str().unwrap();
    let first = app.notify("ana", "one").await;
    let second = app.notify("ana", "two").await;
    let third = app.notify("ana", "three").await;
    drain(&app).await;
    assert!(endpoint.got("reads").is_empty(), "nothing read yet");

    app.me_post(
        &token,
        &format!("/notifications/{first}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let got = drain_until(&app, &endpoint, "reads", 1).await;
    assert!(verify(secret, &got[0]));
    let v = got[0].json();
    assert_eq!(v["type"], "notification.read");
    assert_eq!(v["data"]["notification_id"], first.as_str());
    assert_eq!(v["data"]["user_id"], "ana");
    assert!(v["data"]["at"].as_str().is_some());

    // Mark all read: one event per notification it read (the two unread).
    app.me_post(&token, "/notifications/read-all", None, StatusCode::OK)
        .await;
    let got = drain_until(&app, &endpoint, "reads", 3).await;
    drain(&app).await;
    assert_eq!(endpoint.got("reads").len(), 3);
    let mut read: Vec<String> = got[1..]
        .iter()
        .map(|g| {
            g.json()["data"]["notification_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    read.sort();
    let mut expected = vec![second, third];
    expected.sort();
    assert_eq!(read, expected);
}

#[tokio::test]
async fn a_source_filter_takes_only_that_sources_notifications() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    put_hook(
        &app,
        "all",
        json!({"url": endpoint.url("all"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    put_hook(
        &app,
        "crm-only",
        json!({"url": endpoint.url("crm"), "events": ["notification.read"], "source": "crm"}),
        StatusCode::CREATED,
    )
    .await;
    let from_crm = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "from crm", "source": "crm"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let from_desk = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "from desk", "source": "desk"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unsourced = app.notify("ana", "no source").await;
    for id in [&from_crm, &from_desk, &unsourced] {
        app.me_post(
            &token,
            &format!("/notifications/{id}/read"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }
    drain_until(&app, &endpoint, "all", 3).await;
    drain(&app).await;
    assert_eq!(endpoint.got("all").len(), 3);
    let crm = endpoint.got("crm");
    assert_eq!(crm.len(), 1, "only the crm notification");
    assert_eq!(crm[0].json()["data"]["notification_id"], from_crm.as_str());
    assert_eq!(crm[0].json()["data"]["source"], "crm");
}

#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_id_and_both_are_logged() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let hook = put_hook(
        &app,
        "flaky",
        json!({"url": endpoint.url("flaky"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let id = app.notify("ana", "one").await;
    endpoint.answer(500, None);
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    drain_until(&app, &endpoint, "flaky", 1).await;
    drain(&app).await;
    assert_eq!(endpoint.got("flaky").len(), 1, "not again before its time");
    let log = attempts(&app, "flaky").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "retrying");
    assert_eq!(log[0]["response_code"], 500);
    let at = belfry_core::Millis::parse_rfc3339(log[0]["at"].as_str().unwrap()).unwrap();
    let next =
        belfry_core::Millis::parse_rfc3339(log[0]["next_retry_at"].as_str().unwrap()).unwrap();
    let wait = next.0 - at.0;
    assert!((4_500..=5_500).contains(&wait), "5 s ± 10 %: {wait} ms");
    let failing = get_json(&app, "/v1/webhooks/flaky").await;
    assert_eq!(failing["failure_streak"], 1);
    assert!(failing["failing_since"].as_str().is_some());

    app.clock.advance_secs(6);
    let got = drain_until(&app, &endpoint, "flaky", 2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body, "the same event");
    assert!(verify(hook["secret"].as_str().unwrap(), &got[1]));
    let log = attempts(&app, "flaky").await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["attempt"].as_i64()),
        (Some("succeeded"), Some(2))
    );
    assert_eq!(
        (log[1]["status"].as_str(), log[1]["attempt"].as_i64()),
        (Some("retrying"), Some(1))
    );
    assert_eq!(log[0]["event_id"], log[1]["event_id"]);
    // Paged, newest first.
    let page = get_json(&app, "/v1/webhooks/flaky/attempts?limit=1").await;
    assert_eq!(page["items"][0]["attempt"], 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let older = get_json(
        &app,
        &format!("/v1/webhooks/flaky/attempts?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(older["items"][0]["attempt"], 1);
    assert_eq!(older["next_cursor"], Value::Null);
    let r = app
        .admin(Method::GET, "/v1/webhooks/flaky/attempts?cursor=x", None)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let healthy = get_json(&app, "/v1/webhooks/flaky").await;
    assert_eq!(healthy["failure_streak"], 0);
    assert_eq!(healthy["failing_since"], Value::Null);
}

#[tokio::test]
async fn retry_after_of_a_429_is_honoured() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    put_hook(
        &app,
        "busy",
        json!({"url": endpoint.url("busy"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let id = app.notify("ana", "one").await;
    endpoint.answer(429, Some("120"));
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    drain_until(&app, &endpoint, "busy", 1).await;
    let log = attempts(&app, "busy").await;
    assert_eq!(log[0]["response_code"], 429);
    let at = belfry_core::Millis::parse_rfc3339(log[0]["at"].as_str().unwrap()).unwrap();
    let next =
        belfry_core::Millis::parse_rfc3339(log[0]["next_retry_at"].as_str().unwrap()).unwrap();
    assert!(
        next.0 - at.0 >= 120_000,
        "not before Retry-After: {} ms",
        next.0 - at.0
    );
    // The schedule's 5 s pass: not yet.
    app.clock.advance_secs(10);
    drain(&app).await;
    assert_eq!(endpoint.got("busy").len(), 1);
    app.clock.advance_secs(115);
    drain_until(&app, &endpoint, "busy", 2).await;
    assert_eq!(attempts(&app, "busy").await[0]["status"], "succeeded");
}

#[tokio::test]
async fn a_webhook_failing_for_long_is_disabled_and_a_put_enables_it() {
    let mut c = config("127.0.0.1");
    // Disabled once every attempt failed for a minute (5 days by default).
    c.webhooks.disable_after = Duration::from_secs(60);
    let app = spawn_app_with(c).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let body = json!({"url": endpoint.url("down"), "events": ["notification.read"]});
    put_hook(&app, "down", body.clone(), StatusCode::CREATED).await;
    for _ in 0..3 {
        endpoint.answer(503, None);
    }
    let id = app.notify("ana", "one").await;
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    drain_until(&app, &endpoint, "down", 1).await;
    app.clock.advance_secs(6);
    drain_until(&app, &endpoint, "down", 2).await;
    assert_eq!(get_json(&app, "/v1/webhooks/down").await["enabled"], true);
    // The next retry, five minutes on: the run of failures is over a
    // minute long now.
    app.clock.advance_secs(6 * 60);
    drain_until(&app, &endpoint, "down", 3).await;
    let hook = get_json(&app, "/v1/webhooks/down").await;
    assert_eq!(hook["enabled"], false, "{hook}");
    assert_eq!(hook["failure_streak"], 3);
    assert!(hook["disabled_at"].as_str().is_some());
    let reason = hook["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("every attempt failed"), "{reason}");
    let log = attempts(&app, "down").await;
    assert_eq!(log[0]["status"], "failed", "the event is given up: {log:?}");
    assert_eq!(log[0]["next_retry_at"], Value::Null);

    // Disabled: no new events, and the given-up one is not retried.
    let other = app.notify("ana", "two").await;
    app.me_post(
        &token,
        &format!("/notifications/{other}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    app.clock.advance_secs(24 * 3600);
    drain(&app).await;
    assert_eq!(endpoint.got("down").len(), 3);

    // A PUT enables it again.
    let again = put_hook(&app, "down", body, StatusCode::OK).await;
    assert_eq!(again["enabled"], true);
    assert_eq!(again["disabled_reason"], Value::Null);
    assert_eq!(again["failure_streak"], 0);
    let third = app.notify("ana", "three").await;
    app.me_post(
        &token,
        &format!("/notifications/{third}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let got = drain_until(&app, &endpoint, "down", 4).await;
    assert_eq!(got[3].json()["data"]["notification_id"], third.as_str());
}

#[tokio::test]
async fn a_410_disables_the_webhook_at_once() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    put_hook(
        &app,
        "gone",
        json!({"url": endpoint.url("gone"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    endpoint.answer(410, None);
    let id = app.notify("ana", "one").await;
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    drain_until(&app, &endpoint, "gone", 1).await;
    let hook = get_json(&app, "/v1/webhooks/gone").await;
    assert_eq!(hook["enabled"], false);
    assert!(
        hook["disabled_reason"].as_str().unwrap().contains("410"),
        "{hook}"
    );
    assert_eq!(attempts(&app, "gone").await[0]["status"], "failed");
}

#[tokio::test]
async fn a_private_address_is_refused_when_sending_unless_allowed() {
    // The default policy: only public addresses.
    let app = spawn_app_with(config("")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    // Accepted when registered (where it points is checked when sending) ...
    put_hook(
        &app,
        "inside",
        json!({"url": endpoint.url("inside"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    put_hook(
        &app,
        "by-name",
        json!({"url": endpoint.url("by-name").replace("127.0.0.1", "localhost"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let id = app.notify("ana", "one").await;
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    drain(&app).await;
    drain(&app).await;
    // ... and refused then: nothing arrives, the attempt says why, and
    // the event is not retried (it would be refused again).
    assert!(endpoint.got("inside").is_empty());
    assert!(endpoint.got("by-name").is_empty());
    for hook in ["inside", "by-name"] {
        let log = attempts(&app, hook).await;
        assert_eq!(log.len(), 1, "{hook}: {log:?}");
        assert_eq!(log[0]["status"], "failed");
        assert_eq!(log[0]["response_code"], Value::Null);
        let error = log[0]["response"].as_str().unwrap();
        assert!(
            error.contains("non-public") && error.contains("BELFRY_OUTBOUND_ALLOW"),
            "{hook}: {error}"
        );
    }
}

#[tokio::test]
async fn nothing_is_queued_when_no_webhook_subscribes() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    let token = app.token("ana").await;
    // Subscribed to something else.
    put_hook(
        &app,
        "sent-only",
        json!({"url": endpoint.url("sent"), "events": ["delivery.failed"]}),
        StatusCode::CREATED,
    )
    .await;
    let id = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["in_app", "email"], "title": "t"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    drain(&app).await;
    app.me_post(
        &token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    // Removed: its waiting events would go with it.
    let r = app
        .admin(Method::DELETE, "/v1/webhooks/sent-only", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.me_post(&token, "/notifications/read-all", None, StatusCode::OK)
        .await;
    assert_eq!(app.run_due_jobs().await, 0, "no webhook job was queued");
    assert!(endpoint.got("sent").is_empty());
}

#[tokio::test]
async fn the_retention_run_prunes_old_attempts() {
    let mut c = config("127.0.0.1");
    // Steps of 2 rows: the phase takes several.
    c.delivery.retention = Some(belfry_store::retention::RetentionPolicy {
        batch: 2,
        ..Default::default()
    });
    c.delivery.retention_slice = Duration::ZERO;
    let app = spawn_app_with(c).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    put_hook(
        &app,
        "kept",
        json!({"url": endpoint.url("kept"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.notify("ana", &format!("n{n}")).await);
    }
    for id in &ids[..3] {
        app.me_post(
            &token,
            &format!("/notifications/{id}/read"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }
    drain_until(&app, &endpoint, "kept", 3).await;
    assert_eq!(attempts(&app, "kept").await.len(), 3);
    // Three weeks on, two more; then the day the first three are 31 days old.
    app.clock.advance_secs(21 * 24 * 3600);
    for id in &ids[3..] {
        app.me_post(
            &token,
            &format!("/notifications/{id}/read"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    }
    drain_until(&app, &endpoint, "kept", 5).await;
    assert_eq!(
        attempts(&app, "kept").await.len(),
        5,
        "younger than 30 days"
    );
    app.clock.advance_secs(10 * 24 * 3600);
    drain(&app).await;
    let left = attempts(&app, "kept").await;
    assert_eq!(left.len(), 2, "the 31-day-old attempts went: {left:?}");
}

/// Two nodes on PostgreSQL joined by NATS (BELFRY_TEST_POSTGRES_URL and
/// BELFRY_TEST_NATS_URL; the pair is what runs several nodes): a webhook
/// registered through one node is used at once by the other, whose
/// snapshot said a moment ago that nobody subscribes (it hears of the
/// change on the bus, well before its periodic re-read).
#[tokio::test]
async fn another_node_hears_of_a_new_webhook_at_once() {
    let nats = std::env::var("BELFRY_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let mut c = config("127.0.0.1");
    c.nats_url = nats.clone();
    c.nats_subject = format!("belfry.test.hooks.{}", std::process::id());
    let a = spawn_app_with(c).await;
    if !a.db.is_postgres() || nats.is_none() {
        eprintln!("skipping: needs BELFRY_TEST_POSTGRES_URL and BELFRY_TEST_NATS_URL");
        return;
    }
    let b = a.another_node().await;
    let endpoint = Endpoint::start().await;
    a.users(&["ana"]).await;
    let token = a.token("ana").await;
    // B reads with nobody subscribed: its snapshot says so.
    let first = a.notify("ana", "before").await;
    b.me_post(
        &token,
        &format!("/notifications/{first}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let started = std::time::Instant::now();
    put_hook(
        &a,
        "fresh",
        json!({"url": endpoint.url("fresh"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    // Within a few seconds (the snapshot's own re-read is 10 s away), a
    // read through B is sent.
    loop {
        let id = a.notify("ana", "after").await;
        b.me_post(
            &token,
            &format!("/notifications/{id}/read"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
        b.run_due_jobs().await;
        if !endpoint.got("fresh").is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "node B did not hear of the webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(endpoint.got("fresh").len(), 1);
}

#[tokio::test]
async fn reading_an_entity_emits_one_read_per_notification_about_it() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    put_hook(
        &app,
        "reads",
        json!({"url": endpoint.url("reads"), "events": ["notification.read"]}),
        StatusCode::CREATED,
    )
    .await;
    let about = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "reply on 7",
            "entity": {"type": "ticket", "id": "7"}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "reply on 8",
        "entity": {"type": "ticket", "id": "8"}}))
        .await;
    app.notify("ana", "unrelated").await;
    app.me_post(&token, "/entities/ticket/7/read", None, StatusCode::OK)
        .await;
    let got = drain_until(&app, &endpoint, "reads", 1).await;
    drain(&app).await;
    assert_eq!(endpoint.got("reads").len(), 1, "only ticket 7's");
    assert_eq!(got[0].json()["data"]["notification_id"], about.as_str());
}

#[tokio::test]
async fn an_answer_to_an_action_reaches_the_producer_as_action_submitted() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let endpoint = Endpoint::start().await;
    app.put_user("bo", json!({"name": "Bo Berg"})).await;
    app.users(&["cy"]).await;
    let hook = put_hook(
        &app,
        "hr",
        json!({"url": endpoint.url("hr"), "events": ["action.submitted"], "source": "hr"}),
        StatusCode::CREATED,
    )
    .await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    let form = json!({"fields": [{"name": "note", "label": "Note", "type": "text"}]});
    let sent = app
        .send_ok(json!({"to": {"users": ["bo", "cy"]}, "title": "Vacation request", "source": "hr",
            "entity": {"type": "request", "id": "7"},
            "actions": [{"id": "approve", "label": "Approve", "kind": "callback", "once": true, "form": form}]}))
        .await;
    let id = sent["id"].as_str().unwrap();
    // Another source's answers are not this webhook's.
    let other = app
        .send_ok(
            json!({"to": {"users": ["bo"]}, "title": "Other", "source": "it",
            "actions": [{"id": "ok", "label": "OK", "kind": "callback"}]}),
        )
        .await;
    let bo = app.token("bo").await;
    app.me_post(
        &bo,
        &format!(
            "/notifications/{}/actions/ok",
            other["id"].as_str().unwrap()
        ),
        None,
        StatusCode::ACCEPTED,
    )
    .await;
    let answer = app
        .me_post(
            &bo,
            &format!("/notifications/{id}/actions/approve"),
            Some(json!({"values": {"note": "enjoy"}})),
            StatusCode::ACCEPTED,
        )
        .await;
    // A refused second answer is not an event.
    let cy = app.token("cy").await;
    app.me_post(
        &cy,
        &format!("/notifications/{id}/actions/approve"),
        None,
        StatusCode::CONFLICT,
    )
    .await;
    let got = drain_until(&app, &endpoint, "hr", 1).await;
    drain(&app).await;
    let got_all = endpoint.got("hr");
    assert_eq!(got_all.len(), 1, "one event: {got_all:?}");
    let g = &got[0];
    assert!(verify(&secret, g), "signed");
    let v = g.json();
    assert_eq!(v["type"], "action.submitted");
    let d = &v["data"];
    assert_eq!(d["response_id"], answer["response_id"]);
    assert_eq!(d["notification_id"], id);
    assert_eq!(
        d["action"],
        json!({"id": "approve", "label": "Approve", "once": true})
    );
    assert_eq!(d["values"], json!({"note": "enjoy"}));
    assert_eq!(d["user"], json!({"id": "bo", "name": "Bo Berg"}));
    assert_eq!(d["source"], "hr");
    assert_eq!(d["entity"], json!({"type": "request", "id": "7"}));
    assert_eq!(d["title"], "Vacation request");
}
