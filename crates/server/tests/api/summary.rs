//! The per-recipient rate limit (P6): above the limit within a window,
//! further emails to a user are held and go out as one summary email when
//! the window ends; the inbox still gets everything. A real SMTP server
//! process, the test's clock, the job queue drained by the test.

use crate::helpers::*;
use belfry_core::Millis;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

fn at(s: &str) -> Millis {
    Millis::parse_rfc3339(s).unwrap()
}

fn config(sink: &SmtpSink) -> belfry_server::Config {
    let mut c = belfry_server::Config {
        smtp_url: Some(sink.url().into()),
        run_workers: false,
        ..Default::default()
    };
    c.email.app_url = Some("https://desk.example.com".into());
    c.delivery.recipient_limit = Some(belfry_delivery::RecipientLimit {
        max: 3,
        window: Duration::from_secs(60),
    });
    c
}

async fn mention(app: &TestApp, user: &str, title: &str) -> String {
    app.send_ok(
        json!({"to": {"users": [user]}, "channels": ["in_app", "email"], "title": title,
                       "url": format!("/t/{title}"), "category": "mention"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The email lines of a notification's delivery log (status, reason, until).
async fn email_log(app: &TestApp, id: &str) -> Vec<(String, Value, Value)> {
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
        .filter(|i| i["channel"] == "email" && i["status"] != "queued")
        .map(|i| {
            (
                i["status"].as_str().unwrap().to_string(),
                i["reason"].clone(),
                i["until"].clone(),
            )
        })
        .collect()
}

async fn counter(app: &TestApp, line: &str) -> f64 {
    let text = app.text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn above_the_limit_emails_are_held_and_summarised_when_the_window_ends() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(config(&sink)).await;
    app.clock.set(at("2026-01-14T10:00:10Z"));
    app.put_user("ana", json!({"email": "ana@example.com", "name": "Ana"}))
        .await;
    app.put_user("bo", json!({"email": "bo@example.com"})).await;
    let limited_before = counter(&app, "belfry_rate_limited_total{channel=\"email\"} ").await;
    let held_line = "belfry_deliveries_total{channel=\"email\",status=\"held\"} ";
    let sent_line = "belfry_deliveries_total{channel=\"email\",status=\"sent\"} ";
    let (held_before, sent_lines_before) = (
        counter(&app, held_line).await,
        counter(&app, sent_line).await,
    );
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(mention(&app, "ana", &format!("m{n}")).await);
        app.clock.advance_secs(1);
        if n == 3 {
            // (Workers send a batch in any order: this fixes which are held.)
            app.run_due_jobs().await;
        }
    }
    // Bo has a limit of his own.
    mention(&app, "bo", "b1").await;
    app.run_due_jobs().await;
    let mails = sink.messages();
    let to_ana: Vec<&Value> = mails
        .iter()
        .filter(|m| m["rcpt_tos"] == json!(["ana@example.com"]))
        .collect();
    assert_eq!(to_ana.len(), 3, "three within the limit: {mails:?}");
    assert_eq!(mails.len(), 4, "and Bo's");
    // (Other tests in this process count too.)
    assert!(
        counter(&app, "belfry_rate_limited_total{channel=\"email\"} ").await
            >= limited_before + 3.0
    );
    // The metric counts what the delivery log says.
    assert!(counter(&app, held_line).await >= held_before + 3.0);
    assert!(counter(&app, sent_line).await >= sent_lines_before + 4.0);
    // The inbox has everything.
    let t = app.token("ana").await;
    assert_eq!(app.counts(&t).await.0, 6);
    // The held ones say why and until when.
    let held = email_log(&app, &ids[3]).await;
    assert_eq!(
        held,
        [(
            "held".to_string(),
            json!("rate_limited"),
            json!("2026-01-14T10:01:00.000Z")
        )]
    );
    // Ana reads the newest held one in the app meanwhile.
    app.me_post(
        &t,
        &format!("/notifications/{}/read", ids[5]),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;

    // Not before the window ends.
    app.clock.set(at("2026-01-14T10:00:59Z"));
    assert_eq!(app.run_due_jobs().await, 0);
    assert_eq!(sink.messages().len(), 4);
    let sent_before = counter(
        &app,
        "belfry_summaries_total{channel=\"email\",outcome=\"sent\"} ",
    )
    .await;
    app.clock.set(at("2026-01-14T10:01:00Z"));
    assert_eq!(app.run_due_jobs().await, 1, "one summary job");
    let mails = sink.messages();
    assert_eq!(mails.len(), 5);
    let summary = &mails[4];
    assert_eq!(summary["rcpt_tos"], json!(["ana@example.com"]));
    assert_eq!(
        summary["subject"],
        "2 more notifications since January 14, 2026 at 10:00 AM (UTC)"
    );
    let text = summary["text"].as_str().unwrap();
    let listed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    assert_eq!(listed, ["[mention] m5", "[mention] m4"], "{text}");
    assert!(text.contains("Open: https://desk.example.com/t/m5"));
    assert!(
        counter(
            &app,
            "belfry_summaries_total{channel=\"email\",outcome=\"sent\"} "
        )
        .await
            >= sent_before + 1.0
    );
    let statuses = |log: Vec<(String, Value, Value)>| -> Vec<(String, Value)> {
        log.into_iter().map(|(s, r, _)| (s, r)).collect()
    };
    assert_eq!(
        statuses(email_log(&app, &ids[3]).await),
        [
            ("held".to_string(), json!("rate_limited")),
            ("sent".to_string(), json!("rate_limited"))
        ]
    );
    assert_eq!(
        statuses(email_log(&app, &ids[5]).await),
        [
            ("held".to_string(), json!("rate_limited")),
            ("suppressed".to_string(), json!("seen_in_app"))
        ]
    );
    assert_eq!(
        statuses(email_log(&app, &ids[0]).await),
        [("sent".to_string(), Value::Null)]
    );

    // A new window: emails go out at once again.
    mention(&app, "ana", "m7").await;
    app.run_due_jobs().await;
    assert_eq!(sink.messages().len(), 6);
    assert_eq!(sink.messages()[5]["subject"], "m7");
}

#[tokio::test]
async fn what_is_held_survives_a_restart_and_goes_out_once() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(config(&sink)).await;
    app.clock.set(at("2026-01-14T10:00:00Z"));
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    for n in 1..=5 {
        mention(&app, "ana", &format!("m{n}")).await;
    }
    app.run_due_jobs().await;
    assert_eq!(sink.messages().len(), 3);
    let app = app.restart().await;
    let other = app.another_node().await;
    app.clock.set(at("2026-01-14T10:01:00Z"));
    assert_eq!(
        app.run_due_jobs().await + other.run_due_jobs().await,
        1,
        "one summary, whichever node runs it"
    );
    let mails = sink.messages();
    assert_eq!(mails.len(), 4);
    assert_eq!(
        mails[3]["subject"],
        "2 more notifications since January 14, 2026 at 10:00 AM (UTC)"
    );
}
