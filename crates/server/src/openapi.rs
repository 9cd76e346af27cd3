//! The OpenAPI description's frame: title, security schemes, tags. The paths
//! are collected from the handlers' `#[utoipa::path]` annotations; [`finish`]
//! then adds what the annotations cannot say once for all operations (the
//! problem responses every operation can give, the formats of identifiers in
//! paths), so that the description matches what the server really answers.

use serde_json::{Value, json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Belfry",
        description = "Belfry, a self-hosted notification center. Producers send with a secret key \
(`Authorization: Bearer bfy_sk_…`, scopes `send` or `admin`); browsers read one user's inbox with \
a user token under `/v1/me/...`. Every `/v1/me/...` inbox endpoint also exists as \
`/v1/users/{user_id}/...` for admin keys. Errors are `application/problem+json` with a stable \
`code`. Request bodies are JSON and unknown fields are refused (422) so that typos are reported.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(crate::error::Problem, belfry_core::FieldError)),
    tags(
        (name = "notifications", description = "Sending (secret key)"),
        (name = "inbox", description = "One user's inbox (user token)"),
        (name = "users", description = "Users, groups and user tokens (admin key)"),
        (name = "subscriptions", description = "Who follows an entity (send key; listings need admin)"),
        (name = "categories", description = "Categories: default channels, critical, fallback, quiet hours (admin key)"),
        (name = "preferences", description = "What reaches a user where and when (user token; admin key for others and defaults)"),
        (name = "push", description = "Web push (C5) and mobile push (C6): the VAPID public key, a user's browser push subscriptions and mobile devices (FCM, APNs; user token; admin key under /v1/users/{user_id}/...)"),
        (name = "chat", description = "Chat targets of users and groups: Slack, Microsoft Teams, signed webhooks (admin key)"),
        (name = "access", description = "People without an account: access tokens for external contacts (admin key; verify also with a send key), the JWKS for offline checks and one-click unsubscribe (public)"),
        (name = "admin", description = "The administration console: sign-in with an admin account (a `belfry_admin` session cookie that is an admin credential for every endpoint; changes need `X-CSRF-Token`), administrators, and the console's lists, counts and settings (admin key or session)"),
        (name = "keys", description = "Secret keys: list, create (the secret shown once), revoke (admin key or console session)"),
        (name = "sources", description = "Sources (integrations that send) and the send keys bound to them (admin key)"),
        (name = "webhooks", description = "Webhooks to producers: delivery.sent, delivery.failed, notification.read, action.submitted, signed per Standard Webhooks, with retries and an attempts log (admin key)"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "secret_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A secret key, bfy_sk_…"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::admin::COOKIE,
                "The console's session cookie from POST /v1/admin/sessions; an admin credential. \
                 Requests that change something also need the session's CSRF token in X-CSRF-Token",
            ))),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A user token from POST /v1/users/{id}/tokens"))
                    .build(),
            ),
        );
    }
}

/// The document before paths are added.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Identifiers as `belfry_core::ids` parses them: user ids and entity ids
/// (1-128 of letters, digits, `- _ . : @ + =`), group ids (1-64 of the
/// same), entity types (1-64 of lower-case letters, digits, `- _ .`).
const ID_PATTERN: &str = "^[A-Za-z0-9._:@+=-]{1,128}$";
const GROUP_PATTERN: &str = "^[A-Za-z0-9._:@+=-]{1,64}$";
const KIND_PATTERN: &str = "^[a-z0-9._-]{1,64}$";
/// A plausible address (`EmailAddress::parse` accepts a little more).
const EMAIL_PATTERN: &str = "^[A-Za-z0-9_+-]{1,20}(\\.[A-Za-z0-9_+-]{1,20}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?\\.){0,3}[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?$";

fn path_parameter_schema(name: &str) -> Option<Value> {
    let (pattern, max) = match name {
        "user_id" | "entity_id" => (ID_PATTERN, 128),
        "group_id" => (GROUP_PATTERN, 64),
        "entity_type" | "category_id" | "template_id" | "rule_id" | "webhook_id" | "source_id" => {
            (KIND_PATTERN, 64)
        }
        "email" => (EMAIL_PATTERN, 254),
        "admin_id" => ("^adm_[0-9a-f]{16}$", 20),
        "key_id" => ("^key_[0-9a-f]{16}$", 20),
        _ => return None,
    };
    Some(json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": pattern}))
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Completes the generated document (see the module comment). Works on the
/// JSON form so that it does not depend on utoipa's builders.
pub fn finish(mut doc: Value) -> Value {
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let has_path_params = path.contains('{');
            for method in methods {
                let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                    continue;
                };
                finish_parameters(op);
                let secured = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                let has_body = op.contains_key("requestBody");
                let responses = op
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("responses is an object");
                finish_responses(responses);
                // Every operation reads or writes the database.
                responses.entry("503".to_string()).or_insert_with(|| {
                    let mut r = problem(
                        "Temporarily unable, retry after `Retry-After` seconds: this node sheds writes (`overloaded`), the database is busy, full or does not answer (`database_busy`, `storage_full`, `database_unavailable`), or the node is shutting down (`unavailable`)",
                    );
                    r["headers"] = json!({"Retry-After": {
                        "description": "Seconds to wait before retrying",
                        "required": true,
                        "schema": {"type": "integer", "minimum": 1}
                    }});
                    r
                });
                if secured {
                    responses.entry("429".to_string()).or_insert_with(|| {
                        let mut r = problem(
                            "Too many requests with this secret key (`rate_limited`, with `BELFRY_RATE_LIMIT` set); retry after `Retry-After` seconds",
                        );
                        r["headers"] = json!({"Retry-After": {
                            "description": "Seconds to wait before retrying",
                            "required": true,
                            "schema": {"type": "integer", "minimum": 1}
                        }});
                        r
                    });
                }
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem(description));
                };
                add(
                    "400",
                    "Malformed request: an unknown or invalid query parameter, path segment or header (`unknown_parameter`, `invalid_query`, `invalid_path`, `invalid_header`), or a body that is not JSON (`invalid_json`)",
                );
                if secured {
                    add(
                        "401",
                        "No valid credentials (`unauthorized`): a missing, unknown, revoked or expired key or token, or a secret key in the query string",
                    );
                    add(
                        "403",
                        "The credentials do not reach this endpoint (`forbidden`): a user token outside /v1/me/..., a secret key on /v1/me/..., a send key on an admin endpoint",
                    );
                }
                if has_path_params {
                    add("404", "No such resource (`not_found`)");
                }
                if has_body {
                    add("413", "The body is too large (`payload_too_large`)");
                    add("415", "The body is not JSON (`unsupported_media_type`)");
                    add(
                        "422",
                        "Well-formed but invalid: fields that are wrong or missing, unknown recipients or categories, a critical category switched off, over a limit (`invalid_body`, `unknown_user`, `unknown_group`, `unknown_category`, `critical_category`, `too_many_recipients`)",
                    );
                }
            }
        }
    }
    doc
}

/// Path identifiers get their formats; optional headers are strings.
fn finish_parameters(op: &mut serde_json::Map<String, Value>) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        match p["in"].as_str() {
            Some("path") => {
                if let Some(schema) = path_parameter_schema(&name) {
                    p["schema"] = schema;
                }
            }
            // A schema the operation states itself (e.g. the delivery log's
            // larger `limit` and its own cursor form) is kept.
            Some("query")
                if p["schema"].get("pattern").is_some() || p["schema"].get("maximum").is_some() => {
            }
            Some("query") => {
                let schema = match name.as_str() {
                    "filter" => json!({"type": "string", "enum": ["unread", "all", "archived"]}),
                    "category" => json!({"type": "string", "pattern": "^([a-z0-9._-]{1,64})?$"}),
                    "limit" => json!({"type": "integer", "minimum": 1, "maximum": 100}),
                    "cursor" => json!({"type": "string", "pattern": "^([1-9][0-9]{0,17})?$"}),
                    "after" => json!({"type": "string", "pattern": "^[0-9]{1,15}$"}),
                    _ => continue,
                };
                p["schema"] = schema;
            }
            Some("header") if name.eq_ignore_ascii_case("idempotency-key") => {
                p["schema"] = json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"});
            }
            Some("header") if name.eq_ignore_ascii_case("last-event-id") => {
                p["schema"] = json!({"type": "string", "pattern": "^[0-9]{1,15}$"});
            }
            _ => {}
        }
    }
}

/// Problem documents are `application/problem+json`; every response has a
/// description (required by OpenAPI).
fn finish_responses(responses: &mut serde_json::Map<String, Value>) {
    for (status, response) in responses.iter_mut() {
        let Some(r) = response.as_object_mut() else {
            continue;
        };
        if let Some(content) = r.get_mut("content").and_then(Value::as_object_mut)
            && let Some(json) = content.get("application/json")
            && json["schema"]["$ref"] == "#/components/schemas/Problem"
        {
            let json = content.remove("application/json").expect("present");
            content.insert("application/problem+json".into(), json);
        }
        r.entry("description").or_insert_with(|| {
            let text = match status.as_str() {
                "200" | "201" | "202" => "Success",
                "204" => "Done, no content",
                _ => "See the problem document",
            };
            Value::String(text.into())
        });
    }
}
