//! Webhooks to producers (C7): one attempt of a webhook job. The store
//! queued the job (one per event and webhook) in the transaction of the
//! change that caused the event; this posts it, signed per the Standard
//! Webhooks specification ([`crate::signing`]), and says what the attempt
//! does: success, a retry on the schedule, the end of the event, or the
//! webhook disabled.
//!
//! - Body: `{"type": "delivery.sent", "timestamp": "<when it happened>",
//!   "data": {...}}`; headers `webhook-id` (the event's id, the same on
//!   every retry), `webhook-timestamp` (this attempt, Unix seconds),
//!   `webhook-signature`, `content-type: application/json`,
//!   `user-agent: Belfry/<version>`.
//! - 2xx: delivered. 410 Gone: the webhook is disabled at once. 429 and
//!   503 are retried not before their `Retry-After`; every other answer,
//!   a timeout ([`WebhookSettings::timeout`], 10 s) or no connection is
//!   retried on [`WebhookSettings::schedule`] (5 s, 5 min, 30 min, 2 h,
//!   5 h, 10 h, 10 h, each ±10 %: eight attempts over about 28 hours),
//!   then the event is given up.
//! - A webhook whose every attempt failed for
//!   [`WebhookSettings::disable_after`] (5 days) is disabled with its
//!   reason; a PUT of it enables it again.
//! - URLs are reached only through [`OutboundPolicy`]: http(s), public
//!   addresses unless `BELFRY_OUTBOUND_ALLOW` allows them (checked after
//!   DNS resolution), no redirects. A refused address ends the event (a
//!   retry would be refused the same way) and is the attempt's error.

use crate::outbound::OutboundPolicy;
use belfry_core::Millis;
use belfry_store::{
    AttemptEffect, AttemptStatus, Job, JobOutcome, SharedStore, WebhookAttempt, WebhookEvent,
};
use reqwest::{StatusCode, Url};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Settings of producer webhooks.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Timeout of one request (connecting, sending and the answer).
    pub timeout: Duration,
    /// The wait after each failed attempt (±10 % jitter); after the last,
    /// the event is given up.
    pub schedule: Vec<Duration>,
    /// A webhook whose every attempt failed for this long is disabled.
    pub disable_after: Duration,
    /// Where requests may go.
    pub outbound: OutboundPolicy,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            timeout: s(10),
            schedule: vec![
                s(5),
                s(5 * 60),
                s(30 * 60),
                s(2 * 3600),
                s(5 * 3600),
                s(10 * 3600),
                s(10 * 3600),
            ],
            disable_after: s(5 * 24 * 3600),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The answer excerpt kept in the attempts log, in characters.
const EXCERPT: usize = 200;

/// The `user-agent` of webhook requests.
pub const USER_AGENT: &str = concat!("Belfry/", env!("CARGO_PKG_VERSION"));

/// Sends webhook jobs.
pub struct WebhookSender {
    store: SharedStore,
    settings: WebhookSettings,
    client: reqwest::Client,
}

/// The wait before attempt `attempt + 1` (None: no attempt is left), with
/// ±10 % jitter from `salt`.
pub fn retry_delay(schedule: &[Duration], attempt: i64, salt: u64) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(attempt - 1).ok()?)?;
    let mix = salt
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(attempt as u64)
        .rotate_left(23);
    Some(base.mul_f64(0.9 + (mix % 2001) as f64 / 10_000.0))
}

/// The request body of an event.
pub fn body(event: &WebhookEvent) -> String {
    serde_json::json!({
        "type": event.kind.as_str(),
        "timestamp": event.at.to_rfc3339(),
        "data": event.data,
    })
    .to_string()
}

fn cut(text: &str) -> String {
    let text = text.trim().replace(['\r', '\n'], " ");
    match text.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// What one request came to.
enum Answer {
    Status(StatusCode, String, Option<Duration>),
    /// No answer: refused by the outbound policy (`true`: for good) or not
    /// reached.
    None(String, bool),
}

impl WebhookSender {
    pub fn new(store: SharedStore, settings: WebhookSettings) -> WebhookSender {
        let client = settings.outbound.client(settings.timeout);
        WebhookSender {
            store,
            settings,
            client,
        }
    }

    async fn post(
        &self,
        url: &str,
        secret: &secrecy::SecretString,
        event: &WebhookEvent,
    ) -> Answer {
        let url = match Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Answer::None(format!("the stored URL is invalid: {e}"), true),
        };
        if let Err(refused) = self.settings.outbound.check_url(&url) {
            return Answer::None(refused.0, true);
        }
        let body = body(event);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signed = match crate::signing::headers(secret, &event.id, timestamp, &body) {
            Ok(h) => h,
            Err(e) => return Answer::None(e, true),
        };
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, USER_AGENT);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return unanswered(&e.without_url()),
        };
        let status = response.status();
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::webpush::retry_after(v, SystemTime::now()))
            .map(|d| d.min(MAX_RETRY_AFTER));
        let text = match response.text().await {
            Ok(t) => cut(&t),
            Err(e) => format!("(the answer could not be read: {})", e.without_url()),
        };
        Answer::Status(status, text, wait)
    }

    /// One attempt of `job` (event `event` to webhook `webhook`).
    #[tracing::instrument(skip_all, fields(job = job.id, webhook = %webhook, event = %event.id))]
    pub async fn attempt(
        &self,
        job: &Job,
        webhook: &str,
        event: &WebhookEvent,
        now: Millis,
    ) -> JobOutcome {
        let target = match self.store.webhook_target(webhook).await {
            // Removed or disabled since: the event goes with it.
            Ok(None) => return JobOutcome::Done(vec![]),
            Ok(Some(t)) if !t.enabled => return JobOutcome::Done(vec![]),
            Ok(Some(t)) => t,
            Err(e) => {
                return JobOutcome::Retry {
                    at: Millis(now.0 + 5_000),
                    error: format!("reading the webhook failed: {e}"),
                    log: vec![],
                    payload: None,
                };
            }
        };
        let started = Instant::now();
        let answer = self.post(&target.url, &target.secret, event).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let retry = |not_before: Option<Duration>| {
            retry_delay(&self.settings.schedule, job.attempts, job.id as u64)
                .map(|d| d.max(not_before.unwrap_or_default()))
                .map(|d| Millis(now.0 + d.as_millis() as i64))
        };
        let (code, response, gone, next, succeeded) = match answer {
            Answer::Status(s, text, _) if s.is_success() => (Some(s), text, false, None, true),
            Answer::Status(s, text, _) if s == StatusCode::GONE => {
                (Some(s), text, true, None, false)
            }
            Answer::Status(s, text, wait)
                if s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::SERVICE_UNAVAILABLE =>
            {
                (Some(s), text, false, retry(wait), false)
            }
            Answer::Status(s, text, _) => (Some(s), text, false, retry(None), false),
            Answer::None(error, true) => (None, error, false, None, false),
            Answer::None(error, false) => (None, error, false, retry(None), false),
        };
        let status = if succeeded {
            AttemptStatus::Succeeded
        } else if next.is_some() {
            AttemptStatus::Retrying
        } else {
            AttemptStatus::Failed
        };
        JobOutcome::Webhook(AttemptEffect {
            attempt: WebhookAttempt {
                webhook: webhook.to_string(),
                event_id: event.id.clone(),
                event_type: event.kind,
                attempt: job.attempts,
                status,
                response_code: code.map(|c| i64::from(c.as_u16())),
                response: (!response.is_empty()).then_some(response),
                duration_ms,
                at: now,
                next_retry_at: next,
            },
            disable_now: gone
                .then(|| "the endpoint answered 410 Gone: it no longer takes events".to_string()),
            disable_if_failing_since: Some(Millis(
                now.0 - self.settings.disable_after.as_millis() as i64,
            )),
        })
    }
}

/// A request that got no answer: refused by the outbound policy (for good:
/// the refusal sits in the error's source chain) or not reached (retried).
fn unanswered(e: &reqwest::Error) -> Answer {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<crate::outbound::Refused>().is_some() {
            return Answer::None(s.to_string(), true);
        }
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else {
        "could not be reached"
    };
    Answer::None(cut(&format!("{what}: {chain}")), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_with_jitter_then_none() {
        let schedule = WebhookSettings::default().schedule;
        assert_eq!(schedule.len(), 7, "eight attempts");
        for salt in [1u64, 42, 9999] {
            let first = retry_delay(&schedule, 1, salt).unwrap();
            assert!(first >= Duration::from_millis(4500) && first <= Duration::from_millis(5500));
            let last = retry_delay(&schedule, 7, salt).unwrap();
            assert!(
                last >= Duration::from_secs(9 * 3600) && last <= Duration::from_secs(11 * 3600)
            );
            assert_eq!(retry_delay(&schedule, 8, salt), None);
        }
        assert_ne!(retry_delay(&schedule, 2, 1), retry_delay(&schedule, 2, 2));
    }

    #[test]
    fn the_body_follows_the_payload_convention() {
        let event = WebhookEvent {
            id: "msg_1".into(),
            kind: belfry_store::WebhookEventType::NotificationRead,
            at: Millis(0),
            data: serde_json::json!({"notification_id": "n1"}),
        };
        let v: serde_json::Value = serde_json::from_str(&body(&event)).unwrap();
        assert_eq!(v["type"], "notification.read");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["data"]["notification_id"], "n1");
    }
}
