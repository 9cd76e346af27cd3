//! Templates (S8) through the API: stored per locale, refused with the
//! position of a mistake, previewed for every channel in the recipient's
//! language.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn assigned() -> Value {
    json!({
        "default_locale": "en",
        "locales": {
            "en": {
                "title": "{{ actor.name }} assigned {{ entity.title }} to you",
                "body": "{{ data.summary }}",
                "email_html": "<p>{{ data.summary }}</p>",
                "chat": "*{{ entity.title }}* is yours now"
            },
            "de": {"title": "{{ actor.name }} hat Ihnen {{ entity.title }} zugewiesen"}
        }
    })
}

fn event() -> Value {
    json!({
        "type": "ticket.assigned",
        "actor": {"id": "bo", "name": "Bo"},
        "entity": {"type": "ticket", "id": "7", "title": "#7 Printer"},
        "data": {"summary": "Jam on <floor 3>"}
    })
}

#[tokio::test]
async fn templates_are_stored_listed_previewed_and_deleted() {
    let app = spawn_app().await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/ticket.assigned",
            Some(assigned()),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "ticket.assigned");
    assert_eq!(v["default_locale"], "en");
    assert_eq!(
        v["locales"]["de"]["title"],
        assigned()["locales"]["de"]["title"]
    );
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/ticket.assigned",
            Some(assigned()),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "replaced");
    let r = app.admin(Method::GET, "/v1/templates", None).await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Preview: every channel, with fallbacks; HTML escaped, text not.
    let r = app
        .admin(
            Method::POST,
            "/v1/templates/ticket.assigned/preview",
            Some(json!({"event": event()})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["locale"], "en");
    assert_eq!(p["in_app"]["title"], "Bo assigned #7 Printer to you");
    assert_eq!(p["in_app"]["body"], "Jam on <floor 3>");
    assert_eq!(p["email"]["subject"], "Bo assigned #7 Printer to you");
    assert_eq!(p["email"]["text"], "Jam on <floor 3>");
    assert_eq!(p["email"]["html"], "<p>Jam on &lt;floor 3&gt;</p>");
    assert_eq!(p["web_push"]["title"], p["in_app"]["title"]);
    assert_eq!(p["mobile_push"]["body"], "Jam on <floor 3>");
    assert_eq!(p["chat"]["text"], "*#7 Printer* is yours now");
    let r = app
        .admin(
            Method::POST,
            "/v1/templates/ticket.assigned/preview",
            Some(json!({"locale": "de-AT", "event": event()})),
        )
        .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["locale"], "de");
    assert_eq!(p["in_app"]["title"], "Bo hat Ihnen #7 Printer zugewiesen");
    assert_eq!(
        p["in_app"]["body"], "Jam on <floor 3>",
        "from the default locale"
    );

    // A render that fails names the field.
    app.admin(
        Method::PUT,
        "/v1/templates/broken",
        Some(json!({"locales": {"en": {"title": "{{ data.n + 1 }}"}}})),
    )
    .await;
    let r = app
        .admin(
            Method::POST,
            "/v1/templates/broken/preview",
            Some(json!({"event": {"data": {"n": "x"}}})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "render_failed").await;
    assert_eq!(p["errors"][0]["field"], "locales.en.title", "{p}");

    let r = app
        .admin(Method::POST, "/v1/templates/nope/preview", Some(json!({})))
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .admin(Method::DELETE, "/v1/templates/ticket.assigned", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .admin(Method::GET, "/v1/templates/ticket.assigned", None)
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .admin(Method::DELETE, "/v1/templates/ticket.assigned", None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_template_that_does_not_parse_is_refused_with_its_position() {
    let app = spawn_app().await;
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/t1",
            Some(json!({"locales": {
                "en": {"title": "Hello {{ recipient.name }}"},
                "de": {"title": "Hallo", "email_text": "Zeile eins\n  {% if data.x %}offen"}
            }})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_template").await;
    let e = &p["template_errors"][0];
    assert_eq!(e["locale"], "de", "{p}");
    assert_eq!(e["field"], "email_text");
    assert_eq!(e["line"], 2);
    assert!(e["column"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["errors"][0]["field"], "locales.de.email_text");
    assert!(p["detail"].as_str().unwrap().contains("line 2"), "{p}");
    // Nothing was stored.
    let r = app.admin(Method::GET, "/v1/templates/t1", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The shape: named fields.
    for (body, field) in [
        (
            json!({"locales": {"en": {"body": "x"}}}),
            "locales.en.title",
        ),
        (
            json!({"default_locale": "fr", "locales": {"en": {"title": "x"}}}),
            "default_locale",
        ),
        (json!({}), "locales"),
    ] {
        let r = app.admin(Method::PUT, "/v1/templates/t1", Some(body)).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/t1",
            Some(json!({"locales": {"en": {"titel": "x"}}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .admin(
            Method::PUT,
            "/v1/templates/Bad%20Id",
            Some(json!({"locales": {"en": {"title": "x"}}})),
        )
        .await;
    assert_problem(r, StatusCode::BAD_REQUEST, "invalid_path").await;
    // Admin keys only.
    app.users(&["ana"]).await;
    let token = app.token("ana").await;
    let r = app.call(Method::GET, "/v1/templates", &token, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
