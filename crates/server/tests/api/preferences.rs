//! Categories (admin) and preferences (users, admins, defaults).

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};
use belfry_server::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_fresh_belfry_has_the_built_in_categories_and_they_are_editable() {
    let app = spawn_app().await;
    let list = ok(app.admin(Method::GET, "/v1/categories", None).await).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "announcement",
            "assignment",
            "customer_reply",
            "mention",
            "reminder",
            "reopened",
            "system"
        ]
    );
    // As seeded by the migration: the same as the code's built-ins.
    let mut builtin = belfry_core::category::builtin();
    builtin.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(list["items"], serde_json::to_value(&builtin).unwrap());
    let system = ok(app.admin(Method::GET, "/v1/categories/system", None).await).await;
    assert_eq!(system["critical"], true);
    assert_eq!(system["bypass_quiet_hours"], true);

    // Fields left out are kept.
    let changed = ok(app
        .admin(
            Method::PUT,
            "/v1/categories/mention",
            Some(json!({"icon": "at", "defaults": {"email": "instant", "web_push": true, "mobile_push": false, "chat": false}, "email_fallback_after": 900})),
        )
        .await)
    .await;
    assert_eq!(changed["name"], "Mentions");
    assert_eq!(changed["icon"], "at");
    assert_eq!(changed["defaults"]["email"], "instant");
    assert_eq!(changed["email_fallback_after"], 900);
    let read = ok(app.admin(Method::GET, "/v1/categories/mention", None).await).await;
    assert_eq!(read, changed);

    // A new one takes the defaults.
    let new = ok(app
        .admin(Method::PUT, "/v1/categories/invoice.paid", None)
        .await)
    .await;
    assert_eq!(
        new,
        json!({"id": "invoice.paid", "name": "invoice.paid", "icon": null, "critical": false,
               "defaults": {"email": "off", "web_push": true, "mobile_push": true, "chat": false},
               "email_fallback_after": null, "bypass_quiet_hours": false})
    );

    let r = app
        .admin(Method::DELETE, "/v1/categories/invoice.paid", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.admin(Method::GET, "/v1/categories/invoice.paid", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.admin(Method::DELETE, "/v1/categories/invoice.paid", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bad_categories_are_refused_with_what_to_fix() {
    let app = spawn_app().await;
    let v = assert_problem(
        app.admin(
            Method::PUT,
            "/v1/categories/x",
            Some(json!({"name": "", "email_fallback_after": 1})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "email_fallback_after"]);
    assert_problem(
        app.admin(
            Method::PUT,
            "/v1/categories/x",
            Some(json!({"defaults": {"email": "weekly"}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert_problem(
        app.admin(Method::PUT, "/v1/categories/Not%20Valid", None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    // Admin only.
    let send_key = app.key_with_scope(belfry_store::Scope::Send).await;
    let r = app
        .call(Method::GET, "/v1/categories", &send_key, None)
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_send_naming_an_unknown_category_is_refused() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let v = assert_problem(
        app.send(json!({"to": {"users": ["ana"]}, "title": "t", "category": "gossip"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_category",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "category");
    // In a batch, by index; nothing of the batch is stored.
    let r = app
        .admin(
            Method::POST,
            "/v1/notifications/batch",
            Some(json!({"notifications": [
                {"to": {"users": ["ana"]}, "title": "ok", "category": "mention"},
                {"to": {"users": ["ana"]}, "title": "no", "category": "gossip"},
            ]})),
        )
        .await;
    let v = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_category").await;
    assert_eq!(v["errors"][0]["field"], "notifications[1].category");
    let t = app.token("ana").await;
    assert_eq!(app.counts(&t).await, (0, 0));
    // Created through the API, it is accepted at once.
    ok(app.admin(Method::PUT, "/v1/categories/gossip", None).await).await;
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "t", "category": "gossip"}))
        .await;
    // Deleted: refused again.
    app.admin(Method::DELETE, "/v1/categories/gossip", None)
        .await;
    assert_problem(
        app.send(json!({"to": {"users": ["ana"]}, "title": "t", "category": "gossip"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_category",
    )
    .await;
}

#[tokio::test]
async fn a_category_created_through_another_node_is_known_at_once() {
    let app = spawn_app().await;
    let other = app.another_node().await;
    app.users(&["ana"]).await;
    ok(other
        .admin(Method::PUT, "/v1/categories/gossip", None)
        .await)
    .await;
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "t", "category": "gossip"}))
        .await;
}

#[tokio::test]
async fn auto_categories_creates_unknown_ones() {
    let app = spawn_app_with(Config {
        auto_categories: true,
        ..Config::default()
    })
    .await;
    app.users(&["ana"]).await;
    app.send_ok(json!({"to": {"users": ["ana"]}, "title": "t", "category": "gossip"}))
        .await;
    let c = ok(app.admin(Method::GET, "/v1/categories/gossip", None).await).await;
    assert_eq!(c["critical"], false);
    assert_eq!(c["defaults"]["email"], "off");
}

#[tokio::test]
async fn preferences_start_from_the_defaults_and_keep_what_is_left_out() {
    let app = spawn_app().await;
    app.put_user("ana", json!({"timezone": "Europe/Berlin"}))
        .await;
    let t = app.token("ana").await;
    let p = ok(app.me(Method::GET, "/preferences", &t, None).await).await;
    assert_eq!(p["enabled"], true);
    assert_eq!(
        p["channels"],
        json!({"email": true, "web_push": true, "mobile_push": true, "chat": true})
    );
    assert_eq!(p["categories"], json!({}));
    assert_eq!(p["digest"], json!({"time": "18:00"}));
    assert_eq!(p["quiet_hours"], Value::Null);
    assert_eq!(p["timezone"], "Europe/Berlin");
    let system = p["available"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "system")
        .unwrap()
        .clone();
    assert_eq!(
        system,
        json!({"id": "system", "name": "System notices", "icon": "system", "critical": true,
               "defaults": {"email": "off", "web_push": true, "mobile_push": true, "chat": false}})
    );
    // Each category's own defaults are there too: what applies without a
    // choice (the widget's preferences panel shows them), and they follow
    // the administrator's edits.
    ok(app
        .admin(
            Method::PUT,
            "/v1/categories/mention",
            Some(json!({"defaults": {"email": "instant", "web_push": false, "mobile_push": true, "chat": true}})),
        )
        .await)
    .await;
    let p = ok(app.me(Method::GET, "/preferences", &t, None).await).await;
    let mention = p["available"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "mention")
        .unwrap()
        .clone();
    assert_eq!(
        mention["defaults"],
        json!({"email": "instant", "web_push": false, "mobile_push": true, "chat": true})
    );
    assert_eq!(p["categories"], json!({}), "still no choice of ana's own");

    let p = ok(app
        .me(
            Method::PUT,
            "/preferences",
            &t,
            Some(json!({"channels": {"web_push": false},
                        "categories": {"mention": {"email": "instant", "web_push": false}},
                        "sources": {"helpdesk": {"email": "off"}},
                        "digest": {"time": "07:30"},
                        "quiet_hours": {"start": "22:00", "end": "07:00", "days": ["mon", "tue"]}})),
        )
        .await)
    .await;
    assert_eq!(p["channels"]["web_push"], false);
    assert_eq!(p["channels"]["email"], true);
    assert_eq!(
        p["categories"],
        json!({"mention": {"email": "instant", "web_push": false}})
    );
    assert_eq!(p["sources"], json!({"helpdesk": {"email": "off"}}));
    assert_eq!(
        p["available"]["sources"],
        json!([{"id": "helpdesk", "name": "helpdesk"}])
    );
    assert_eq!(
        p["quiet_hours"],
        json!({"start": "22:00", "end": "07:00", "days": ["mon", "tue"]})
    );

    // Left out: kept; null: back to the default.
    let p = ok(app
        .me(
            Method::PUT,
            "/preferences",
            &t,
            Some(json!({"enabled": false, "categories": {"mention": {"email": null}}, "quiet_hours": null})),
        )
        .await)
    .await;
    assert_eq!(p["enabled"], false);
    assert_eq!(p["channels"]["web_push"], false);
    assert_eq!(p["categories"], json!({"mention": {"web_push": false}}));
    assert_eq!(p["digest"]["time"], "07:30");
    assert_eq!(p["quiet_hours"], Value::Null);
    // Read back, also by an admin.
    let mine = ok(app.me(Method::GET, "/preferences", &t, None).await).await;
    assert_eq!(mine, p);
    let theirs = ok(app
        .admin(Method::GET, "/v1/users/ana/preferences", None)
        .await)
    .await;
    assert_eq!(theirs, p);
}

#[tokio::test]
async fn bad_preferences_name_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.users(&["ana"]).await;
    let t = app.token("ana").await;
    let v = assert_problem(
        app.me(
            Method::PUT,
            "/preferences",
            &t,
            Some(json!({"enabled": false,
                        "channels": {"in_app": false, "fax": true},
                        "categories": {"gossip": {"email": "off"}, "mention": {"email": "weekly"}},
                        "sources": {"Bad Source": {"email": "off"}},
                        "quiet_hours": {"start": "22:00", "end": "7am"},
                        "digest": {"time": "24:00"}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    let mut fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "categories.gossip",
            "categories.mention.email",
            "channels.fax",
            "channels.in_app",
            "digest.time",
            "quiet_hours.end",
            "sources.Bad Source"
        ]
    );
    let p = ok(app.me(Method::GET, "/preferences", &t, None).await).await;
    assert_eq!(p["enabled"], true, "nothing was applied");

    let v = assert_problem(
        app.me(
            Method::PUT,
            "/preferences",
            &t,
            Some(json!({"categories": {"system": {"email": "off"}}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "critical_category",
    )
    .await;
    assert_eq!(v["errors"][0]["field"], "categories.system.email");
    ok(app
        .me(
            Method::PUT,
            "/preferences",
            &t,
            Some(json!({"categories": {"system": {"email": "instant"}}})),
        )
        .await)
    .await;
    // Not an object at all.
    assert_problem(
        app.me(Method::PUT, "/preferences", &t, Some(json!([1])))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
}

#[tokio::test]
async fn who_may_read_and_change_preferences() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let t = app.token("ana").await;
    // A user token reaches only its own.
    assert_problem(
        app.call(Method::GET, "/v1/users/bo/preferences", &t, None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.call(Method::GET, "/v1/preferences/defaults", &t, None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.admin(Method::GET, "/v1/users/nobody/preferences", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.admin(
            Method::PUT,
            "/v1/users/nobody/preferences",
            Some(json!({"enabled": false})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn defaults_apply_to_users_without_a_choice_of_their_own() {
    let app = spawn_app().await;
    app.users(&["ana", "bo"]).await;
    let d = ok(app
        .admin(
            Method::PUT,
            "/v1/preferences/defaults",
            Some(json!({"channels": {"chat": false}, "quiet_hours": {"start": "20:00", "end": "06:00"}})),
        )
        .await)
    .await;
    assert_eq!(d["channels"]["chat"], false);
    assert_eq!(d["timezone"], Value::Null);
    assert_eq!(
        ok(app
            .admin(Method::GET, "/v1/preferences/defaults", None)
            .await)
        .await,
        d
    );
    // Bo chose chat; Ana did not.
    ok(app
        .admin(
            Method::PUT,
            "/v1/users/bo/preferences",
            Some(json!({"channels": {"chat": true}})),
        )
        .await)
    .await;
    let ana = ok(app
        .admin(Method::GET, "/v1/users/ana/preferences", None)
        .await)
    .await;
    let bo = ok(app
        .admin(Method::GET, "/v1/users/bo/preferences", None)
        .await)
    .await;
    assert_eq!(ana["channels"]["chat"], false);
    assert_eq!(bo["channels"]["chat"], true);
    assert_eq!(ana["quiet_hours"]["start"], "20:00");
    assert_eq!(
        ana["quiet_hours"]["days"],
        json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    );
    assert_problem(
        app.admin(
            Method::PUT,
            "/v1/preferences/defaults",
            Some(json!({"categories": {"system": {"web_push": false}}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "critical_category",
    )
    .await;
}

/// The email path honours preferences: each reason for not emailing is in
/// the delivery log; quiet hours hold an email until they end (real SMTP
/// server, clock moved by the test, jobs drained by the test).
mod delivery {
    use super::ok;
    use crate::helpers::*;
    use belfry_core::{Clock, Millis};
    use reqwest::Method;
    use serde_json::{Value, json};

    async fn app_with_smtp(sink: &SmtpSink) -> TestApp {
        spawn_app_with(belfry_server::Config {
            smtp_url: Some(sink.url().into()),
            run_workers: false,
            ..Default::default()
        })
        .await
    }

    async fn email_lines(app: &TestApp, id: &str) -> Vec<Value> {
        let r = app
            .admin(
                Method::GET,
                &format!("/v1/notifications/{id}/deliveries"),
                None,
            )
            .await;
        let v = ok(r).await;
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["channel"] == "email")
            .cloned()
            .collect()
    }

    async fn send_email(app: &TestApp, user: &str, extra: Value) -> String {
        let mut body =
            json!({"to": {"users": [user]}, "channels": ["in_app", "email"], "title": "Hello"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        app.send_ok(body).await["id"].as_str().unwrap().to_string()
    }

    async fn prefs(app: &TestApp, user: &str, body: Value) {
        ok(app
            .admin(
                Method::PUT,
                &format!("/v1/users/{user}/preferences"),
                Some(body),
            )
            .await)
        .await;
    }

    /// A category that does not email by default (the built-in ones): a
    /// person who switches email on for it, or for the source, gets the
    /// email anyway; so does everyone when the administrators' defaults
    /// switch it on, except who switched it off again.
    #[tokio::test]
    async fn who_switched_email_on_gets_it_where_the_category_does_not_email() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        for user in ["ana", "bo", "cy", "dee"] {
            app.put_user(user, json!({"email": format!("{user}@example.com")}))
                .await;
        }
        prefs(
            &app,
            "ana",
            json!({"categories": {"mention": {"email": "instant"}}}),
        )
        .await;
        prefs(
            &app,
            "cy",
            json!({"sources": {"helpdesk": {"email": "instant"}}}),
        )
        .await;
        // Dee chose email for mentions, but from the helpdesk not at all:
        // either "off" suppresses it, and the log says which.
        prefs(
            &app,
            "dee",
            json!({"categories": {"mention": {"email": "instant"}}, "sources": {"helpdesk": {"email": "off"}}}),
        )
        .await;
        let sent = app
            .send_ok(
                json!({"to": {"users": ["ana", "bo", "cy", "dee"]}, "title": "You were mentioned",
                            "category": "mention", "source": "helpdesk"}),
            )
            .await;
        app.run_due_jobs().await;
        let mut to: Vec<String> = sink
            .messages()
            .iter()
            .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
            .collect();
        to.sort();
        assert_eq!(to, ["ana@example.com", "cy@example.com"]);
        let id = sent["id"].as_str().unwrap();
        let lines = email_lines(&app, id).await;
        let of = |user: &str| -> Vec<(String, Value)> {
            lines
                .iter()
                .filter(|l| l["recipient"] == format!("user:{user}") && l["status"] != "queued")
                .map(|l| {
                    (
                        l["status"].as_str().unwrap().to_string(),
                        l["reason"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(of("ana"), [("sent".to_string(), Value::Null)]);
        assert_eq!(of("dee"), [("suppressed".to_string(), json!("source_off"))]);
        assert!(
            of("bo").is_empty(),
            "no email job for who did not choose it"
        );

        // The administrators switch email on for reminders: everyone who
        // did not choose otherwise gets them; Bo switched them off.
        ok(app
            .admin(
                Method::PUT,
                "/v1/preferences/defaults",
                Some(json!({"categories": {"reminder": {"email": "instant"}}})),
            )
            .await)
        .await;
        prefs(
            &app,
            "bo",
            json!({"categories": {"reminder": {"email": "off"}}}),
        )
        .await;
        app.send_ok(json!({"to": {"users": ["ana", "bo", "cy"]}, "title": "Standup in 5", "category": "reminder"}))
            .await;
        app.run_due_jobs().await;
        let mut to: Vec<String> = sink.messages()[2..]
            .iter()
            .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
            .collect();
        to.sort();
        assert_eq!(to, ["ana@example.com", "cy@example.com"]);
        // A send that names its channels is what it says.
        app.send_ok(
            json!({"to": {"users": ["ana"]}, "title": "In-app only", "category": "mention",
                           "channels": ["in_app"]}),
        )
        .await;
        app.run_due_jobs().await;
        assert_eq!(sink.messages().len(), 4);
    }

    #[tokio::test]
    async fn each_reason_for_not_emailing_is_logged() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        let cases = [
            (
                "master",
                json!({"enabled": false}),
                json!({}),
                "master_switch",
            ),
            (
                "channel",
                json!({"channels": {"email": false}}),
                json!({}),
                "channel_off",
            ),
            (
                "category",
                json!({"categories": {"mention": {"email": "off"}}}),
                json!({"category": "mention"}),
                "category_off",
            ),
            (
                "source",
                json!({"sources": {"helpdesk": {"email": "off"}}}),
                json!({"source": "helpdesk"}),
                "source_off",
            ),
        ];
        let mut ids = Vec::new();
        for (user, p, extra, reason) in &cases {
            app.put_user(user, json!({"email": format!("{user}@example.com")}))
                .await;
            prefs(&app, user, p.clone()).await;
            ids.push((send_email(&app, user, extra.clone()).await, *reason, *user));
        }
        app.put_user("nomail", json!({})).await;
        ids.push((
            send_email(&app, "nomail", json!({})).await,
            "no_address",
            "nomail",
        ));
        // Someone with no preferences of their own gets the email.
        app.put_user("plain", json!({"email": "plain@example.com"}))
            .await;
        let plain = send_email(
            &app,
            "plain",
            json!({"category": "mention", "source": "helpdesk"}),
        )
        .await;
        app.run_due_jobs().await;
        for (id, reason, user) in ids {
            let lines = email_lines(&app, &id).await;
            let last = lines.last().unwrap();
            assert_eq!(last["status"], "suppressed", "{user}: {lines:?}");
            assert_eq!(last["reason"], reason, "{user}");
            assert_eq!(last["recipient"], format!("user:{user}"));
        }
        let lines = email_lines(&app, &plain).await;
        assert_eq!(lines.last().unwrap()["status"], "sent");
        let mails = sink.wait_for(1).await;
        assert_eq!(
            mails.len(),
            1,
            "only the user without preferences: {mails:?}"
        );
        assert_eq!(mails[0]["rcpt_tos"][0], "plain@example.com");
        // The in-app inbox still has everything (P1: in-app stays).
        let t = app.token("master").await;
        assert_eq!(app.counts(&t).await, (1, 1));
    }

    #[tokio::test]
    async fn critical_categories_reach_people_who_switched_everything_off() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        app.put_user("ana", json!({"email": "ana@example.com"}))
            .await;
        prefs(
            &app,
            "ana",
            json!({"enabled": false, "channels": {"email": false}}),
        )
        .await;
        let id = send_email(&app, "ana", json!({"category": "system"})).await;
        let other = send_email(&app, "ana", json!({"category": "mention"})).await;
        app.run_due_jobs().await;
        assert_eq!(
            email_lines(&app, &id).await.last().unwrap()["status"],
            "sent"
        );
        assert_eq!(
            email_lines(&app, &other).await.last().unwrap()["reason"],
            "master_switch"
        );
        assert_eq!(sink.wait_for(1).await.len(), 1);
    }

    #[tokio::test]
    async fn quiet_hours_hold_an_email_until_they_end() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        app.put_user(
            "ana",
            json!({"email": "ana@example.com", "timezone": "Europe/Berlin"}),
        )
        .await;
        prefs(
            &app,
            "ana",
            json!({"quiet_hours": {"start": "22:00", "end": "07:00"}}),
        )
        .await;
        // 23:30 in Berlin (winter, UTC+1).
        app.clock
            .set(Millis::parse_rfc3339("2026-01-14T22:30:00Z").unwrap());
        let id = send_email(&app, "ana", json!({"category": "mention"})).await;
        // A category that bypasses quiet hours (the built-in `system`) goes at once.
        let urgent = send_email(&app, "ana", json!({"category": "system"})).await;
        app.run_due_jobs().await;
        let lines = email_lines(&app, &id).await;
        let held = lines.last().unwrap();
        assert_eq!(held["status"], "held", "{lines:?}");
        assert_eq!(held["until"], "2026-01-15T06:00:00.000Z", "07:00 in Berlin");
        assert_eq!(
            email_lines(&app, &urgent).await.last().unwrap()["status"],
            "sent"
        );
        assert_eq!(sink.wait_for(1).await.len(), 1, "only the urgent one");

        // Nothing more before the end of quiet hours...
        app.clock
            .set(Millis::parse_rfc3339("2026-01-15T05:59:00Z").unwrap());
        app.run_due_jobs().await;
        assert_eq!(email_lines(&app, &id).await.len(), lines.len());
        // ...then it goes.
        app.clock
            .set(Millis::parse_rfc3339("2026-01-15T06:00:00Z").unwrap());
        app.run_due_jobs().await;
        let lines = email_lines(&app, &id).await;
        assert_eq!(lines.last().unwrap()["status"], "sent", "{lines:?}");
        assert_eq!(
            lines.last().unwrap()["attempt"],
            1,
            "holding was no attempt"
        );
        assert_eq!(sink.wait_for(2).await.len(), 2);
    }

    #[tokio::test]
    async fn a_preference_changed_while_held_applies_when_released() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        app.put_user("ana", json!({"email": "ana@example.com"}))
            .await;
        prefs(
            &app,
            "ana",
            json!({"quiet_hours": {"start": "22:00", "end": "07:00"}}),
        )
        .await;
        app.clock
            .set(Millis::parse_rfc3339("2026-01-14T23:00:00Z").unwrap());
        let id = send_email(&app, "ana", json!({})).await;
        app.run_due_jobs().await;
        assert_eq!(
            email_lines(&app, &id).await.last().unwrap()["status"],
            "held"
        );
        prefs(&app, "ana", json!({"channels": {"email": false}})).await;
        app.clock
            .set(Millis::parse_rfc3339("2026-01-15T07:00:00Z").unwrap());
        app.run_due_jobs().await;
        let last = email_lines(&app, &id).await.last().unwrap().clone();
        assert_eq!(
            (last["status"].as_str(), last["reason"].as_str()),
            (Some("suppressed"), Some("channel_off"))
        );
        assert!(sink.messages().is_empty());
    }

    #[tokio::test]
    async fn email_fallback_only_when_not_seen_or_read_in_the_app() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        app.put_user("ana", json!({"email": "ana@example.com"}))
            .await;
        app.put_user("bo", json!({"email": "bo@example.com"})).await;
        ok(app
            .admin(
                Method::PUT,
                "/v1/categories/mention",
                Some(json!({"email_fallback_after": 600})),
            )
            .await)
        .await;
        let read = send_email(
            &app,
            "ana",
            json!({"category": "mention", "title": "read it"}),
        )
        .await;
        let unread = send_email(
            &app,
            "ana",
            json!({"category": "mention", "title": "ignored"}),
        )
        .await;
        let seen = send_email(&app, "bo", json!({"category": "mention"})).await;
        let start = app.clock.now();
        app.run_due_jobs().await;
        for id in [&read, &unread, &seen] {
            let lines = email_lines(&app, id).await;
            let held = lines.last().unwrap();
            assert_eq!(held["status"], "held", "{lines:?}");
            assert_eq!(held["until"], Millis(start.0 + 600_000).to_rfc3339());
        }
        assert!(
            sink.messages().is_empty(),
            "the in-app notification goes first"
        );
        // Ana reads one; Bo opens the drawer (sees everything).
        let ana = app.token("ana").await;
        app.me_post(
            &ana,
            &format!("/notifications/{read}/read"),
            None,
            reqwest::StatusCode::NO_CONTENT,
        )
        .await;
        let bo = app.token("bo").await;
        app.me_post(
            &bo,
            "/notifications/seen-all",
            None,
            reqwest::StatusCode::NO_CONTENT,
        )
        .await;
        app.clock.advance_secs(599);
        app.run_due_jobs().await;
        assert!(sink.messages().is_empty(), "not before the delay");
        app.clock.advance_secs(1);
        app.run_due_jobs().await;
        for id in [&read, &seen] {
            let last = email_lines(&app, id).await.last().unwrap().clone();
            assert_eq!(last["status"], "suppressed");
            assert_eq!(last["reason"], "seen_in_app");
        }
        let last = email_lines(&app, &unread).await.last().unwrap().clone();
        assert_eq!(last["status"], "sent");
        let mails = sink.wait_for(1).await;
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0]["rcpt_tos"][0], "ana@example.com");
    }

    #[tokio::test]
    async fn a_category_that_emails_by_default_needs_no_channels_on_the_send() {
        let sink = SmtpSink::start("accept");
        let app = app_with_smtp(&sink).await;
        app.put_user("ana", json!({"email": "ana@example.com"}))
            .await;
        app.put_user("bo", json!({"email": "bo@example.com"})).await;
        prefs(
            &app,
            "bo",
            json!({"categories": {"assignment": {"email": "off"}}}),
        )
        .await;
        ok(app
            .admin(
                Method::PUT,
                "/v1/categories/assignment",
                Some(json!({"defaults": {"email": "instant", "web_push": true, "mobile_push": true, "chat": false}})),
            )
            .await)
        .await;
        let id = app
            .send_ok(json!({"to": {"users": ["ana", "bo"]}, "title": "Ticket #1 assigned", "category": "assignment"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Another category still emails only when asked.
        let quiet = app
            .send_ok(json!({"to": {"users": ["ana"]}, "title": "Hi", "category": "mention"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        app.run_due_jobs().await;
        let lines = email_lines(&app, &id).await;
        let status = |user: &str| {
            lines
                .iter()
                .rev()
                .find(|l| l["recipient"] == format!("user:{user}"))
                .map(|l| (l["status"].clone(), l["reason"].clone()))
                .unwrap()
        };
        assert_eq!(status("ana"), (json!("sent"), Value::Null));
        assert_eq!(status("bo"), (json!("suppressed"), json!("category_off")));
        assert!(email_lines(&app, &quiet).await.is_empty());
        assert_eq!(sink.wait_for(1).await.len(), 1);
    }
}

#[tokio::test]
async fn the_description_documents_categories_preferences_and_rate_limits() {
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
    for (path, methods) in [
        ("/v1/categories", vec!["get"]),
        ("/v1/categories/{category_id}", vec!["get", "put", "delete"]),
        ("/v1/me/preferences", vec!["get", "put"]),
        ("/v1/users/{user_id}/preferences", vec!["get", "put"]),
        ("/v1/preferences/defaults", vec!["get", "put"]),
    ] {
        for m in methods {
            let op = &paths[path][m];
            assert!(
                op["responses"]["200"].is_object() || op["responses"]["204"].is_object(),
                "{m} {path}"
            );
            let retry = &op["responses"]["429"]["headers"]["Retry-After"];
            assert_eq!(retry["required"], true, "{m} {path}");
        }
    }
    let schemas = &doc["components"]["schemas"];
    // Choices left out are left out of the answer, so none is required.
    let choice = &schemas["OverrideView"];
    assert!(
        choice["required"].as_array().is_none_or(|r| r.is_empty()),
        "{choice}"
    );
    let line = &schemas["DeliveryEvent"]["properties"];
    assert!(
        line["reason"].is_object() && line["until"].is_object(),
        "{line}"
    );
    let status = &schemas["DeliveryStatus"]["enum"];
    for s in ["held", "digested", "suppressed"] {
        assert!(status.as_array().unwrap().contains(&json!(s)), "{status}");
    }
}
