//! The embedded widget (`/widget/belfry.js`) and demo mode: its page, its
//! token endpoint and its sample notifications, which exist only with `demo`.

use crate::helpers::*;
use belfry_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn demo_app() -> TestApp {
    spawn_app_with(Config {
        demo: true,
        ..Config::default()
    })
    .await
}

#[tokio::test]
async fn the_widget_module_is_served_with_caching_and_cors() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/widget/belfry.js"))
        .header("origin", "https://desk.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(h["x-content-type-options"], "nosniff");
    // A module script from another origin is fetched with CORS.
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(
        body.contains("customElements.define('belfry-inbox'"),
        "the module"
    );
    assert!(
        !body.contains("innerHTML"),
        "the widget never parses markup"
    );

    let r = app
        .client
        .get(app.url("/widget/belfry.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_preferences_panel_module_is_served_like_the_widget() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/widget/preferences.js"))
        .header("origin", "https://desk.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap().to_string();
    let widget_etag = app
        .client
        .get(app.url("/widget/belfry.js"))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(etag, widget_etag, "its own validator");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("export async function openPreferences("),
        "the panel module"
    );
    assert!(!body.contains("innerHTML"), "the panel never parses markup");
    // The first module loads it relative to its own URL.
    let widget = app.text("/widget/belfry.js").await;
    assert!(widget.contains("new URL('preferences.js', import.meta.url)"));

    let r = app
        .client
        .get(app.url("/widget/preferences.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());
}

#[tokio::test]
async fn the_push_module_and_the_service_worker_are_served_for_any_origin() {
    let app = spawn_app().await;
    let get = |path: &'static str| {
        app.client
            .get(app.url(path))
            .header("origin", "https://desk.example.com")
            .send()
    };
    let r = get("/widget/push.js").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("export async function enable("),
        "the push module"
    );
    assert!(body.contains("/v1/me/push-subscriptions"));

    let r = get("/widget/sw.js").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        h["service-worker-allowed"], "/",
        "may control the whole origin"
    );
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("export ") && !body.contains("import "),
        "a classic script, for importScripts from the host's origin"
    );
    assert!(body.contains("addEventListener('push'"));
    assert!(body.contains("addEventListener('notificationclick'"));
    // The first module loads the push module relative to its own URL.
    let widget = app.text("/widget/belfry.js").await;
    assert!(widget.contains("new URL('push.js', import.meta.url)"));
}

#[tokio::test]
async fn the_actions_module_is_served_and_loaded_on_demand() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/widget/actions.js"))
        .header("origin", "https://desk.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().contains_key("etag"));
    let body = r.text().await.unwrap();
    assert!(
        body.contains("export function answer("),
        "the actions module"
    );
    assert!(body.contains("/actions/"));
    let widget = app.text("/widget/belfry.js").await;
    assert!(widget.contains("new URL('actions.js', import.meta.url)"));
    assert!(
        body.contains("novalidate") && !widget.contains("novalidate"),
        "the form code is not in the first module"
    );
}

#[tokio::test]
async fn demo_routes_do_not_exist_without_demo_mode() {
    let app = spawn_app().await;
    for path in ["/", "/notifications", "/tickets/4211", "/demo/demo.js"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    for path in ["/demo/token", "/demo/trigger"] {
        let r = app
            .client
            .post(app.url(path))
            .json(&json!({"kind": "mention"}))
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
    let r = app.admin(Method::GET, "/v1/users/dana", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no demo users either");
}

#[tokio::test]
async fn the_demo_page_is_served_under_a_strict_csp() {
    let app = demo_app().await;
    for path in ["/", "/notifications", "/tickets/4211"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let html = r.text().await.unwrap();
        assert!(html.contains(r#"src="/widget/belfry.js""#));
        assert!(!html.contains("bfy_sk_"), "no secret key in the page");
    }
    for (path, kind) in [
        ("/demo/demo.js", "text/javascript; charset=utf-8"),
        ("/demo/demo.css", "text/css; charset=utf-8"),
        ("/demo/tickets.json", "application/json"),
        ("/demo/favicon.svg", "image/svg+xml"),
        ("/demo/avatar-sam.svg", "image/svg+xml"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
    }
}

/// The demo token, obtained without any key.
async fn demo_token(app: &TestApp) -> String {
    let r = app
        .client
        .post(app.url("/demo/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user"], json!({"id": "dana", "name": "Dana Reyes"}));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_demo_token_reads_the_demo_users_inbox_only() {
    let app = demo_app().await;
    let token = demo_token(&app).await;
    assert_eq!(app.counts(&token).await, (0, 0));
    app.notify("dana", "for the demo user").await;
    assert_eq!(app.titles(&token, "").await, ["for the demo user"]);
    // It is a user token: nothing beyond /v1/me.
    let r = app.call(Method::GET, "/v1/users/dana", &token, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The demo users and groups exist.
    let groups: Value = app
        .admin(Method::GET, "/v1/groups", None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = groups
        .as_array()
        .or_else(|| groups["items"].as_array())
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    for g in ["support", "leads", "berlin"] {
        assert!(ids.contains(&g), "group {g} in {ids:?}");
    }
    let r = app.admin(Method::GET, "/v1/users/sam", None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn demo_setup_is_idempotent_across_restarts() {
    let app = demo_app().await;
    let token = demo_token(&app).await;
    app.notify("dana", "kept").await;
    let app = app.restart().await;
    assert_eq!(app.titles(&token, "").await, ["kept"]);
    let user: Value = app
        .admin(Method::GET, "/v1/users/dana", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["groups"], json!(["berlin", "support"]));
}

async fn trigger(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/demo/trigger"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_trigger_sends_its_sample() {
    let app = demo_app().await;
    let token = demo_token(&app).await;
    let mut stream = app.sse(&token, None).await;
    for kind in [
        "assignment",
        "mention",
        "customer_reply",
        "broadcast",
        "reminder",
    ] {
        let r = trigger(&app, json!({"kind": kind})).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{kind}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["kind"], kind);
        assert_eq!(v["ids"].as_array().unwrap().len(), 1, "{kind}");
        let e = stream.notification().await;
        assert_eq!(e.data["id"], v["ids"][0], "{kind} arrives live");
    }
    let items = app.inbox(&token, "").await["items"]
        .as_array()
        .unwrap()
        .clone();
    let by_category = |c: &str| {
        items
            .iter()
            .find(|i| i["category"] == c)
            .unwrap_or_else(|| panic!("a {c} item"))
            .clone()
    };
    let assignment = by_category("assignment");
    assert_eq!(assignment["actor"]["name"], "Sam Ortiz");
    assert_eq!(assignment["entity"]["type"], "ticket");
    assert_eq!(assignment["actions"][0]["kind"], "link");
    assert_eq!(by_category("mention")["actor"]["id"], "lee");
    assert!(by_category("customer_reply")["actor"]["id"].is_null());
    assert!(by_category("announcement")["actor"].is_null());
    assert_eq!(by_category("reminder")["sticky"], true);

    // Stacked replies: three sends, one entry with a count.
    let r = trigger(&app, json!({"kind": "stacked_replies"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 3);
    let items = app.inbox(&token, "").await["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0]["stack_count"], 3);
    assert_eq!(app.counts(&token).await.0, 6);

    // The broadcast went to the support group, not only to Dana.
    let sam = app.token("sam").await;
    assert_eq!(app.titles(&sam, "").await.len(), 1);
}

#[tokio::test]
async fn trigger_input_is_validated() {
    let app = demo_app().await;
    let r = trigger(&app, json!({"kind": "spam"})).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("use one of assignment"),
        "{p}"
    );
    assert_eq!(p["errors"][0]["field"], "kind");
    let r = trigger(&app, json!({})).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(p["detail"].as_str().unwrap().contains("is required"), "{p}");
    let r = trigger(&app, json!({"kind": "mention", "to": "everyone"})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = trigger(&app, json!({"kind": 5})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .client
        .post(app.url("/demo/trigger"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_json").await;
    let r = app
        .client
        .post(app.url("/demo/trigger"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_json").await;
    let r = app
        .client
        .post(app.url("/demo/token"))
        .json(&json!({"user": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .client
        .get(app.url("/demo/trigger"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert_eq!(app.counts(&demo_token(&app).await).await, (0, 0));
}
