//! Events (S8): `POST /v1/events`. The host application says what happened
//! (type, actor, entity, data) and nothing else; every enabled rule for the
//! type decides whether it applies, whom it addresses (never the actor),
//! the category and the stack key, and its template renders the texts in
//! each recipient's language: one notification per rule and language. A
//! rule that fails (a missing template, a recipient expression of the
//! wrong type) is reported in `skipped` and logged, and does not stop the
//! others. With `Idempotency-Key`, a repeated event creates nothing new:
//! each of its notifications carries a key derived from it.

use super::notifications::{check_categories, check_recipients, idempotency_header};
use crate::AppState;
use crate::auth::SendKey;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use belfry_core::rule::{RuleDef, event_type};
use belfry_core::template::{Compiled, Environment, TemplateValue};
use belfry_core::{EntityRef, SendRequest, UserId, ValidationErrors};
use belfry_store::{SendContext, Subscriber};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_event))
}

/// Who did it.
#[derive(Deserialize, Serialize, Default, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EventActor {
    /// A user id: never notified about their own action.
    id: Option<String>,
    name: Option<String>,
    avatar_url: Option<String>,
}

/// What it is about.
#[derive(Deserialize, Serialize, Default, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EventEntity {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    title: Option<String>,
    /// Where the notifications link to.
    url: Option<String>,
    /// The user who created it (rules with `to.creator`).
    creator: Option<String>,
}

/// `POST /v1/events`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EventRequest {
    /// e.g. `ticket.assigned`.
    #[serde(rename = "type")]
    kind: Option<String>,
    actor: Option<EventActor>,
    entity: Option<EventEntity>,
    /// Any JSON object (at most 16 KiB): what rules and templates read.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// The source (integration) it comes from; a key bound to a source
    /// gives its own, and naming another is 403.
    source: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Created {
    /// The notification's id.
    id: String,
    rule: String,
    /// Its language.
    locale: String,
    /// Users it was addressed to directly, the entity's followers among
    /// them (groups, and a following larger than 1000, are broadcasts:
    /// not counted).
    recipients: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Skipped {
    rule: String,
    /// Why it made nothing: `condition false`, `no recipients`, or what
    /// failed.
    reason: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EventAccepted {
    /// The event's id.
    id: String,
    notifications: Vec<Created>,
    /// Rules for this type that made nothing, and why (empty `rules`
    /// means no rule handles the type).
    skipped: Vec<Skipped>,
    /// The enabled rules for this event type.
    rules: usize,
}

struct Checked {
    kind: String,
    actor: Option<EventActor>,
    entity: Option<EventEntity>,
    entity_ref: Option<EntityRef>,
    data: Option<Value>,
    source: Option<String>,
}

fn check(req: EventRequest) -> Result<Checked, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let kind = match req.kind {
        Some(k) => errors.take("type", event_type(&k)),
        None => {
            errors.add("type", "is required, e.g. \"ticket.assigned\"");
            None
        }
    };
    if let Some(a) = &req.actor
        && let Some(id) = &a.id
    {
        errors.take("actor.id", UserId::parse(id).map(|_| ()));
    }
    let entity_ref = match &req.entity {
        None => None,
        Some(e) => match (&e.kind, &e.id) {
            (Some(k), Some(i)) => errors.take("entity", EntityRef::parse(k, i)),
            _ => {
                errors.add("entity", "needs type and id");
                None
            }
        },
    };
    if let Some(c) = req.entity.as_ref().and_then(|e| e.creator.as_ref()) {
        errors.take("entity.creator", UserId::parse(c).map(|_| ()));
    }
    if let Some(s) = &req.source {
        errors.take("source", belfry_core::Category::parse(s).map(|_| ()));
    }
    match &req.data {
        None | Some(Value::Object(_)) => {}
        Some(_) => errors.add("data", "must be a JSON object"),
    }
    if let Some(d) = &req.data
        && d.to_string().len() > belfry_core::notification::limits::DATA_BYTES
    {
        errors.add(
            "data",
            format!(
                "is larger than {} bytes",
                belfry_core::notification::limits::DATA_BYTES
            ),
        );
    }
    errors.finish(())?;
    Ok(Checked {
        kind: kind.unwrap_or_default(),
        actor: req.actor,
        entity: req.entity,
        entity_ref,
        data: req.data,
        source: req.source,
    })
}

/// Post an event; rules turn it into notifications.
///
/// Every enabled rule for the event's type applies its condition, finds
/// its recipients (never the actor) and renders its template in each
/// recipient's language. The answer names the notifications made and the
/// rules that made none, with why. With an `Idempotency-Key` header a
/// repeat within 24 hours makes nothing new.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body = EventRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 202, description = "Handled", body = EventAccepted),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "Invalid fields", body = Problem)
    ),
    security(("secret_key" = []))
)]
#[tracing::instrument(skip_all)]
async fn post_event(
    State(state): State<AppState>,
    SendKey(key): SendKey,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EventRequest>,
) -> ApiResult<Response> {
    let idempotency = idempotency_header(&headers)?;
    let mut ev = check(req).map_err(ApiError::Validation)?;
    if let Some(bound) = &key.source {
        if let Some(named) = ev.source.as_ref().filter(|s| *s != bound) {
            return Err(ApiError::Forbidden(format!(
                "this key belongs to source '{bound}' and may not post as '{named}'; \
                 leave source out or use that source's own key"
            )));
        }
        ev.source = Some(bound.clone());
    }
    let event_id = ulid::Ulid::new().to_string();
    let snapshot = state.rules.current(&state.store).await?;
    let no_rules = Vec::new();
    let rules = snapshot.rules.get(&ev.kind).unwrap_or(&no_rules);
    let ctx = json!({
        "event": {"type": ev.kind, "actor": ev.actor, "entity": ev.entity, "data": ev.data, "source": ev.source},
        "actor": ev.actor,
        "entity": ev.entity,
        "data": ev.data,
        "recipient": null,
    });
    let env = &snapshot.env;
    let mctx = belfry_core::template::context(&ctx);
    let actor = ev.actor.as_ref().and_then(|a| a.id.clone());
    let creator = ev.entity.as_ref().and_then(|e| e.creator.clone());
    let mut made = Vec::new();
    let mut skipped = Vec::new();
    for (rule_id, rule) in rules {
        let outcome = apply(
            &state,
            &key.id,
            idempotency.as_deref(),
            &ev,
            rule_id,
            rule,
            Env {
                env,
                ctx: &mctx,
                actor: actor.as_deref(),
                creator: creator.as_deref(),
            },
            &snapshot.templates,
        )
        .await;
        match outcome {
            Ok(Applied::Made(list)) => made.extend(list),
            Ok(Applied::Nothing(reason)) => skipped.push(Skipped {
                rule: rule_id.clone(),
                reason,
            }),
            Err(reason) => {
                tracing::warn!(rule = %rule_id, event = %ev.kind, event_id = %event_id, %reason, "a rule failed");
                metrics::counter!("belfry_rule_failures_total").increment(1);
                skipped.push(Skipped {
                    rule: rule_id.clone(),
                    reason: format!("failed: {reason}"),
                });
            }
        }
    }
    metrics::counter!("belfry_events_total").increment(1);
    tracing::info!(event = %ev.kind, event_id = %event_id, rules = rules.len(), notifications = made.len(), "event handled");
    Ok((
        StatusCode::ACCEPTED,
        Json(EventAccepted {
            id: event_id,
            notifications: made,
            skipped,
            rules: rules.len(),
        }),
    )
        .into_response())
}

struct Env<'a> {
    env: &'a Environment<'static>,
    ctx: &'a TemplateValue,
    actor: Option<&'a str>,
    creator: Option<&'a str>,
}

enum Applied {
    Made(Vec<Created>),
    Nothing(String),
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    state: &AppState,
    key_id: &str,
    idempotency: Option<&str>,
    ev: &Checked,
    rule_id: &str,
    rule: &RuleDef,
    e: Env<'_>,
    templates: &HashMap<String, Option<Arc<Compiled>>>,
) -> Result<Applied, String> {
    if !rule.applies(e.env, e.ctx)? {
        return Ok(Applied::Nothing("condition false".into()));
    }
    let addressed = rule.addressed(e.env, e.ctx, e.actor, e.creator)?;
    let subscribers = addressed.entity_subscribers && ev.entity_ref.is_some();
    if addressed.users.is_empty() && addressed.groups.is_empty() && !subscribers {
        return Ok(Applied::Nothing("no recipients".into()));
    }
    let Some(compiled) = templates.get(&rule.template).and_then(|t| t.as_ref()) else {
        return Err(format!("there is no template '{}'", rule.template));
    };
    let template = &compiled.def;
    // The entity's followers join the direct recipients (so that each
    // reads their own language, and who is both gets it once); contacts
    // follow by address. Only a following larger than a rule may address
    // stays a broadcast (in the template's default language).
    let mut users = addressed.users.clone();
    let mut emails: Vec<String> = Vec::new();
    let mut subscribers = subscribers;
    if subscribers && let Some(entity) = &ev.entity_ref {
        let following = state
            .store
            .subscribers(entity)
            .await
            .map_err(|e| e.to_string())?;
        if following.len() <= belfry_core::rule::limits::RECIPIENTS {
            for s in following {
                if let Some(u) = s.user.map(|u| u.to_string())
                    && Some(u.as_str()) != e.actor
                {
                    users.insert(u);
                }
                if let Some(m) = s.email {
                    emails.push(m.to_string());
                }
            }
            subscribers = false;
        }
    }
    // Direct recipients by the language their texts are in; the
    // broadcast parts (groups, a large following) and contacts in the
    // template's default.
    let mut by_locale: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for u in &users {
        let id = UserId::parse(u).map_err(|m| format!("recipient '{u}': {m}"))?;
        match state.store.get_user(&id).await.map_err(|e| e.to_string())? {
            None => unknown.push(u.clone()),
            Some(user) => {
                let locale = template
                    .pick_locale(user.locale.as_ref().map(|l| l.as_str()))
                    .to_string();
                by_locale.entry(locale).or_default().push(u.clone());
            }
        }
    }
    if !unknown.is_empty() {
        tracing::info!(rule = rule_id, users = ?unknown, "rule addressed unknown users: left out");
    }
    let broadcast = !addressed.groups.is_empty() || subscribers || !emails.is_empty();
    if broadcast {
        by_locale
            .entry(template.default_locale.clone())
            .or_default();
    }
    if by_locale.is_empty() {
        return Ok(Applied::Nothing(format!(
            "no recipients (unknown users: {})",
            unknown.join(", ")
        )));
    }
    let stack_key = rule.stack_key(e.env, e.ctx)?;
    let mut notifications = Vec::new();
    let mut labels = Vec::new();
    for (locale, users) in &by_locale {
        let r = compiled
            .render(Some(locale), e.ctx)
            .map_err(|e| e.to_string())?;
        let is_default = *locale == template.default_locale;
        let mut to = json!({"users": users});
        if is_default && !emails.is_empty() {
            to["emails"] = json!(emails);
        }
        if is_default && !addressed.groups.is_empty() {
            to["groups"] = json!(addressed.groups);
        }
        if is_default
            && subscribers
            && let Some(en) = &ev.entity
        {
            to["entity"] = json!({"type": en.kind, "id": en.id});
        }
        let mut body = json!({
            "to": to,
            "title": r.title,
            "body": r.body,
            "category": rule.category,
            "stack_key": stack_key,
            "data": ev.data,
        });
        let texts = r.channel_texts();
        if !texts.is_empty() {
            body["texts"] = json!(texts);
        }
        if let Some(a) = &ev.actor {
            body["actor"] = json!(a);
        }
        if let Some(s) = &ev.source {
            body["source"] = json!(s);
        }
        if let Some(en) = &ev.entity {
            body["entity"] = json!({"type": en.kind, "id": en.id});
            if en.url.is_some() {
                body["url"] = json!(en.url);
            }
        }
        if let Some(k) = idempotency {
            body["idempotency_key"] = json!(derived_key(k, rule_id, locale));
        }
        let req: SendRequest = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let n = req.validate(state.clock.now()).map_err(|e| {
            e.0.iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        labels.push((locale.clone(), users.len()));
        notifications.push(n);
    }
    check_recipients(state, &notifications).map_err(|e| format!("{e:?}"))?;
    let now = state.clock.now();
    check_categories(state, &mut notifications, true, now)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let receipts = state
        .store
        .send(
            SendContext {
                key_id: key_id.to_string(),
                now,
            },
            notifications,
        )
        .await
        .map_err(|e| e.to_string())?;
    if let Some(entity) = &ev.entity_ref {
        let mut who: Vec<String> = Vec::new();
        if rule.subscribe.iter().any(|s| s == "actor")
            && let Some(a) = e.actor
        {
            who.push(a.to_string());
        }
        if rule.subscribe.iter().any(|s| s == "recipients") {
            who.extend(by_locale.values().flatten().cloned());
        }
        for u in who {
            if let Ok(id) = UserId::parse(&u) {
                // An unknown actor cannot follow anything: not an error of the rule.
                let _ = state
                    .store
                    .subscribe(entity, Subscriber::User(id), now)
                    .await;
            }
        }
    }
    Ok(Applied::Made(
        receipts
            .iter()
            .zip(labels)
            .map(|(r, (locale, recipients))| Created {
                id: r.id.clone(),
                rule: rule_id.to_string(),
                locale,
                recipients,
            })
            .collect(),
    ))
}

/// The idempotency key of one of an event's notifications (at most 255
/// bytes: a long key is hashed).
fn derived_key(key: &str, rule: &str, locale: &str) -> String {
    let k = format!("evt:{key}:{rule}:{locale}");
    if k.len() <= 255 {
        return k;
    }
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, k.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("evt:{hex}")
}
