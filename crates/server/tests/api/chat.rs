//! Chat and personal webhooks (C7) end to end: targets stored through the
//! API, and deliveries to a receiver on 127.0.0.1 that stands in for Slack,
//! Teams and a webhook consumer. It keeps every request as it came; the
//! tests check the Block Kit and Adaptive Card shapes and verify the
//! Standard Webhooks signature with the secret the API returned. Only the
//! receiver is a stand-in: the server, database and engine are real.

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

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    /// The path's last segment (which target).
    name: String,
    headers: HeaderMap,
    body: String,
}

impl Received {
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
struct ReceiverState {
    /// Answers to give, in order (status, Retry-After); then 200.
    script: VecDeque<(u16, Option<&'static str>)>,
    received: Vec<Received>,
}

#[derive(Clone)]
struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
    origin: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new()
            .route("/hooks/{name}", axum::routing::post(receive))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            state,
            origin: format!("http://127.0.0.1:{port}"),
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.origin)
    }

    fn answer(&self, status: u16, retry_after: Option<&'static str>) {
        self.state
            .lock()
            .unwrap()
            .script
            .push_back((status, retry_after));
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    s.received.push(Received {
        name,
        headers,
        body,
    });
    let (status, retry_after) = s.script.pop_front().unwrap_or((200, None));
    let mut out = HeaderMap::new();
    if let Some(after) = retry_after {
        out.insert("retry-after", after.parse().unwrap());
    }
    (AxumStatus::from_u16(status).unwrap(), out, "ok")
}

fn config(allow: &str) -> belfry_server::Config {
    let mut c = belfry_server::Config {
        run_workers: false,
        outbound: belfry_delivery::OutboundPolicy::parse(allow).unwrap(),
        ..Default::default()
    };
    c.email.app_url = Some("https://desk.example.com".into());
    c.delivery.retry_base = std::time::Duration::from_secs(10);
    c
}

async fn put_target(app: &TestApp, path: &str, url: &str, expect: StatusCode) -> Value {
    let r = app
        .admin(Method::PUT, path, Some(json!({ "url": url })))
        .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, expect, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// (recipient, status, error, reason) of a notification's chat log lines.
async fn chat_log(
    app: &TestApp,
    id: &str,
) -> Vec<(String, String, Option<String>, Option<String>)> {
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["channel"] == "chat")
        .map(|i| {
            (
                i["recipient"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["error"].as_str().map(String::from),
                i["reason"].as_str().map(String::from),
            )
        })
        .collect()
}

/// Verifies a Standard Webhooks signature as a receiver does.
fn verify(secret: &str, r: &Received) -> bool {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signed = format!(
        "{}.{}.{}",
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.body
    );
    r.header("webhook-signature").split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|s| B64.decode(s).ok())
            .is_some_and(|tag| aws_lc_rs::hmac::verify(&key, signed.as_bytes(), &tag).is_ok())
    })
}

#[tokio::test]
async fn chat_targets_are_stored_validated_and_removed() {
    let app = spawn_app_with(config("127.0.0.0/8")).await;
    app.users(&["ana"]).await;
    app.admin(Method::PUT, "/v1/groups/ops", Some(json!({"name": "Ops"})))
        .await;

    let slack = put_target(
        &app,
        "/v1/users/ana/channels/slack",
        "https://hooks.slack.com/services/T0/B0/xyz",
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(slack["kind"], "slack");
    assert!(slack.get("secret").is_none());
    // Replaced: 200.
    put_target(
        &app,
        "/v1/users/ana/channels/slack",
        "https://hooks.slack.com/services/T0/B0/abc",
        StatusCode::OK,
    )
    .await;
    let r = app
        .admin(Method::GET, "/v1/users/ana/channels/slack", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["url"], "https://hooks.slack.com/services/T0/B0/abc");

    // A webhook's secret: once.
    let hook = put_target(
        &app,
        "/v1/groups/ops/channels/webhook",
        "https://example.com/belfry",
        StatusCode::CREATED,
    )
    .await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(B64.decode(&secret[6..]).unwrap().len(), 24);
    let r = app
        .admin(Method::GET, "/v1/groups/ops/channels/webhook", None)
        .await;
    let v: Value = r.json().await.unwrap();
    assert!(v.get("secret").is_none(), "{v}");

    // Bad input: the field is named.
    for (body, why) in [
        (json!({}), "is required"),
        (json!({"url": "ftp://example.com/x"}), "https"),
        (json!({"url": "not a url"}), "not a URL"),
        (json!({"url": "https://u:p@example.com/x"}), "user name"),
        (json!({"url": "http://10.1.2.3/x"}), "BELFRY_OUTBOUND_ALLOW"),
    ] {
        let r = app
            .admin(Method::PUT, "/v1/users/ana/channels/teams", Some(body))
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], "url", "{p}");
        assert!(
            p["errors"][0]["message"].as_str().unwrap().contains(why),
            "{p}"
        );
    }
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/ana/channels/teams",
            Some(json!({"url": "https://x.example", "extra": 1})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Unknown kind, user, group.
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/ana/channels/discord",
            Some(json!({"url": "https://x.example"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .admin(
            Method::PUT,
            "/v1/users/nobody/channels/slack",
            Some(json!({"url": "https://x.example"})),
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .admin(Method::GET, "/v1/groups/nogroup/channels/slack", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .admin(Method::GET, "/v1/users/ana/channels/teams", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    // A user manages their own under /v1/me with their token, not others'.
    let token = app.token("ana").await;
    let r = app
        .call(Method::GET, "/v1/users/ana/channels/slack", &token, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .me(
            Method::PUT,
            "/channels/webhook",
            &token,
            Some(json!({"url": "https://hooks.example.com/ana"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert!(v["secret"].as_str().unwrap().starts_with("whsec_"));
    let r = app
        .me(
            Method::PUT,
            "/channels/webhook",
            &token,
            Some(json!({"url": "http://192.168.1.1/x"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.me(Method::GET, "/channels/webhook", &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    // All of one's targets at once, in kind order, secrets not shown.
    let r = app.me(Method::GET, "/channels", &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["slack", "webhook"], "{v}");
    assert!(v["items"][1].get("secret").is_none(), "{v}");
    let r = app.admin(Method::GET, "/v1/users/ana/channels", None).await;
    assert_eq!(r.json::<Value>().await.unwrap(), v, "the same list");
    let r = app
        .admin(Method::GET, "/v1/groups/ops/channels", None)
        .await;
    let g: Value = r.json().await.unwrap();
    assert_eq!(g["items"][0]["kind"], "webhook", "{g}");
    assert!(g["items"][0].get("secret").is_none(), "{g}");
    assert_eq!(g["items"].as_array().unwrap().len(), 1, "{g}");
    for path in ["/v1/users/nobody/channels", "/v1/groups/nogroup/channels"] {
        let r = app.admin(Method::GET, path, None).await;
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    let r = app
        .call(Method::GET, "/v1/users/ana/channels", &token, None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .admin(Method::GET, "/v1/users/ana/channels/webhook", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the same target");
    let r = app
        .me(Method::DELETE, "/channels/webhook", &token, None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .admin(Method::GET, "/v1/me/channels/webhook", None)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a secret key has no /v1/me"
    );

    // Removed.
    let r = app
        .admin(Method::DELETE, "/v1/users/ana/channels/slack", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .admin(Method::DELETE, "/v1/users/ana/channels/slack", None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Chat is accepted as a channel of sends.
    app.send_ok(json!({"to": {"users": ["ana"]}, "channels": ["chat"], "title": "t"}))
        .await;
}

#[tokio::test]
async fn slack_teams_and_signed_webhooks_receive_a_notification() {
    let app = spawn_app_with(config("127.0.0.0/8")).await;
    let receiver = Receiver::start().await;
    app.users(&["ana", "bob"]).await;
    put_target(
        &app,
        "/v1/users/ana/channels/slack",
        &receiver.url("slack"),
        StatusCode::CREATED,
    )
    .await;
    put_target(
        &app,
        "/v1/users/ana/channels/teams",
        &receiver.url("teams"),
        StatusCode::CREATED,
    )
    .await;
    let hook = put_target(
        &app,
        "/v1/users/ana/channels/webhook",
        &receiver.url("webhook"),
        StatusCode::CREATED,
    )
    .await;
    let secret = hook["secret"].as_str().unwrap().to_string();

    let sent = app
        .send_ok(json!({
            "to": {"users": ["ana", "bob"]},
            "channels": ["in_app", "chat"],
            "title": "Ticket #7 reassigned",
            "body": "Printer & scanner",
            "url": "/tickets/7",
            "category": "assignment",
            "actor": {"id": "carl", "name": "Carl"},
        }))
        .await;
    let id = sent["id"].as_str().unwrap();
    // bob has no chat target: no job for him.
    assert_eq!(app.run_due_jobs().await, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:?}");
    let by = |name: &str| got.iter().find(|r| r.name == name).unwrap().clone();

    let slack = by("slack").json();
    assert_eq!(slack["text"], "Ticket #7 reassigned: Printer &amp; scanner");
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "Ticket #7 reassigned");
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["text"], "Printer &amp; scanner");
    assert_eq!(blocks[2]["type"], "context");
    assert_eq!(blocks[2]["elements"][0]["text"], "by *Carl*");
    assert_eq!(blocks[3]["type"], "actions");
    assert_eq!(blocks[3]["elements"][0]["type"], "button");
    assert_eq!(
        blocks[3]["elements"][0]["url"],
        "https://desk.example.com/tickets/7"
    );

    let teams = by("teams").json();
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["type"], "TextBlock");
    assert_eq!(card["body"][0]["text"], "Ticket #7 reassigned");
    assert_eq!(card["body"][1]["text"], "Printer & scanner");
    assert_eq!(card["body"][2]["text"], "by Carl");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(
        card["actions"][0]["url"],
        "https://desk.example.com/tickets/7"
    );

    let webhook = by("webhook");
    assert!(verify(&secret, &webhook), "the signature verifies");
    assert!(!verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &webhook));
    let ts: i64 = webhook.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 300, "a current timestamp");
    assert!(webhook.header("webhook-id").starts_with("msg_"));
    let body = webhook.json();
    assert_eq!(body["type"], "notification.created");
    assert_eq!(body["data"]["id"], id);
    assert_eq!(body["data"]["title"], "Ticket #7 reassigned");
    assert_eq!(body["data"]["url"], "https://desk.example.com/tickets/7");
    assert_eq!(body["data"]["category"], "assignment");
    assert_eq!(body["data"]["actor"]["name"], "Carl");
    assert_eq!(body["data"]["recipient"], "user:ana");

    let log = chat_log(&app, id).await;
    assert_eq!(
        log.iter()
            .map(|l| (l.0.as_str(), l.1.as_str()))
            .collect::<Vec<_>>(),
        vec![("user:ana", "queued"), ("user:ana", "sent")],
        "{log:?}"
    );
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("channel=\"chat\""),
        "chat deliveries are counted"
    );
}

#[tokio::test]
async fn a_group_target_gets_one_post_and_preferences_apply_to_users() {
    let app = spawn_app_with(config("127.0.0.0/8")).await;
    let receiver = Receiver::start().await;
    for u in ["ana", "bob", "cid"] {
        app.put_user(u, json!({"groups": ["ops"]})).await;
    }
    put_target(
        &app,
        "/v1/groups/ops/channels/slack",
        &receiver.url("ops"),
        StatusCode::CREATED,
    )
    .await;
    let sent = app
        .send_ok(json!({"to": {"groups": ["ops"]}, "channels": ["in_app", "chat"], "title": "Deploy done"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;
    let got = receiver.received();
    assert_eq!(got.len(), 1, "once for the group, not per member");
    assert_eq!(got[0].name, "ops");
    assert_eq!(got[0].json()["blocks"][0]["text"]["text"], "Deploy done");
    let log = chat_log(&app, id).await;
    assert_eq!(log.last().unwrap().0, "group:ops");
    assert_eq!(log.last().unwrap().1, "sent");

    // A user who switched chat off gets nothing; logged suppressed.
    put_target(
        &app,
        "/v1/users/ana/channels/slack",
        &receiver.url("ana"),
        StatusCode::CREATED,
    )
    .await;
    let token = app.token("ana").await;
    let r = app
        .me(
            Method::PUT,
            "/preferences",
            &token,
            Some(json!({"channels": {"chat": false}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["chat"], "title": "Quiet"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;
    assert_eq!(receiver.received().len(), 1, "nothing more");
    let log = chat_log(&app, id).await;
    assert_eq!(log.last().unwrap().1, "suppressed", "{log:?}");

    // A category whose defaults post to chat needs no `channels`.
    let r = app
        .admin(
            Method::PUT,
            "/v1/categories/deploy",
            Some(json!({"defaults": {"email": "off", "web_push": false, "mobile_push": false, "chat": true}})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    app.send_ok(json!({"to": {"groups": ["ops"]}, "category": "deploy", "title": "By category"}))
        .await;
    app.run_due_jobs().await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].name, "ops");
}

#[tokio::test]
async fn busy_receivers_are_retried_after_retry_after_and_private_addresses_refused() {
    let app = spawn_app_with(config("127.0.0.0/8")).await;
    let receiver = Receiver::start().await;
    app.users(&["ana"]).await;
    put_target(
        &app,
        "/v1/users/ana/channels/teams",
        &receiver.url("teams"),
        StatusCode::CREATED,
    )
    .await;
    receiver.answer(429, Some("3600"));
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["chat"], "title": "Busy"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;
    assert_eq!(receiver.received().len(), 1);
    let log = chat_log(&app, id).await;
    assert_eq!(log[1].1, "failed");
    assert!(log[1].2.as_ref().unwrap().contains("429"), "{log:?}");
    app.clock.advance_secs(3590);
    assert_eq!(app.run_due_jobs().await, 0, "not before Retry-After");
    app.clock.advance_secs(20);
    assert_eq!(app.run_due_jobs().await, 1);
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(chat_log(&app, id).await.last().unwrap().1, "sent");

    // 410 (the webhook was removed): a permanent failure, the target kept.
    receiver.answer(410, None);
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["chat"], "title": "Gone"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;
    let log = chat_log(&app, id).await;
    let last = log.last().unwrap();
    assert_eq!(last.1, "failed");
    assert!(last.2.as_ref().unwrap().contains("410"), "{log:?}");
    assert!(!last.2.as_ref().unwrap().contains("retrying"), "{log:?}");
    let r = app
        .admin(Method::GET, "/v1/users/ana/channels/teams", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "kept");

    // Without the allow list, a name that resolves to a private address is
    // refused when sending: a permanent failure in the log, nothing sent.
    let strict = spawn_app_with(config("")).await;
    strict.users(&["ana"]).await;
    let port = receiver.origin.rsplit(':').next().unwrap();
    put_target(
        &strict,
        "/v1/users/ana/channels/slack",
        &format!("http://localhost:{port}/hooks/private"),
        StatusCode::CREATED,
    )
    .await;
    let sent = strict
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["chat"], "title": "Private"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    strict.run_due_jobs().await;
    assert!(receiver.received().iter().all(|r| r.name != "private"));
    let log = chat_log(&strict, id).await;
    let last = log.last().unwrap();
    assert_eq!(last.1, "failed", "{log:?}");
    assert!(
        last.2.as_ref().unwrap().contains("BELFRY_OUTBOUND_ALLOW"),
        "{log:?}"
    );
}
