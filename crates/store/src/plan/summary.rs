//! The per-recipient rate limit's summary (P6): a delivery the limit holds
//! back joins its recipient's summary job for the window (one job per
//! recipient, channel and window end, unique by `jobs.dedup`), which sends
//! one message listing what was held when the window ends.

use crate::jobs::JobPayload;
use crate::{Result, StoreError};
use belfry_core::Millis;

/// Notifications a summary job keeps by id; beyond them it only counts
/// (`JobPayload::Summary::nids` is rewritten at each join, so it stays small
/// however busy a recipient is).
pub const KEPT: usize = 100;

/// What to do with the summary job of a held delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Join {
    /// There is none: insert this one.
    Insert(JobPayload),
    /// Rewrite the waiting one's payload as this.
    Update(JobPayload),
    /// The window's summary is running already: join the next window's.
    Next(JobPayload),
}

/// When a summary job runs: at the end of its window.
pub(crate) fn run_at(summary: &JobPayload) -> Millis {
    match summary {
        JobPayload::Summary { until, .. } => *until,
        _ => Millis(0),
    }
}

/// Joins notification `nid` to `summary` (a [`JobPayload::Summary`] of the
/// window), given the stored job of that window, if any (its payload and
/// lease).
pub(crate) fn join(
    summary: JobPayload,
    stored: Option<(&str, Option<i64>)>,
    nid: i64,
    now: Millis,
) -> Result<Join> {
    let JobPayload::Summary {
        user,
        channel,
        since,
        until,
        ..
    } = summary
    else {
        return Err(StoreError::backend("a summary must be a summary job"));
    };
    let Some((payload, lease)) = stored else {
        return Ok(Join::Insert(JobPayload::Summary {
            user,
            channel,
            since,
            until,
            nids: vec![nid],
            more: 0,
        }));
    };
    if lease.is_some_and(|l| l > now.0) {
        let length = (until.0 - since.0).max(1);
        return Ok(Join::Next(JobPayload::Summary {
            user,
            channel,
            since: until,
            until: Millis(until.0 + length),
            nids: vec![nid],
            more: 0,
        }));
    }
    let mut stored: JobPayload = serde_json::from_str(payload).map_err(StoreError::backend)?;
    if let JobPayload::Summary { nids, more, .. } = &mut stored
        && !nids.contains(&nid)
    {
        if nids.len() < KEPT {
            nids.push(nid);
        } else {
            *more += 1;
        }
    }
    Ok(Join::Update(stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::{Channel, UserId};

    fn summary(nids: Vec<i64>) -> JobPayload {
        JobPayload::Summary {
            user: UserId::parse("u").unwrap(),
            channel: Channel::Email,
            since: Millis(60_000),
            until: Millis(120_000),
            nids,
            more: 0,
        }
    }

    #[test]
    fn the_first_held_delivery_makes_the_job_and_later_ones_join_it_once() {
        let first = join(summary(vec![]), None, 7, Millis(70_000)).unwrap();
        assert_eq!(first, Join::Insert(summary(vec![7])));
        let stored = serde_json::to_string(&summary(vec![7])).unwrap();
        let second = join(summary(vec![]), Some((&stored, None)), 8, Millis(71_000)).unwrap();
        assert_eq!(second, Join::Update(summary(vec![7, 8])));
        // A retry of the same delivery does not list it twice.
        let again = join(summary(vec![]), Some((&stored, None)), 7, Millis(72_000)).unwrap();
        assert_eq!(again, Join::Update(summary(vec![7])));
        // An expired lease is a job waiting to be claimed again.
        let expired = join(summary(vec![]), Some((&stored, Some(1))), 9, Millis(72_000)).unwrap();
        assert_eq!(expired, Join::Update(summary(vec![7, 9])));
    }

    #[test]
    fn a_running_summary_sends_the_late_one_with_the_next_window() {
        let stored = serde_json::to_string(&summary(vec![7])).unwrap();
        let late = join(
            summary(vec![]),
            Some((&stored, Some(200_000))),
            8,
            Millis(120_500),
        )
        .unwrap();
        let Join::Next(JobPayload::Summary {
            since, until, nids, ..
        }) = late
        else {
            panic!("expected the next window, got {late:?}");
        };
        assert_eq!(
            (since, until, nids),
            (Millis(120_000), Millis(180_000), vec![8])
        );
    }

    #[test]
    fn beyond_the_kept_ids_it_counts() {
        let full: Vec<i64> = (0..KEPT as i64).collect();
        let stored = serde_json::to_string(&summary(full.clone())).unwrap();
        let Join::Update(JobPayload::Summary { nids, more, .. }) = join(
            summary(vec![]),
            Some((&stored, None)),
            1_000,
            Millis(70_000),
        )
        .unwrap() else {
            panic!("expected an update");
        };
        assert_eq!((nids, more), (full, 1));
    }
}
