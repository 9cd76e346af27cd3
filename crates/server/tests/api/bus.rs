//! The NATS bus against the real NATS server of this machine
//! (BELFRY_TEST_NATS_URL, e.g. nats://127.0.0.1:4222).

use belfry_core::UserId;
use belfry_server::realtime::{Bus, NatsBus};
use belfry_store::{StateChange, StoreEvent};
use std::sync::Arc;
use std::time::Duration;

fn nats_url() -> Option<String> {
    let url = std::env::var("BELFRY_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI requires NATS: BELFRY_TEST_NATS_URL is not set");
    }
    if url.is_none() {
        eprintln!(
            "skipping the NATS bus test: set BELFRY_TEST_NATS_URL=nats://127.0.0.1:4222 to run it"
        );
    }
    url
}

fn event(n: usize) -> StoreEvent {
    StoreEvent::State {
        user: UserId::parse(&format!("u-{n}")).unwrap(),
        change: StateChange::SeenAll,
    }
}

#[tokio::test]
async fn every_node_receives_every_batch_in_publish_order() {
    let Some(url) = nats_url() else { return };
    let subject = format!("belfry.test.{}", ulid_like());
    let a = NatsBus::connect(&url, &subject).await.unwrap();
    let b = NatsBus::connect(&url, &subject).await.unwrap();
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    for n in 0..200 {
        a.publish(Arc::new(vec![event(n)]));
    }
    // A lost marker from a node reaches everybody as an empty batch.
    b.lagged();
    for rx in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        let mut lost = false;
        let mut markers = 0;
        while got.len() < 200 || !lost {
            // Generous: CI runs this beside schemathesis and the PostgreSQL
            // suites on two cores.
            let batch = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no batch for 30 s: {} of 200 events so far (last {:?}), {markers} lost markers",
                        got.len(),
                        got.last()
                    )
                })
                .unwrap();
            if batch.is_empty() {
                markers += 1;
                lost = true;
                continue;
            }
            if let StoreEvent::State { user, .. } = &batch[0] {
                got.push(user.to_string());
            }
        }
        let expected: Vec<String> = (0..200).map(|n| format!("u-{n}")).collect();
        assert_eq!(got, expected, "all, once, in order");
    }
}

/// After a connection is lost and made again, the node's streams resume from
/// the store when the lost mark arrives; whatever other nodes publish from
/// then on must reach it, or it falls between the two.
#[tokio::test]
async fn after_a_reconnection_the_lost_mark_comes_once_events_reach_the_node_again() {
    let Some(url) = nats_url() else { return };
    let subject = format!("belfry.test.{}", ulid_like());
    let a = NatsBus::connect(&url, &subject).await.unwrap();
    let b = NatsBus::connect(&url, &subject).await.unwrap();
    let mut on_b = b.subscribe();
    for round in 0..3 {
        b.reconnect().await.unwrap();
        let mark = tokio::time::timeout(Duration::from_secs(30), on_b.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no lost mark within 30 s of reconnecting"))
            .unwrap();
        assert!(
            mark.is_empty(),
            "round {round}: the first batch after a reconnection is the lost mark, got {mark:?}"
        );
        for n in 0..50 {
            a.publish(Arc::new(vec![event(n)]));
        }
        for n in 0..50 {
            let batch = tokio::time::timeout(Duration::from_secs(30), on_b.recv())
                .await
                .unwrap_or_else(|_| panic!("round {round}: event {n} of 50 did not arrive"))
                .unwrap();
            let expected = format!("u-{n}");
            match batch.first() {
                Some(StoreEvent::State { user, .. }) => {
                    assert_eq!(user.as_str(), expected, "round {round}")
                }
                other => panic!("round {round}: expected {expected}, got {other:?}"),
            }
        }
    }
}

fn ulid_like() -> String {
    format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
