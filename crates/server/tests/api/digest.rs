//! The daily email digest (C4): a real SMTP server process, the test's
//! clock, and the job queue drained by the test. What it lists (the five
//! newest unread, broadcasts included), the count, the "see all" link,
//! its time in the user's zone (across a DST change), nothing when all is
//! read, and once a day across a restart and a second node.

use crate::helpers::*;
use belfry_core::Millis;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

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
    c.email.notifications_path = "/app/inbox".into();
    c
}

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn prefs(app: &TestApp, user: &str, body: Value) -> Value {
    ok(app
        .admin(
            Method::PUT,
            &format!("/v1/users/{user}/preferences"),
            Some(body),
        )
        .await)
    .await
}

async fn mention(app: &TestApp, user: &str, title: &str) -> String {
    app.send_ok(json!({"to": {"users": [user]}, "channels": ["in_app", "email"], "title": title,
                       "body": format!("About {title}"), "url": format!("/t/{title}"), "category": "mention"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn email_statuses(app: &TestApp, id: &str) -> Vec<String> {
    let v = ok(app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await)
    .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["channel"] == "email" && i["status"] != "queued")
        .map(|i| i["status"].as_str().unwrap().to_string())
        .collect()
}

async fn digests_counted(app: &TestApp, outcome: &str) -> f64 {
    let text = app.text("/metrics").await;
    let key = format!("belfry_digests_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn ana_in_berlin(app: &TestApp) {
    app.put_user(
        "ana",
        json!({"email": "ana@example.com", "name": "Ana", "timezone": "Europe/Berlin"}),
    )
    .await;
    prefs(
        app,
        "ana",
        json!({"categories": {"mention": {"email": "digest"}}, "digest": {"time": "18:00"}}),
    )
    .await;
}

#[tokio::test]
async fn the_digest_lists_the_five_newest_unread_with_the_count_and_a_link_to_all() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(config(&sink)).await;
    // Older than the first digest's window (24 hours): not counted.
    app.clock.set(at("2026-01-13T10:00:00Z"));
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    mention(&app, "ana", "old").await;
    app.clock.set(at("2026-01-14T10:00:00Z"));
    ana_in_berlin(&app).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(mention(&app, "ana", &format!("m{n}")).await);
        app.clock.advance_secs(60);
    }
    // A broadcast (no email of its own) is in the inbox, unread: listed.
    app.send_ok(json!({"to": {"all": true}, "title": "b1", "category": "announcement"}))
        .await;
    app.run_due_jobs().await;
    // Ana reads the newest mention in the app.
    let t = app.token("ana").await;
    app.me_post(
        &t,
        &format!("/notifications/{}/read", ids[5]),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert!(sink.messages().is_empty(), "digested, not emailed at once");
    assert_eq!(email_statuses(&app, &ids[0]).await, ["digested"]);

    // 17:59:59 in Berlin: not yet.
    app.clock.set(at("2026-01-14T16:59:59Z"));
    app.run_due_jobs().await;
    assert!(sink.messages().is_empty());
    let sent_before = digests_counted(&app, "sent").await;
    // 18:00 in Berlin.
    app.clock.set(at("2026-01-14T17:00:00Z"));
    assert_eq!(app.run_due_jobs().await, 1, "one digest job");
    let mails = sink.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["rcpt_tos"], json!(["ana@example.com"]));
    assert_eq!(
        mail["subject"],
        "6 unread notifications since January 13, 2026 at 6:00 PM (Europe/Berlin)"
    );
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("Hello Ana,"), "{text}");
    // The five newest unread, newest first; not the read one, not the oldest.
    let listed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    assert_eq!(
        listed,
        [
            "[announcement] b1",
            "[mention] m5",
            "[mention] m4",
            "[mention] m3",
            "[mention] m2"
        ]
    );
    assert!(text.contains("About m5"));
    assert!(text.contains("Open: https://desk.example.com/t/m5"));
    assert!(text.contains("… and 1 more."), "{text}");
    assert!(text.contains("See all notifications: https://desk.example.com/app/inbox"));
    let html = mail["html"].as_str().unwrap();
    // The HTML part escapes "/" in attribute values (minijinja).
    let unescaped = html.replace("&#x2f;", "/");
    assert!(
        unescaped.contains("href=\"https://desk.example.com/app/inbox\""),
        "{html}"
    );
    assert!(!html.contains("m1<"), "not listed: {html}");

    // The log: digested when it arrived, then sent in the digest; the one
    // beyond the five stays digested (counted, behind the link).
    assert_eq!(email_statuses(&app, &ids[4]).await, ["digested", "sent"]);
    assert_eq!(email_statuses(&app, &ids[0]).await, ["digested"]);
    assert!(digests_counted(&app, "sent").await >= sent_before + 1.0);

    // Nothing more today; tomorrow only what is still unread and new.
    app.clock.set(at("2026-01-14T22:00:00Z"));
    assert_eq!(app.run_due_jobs().await, 0);
    app.clock.set(at("2026-01-15T09:00:00Z"));
    mention(&app, "ana", "next").await;
    app.run_due_jobs().await;
    app.clock.set(at("2026-01-15T17:00:00Z"));
    app.run_due_jobs().await;
    let mails = sink.messages();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1]["subject"],
        "1 unread notification since January 14, 2026 at 6:00 PM (Europe/Berlin)"
    );
    assert!(!mails[1]["text"].as_str().unwrap().contains("more."));
}

#[tokio::test]
async fn nothing_is_sent_when_all_is_read_and_once_a_day_across_restarts_and_nodes() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(config(&sink)).await;
    app.clock.set(at("2026-01-14T10:00:00Z"));
    ana_in_berlin(&app).await;
    mention(&app, "ana", "a").await;
    mention(&app, "ana", "b").await;
    app.run_due_jobs().await;
    let t = app.token("ana").await;
    app.me_post(&t, "/notifications/read-all", None, StatusCode::OK)
        .await;
    let empty_before = digests_counted(&app, "empty").await;
    app.clock.set(at("2026-01-14T17:00:00Z"));
    assert_eq!(app.run_due_jobs().await, 1);
    assert!(sink.messages().is_empty(), "all read: no digest");
    assert!(digests_counted(&app, "empty").await >= empty_before + 1.0);

    // The next day: one unread; the engine restarts just before 18:00.
    app.clock.set(at("2026-01-15T09:00:00Z"));
    mention(&app, "ana", "c").await;
    app.run_due_jobs().await;
    let app = app.restart().await;
    app.clock.set(at("2026-01-15T17:00:00Z"));
    app.run_due_jobs().await;
    assert_eq!(sink.messages().len(), 1);
    // A restart and a second node later the same day send nothing more.
    let app = app.restart().await;
    let other = app.another_node().await;
    app.clock.set(at("2026-01-15T17:30:00Z"));
    assert_eq!(app.run_due_jobs().await, 0);
    assert_eq!(other.run_due_jobs().await, 0);
    // Choosing digest mode again (preferences saved from any node) does not
    // queue a second digest job.
    prefs(
        &other,
        "ana",
        json!({"sources": {"helpdesk": {"email": "digest"}}}),
    )
    .await;
    app.clock.set(at("2026-01-16T16:59:00Z"));
    assert_eq!(other.run_due_jobs().await, 0);
    app.clock.set(at("2026-01-16T17:00:00Z"));
    assert_eq!(
        app.run_due_jobs().await + other.run_due_jobs().await,
        1,
        "one job for Ana"
    );
    assert_eq!(
        sink.messages().len(),
        1,
        "c is still unread, but was in yesterday's digest"
    );
}

#[tokio::test]
async fn choosing_the_digest_schedules_it_at_the_local_time_across_a_dst_change() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(config(&sink)).await;
    // Saturday 2026-03-07, 08:00 EST in New York; clocks go forward on Sunday.
    app.clock.set(at("2026-03-07T13:00:00Z"));
    app.put_user(
        "bo",
        json!({"email": "bo@example.com", "timezone": "America/New_York", "locale": "de"}),
    )
    .await;
    // Choosing digest mode queues the job before anything was digested.
    let p = prefs(
        &app,
        "bo",
        json!({"categories": {"mention": {"email": "digest"}}, "digest": {"time": "07:30"}}),
    )
    .await;
    assert_eq!(p["categories"]["mention"]["email"], "digest");
    app.send_ok(json!({"to": {"all": true}, "title": "Wartung", "category": "announcement"}))
        .await;
    // 07:29 EDT on Sunday.
    app.clock.set(at("2026-03-08T11:29:00Z"));
    app.run_due_jobs().await;
    assert!(sink.messages().is_empty());
    // 07:30 EDT (UTC-4) is 11:30Z, not 12:30Z.
    app.clock.set(at("2026-03-08T11:30:00Z"));
    app.run_due_jobs().await;
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0]["subject"],
        "1 ungelesene Benachrichtigung seit 7. März 2026 um 06:30 Uhr (America/New_York)"
    );
    assert!(
        mails[0]["text"]
            .as_str()
            .unwrap()
            .contains("Alle Benachrichtigungen ansehen: https://desk.example.com/app/inbox")
    );

    // A new digest time moves the waiting job: 06:00 on Monday, not 07:30.
    prefs(&app, "bo", json!({"digest": {"time": "06:00"}})).await;
    app.clock.advance_secs(60);
    app.send_ok(json!({"to": {"all": true}, "title": "Neu", "category": "announcement"}))
        .await;
    app.clock.set(at("2026-03-09T10:00:00Z"));
    app.run_due_jobs().await;
    assert_eq!(sink.messages().len(), 2);
    // Back to instant email: the job ends when it comes due, sending nothing.
    prefs(
        &app,
        "bo",
        json!({"categories": {"mention": {"email": "instant"}}}),
    )
    .await;
    app.send_ok(json!({"to": {"all": true}, "title": "Mehr", "category": "announcement"}))
        .await;
    app.clock.set(at("2026-03-10T10:00:00Z"));
    assert_eq!(app.run_due_jobs().await, 1);
    app.clock.set(at("2026-03-11T10:00:00Z"));
    assert_eq!(app.run_due_jobs().await, 0, "no digest job any more");
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test]
async fn digest_mode_is_accepted_for_users_defaults_and_categories() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let p = ok(app
        .me(
            Method::PUT,
            "/preferences",
            &t,
            Some(
                json!({"sources": {"helpdesk": {"email": "digest"}}, "digest": {"time": "07:15"}}),
            ),
        )
        .await)
    .await;
    assert_eq!(p["sources"]["helpdesk"]["email"], "digest");
    assert_eq!(p["digest"]["time"], "07:15");
    let d = ok(app
        .admin(
            Method::PUT,
            "/v1/preferences/defaults",
            Some(json!({"categories": {"reminder": {"email": "digest"}}})),
        )
        .await)
    .await;
    assert_eq!(d["categories"]["reminder"]["email"], "digest");
    let c = ok(app
        .admin(
            Method::PUT,
            "/v1/categories/reopened",
            Some(json!({"defaults": {"email": "digest", "web_push": true, "mobile_push": false, "chat": false}})),
        )
        .await)
    .await;
    assert_eq!(c["defaults"]["email"], "digest");
    // A malformed digest time names the field.
    let v = assert_problem(
        app.me(
            Method::PUT,
            "/preferences",
            &t,
            Some(json!({"digest": {"time": "7:15"}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "digest.time");
}
