//! Streams that derive their counts (`counts=derived`): a new entry is one
//! frame (the notification, no counts frame behind it), counts frames say
//! the seq they are as of, and a client that does the arithmetic stays
//! equal to the server's counts through every kind of change.

use crate::helpers::*;
use belfry_core::{Clock, UserId};
use belfry_server::realtime::{Hub, HubConfig};
use belfry_store::{StateChange, StoreEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a client that derives its counts keeps (the widget does the same):
/// the last counts with the seq they are as of, and the seqs of the new
/// entries it received. Its counts are the last ones plus the new entries
/// above their seq.
#[derive(Debug, Default)]
struct Derived {
    unread: i64,
    unseen: i64,
    seq: i64,
    fresh: BTreeSet<i64>,
    /// The newest notification received (the cursor to resume with).
    last: i64,
    notifications: usize,
}

impl Derived {
    fn apply(&mut self, m: &Value) {
        match m["type"].as_str() {
            Some("counts") => {
                self.unread = m["data"]["unread"].as_i64().unwrap();
                self.unseen = m["data"]["unseen"].as_i64().unwrap();
                self.seq = m["data"]["seq"]
                    .as_i64()
                    .expect("counts say the seq they are as of");
            }
            Some("notification") => {
                self.notifications += 1;
                self.last = self.last.max(m["seq"].as_i64().unwrap());
                let d = &m["data"];
                if d["stack_count"] == 1 && d["read"] == false {
                    self.fresh.insert(m["seq"].as_i64().unwrap());
                }
            }
            _ => {}
        }
    }

    fn counts(&self) -> (i64, i64) {
        let above = self.fresh.range(self.seq + 1..).count() as i64;
        (self.unread + above, self.unseen + above)
    }
}

/// Reads frames until the client's counts equal the server's (each frame
/// may be one of several in flight); panics after 5 s without.
async fn settle(app: &TestApp, ws: &mut WsClient, client: &mut Derived, token: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let server = app.counts(token).await;
        if client.counts() == server {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {what}: the client derived {:?}, the server counts {server:?} ({client:?})",
            client.counts()
        );
        if let Some(m) = ws.next_within(Duration::from_millis(100)).await {
            client.apply(&m);
        }
    }
}

#[tokio::test]
async fn a_new_entry_is_one_frame_on_a_derived_stream_and_counts_say_their_seq() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    let token = app.token("ana").await;
    let mut each = app.ws(&token, None).await;
    let mut derived = app.ws_with(&token, None, "&counts=derived").await;
    for ws in [&mut each, &mut derived] {
        assert_eq!(
            ws.next_of("counts").await["data"],
            json!({"unread": 0, "unseen": 0, "seq": 0})
        );
    }

    let mut seqs = Vec::new();
    for body in [
        json!({"to": {"groups": ["support"]}, "title": "to support"}),
        json!({"to": {"all": true}, "title": "to everyone"}),
        json!({"to": {"users": ["ana"]}, "title": "direct"}),
        json!({"to": {"users": ["ana"]}, "title": "stacked", "stack_key": "k"}),
    ] {
        seqs.push(app.send_ok(body).await["seq"].as_i64().unwrap());
    }
    // A stack that grew: counted again, so counts follow on both streams.
    let grew = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "stacked again", "stack_key": "k"}))
        .await["seq"]
        .as_i64()
        .unwrap();

    // The stream that sends counts after each change: notification, counts.
    for (n, &seq) in seqs.iter().enumerate() {
        let m = each.next().await.unwrap();
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_i64()),
            (Some("notification"), Some(seq))
        );
        let unread = n as i64 + 1;
        assert_eq!(
            each.next().await.unwrap()["data"],
            json!({"unread": unread, "unseen": unread, "seq": seq})
        );
    }
    // The derived stream: the four new entries, one frame each, then the
    // grown stack and its recount.
    for &seq in &seqs {
        let m = derived.next().await.unwrap();
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_i64()),
            (Some("notification"), Some(seq))
        );
        assert_eq!(m["data"]["stack_count"], 1);
    }
    let m = derived.next().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["data"]["stack_count"].as_i64()),
        (Some("notification"), Some(2))
    );
    assert_eq!(
        derived.next().await.unwrap()["data"],
        json!({"unread": 4, "unseen": 4, "seq": grew})
    );

    // A state change is counted again too, on both.
    app.seen_all(&token).await;
    for ws in [&mut each, &mut derived] {
        assert_eq!(ws.next_of("state").await["data"]["action"], "seen_all");
        ws.counts_settle(json!({"unread": 4, "unseen": 0, "seq": grew}))
            .await;
    }
    // The REST counts say their seq as well.
    let r = app.me(Method::GET, "/counts", &token, None).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"unread": 4, "unseen": 0, "seq": grew})
    );
}

#[tokio::test]
async fn a_counts_mode_that_does_not_exist_is_refused() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let r = app
        .client
        .get(app.url("/v1/me/stream?counts=sometimes"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("each") && detail.contains("derived"),
        "the message names the modes: {detail}"
    );
}

/// A small deterministic generator (the sequence is the same every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn derived_counts_stay_equal_to_the_servers_through_every_change() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    app.users(&["bo"]).await;
    let token = app.token("ana").await;
    let mut ws = app.ws_with(&token, None, "&counts=derived").await;
    let mut client = Derived::default();
    let mut ids: Vec<String> = Vec::new();
    let mut rng = Lcg(18);
    for step in 0..120 {
        let op = rng.below(12);
        let what = match op {
            0..=2 => {
                let r = app
                    .send_ok(json!({"to": {"users": ["ana"]}, "title": format!("d{step}")}))
                    .await;
                ids.push(r["id"].as_str().unwrap().into());
                "a direct notification"
            }
            3 => {
                let key = format!("k{}", rng.below(2));
                let r = app
                    .send_ok(json!({"to": {"users": ["ana", "bo"]}, "title": format!("s{step}"), "stack_key": key}))
                    .await;
                ids.push(r["id"].as_str().unwrap().into());
                "a stacked notification"
            }
            4 | 5 => {
                let to = if op == 4 {
                    json!({"groups": ["support"]})
                } else {
                    json!({"all": true})
                };
                let r = app
                    .send_ok(json!({"to": to, "title": format!("b{step}")}))
                    .await;
                ids.push(r["id"].as_str().unwrap().into());
                "a broadcast"
            }
            6 | 7 if !ids.is_empty() => {
                let id = ids[rng.below(ids.len() as u64) as usize].clone();
                let action = ["read", "unread", "archive", "unarchive"][rng.below(4) as usize];
                let r = app
                    .me(
                        Method::POST,
                        &format!("/notifications/{id}/{action}"),
                        &token,
                        None,
                    )
                    .await;
                // An item stacked away is gone (404); the others change.
                assert!(
                    r.status() == StatusCode::NO_CONTENT || r.status() == StatusCode::NOT_FOUND,
                    "{action}: {}",
                    r.status()
                );
                "an item changed"
            }
            8 => {
                app.seen_all(&token).await;
                "the drawer opened"
            }
            9 if rng.below(3) == 0 => {
                app.me_post(&token, "/notifications/read-all", None, StatusCode::OK)
                    .await;
                "all read"
            }
            10 => {
                // Reconnect with the cursor: the replay and the live queue
                // overlap with the counts the new connection starts with.
                drop(ws);
                ws = app
                    .ws_with(&token, Some(client.last), "&counts=derived")
                    .await;
                "a reconnect"
            }
            _ => {
                // Several at once, without waiting in between.
                for n in 0..3 {
                    app.send_ok(json!({"to": {"all": true}, "title": format!("burst{step}-{n}")}))
                        .await;
                }
                "a burst of broadcasts"
            }
        };
        settle(&app, &mut ws, &mut client, &token, what).await;
        // Drain what is still in flight and check again (a transient match
        // must not hide a frame that breaks it).
        while let Some(m) = ws.next_within(Duration::from_millis(30)).await {
            client.apply(&m);
        }
        assert_eq!(
            client.counts(),
            app.counts(&token).await,
            "step {step}, after {what}"
        );
    }
    assert!(
        client.notifications > 40,
        "the sequence sent notifications: {}",
        client.notifications
    );
}

/// The next batch of committed events that publishes something.
async fn next_published(
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<StoreEvent>>>,
) -> std::sync::Arc<Vec<StoreEvent>> {
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a commit")
            .unwrap();
        if batch.iter().any(|e| matches!(e, StoreEvent::Published(_))) {
            return batch;
        }
    }
}

/// The hub's own arithmetic: counts it recounted after a notification's
/// commit, but before the notification reached it, include it already;
/// the notification must not be added a second time.
#[tokio::test]
async fn counts_recounted_after_a_commit_do_not_count_its_notification_twice() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let ana = UserId::parse("ana").unwrap();
    // A hub of our own, fed by hand: the server's hub is not involved.
    let hub = Hub::new(app.store.clone(), app.clock.clone(), HubConfig::default());
    let mut events = app.store.events();
    let mut conn = hub.connect(
        ana.clone(),
        vec![],
        CancellationToken::new(),
        app.clock.now(),
        false,
    );
    let next = |conn: &mut belfry_server::realtime::hub::Connection| {
        let frame = conn.rx.try_recv();
        frame.map(|f| String::from(f.ws().as_str()))
    };
    let recv = async |conn: &mut belfry_server::realtime::hub::Connection| {
        let f = tokio::time::timeout(Duration::from_secs(5), conn.rx.recv())
            .await
            .expect("a frame")
            .expect("open");
        serde_json::from_str::<Value>(f.ws().as_str()).unwrap()
    };
    assert_eq!(
        recv(&mut conn).await["data"],
        json!({"unread": 0, "unseen": 0, "seq": 0})
    );

    // Committed, but not yet dispatched to this hub.
    let first = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "one"}))
        .await;
    let published = next_published(&mut events).await;
    // A change makes the hub count again: the count includes "one".
    hub.dispatch(&[StoreEvent::State {
        user: ana.clone(),
        change: StateChange::SeenAll,
    }]);
    assert_eq!(recv(&mut conn).await["type"], "state");
    assert_eq!(
        recv(&mut conn).await["data"],
        json!({"unread": 1, "unseen": 1, "seq": first["seq"]})
    );
    // Now "one" arrives: its frame, and no second count of it.
    hub.dispatch(&published);
    let m = recv(&mut conn).await;
    assert_eq!(
        (m["type"].as_str(), m["seq"].as_i64()),
        (Some("notification"), first["seq"].as_i64())
    );
    assert_eq!(next(&mut conn), None, "no counts frame: nothing changed");

    // The next one counts as one more.
    let second = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "two"}))
        .await;
    let published = next_published(&mut events).await;
    hub.dispatch(&published);
    assert_eq!(recv(&mut conn).await["type"], "notification");
    assert_eq!(
        recv(&mut conn).await["data"],
        json!({"unread": 2, "unseen": 2, "seq": second["seq"]})
    );
}
