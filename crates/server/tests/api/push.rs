//! Web push (C5) end to end: browser subscriptions through the API, and
//! deliveries to a push-service stand-in on 127.0.0.1 that speaks the real
//! wire format. It checks every request as a push service does (the VAPID
//! JWT's ES256 signature against Belfry's public key, `aud`, `exp`, `sub`;
//! the `aes128gcm` encoding) and decrypts the payload with the subscriber
//! key pair the test generated, as the browser would. Only the push
//! service is a stand-in: the server, database and engine are real.

use crate::helpers::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use web_push_native::p256;
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint as _;

/// A browser's side of a subscription: its key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Browser {
        loop {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).unwrap();
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                let mut auth = [0u8; 16];
                aws_lc_rs::rand::fill(&mut auth).unwrap();
                return Browser { secret, auth };
            }
        }
    }

    fn p256dh(&self) -> String {
        B64.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    /// `PushSubscription.toJSON()` for an endpoint.
    fn subscription(&self, endpoint: &str) -> Value {
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh(), "auth": B64.encode(self.auth)}
        })
    }
}

/// One request the push service received, as it judged it.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    headers: HeaderMap,
    /// The JWT's claims, or why it was refused.
    vapid: Result<Value, String>,
    /// The decrypted payload, or why it could not be decrypted.
    payload: Result<Value, String>,
    /// What the service answered.
    status: u16,
}

#[derive(Default)]
struct ServiceState {
    /// Belfry's VAPID public key (base64url) and the service's origin.
    vapid_key: String,
    origin: String,
    /// Subscriber keys per endpoint name.
    browsers: HashMap<String, (p256::SecretKey, [u8; 16])>,
    /// Answers to give, in order (status, Retry-After); then 201.
    script: VecDeque<(u16, Option<&'static str>)>,
    received: Vec<Received>,
}

#[derive(Clone)]
struct PushService {
    state: Arc<Mutex<ServiceState>>,
    origin: String,
}

impl PushService {
    async fn start(vapid_key: &str) -> PushService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ServiceState {
            vapid_key: vapid_key.to_string(),
            origin: origin.clone(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/push/{name}", axum::routing::post(receive))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        PushService { state, origin }
    }

    /// Registers a browser under `name`; returns its endpoint.
    fn endpoint(&self, name: &str, browser: &Browser) -> String {
        self.state
            .lock()
            .unwrap()
            .browsers
            .insert(name.to_string(), (browser.secret.clone(), browser.auth));
        format!("{}/push/{name}", self.origin)
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

/// Checks `Authorization: vapid t=<JWT>, k=<key>` as RFC 8292 says.
fn check_vapid(headers: &HeaderMap, key: &str, origin: &str) -> Result<Value, String> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let rest = header
        .strip_prefix("vapid ")
        .ok_or("not the vapid scheme")?;
    let mut t = None;
    let mut k = None;
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    let (t, k) = (t.ok_or("no t=")?, k.ok_or("no k=")?);
    if k != key {
        return Err(format!("k={k} is not Belfry's public key"));
    }
    let point = B64.decode(k).map_err(|e| e.to_string())?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k is not an uncompressed P-256 point".into());
    }
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        &B64.encode(&point[1..33]),
        &B64.encode(&point[33..]),
    )
    .map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(t, &decoding, &validation)
        .map_err(|e| format!("the JWT does not verify: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = data.claims["exp"].as_i64().ok_or("exp is not a number")?;
    if exp > now + 24 * 3600 {
        return Err("exp is more than 24 hours ahead".into());
    }
    let sub = data.claims["sub"].as_str().unwrap_or("");
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return Err(format!("sub {sub} is no contact"));
    }
    Ok(data.claims)
}

async fn receive(
    State(state): State<Arc<Mutex<ServiceState>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    let vapid = check_vapid(&headers, &s.vapid_key, &s.origin);
    let payload = match (
        s.browsers.get(&name),
        headers.get("content-encoding").map(|v| v.as_bytes()),
    ) {
        (None, _) => Err(format!("no subscription {name}")),
        (_, Some(b"aes128gcm")) | (_, Some(b"AES128GCM")) => {
            let (secret, auth) = s.browsers[&name].clone();
            let auth = web_push_native::Auth::clone_from_slice(&auth);
            web_push_native::decrypt(body.to_vec(), &secret, &auth)
                .map_err(|e| format!("cannot decrypt: {e}"))
                .and_then(|plain| serde_json::from_slice(&plain).map_err(|e| e.to_string()))
        }
        _ => Err("Content-Encoding is not aes128gcm".into()),
    };
    let (status, retry_after) = if vapid.is_err() {
        (403, None)
    } else if payload.is_err() {
        (400, None)
    } else {
        s.script.pop_front().unwrap_or((201, None))
    };
    s.received.push(Received {
        name,
        headers,
        vapid,
        payload,
        status,
    });
    let mut response = (
        AxumStatus::from_u16(status).unwrap(),
        if status >= 400 {
            "push service says no"
        } else {
            ""
        },
    )
        .into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

fn config(allow: &str) -> belfry_server::Config {
    let mut c = belfry_server::Config {
        run_workers: false,
        outbound: belfry_delivery::OutboundPolicy::parse(allow).unwrap(),
        ..Default::default()
    };
    c.web_push.subject = "mailto:ops@example.com".into();
    c.email.app_url = Some("https://desk.example.com".into());
    c.delivery.retry_base = std::time::Duration::from_secs(10);
    c
}

async fn vapid_key(app: &TestApp) -> String {
    let r = app
        .client
        .get(app.url("/v1/push/vapid-public-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "public, no credentials");
    let v: Value = r.json().await.unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// (recipient, channel, status, error) of a notification's log lines on web push.
async fn push_log(app: &TestApp, id: &str) -> Vec<(String, String, Option<String>)> {
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
        .filter(|i| i["channel"] == "web_push")
        .map(|i| {
            (
                i["recipient"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["error"].as_str().map(String::from),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_push_reaches_the_browser_signed_and_encrypted() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let key = vapid_key(&app).await;
    assert_eq!(B64.decode(&key).unwrap().len(), 65);
    let service = PushService::start(&key).await;
    app.users(&["ana", "bo"]).await;
    let token = app.token("ana").await;
    let browser = Browser::new();
    let endpoint = service.endpoint("ana-1", &browser);

    let first = subscribe(
        &app,
        &token,
        browser.subscription(&endpoint),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(first["endpoint"], endpoint.as_str());
    assert!(first.get("keys").is_none(), "keys are not echoed");
    // The same endpoint again (a page load re-posts it): updated, not doubled.
    let again = subscribe(
        &app,
        &token,
        browser.subscription(&endpoint),
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(subscriptions(&app, &token).await.len(), 1);

    let sent = app
        .send_ok(json!({
            "to": {"users": ["ana", "bo"]},
            "channels": ["in_app", "web_push"],
            "title": "Ticket #123 assigned to you",
            "body": "Printer on floor 3 is jammed",
            "url": "/tickets/123",
            "stack_key": "ticket:123",
            "actor": {"id": "u-3", "name": "Bo", "avatar_url": "https://desk.example.com/bo.png"},
            "actions": [{"id": "open", "label": "Open", "kind": "link", "url": "/tickets/123"}]
        }))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;

    let got = service.received();
    assert_eq!(got.len(), 1, "one push: bo has no subscription, so no job");
    let push = &got[0];
    assert_eq!(push.name, "ana-1");
    let claims = push.vapid.as_ref().expect("the VAPID JWT verifies");
    assert_eq!(claims["aud"], service.origin.as_str());
    assert_eq!(claims["sub"], "mailto:ops@example.com");
    let payload = push.payload.as_ref().expect("the browser decrypts it");
    assert_eq!(payload["id"], id);
    assert_eq!(payload["title"], "Ticket #123 assigned to you");
    assert_eq!(payload["body"], "Printer on floor 3 is jammed");
    assert_eq!(payload["url"], "https://desk.example.com/tickets/123");
    assert_eq!(payload["icon"], "https://desk.example.com/bo.png");
    assert_eq!(payload["tag"], "ticket:123");
    assert_eq!(payload["actions"][0]["action"], "open");
    assert_eq!(payload["actions"][0]["title"], "Open");
    let h = &push.headers;
    assert_eq!(h["ttl"], "86400");
    assert_eq!(h["urgency"], "normal");
    assert_eq!(h["content-encoding"], "aes128gcm");
    let topic = h["topic"].to_str().unwrap();
    assert_eq!(topic.len(), 32, "RFC 8030: at most 32 base64url characters");
    assert_eq!(
        push_log(&app, id).await,
        vec![
            ("user:ana".into(), "queued".into(), None),
            ("user:ana".into(), "sent".into(), None)
        ]
    );

    // A category whose defaults push (the built-in ones do) pushes without
    // `channels`; the same stack has the same Topic, so the service can
    // replace the older push; the JWT for this origin is reused.
    let second = app
        .send_ok(json!({"to": {"users": ["ana"]}, "category": "assignment", "title": "Again", "stack_key": "ticket:123"}))
        .await;
    app.run_due_jobs().await;
    let got = service.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].payload.as_ref().unwrap()["title"], "Again");
    assert_eq!(got[1].headers["topic"], topic);
    assert_eq!(
        got[1].headers["authorization"],
        push.headers["authorization"]
    );
    assert_eq!(
        push_log(&app, second["id"].as_str().unwrap()).await.len(),
        2
    );

    // Without `channels` and without a category: in-app only.
    app.notify("ana", "Quiet").await;
    app.run_due_jobs().await;
    assert_eq!(service.received().len(), 2);

    // The user's preferences govern web push like email: switched off, the
    // job ends suppressed and nothing is sent.
    let r = app
        .me(
            Method::PUT,
            "/preferences",
            &token,
            Some(json!({"channels": {"web_push": false}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let off = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["web_push"], "title": "Off"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(service.received().len(), 2);
    let log = push_log(&app, off["id"].as_str().unwrap()).await;
    assert_eq!(log[1].1, "suppressed", "{log:?}");

    // The delivery shows in the metrics.
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("belfry_delivery_attempts_total{channel=\"web_push\",outcome=\"sent\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn gone_subscriptions_go_and_busy_services_are_retried_after_retry_after() {
    let app = spawn_app_with(config("127.0.0.0/8")).await;
    let service = PushService::start(&vapid_key(&app).await).await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let browser = Browser::new();
    let endpoint = service.endpoint("ana-1", &browser);
    subscribe(
        &app,
        &token,
        browser.subscription(&endpoint),
        StatusCode::CREATED,
    )
    .await;

    // 429 with Retry-After: one hour. The back-off alone would retry after
    // about 10 s; the job waits for the hour.
    service.answer(429, Some("3600"));
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["web_push"], "title": "Busy"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;
    assert_eq!(service.received().len(), 1);
    let log = push_log(&app, id).await;
    assert_eq!(log[1].1, "failed");
    assert!(log[1].2.as_ref().unwrap().contains("429"), "{log:?}");
    assert!(
        log[1].2.as_ref().unwrap().contains("retrying at"),
        "{log:?}"
    );
    app.clock.advance_secs(3590);
    assert_eq!(app.run_due_jobs().await, 0, "not before Retry-After");
    assert_eq!(service.received().len(), 1);
    app.clock.advance_secs(20);
    // The retry meets 413: sent again at once without body and actions.
    service.answer(413, None);
    assert_eq!(app.run_due_jobs().await, 1);
    let got = service.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].status, 413);
    assert_eq!(got[2].status, 201);
    assert_eq!(got[2].payload.as_ref().unwrap()["title"], "Busy");
    assert_eq!(push_log(&app, id).await.last().unwrap().1, "sent");

    // A long body is sent whole at first, shortened after a 413.
    service.answer(413, None);
    app.send_ok(json!({
        "to": {"users": ["ana"]}, "channels": ["web_push"], "title": "Long",
        "body": "x".repeat(2000),
        "actions": [{"id": "ok", "label": "OK", "kind": "callback"}, {"id": "see", "label": "See", "url": "/x"}]
    }))
    .await;
    app.run_due_jobs().await;
    let got = service.received();
    assert_eq!(got.len(), 5);
    let full = got[3].payload.as_ref().unwrap();
    let shown: Vec<&str> = full["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["see"], "link actions only: {full}");
    assert_eq!(full["body"].as_str().unwrap().chars().count(), 1001);
    let short = got[4].payload.as_ref().unwrap();
    assert!(
        short.get("body").is_none() && short.get("actions").is_none(),
        "{short}"
    );
    assert_eq!(short["title"], "Long");

    // 410: the browser unsubscribed; the subscription is removed.
    service.answer(410, None);
    let gone = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["web_push"], "title": "Gone"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(service.received().len(), 6);
    assert!(subscriptions(&app, &token).await.is_empty());
    let log = push_log(&app, gone["id"].as_str().unwrap()).await;
    assert_eq!(log[1].1, "skipped", "{log:?}");
    assert!(log[1].2.as_ref().unwrap().contains("410"), "{log:?}");
    // With no subscription left, a new send makes no web push job at all.
    let none = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["web_push"], "title": "None"}))
        .await;
    app.run_due_jobs().await;
    assert_eq!(service.received().len(), 6);
    assert!(
        push_log(&app, none["id"].as_str().unwrap())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_broadcast_pushes_to_subscribed_members_only() {
    let app = spawn_app_with(config("127.0.0.1")).await;
    let service = PushService::start(&vapid_key(&app).await).await;
    for (u, g) in [("ana", "support"), ("bo", "support"), ("cy", "sales")] {
        app.put_user(u, json!({"groups": [g]})).await;
    }
    for u in ["ana", "cy"] {
        let token = app.token(u).await;
        let browser = Browser::new();
        let endpoint = service.endpoint(u, &browser);
        subscribe(
            &app,
            &token,
            browser.subscription(&endpoint),
            StatusCode::CREATED,
        )
        .await;
    }
    app.send_ok(
        json!({"to": {"groups": ["support"]}, "channels": ["in_app", "web_push"], "title": "Team"}),
    )
    .await;
    app.run_due_jobs().await;
    let names: Vec<String> = service.received().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        vec!["ana"],
        "bo has no subscription, cy is not in the group"
    );
    app.send_ok(json!({"to": {"all": true}, "channels": ["web_push"], "title": "All"}))
        .await;
    app.run_due_jobs().await;
    let mut names: Vec<String> = service.received().into_iter().map(|r| r.name).collect();
    names.sort();
    assert_eq!(names, vec!["ana", "ana", "cy"]);
}

#[tokio::test]
async fn private_push_endpoints_are_refused_without_the_allow_setting() {
    let app = spawn_app_with(config("")).await;
    let service = PushService::start(&vapid_key(&app).await).await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let browser = Browser::new();
    // An address written in the endpoint is refused when subscribing.
    let literal = service.endpoint("literal", &browser);
    let r = app
        .me(
            Method::POST,
            "/push-subscriptions",
            &token,
            Some(browser.subscription(&literal)),
        )
        .await;
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(problem["errors"][0]["field"], "endpoint");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("BELFRY_OUTBOUND_ALLOW"),
        "{problem}"
    );
    // A name is resolved when connecting: localhost is refused then, and
    // nothing reaches the service.
    service.endpoint("named", &browser);
    let named = literal
        .replace("127.0.0.1", "localhost")
        .replace("/literal", "/named");
    subscribe(
        &app,
        &token,
        browser.subscription(&named),
        StatusCode::CREATED,
    )
    .await;
    let sent = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["web_push"], "title": "Nope"}))
        .await;
    app.run_due_jobs().await;
    assert!(service.received().is_empty());
    let log = push_log(&app, sent["id"].as_str().unwrap()).await;
    assert_eq!(log[1].1, "failed", "{log:?}");
    assert!(log[1].2.as_ref().unwrap().contains("non-public"), "{log:?}");
    assert!(
        !log[1].2.as_ref().unwrap().contains("retrying"),
        "not retried: {log:?}"
    );
}

#[tokio::test]
async fn subscriptions_are_validated_capped_listed_and_removed() {
    let mut c = config("");
    c.push_subscriptions_per_user = 3;
    let app = spawn_app_with(c).await;
    app.users(&["ana", "bo"]).await;
    let token = app.token("ana").await;
    let browser = Browser::new();
    let good = browser.subscription("https://push.example.net/send/abc");

    let invalid = |patch: Value| {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() && k != "expirationTime" {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let short_key = B64.encode([4u8; 33]);
    let off_curve = B64.encode([4u8; 65]);
    for (body, field, says) in [
        (
            invalid(json!({"endpoint": null})),
            "endpoint",
            "is required",
        ),
        (
            invalid(json!({"endpoint": "ftp://push.example.net/x"})),
            "endpoint",
            "https",
        ),
        (
            invalid(json!({"endpoint": "not a url"})),
            "endpoint",
            "not a URL",
        ),
        (
            invalid(json!({"endpoint": "https://u:p@push.example.net/x"})),
            "endpoint",
            "password",
        ),
        (invalid(json!({"keys": null})), "keys", "is required"),
        (
            invalid(json!({"keys": {"auth": B64.encode([1u8; 16])}})),
            "keys.p256dh",
            "is required",
        ),
        (
            invalid(json!({"keys": {"p256dh": "***", "auth": B64.encode([1u8; 16])}})),
            "keys.p256dh",
            "base64url",
        ),
        (
            invalid(json!({"keys": {"p256dh": short_key, "auth": B64.encode([1u8; 16])}})),
            "keys.p256dh",
            "65 bytes",
        ),
        (
            invalid(json!({"keys": {"p256dh": off_curve, "auth": B64.encode([1u8; 16])}})),
            "keys.p256dh",
            "curve",
        ),
        (
            invalid(json!({"keys": {"p256dh": browser.p256dh(), "auth": B64.encode([1u8; 8])}})),
            "keys.auth",
            "16 bytes",
        ),
        (
            invalid(json!({"expirationTime": "soon"})),
            "expirationTime",
            "number",
        ),
        (invalid(json!({"extra": 1})), "extra", "unknown field"),
        (
            json!({"platform": "blackberry", "token": "x"}),
            "platform",
            "fcm or apns",
        ),
    ] {
        let r = app
            .me(
                Method::POST,
                "/push-subscriptions",
                &token,
                Some(body.clone()),
            )
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        let error = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["field"] == field)
            .unwrap_or_else(|| panic!("{body} → {p}"));
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{body} → {p}"
        );
    }
    // Mobile push is not here yet, and says so.
    let r = app
        .me(
            Method::POST,
            "/push-subscriptions",
            &token,
            Some(json!({"platform": "fcm", "token": "abc", "app_id": "com.example"})),
        )
        .await;
    assert_problem(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "mobile_push_unavailable",
    )
    .await;
    // A secret key reaches a user's subscriptions under /v1/users/{id}.
    let r = app
        .admin(Method::GET, "/v1/me/push-subscriptions", None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // The cap: the least recently posted goes.
    let mut ids = Vec::new();
    for n in 0..4 {
        app.clock.advance_secs(1);
        let body = browser.subscription(&format!("https://push.example.net/send/{n}"));
        ids.push(subscribe(&app, &token, body, StatusCode::CREATED).await["id"].clone());
    }
    let listed: Vec<Value> = subscriptions(&app, &token)
        .await
        .into_iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(listed, vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);
    let r = app
        .admin(Method::GET, "/v1/users/ana/push-subscriptions", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Another user cannot remove ana's; ana can, once.
    let other = app.token("bo").await;
    let path = format!("/push-subscriptions/{}", ids[3].as_str().unwrap());
    let r = app.me(Method::DELETE, &path, &other, None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.me(Method::DELETE, &path, &token, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.me(Method::DELETE, &path, &token, None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(subscriptions(&app, &token).await.len(), 2);

    // Deleting the user deletes their subscriptions.
    let r = app.admin(Method::DELETE, "/v1/users/ana", None).await;
    assert!(r.status().is_success());
    app.users(&["ana"]).await;
    let r = app
        .admin(Method::GET, "/v1/users/ana/push-subscriptions", None)
        .await;
    assert!(
        r.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
