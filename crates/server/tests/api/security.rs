//! Credentials in URLs, strict query strings and the CORS allow-list.

use crate::helpers::*;
use belfry_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_secret_key_in_a_query_string_is_refused_on_every_route() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let key = app.admin_key.clone();
    for (method, path) in [
        (Method::GET, format!("/v1/groups?token={key}")),
        (Method::GET, format!("/v1/me/stream?token={key}")),
        (Method::GET, format!("/v1/me/ws?token={key}")),
        (
            Method::GET,
            format!("/v1/users/ana/notifications?token={key}"),
        ),
        (Method::POST, format!("/v1/notifications?api_key={key}")),
        (Method::GET, format!("/healthz?token={key}")),
        (Method::GET, format!("/widget/belfry.js?token={key}")),
        (Method::GET, format!("/no/such/route?token={key}")),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("belong in the Authorization header"),
            "{method} {path}: {p}"
        );
    }
    // Even next to a valid header: the key in the URL is what is wrong.
    let r = app
        .client
        .get(app.url(&format!("/v1/groups?token={key}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn user_tokens_come_as_query_parameters_only_on_the_stream_endpoints() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;

    // The two stream endpoints take ?token= (EventSource cannot set headers).
    let r = app
        .client
        .get(app.url(&format!("/v1/me/stream?token={token}&after=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    drop(r);
    let mut ws = app.ws(&token, None).await;
    ws.next_of("counts").await;

    // Everywhere else credentials go in the Authorization header.
    for path in ["/v1/me/counts", "/v1/me/notifications"] {
        let r = app
            .client
            .get(app.url(&format!("{path}?token={token}")))
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(
            p["detail"].as_str().unwrap().contains("/v1/me/stream"),
            "{p}"
        );
    }
    let r = app.me(Method::GET, "/counts", &token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_with_their_name() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let key = app.admin_key.clone();

    let cases: Vec<(Method, String, &str, &str)> = vec![
        (
            Method::GET,
            "/v1/me/notifications?filtre=unread".into(),
            token.as_str(),
            "filtre",
        ),
        (
            Method::GET,
            "/v1/me/notifications?filter=unread&limt=5".into(),
            &token,
            "limt",
        ),
        (
            Method::GET,
            "/v1/users/ana/notifications?filtre=unread".into(),
            &key,
            "filtre",
        ),
        (Method::GET, "/v1/me/counts?fresh=1".into(), &token, "fresh"),
        (
            Method::POST,
            "/v1/me/notifications/seen-all?x".into(),
            &token,
            "x",
        ),
        (Method::GET, "/v1/me/stream?afer=3".into(), &token, "afer"),
        (
            Method::POST,
            "/v1/notifications?dry_run=true".into(),
            &key,
            "dry_run",
        ),
        (Method::GET, "/v1/groups?limit=5".into(), &key, "limit"),
        (
            Method::GET,
            "/v1/users/ana?expand=groups".into(),
            &key,
            "expand",
        ),
        (
            Method::GET,
            "/v1/openapi.json?format=yaml".into(),
            &key,
            "format",
        ),
        (Method::GET, "/healthz?verbose=1".into(), &key, "verbose"),
    ];
    for (method, path, bearer, name) in cases {
        let r = app
            .call(method.clone(), &path, bearer, Some(json!({})))
            .await;
        let p = assert_problem(r, StatusCode::BAD_REQUEST, "unknown_parameter").await;
        assert!(
            p["detail"].as_str().unwrap().contains(&format!("'{name}'")),
            "{method} {path}: {p}"
        );
    }

    // What an endpoint does take still works; static files take anything.
    assert!(app.inbox(&token, "?filter=unread&limit=5&category=").await["items"].is_array());
    let r = app
        .client
        .get(app.url("/widget/belfry.js?v=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // An unknown method is still 405, not a query problem.
    let r = app
        .call(
            Method::PATCH,
            "/v1/me/notifications?filter=all",
            &token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

const ALLOWED: &str = "https://desk.example.com";

async fn cors_app() -> TestApp {
    spawn_app_with(Config {
        cors_origins: vec![ALLOWED.into(), "https://other.example.com".into()],
        ..Config::default()
    })
    .await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn cors_allows_a_listed_origin_preflight_and_request() {
    let app = cors_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;

    let r = app
        .client
        .request(Method::OPTIONS, app.url("/v1/me/notifications/read-all"))
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "preflight: {}", r.status());
    assert_eq!(header(&r, "access-control-allow-origin"), Some(ALLOWED));
    let methods = header(&r, "access-control-allow-methods")
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&r, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("3600"));
    // No cookies are involved: credentials are never allowed ambiently.
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    let r = app
        .client
        .get(app.url("/v1/me/counts"))
        .header("origin", ALLOWED)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(ALLOWED));
    assert!(
        header(&r, "vary")
            .unwrap()
            .to_ascii_lowercase()
            .contains("origin")
    );
}

#[tokio::test]
async fn cors_refuses_an_origin_not_on_the_list() {
    let app = cors_app().await;
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let evil = "https://evil.example.net";

    let r = app
        .client
        .request(Method::OPTIONS, app.url("/v1/me/counts"))
        .header("origin", evil)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    let r = app
        .client
        .get(app.url("/v1/me/counts"))
        .header("origin", evil)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // The browser withholds the response from the page: no allow-origin.
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // Without a list, any origin may call (bearer tokens, no cookies).
    let open = spawn_app().await;
    let r = open
        .client
        .get(open.url("/healthz"))
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn a_body_must_be_an_object_not_an_array() {
    // serde would fill a struct from an array's elements in field order.
    let app = spawn_app().await;
    let r = app
        .admin(Method::PUT, "/v1/users/ana", Some(json!([null, null])))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app.admin(Method::GET, "/v1/users/ana", None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_description_declares_security_and_problem_responses() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["secret_key"]["scheme"], "bearer");
    assert_eq!(schemes["user_token"]["scheme"], "bearer");
    let send = &doc["paths"]["/v1/notifications"]["post"];
    assert_eq!(send["security"][0]["secret_key"], json!([]));
    for status in ["400", "401", "403", "413", "415", "422"] {
        let content = &send["responses"][status]["content"];
        assert!(
            content["application/problem+json"].is_object(),
            "{status}: {content}"
        );
    }
    let list = &doc["paths"]["/v1/me/notifications"]["get"]["parameters"];
    let filter = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "filter")
        .unwrap();
    assert_eq!(
        filter["schema"]["enum"],
        json!(["unread", "all", "archived"])
    );
}
