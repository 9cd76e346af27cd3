//! Keys, scopes and user tokens.

use crate::helpers::*;
use belfry_store::Scope;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v1/notifications"))
        .json(&json!({"to": {"users": ["u"]}, "title": "x"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            "bfy_sk_not-a-real-key-at-all-000000000000000",
            Some(json!({})),
        )
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let r = app
        .call(
            Method::GET,
            "/v1/me/counts",
            "eyJhbGciOiJIUzI1NiJ9.e30.bad",
            None,
        )
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let r = app
        .client
        .get(app.url("/v1/groups"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn send_key_cannot_use_admin_endpoints_but_can_send() {
    let app = spawn_app().await;
    app.users(&["u-1"]).await;
    let key = app.key_with_scope(Scope::Send).await;

    for (method, path) in [
        (Method::PUT, "/v1/users/u-2"),
        (Method::GET, "/v1/users/u-1"),
        (Method::GET, "/v1/groups"),
        (Method::POST, "/v1/users/u-1/tokens"),
        (Method::GET, "/v1/users/u-1/notifications"),
    ] {
        let r = app.call(method.clone(), path, &key, Some(json!({}))).await;
        assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    }

    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            &key,
            Some(json!({"to": {"users": ["u-1"]}, "title": "hi"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A send key reads what it sent, not what others sent.
    let r = app
        .call(Method::GET, &format!("/v1/notifications/{id}"), &key, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let other = app.notify("u-1", "sent by admin").await;
    let r = app
        .call(
            Method::GET,
            &format!("/v1/notifications/{other}"),
            &key,
            None,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/notifications/{other}"),
            &key,
            None,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn user_token_reaches_only_its_own_inbox() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let bos = app.notify("bo", "for bo").await;
    app.notify("ana", "for ana").await;
    let ana = app.token("ana").await;

    assert_eq!(app.titles(&ana, "").await, ["for ana"]);
    // Bo's notification does not exist as far as Ana can tell.
    for path in ["read", "unread", "archive", "unarchive"] {
        let r = app
            .me(
                Method::POST,
                &format!("/notifications/{bos}/{path}"),
                &ana,
                None,
            )
            .await;
        let p = assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(
            p["detail"],
            format!("no notification {bos} in this inbox"),
            "no hint about the owner"
        );
    }
    let r = app
        .me(Method::DELETE, &format!("/notifications/{bos}"), &ana, None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    // Bo's item is untouched.
    let bo = app.token("bo").await;
    assert_eq!(app.counts(&bo).await, (1, 1));

    // A user token cannot reach secret-key endpoints or another user's mirror.
    let r = app
        .call(Method::GET, "/v1/users/bo/notifications", &ana, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            &ana,
            Some(json!({"to": {"users": ["bo"]}, "title": "x"})),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // And a secret key is told to use the mirror instead of /v1/me.
    let r = app.admin(Method::GET, "/v1/me/counts", None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn user_tokens_expire() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let r = app
        .admin(
            Method::POST,
            "/v1/users/ana/tokens",
            Some(json!({"ttl_seconds": 60})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.counts(&token).await, (0, 0));
    app.clock.advance_secs(61);
    let r = app.me(Method::GET, "/counts", &token, None).await;
    let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("expired"));

    // Bad lifetimes and unknown users are refused.
    let r = app
        .admin(
            Method::POST,
            "/v1/users/ana/tokens",
            Some(json!({"ttl_seconds": 0})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .admin(Method::POST, "/v1/users/nobody/tokens", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn deleting_a_user_revokes_their_tokens_even_if_the_id_comes_back() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let r = app.admin(Method::DELETE, "/v1/users/ana", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.me(Method::GET, "/counts", &token, None).await;
    let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    // A new user with the same id (in the same millisecond, too) does not
    // take the old user's tokens.
    app.users(&["ana"]).await;
    let r = app.me(Method::GET, "/counts", &token, None).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let fresh = app.token("ana").await;
    assert_eq!(app.counts(&fresh).await, (0, 0));
    // Also after a restart (the node reads the revocations back).
    let app = app.restart().await;
    let r = app.me(Method::GET, "/counts", &token, None).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.counts(&fresh).await, (0, 0));
}

#[tokio::test]
async fn revoking_ends_every_token_issued_so_far_and_no_later_one() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    // The test clock stands still: everything below happens in one
    // millisecond, the hardest case for the rule.
    let before = app.token("ana").await;
    let bo = app.token("bo").await;
    assert_eq!(app.counts(&before).await, (0, 0));

    let r = app
        .admin(Method::DELETE, "/v1/users/ana/tokens", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for path in ["/counts", "/notifications"] {
        let r = app.me(Method::GET, path, &before, None).await;
        let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    }
    // A token issued after the revocation, in the same millisecond, works.
    let after = app.token("ana").await;
    assert_eq!(app.counts(&after).await, (0, 0));
    // Other users' tokens are untouched.
    assert_eq!(app.counts(&bo).await, (0, 0));
    // Revoking again (same millisecond) refuses the token issued in between.
    let r = app
        .admin(Method::DELETE, "/v1/users/ana/tokens", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.me(Method::GET, "/counts", &after, None).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // A later token works, also after a restart, and the revoked ones stay
    // revoked.
    app.clock.advance_secs(1);
    let later = app.token("ana").await;
    let app = app.restart().await;
    assert_eq!(app.counts(&later).await, (0, 0));
    for t in [&before, &after] {
        let r = app.me(Method::GET, "/counts", t, None).await;
        assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    // Who may revoke: an admin key, for a user that exists.
    let r = app
        .admin(Method::DELETE, "/v1/users/nobody/tokens", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let send_key = app.key_with_scope(Scope::Send).await;
    let r = app
        .call(Method::DELETE, "/v1/users/ana/tokens", &send_key, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .call(Method::DELETE, "/v1/users/ana/tokens", &later, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn another_node_learns_of_a_revocation_when_it_starts() {
    // Nodes hear of revocations as events (over NATS in a cluster: see the
    // cluster tests); a node started later reads them from the database.
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let r = app
        .admin(Method::DELETE, "/v1/users/ana/tokens", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let other = app.another_node().await;
    let r = other.me(Method::GET, "/counts", &token, None).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The other node issues tokens after the revocation, too.
    let fresh = other.token("ana").await;
    assert_eq!(app.counts(&fresh).await, (0, 0));
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let app = spawn_app().await;
    // The CLI's way: another connection to the same database.
    let store = app.db.open().await;
    let (secret, record) = belfry_server::auth::generate_key("temp", vec![Scope::Send]);
    let id = record.id.clone();
    use belfry_core::Clock;
    store.create_api_key(record, app.clock.now()).await.unwrap();
    let r = app
        .call(Method::GET, "/v1/notifications/x", &secret, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the key works");
    store.revoke_api_key(&id, app.clock.now()).await.unwrap();
    // This node caches keys for a few seconds; a fresh server sees the revocation at once.
    let app = app.restart().await;
    let r = app
        .call(Method::GET, "/v1/notifications/x", &secret, None)
        .await;
    let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"));
}
