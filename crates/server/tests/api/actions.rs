//! Actions and forms (I7): callback actions answered through the API,
//! checked against the form sent with the notification; `once` actions
//! (an approval any one of several managers may give) won by the first
//! answer, shown live to every recipient, direct and by broadcast.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn approval(to: Value) -> Value {
    json!({
        "to": to,
        "title": "Vacation request: Ana, 22–24 Dec",
        "actions": [
            {"id": "approve", "label": "Approve", "kind": "callback", "style": "primary", "once": true,
             "form": {"fields": [
                 {"name": "note", "label": "Note", "type": "textarea"},
                 {"name": "budget", "label": "Budget checked", "type": "checkbox", "required": true}]}},
            {"id": "deny", "label": "Deny", "kind": "callback", "style": "danger", "once": true,
             "form": {"fields": [
                 {"name": "reason", "label": "Reason", "type": "select", "required": true,
                  "options": [{"value": "staffing", "label": "Not enough staff"}, {"value": "other", "label": "Other"}]}]}},
            {"id": "ack", "label": "Seen", "kind": "callback"},
            {"id": "open", "label": "Open request", "url": "/requests/7"}
        ]
    })
}

fn item<'a>(inbox: &'a Value, id: &str) -> &'a Value {
    inbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {inbox}"))
}

#[tokio::test]
async fn the_first_answer_to_a_once_action_wins_and_every_recipient_sees_it_live() {
    let app = spawn_app().await;
    app.users(&["ana", "bo", "cy", "dee"]).await;
    app.put_user("bo", json!({"name": "Bo Berg"})).await;
    let sent = app.send_ok(approval(json!({"users": ["bo", "cy"]}))).await;
    let id = sent["id"].as_str().unwrap().to_string();
    let (bo, cy, dee) = (
        app.token("bo").await,
        app.token("cy").await,
        app.token("dee").await,
    );

    // The form comes with the item; nobody answered yet.
    let inbox = app.inbox(&cy, "").await;
    let it = item(&inbox, &id);
    assert_eq!(it["answered"], Value::Null, "{it}");
    assert_eq!(it["actions"][0]["once"], true);
    assert_eq!(it["actions"][0]["form"]["fields"][1]["type"], "checkbox");
    assert_eq!(
        it["actions"][1]["form"]["fields"][0]["options"][0]["value"],
        "staffing"
    );
    assert!(it["actions"][2].get("once").is_none(), "{it}");

    let mut cy_stream = app.sse(&cy, None).await;
    cy_stream.next_of("counts").await;

    // Values that do not fit the form: every field named, nothing stored.
    let path = |action: &str| format!("/notifications/{id}/actions/{action}");
    let r = app
        .me(
            Method::POST,
            &path("approve"),
            &bo,
            Some(json!({"values": {"budget": false, "note": 3, "extra": "x"}})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["values.note", "values.budget", "values.extra"],
        "{p}"
    );
    let r = app.me(Method::POST, &path("approve"), &bo, None).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"][0]["field"], "values.budget", "{p}");
    let r = app
        .me(
            Method::POST,
            &path("approve"),
            &bo,
            Some(json!({"values": {}, "extra": 1})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Bo approves.
    let v = app
        .me_post(
            &bo,
            &path("approve"),
            Some(json!({"values": {"budget": true, "note": " fine by me "}})),
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(v["response_id"].as_str().unwrap().len(), 26, "{v}");
    assert_eq!(v["answered"]["action"], "approve");
    assert_eq!(v["answered"]["label"], "Approve");
    assert_eq!(v["answered"]["by"], json!({"id": "bo", "name": "Bo Berg"}));

    // Cy's open stream shows it at once, and so does Cy's inbox.
    let e = cy_stream.next_of("state").await;
    assert_eq!(e.data["action"], "answered", "{:?}", e.data);
    assert_eq!(e.data["ids"], json!([id]));
    assert_eq!(e.data["answered"]["by"]["name"], "Bo Berg");
    let inbox = app.inbox(&cy, "").await;
    assert_eq!(item(&inbox, &id)["answered"], v["answered"]);

    // Later answers to any once action: 409, nothing changes.
    for (who, action, values) in [
        (&cy, "deny", json!({"reason": "staffing"})),
        (&bo, "approve", json!({"budget": true})),
    ] {
        let r = app
            .me(
                Method::POST,
                &path(action),
                who,
                Some(json!({ "values": values })),
            )
            .await;
        let p = assert_problem(r, StatusCode::CONFLICT, "already_answered").await;
        assert!(
            p["detail"].as_str().unwrap().contains("Approve by Bo Berg"),
            "{p}"
        );
    }
    let inbox = app.inbox(&cy, "").await;
    assert_eq!(item(&inbox, &id)["answered"]["action"], "approve");

    // An action that is not `once` may be answered by each, again and again.
    for who in [&bo, &cy, &cy] {
        let v = app
            .me_post(who, &path("ack"), None, StatusCode::ACCEPTED)
            .await;
        assert_eq!(v["answered"], Value::Null, "{v}");
    }
    // ... and takes no values.
    let r = app
        .me(
            Method::POST,
            &path("ack"),
            &cy,
            Some(json!({"values": {"x": 1}})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_eq!(p["errors"][0]["field"], "values.x");

    // A link is opened, not answered; unknown actions and notifications,
    // and notifications of other inboxes, are not found.
    let r = app.me(Method::POST, &path("open"), &cy, None).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "not_a_callback").await;
    let r = app.me(Method::POST, &path("nope"), &cy, None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .me(
            Method::POST,
            "/notifications/01JZZZZZZZZZZZZZZZZZZZZZZZ/actions/approve",
            &cy,
            None,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.me(Method::POST, &path("ack"), &dee, None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // An admin key answers for a user under /v1/users/{id}.
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/users/cy/notifications/{id}/actions/ack"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_broadcast_approval_is_answered_once_for_the_whole_group() {
    let app = spawn_app().await;
    app.put_user("m1", json!({"groups": ["managers"], "name": "Mo"}))
        .await;
    app.put_user("m2", json!({"groups": ["managers"]})).await;
    app.put_user("other", json!({"groups": ["sales"]})).await;
    let sent = app.send_ok(approval(json!({"groups": ["managers"]}))).await;
    let id = sent["id"].as_str().unwrap().to_string();
    let (m1, m2, other) = (
        app.token("m1").await,
        app.token("m2").await,
        app.token("other").await,
    );
    let mut m2_ws = app.ws(&m2, None).await;
    m2_ws.next_of("counts").await;

    let r = app
        .me(
            Method::POST,
            &format!("/notifications/{id}/actions/deny"),
            &other,
            Some(json!({"values": {"reason": "other"}})),
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    let r = app
        .me(
            Method::POST,
            &format!("/notifications/{id}/actions/deny"),
            &m1,
            Some(json!({"values": {"reason": "maybe"}})),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("staffing, other"),
        "{p}"
    );
    app.me_post(
        &m1,
        &format!("/notifications/{id}/actions/deny"),
        Some(json!({"values": {"reason": "staffing"}})),
        StatusCode::ACCEPTED,
    )
    .await;
    let e = m2_ws.next_of("state").await;
    assert_eq!(e["data"]["action"], "answered", "{e}");
    assert_eq!(e["data"]["answered"]["action"], "deny");
    assert_eq!(e["data"]["answered"]["by"]["name"], "Mo");
    let inbox = app.inbox(&m2, "").await;
    assert_eq!(item(&inbox, &id)["answered"]["label"], "Deny");
    let r = app
        .me(
            Method::POST,
            &format!("/notifications/{id}/actions/approve"),
            &m2,
            Some(json!({"values": {"budget": true}})),
        )
        .await;
    assert_problem(r, StatusCode::CONFLICT, "already_answered").await;
}

#[tokio::test]
async fn forms_are_checked_when_the_notification_is_sent() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let r = app
        .send(json!({
            "to": {"users": ["ana"]},
            "title": "x",
            "actions": [
                {"id": "a", "label": "A", "url": "/a", "once": true},
                {"id": "b", "label": "B", "kind": "callback", "form": {"fields": [
                    {"name": "d", "label": "D", "type": "time"},
                    {"name": "d", "label": "E", "type": "select"}]}}
            ]
        }))
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "actions[0].once",
            "actions[1].form.fields[0].type",
            "actions[1].form.fields[1].name",
            "actions[1].form.fields[1].options"
        ],
        "{p}"
    );
}

#[tokio::test]
async fn closing_a_sticky_reminder_is_recorded_and_reaches_every_device() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"groups": ["support"]})).await;
    let direct = app
        .send_ok(json!({"to": {"users": ["ana"]}, "title": "Call back Mr. Ode", "sticky": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let broadcast = app
        .send_ok(json!({"to": {"groups": ["support"]}, "title": "Rota due today", "sticky": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = app.token("ana").await;
    let inbox = app.inbox(&token, "").await;
    for id in [&direct, &broadcast] {
        let it = item(&inbox, id);
        assert_eq!(it["sticky"], true);
        assert_eq!(it["dismissed"], false, "{it}");
    }
    // Another device of Ana's is open.
    let mut other = app.sse(&token, None).await;
    other.next_of("counts").await;
    for id in [&direct, &broadcast] {
        let r = app
            .me(
                Method::POST,
                &format!("/notifications/{id}/dismiss"),
                &token,
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let e = other.next_of("state").await;
        assert_eq!(e.data["action"], "items", "{:?}", e.data);
        assert_eq!(e.data["op"], "dismiss");
        assert_eq!(e.data["ids"], json!([id]));
    }
    // Twice is fine; the state stays; it is still unread (closing is not reading).
    let r = app
        .me(
            Method::POST,
            &format!("/notifications/{direct}/dismiss"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let inbox = app.inbox(&token, "?filter=unread").await;
    for id in [&direct, &broadcast] {
        let it = item(&inbox, id);
        assert_eq!(it["dismissed"], true, "{it}");
        assert_eq!(it["read"], false, "{it}");
    }
    assert_eq!(app.counts(&token).await.0, 2);
    let r = app
        .me(
            Method::POST,
            "/notifications/01JZZZZZZZZZZZZZZZZZZZZZZZ/dismiss",
            &token,
            None,
        )
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    // Admin keys for a user, under /v1/users/{id}.
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/users/ana/notifications/{broadcast}/dismiss"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
