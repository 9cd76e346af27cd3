//! One message to each of a recipient's targets (a user's push
//! subscriptions, a user's or a group's chat targets): what one request's
//! result is, and what the results together make of the delivery.

use crate::channel::SendError;
use std::time::Duration;

/// The result of sending to one target.
pub(crate) enum Outcome {
    Delivered,
    /// The service said the target is gone (web push 404/410, a mobile
    /// token that is no longer valid) and it was removed.
    Gone,
    /// Will not work on retry (refused address, 4xx).
    Failed(String),
    /// 429, 5xx, network: try again (not before the given time).
    Retry(String, Option<Duration>),
}

/// A request that got no answer: refused by the outbound policy (for good:
/// the refusal sits in the error's source chain) or not reached (retried).
/// `label` names the target without secrets.
pub(crate) fn unanswered(label: &str, e: &reqwest::Error) -> Outcome {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<crate::outbound::Refused>().is_some() {
            return Outcome::Failed(format!("{label}: {s}"));
        }
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    Outcome::Retry(format!("{label} could not be reached: {chain}"), None)
}

/// The delivery to `recipient` from its targets' results: retried (no
/// earlier than the longest `Retry-After`) if any target may take it later;
/// sent if any took it; skipped if every target was gone; else failed.
/// `gone_means` says how the channel's service says a target is gone.
pub(crate) fn combine(
    recipient: &str,
    outcomes: Vec<Outcome>,
    gone_means: &str,
) -> Result<(), SendError> {
    let total = outcomes.len();
    let (mut delivered, mut gone) = (0, 0);
    let mut failed = Vec::new();
    let mut retry = Vec::new();
    let mut wait: Option<Duration> = None;
    for outcome in outcomes {
        match outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Gone => gone += 1,
            Outcome::Failed(e) => failed.push(e),
            Outcome::Retry(e, after) => {
                retry.push(e);
                wait = wait.max(after);
            }
        }
    }
    let gone_note = if gone > 0 {
        format!("; {gone} target(s) gone ({gone_means}), removed")
    } else {
        String::new()
    };
    if !failed.is_empty() {
        tracing::warn!(recipient, errors = %failed.join("; "), "targets refused a message");
    }
    if !retry.is_empty() {
        let said: Vec<String> = retry.into_iter().chain(failed).collect();
        let e = SendError::temporary(format!(
            "{}{gone_note}; {delivered} of {total} delivered",
            said.join("; ")
        ));
        return Err(match wait {
            Some(after) => e.retry_after(after),
            None => e,
        });
    }
    if delivered > 0 {
        return Ok(());
    }
    if failed.is_empty() {
        return Err(SendError::skipped(format!(
            "every target of {recipient} is gone ({gone}, {gone_means}): removed"
        )));
    }
    Err(SendError::permanent(format!(
        "{}{gone_note}",
        failed.join("; ")
    )))
}
