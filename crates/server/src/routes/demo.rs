//! Demo mode (`belfry serve --demo`): a small fictional help desk ("Harbor
//! Desk") at `/` with the inbox widget signed in as the demo user, and a
//! panel that sends sample notifications of every kind.
//!
//! For trying Belfry, not for production: anyone who reaches the server can
//! get a token for the demo user (`POST /demo/token`) and make the server
//! send the sample notifications (`POST /demo/trigger`). No secret key ever
//! reaches the browser: the token is issued server-side, and the samples are
//! sent through the store, not through the API. None of these routes exist
//! without demo mode.

use super::assets::Embedded;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, OptionalJson};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use belfry_core::notification::SendRequest;
use belfry_core::{Clock, GroupId, UserId, UserRequest, ValidationErrors};
use belfry_store::{SendContext, SharedStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The user the demo page is signed in as.
pub const DEMO_USER: &str = "dana";
/// The key id recorded as the sender of the samples (no such key exists).
const DEMO_SENDER: &str = "demo";

static INDEX_HTML: Embedded = Embedded::new(
    include_bytes!("../../../../web/demo/index.html"),
    "text/html; charset=utf-8",
    "no-cache",
);
static DEMO_CSS: Embedded = Embedded::new(
    include_bytes!("../../../../web/demo/demo.css"),
    "text/css; charset=utf-8",
    "no-cache",
);
static DEMO_JS: Embedded = Embedded::new(
    include_bytes!("../../../../web/demo/demo.js"),
    "text/javascript; charset=utf-8",
    "no-cache",
);
static TICKETS_JSON: &str = include_str!("../../../../web/demo/tickets.json");
static TICKETS: Embedded = Embedded::new(TICKETS_JSON.as_bytes(), "application/json", "no-cache");
static FAVICON: Embedded = Embedded::new(
    include_bytes!("../../../../web/demo/favicon.svg"),
    "image/svg+xml",
    "public, max-age=3600",
);
static AVATAR_SAM: Embedded = Embedded::new(
    include_bytes!("../../../../web/demo/avatar-sam.svg"),
    "image/svg+xml",
    "public, max-age=3600",
);

/// The demo page allows nothing but its own origin: the widget needs no
/// inline script or style, and no `eval`.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        // The page is one document; its script shows the route it is on.
        .route("/", get(page))
        .route("/notifications", get(page))
        .route("/tickets/{id}", get(page))
        .route(
            "/demo/demo.css",
            get(|h: HeaderMap| async move { DEMO_CSS.respond(&h) }),
        )
        .route(
            "/demo/demo.js",
            get(|h: HeaderMap| async move { DEMO_JS.respond(&h) }),
        )
        .route(
            "/demo/tickets.json",
            get(|h: HeaderMap| async move { TICKETS.respond(&h) }),
        )
        .route(
            "/demo/favicon.svg",
            get(|h: HeaderMap| async move { FAVICON.respond(&h) }),
        )
        .route(
            "/demo/avatar-sam.svg",
            get(|h: HeaderMap| async move { AVATAR_SAM.respond(&h) }),
        )
        .route("/demo/token", post(token))
        .route("/demo/trigger", post(trigger))
}

async fn page(headers: HeaderMap) -> Response {
    let mut response = INDEX_HTML.respond(&headers);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// One ticket of the fictional help desk (shared with the page's script).
#[derive(Debug, Deserialize)]
struct Ticket {
    id: u32,
    subject: String,
    customer: String,
    priority: String,
}

fn tickets() -> Vec<Ticket> {
    serde_json::from_str(TICKETS_JSON).expect("web/demo/tickets.json is a list of tickets")
}

/// The demo's people: the signed-in agent, two colleagues who act as
/// actors, and the groups the broadcast goes to.
fn people() -> Vec<(&'static str, Value)> {
    vec![
        (
            DEMO_USER,
            json!({"name": "Dana Reyes", "email": "dana@harbor-desk.example",
                   "locale": "en", "timezone": "Europe/Berlin", "groups": ["support", "berlin"]}),
        ),
        (
            "sam",
            json!({"name": "Sam Ortiz", "email": "sam@harbor-desk.example",
                   "avatar_url": "/demo/avatar-sam.svg", "groups": ["support"]}),
        ),
        (
            "lee",
            json!({"name": "Lee Park", "email": "lee@harbor-desk.example",
                   "groups": ["support", "leads"]}),
        ),
    ]
}

/// Creates (or brings back to their demo state) the demo users and groups.
/// Safe to run on every start.
pub(crate) async fn setup(store: &SharedStore, clock: &dyn Clock) -> anyhow::Result<()> {
    let now = clock.now();
    for (id, name) in [
        ("support", "Support team"),
        ("leads", "Team leads"),
        ("berlin", "Berlin office"),
    ] {
        let gid = GroupId::parse(id).map_err(anyhow::Error::msg)?;
        store.put_group(&gid, Some(name.into()), now).await?;
    }
    for (id, body) in people() {
        let uid = UserId::parse(id).map_err(anyhow::Error::msg)?;
        let request: UserRequest = serde_json::from_value(body)?;
        let patch = request
            .validate()
            .map_err(|e| anyhow::anyhow!("demo user {id}: {e}"))?;
        store.put_user(&uid, patch, now).await?;
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    expires_at: String,
    user: Value,
}

/// A user token for the demo user (what a host application's backend does
/// for its signed-in user).
async fn token(
    State(state): State<AppState>,
    OptionalJson(_): OptionalJson<TokenRequest>,
) -> ApiResult<Response> {
    let user = UserId::parse(DEMO_USER).map_err(ApiError::Internal)?;
    let record = state.store.get_user(&user).await?.ok_or_else(|| {
        ApiError::Internal("the demo user is missing (demo setup did not run)".into())
    })?;
    let issued_at = state.hub.revocations.issue_time(&user, state.clock.now());
    let (token, expires_at) = state
        .tokens
        .issue(&user, issued_at, state.config.token_ttl_secs);
    let mut response = Json(TokenResponse {
        token,
        expires_at: expires_at.to_rfc3339(),
        user: json!({"id": record.id, "name": record.name}),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The sample notifications the panel can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Assignment,
    Mention,
    CustomerReply,
    Broadcast,
    Reminder,
    StackedReplies,
}

const KINDS: [(&str, Kind); 6] = [
    ("assignment", Kind::Assignment),
    ("mention", Kind::Mention),
    ("customer_reply", Kind::CustomerReply),
    ("broadcast", Kind::Broadcast),
    ("reminder", Kind::Reminder),
    ("stacked_replies", Kind::StackedReplies),
];

fn kind_names() -> String {
    KINDS.map(|(n, _)| n).join(", ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerRequest {
    /// Which sample to send.
    kind: Option<String>,
}

#[derive(Serialize)]
struct TriggerResponse {
    kind: &'static str,
    /// Ids of the notifications sent, in order.
    ids: Vec<String>,
}

fn parse_kind(raw: Option<&str>) -> Result<(&'static str, Kind), ValidationErrors> {
    let Some(raw) = raw else {
        return Err(ValidationErrors::single(
            "kind",
            format!("is required: one of {}", kind_names()),
        ));
    };
    KINDS
        .iter()
        .find(|(n, _)| *n == raw)
        .copied()
        .ok_or_else(|| {
            ValidationErrors::single(
                "kind",
                format!(
                    "'{}' is not a sample; use one of {}",
                    raw.escape_debug(),
                    kind_names()
                ),
            )
        })
}

/// The sends of one sample. `n` varies the ticket so that repeated presses
/// do not all look alike.
fn samples(kind: Kind, n: usize) -> Vec<Value> {
    let tickets = tickets();
    let t = &tickets[n % tickets.len()];
    let url = format!("/tickets/{}", t.id);
    let entity = json!({"type": "ticket", "id": t.id.to_string()});
    let dana = json!({"users": [DEMO_USER]});
    let sam = json!({"id": "sam", "name": "Sam Ortiz", "avatar_url": "/demo/avatar-sam.svg"});
    let lee = json!({"id": "lee", "name": "Lee Park"});
    match kind {
        Kind::Assignment => vec![json!({
            "to": dana, "category": "assignment", "source": "helpdesk", "actor": sam,
            "title": format!("Ticket #{} assigned to you", t.id),
            "body": format!("{} (priority {}): “{}”", t.customer, t.priority.to_lowercase(), t.subject),
            "url": url, "entity": entity,
            "actions": [
                {"id": "open", "label": "Open ticket", "kind": "link", "url": url, "style": "primary"},
                {"id": "accept", "label": "Accept", "kind": "callback", "style": "secondary", "once": true},
            ],
        })],
        Kind::Mention => vec![json!({
            "to": dana, "category": "mention", "source": "helpdesk", "actor": lee,
            "title": format!("Lee Park mentioned you on #{}", t.id),
            "body": format!("“@Dana could you take a look at “{}” before we answer {}?”", t.subject, t.customer),
            "url": url, "entity": entity,
        })],
        Kind::CustomerReply => vec![json!({
            "to": dana, "category": "customer_reply", "source": "helpdesk",
            "actor": {"name": t.customer},
            "title": format!("{} replied on #{}", t.customer, t.id),
            "body": "Thanks for the quick answer! I tried it again this morning and it works now.",
            "url": url, "entity": entity,
        })],
        Kind::Broadcast => vec![json!({
            "to": {"groups": ["support"]}, "category": "announcement", "source": "admin",
            "title": "Maintenance tonight, 22:00–22:30",
            "body": "Harbor Desk will be read-only for about half an hour while we upgrade the database.",
        })],
        Kind::Reminder => vec![json!({
            "to": dana, "category": "reminder", "source": "tasks", "sticky": true,
            "title": format!("Reminder: call back {} about #{}", t.customer, t.id),
            "body": "You planned this call for now. This reminder stays until you close it.",
            "url": url, "entity": entity,
            "actions": [{"id": "open", "label": "Open ticket", "kind": "link", "url": url, "style": "primary"}],
        })],
        Kind::StackedReplies => [
            "I attached the photo you asked for.",
            "Sorry, forgot the second page, here it is.",
            "Any news? My manager is asking.",
        ]
        .iter()
        .map(|body| {
            json!({
                "to": dana, "category": "customer_reply", "source": "helpdesk",
                "actor": {"name": t.customer},
                "title": format!("New replies from {} on #{}", t.customer, t.id),
                "body": body, "url": url, "entity": entity,
                "stack_key": format!("ticket:{}:replies", t.id),
            })
        })
        .collect(),
    }
}

/// Sends one sample (several for stacked replies, one after the other, so
/// that each stacks onto the previous).
async fn trigger(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TriggerRequest>,
) -> ApiResult<(StatusCode, Json<TriggerResponse>)> {
    let (name, kind) = parse_kind(request.kind.as_deref())?;
    let variant = usize::try_from(state.store.last_seq()).unwrap_or(0);
    let mut ids = Vec::new();
    for body in samples(kind, variant) {
        let request: SendRequest = serde_json::from_value(body)
            .map_err(|e| ApiError::Internal(format!("demo sample {name}: {e}")))?;
        let now = state.clock.now();
        let n = request
            .validate(now)
            .map_err(|e| ApiError::Internal(format!("demo sample {name}: {e}")))?;
        let receipts = state
            .store
            .send(
                SendContext {
                    key_id: DEMO_SENDER.into(),
                    now,
                },
                vec![n],
            )
            .await?;
        ids.extend(receipts.into_iter().map(|r| r.id));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(TriggerResponse { kind: name, ids }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::Millis;

    #[test]
    fn every_sample_is_a_valid_notification() {
        for (name, kind) in KINDS {
            for n in 0..tickets().len() {
                for body in samples(kind, n) {
                    let r: SendRequest = serde_json::from_value(body).unwrap();
                    r.validate(Millis(0))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
        assert_eq!(samples(Kind::StackedReplies, 0).len(), 3);
    }

    #[test]
    fn kinds_are_checked() {
        assert_eq!(parse_kind(Some("mention")).unwrap().1, Kind::Mention);
        let e = parse_kind(Some("spam")).unwrap_err();
        assert!(e.to_string().contains("stacked_replies"), "{e}");
        assert!(parse_kind(None).is_err());
    }
}
