//! People without an account (C9, S3): access tokens for external contacts
//! (`/v1/access-tokens`: mint, verify online, revoke; the public keys for
//! offline verification at `/.well-known/jwks.json`), and the one-click
//! unsubscribe of every email (`/v1/unsubscribe/{token}`, RFC 8058: a POST
//! unsubscribes, a GET only shows a page with a button, so that link
//! scanners unsubscribe no one).
//!
//! Verification answers which contact and which entity a token is for; the
//! host application compares the entity with the page being opened.

use crate::AppState;
use crate::auth::{AdminKey, SendKey};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use belfry_core::{EmailAddress, EntityRef, ValidationErrors};
use belfry_delivery::Unsubscribe;
use belfry_delivery::access::{AccessError, DEFAULT_TTL_DAYS, MAX_TTL_DAYS};
use belfry_store::{AccessRevocation, AccessTokenRef, Subscriber};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mint))
        .routes(routes!(verify))
        .routes(routes!(revoke))
        .routes(routes!(jwks))
        .routes(routes!(unsubscribe_page, unsubscribe))
}

/// An entity as `{"type": "ticket", "id": "123"}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
struct EntityBody {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

impl From<&EntityRef> for EntityBody {
    fn from(e: &EntityRef) -> Self {
        EntityBody {
            kind: e.kind.clone(),
            id: e.id.clone(),
        }
    }
}

/// The entity of a request body: an object `{"type", "id"}`, or `type:id`.
fn parse_entity(
    errors: &mut ValidationErrors,
    value: Option<&serde_json::Value>,
) -> Option<EntityRef> {
    let parsed = match value {
        None | Some(serde_json::Value::Null) => {
            Err("is required: {\"type\": \"ticket\", \"id\": \"123\"}".to_string())
        }
        Some(serde_json::Value::Object(o)) => match (
            o.get("type").and_then(|v| v.as_str()),
            o.get("id").and_then(|v| v.as_str()),
            o.len(),
        ) {
            (Some(kind), Some(id), 2) => EntityRef::parse(kind, id),
            _ => Err(
                "must be {\"type\": \"ticket\", \"id\": \"123\"} (two strings, nothing else)"
                    .into(),
            ),
        },
        Some(serde_json::Value::String(s)) => match s.split_once(':') {
            Some((kind, id)) => EntityRef::parse(kind, id),
            None => Err("must be an object {\"type\", \"id\"} or a string 'type:id'".into()),
        },
        Some(_) => Err("must be an object {\"type\", \"id\"} or a string 'type:id'".into()),
    };
    errors.take("entity", parsed)
}

fn parse_email(errors: &mut ValidationErrors, value: Option<&str>) -> Option<EmailAddress> {
    let parsed = match value {
        Some(v) => EmailAddress::parse(v),
        None => Err("is required".into()),
    };
    errors.take("email", parsed)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    /// The external contact's address (the token's `sub`).
    email: Option<String>,
    /// The entity the token opens: `{"type": "ticket", "id": "123"}`.
    #[schema(value_type = Option<EntityBody>)]
    entity: Option<serde_json::Value>,
    /// Days until it expires: 1 to 365, default 14.
    ttl_days: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Minted {
    /// The JWT (ES256), for `?access_token=` in the link.
    token: String,
    /// The token's id (`jti`), to revoke it alone.
    id: String,
    expires_at: String,
}

/// Mint an access token for an external contact and one entity.
///
/// Emails to external contacts carry one of these automatically; this is
/// for links the host application sends itself.
#[utoipa::path(
    post, path = "/v1/access-tokens", tag = "access",
    request_body = MintRequest,
    responses((status = 201, body = Minted), (status = 422, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn mint(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(body): ApiJson<MintRequest>,
) -> ApiResult<(StatusCode, Json<Minted>)> {
    let mut errors = ValidationErrors::new();
    let email = parse_email(&mut errors, body.email.as_deref());
    let entity = parse_entity(&mut errors, body.entity.as_ref());
    let ttl = body.ttl_days.unwrap_or(DEFAULT_TTL_DAYS);
    if !(1..=MAX_TTL_DAYS).contains(&ttl) {
        errors.add(
            "ttl_days",
            format!("must be from 1 to {MAX_TTL_DAYS} (days)"),
        );
    }
    let (Some(email), Some(entity)) = (email, entity) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let t = state.access.mint(&email, &entity, state.clock.now(), ttl);
    Ok((
        StatusCode::CREATED,
        Json(Minted {
            token: t.token,
            id: t.id,
            expires_at: t.expires_at.to_rfc3339(),
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Verified {
    /// The contact the token was issued to.
    email: String,
    /// The entity it opens: compare it with the page being opened.
    entity: EntityBody,
    issued_at: String,
    expires_at: String,
    /// The token's id (`jti`).
    id: String,
}

/// Check an access token online: genuine, unexpired and not revoked.
///
/// 401 with `invalid_token` (malformed, or not signed by this server),
/// `expired` or `revoked`. The answer names the token's entity; the host
/// application compares it with what is being opened. A `send` key may
/// verify too (the host's backend that sends usually holds one).
#[utoipa::path(
    post, path = "/v1/access-tokens/verify", tag = "access",
    request_body = VerifyRequest,
    responses(
        (status = 200, body = Verified),
        (status = 401, body = Problem, description = "`invalid_token`, `expired` or `revoked` (or `unauthorized`: no valid key)"),
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn verify(
    State(state): State<AppState>,
    SendKey(_): SendKey,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Json<Verified>> {
    let Some(token) = body.token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::Validation(ValidationErrors::single(
            "token",
            "is required",
        )));
    };
    let refuse = |code: &'static str, detail: &str| {
        metrics::counter!("belfry_access_token_verifications_total", "outcome" => code)
            .increment(1);
        Err(ApiError::Token {
            code,
            detail: detail.into(),
        })
    };
    let grant = match state.access.check(&token, state.clock.now()) {
        Ok(g) => g,
        Err(AccessError::Invalid) => {
            return refuse(
                "invalid_token",
                "the token is malformed or not signed by this server",
            );
        }
        Err(AccessError::Expired) => {
            return refuse(
                "expired",
                "the token has expired; the contact's next email brings a new link",
            );
        }
    };
    let reference = AccessTokenRef {
        id: grant.id.clone(),
        email: grant.email.clone(),
        entity: grant.entity.clone(),
        issued_at: grant.issued_at,
    };
    if state.store.access_revoked(&reference).await? {
        return refuse("revoked", "the token was revoked");
    }
    metrics::counter!("belfry_access_token_verifications_total", "outcome" => "valid").increment(1);
    Ok(Json(Verified {
        email: grant.email.to_string(),
        entity: EntityBody::from(&grant.entity),
        issued_at: grant.issued_at.to_rfc3339(),
        expires_at: grant.expires_at.to_rfc3339(),
        id: grant.id,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// One token (it must be one this server signed; expired ones too).
    token: Option<String>,
    /// Every token of this contact issued until now.
    email: Option<String>,
    /// Every token for this entity issued until now.
    #[schema(value_type = Option<EntityBody>)]
    entity: Option<serde_json::Value>,
}

/// Revoke access tokens: one (`token`), a contact's (`email`) or an
/// entity's (`entity`); give exactly one.
///
/// Effective at once for online verification, on every node. Tokens minted
/// afterwards for the same contact or entity are valid.
#[utoipa::path(
    post, path = "/v1/access-tokens/revoke", tag = "access",
    request_body = RevokeRequest,
    responses((status = 204, description = "Revoked"), (status = 422, body = Problem)),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn revoke(
    State(state): State<AppState>,
    AdminKey(_): AdminKey,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> ApiResult<StatusCode> {
    let given = [
        body.token.is_some(),
        body.email.is_some(),
        body.entity.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::Validation(ValidationErrors::single(
            "body",
            "give exactly one of token, email or entity",
        )));
    }
    let mut errors = ValidationErrors::new();
    let now = state.clock.now();
    let revocation = if let Some(token) = &body.token {
        match state.access.check(token, now) {
            Ok(g) => Some(AccessRevocation::Token(g.id)),
            // An expired token is revoked all the same (nothing changes).
            Err(AccessError::Expired) => state
                .access
                .check(token, belfry_core::Millis(i64::MIN))
                .ok()
                .map(|g| AccessRevocation::Token(g.id)),
            Err(AccessError::Invalid) => {
                errors.add("token", "is not an access token signed by this server");
                None
            }
        }
    } else if body.email.is_some() {
        parse_email(&mut errors, body.email.as_deref()).map(AccessRevocation::Email)
    } else {
        parse_entity(&mut errors, body.entity.as_ref()).map(AccessRevocation::Entity)
    };
    let Some(revocation) = revocation else {
        return Err(ApiError::Validation(errors));
    };
    state.store.revoke_access(revocation, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct Jwks {
    /// The public keys access tokens are signed with (EC P-256, ES256);
    /// a token's `kid` header names its key.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

/// The public keys of access tokens, for offline verification (public,
/// no credentials).
///
/// Offline verification checks the signature, `exp` and `iss`; revocations
/// are only seen online (`POST /v1/access-tokens/verify`).
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "access",
    responses((status = 200, body = Jwks))
)]
async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(Jwks {
            keys: vec![state.access.key().jwk()],
        }),
    )
        .into_response()
}

fn read_unsubscribe(state: &AppState, token: &str) -> ApiResult<(Unsubscribe, Words)> {
    // Any string is a token by the description: one Belfry did not sign
    // is not found.
    let (what, language) = state.unsubscribe.read(token).ok_or_else(|| {
        ApiError::NotFound(
            "this unsubscribe link is not valid (cut short, or not from this server)".into(),
        )
    })?;
    Ok((what, words(&language)))
}

/// The words of the unsubscribe pages, in the language of the email the
/// link came in (German or English, like the emails).
struct Words {
    lang: &'static str,
    title: &'static str,
    /// `{what}`: what the link ends.
    question: &'static str,
    button: &'static str,
    done_title: &'static str,
    done: &'static str,
    /// `{email}`, `{entity}`.
    contact: &'static str,
    /// `{category}`.
    category: &'static str,
    all: &'static str,
}

fn words(language: &str) -> Words {
    match language {
        "de" => Words {
            lang: "de",
            title: "Abbestellen",
            question: "Möchten Sie {what} abbestellen?",
            button: "Abbestellen",
            done_title: "Abbestellt",
            done: "Sie erhalten diese E-Mails nicht mehr.",
            contact: "die E-Mails an {email} zu {entity}",
            category: "die E-Mails zu {category}",
            all: "alle E-Mails",
        },
        _ => Words {
            lang: "en",
            title: "Unsubscribe",
            question: "Do you want to unsubscribe from {what}?",
            button: "Unsubscribe",
            done_title: "Unsubscribed",
            done: "You will get no more of these emails.",
            contact: "emails to {email} about {entity}",
            category: "emails about {category}",
            all: "all emails",
        },
    }
}

/// HTML-escapes text for the pages below.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(w: &Words, title: &str, body: &str) -> Response {
    html_page(w.lang, title, body)
}

/// A small page for a person who followed a link in an email (no
/// scripts, not indexed, not cached); `title` and `body` are HTML.
pub(super) fn html_page(lang: &str, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title}</title>\n</head>\n\
         <body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;\">\n\
         <h1 style=\"font-size:1.4rem;\">{title}</h1>\n{body}\n</body>\n</html>\n"
    );
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

/// What an unsubscribe link ends, in words (escaped).
fn describe(what: &Unsubscribe, w: &Words) -> String {
    match what {
        Unsubscribe::Contact { email, entity } => w
            .contact
            .replace("{email}", &escape(email.as_str()))
            .replace(
                "{entity}",
                &format!("{} #{}", escape(&entity.kind), escape(&entity.id)),
            ),
        Unsubscribe::User {
            category: Some(c), ..
        } => w.category.replace("{category}", &escape(c.as_str())),
        Unsubscribe::User { category: None, .. } => w.all.into(),
    }
}

/// The unsubscribe page: says what the link ends, with a button that
/// POSTs (nothing changes on a GET).
#[utoipa::path(
    get, path = "/v1/unsubscribe/{token}", tag = "access",
    params(("token" = String, Path, description = "The signed token of the email's link")),
    responses((status = 200, description = "An HTML page with the button", content_type = "text/html"), (status = 404, body = Problem))
)]
async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    let (what, w) = read_unsubscribe(&state, &token)?;
    Ok(page(
        &w,
        w.title,
        &format!(
            "<p>{}</p>\n<form method=\"post\">\n\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
             <button type=\"submit\" style=\"font-size:1rem;padding:.5rem 1rem;\">{}</button>\n</form>",
            w.question.replace("{what}", &describe(&what, &w)),
            w.button
        ),
    ))
}

/// One-click unsubscribe (RFC 8058; no credentials: the token is signed
/// and names what to end). An external contact's subscription to the
/// entity ends; a user's email for the category (or, without one, their
/// email channel) is switched off in their preferences. Repeating it is
/// harmless.
#[utoipa::path(
    post, path = "/v1/unsubscribe/{token}", tag = "access",
    params(("token" = String, Path, description = "The signed token of the email's link")),
    responses((status = 200, description = "Unsubscribed: an HTML page saying so", content_type = "text/html"), (status = 404, body = Problem))
)]
#[tracing::instrument(skip_all)]
async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    let (what, w) = read_unsubscribe(&state, &token)?;
    let done = || page(&w, w.done_title, &format!("<p>{}</p>", w.done));
    match &what {
        Unsubscribe::Contact { email, entity } => {
            state
                .store
                .unsubscribe(entity, Subscriber::Email(email.clone()))
                .await?;
        }
        Unsubscribe::User { user, category } => {
            let mut prefs = match state.store.preferences(user).await {
                Ok(p) => p.overrides,
                // A user deleted since: nothing is sent to them any more.
                Err(belfry_store::StoreError::NotFound) => return Ok(done()),
                Err(e) => return Err(e.into()),
            };
            match category {
                Some(c) => {
                    prefs.categories.entry(c.clone()).or_default().email =
                        Some(belfry_core::EmailMode::Off)
                }
                None => prefs.channels.email = Some(false),
            }
            match state
                .store
                .put_preferences(user, prefs, state.clock.now())
                .await
            {
                Ok(()) | Err(belfry_store::StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let kind = match what {
        Unsubscribe::Contact { .. } => "contact",
        Unsubscribe::User { .. } => "user",
    };
    metrics::counter!("belfry_unsubscribes_total", "kind" => kind).increment(1);
    tracing::info!(kind, "unsubscribed by a one-click link");
    Ok(done())
}
