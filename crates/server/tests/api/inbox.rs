//! One user's inbox: state changes, counts, filters, pagination, expiry.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn read_unread_archive_unarchive_delete() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let first = app.notify("ana", "first").await;
    let second = app.notify("ana", "second").await;
    assert_eq!(app.counts(&t).await, (2, 2));

    app.me_post(
        &t,
        &format!("/notifications/{first}/read"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.counts(&t).await, (1, 1), "a read item is also seen");
    let page = app.inbox(&t, "").await;
    assert_eq!(page["items"][1]["read"], true);
    assert_eq!(page["items"][1]["seen"], true);
    assert_eq!(app.titles(&t, "?filter=unread").await, ["second"]);

    app.me_post(
        &t,
        &format!("/notifications/{first}/unread"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.counts(&t).await.0, 2);

    app.me_post(
        &t,
        &format!("/notifications/{second}/archive"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.counts(&t).await.0, 1, "archived items do not count");
    assert_eq!(app.titles(&t, "").await, ["first"]);
    assert_eq!(app.titles(&t, "?filter=archived").await, ["second"]);
    assert_eq!(
        app.inbox(&t, "?filter=archived").await["items"][0]["archived"],
        true
    );

    app.me_post(
        &t,
        &format!("/notifications/{second}/unarchive"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.titles(&t, "").await, ["second", "first"]);

    let r = app
        .me(
            Method::DELETE,
            &format!("/notifications/{second}"),
            &t,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.titles(&t, "").await, ["first"]);
    let r = app
        .me(
            Method::DELETE,
            &format!("/notifications/{second}"),
            &t,
            None,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .me(Method::POST, "/notifications/no-such-id/read", &t, None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn read_all_seen_all_archive_many_and_read_by_entity() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    for (title, category, ticket) in [
        ("a", "mention", "1"),
        ("b", "assignment", "2"),
        ("c", "mention", "2"),
        ("d", "assignment", "3"),
    ] {
        app.send_ok(
            json!({"to": {"users": ["ana"]}, "title": title, "category": category,
                            "entity": {"type": "ticket", "id": ticket}}),
        )
        .await;
    }
    assert_eq!(app.counts(&t).await, (4, 4));

    app.me_post(&t, "/notifications/seen-all", None, StatusCode::NO_CONTENT)
        .await;
    assert_eq!(app.counts(&t).await, (4, 0), "seen, not read");
    app.notify("ana", "e").await;
    assert_eq!(app.counts(&t).await, (5, 1), "a new one is unseen again");

    let v = app
        .me_post(&t, "/entities/ticket/2/read", None, StatusCode::OK)
        .await;
    assert_eq!(v["updated"], 2);
    assert_eq!(app.titles(&t, "?filter=unread").await, ["e", "d", "a"]);

    let v = app
        .me_post(
            &t,
            "/notifications/read-all",
            Some(json!({"category": "assignment"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["updated"], 1);
    assert_eq!(app.titles(&t, "?filter=unread").await, ["e", "a"]);
    assert_eq!(app.titles(&t, "?category=mention").await, ["c", "a"]);

    let v = app
        .me_post(&t, "/notifications/read-all", None, StatusCode::OK)
        .await;
    assert_eq!(v["updated"], 2);
    assert_eq!(app.counts(&t).await, (0, 0));

    let page = app.inbox(&t, "").await;
    let all = ids(&page);
    let v = app
        .me_post(
            &t,
            "/notifications/archive",
            Some(json!({"ids": [all[0], all[1], "unknown-id"]})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["archived"], 2, "unknown ids are ignored");
    assert_eq!(app.titles(&t, "").await.len(), 3);

    let r = app
        .me(
            Method::POST,
            "/notifications/archive",
            &t,
            Some(json!({"ids": []})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .me(Method::POST, "/entities/Ticket!/1/read", &t, None)
        .await;
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_path").await;
    let r = app
        .me(
            Method::POST,
            "/notifications/read-all",
            &t,
            Some(json!({"category": "Not A Category"})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
}

#[tokio::test]
async fn pagination_neither_skips_nor_repeats_under_concurrent_inserts() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let batch: Vec<Value> = (0..45)
        .map(|i| json!({"to": {"users": ["ana"]}, "title": format!("n{i}")}))
        .collect();
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": batch})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let existing: Vec<String> = {
        let v: Value = r.json().await.unwrap();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };

    // A producer keeps sending while the user pages through.
    let sender = {
        let client = app.client.clone();
        let url = app.url("/v1/notifications");
        let key = app.admin_key.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"to": {"users": ["ana"]}, "title": format!("live{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
            }
        })
    };

    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=7&cursor={c}"),
            None => "?limit=7".to_string(),
        };
        let page = app.inbox(&t, &query).await;
        walked.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    sender.await.unwrap();
    let unique: HashSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "no item repeated");
    // Every item that existed before paging began is there, in order.
    let old: Vec<&String> = walked.iter().filter(|id| existing.contains(id)).collect();
    assert_eq!(old, existing.iter().collect::<Vec<_>>());
    assert!(pages >= 7);

    // Bad query parameters are explained.
    for q in [
        "?filter=new",
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?cursor=garbage",
        "?category=No",
    ] {
        let r = app
            .me(Method::GET, &format!("/notifications{q}"), &t, None)
            .await;
        assert_problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
}

#[tokio::test]
async fn expired_notifications_leave_every_inbox_and_count() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let in_an_hour = belfry_core::Millis(belfry_core::Clock::now(app.clock.as_ref()).0 + 3_600_000);
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "flash sale", "expires_at": in_an_hour.to_rfc3339()}))
        .await;
    app.notify("ana", "stays").await;
    assert_eq!(app.counts(&t).await, (2, 2));
    app.clock.advance_secs(3599);
    assert_eq!(app.titles(&t, "").await, ["stays", "flash sale"]);
    app.clock.advance_secs(2);
    assert_eq!(app.titles(&t, "").await, ["stays"]);
    assert_eq!(app.counts(&t).await, (1, 1));
}

#[tokio::test]
async fn admin_mirror_reads_and_changes_a_users_inbox() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let id = app.notify("ana", "hello").await;
    let r = app.admin(Method::GET, "/v1/users/ana/counts", None).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"unread": 1, "unseen": 1, "seq": 1})
    );
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/users/ana/notifications/{id}/read"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let page: Value = app
        .admin(Method::GET, "/v1/users/ana/notifications", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["read"], true);
    let r = app
        .admin(Method::POST, "/v1/users/ana/notifications/read-all", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .admin(Method::GET, "/v1/users/nobody/counts", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}
