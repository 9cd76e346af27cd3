//! The administration console's API (issue 17): admin accounts, console
//! sessions (cookie, CSRF, lock-out), and the console's lists, counts and
//! settings.

use crate::helpers::*;
use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A signed-in console session: the cookie pair and the CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub admin_id: String,
}

pub async fn create_admin(app: &TestApp, email: &str) -> Value {
    let r = app
        .admin(
            Method::POST,
            "/v1/admins",
            Some(json!({"email": email, "name": "Ana Admin", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

async fn sign_in_raw(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/v1/admin/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

pub async fn sign_in(app: &TestApp, email: &str) -> Session {
    let r = sign_in_raw(app, email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    Session {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
        admin_id: body["admin"]["id"].as_str().unwrap().to_string(),
    }
}

impl Session {
    /// A request with the cookie (and the CSRF token when `csrf`).
    pub async fn call(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> Response {
        let mut req = app
            .client
            .request(method, app.url(path))
            .header(COOKIE, &self.cookie);
        if csrf {
            req = req.header("X-CSRF-Token", &self.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }
}

async fn problem(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

#[tokio::test]
async fn a_session_cookie_is_strict_and_an_admin_credential_with_csrf() {
    let app = spawn_app().await;
    let created = create_admin(&app, "Ana@Example.com").await;
    assert_eq!(created["email"], "ana@example.com");
    assert!(created["id"].as_str().unwrap().starts_with("adm_"));
    assert!(created.get("password_hash").is_none());

    let r = sign_in_raw(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.starts_with("belfry_admin="), "{set}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Secure"), "plain http: no Secure ({set})");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["admin"], created);
    assert!(body["csrf_token"].as_str().unwrap().len() >= 32);
    assert!(body["expires_at"].as_str().is_some());
    let s = Session {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
        admin_id: created["id"].as_str().unwrap().to_string(),
    };

    // The session answers itself, with the same CSRF token.
    let r = s
        .call(&app, Method::GET, "/v1/admin/session", None, false)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["csrf_token"], body["csrf_token"]);
    assert_eq!(again["admin"]["id"], created["id"]);

    // Reads need no token; any admin endpoint takes the cookie.
    let r = s.call(&app, Method::GET, "/v1/admins", None, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.call(&app, Method::GET, "/v1/groups", None, false).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A change without the token, or with a wrong one, is refused.
    let user = json!({"name": "Bo"});
    let r = s
        .call(&app, Method::PUT, "/v1/users/bo", Some(user.clone()), false)
        .await;
    problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = app
        .client
        .put(app.url("/v1/users/bo"))
        .header(COOKIE, &s.cookie)
        .header("X-CSRF-Token", "forged")
        .json(&user)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    // With the token, from another origin: refused.
    let r = app
        .client
        .put(app.url("/v1/users/bo"))
        .header(COOKIE, &s.cookie)
        .header("X-CSRF-Token", &s.csrf)
        .header(ORIGIN, "https://evil.example")
        .json(&user)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = app
        .client
        .get(app.url("/v1/users/bo"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was written");
    // With the token from its own origin: done.
    let r = app
        .client
        .put(app.url("/v1/users/bo"))
        .header(COOKIE, &s.cookie)
        .header("X-CSRF-Token", &s.csrf)
        .header(ORIGIN, app.base.clone())
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A send through the console names the admin as its sender.
    let r = s
        .call(
            &app,
            Method::POST,
            "/v1/notifications",
            Some(json!({"to": {"users": ["bo"]}, "title": "Hello from the console"})),
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let n: Value = app
        .admin(Method::GET, &format!("/v1/notifications/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(n["sender"], s.admin_id.as_str());

    // A bearer key wins over the cookie and needs no CSRF token.
    let r = app
        .client
        .put(app.url("/v1/users/cy"))
        .header(COOKIE, "belfry_admin=not-a-session")
        .bearer_auth(&app.admin_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A cookie that names no session is no credential.
    let r = app
        .client
        .get(app.url("/v1/admins"))
        .header(COOKIE, "belfry_admin=not-a-session")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Behind an https proxy the cookie is Secure.
    let r = app
        .client
        .post(app.url("/v1/admin/sessions"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"email": "ana@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test]
async fn wrong_credentials_are_one_answer_and_five_failures_lock_the_address() {
    let app = spawn_app().await;
    create_admin(&app, "ana@example.com").await;
    let wrong = problem(
        sign_in_raw(&app, "ana@example.com", "not the password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown = problem(
        sign_in_raw(&app, "nobody@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong, unknown, "the same answer for both");
    // Missing fields are a validation error, not a failure.
    let r = app
        .client
        .post(app.url("/v1/admin/sessions"))
        .json(&json!({"email": "ana@example.com"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;

    // Four more failures (five in all) lock the address, even for the
    // right password; another address is not affected.
    for _ in 0..4 {
        app.clock.advance_secs(60);
        let r = sign_in_raw(&app, "ana@example.com", "still wrong!!").await;
        problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let r = sign_in_raw(&app, "ANA@example.com", PASSWORD).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The first failure was 4 minutes ago: 11 minutes to go.
    assert_eq!(retry, 11 * 60);
    problem(r, StatusCode::TOO_MANY_REQUESTS, "locked_out").await;
    create_admin(&app, "bo@example.com").await;
    sign_in(&app, "bo@example.com").await;

    // Still locked a second before the first failure leaves the window.
    app.clock.advance_secs(11 * 60 - 1);
    let r = sign_in_raw(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, StatusCode::TOO_MANY_REQUESTS, "locked_out").await;
    app.clock.advance_secs(1);
    let s = sign_in(&app, "ana@example.com").await;
    assert!(s.admin_id.starts_with("adm_"));
}

#[tokio::test]
async fn sign_out_and_idleness_end_the_session_everywhere() {
    let app = spawn_app().await;
    create_admin(&app, "ana@example.com").await;
    let s = sign_in(&app, "ana@example.com").await;

    // Sign-out is a change: it needs the token.
    let r = s
        .call(&app, Method::DELETE, "/v1/admin/session", None, false)
        .await;
    problem(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    // Another node (same database) knows the session.
    let other = app.another_node().await;
    let r = s
        .call(&other, Method::GET, "/v1/admin/session", None, false)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .call(&app, Method::DELETE, "/v1/admin/session", None, true)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let set = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        set.starts_with("belfry_admin=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    for node in [&app, &other] {
        let r = s
            .call(node, Method::GET, "/v1/admin/session", None, false)
            .await;
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let r = s.call(node, Method::GET, "/v1/admins", None, false).await;
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    // Idle for the idle time: ended; used within it: goes on.
    let s = sign_in(&app, "ana@example.com").await;
    app.clock.advance_secs(11 * 3600);
    let r = s.call(&app, Method::GET, "/v1/admins", None, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.clock.advance_secs(11 * 3600);
    let r = s.call(&app, Method::GET, "/v1/admins", None, false).await;
    assert_eq!(r.status(), StatusCode::OK, "used 11 h ago: still on");
    app.clock.advance_secs(12 * 3600);
    let r = s.call(&app, Method::GET, "/v1/admins", None, false).await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn admins_are_listed_created_and_deleted_but_never_the_last() {
    let app = spawn_app().await;
    let ana = create_admin(&app, "ana@example.com").await;
    // Every problem at once; the password is never echoed.
    let r = app
        .admin(
            Method::POST,
            "/v1/admins",
            Some(json!({"email": "not an address", "name": "", "password": "too short"})),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "name", "password"]);
    assert!(!body.to_string().contains("too short"));
    // One admin per address.
    let r = app
        .admin(
            Method::POST,
            "/v1/admins",
            Some(json!({"email": "ANA@example.com", "name": "Other", "password": PASSWORD})),
        )
        .await;
    problem(r, StatusCode::CONFLICT, "conflict").await;

    // A session creates another admin, who then deletes the first; the
    // first one's sessions end with it.
    let s = sign_in(&app, "ana@example.com").await;
    let r = s
        .call(
            &app,
            Method::POST,
            "/v1/admins",
            Some(json!({"email": "bo@example.com", "name": "Bo", "password": PASSWORD})),
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list: Value = s
        .call(&app, Method::GET, "/v1/admins", None, false)
        .await
        .json()
        .await
        .unwrap();
    let emails: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ana@example.com", "bo@example.com"]);
    let bo = sign_in(&app, "bo@example.com").await;
    let r = bo
        .call(
            &app,
            Method::DELETE,
            &format!("/v1/admins/{}", ana["id"].as_str().unwrap()),
            None,
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s.call(&app, Method::GET, "/v1/admins", None, false).await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = sign_in_raw(&app, "ana@example.com", PASSWORD).await;
    problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // The last admin stays; unknown ids are 404.
    let r = bo
        .call(
            &app,
            Method::DELETE,
            &format!("/v1/admins/{}", bo.admin_id),
            None,
            true,
        )
        .await;
    problem(r, StatusCode::CONFLICT, "last_admin").await;
    let r = app
        .admin(Method::DELETE, "/v1/admins/adm_0000000000000000", None)
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // A send key reaches none of it.
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    let r = app.call(Method::GET, "/v1/admins", &send_key, None).await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}
