//! The engine: claims due jobs from the store in batches, runs them with
//! bounded concurrency, and records each outcome (with its delivery log
//! lines) in the same transaction that completes or reschedules the job.
//! A commit that queues jobs wakes the engine at once; otherwise it sleeps
//! until the next job is due (at most `poll`). A job whose worker died is
//! claimed again when its lease runs out.
//!
//! The daily digest (C4) is a job too: one per user (`jobs.dedup`),
//! created when something of theirs is first digested or when they choose
//! digest mode, and moved to their next digest time each time it runs
//! ([`Engine::digest`]).

use crate::channel::{ChannelAdapter, Message};
use crate::email::{Digest, DigestItem, DigestKind};
use belfry_core::preferences::Effective;
use belfry_core::{Channel, Clock, Content, Millis};
use belfry_core::{InboxQuery, UserId};
use belfry_store::retention::{RetentionCursor, RetentionPolicy};
use belfry_store::{
    DeliveryEvent, DeliveryStatus, Job, JobOutcome, JobPayload, SharedStore, Store, StoreError,
    Verdict,
};
use std::collections::HashMap;
use std::sync::Arc;

mod summary;
use std::time::Duration;
pub use summary::RecipientLimit;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Jobs run at the same time.
    pub workers: usize,
    /// Attempts of one delivery before it is marked failed.
    pub max_attempts: i64,
    /// The first retry waits this long; each further one twice as long
    /// (capped at an hour), with ±20 % jitter.
    pub retry_base: Duration,
    /// How long a claimed job is reserved for its worker.
    pub lease: Duration,
    /// Longest sleep when nothing is due (timers are re-checked then).
    pub poll: Duration,
    /// Members of a broadcast queued per expansion step.
    pub expand_page: usize,
    /// Names this node in job leases.
    pub owner: String,
    /// What the daily retention job deletes; None: this node leaves the
    /// job alone (it neither queues nor runs it).
    pub retention: Option<RetentionPolicy>,
    /// How long one run of the retention job works before it lets other
    /// jobs have the worker (it continues at once, where it stopped).
    pub retention_slice: Duration,
    /// The per-recipient rate limit (P6); None: none.
    pub recipient_limit: Option<RecipientLimit>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            max_attempts: 6,
            retry_base: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(1),
            expand_page: 500,
            owner: "belfry".into(),
            retention: None,
            retention_slice: Duration::from_millis(250),
            recipient_limit: None,
        }
    }
}

pub struct Engine {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    adapters: HashMap<Channel, Arc<dyn ChannelAdapter>>,
    config: EngineConfig,
    /// Signalled when a job finished (capacity is free again).
    finished: Notify,
    limiter: Option<summary::Limiter>,
    /// Producer webhooks (C7); None: webhook jobs are dropped.
    webhooks: Option<Arc<crate::webhooks::WebhookSender>>,
}

/// The channel and status of each delivery-log line an outcome writes.
fn logged(outcome: &JobOutcome) -> Vec<(Channel, DeliveryStatus)> {
    let of = |events: &[DeliveryEvent]| -> Vec<(Channel, DeliveryStatus)> {
        events.iter().map(|e| (e.channel, e.status)).collect()
    };
    match outcome {
        JobOutcome::Done(events) => of(events),
        JobOutcome::Retry { log, .. }
        | JobOutcome::Later { log, .. }
        | JobOutcome::Summarise { log, .. } => of(log),
        JobOutcome::Digest { lines, .. } | JobOutcome::DoneLines(lines) => {
            lines.iter().map(|(_, e)| (e.channel, e.status)).collect()
        }
        JobOutcome::Continue(_) | JobOutcome::Release | JobOutcome::Webhook(_) => Vec::new(),
    }
}

/// The delay before attempt `attempt + 1`, with jitter from `salt`.
pub fn backoff(base: Duration, attempt: i64, salt: u64) -> Duration {
    let exp = (attempt.clamp(1, 30) - 1) as u32;
    let raw = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(Duration::from_secs(3600));
    // ±20 %, spread by the job id and attempt, so that retries of many
    // failed jobs do not all hit the server at the same moment.
    let mix = salt
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(attempt as u64)
        .rotate_left(17);
    let factor = 0.8 + (mix % 4001) as f64 / 10_000.0;
    raw.mul_f64(factor)
}

impl Engine {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>, config: EngineConfig) -> Engine {
        Engine {
            store,
            clock,
            adapters: HashMap::new(),
            limiter: config.recipient_limit.map(summary::Limiter::new),
            config,
            finished: Notify::new(),
            webhooks: None,
        }
    }

    /// Sends producer webhooks with `sender`.
    pub fn with_webhooks(mut self, sender: crate::webhooks::WebhookSender) -> Engine {
        self.webhooks = Some(Arc::new(sender));
        self
    }

    pub fn with_adapter(mut self, adapter: Arc<dyn ChannelAdapter>) -> Engine {
        self.adapters.insert(adapter.channel(), adapter);
        self
    }

    /// Runs until `shutdown`; then waits (up to the lease) for jobs in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let wakeup = self.store.jobs_wakeup();
        let slots = Arc::new(Semaphore::new(self.config.workers.max(1)));
        // Claimed jobs wait here for a worker slot; claiming several at once
        // keeps the number of claim transactions (and fsyncs) low.
        let mut claimed: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
        let prefetch = (self.config.workers * 4).clamp(8, 256);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Start what can start.
            while let Some(permit) = (!claimed.is_empty())
                .then(|| slots.clone().try_acquire_owned().ok())
                .flatten()
            {
                let job = claimed.pop_front().expect("not empty");
                let engine = self.clone();
                tokio::spawn(async move {
                    engine.run_job(job).await;
                    drop(permit);
                    engine.finished.notify_one();
                });
            }
            if claimed.len() < prefetch / 2 {
                let now = self.clock.now();
                let want = prefetch - claimed.len();
                match self
                    .store
                    .claim_jobs(
                        now,
                        self.config.lease.as_millis() as i64,
                        want,
                        &self.config.owner,
                    )
                    .await
                {
                    Ok(jobs) if !jobs.is_empty() => {
                        claimed.extend(jobs);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming jobs failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let wait = if !claimed.is_empty() {
                self.config.poll
            } else {
                match self.store.next_job_at().await {
                    Ok(Some(at)) => {
                        let ms = (at.0 - self.clock.now().0)
                            .clamp(0, self.config.poll.as_millis() as i64);
                        Duration::from_millis(ms as u64)
                    }
                    _ => self.config.poll,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wakeup.notified() => {}
                _ = self.finished.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Jobs claimed but not started go back to the queue at once.
        for job in claimed {
            let _ = self
                .store
                .finish_job(job.id, JobOutcome::Release, self.clock.now())
                .await;
        }
        // Let running deliveries finish and record their outcome.
        let all = self.config.workers.max(1) as u32;
        let _ = tokio::time::timeout(self.config.lease, slots.acquire_many(all)).await;
    }

    /// Runs every job that is due now, until none is (tests and tools use
    /// this to drain the queue without waiting for the background loop).
    pub async fn run_due(&self) -> usize {
        let mut done = 0;
        loop {
            let jobs = match self
                .store
                .claim_jobs(
                    self.clock.now(),
                    self.config.lease.as_millis() as i64,
                    64,
                    &self.config.owner,
                )
                .await
            {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed");
                    return done;
                }
            };
            if jobs.is_empty() {
                return done;
            }
            done += jobs.len();
            futures::future::join_all(jobs.into_iter().map(|j| self.run_job(j))).await;
        }
    }

    async fn run_job(&self, job: Job) {
        let outcome = self.outcome(&job).await;
        let lines = logged(&outcome);
        let attempt = match &outcome {
            JobOutcome::Webhook(e) => Some((e.attempt.event_type, e.attempt.status)),
            _ => None,
        };
        match self
            .store
            .finish_job(job.id, outcome, self.clock.now())
            .await
        {
            // What the delivery log now says, as a metric.
            Ok(()) => {
                for (channel, status) in lines {
                    metrics::counter!("belfry_deliveries_total", "channel" => channel.as_str(), "status" => status.as_str())
                        .increment(1);
                }
                if let Some((event, outcome)) = attempt {
                    metrics::counter!("belfry_webhook_attempts_total", "event" => event.as_str(), "outcome" => outcome.as_str())
                        .increment(1);
                }
            }
            // The lease runs out and another worker takes the job again.
            Err(e) => {
                tracing::error!(job = job.id, error = %e, "recording a job's outcome failed")
            }
        }
    }

    fn line(
        &self,
        recipient: String,
        channel: Channel,
        status: DeliveryStatus,
        attempt: i64,
        error: Option<String>,
    ) -> DeliveryEvent {
        DeliveryEvent {
            recipient,
            channel,
            status,
            attempt,
            error,
            at: self.clock.now(),
            reason: None,
            until: None,
        }
    }

    /// What the recipient's preferences decided instead of a delivery now
    /// (`belfry_store::Verdict`), as the job's outcome; None: deliver now.
    fn held_back(
        &self,
        label: &str,
        channel: Channel,
        recipient: &belfry_store::Recipient,
        verdict: Verdict,
    ) -> Option<JobOutcome> {
        let line = |status, reason, until| DeliveryEvent {
            reason,
            until,
            ..self.line(label.to_string(), channel, status, 0, None)
        };
        let (outcome, name) = match verdict {
            Verdict::Now => return None,
            Verdict::Suppressed(reason) => (
                JobOutcome::Done(vec![line(DeliveryStatus::Suppressed, Some(reason), None)]),
                "suppressed",
            ),
            Verdict::Held { until } => (
                JobOutcome::Later {
                    at: until,
                    payload: None,
                    log: vec![line(DeliveryStatus::Held, None, Some(until))],
                },
                "held",
            ),
            Verdict::Digest => (
                JobOutcome::Done(vec![line(DeliveryStatus::Digested, None, None)]),
                "digested",
            ),
            // The email fallback (C8): the same job checks again at `at`.
            Verdict::Fallback { at } => (
                JobOutcome::Later {
                    at,
                    payload: Some(JobPayload::Fallback {
                        recipient: recipient.clone(),
                    }),
                    log: vec![line(DeliveryStatus::Held, None, Some(at))],
                },
                "held",
            ),
        };
        metrics::counter!("belfry_delivery_attempts_total", "channel" => channel.as_str(), "outcome" => name).increment(1);
        Some(outcome)
    }

    /// Retries with back-off while attempts remain, else fails for good.
    fn retry_or_fail(
        &self,
        job: &Job,
        error: String,
        log: impl Fn(Option<String>) -> DeliveryEvent,
    ) -> JobOutcome {
        self.retry_or_fail_after(job, error, None, log)
    }

    /// [`Engine::retry_or_fail`], not before `not_before` (a receiving
    /// service's `Retry-After`) when that is longer than the back-off.
    fn retry_or_fail_after(
        &self,
        job: &Job,
        error: String,
        not_before: Option<Duration>,
        log: impl Fn(Option<String>) -> DeliveryEvent,
    ) -> JobOutcome {
        if job.attempts >= self.config.max_attempts {
            metrics::counter!("belfry_jobs_failed_total", "kind" => job.payload.kind())
                .increment(1);
            return JobOutcome::Done(vec![log(Some(format!(
                "{error} (gave up after {} attempts)",
                job.attempts
            )))]);
        }
        let delay = backoff(self.config.retry_base, job.attempts, job.id as u64)
            .max(not_before.unwrap_or_default());
        let at = Millis(self.clock.now().0 + delay.as_millis() as i64);
        JobOutcome::Retry {
            at,
            error: error.clone(),
            log: vec![log(Some(format!("{error} (retrying at {at})")))],
            payload: None,
        }
    }

    async fn outcome(&self, job: &Job) -> JobOutcome {
        let now = self.clock.now();
        if let JobPayload::Retention { cursor } = &job.payload {
            return self.retention(job, cursor.clone()).await;
        }
        let Some(nid) = job.nid else {
            if let JobPayload::Webhook { webhook, event } = &job.payload {
                return match &self.webhooks {
                    Some(sender) => sender.attempt(job, webhook, event, now).await,
                    None => {
                        tracing::warn!(job = job.id, "no webhook sender: the event is dropped");
                        JobOutcome::Done(vec![])
                    }
                };
            }
            if let JobPayload::Digest { user, since } = &job.payload {
                return self.digest(job, user, *since).await;
            }
            if let JobPayload::Summary {
                user,
                channel,
                since,
                nids,
                more,
                ..
            } = &job.payload
            {
                return self.summary(job, user, *channel, *since, nids, *more).await;
            }
            return JobOutcome::Done(vec![]);
        };
        match &job.payload {
            JobPayload::Publish => match self.store.publish_due(nid, now).await {
                Ok(()) => JobOutcome::Done(vec![]),
                Err(e) => self.retry_or_fail(job, format!("publishing failed: {e}"), |err| {
                    self.line(
                        "scheduled".into(),
                        Channel::InApp,
                        DeliveryStatus::Failed,
                        job.attempts,
                        err,
                    )
                }),
            },
            JobPayload::Expand { channel, after_uid } => {
                match self
                    .store
                    .expand_broadcast(nid, *channel, *after_uid, self.config.expand_page, now)
                    .await
                {
                    Ok(Some(next)) => JobOutcome::Continue(JobPayload::Expand {
                        channel: *channel,
                        after_uid: next,
                    }),
                    Ok(None) => JobOutcome::Done(vec![]),
                    Err(e) => self.retry_or_fail(
                        job,
                        format!("queueing the audience failed: {e}"),
                        |err| {
                            self.line(
                                "broadcast".into(),
                                *channel,
                                DeliveryStatus::Failed,
                                job.attempts,
                                err,
                            )
                        },
                    ),
                }
            }
            JobPayload::Deliver {
                channel,
                recipient,
                done,
            } => {
                self.deliver(job, nid, *channel, recipient, false, done)
                    .await
            }
            JobPayload::Fallback { recipient } => {
                self.deliver(job, nid, Channel::Email, recipient, true, &[])
                    .await
            }
            // A digest job has no notification (handled above).
            JobPayload::Digest { user, since } => self.digest(job, user, *since).await,
            // Handled above (they have no notification).
            JobPayload::Retention { .. }
            | JobPayload::Summary { .. }
            | JobPayload::Webhook { .. } => JobOutcome::Done(vec![]),
        }
    }

    /// A slice of the retention run: bounded steps (one short transaction
    /// each, with a rest as long as the step after each) for up to
    /// `retention_slice`, then again at once from where it stopped; when
    /// the run is over, the next one in `retention.every`.
    async fn retention(&self, job: &Job, cursor: Option<RetentionCursor>) -> JobOutcome {
        let started = std::time::Instant::now();
        let Some(policy) = self.config.retention else {
            // Another node's job: it runs there next time.
            return JobOutcome::Later {
                at: Millis(self.clock.now().0 + RetentionPolicy::default().every),
                payload: None,
                log: vec![],
            };
        };
        // The days an administrator set at run time (PUT /v1/settings)
        // win over this node's configuration, on every node.
        let policy = match self.store.runtime_settings().await {
            Ok(settings) => settings.apply(policy),
            Err(e) => {
                tracing::warn!(error = %e, "reading the run-time settings; using the configured retention");
                policy
            }
        };
        let mut cursor = cursor.unwrap_or_else(RetentionCursor::start);
        loop {
            let step_started = std::time::Instant::now();
            let step = match self
                .store
                .retention_step(cursor.clone(), policy, self.clock.now())
                .await
            {
                Ok(step) => step,
                Err(e) => {
                    tracing::warn!(error = %e, "retention step failed");
                    let at = Millis(
                        self.clock.now().0
                            + backoff(self.config.retry_base, job.attempts, job.id as u64)
                                .as_millis() as i64,
                    );
                    // Keeps its place; the attempt does not count.
                    return JobOutcome::Later {
                        at,
                        payload: Some(JobPayload::Retention {
                            cursor: Some(cursor),
                        }),
                        log: vec![],
                    };
                }
            };
            for (what, rows) in step.deleted.parts() {
                if rows > 0 {
                    metrics::counter!("belfry_retention_deleted_total", "what" => what)
                        .increment(rows);
                }
            }
            match step.next {
                None => {
                    metrics::counter!("belfry_retention_runs_total").increment(1);
                    tracing::info!("retention run finished");
                    return JobOutcome::Later {
                        at: Millis(self.clock.now().0 + policy.every),
                        payload: Some(JobPayload::Retention { cursor: None }),
                        log: vec![],
                    };
                }
                Some(next) if started.elapsed() >= self.config.retention_slice => {
                    return JobOutcome::Continue(JobPayload::Retention { cursor: Some(next) });
                }
                Some(next) => {
                    // Rest as long as the step took: the writer stays free
                    // for sends at least half the time.
                    tokio::time::sleep(step_started.elapsed()).await;
                    cursor = next;
                }
            }
        }
    }

    /// One delivery (`fallback`: the email fallback delay has passed).
    async fn deliver(
        &self,
        job: &Job,
        nid: i64,
        channel: Channel,
        recipient: &belfry_store::Recipient,
        fallback: bool,
        done: &[String],
    ) -> JobOutcome {
        let now = self.clock.now();
        let label = recipient.label();
        let Some(adapter) = self.adapters.get(&channel) else {
            return JobOutcome::Done(vec![self.line(
                label,
                channel,
                DeliveryStatus::Skipped,
                0,
                Some(format!(
                    "the {} channel is not configured on this server",
                    channel.as_str()
                )),
            )]);
        };
        let context = match self
            .store
            .delivery_context(nid, recipient, channel, now, fallback)
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return JobOutcome::Done(vec![]),
            Err(e) => {
                return self.retry_or_fail(
                    job,
                    format!("loading the notification failed: {e}"),
                    |err| {
                        self.line(
                            label.clone(),
                            channel,
                            DeliveryStatus::Failed,
                            job.attempts,
                            err,
                        )
                    },
                );
            }
        };
        if context.status == belfry_store::NotificationStatus::Cancelled {
            return JobOutcome::Done(vec![self.line(
                label,
                channel,
                DeliveryStatus::Cancelled,
                0,
                None,
            )]);
        }
        // The first digested email of a user creates their digest job.
        if context.verdict == Verdict::Digest
            && channel == Channel::Email
            && let belfry_store::Recipient::User(user) = recipient
            && let Err(e) = schedule_digest(self.store.as_ref(), user, false, now).await
        {
            return self.retry_or_fail(job, format!("queueing the digest failed: {e}"), |err| {
                self.line(
                    label.clone(),
                    channel,
                    DeliveryStatus::Failed,
                    job.attempts,
                    err,
                )
            });
        }
        if let Some(outcome) = self.held_back(&label, channel, recipient, context.verdict) {
            return outcome;
        }
        if let Some(outcome) = self.rate_limited(&label, channel, recipient) {
            return outcome;
        }
        let content: Content = match serde_json::from_str(&context.content_json) {
            Ok(c) => c,
            Err(e) => {
                return JobOutcome::Done(vec![self.line(
                    label,
                    channel,
                    DeliveryStatus::Failed,
                    job.attempts,
                    Some(format!("the stored content is unreadable: {e}")),
                )]);
            }
        };
        let message = Message {
            delivery_id: format!("{}.{}", context.notification_id, job.id),
            notification_id: context.notification_id,
            recipient: recipient.clone(),
            profile: context.profile,
            content,
            published_at: context.published_at,
            done: done.to_vec(),
        };
        if let Some(reason) = adapter.skip_reason(&message) {
            metrics::counter!("belfry_delivery_attempts_total", "channel" => channel.as_str(), "outcome" => "skipped").increment(1);
            return JobOutcome::Done(vec![self.line(
                label,
                channel,
                DeliveryStatus::Skipped,
                0,
                Some(reason),
            )]);
        }
        match adapter.send(&message).await {
            Ok(()) => {
                metrics::counter!("belfry_delivery_attempts_total", "channel" => channel.as_str(), "outcome" => "sent").increment(1);
                JobOutcome::Done(vec![self.line(
                    label,
                    channel,
                    DeliveryStatus::Sent,
                    job.attempts,
                    None,
                )])
            }
            Err(e) if e.skipped => {
                metrics::counter!("belfry_delivery_attempts_total", "channel" => channel.as_str(), "outcome" => "skipped").increment(1);
                JobOutcome::Done(vec![self.line(
                    label,
                    channel,
                    DeliveryStatus::Skipped,
                    job.attempts,
                    Some(e.message),
                )])
            }
            Err(e) if e.permanent => {
                metrics::counter!("belfry_delivery_attempts_total", "channel" => channel.as_str(), "outcome" => "failed").increment(1);
                metrics::counter!("belfry_jobs_failed_total", "kind" => "deliver").increment(1);
                JobOutcome::Done(vec![self.line(
                    label,
                    channel,
                    DeliveryStatus::Failed,
                    job.attempts,
                    Some(e.message),
                )])
            }
            Err(e) => {
                metrics::counter!("belfry_delivery_attempts_total", "channel" => channel.as_str(), "outcome" => "retry").increment(1);
                let mut outcome = self.retry_or_fail_after(job, e.message, e.retry_after, |err| {
                    self.line(
                        label.clone(),
                        channel,
                        DeliveryStatus::Failed,
                        job.attempts,
                        err,
                    )
                });
                // The targets that took it are not sent to again.
                if let JobOutcome::Retry { payload, .. } = &mut outcome
                    && !e.delivered.is_empty()
                {
                    let mut all = done.to_vec();
                    all.extend(e.delivered);
                    *payload = Some(JobPayload::Deliver {
                        channel,
                        recipient: recipient.clone(),
                        done: all,
                    });
                }
                outcome
            }
        }
    }
}

/// The window of a user's first digest.
const FIRST_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Notifications listed in a digest.
pub const DIGEST_ITEMS: usize = 5;
/// Unread notifications a digest counts at most (`total` stops there).
const DIGEST_COUNT_LIMIT: i64 = 10_000;

fn zone_of(name: Option<&belfry_core::TimeZoneName>) -> jiff::tz::TimeZone {
    name.and_then(|t| jiff::tz::TimeZone::get(t.as_str()).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Queues `user`'s daily digest job at their next digest time unless they
/// have one; with `reschedule` (they changed their preferences), a waiting
/// one moves to the new time.
#[tracing::instrument(skip_all, fields(user = %user))]
pub async fn schedule_digest(
    store: &dyn Store,
    user: &UserId,
    reschedule: bool,
    now: Millis,
) -> Result<(), StoreError> {
    let prefs = store.preferences(user).await?;
    let effective = Effective::of(&prefs.defaults, &prefs.overrides);
    let zone = zone_of(prefs.timezone.as_ref());
    let Some(at) = belfry_store::next_digest(effective.digest.time, &zone, now) else {
        return Ok(());
    };
    store.schedule_digest(user, at, reschedule, now).await
}

impl Engine {
    /// Runs `user`'s daily digest: one email with the newest unread
    /// notifications of their inbox (what the widget lists as unread,
    /// broadcasts included) that arrived since the last digest (`since`;
    /// the first covers 24 hours), how many there are, and the link to all;
    /// nothing when nothing is unread. Then the same job moves to the next
    /// digest time. The job ends when the user is gone or no longer takes a
    /// digest (`uses_digest`).
    #[tracing::instrument(skip_all, fields(job = job.id, user = %user))]
    async fn digest(&self, job: &Job, user: &UserId, since: Option<Millis>) -> JobOutcome {
        let now = self.clock.now();
        let counted = |outcome: &'static str| {
            metrics::counter!("belfry_digests_total", "outcome" => outcome).increment(1);
        };
        let prefs = match self.store.preferences(user).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => {
                counted("ended");
                return JobOutcome::Done(vec![]);
            }
            Err(e) => return self.digest_retry(job, format!("loading preferences failed: {e}")),
        };
        let categories = match self.store.list_categories().await {
            Ok(c) => c,
            Err(e) => return self.digest_retry(job, format!("loading categories failed: {e}")),
        };
        let effective = Effective::of(&prefs.defaults, &prefs.overrides);
        if !belfry_store::uses_digest(&effective, &categories) {
            counted("ended");
            return JobOutcome::Done(vec![]);
        }
        let zone = zone_of(prefs.timezone.as_ref());
        let Some(next) = belfry_store::next_digest(effective.digest.time, &zone, now) else {
            return JobOutcome::Done(vec![]);
        };
        let window = since.unwrap_or(Millis(now.0 - FIRST_WINDOW_MS));
        let moved = |since: Millis, lines| JobOutcome::Digest {
            at: next,
            payload: JobPayload::Digest {
                user: user.clone(),
                since: Some(since),
            },
            lines,
        };
        let (items, total) = match self.unread_since(user, window, now).await {
            Ok(found) => found,
            Err(e) => return self.digest_retry(job, format!("reading the inbox failed: {e}")),
        };
        if total == 0 {
            counted("empty");
            return moved(now, vec![]);
        }
        let person = match self.store.get_user(user).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                counted("ended");
                return JobOutcome::Done(vec![]);
            }
            Err(e) => return self.digest_retry(job, format!("loading the user failed: {e}")),
        };
        let (Some(to), Some(adapter)) = (person.email.clone(), self.adapters.get(&Channel::Email))
        else {
            counted("skipped");
            return moved(now, vec![]);
        };
        let digest = Digest {
            kind: DigestKind::Daily,
            user: user.clone(),
            delivery_id: format!("digest.{}.{}", job.id, job.run_at.0),
            to: Some(to),
            name: person.name.clone(),
            locale: person.locale.clone(),
            timezone: person.timezone.as_ref().map(|t| t.as_str().to_string()),
            items,
            total,
            since: window,
        };
        match adapter.send_digest(&digest).await {
            Ok(()) => {
                counted("sent");
                // Each listed notification's log says it went out in this
                // digest (after its `digested` line, if it was held for it).
                let label = format!("user:{user}");
                let lines = digest
                    .items
                    .iter()
                    .map(|i| {
                        (
                            i.id.clone(),
                            self.line(
                                label.clone(),
                                Channel::Email,
                                DeliveryStatus::Sent,
                                job.attempts,
                                None,
                            ),
                        )
                    })
                    .collect();
                moved(now, lines)
            }
            Err(e) if e.permanent || job.attempts >= self.config.max_attempts => {
                // Tomorrow's digest covers this one's window too.
                counted("failed");
                metrics::counter!("belfry_jobs_failed_total", "kind" => "digest").increment(1);
                tracing::warn!(error = %e.message, "the digest could not be sent; next at {next}");
                moved(window, vec![])
            }
            Err(e) => self.digest_retry(job, e.message),
        }
    }

    /// A digest that failed for a passing reason is tried again with
    /// back-off; never dropped (the job is the user's schedule).
    fn digest_retry(&self, job: &Job, error: String) -> JobOutcome {
        tracing::warn!(job = job.id, error = %error, "the digest will be retried");
        metrics::counter!("belfry_digests_total", "outcome" => "retry").increment(1);
        let delay = backoff(self.config.retry_base, job.attempts, job.id as u64);
        JobOutcome::Retry {
            at: Millis(self.clock.now().0 + delay.as_millis() as i64),
            error,
            log: vec![],
            payload: None,
        }
    }

    /// The newest [`DIGEST_ITEMS`] unread items of `user`'s inbox that
    /// arrived at or after `since`, and how many there are: read page by
    /// page through the inbox listing itself, so the digest agrees with
    /// what the widget shows as unread.
    async fn unread_since(
        &self,
        user: &UserId,
        since: Millis,
        now: Millis,
    ) -> Result<(Vec<DigestItem>, i64), StoreError> {
        let mut items = Vec::new();
        let mut total = 0i64;
        let mut cursor = None;
        loop {
            let query = InboxQuery {
                filter: belfry_core::inbox::Filter::Unread,
                category: None,
                limit: belfry_core::inbox::MAX_LIMIT,
                cursor,
            };
            let page = self.store.list_inbox(user, query, now).await?;
            for raw in &page.items {
                let value: serde_json::Value =
                    serde_json::from_str(raw).map_err(StoreError::backend)?;
                let Some(item) = DigestItem::from_inbox_item(&value) else {
                    continue;
                };
                if item.at < since || total >= DIGEST_COUNT_LIMIT {
                    return Ok((items, total));
                }
                total += 1;
                if items.len() < DIGEST_ITEMS {
                    items.push(item);
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok((items, total)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let base = Duration::from_secs(10);
        for salt in [1u64, 7, 99, 12345] {
            let first = backoff(base, 1, salt);
            assert!(
                first >= Duration::from_secs(8) && first <= Duration::from_secs(12),
                "{first:?}"
            );
            let third = backoff(base, 3, salt);
            assert!(
                third >= Duration::from_secs(32) && third <= Duration::from_secs(48),
                "{third:?}"
            );
            let late = backoff(base, 25, salt);
            assert!(late <= Duration::from_secs(4320), "{late:?}");
        }
        assert_ne!(
            backoff(base, 2, 1),
            backoff(base, 2, 2),
            "jitter spreads retries"
        );
    }
}
