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

/// The targets of a recipient that still need the message: those not in
/// `done` (they took it in an earlier attempt). When none is left the
/// delivery is over: sent (an earlier attempt reached the rest, or they
/// are gone since) or, when nothing was ever done, skipped (`none` says
/// why).
pub(crate) fn pending<'a, T>(
    targets: &'a [T],
    done: &[String],
    id: impl Fn(&T) -> &str,
    none: &str,
) -> Result<Vec<&'a T>, Result<(), SendError>> {
    let pending: Vec<&T> = targets
        .iter()
        .filter(|t| !done.iter().any(|d| d == id(t)))
        .collect();
    match (pending.is_empty(), done.is_empty()) {
        (false, _) => Ok(pending),
        (true, true) => Err(Err(SendError::skipped(none))),
        (true, false) => Err(Ok(())),
    }
}

/// [`combine`] for `targets` (what [`pending`] gave, in the order of
/// `outcomes`): a temporary failure also names the targets that took the
/// message, so that the retry leaves them out.
pub(crate) fn combine_targets<T>(
    recipient: &str,
    targets: &[&T],
    id: impl Fn(&T) -> &str,
    outcomes: Vec<Outcome>,
    gone_means: &str,
) -> Result<(), SendError> {
    let delivered: Vec<String> = targets
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Outcome::Delivered))
        .map(|(t, _)| id(t).to_string())
        .collect();
    combine(recipient, outcomes, gone_means).map_err(|e| {
        if e.permanent {
            e
        } else {
            e.delivered(delivered)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_leaves_out_the_targets_that_took_it() {
        let targets = ["a".to_string(), "b".to_string(), "c".to_string()];
        let id = |t: &String| t.as_str().to_owned();
        let left = pending(&targets, &["b".into()], |t| t.as_str(), "none").unwrap();
        assert_eq!(left, [&targets[0], &targets[2]]);
        let e = combine_targets(
            "user:x",
            &left,
            |t| t.as_str(),
            vec![Outcome::Delivered, Outcome::Retry("busy".into(), None)],
            "gone",
        )
        .unwrap_err();
        assert!(!e.permanent);
        assert_eq!(e.delivered, ["a"]);
        assert!(e.message.contains("1 of 2 delivered"), "{}", e.message);
        // Nothing left: done before, or nothing ever there.
        let all: Vec<String> = targets.iter().map(id).collect();
        assert!(matches!(
            pending(&targets, &all, |t| t.as_str(), "none"),
            Err(Ok(()))
        ));
        let empty: [String; 0] = [];
        match pending(&empty, &[], |t| t.as_str(), "no targets") {
            Err(Err(e)) => assert!(e.skipped && e.message == "no targets"),
            _ => panic!("skipped"),
        }
        // One took it, one refused for good: sent.
        let e = combine_targets(
            "user:x",
            &left,
            |t| t.as_str(),
            vec![Outcome::Delivered, Outcome::Failed("no".into())],
            "gone",
        );
        assert!(e.is_ok(), "one took it: sent");
    }
}
