//! The administration console's API (issue 17): admin accounts, console
//! sessions (cookie, CSRF, lock-out), and the console's lists, counts and
//! settings.

use crate::helpers::*;
use belfry_core::Clock as _;
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
    app.clock.advance_secs(1);
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

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let r = app.admin(Method::GET, path, None).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

fn field<'a>(items: &'a Value, key: &str) -> Vec<&'a str> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap())
        .collect()
}

/// Every item of a list, page by page with `limit`.
async fn all_pages(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let page = get_ok(app, &format!("{path}{sep}limit={limit}&cursor={cursor}")).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        out.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

#[tokio::test]
async fn notifications_and_the_delivery_log_are_listed_newest_first_and_filtered() {
    let app = spawn_app_with(belfry_server::Config {
        run_workers: false,
        auto_categories: true,
        ..Default::default()
    })
    .await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    // No address: her email is suppressed.
    app.put_user("bo", json!({"groups": ["support"]})).await;
    let n1 = app
        .send_ok(
            json!({"to": {"users": ["ana", "bo"]}, "channels": ["in_app", "email"],
                        "category": "billing", "source": "shop", "title": "Invoice"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.clock.advance_secs(10);
    let n2_at = app.clock.now().to_rfc3339();
    let n2 = app
        .send_ok(json!({"to": {"groups": ["support"]}, "category": "news", "title": "News"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.clock.advance_secs(10);
    let later = app.clock.now().plus_secs(3600).to_rfc3339();
    let n3 = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "Later", "send_at": later}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.run_due_jobs().await;

    let list = get_ok(&app, "/v1/notifications").await;
    assert_eq!(field(&list, "id"), [&n3, &n2, &n1]);
    assert_eq!(list["next_cursor"], Value::Null);
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        field(&list, "status"),
        ["scheduled", "published", "published"]
    );
    assert_eq!(items[2]["title"], "Invoice");
    assert_eq!(items[2]["category"], "billing");
    assert_eq!(items[2]["source"], "shop");
    assert_eq!(items[2]["audience"], "2 users");
    assert_eq!(items[2]["recipients"], 2);
    assert_eq!(items[2]["deliveries"]["email"]["sent"], 1);
    assert_eq!(items[2]["deliveries"]["email"]["suppressed"], 1);
    assert_eq!(items[1]["audience"], "groups: support");
    assert_eq!(items[1]["to"]["groups"], json!(["support"]));
    assert_eq!(items[0]["audience"], "user ana");

    // Filters and pages.
    let l = get_ok(&app, "/v1/notifications?category=billing").await;
    assert_eq!(field(&l, "id"), [&n1]);
    let l = get_ok(&app, "/v1/notifications?source=shop").await;
    assert_eq!(field(&l, "id"), [&n1]);
    let l = get_ok(
        &app,
        &format!("/v1/notifications?since={}", n2_at.replace('+', "%2B")),
    )
    .await;
    assert_eq!(field(&l, "id"), [&n3, &n2]);
    let paged = all_pages(&app, "/v1/notifications", 2).await;
    assert_eq!(&paged, items);
    for bad in [
        "limit=0",
        "limit=201",
        "cursor=abc",
        "since=yesterday",
        "category=Bad%20Cat",
    ] {
        let r = app
            .admin(Method::GET, &format!("/v1/notifications?{bad}"), None)
            .await;
        assert_query_refused(r, bad).await;
    }

    // "Why didn't Bo get this?": his suppressed email, with the reason.
    let l = get_ok(&app, "/v1/deliveries?recipient=bo&status=suppressed").await;
    let lines = l["items"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{l}");
    assert_eq!(lines[0]["notification_id"], n1.as_str());
    assert_eq!(lines[0]["recipient"], "user:bo");
    assert_eq!(lines[0]["channel"], "email");
    assert_eq!(lines[0]["reason"], "no_address");
    // The whole log, newest first, page by page as in one page.
    let whole = get_ok(&app, "/v1/deliveries?limit=200").await;
    let whole = whole["items"].as_array().unwrap().clone();
    assert!(whole.len() >= 4, "{whole:?}");
    assert_eq!(all_pages(&app, "/v1/deliveries", 1).await, whole);
    let ana = get_ok(&app, "/v1/deliveries?recipient=user:ana&channel=email").await;
    assert!(
        ana["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["recipient"] == "user:ana" && i["channel"] == "email")
    );
    assert!(field(&ana, "status").contains(&"sent"));
    let billing = get_ok(&app, "/v1/deliveries?category=billing&source=shop").await;
    assert!(
        field(&billing, "notification_id")
            .iter()
            .all(|id| *id == n1)
    );
    let news = get_ok(&app, "/v1/deliveries?category=news").await;
    assert!(
        field(&news, "notification_id").iter().all(|id| *id == n2),
        "{news}"
    );
    let future = app
        .clock
        .now()
        .plus_secs(2 * 3600)
        .to_rfc3339()
        .replace('+', "%2B");
    let none = get_ok(&app, &format!("/v1/deliveries?since={future}")).await;
    assert_eq!(none["items"], json!([]));
    let until = get_ok(&app, &format!("/v1/deliveries?until={future}&limit=200")).await;
    assert_eq!(until["items"].as_array().unwrap(), &whole);
    for bad in [
        "status=lost",
        "channel=fax",
        "recipient=user:",
        "until=soon",
    ] {
        let r = app
            .admin(Method::GET, &format!("/v1/deliveries?{bad}"), None)
            .await;
        assert_query_refused(r, bad).await;
    }

    // Counts per hour, channel and status.
    let stats = get_ok(&app, "/v1/stats/deliveries?bucket=hour").await;
    let buckets = stats["buckets"].as_array().unwrap();
    let count = |channel: &str, status: &str| -> i64 {
        buckets
            .iter()
            .filter(|b| b["channel"] == channel && b["status"] == status)
            .map(|b| b["count"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(count("email", "suppressed"), 1);
    assert_eq!(count("email", "sent"), 1);
    for b in buckets {
        let start = belfry_core::Millis::parse_rfc3339(b["start"].as_str().unwrap()).unwrap();
        assert_eq!(start.0 % 3_600_000, 0, "whole hours: {b}");
    }
    let old = belfry_core::Millis(app.clock.now().0 - 40 * 86_400_000).to_rfc3339();
    for bad in [
        format!("since={}", old.replace('+', "%2B")),
        "bucket=week".to_string(),
    ] {
        let r = app
            .admin(Method::GET, &format!("/v1/stats/deliveries?{bad}"), None)
            .await;
        assert_query_refused(r, &bad).await;
    }
    // Nothing of it for a send key.
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    for path in [
        "/v1/notifications",
        "/v1/deliveries",
        "/v1/stats/deliveries",
    ] {
        let r = app.call(Method::GET, path, &send_key, None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn audience_sizes_count_people_once() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    app.put_user("bo", json!({"groups": ["support"]})).await;
    app.put_user("cy", json!({"groups": ["support", "sales"]}))
        .await;
    app.put_user("dan", json!({})).await;
    let r = app
        .admin(Method::PUT, "/v1/subscriptions/ticket/7/users/dan", None)
        .await;
    assert!(r.status().is_success());
    let r = app
        .admin(
            Method::PUT,
            "/v1/subscriptions/ticket/7/emails/ext@example.org",
            None,
        )
        .await;
    assert!(r.status().is_success());
    let r = app
        .admin(
            Method::PUT,
            "/v1/subscriptions/ticket/7/emails/ana@example.com",
            None,
        )
        .await;
    assert!(r.status().is_success());
    for (to, count) in [
        (json!({"groups": ["support"]}), 2),
        (json!({"groups": ["sales"]}), 1),
        (json!({"groups": ["support", "sales"]}), 2),
        (json!({"groups": ["support"], "users": ["cy", "ana"]}), 3),
        (
            json!({"users": ["ana"], "emails": ["ANA@example.com", "new@example.org"]}),
            2,
        ),
        // dan, the contact, and ana by her address.
        (json!({"entity": {"type": "ticket", "id": "7"}}), 3),
        (json!({"all": true}), 4),
        (json!({"all": true, "emails": ["new@example.org"]}), 5),
    ] {
        let r = app
            .admin(Method::POST, "/v1/audience/size", Some(json!({"to": to})))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{to}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["count"], count, "{to}");
    }
    // A group's size follows its members leaving, coming back, deleted.
    let size = async |group: &str| -> i64 {
        let r = app
            .admin(
                Method::POST,
                "/v1/audience/size",
                Some(json!({"to": {"groups": [group]}})),
            )
            .await;
        r.json::<Value>().await.unwrap()["count"].as_i64().unwrap()
    };
    app.put_user("bo", json!({"groups": []})).await;
    assert_eq!(size("support").await, 1);
    app.put_user("bo", json!({"groups": ["support"]})).await;
    app.put_user("bo", json!({"groups": ["support"]})).await;
    assert_eq!(size("support").await, 2);
    let r = app.admin(Method::DELETE, "/v1/users/cy", None).await;
    assert!(r.status().is_success());
    assert_eq!(size("support").await, 1);
    assert_eq!(size("sales").await, 0);
    app.put_user("cy", json!({"groups": ["sales"]})).await;
    assert_eq!(size("sales").await, 1);
    let r = app
        .admin(
            Method::POST,
            "/v1/audience/size",
            Some(json!({"to": {"groups": ["nope"]}})),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_group").await;
    let r = app
        .admin(
            Method::POST,
            "/v1/audience/size",
            Some(json!({"to": {"users": ["ghost"]}})),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_user").await;
    for body in [
        json!({}),
        json!({"to": {}}),
        json!({"to": {"groups": ["Bad Id"]}}),
    ] {
        let r = app
            .admin(Method::POST, "/v1/audience/size", Some(body.clone()))
            .await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
}

async fn import(app: &TestApp, csv: &str) -> Response {
    app.client
        .post(app.url("/v1/users/import"))
        .bearer_auth(&app.admin_key)
        .header("Content-Type", "text/csv; charset=utf-8")
        .body(csv.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn users_are_searched_and_imported_from_csv_row_by_row() {
    let app = spawn_app().await;
    app.put_user(
        "ana",
        json!({"name": "Ana Lima", "email": "ana@example.com"}),
    )
    .await;
    // Row 3 has a bad email, row 5 a bad time zone and a bad group, row 6
    // takes ana's address: none of them is applied, the others are.
    let csv = "id,email,name,locale,timezone,groups\r\n\
               bo,bo@example.com,Bo Berg,de,Europe/Berlin,support;sales\r\n\
               cy,not-an-address,Cy,,,\r\n\
               ana,,\"Lima, Ana\",pt,,support\r\n\
               dan,dan@example.com,Dan,,Mars/Base,Bad Group\r\n\
               eve,ANA@example.com,Eve,,,\r\n\
               \r\n\
               \"fay\",fay@example.com,Fay,,,sales\r\n";
    let r = import(&app, csv).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["created"], 2, "{report}");
    assert_eq!(report["updated"], 1, "{report}");
    let errors: Vec<(i64, &str)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [(3, "email"), (5, "timezone"), (5, "groups"), (6, "email")],
        "{report}"
    );
    for id in ["cy", "dan", "eve"] {
        let r = app
            .admin(Method::GET, &format!("/v1/users/{id}"), None)
            .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{id} was not half-created"
        );
    }
    let bo = get_ok(&app, "/v1/users/bo").await;
    assert_eq!(bo["groups"], json!(["sales", "support"]));
    assert_eq!(bo["timezone"], "Europe/Berlin");
    let ana = get_ok(&app, "/v1/users/ana").await;
    assert_eq!(ana["name"], "Lima, Ana");
    assert_eq!(
        ana["email"], "ana@example.com",
        "an empty cell keeps the value"
    );
    assert_eq!(ana["locale"], "pt");

    // Search: id, name or email prefix, case-insensitive for the latter two.
    let all = get_ok(&app, "/v1/users").await;
    assert_eq!(field(&all, "id"), ["ana", "bo", "fay"]);
    for (query, ids) in [
        ("li", vec!["ana"]),
        ("BO", vec!["bo"]),
        ("bo%40ex", vec!["bo"]),
        ("f", vec!["fay"]),
        ("zz", vec![]),
        ("%25", vec![]),
    ] {
        let l = get_ok(&app, &format!("/v1/users?query={query}")).await;
        assert_eq!(field(&l, "id"), ids, "{query}");
    }
    let l = get_ok(&app, "/v1/users?group=support").await;
    assert_eq!(field(&l, "id"), ["ana", "bo"]);
    let l = get_ok(&app, "/v1/users?group=sales&query=f").await;
    assert_eq!(field(&l, "id"), ["fay"]);
    let l = get_ok(&app, "/v1/users?group=nobody").await;
    assert_eq!(l["items"], json!([]));
    let paged = all_pages(&app, "/v1/users", 1).await;
    assert_eq!(&paged, all["items"].as_array().unwrap());
    for bad in ["group=Bad%20Group", "limit=500", "cursor=-1"] {
        let r = app
            .admin(Method::GET, &format!("/v1/users?{bad}"), None)
            .await;
        assert_query_refused(r, bad).await;
    }

    // What is not CSV at all is refused whole.
    let r = import(&app, "").await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv").await;
    let r = import(&app, "id,mail\nx,y\n").await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv").await;
    assert!(body["detail"].as_str().unwrap().contains("mail"), "{body}");
    let r = import(&app, "name\nx\n").await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv").await;
    let r = import(&app, "id\n\"open\n").await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv").await;
    let r = import(&app, "id,name\nx\n").await;
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["errors"][0]["row"], 2);
    let r = app
        .client
        .post(app.url("/v1/users/import"))
        .bearer_auth(&app.admin_key)
        .json(&json!({"id": "x"}))
        .send()
        .await
        .unwrap();
    problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // 3 MiB (more than a JSON body may be) is read; 5 MiB is not.
    let ids: String = (0..9_000).map(|i| format!("user-{i:0>300}\n")).collect();
    let r = import(&app, &format!("id\n{ids}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        report["errors"].as_array().unwrap().len(),
        9_000,
        "ids over 128: each refused"
    );
    let big = format!("id\n{}", "u\n".repeat(5 * 512 * 1024));
    let r = import(&app, &big).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let many = format!(
        "id\n{}",
        (0..10_001).map(|i| format!("u{i}\n")).collect::<String>()
    );
    let r = import(&app, &many).await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv").await;
}

#[tokio::test]
async fn settings_change_retention_and_default_preferences_for_every_node() {
    let app = spawn_app_with(belfry_server::Config {
        delivery: belfry_delivery::EngineConfig {
            retention: Some(belfry_store::retention::RetentionPolicy::default()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let s = get_ok(&app, "/v1/settings").await;
    assert_eq!(s["retention_days"], 90);
    assert_eq!(s["delivery_log_retention_days"], 30);
    assert_eq!(s["mailbox_retention_days"], 7);
    assert_eq!(s["retention_job"], true);
    assert_eq!(s["default_preferences"]["channels"]["email"], true, "{s}");

    let r = app
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"retention_days": 10, "mailbox_retention_days": 0,
                        "default_preferences": {"channels": {"email": false}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["retention_days"], 10);
    assert_eq!(s["delivery_log_retention_days"], 30);
    assert_eq!(s["mailbox_retention_days"], 0);
    assert_eq!(s["default_preferences"]["channels"]["email"], false);
    // Another node reads the same.
    let other = app.another_node().await;
    assert_eq!(get_ok(&other, "/v1/settings").await, s);
    let d = get_ok(&other, "/v1/preferences/defaults").await;
    assert_eq!(d["channels"]["email"], false);

    let r = app
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"retention_days": -1, "mailbox_retention_days": 1.5,
                        "delivery_log_retention_days": 5000, "default_preferences": 3})),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 4, "{body}");
    let r = app
        .admin(Method::PUT, "/v1/settings", Some(json!({"retention": 1})))
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(get_ok(&app, "/v1/settings").await, s, "nothing changed");
}

#[tokio::test]
async fn keys_are_listed_created_once_and_revoked_but_never_by_themselves() {
    let app = spawn_app().await;
    create_admin(&app, "ana@example.com").await;
    let s = sign_in(&app, "ana@example.com").await;
    // The console creates a send key: the secret is shown this once.
    let r = s
        .call(
            &app,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "billing service", "scopes": ["send"]})),
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("bfy_sk_"));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["send"]));
    assert_eq!(created["source"], Value::Null);
    assert_eq!(created["revoked_at"], Value::Null);
    // It works, and it is listed without its secret, with a source key.
    app.put_user("bo", json!({})).await;
    let r = app
        .call(
            Method::POST,
            "/v1/notifications",
            &secret,
            Some(json!({"to": {"users": ["bo"]}, "title": "hi"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .admin(
            Method::PUT,
            "/v1/sources/shop",
            Some(json!({"name": "Shop"})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app
        .admin(Method::POST, "/v1/sources/shop/keys", Some(json!({})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = get_ok(&app, "/v1/keys").await;
    assert_eq!(list["next_cursor"], Value::Null);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "the first admin key, ours, the source's");
    assert!(!list.to_string().contains(&secret));
    let ours = items.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(ours["name"], "billing service");
    let shop = items.iter().find(|k| k["source"] == "shop").unwrap();
    assert_eq!(shop["scopes"], json!(["send"]));

    // Revoked from the console: refused at once.
    let r = s
        .call(&app, Method::DELETE, &format!("/v1/keys/{id}"), None, true)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .call(Method::GET, "/v1/notifications/x", &secret, None)
        .await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let list = get_ok(&app, "/v1/keys").await;
    let ours = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(ours["revoked_at"].as_str().is_some());
    // Again: 204; unknown: 404.
    let r = app
        .admin(Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .admin(Method::DELETE, "/v1/keys/key_0000000000000000", None)
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // An admin key cannot revoke itself.
    let r = app
        .admin(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "ops", "scopes": ["admin"]})),
        )
        .await;
    let ops: Value = r.json().await.unwrap();
    let ops_secret = ops["secret"].as_str().unwrap();
    let ops_id = ops["id"].as_str().unwrap();
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/keys/{ops_id}"),
            ops_secret,
            None,
        )
        .await;
    problem(r, StatusCode::CONFLICT, "own_key").await;
    let r = app.call(Method::GET, "/v1/keys", ops_secret, None).await;
    assert_eq!(r.status(), StatusCode::OK, "still valid");

    // Every problem at once.
    let r = app
        .admin(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": " ", "scopes": ["send", "root", 3]})),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "scopes[1]", "scopes[2]"]);
    for body in [json!({"name": "x"}), json!({"name": "x", "scopes": []})] {
        let r = app.admin(Method::POST, "/v1/keys", Some(body)).await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    // A send key reaches none of it.
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    let r = app.call(Method::GET, "/v1/keys", &send_key, None).await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

/// The retention days set at run time are what the retention job uses.
#[tokio::test]
async fn the_retention_job_uses_the_days_set_at_run_time() {
    let mut config = belfry_server::Config {
        run_workers: false,
        ..Default::default()
    };
    config.delivery.retention = Some(belfry_store::retention::RetentionPolicy::default());
    let app = spawn_app_with(config).await;
    app.put_user("ana", json!({"email": "ana@example.com"}))
        .await;
    app.send_ok(json!({"to": {"users": ["ana"]}, "channels": ["in_app", "email"], "title": "x"}))
        .await;
    app.run_due_jobs().await;
    let mailbox = async || -> usize {
        get_ok(&app, "/v1/dev/mailbox").await["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(mailbox().await, 1);
    // Two days on, the configured 7 days keep the email…
    app.clock.advance_secs(2 * 86_400);
    app.run_due_jobs().await;
    assert_eq!(mailbox().await, 1);
    // …and one day set at run time lets the next run delete it.
    let r = app
        .admin(
            Method::PUT,
            "/v1/settings",
            Some(json!({"mailbox_retention_days": 1})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.clock.advance_secs(86_400);
    app.run_due_jobs().await;
    assert_eq!(mailbox().await, 0);
}

/// A refused query: 400 when the value breaks the described form (pattern,
/// bounds), 422 when it is well-formed but wrong; `invalid_query` either way.
async fn assert_query_refused(r: reqwest::Response, bad: &str) {
    let status = r.status();
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
        "{bad}: {status}"
    );
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "invalid_query", "{bad}: {p}");
}
