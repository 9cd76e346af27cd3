//! Retention (P7): the daily job deletes what is dealt with and old, keeps
//! what someone has not read, and comes back the next day.

use crate::helpers::{TestApp, spawn_app_with};
use belfry_store::retention::RetentionPolicy;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DAY: i64 = 24 * 3600;

fn config(batch: usize) -> belfry_server::Config {
    let mut config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    config.delivery.retention = Some(RetentionPolicy {
        batch,
        ..Default::default()
    });
    // Every step ends the job's run: the run continues as a new claim.
    config.delivery.retention_slice = std::time::Duration::ZERO;
    config
}

async fn status_of(app: &TestApp, id: &str) -> StatusCode {
    app.admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .status()
}

async fn read(app: &TestApp, token: &str, id: &str) {
    app.me_post(
        token,
        &format!("/notifications/{id}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

async fn mailbox_len(app: &TestApp) -> usize {
    let r: Value = app
        .admin(Method::GET, "/v1/dev/mailbox", None)
        .await
        .json()
        .await
        .unwrap();
    r["items"].as_array().unwrap().len()
}

async fn log_len(app: &TestApp, id: &str) -> usize {
    let r: Value = app
        .admin(
            Method::GET,
            &format!("/v1/notifications/{id}/deliveries"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    r["items"].as_array().unwrap().len()
}

/// Runs due jobs until the retention run is over (small batches make it
/// continue many times); returns the jobs run.
async fn run_retention(app: &TestApp) -> usize {
    app.run_due_jobs().await
}

#[tokio::test]
async fn read_items_go_after_the_retention_age_and_unread_ones_stay() {
    // Batches of 2 rows: every phase takes several steps.
    let app = spawn_app_with(config(2)).await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    app.put_user("bo", json!({})).await;
    let ana = app.token("ana").await;

    // The first run is due at start: nothing to delete yet (one claim per
    // phase: each step ends the job's turn in these tests).
    assert_eq!(run_retention(&app).await, 5);
    assert_eq!(run_retention(&app).await, 0, "the next run is tomorrow");

    let both = app
        .send_ok(json!({"to": {"users": ["ana", "bo"]}, "title": "for both"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let only_ana = app.notify("ana", "only ana").await;
    let unread = app.notify("ana", "still unread").await;
    let mut stacked = vec![];
    for n in 1..=3 {
        let r = app
            .send_ok(json!({"to": {"users": ["ana"]}, "title": format!("{n} replies"), "stack_key": "t:1"}))
            .await;
        stacked.push(r["id"].as_str().unwrap().to_string());
    }
    let emailed = app
        .send_ok(json!({"to": {"users": ["ana"]}, "channels": ["email"], "title": "report"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let keyed = json!({"to": {"users": ["bo"]}, "title": "once", "idempotency_key": "k-1"});
    let first = app.send_ok(keyed.clone()).await;
    // The email goes to the development mailbox and is logged.
    assert_eq!(app.run_due_jobs().await, 1);
    assert_eq!(mailbox_len(&app).await, 1);
    assert!(log_len(&app, &emailed).await >= 2, "queued and sent");

    read(&app, &ana, &both).await;
    read(&app, &ana, &only_ana).await;
    app.me_post(&ana, "/notifications/read-all", None, StatusCode::OK)
        .await;
    app.me_post(
        &ana,
        &format!("/notifications/{unread}/unread"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.titles(&ana, "").await.len(), 4);

    // 89 days later: too young, nothing goes.
    app.clock.advance_secs(89 * DAY);
    // Tokens live 30 days: fresh ones.
    let ana = app.token("ana").await;
    assert!(run_retention(&app).await >= 1);
    assert_eq!(app.titles(&ana, "").await.len(), 4);
    assert_eq!(status_of(&app, &stacked[0]).await, StatusCode::OK);
    // The mailbox (7 days) and the delivery log (30 days) are older.
    assert_eq!(mailbox_len(&app).await, 0);
    assert_eq!(log_len(&app, &emailed).await, 0);

    // Past 90 days: what Ana read goes; what she has not read stays, and so
    // does the notification Bo has not read.
    app.clock.advance_secs(2 * DAY);
    let (ana, bo) = (app.token("ana").await, app.token("bo").await);
    assert!(run_retention(&app).await > 6, "several steps of 2 rows");
    assert_eq!(app.titles(&ana, "").await, ["still unread"]);
    assert_eq!(app.counts(&ana).await.0, 1);
    assert_eq!(app.titles(&bo, "").await, ["once", "for both"]);
    assert_eq!(status_of(&app, &both).await, StatusCode::OK, "Bo sees it");
    assert_eq!(status_of(&app, &unread).await, StatusCode::OK);
    // No one can see these any longer: gone, the stack's members with them.
    assert_eq!(status_of(&app, &only_ana).await, StatusCode::NOT_FOUND);
    for id in &stacked {
        assert_eq!(status_of(&app, id).await, StatusCode::NOT_FOUND, "{id}");
    }
    assert_eq!(status_of(&app, &emailed).await, StatusCode::NOT_FOUND);
    // The idempotency key's window has long passed: the same key is a new send.
    let again = app.send_ok(keyed).await;
    assert_ne!(again["id"], first["id"]);

    // Ana reads the last one; the next day's run takes it.
    read(&app, &ana, &unread).await;
    assert_eq!(run_retention(&app).await, 0, "not before tomorrow");
    app.clock.advance_secs(DAY);
    assert!(run_retention(&app).await >= 1);
    assert_eq!(status_of(&app, &unread).await, StatusCode::NOT_FOUND);
    assert!(app.titles(&ana, "").await.is_empty());
}

#[tokio::test]
async fn the_job_is_queued_once_and_survives_a_restart() {
    let app = spawn_app_with(config(500)).await;
    assert_eq!(run_retention(&app).await, 5, "one claim per phase");
    // A restart (and so a second start of the same database) adds no
    // second job: the next run is still tomorrow.
    let app = app.restart().await;
    assert_eq!(run_retention(&app).await, 0);
    let other = app.another_node().await;
    assert_eq!(other.run_due_jobs().await, 0);
    app.clock.advance_secs(DAY);
    assert_eq!(run_retention(&app).await, 5);
    assert_eq!(other.run_due_jobs().await, 0, "one job, run once");
}

#[tokio::test]
async fn a_server_without_retention_keeps_everything() {
    let app = spawn_app_with(belfry_server::Config {
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let id = app.notify("ana", "old").await;
    read(&app, &t, &id).await;
    app.clock.advance_secs(400 * DAY);
    assert_eq!(app.run_due_jobs().await, 0, "no retention job");
    assert_eq!(status_of(&app, &id).await, StatusCode::OK);
}

#[tokio::test]
async fn the_metrics_count_runs_and_deleted_rows() {
    let app = spawn_app_with(config(500)).await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let id = app.notify("ana", "old").await;
    read(&app, &t, &id).await;
    app.clock.advance_secs(91 * DAY);
    assert!(run_retention(&app).await >= 1);
    let text = app.text("/metrics").await;
    assert!(text.contains("belfry_retention_runs_total"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("belfry_retention_deleted_total{what=\"inbox\"}")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("belfry_retention_deleted_total{what=\"notifications\"}")),
        "{text}"
    );
}
