//! People without an account (C9, S3): access tokens (mint, verify online,
//! expiry on the test clock, tampering, revocation per token, contact and
//! entity, offline verification with the JWKS), contacts' language and
//! name, and the one-click unsubscribe of emails (RFC 8058) over a real
//! SMTP server.

use crate::helpers::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use belfry_core::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn mint(app: &TestApp, body: Value) -> Value {
    let r = app
        .admin(Method::POST, "/v1/access-tokens", Some(body))
        .await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn token_for(app: &TestApp, email: &str, ticket: &str) -> String {
    mint(
        app,
        json!({"email": email, "entity": {"type": "ticket", "id": ticket}}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.admin(
        Method::POST,
        "/v1/access-tokens/verify",
        Some(json!({"token": token})),
    )
    .await
}

async fn verified(app: &TestApp, token: &str) -> Value {
    let r = verify(app, token).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn refused(app: &TestApp, token: &str, code: &str) {
    assert_problem(verify(app, token).await, StatusCode::UNAUTHORIZED, code).await;
}

async fn revoke(app: &TestApp, body: Value) {
    let r = app
        .admin(Method::POST, "/v1/access-tokens/revoke", Some(body))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_token_verifies_online_and_offline_with_the_jwks() {
    let app = spawn_app().await;
    let minted = mint(
        &app,
        json!({"email": "Erika@Example.org", "entity": {"type": "ticket", "id": "9"}}),
    )
    .await;
    let token = minted["token"].as_str().unwrap();
    let now = app.clock.now();
    let expires =
        belfry_core::Millis::parse_rfc3339(minted["expires_at"].as_str().unwrap()).unwrap();
    // 14 days by default (to the second: JWT times are in seconds).
    assert_eq!(expires.0, (now.0 / 1000 + 14 * 86_400) * 1000);

    let v = verified(&app, token).await;
    assert_eq!(v["email"], "erika@example.org");
    assert_eq!(v["entity"], json!({"type": "ticket", "id": "9"}));
    assert_eq!(v["expires_at"], minted["expires_at"]);
    assert_eq!(v["id"], minted["id"]);
    // The wrong entity: verification names the token's own entity, and
    // the host compares it with the page being opened.
    assert_ne!(v["entity"], json!({"type": "ticket", "id": "10"}));
    // A send key may verify (the host's backend); minting needs admin.
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    let r = app
        .call(
            Method::POST,
            "/v1/access-tokens/verify",
            &send_key,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .call(
            Method::POST,
            "/v1/access-tokens",
            &send_key,
            Some(json!({"email": "a@example.org", "entity": "ticket:1"})),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // Offline: the public key from the JWKS (no credentials) checks the
    // signature; the token's header names the key.
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let jwks: jsonwebtoken::jwk::JwkSet = r.json().await.unwrap();
    assert_eq!(jwks.keys.len(), 1);
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[app.base.as_str()]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "erika@example.org");
    assert_eq!(data.claims["entity"], json!({"type": "ticket", "id": "9"}));
    assert_eq!(data.claims["jti"], minted["id"]);
    assert_eq!(data.claims["exp"].as_i64().unwrap() * 1000, expires.0);
    // The same key after a restart (kept in the database): links already
    // sent stay valid.
    let app = app.restart().await;
    verified(&app, token).await;
}

#[tokio::test]
async fn expired_and_tampered_tokens_are_refused() {
    let app = spawn_app().await;
    let token = token_for(&app, "erika@example.org", "9").await;
    let short = mint(
        &app,
        json!({"email": "erika@example.org", "entity": "ticket:9", "ttl_days": 1}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Tampered: the signature changed, or the claims changed under it.
    let (rest, signature) = token.rsplit_once('.').unwrap();
    let mut sig = B64.decode(signature).unwrap();
    sig[10] ^= 1;
    refused(
        &app,
        &format!("{rest}.{}", B64.encode(&sig)),
        "invalid_token",
    )
    .await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["entity"]["id"] = json!("10");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    refused(&app, &forged, "invalid_token").await;
    refused(&app, "not-a-token", "invalid_token").await;
    // A user token is signed by this server too, but is no access token.
    app.users(&["ana"]).await;
    refused(&app, &app.token("ana").await, "invalid_token").await;

    // Expiry on the test clock.
    app.clock.advance_secs(86_400 - 1);
    verified(&app, &short).await;
    app.clock.advance_secs(1);
    refused(&app, &short, "expired").await;
    verified(&app, &token).await;
    app.clock.advance_secs(13 * 86_400);
    refused(&app, &token, "expired").await;
}

#[tokio::test]
async fn revocation_per_token_contact_and_entity_holds_at_once_on_every_node() {
    let app = spawn_app().await;
    let other_node = app.another_node().await;
    let a1 = token_for(&app, "erika@example.org", "9").await;
    let a2 = token_for(&app, "erika@example.org", "9").await;
    let b = token_for(&app, "max@example.org", "9").await;
    let c = token_for(&app, "max@example.org", "10").await;

    // One token.
    revoke(&app, json!({"token": a1})).await;
    refused(&app, &a1, "revoked").await;
    refused(&other_node, &a1, "revoked").await;
    verified(&other_node, &a2).await;

    // A contact: every token of theirs issued until now, not later ones.
    revoke(&app, json!({"email": "ERIKA@example.org"})).await;
    refused(&other_node, &a2, "revoked").await;
    verified(&other_node, &b).await;
    app.clock.set(belfry_core::Millis(app.clock.now().0 + 1));
    let a3 = token_for(&app, "erika@example.org", "9").await;
    verified(&other_node, &a3).await;

    // An entity: every token for it, of every contact.
    revoke(&app, json!({"entity": {"type": "ticket", "id": "9"}})).await;
    refused(&other_node, &a3, "revoked").await;
    refused(&app, &b, "revoked").await;
    verified(&app, &c).await;
    // Revoking an expired token is accepted (nothing to change).
    app.clock.advance_secs(15 * 86_400);
    revoke(&app, json!({"token": c})).await;
    refused(&app, &c, "expired").await;
}

#[tokio::test]
async fn invalid_requests_are_422_with_the_field() {
    let app = spawn_app().await;
    let field = |v: &Value| v["errors"][0]["field"].as_str().unwrap().to_string();
    for (body, f) in [
        (json!({"entity": "ticket:9"}), "email"),
        (json!({"email": "nope", "entity": "ticket:9"}), "email"),
        (json!({"email": "a@example.org"}), "entity"),
        (
            json!({"email": "a@example.org", "entity": "ticket"}),
            "entity",
        ),
        (
            json!({"email": "a@example.org", "entity": {"type": "Ticket!", "id": "9"}}),
            "entity",
        ),
        (
            json!({"email": "a@example.org", "entity": {"type": "ticket", "id": "9", "x": 1}}),
            "entity",
        ),
        (
            json!({"email": "a@example.org", "entity": "ticket:9", "ttl_days": 0}),
            "ttl_days",
        ),
        (
            json!({"email": "a@example.org", "entity": "ticket:9", "ttl_days": 366}),
            "ttl_days",
        ),
    ] {
        let r = app
            .admin(Method::POST, "/v1/access-tokens", Some(body.clone()))
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(field(&p), f, "{body}");
    }
    let r = app
        .admin(
            Method::POST,
            "/v1/access-tokens",
            Some(json!({"email": "a@example.org", "entity": "ticket:9", "ttl": 3})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .admin(Method::POST, "/v1/access-tokens/verify", Some(json!({})))
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let token = token_for(&app, "a@example.org", "9").await;
    for body in [
        json!({}),
        json!({"token": token, "email": "a@example.org"}),
        json!({"email": "a@example.org", "entity": "ticket:9"}),
        json!({"token": "forged.token.here"}),
        json!({"email": "not an address"}),
        json!({"entity": {"type": "ticket"}}),
    ] {
        let r = app
            .admin(Method::POST, "/v1/access-tokens/revoke", Some(body.clone()))
            .await;
        assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    // Without a key: 401 unauthorized, not a token verdict.
    let r = app
        .client
        .post(app.url("/v1/access-tokens/verify"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // A contact's language and name are checked when they subscribe.
    for (body, f) in [
        (json!({"locale": "deutsch!"}), "locale"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
    ] {
        let r = app
            .admin(
                Method::PUT,
                "/v1/subscriptions/ticket/9/emails/erika@example.org",
                Some(body),
            )
            .await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(field(&p), f);
    }
    let r = app
        .admin(
            Method::PUT,
            "/v1/subscriptions/ticket/9/emails/erika@example.org",
            Some(json!({"language": "de"})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    // Unsubscribe links that this server did not sign.
    for method in [Method::GET, Method::POST] {
        let r = app
            .client
            .request(method, app.url("/v1/unsubscribe/forged.token.here"))
            .send()
            .await
            .unwrap();
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    }
}

fn smtp_config(sink: &SmtpSink) -> belfry_server::Config {
    let mut c = belfry_server::Config {
        smtp_url: Some(sink.url().into()),
        run_workers: false,
        contact_link_url: Some(
            "https://desk.example.com/portal/tickets/{entity_id}?access_token={token}".into(),
        ),
        ..Default::default()
    };
    c.email.app_url = Some("https://desk.example.com".into());
    c
}

/// The value of `key=` in `text`, up to the next white space.
fn after<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text.find(key).unwrap_or_else(|| panic!("{key} in {text}")) + key.len();
    text[start..].split_whitespace().next().unwrap()
}

async fn subscribers(app: &TestApp, ticket: &str) -> Vec<String> {
    let r = app
        .admin(
            Method::GET,
            &format!("/v1/subscriptions/ticket/{ticket}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["email"]
                .as_str()
                .or(i["user"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_german_contact_gets_a_german_email_with_an_access_link_and_one_click_unsubscribe() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink)).await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/subscriptions/ticket/9/emails/erika@example.org",
            Some(json!({"locale": "de", "name": "Erika"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Without a body: subscribed, in English.
    let r = app
        .admin(
            Method::PUT,
            "/v1/subscriptions/ticket/9/emails/max@example.org",
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.send_ok(json!({
        "to": {"entity": {"type": "ticket", "id": "9"}},
        "channels": ["email"],
        "title": "Ticket #9 updated",
        "url": "/tickets/9"
    }))
    .await;
    app.run_due_jobs().await;
    let mails = sink.wait_for(2).await;
    let to = |address: &str| {
        mails
            .iter()
            .find(|m| m["rcpt_tos"][0] == address)
            .unwrap_or_else(|| panic!("an email to {address}"))
            .clone()
    };
    let erika = to("erika@example.org");
    let text = erika["text"].as_str().unwrap();
    let html = erika["html"].as_str().unwrap().replace("&#x2f;", "/");
    assert!(text.contains("Hallo Erika,"), "{text}");
    assert!(
        text.contains("Sie erhalten diese E-Mail, weil Sie ticket #9 über Belfry folgen."),
        "{text}"
    );
    assert!(html.contains("lang=\"de\""));
    assert!(erika["to"].as_str().unwrap().contains("Erika"));
    // The link to the entity carries a fresh token that verifies.
    assert!(
        text.contains("Öffnen: https://desk.example.com/portal/tickets/9?access_token="),
        "{text}"
    );
    let token = after(text, "access_token=");
    let v = verified(&app, token).await;
    assert_eq!(v["email"], "erika@example.org");
    assert_eq!(v["entity"], json!({"type": "ticket", "id": "9"}));
    assert!(html.contains(&format!("access_token={token}")));
    // One-click unsubscribe: the RFC 8058 headers and the footer link.
    let header = erika["list_unsubscribe"]
        .as_str()
        .expect("List-Unsubscribe");
    let url = header
        .strip_prefix('<')
        .and_then(|h| h.strip_suffix('>'))
        .unwrap_or_else(|| panic!("<url>: {header}"));
    assert!(
        url.starts_with(&format!("{}/v1/unsubscribe/", app.base)),
        "{url}"
    );
    assert_eq!(erika["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    assert!(text.contains(&format!("Abbestellen: {url}")), "{text}");
    assert!(html.contains(&format!("href=\"{url}\"")));
    // Max subscribed without a language: English.
    let max = to("max@example.org");
    let max_text = max["text"].as_str().unwrap();
    assert!(max_text.contains("Open: https://desk.example.com/portal/tickets/9?access_token="));
    assert!(max_text.contains("Unsubscribe: "), "{max_text}");
    assert_ne!(
        after(max_text, "access_token="),
        token,
        "a token per contact"
    );

    // A GET (a link scanner, or the person's browser) only shows the page.
    let r = app.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("<form method=\"post\">"), "{page}");
    // In the language of the email.
    assert!(page.contains("<html lang=\"de\">"), "{page}");
    assert!(
        page.contains("Möchten Sie die E-Mails an erika@example.org zu ticket #9 abbestellen?"),
        "{page}"
    );
    assert_eq!(
        subscribers(&app, "9").await,
        ["erika@example.org", "max@example.org"]
    );
    // The one-click POST, as a mail client sends it.
    let r = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Sie erhalten diese E-Mails nicht mehr.")
    );
    assert_eq!(subscribers(&app, "9").await, ["max@example.org"]);
    // Max's link (an English email) leads to an English page.
    let max_header = max["list_unsubscribe"].as_str().unwrap();
    let page = app
        .client
        .get(&max_header[1..max_header.len() - 1])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Do you want to unsubscribe from emails to max@example.org about ticket #9?"),
        "{page}"
    );
    // Again: harmless.
    let r = app.client.post(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("belfry_unsubscribes_total{kind=\"contact\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("belfry_access_token_verifications_total{outcome=\"valid\"}"));

    // The next send reaches Max only.
    app.send_ok(json!({
        "to": {"entity": {"type": "ticket", "id": "9"}},
        "channels": ["email"],
        "title": "Ticket #9 closed",
        "url": "/tickets/9"
    }))
    .await;
    app.run_due_jobs().await;
    let mails = sink.wait_for(3).await;
    assert_eq!(mails[2]["rcpt_tos"][0], "max@example.org");
    assert_eq!(mails.len(), 3);
}

#[tokio::test]
async fn without_a_link_pattern_the_contact_link_is_the_notification_url_with_the_token() {
    let sink = SmtpSink::start("accept");
    let mut config = smtp_config(&sink);
    config.contact_link_url = None;
    let app = spawn_app_with(config).await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/subscriptions/ticket/9/emails/max@example.org",
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    app.send_ok(json!({
        "to": {"entity": {"type": "ticket", "id": "9"}},
        "channels": ["email"],
        "title": "Ticket #9 updated",
        "url": "/tickets/9?tab=activity"
    }))
    .await;
    app.run_due_jobs().await;
    let mail = &sink.wait_for(1).await[0];
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains("Open: https://desk.example.com/tickets/9?tab=activity&access_token="),
        "{text}"
    );
    verified(&app, after(text, "access_token=")).await;
}

#[tokio::test]
async fn a_users_one_click_unsubscribe_switches_that_categorys_email_off() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink)).await;
    app.put_user("ana", json!({"email": "ana@example.com", "locale": "de"}))
        .await;
    let send = |title: &'static str, category: &'static str| {
        json!({"to": {"users": ["ana"]}, "channels": ["in_app", "email"],
               "category": category, "title": title})
    };
    app.send_ok(send("Assigned", "assignment")).await;
    app.run_due_jobs().await;
    let mail = sink.wait_for(1).await[0].clone();
    let header = mail["list_unsubscribe"].as_str().expect("List-Unsubscribe");
    let url = &header[1..header.len() - 1];
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains(&format!("Abbestellen: {url}"))
    );
    let r = app.client.get(url).send().await.unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Möchten Sie die E-Mails zu assignment abbestellen?")
    );
    let r = app.client.post(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .admin(Method::GET, "/v1/users/ana/preferences", None)
        .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["categories"]["assignment"]["email"], "off", "{p}");
    assert_eq!(p["channels"]["email"], true, "other categories still email");

    // The next assignment is not emailed; a mention still is.
    app.send_ok(send("Assigned again", "assignment")).await;
    app.send_ok(send("Mentioned", "mention")).await;
    app.run_due_jobs().await;
    let mails = sink.wait_for(2).await;
    assert_eq!(mails[1]["subject"], "Mentioned");
    assert_eq!(mails.len(), 2);
}

#[tokio::test]
async fn the_description_documents_access_tokens_and_unsubscribe() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    for (path, method, status, secured) in [
        ("/v1/access-tokens", "post", "201", true),
        ("/v1/access-tokens/verify", "post", "200", true),
        ("/v1/access-tokens/revoke", "post", "204", true),
        ("/.well-known/jwks.json", "get", "200", false),
        ("/v1/unsubscribe/{token}", "get", "200", false),
        ("/v1/unsubscribe/{token}", "post", "200", false),
    ] {
        let op = &paths[path][method];
        assert!(op["responses"][status].is_object(), "{method} {path}: {op}");
        assert_eq!(
            op["security"].as_array().is_some_and(|s| !s.is_empty()),
            secured,
            "{method} {path}"
        );
    }
    let verify = &paths["/v1/access-tokens/verify"]["post"]["responses"]["401"];
    assert!(verify["description"].as_str().unwrap().contains("revoked"));
    let contact = &paths["/v1/subscriptions/{entity_type}/{entity_id}/emails/{email}"]["put"];
    assert!(contact["requestBody"].is_object(), "{contact}");
}

#[tokio::test]
async fn an_email_answers_a_callback_with_one_click_after_a_confirmation_page() {
    let sink = SmtpSink::start("accept");
    let app = spawn_app_with(smtp_config(&sink)).await;
    app.put_user("ana", json!({"email": "ana@example.com", "name": "Ana"}))
        .await;
    app.put_user("bo", json!({"email": "bo@example.com", "locale": "de"}))
        .await;
    let sent = app
        .send_ok(
            json!({"to": {"users": ["ana", "bo"]}, "channels": ["in_app", "email"],
            "title": "Approve the purchase order",
            "actions": [
                {"id": "approve", "label": "Approve", "kind": "callback", "once": true},
                {"id": "note", "label": "Answer with a note", "kind": "callback",
                 "form": {"fields": [{"name": "n", "label": "N", "type": "text"}]}},
                {"id": "view", "label": "View order", "url": "/orders/5"}]}),
        )
        .await;
    let id = sent["id"].as_str().unwrap();
    app.run_due_jobs().await;
    let mails = sink.wait_for(2).await;
    let mail = |to: &str| {
        mails
            .iter()
            .find(|m| m["to"].as_str().unwrap_or_default().contains(to))
            .unwrap_or_else(|| panic!("{to}: {mails:?}"))
            .clone()
    };
    let ana = mail("ana@");
    let text = ana["text"].as_str().unwrap();
    // The link action and the callback without a form are links; the one with a form is not.
    assert!(
        text.contains("View order: https://desk.example.com/orders/5"),
        "{text}"
    );
    let url = after(text, "Approve: ");
    assert!(
        url.starts_with(&format!("{}/v1/answer/", app.base)),
        "{url}"
    );
    assert!(!text.contains("Answer with a note"), "{text}");
    let answer_token = url.rsplit('/').next().unwrap();
    assert!(
        ana["html"].as_str().unwrap().contains(answer_token),
        "the HTML button too"
    );

    // A GET (a link scanner, a preview) only shows the question.
    let page = app.client.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Send “Approve” for “Approve the purchase order”?"),
        "{html}"
    );
    assert!(html.contains("<form method=\"post\">"));
    let token = app.token("ana").await;
    let item = &app.inbox(&token, "").await["items"][0];
    assert_eq!(item["answered"], Value::Null, "a GET answers nothing");

    // The POST answers for Ana; everyone's item shows it.
    let r = app.client.post(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Your answer “Approve” was recorded.")
    );
    let bo_token = app.token("bo").await;
    let item = &app.inbox(&bo_token, "").await["items"][0];
    assert_eq!(item["answered"]["by"]["id"], "ana", "{item}");

    // Bo's (German) link now says it was answered already.
    let bo = mail("bo@");
    let bo_url = after(bo["text"].as_str().unwrap(), "Approve: ");
    let r = app.client.post(bo_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Darauf wurde schon geantwortet"), "{html}");
    assert!(html.contains("lang=\"de\""), "{html}");

    // A forged or cut link is refused; an answer link is no unsubscribe link.
    let r = app
        .client
        .post(app.url("/v1/answer/forged.token.here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .client
        .post(app.url(&format!("/v1/unsubscribe/{answer_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let _ = id;
}
