//! Sources (S9): integrations with keys of their own. What a bound key
//! sends or posts carries its source; naming another is 403; deleting the
//! source revokes its keys.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn source_key(app: &TestApp, source: &str) -> Value {
    let r = app
        .admin(
            Method::PUT,
            &format!("/v1/sources/{source}"),
            Some(json!({"name": format!("The {source}"), "icon": "https://example.com/icon.png"})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/sources/{source}/keys"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

#[tokio::test]
async fn sources_are_created_listed_updated_and_validated() {
    let app = spawn_app().await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/sources/helpdesk",
            Some(json!({"name": "Help desk"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "helpdesk");
    assert_eq!(v["name"], "Help desk");
    assert_eq!(v["icon"], Value::Null);

    let r = app
        .admin(
            Method::PUT,
            "/v1/sources/helpdesk",
            Some(json!({"name": "Service desk", "icon": "/img/desk.svg"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.admin(Method::GET, "/v1/sources", None).await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["name"], "Service desk");
    assert_eq!(list["items"][0]["icon"], "/img/desk.svg");

    let r = app
        .admin(
            Method::PUT,
            "/v1/sources/crm",
            Some(json!({"icon": "javascript:alert(1)"})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "icon"]);

    let r = app.admin(Method::GET, "/v1/sources/crm", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .admin(Method::POST, "/v1/sources/crm/keys", Some(json!({})))
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/sources/Bad%20Id",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_bound_key_sends_as_its_source_and_may_name_no_other() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let key = source_key(&app, "helpdesk").await;
    assert_eq!(key["source"], "helpdesk");
    assert_eq!(key["scopes"], json!(["send"]));
    assert_eq!(key["name"], "The helpdesk");
    let secret = key["secret"].as_str().unwrap();
    assert!(secret.starts_with("bfy_sk_"));
    let token = app.token("ana").await;

    // Without a source: it carries the key's.
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            secret,
            Some(json!({"to": {"users": ["ana"]}, "title": "Ticket #1"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Naming its own source is fine.
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            secret,
            Some(json!({"to": {"users": ["ana"]}, "title": "Ticket #2", "source": "helpdesk"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let items = app.inbox(&token, "").await;
    let sources: Vec<&Value> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["source"])
        .collect();
    assert_eq!(sources, [&json!("helpdesk"), &json!("helpdesk")]);

    // Another source: 403, single and batch, and nothing stored.
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            secret,
            Some(json!({"to": {"users": ["ana"]}, "title": "Spoofed", "source": "billing"})),
        )
        .await;
    let p = assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(p["detail"].as_str().unwrap().contains("helpdesk"), "{p}");
    let r = app
        .call(
            Method::POST,
            "/v1/notifications/batch",
            secret,
            Some(json!({"notifications": [
                {"to": {"users": ["ana"]}, "title": "Fine"},
                {"to": {"users": ["ana"]}, "title": "Spoofed", "source": "billing"}
            ]})),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .call(
            Method::POST,
            "/v1/events",
            secret,
            Some(json!({"type": "ticket.created", "source": "billing"})),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.titles(&token, "").await, ["Ticket #2", "Ticket #1"]);

    // A bound key is a send key: no admin endpoints.
    let r = app.call(Method::GET, "/v1/sources", secret, None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // An unbound key may still name any source.
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "Billing", "source": "billing"}))
        .await;
}

#[tokio::test]
async fn events_posted_with_a_bound_key_carry_its_source_to_templates_and_notifications() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/created",
            Some(json!({"locales": {"en": {"title": "New ticket from {{ event.source }}"}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/created",
            Some(
                json!({"event": "ticket.created", "to": {"users": ["ana"]}, "template": "created"}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key = source_key(&app, "helpdesk").await;
    let r = app
        .call(
            Method::POST,
            "/v1/events",
            key["secret"].as_str().unwrap(),
            Some(json!({"type": "ticket.created"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let token = app.token("ana").await;
    let items = app.inbox(&token, "").await;
    assert_eq!(items["items"][0]["title"], "New ticket from helpdesk");
    assert_eq!(items["items"][0]["source"], "helpdesk");
}

#[tokio::test]
async fn deleting_a_source_revokes_its_keys_at_once() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let key = source_key(&app, "crm").await;
    let secret = key["secret"].as_str().unwrap();
    let send = json!({"to": {"users": ["ana"]}, "title": "Deal won"});
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            secret,
            Some(send.clone()),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.admin(Method::DELETE, "/v1/sources/crm", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .call(Method::POST, "/v1/notifications", secret, Some(send))
        .await;
    let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    let r = app.admin(Method::DELETE, "/v1/sources/crm", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn per_source_preferences_apply_to_what_a_bound_key_sends() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(belfry_server::Config {
        smtp_url: Some(sink.url().into()),
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    let token = app.token("ana").await;
    let r = app
        .me(
            Method::PUT,
            "/preferences",
            &token,
            Some(json!({"sources": {"crm": {"email": "off"}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let key = source_key(&app, "crm").await;
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            key["secret"].as_str().unwrap(),
            Some(json!({"to": {"users": ["ana"]}, "title": "Deal won", "channels": ["in_app", "email"]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.run_due_jobs().await;
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let log: Value = r.json().await.unwrap();
    let email: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["channel"] == "email" && d["status"] != "queued")
        .collect();
    assert_eq!(email.len(), 1, "{log}");
    assert_eq!(email[0]["status"], "suppressed", "{log}");
    assert_eq!(email[0]["reason"], "source_off", "{log}");
    assert!(sink.messages().is_empty());
}
