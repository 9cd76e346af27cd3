//! Restores the global order of commits before they reach the hub. Every
//! commit that publishes notifications carries a contiguous range of seqs,
//! and seqs are assigned in commit order without gaps; but on a bus with
//! several publishers (nodes) batches may arrive out of order. A batch that
//! arrives early waits until the seqs before it arrived; if a gap persists
//! (a message was lost), the waiting batches are released and the caller is
//! told to make every stream resume from the store, which has everything.

use super::bus::Batch;
use belfry_store::StoreEvent;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The first and last seq a batch publishes, if it publishes any.
fn seq_range(batch: &Batch) -> Option<(i64, i64)> {
    let mut range: Option<(i64, i64)> = None;
    for event in batch.iter() {
        if let StoreEvent::Published(p) = event {
            range = Some(match range {
                None => (p.seq, p.seq),
                Some((lo, hi)) => (lo.min(p.seq), hi.max(p.seq)),
            });
        }
    }
    range
}

pub(crate) struct Sequencer {
    /// The next seq to deliver.
    expected: i64,
    /// Batches that arrived before their turn, by first seq.
    held: BTreeMap<i64, (Batch, i64, Instant)>,
    timeout: Duration,
}

/// What to do after a step.
#[derive(Default)]
pub(crate) struct Ready {
    /// Batches to dispatch, in order.
    pub batches: Vec<Batch>,
    /// A gap was given up: streams must resume from the store.
    pub gap: bool,
}

impl Sequencer {
    /// `last_seq`: the highest seq committed before this node listened.
    pub fn new(last_seq: i64, timeout: Duration) -> Sequencer {
        Sequencer {
            expected: last_seq + 1,
            held: BTreeMap::new(),
            timeout,
        }
    }

    fn release_in_order(&mut self, out: &mut Vec<Batch>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.expected {
                break;
            }
            let (batch, last, _) = entry.remove();
            self.expected = last + 1;
            out.push(batch);
        }
    }

    pub fn push(&mut self, batch: Batch, now: Instant) -> Ready {
        let mut ready = Ready::default();
        match seq_range(&batch) {
            // Nothing ordered in it (state changes): deliver at once.
            None => ready.batches.push(batch),
            // Earlier than expected: committed before we listened (its
            // notifications are in the store for any stream that resumes).
            Some((first, last)) if first < self.expected => {
                self.expected = self.expected.max(last + 1);
                ready.batches.push(batch);
                self.release_in_order(&mut ready.batches);
            }
            Some((first, last)) if first == self.expected => {
                self.expected = last + 1;
                ready.batches.push(batch);
                self.release_in_order(&mut ready.batches);
            }
            Some((first, last)) => {
                self.held.insert(first, (batch, last, now));
            }
        }
        ready
    }

    /// When the oldest held batch has waited too long, gives up on the gap.
    pub fn expire(&mut self, now: Instant) -> Ready {
        let mut ready = Ready::default();
        let stale = self
            .held
            .values()
            .map(|(_, _, at)| *at)
            .min()
            .is_some_and(|at| now.duration_since(at) >= self.timeout);
        if stale {
            ready.gap = true;
            for (_, (batch, last, _)) in std::mem::take(&mut self.held) {
                self.expected = self.expected.max(last + 1);
                ready.batches.push(batch);
            }
        }
        ready
    }

    /// Whether batches are waiting (the caller then checks `expire` soon).
    pub fn waiting(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::{Millis, UserId};
    use belfry_store::{Published, StateChange};
    use std::sync::Arc;

    fn published(seqs: &[i64]) -> Batch {
        Arc::new(
            seqs.iter()
                .map(|s| {
                    StoreEvent::Published(Arc::new(Published {
                        seq: *s,
                        id: format!("n{s}"),
                        created_at: Millis(0),
                        content_json: "{}".into(),
                        direct: vec![],
                        broadcast: None,
                        actor: None,
                    }))
                })
                .collect(),
        )
    }

    fn seqs(r: &Ready) -> Vec<i64> {
        r.batches
            .iter()
            .filter_map(seq_range)
            .map(|(lo, _)| lo)
            .collect()
    }

    #[test]
    fn in_order_batches_pass_through() {
        let mut s = Sequencer::new(0, Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(seqs(&s.push(published(&[1, 2]), t)), [1]);
        assert_eq!(seqs(&s.push(published(&[3]), t)), [3]);
        assert!(!s.waiting());
    }

    #[test]
    fn an_early_batch_waits_for_the_ones_before_it() {
        let mut s = Sequencer::new(10, Duration::from_millis(100));
        let t = Instant::now();
        assert!(s.push(published(&[13, 14]), t).batches.is_empty());
        assert!(s.push(published(&[12]), t).batches.is_empty());
        let state = Arc::new(vec![StoreEvent::State {
            user: UserId::parse("u").unwrap(),
            change: StateChange::SeenAll,
        }]);
        assert_eq!(
            s.push(state, t).batches.len(),
            1,
            "state changes do not wait"
        );
        let r = s.push(published(&[11]), t);
        assert_eq!(seqs(&r), [11, 12, 13]);
        assert!(!r.gap);
        assert!(!s.waiting());
    }

    #[test]
    fn a_lost_batch_is_given_up_and_streams_resume() {
        let mut s = Sequencer::new(0, Duration::from_millis(100));
        let t = Instant::now();
        assert!(s.push(published(&[3]), t).batches.is_empty());
        assert!(s.expire(t + Duration::from_millis(50)).batches.is_empty());
        let r = s.expire(t + Duration::from_millis(100));
        assert!(r.gap);
        assert_eq!(seqs(&r), [3]);
        // The late one is still delivered; streams that resumed skip it by seq.
        assert_eq!(seqs(&s.push(published(&[1, 2]), t)), [1]);
        assert_eq!(seqs(&s.push(published(&[4]), t)), [4]);
    }
}
