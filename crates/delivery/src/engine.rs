//! The engine: claims due jobs from the store in batches, runs them with
//! bounded concurrency, and records each outcome (with its delivery log
//! lines) in the same transaction that completes or reschedules the job.
//! A commit that queues jobs wakes the engine at once; otherwise it sleeps
//! until the next job is due (at most `poll`). A job whose worker died is
//! claimed again when its lease runs out.

use crate::channel::{ChannelAdapter, Message};
use belfry_core::{Channel, Clock, Content, Millis};
use belfry_store::retention::{RetentionCursor, RetentionPolicy};
use belfry_store::{
    DeliveryEvent, DeliveryStatus, Job, JobOutcome, JobPayload, SharedStore, Verdict,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
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
            config,
            finished: Notify::new(),
        }
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
        if let Err(e) = self
            .store
            .finish_job(job.id, outcome, self.clock.now())
            .await
        {
            // The lease runs out and another worker takes the job again.
            tracing::error!(job = job.id, error = %e, "recording a job's outcome failed");
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
        if job.attempts >= self.config.max_attempts {
            metrics::counter!("belfry_jobs_failed_total", "kind" => job.payload.kind())
                .increment(1);
            return JobOutcome::Done(vec![log(Some(format!(
                "{error} (gave up after {} attempts)",
                job.attempts
            )))]);
        }
        let delay = backoff(self.config.retry_base, job.attempts, job.id as u64);
        let at = Millis(self.clock.now().0 + delay.as_millis() as i64);
        JobOutcome::Retry {
            at,
            error: error.clone(),
            log: vec![log(Some(format!("{error} (retrying at {at})")))],
        }
    }

    async fn outcome(&self, job: &Job) -> JobOutcome {
        let now = self.clock.now();
        if let JobPayload::Retention { cursor } = &job.payload {
            return self.retention(job, cursor.clone()).await;
        }
        let Some(nid) = job.nid else {
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
            JobPayload::Deliver { channel, recipient } => {
                self.deliver(job, nid, *channel, recipient, false).await
            }
            JobPayload::Fallback { recipient } => {
                self.deliver(job, nid, Channel::Email, recipient, true)
                    .await
            }
            // Handled above (it has no notification).
            JobPayload::Retention { .. } => JobOutcome::Done(vec![]),
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
            .email_context(nid, recipient, now, fallback)
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
        if let Some(outcome) = self.held_back(&label, channel, recipient, context.verdict) {
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
            recipient: recipient.clone(),
            content,
            context,
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
                self.retry_or_fail(job, e.message, |err| {
                    self.line(
                        label.clone(),
                        channel,
                        DeliveryStatus::Failed,
                        job.attempts,
                        err,
                    )
                })
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
