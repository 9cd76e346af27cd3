//! The delivery engine and email: a real SMTP server process, retries with
//! back-off, permanent refusals, scheduled sends, cancellation, the
//! development mailbox and the delivery log.

use crate::helpers::*;
use belfry_core::{Clock, Millis};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn smtp_config(sink: &SmtpSink, workers: bool) -> belfry_server::Config {
    let mut c = belfry_server::Config {
        smtp_url: Some(sink.url().into()),
        run_workers: workers,
        ..Default::default()
    };
    c.email.app_url = Some("https://desk.example.com".into());
    c.delivery.retry_base = std::time::Duration::from_secs(10);
    c
}

async fn log(app: &TestApp, id: &str) -> Vec<Value> {
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// (recipient, channel, status, attempt) of each log line.
fn lines(items: &[Value]) -> Vec<(String, String, String, i64)> {
    items
        .iter()
        .map(|i| {
            (
                i["recipient"].as_str().unwrap().to_string(),
                i["channel"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["attempt"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn line(r: &str, c: &str, s: &str, a: i64) -> (String, String, String, i64) {
    (r.into(), c.into(), s.into(), a)
}

#[tokio::test]
async fn email_to_a_user_and_a_contact_over_real_smtp() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink, true)).await;
    app.put_user("ana", json!({"email": "ana@example.com", "name": "Ana", "locale": "de", "timezone": "Europe/Berlin"}))
        .await;
    let r = app
        .send_ok(json!({
            "to": {"users": ["ana"], "emails": ["guest@example.org"]},
            "channels": ["in_app", "email"],
            "title": "Ticket #123 <b>assigned</b> to you",
            "body": "Printer & scanner on floor 3",
            "url": "/tickets/123",
            "actor": {"id": "u-3", "name": "Bo"},
            "category": "assignment",
            "actions": [{"id": "open", "label": "Open ticket", "kind": "link", "url": "https://desk.example.com/t/123"}]
        }))
        .await;
    // Workers start at once: no run_due here, the commit wakes them.
    let mails = sink.wait_for(2).await;
    let to_ana = mails
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ana@example.com")
        .unwrap();
    let to_guest = mails
        .iter()
        .find(|m| m["rcpt_tos"][0] == "guest@example.org")
        .unwrap();
    assert_eq!(to_ana["content_type"], "multipart/alternative");
    assert_eq!(to_ana["subject"], "Ticket #123 <b>assigned</b> to you");
    // The HTML escaper also writes "/" as a character reference.
    let html = &to_ana["html"].as_str().unwrap().replace("&#x2f;", "/");
    let text = to_ana["text"].as_str().unwrap();
    assert!(
        html.contains("Ticket #123 &lt;b&gt;assigned&lt;/b&gt; to you"),
        "{html}"
    );
    assert!(!html.contains("<b>assigned"), "producer markup is escaped");
    assert!(html.contains("Printer &amp; scanner"));
    assert!(
        html.contains("href=\"https://desk.example.com/tickets/123\""),
        "relative link made absolute"
    );
    assert!(
        text.contains("Hallo Ana,")
            && text.contains("Öffnen: https://desk.example.com/tickets/123"),
        "{text}"
    );
    assert!(text.contains("Von Bo"));
    assert!(text.contains("Open ticket: https://desk.example.com/t/123"));
    assert!(
        text.contains("Uhr (Europe/Berlin)"),
        "the date in Ana's zone: {text}"
    );
    assert!(to_ana["to"].as_str().unwrap().contains("Ana"));
    assert!(
        to_ana["message_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("<{}", r["id"].as_str().unwrap()))
    );
    let guest_text = to_guest["text"].as_str().unwrap();
    assert!(
        guest_text.contains("Open: https://desk.example.com/tickets/123"),
        "English by default: {guest_text}"
    );

    // The log: in-app for Ana, then each email queued and sent.
    let id = r["id"].as_str().unwrap();
    let mut log_lines = Vec::new();
    for _ in 0..100 {
        log_lines = lines(&log(&app, id).await);
        if log_lines
            .iter()
            .filter(|l| l.2 == "sent" && l.1 == "email")
            .count()
            == 2
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(log_lines.contains(&line("user:ana", "in_app", "sent", 1)));
    assert!(log_lines.contains(&line("user:ana", "email", "queued", 0)));
    assert!(log_lines.contains(&line("user:ana", "email", "sent", 1)));
    assert!(log_lines.contains(&line("email:guest@example.org", "email", "queued", 0)));
    assert!(log_lines.contains(&line("email:guest@example.org", "email", "sent", 1)));
}

#[tokio::test]
async fn without_smtp_emails_go_to_the_development_mailbox() {
    let app = spawn_app_with(belfry_server::Config {
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    app.send_ok(
        json!({"to": {"users": ["ana"]}, "channels": ["email"], "title": "Your report is ready"}),
    )
    .await;
    assert!(
        app.titles(&app.token("ana").await, "").await.is_empty(),
        "email only: no inbox entry"
    );
    assert_eq!(app.run_due_jobs().await, 1);
    let r = app.admin(Method::GET, "/v1/dev/mailbox", None).await;
    let items = r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["to"], "ana@example.com");
    assert_eq!(items[0]["subject"], "Your report is ready");
    assert!(
        items[0]["html"]
            .as_str()
            .unwrap()
            .contains("Your report is ready")
    );
    let id = items[0]["id"].as_str().unwrap();
    let one: Value = app
        .admin(Method::GET, &format!("/v1/dev/mailbox/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["text"], items[0]["text"]);
    let r = app.admin(Method::GET, "/v1/dev/mailbox/999999", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    let r = app
        .call(Method::GET, "/v1/dev/mailbox", &send_key, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r: Value = app
        .admin(Method::DELETE, "/v1/dev/mailbox", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["deleted"], 1);
}

#[tokio::test]
async fn temporary_failures_are_retried_with_back_off_and_one_email_arrives() {
    let sink = SmtpSink::start("tempfail:2");
    let app = spawn_app_with(smtp_config(&sink, false)).await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["email"], "title": "Retry me"}))
        .await;
    let id = r["id"].as_str().unwrap();

    assert_eq!(app.run_due_jobs().await, 1);
    assert_eq!(app.run_due_jobs().await, 0, "the retry waits for its time");
    app.clock.advance_secs(13); // first back-off: 10 s ± 20 %
    assert_eq!(app.run_due_jobs().await, 1);
    app.clock.advance_secs(25); // second: 20 s ± 20 %
    assert_eq!(app.run_due_jobs().await, 1);
    let mails = sink.wait_for(1).await;
    app.clock.advance_secs(3600);
    assert_eq!(app.run_due_jobs().await, 0, "nothing left to do");
    assert_eq!(sink.messages().len(), 1, "exactly one email");
    assert_eq!(mails[0]["subject"], "Retry me");

    let items = log(&app, id).await;
    let email: Vec<_> = lines(&items)
        .into_iter()
        .filter(|l| l.1 == "email")
        .collect();
    assert_eq!(
        email,
        [
            line("user:ana", "email", "queued", 0),
            line("user:ana", "email", "failed", 1),
            line("user:ana", "email", "failed", 2),
            line("user:ana", "email", "sent", 3),
        ]
    );
    let first_error = items.iter().find(|i| i["status"] == "failed").unwrap()["error"]
        .as_str()
        .unwrap();
    assert!(
        first_error.contains("451") && first_error.contains("retrying at"),
        "{first_error}"
    );
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried() {
    let sink = SmtpSink::start("reject");
    let app = spawn_app_with(smtp_config(&sink, false)).await;
    app.put_user("ana", json!({"email": "nobody@example.com"}))
        .await;
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["email"], "title": "x"}))
        .await;
    assert_eq!(app.run_due_jobs().await, 1);
    app.clock.advance_secs(24 * 3600);
    assert_eq!(app.run_due_jobs().await, 0);
    let items = log(&app, r["id"].as_str().unwrap()).await;
    let last = items.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["attempt"], 1);
    assert!(last["error"].as_str().unwrap().contains("550"), "{last}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn after_the_last_attempt_the_delivery_is_failed() {
    // Nothing listens on this port: every attempt fails with a refused connection.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = belfry_server::Config {
        smtp_url: Some(format!("smtp://127.0.0.1:{closed}").into()),
        run_workers: false,
        ..Default::default()
    };
    config.delivery.max_attempts = 2;
    config.delivery.retry_base = std::time::Duration::from_secs(1);
    let app = spawn_app_with(config).await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["email"], "title": "x"}))
        .await;
    assert_eq!(app.run_due_jobs().await, 1);
    app.clock.advance_secs(5);
    assert_eq!(app.run_due_jobs().await, 1);
    app.clock.advance_secs(3600);
    assert_eq!(app.run_due_jobs().await, 0);
    let items = log(&app, r["id"].as_str().unwrap()).await;
    let last = items.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert_eq!(last["attempt"], 2);
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{last}"
    );
}

#[tokio::test]
async fn emails_to_users_without_an_address_are_suppressed_with_the_reason() {
    let app = spawn_app_with(belfry_server::Config {
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.put_user("ana", json!({})).await;
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["in_app", "email"], "title": "x"}))
        .await;
    app.run_due_jobs().await;
    let items = log(&app, r["id"].as_str().unwrap()).await;
    let suppressed = items
        .iter()
        .find(|i| i["status"] == "suppressed")
        .expect("a suppressed line");
    assert_eq!(suppressed["recipient"], "user:ana");
    assert_eq!(suppressed["reason"], "no_address");
    // Contacts without the email channel: nothing to deliver, said so.
    let r = app
        .send_ok(
            json!({"to": {"emails": ["ext@example.org"]}, "channels": ["in_app"], "title": "y"}),
        )
        .await;
    let items = log(&app, r["id"].as_str().unwrap()).await;
    assert_eq!(items[0]["status"], "skipped");
    assert!(
        items[0]["error"]
            .as_str()
            .unwrap()
            .contains("external contact")
    );
}

#[tokio::test]
async fn a_broadcast_with_email_reaches_every_member_in_pages() {
    let mut config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    config.delivery.expand_page = 2;
    let app = spawn_app_with(config).await;
    for i in 0..5 {
        app.put_user(
            &format!("m{i}"),
            json!({"email": format!("m{i}@example.com"), "groups": ["support"]}),
        )
        .await;
    }
    app.put_user("noaddress", json!({"groups": ["support"]}))
        .await;
    app.put_user("outsider", json!({"email": "o@example.com"}))
        .await;
    let r = app
        .send_ok(json!({"to": {"groups": ["support"]}, "channels": ["in_app", "email"], "title": "Team meeting", "actor": {"id": "m0"}}))
        .await;
    while app.run_due_jobs().await > 0 {}
    let mails: Value = app
        .admin(Method::GET, "/v1/dev/mailbox", None)
        .await
        .json()
        .await
        .unwrap();
    let mut to: Vec<String> = mails["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            "m1@example.com",
            "m2@example.com",
            "m3@example.com",
            "m4@example.com"
        ],
        "members, not the actor"
    );
    let items = log(&app, r["id"].as_str().unwrap()).await;
    assert!(items.iter().any(|i| i["recipient"] == "user:noaddress"
        && i["status"] == "suppressed"
        && i["reason"] == "no_address"));
    assert!(
        items
            .iter()
            .any(|i| i["recipient"] == "group:support" && i["channel"] == "in_app")
    );
}

#[tokio::test]
async fn scheduled_sends_appear_at_their_time_and_survive_a_restart() {
    let app = spawn_app_with(belfry_server::Config {
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    let t = app.token("ana").await;
    let in_an_hour = Millis(app.clock.now().0 + 3_600_000).to_rfc3339();
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "Call the customer back", "sticky": true, "send_at": in_an_hour}))
        .await;
    assert_eq!(r["seq"], Value::Null);
    let id = r["id"].as_str().unwrap().to_string();
    let view: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "scheduled");
    assert_eq!(view["send_at"], in_an_hour);
    let items = log(&app, &id).await;
    assert_eq!(items[0]["status"], "scheduled");
    assert_eq!(items[0]["at"], in_an_hour);

    app.notify("ana", "meanwhile").await;
    assert_eq!(app.run_due_jobs().await, 0);
    assert_eq!(
        app.titles(&t, "").await,
        ["meanwhile"],
        "not before its time"
    );

    // Across a restart, and past due at start-up: it runs.
    let app = app.restart().await;
    let mut stream = app.sse(&t, None).await;
    app.clock.advance_secs(3601);
    assert_eq!(app.run_due_jobs().await, 1);
    let e = stream.notification().await;
    assert_eq!(e.data["title"], "Call the customer back");
    assert_eq!(e.data["sticky"], true);
    let page = app.inbox(&t, "").await;
    assert_eq!(
        page["items"][0]["id"],
        id.as_str(),
        "published now, so on top"
    );
    let view: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "published");
    assert!(view["seq"].as_i64().unwrap() > page["items"][1]["seq"].as_i64().unwrap());
}

#[tokio::test]
async fn a_scheduled_send_can_be_cancelled() {
    let app = spawn_app_with(belfry_server::Config {
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    let later = Millis(app.clock.now().0 + 60_000).to_rfc3339();
    let r = app.send_ok(json!({"to": {"users": ["ana"]}, "channels": ["in_app", "email"], "title": "never", "send_at": later})).await;
    let id = r["id"].as_str().unwrap();
    let r = app
        .admin(Method::DELETE, &format!("/v1/notifications/{id}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.clock.advance_secs(120);
    assert_eq!(app.run_due_jobs().await, 0);
    let t = app.token("ana").await;
    assert!(app.titles(&t, "").await.is_empty());
    let items = log(&app, id).await;
    assert_eq!(items.last().unwrap()["status"], "cancelled");
    let view: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "cancelled");

    // Cancelling a sent notification whose email is still queued cancels the email.
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["email"], "title": "oops"}))
        .await;
    let id = r["id"].as_str().unwrap();
    app.admin(Method::DELETE, &format!("/v1/notifications/{id}"), None)
        .await;
    assert_eq!(app.run_due_jobs().await, 0);
    let items = log(&app, id).await;
    assert_eq!(
        lines(&items).last().unwrap(),
        &line("user:ana", "email", "cancelled", 0)
    );
    let mails: Value = app
        .admin(Method::GET, "/v1/dev/mailbox", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(mails["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_times_and_channels_are_explained() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    for (body, field) in [
        (
            json!({"to": {"users": ["ana"]}, "title": "x", "send_at": "tomorrow at noon"}),
            "send_at",
        ),
        (
            json!({"to": {"users": ["ana"]}, "title": "x", "send_at": "2026-02-30T10:00:00Z"}),
            "send_at",
        ),
        (
            json!({"to": {"users": ["ana"]}, "title": "x", "channels": ["pigeon"]}),
            "channels[0]",
        ),
        (
            json!({"to": {"users": ["ana"]}, "title": "x", "channels": []}),
            "channels",
        ),
        (
            json!({"to": {"users": ["ana"]}, "title": "x", "send_at": "2999-01-01T00:00:00Z", "expires_at": "2998-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let r = app.send(body).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    // More than a minute in the past is refused; a few seconds (clock skew) sends now.
    let r = app
        .send(json!({"to": {"users": ["ana"]}, "title": "then", "send_at": "2001-01-01T00:00:00Z"}))
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"][0]["field"], "send_at", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("in the past"), "{p}");
    let just_now = Millis(app.clock.now().0 - 30_000).to_rfc3339();
    let r = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "now", "send_at": just_now}))
        .await;
    assert!(r["seq"].as_i64().is_some());
    let r = app
        .send(json!({"to": {"users": ["ghost"]}, "title": "x", "send_at": "2999-01-01T00:00:00Z"}))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_user").await;
}

/// Every page of a delivery log, following `next_cursor` (`query` adds
/// parameters, e.g. "&limit=2").
async fn log_pages(app: &TestApp, id: &str, query: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .admin(
                Method::GET,
                &format!("/v1/notifications/{id}/deliveries?cursor={cursor}{query}"),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        pages.push(page["items"].as_array().unwrap().clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                return pages;
            }
        }
    }
}

#[tokio::test]
async fn the_delivery_log_is_paginated_with_a_cursor() {
    let mut config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    config.delivery.expand_page = 4;
    let app = spawn_app_with(config).await;
    for i in 0..9 {
        app.put_user(
            &format!("m{i}"),
            json!({"email": format!("m{i}@example.com"), "groups": ["support"]}),
        )
        .await;
    }
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    let r = app
        .send_ok(json!({
            "to": {"groups": ["support"], "users": ["ana"], "emails": ["x@example.org"]},
            "channels": ["in_app", "email"],
            "title": "Maintenance tonight"
        }))
        .await;
    let id = r["id"].as_str().unwrap();
    while app.run_due_jobs().await > 0 {}

    // One page with the default limit (100) holds everything: in-app
    // first (ana's inbox entry, the group's broadcast), then the lines.
    let whole = log_pages(&app, id, "").await;
    assert_eq!(whole.len(), 1);
    let whole = &whole[0];
    let all = lines(whole);
    assert_eq!(all[0], line("user:ana", "in_app", "sent", 1));
    assert_eq!(all[1], line("group:support", "in_app", "sent", 1));
    for i in 0..9 {
        assert!(all.contains(&line(&format!("user:m{i}"), "email", "sent", 1)));
    }
    assert!(all.contains(&line("email:x@example.org", "email", "sent", 1)));

    // Any page size gives the same lines, once each, in the same order.
    for limit in [1, 2, 3, 7, 1000] {
        let pages = log_pages(&app, id, &format!("&limit={limit}")).await;
        assert!(pages.iter().all(|p| p.len() <= limit));
        assert_eq!(pages.len(), whole.len().div_ceil(limit), "limit {limit}");
        let joined: Vec<Value> = pages.into_iter().flatten().collect();
        assert_eq!(&joined, whole, "limit {limit}");
    }

    // Lines logged after a page was read appear on a later page.
    let r = app
        .send_ok(json!({"to": {"emails": ["y@example.org"]}, "title": "Later"}))
        .await;
    let later = r["id"].as_str().unwrap();
    let first: Value = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{later}/deliveries?limit=1"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        lines(first["items"].as_array().unwrap()),
        [line("email:y@example.org", "email", "queued", 0)]
    );
    assert!(first["next_cursor"].is_null(), "nothing more, yet");
    // A client that keeps the position of the last line it read (here:
    // the cursor of a page that ends after the queued line) gets the
    // outcome logged since on its next page.
    app.run_due_jobs().await;
    let again: Value = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{later}/deliveries?limit=1"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["items"], first["items"]);
    let cursor = again["next_cursor"].as_str().unwrap();
    let next: Value = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{later}/deliveries?limit=1&cursor={cursor}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        lines(next["items"].as_array().unwrap()),
        [line("email:y@example.org", "email", "sent", 1)]
    );
    assert!(next["next_cursor"].is_null());

    // Wrong limits, cursors and parameters are refused, saying why.
    for (query, code) in [
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("limit=ten", "invalid_query"),
        ("cursor=42", "invalid_query"),
        ("cursor=l-1", "invalid_query"),
        ("offset=100", "unknown_parameter"),
    ] {
        let r = app
            .admin(
                Method::GET,
                &format!("/v1/notifications/{id}/deliveries?{query}"),
                None,
            )
            .await;
        let p = assert_problem(r, StatusCode::BAD_REQUEST, code).await;
        let field = query.split('=').next().unwrap();
        assert!(p["detail"].as_str().unwrap().contains(field), "{p}");
    }
}

/// The SMTP server goes away for two minutes while emails are being sent,
/// then comes back: every email arrives exactly once, and the log shows
/// each failed attempt and the final `sent`. The engine is driven with
/// the test clock (`run_due_jobs`), the SMTP server is the real process.
#[tokio::test]
async fn an_smtp_outage_delays_emails_and_each_arrives_exactly_once() {
    let mut sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink, false)).await;
    let users: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    for u in &users {
        app.put_user(u, json!({"email": format!("{u}@example.com")}))
            .await;
    }
    let email_all =
        |title: &str| json!({"to": {"users": users}, "channels": ["email"], "title": title});
    // Before: delivered at once (and Belfry keeps its SMTP connections open).
    app.send_ok(email_all("before")).await;
    assert_eq!(app.run_due_jobs().await, 5);
    sink.wait_for(5).await;

    // The server is stopped; sends go on.
    sink.stop();
    let mut during = Vec::new();
    for title in ["during 1", "during 2"] {
        let r = app.send_ok(email_all(title)).await;
        during.push(r["id"].as_str().unwrap().to_string());
    }
    assert_eq!(app.run_due_jobs().await, 10, "each attempted, and failed");
    // Two minutes down; the retries come due and fail again.
    for _ in 0..8 {
        app.clock.advance_secs(15);
        app.run_due_jobs().await;
    }
    assert_eq!(sink.messages().len(), 5, "nothing arrives while it is down");

    // It is back: the next retries deliver.
    sink.restart();
    for _ in 0..20 {
        if sink.messages().len() >= 15 {
            break;
        }
        app.clock.advance_secs(60);
        app.run_due_jobs().await;
    }
    // Nothing is left to run, even much later.
    app.clock.advance_secs(24 * 3600);
    assert_eq!(app.run_due_jobs().await, 0);

    // Exactly once per recipient and notification.
    let mut arrived: Vec<(String, String)> = sink
        .messages()
        .iter()
        .map(|m| {
            (
                m["rcpt_tos"][0].as_str().unwrap().to_string(),
                m["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    arrived.sort();
    let mut expected: Vec<(String, String)> = users
        .iter()
        .flat_map(|u| {
            ["before", "during 1", "during 2"].map(|t| (format!("{u}@example.com"), t.to_string()))
        })
        .collect();
    expected.sort();
    assert_eq!(arrived, expected);

    // The log (read in small pages): per recipient, queued, the failed
    // attempts while the server was down, then sent, attempts numbered.
    for id in &during {
        let items: Vec<Value> = log_pages(&app, id, "&limit=4")
            .await
            .into_iter()
            .flatten()
            .collect();
        for u in &users {
            let mine: Vec<_> = lines(&items)
                .into_iter()
                .filter(|l| l.0 == format!("user:{u}"))
                .collect();
            let (last, before) = mine.split_last().unwrap();
            assert_eq!(before[0], line(&format!("user:{u}"), "email", "queued", 0));
            let failed = &before[1..];
            assert!(failed.len() >= 3, "{mine:?}");
            for (n, f) in failed.iter().enumerate() {
                assert_eq!(f.2, "failed", "{mine:?}");
                assert_eq!(f.3, n as i64 + 1);
            }
            assert_eq!(
                last,
                &line(
                    &format!("user:{u}"),
                    "email",
                    "sent",
                    failed.len() as i64 + 1
                )
            );
        }
        let error = items.iter().find(|i| i["status"] == "failed").unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(error.contains("retrying at"), "{error}");
    }
}

#[tokio::test]
async fn channel_texts_of_a_send_make_the_email_and_stay_out_of_the_inbox() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink, true)).await;
    app.put_user("ana", json!({"email": "ana@example.com", "name": "Ana"}))
        .await;
    let r = app
        .send_ok(json!({
            "to": {"users": ["ana"]},
            "channels": ["in_app", "email"],
            "title": "Ticket #9 assigned",
            "body": "Printer jam",
            "texts": {
                "email_subject": "[Desk] #9 Printer jam\nassigned to you",
                "email_text": "Bo assigned ticket #9 to you.\nPlease look today.",
                "email_html": "<p>Bo assigned <strong>#9</strong> to you.</p>",
                "push_title": "  ",
            }
        }))
        .await;
    let mails = sink.wait_for(1).await;
    let m = &mails[0];
    assert_eq!(m["subject"], "[Desk] #9 Printer jam assigned to you");
    let text = m["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        text.contains("Bo assigned ticket #9 to you.\nPlease look today."),
        "{text}"
    );
    assert!(
        !text.contains("Printer jam"),
        "the email text replaces title and body: {text}"
    );
    assert!(
        text.contains("Hello Ana,"),
        "greeting and footer stay: {text}"
    );
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("<p>Bo assigned <strong>#9</strong> to you.</p>"),
        "{html}"
    );
    assert!(!html.contains("<h1"), "{html}");

    // The inbox item has no channel texts; the producer's view has them.
    let token = app.token("ana").await;
    let items = app.inbox(&token, "").await;
    assert_eq!(items["items"][0]["title"], "Ticket #9 assigned");
    assert!(items["items"][0].get("texts").is_none(), "{items}");
    let id = r["id"].as_str().unwrap();
    let v: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["texts"]["email_subject"],
        "[Desk] #9 Printer jam assigned to you"
    );
    assert!(
        v["texts"].get("push_title").is_none(),
        "blank texts are dropped: {v}"
    );

    // Bad texts are refused by field.
    let r = app
        .send(json!({"to": {"users": ["ana"]}, "title": "x",
                     "texts": {"chat": "x".repeat(5000), "sms": "no"}}))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(json!({"to": {"users": ["ana"]}, "title": "x", "texts": {"chat": "y".repeat(4001)}}))
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"][0]["field"], "texts.chat");
}

#[tokio::test]
async fn an_event_emails_each_recipient_in_their_language_with_the_templates_texts() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink, true)).await;
    app.put_user(
        "ana",
        json!({"email": "ana@example.com", "name": "Ana", "locale": "de-AT"}),
    )
    .await;
    app.put_user(
        "carl",
        json!({"email": "carl@example.com", "name": "Carl", "locale": "en"}),
    )
    .await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/categories/assignment",
            Some(json!({"defaults": {"email": "instant", "web_push": false, "mobile_push": false, "chat": false}})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/assigned",
            Some(json!({"default_locale": "en", "locales": {
                "en": {"title": "{{ entity.title }} is yours",
                       "email_subject": "[Desk] {{ entity.title }} was assigned to you",
                       "email_text": "{{ actor.name }} assigned {{ entity.title }} to you.",
                       "email_html": "<p>{{ actor.name }} assigned <b>{{ entity.title }}</b> to you.</p>"},
                "de": {"title": "{{ entity.title }} gehört Ihnen",
                       "email_subject": "[Desk] {{ entity.title }} wurde Ihnen zugewiesen",
                       "email_text": "{{ actor.name }} hat Ihnen {{ entity.title }} zugewiesen.",
                       "email_html": "<p>{{ actor.name }} hat Ihnen <b>{{ entity.title }}</b> zugewiesen.</p>"}}})),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = app
        .admin(
            Method::PUT,
            "/v1/rules/assigned",
            Some(
                json!({"event": "ticket.assigned", "to": {"users": ["{{ data.assignees }}"]},
                        "category": "assignment", "template": "assigned"}),
            ),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = app
        .admin(
            Method::POST,
            "/v1/events",
            Some(
                json!({"type": "ticket.assigned", "actor": {"id": "bo", "name": "Bo <Boss>"},
                        "entity": {"type": "ticket", "id": "7", "title": "#7 Printer & Co"},
                        "data": {"assignees": ["ana", "carl"]}}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mails = sink.wait_for(2).await;
    let to = |addr: &str| mails.iter().find(|m| m["rcpt_tos"][0] == addr).unwrap();
    let ana = to("ana@example.com");
    assert_eq!(
        ana["subject"],
        "[Desk] #7 Printer & Co wurde Ihnen zugewiesen"
    );
    assert!(
        ana["text"]
            .as_str()
            .unwrap()
            .contains("Bo <Boss> hat Ihnen #7 Printer & Co zugewiesen."),
        "{}",
        ana["text"]
    );
    let html = ana["html"].as_str().unwrap().replace("&#x2f;", "/");
    assert!(
        html.contains("<p>Bo &lt;Boss&gt; hat Ihnen <b>#7 Printer &amp; Co</b> zugewiesen.</p>"),
        "values escaped, the template's markup kept: {html}"
    );
    assert!(html.contains("lang=\"de\""), "{html}");
    let carl = to("carl@example.com");
    assert_eq!(
        carl["subject"],
        "[Desk] #7 Printer & Co was assigned to you"
    );
    assert!(
        carl["text"]
            .as_str()
            .unwrap()
            .contains("Bo <Boss> assigned #7 Printer & Co to you.")
    );
}
