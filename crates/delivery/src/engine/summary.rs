//! The per-recipient rate limit (P6): above `max` emails (or pushes) to one
//! user within a window, further ones are held and go out as one summary on
//! that channel when the window ends ("12 more notifications since …"); the
//! in-app inbox still gets everything.
//!
//! Counting is per node and in memory (fixed windows aligned to the
//! clock): with several nodes a user may get up to `max` per node before the
//! limit holds. What is held is durable: the held delivery's job ends by
//! joining the user's summary job of the window (`JobOutcome::Summarise`,
//! unique by `jobs.dedup`), in the same transaction, so a restart loses
//! nothing and a second node never sends a second summary for the window.

use super::Engine;
use crate::email::{Digest, DigestItem, DigestKind};
use belfry_core::{Channel, Content, Millis, UserId};
use belfry_store::{
    DeliveryStatus, Job, JobOutcome, JobPayload, Reason, Recipient, StoreError, Verdict,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The per-recipient rate limit's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientLimit {
    /// Messages per user and channel within one window.
    pub max: u32,
    pub window: Duration,
}

/// Counts per user and channel in the current window.
pub(crate) struct Limiter {
    max: u32,
    window_ms: i64,
    counts: Mutex<HashMap<(UserId, Channel), (i64, u32)>>,
}

/// Entries kept before the ones of past windows are swept.
const SWEEP_AT: usize = 10_000;

impl Limiter {
    pub(crate) fn new(limit: RecipientLimit) -> Limiter {
        Limiter {
            max: limit.max.max(1),
            window_ms: (limit.window.as_millis() as i64).max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one message to `user` on `channel` at `now`; when it is
    /// above the limit, the window it falls in (start, end) instead.
    pub(crate) fn admit(
        &self,
        user: &UserId,
        channel: Channel,
        now: Millis,
    ) -> Result<(), (Millis, Millis)> {
        let window = now.0.div_euclid(self.window_ms);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= SWEEP_AT {
            counts.retain(|_, (w, _)| *w == window);
        }
        let entry = counts.entry((user.clone(), channel)).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 < self.max {
            entry.1 += 1;
            return Ok(());
        }
        let start = window * self.window_ms;
        Err((Millis(start), Millis(start + self.window_ms)))
    }
}

/// The channels the limit governs (in-app is never held; chat is a room,
/// not a person's phone).
fn limited(channel: Channel) -> bool {
    matches!(
        channel,
        Channel::Email | Channel::WebPush | Channel::MobilePush
    )
}

impl Engine {
    /// The per-recipient rate limit for a delivery about to go out now:
    /// None when it may; else the outcome that holds it for the summary.
    pub(super) fn rate_limited(
        &self,
        label: &str,
        channel: Channel,
        recipient: &Recipient,
    ) -> Option<JobOutcome> {
        let limiter = self.limiter.as_ref()?;
        let Recipient::User(user) = recipient else {
            return None;
        };
        if !limited(channel) {
            return None;
        }
        let (since, until) = limiter.admit(user, channel, self.clock.now()).err()?;
        metrics::counter!("belfry_rate_limited_total", "channel" => channel.as_str()).increment(1);
        Some(JobOutcome::Summarise {
            summary: JobPayload::Summary {
                user: user.clone(),
                channel,
                since,
                until,
                nids: Vec::new(),
                more: 0,
            },
            log: vec![belfry_store::DeliveryEvent {
                reason: Some(Reason::RateLimited),
                until: Some(until),
                ..self.line(label.to_string(), channel, DeliveryStatus::Held, 0, None)
            }],
        })
    }

    /// Sends a summary job's message: the newest held notifications that
    /// are still neither cancelled nor seen in the app, how many in all,
    /// and the link to all; nothing when none is left. Each listed one's
    /// log gets a `sent` line with reason `rate_limited`; one seen in the
    /// app meanwhile, `suppressed: seen_in_app`.
    #[tracing::instrument(skip_all, fields(job = job.id, user = %user))]
    pub(super) async fn summary(
        &self,
        job: &Job,
        user: &UserId,
        channel: Channel,
        since: Millis,
        nids: &[i64],
        more: i64,
    ) -> JobOutcome {
        let now = self.clock.now();
        let counted = |outcome: &'static str| {
            metrics::counter!("belfry_summaries_total", "channel" => channel.as_str(), "outcome" => outcome)
                .increment(1);
        };
        let label = format!("user:{user}");
        let recipient = Recipient::User(user.clone());
        let line = |status, reason| belfry_store::DeliveryEvent {
            reason: Some(reason),
            ..self.line(label.clone(), channel, status, job.attempts, None)
        };
        let mut items = Vec::new();
        let mut lines = Vec::new();
        let mut total = more;
        for nid in nids {
            let context = match self
                .store
                .delivery_context(*nid, &recipient, channel, now, true)
                .await
            {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(StoreError::NotFound) => continue,
                Err(e) => {
                    return self.summary_retry(job, format!("loading a notification failed: {e}"));
                }
            };
            if context.status == belfry_store::NotificationStatus::Cancelled {
                continue;
            }
            if context.verdict == Verdict::Suppressed(Reason::SeenInApp) {
                lines.push((
                    context.notification_id.clone(),
                    line(DeliveryStatus::Suppressed, Reason::SeenInApp),
                ));
                continue;
            }
            let Ok(content) = serde_json::from_str::<Content>(&context.content_json) else {
                continue;
            };
            total += 1;
            items.push((
                *nid,
                DigestItem {
                    id: context.notification_id.clone(),
                    title: content.title,
                    body: content.body,
                    url: content.url,
                    category: content.category.map(|c| c.to_string()),
                    at: context.published_at,
                },
            ));
            lines.push((
                context.notification_id,
                line(DeliveryStatus::Sent, Reason::RateLimited),
            ));
        }
        // Newest first (workers hold deliveries in any order).
        items.sort_by_key(|(nid, item)| std::cmp::Reverse((item.at, *nid)));
        let items: Vec<DigestItem> = items
            .into_iter()
            .take(super::DIGEST_ITEMS)
            .map(|(_, item)| item)
            .collect();
        if total == 0 {
            counted("empty");
            return JobOutcome::DoneLines(lines);
        }
        let person = match self.store.get_user(user).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                counted("ended");
                return JobOutcome::DoneLines(vec![]);
            }
            Err(e) => return self.summary_retry(job, format!("loading the user failed: {e}")),
        };
        let Some(adapter) = self.adapters.get(&channel) else {
            counted("skipped");
            return JobOutcome::DoneLines(vec![]);
        };
        // Pushes have no address: the adapter finds the user's devices.
        if channel == Channel::Email && person.email.is_none() {
            counted("skipped");
            return JobOutcome::DoneLines(vec![]);
        }
        let summary = Digest {
            kind: DigestKind::Summary,
            user: user.clone(),
            delivery_id: format!("summary.{}.{}", job.id, job.run_at.0),
            to: person.email.clone(),
            name: person.name.clone(),
            locale: person.locale.clone(),
            timezone: person.timezone.as_ref().map(|t| t.as_str().to_string()),
            items,
            total,
            since,
        };
        match adapter.send_digest(&summary).await {
            Ok(()) => {
                counted("sent");
                JobOutcome::DoneLines(lines)
            }
            Err(e) if e.permanent || job.attempts >= self.config.max_attempts => {
                counted("failed");
                metrics::counter!("belfry_jobs_failed_total", "kind" => "summary").increment(1);
                let failed = lines
                    .into_iter()
                    .map(|(id, l)| {
                        let failed = if l.status == DeliveryStatus::Sent {
                            belfry_store::DeliveryEvent {
                                status: DeliveryStatus::Failed,
                                error: Some(format!("the summary failed: {}", e.message)),
                                ..l
                            }
                        } else {
                            l
                        };
                        (id, failed)
                    })
                    .collect();
                JobOutcome::DoneLines(failed)
            }
            Err(e) => self.summary_retry(job, e.message),
        }
    }

    fn summary_retry(&self, job: &Job, error: String) -> JobOutcome {
        tracing::warn!(job = job.id, error = %error, "the summary will be retried");
        metrics::counter!("belfry_summaries_total", "channel" => "any", "outcome" => "retry")
            .increment(1);
        let delay = super::backoff(self.config.retry_base, job.attempts, job.id as u64);
        JobOutcome::Retry {
            at: Millis(self.clock.now().0 + delay.as_millis() as i64),
            error,
            log: vec![],
            payload: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_per_user_channel_and_window() {
        let l = Limiter::new(RecipientLimit {
            max: 2,
            window: Duration::from_secs(60),
        });
        let ana = UserId::parse("ana").unwrap();
        let bo = UserId::parse("bo").unwrap();
        let at = |s: i64| Millis(s * 1000);
        assert!(l.admit(&ana, Channel::Email, at(60)).is_ok());
        assert!(l.admit(&ana, Channel::Email, at(61)).is_ok());
        assert_eq!(
            l.admit(&ana, Channel::Email, at(119)),
            Err((at(60), at(120))),
            "the third in the window is held until it ends"
        );
        assert!(
            l.admit(&ana, Channel::WebPush, at(62)).is_ok(),
            "per channel"
        );
        assert!(l.admit(&bo, Channel::Email, at(62)).is_ok(), "per user");
        assert!(
            l.admit(&ana, Channel::Email, at(120)).is_ok(),
            "a new window"
        );
    }
}
