//! The bus between nodes, on NATS: every node publishes the events of its
//! commits, in commit order, on one subject, and every node (itself
//! included) receives all of them. NATS carries ids and the notification's
//! content; the store stays the truth: a node that may have missed messages
//! (disconnected, slow consumer) makes its streams resume from the store.

use super::bus::{Batch, Bus};
use anyhow::Context as _;
use belfry_store::StoreEvent;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Largest message published; bigger commits are split (NATS' default
/// maximum payload is 1 MiB).
const MAX_MESSAGE: usize = 512 * 1024;

pub struct NatsBus {
    outgoing: mpsc::UnboundedSender<Batch>,
    incoming: broadcast::Sender<Batch>,
}

/// Encodes a commit's events as one or more messages of bounded size.
fn encode(events: &[StoreEvent]) -> Vec<Bytes> {
    if events.is_empty() {
        return vec![Bytes::from_static(b"[]")];
    }
    let whole = serde_json::to_vec(events).expect("events serialise");
    if whole.len() <= MAX_MESSAGE || events.len() == 1 {
        return vec![Bytes::from(whole)];
    }
    let (left, right) = events.split_at(events.len() / 2);
    let mut out = encode(left);
    out.extend(encode(right));
    out
}

impl NatsBus {
    /// Connects and subscribes to `subject` (one subject per Belfry cluster).
    pub async fn connect(url: &str, subject: &str) -> anyhow::Result<Arc<NatsBus>> {
        let (incoming, _) = broadcast::channel::<Batch>(16 * 1024);
        let lost = incoming.clone();
        let client = async_nats::ConnectOptions::new()
            .name("belfry")
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let lost = lost.clone();
                async move {
                    match event {
                        // Messages may have gone by while disconnected, or been
                        // dropped for a slow consumer: streams must resume.
                        async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                            tracing::warn!(%event, "NATS: events may have been missed; streams resume");
                            let _ = lost.send(Arc::new(Vec::new()));
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS: disconnected, reconnecting");
                        }
                        other => tracing::info!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let mut subscription = client
            .subscribe(subject.to_string())
            .await
            .context("subscribing to the events subject")?;
        client.flush().await.context("NATS flush")?;

        let receiver = incoming.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match serde_json::from_slice::<Vec<StoreEvent>>(&message.payload) {
                    Ok(events) => {
                        let _ = receiver.send(Arc::new(events));
                    }
                    Err(e) => tracing::warn!(error = %e, "NATS: an events message did not decode"),
                }
            }
        });

        // One task publishes, so that this node's commits leave in order.
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Batch>();
        let subject = subject.to_string();
        tokio::spawn(async move {
            while let Some(batch) = queue.recv().await {
                for payload in encode(&batch) {
                    if let Err(e) = client.publish(subject.clone(), payload).await {
                        tracing::error!(error = %e, "NATS: publishing events failed");
                    }
                }
            }
        });
        Ok(Arc::new(NatsBus { outgoing, incoming }))
    }
}

impl Bus for NatsBus {
    fn publish(&self, events: Batch) {
        let _ = self.outgoing.send(events);
    }

    fn lagged(&self) {
        // Every node must know that this node's events were lost.
        let _ = self.outgoing.send(Arc::new(Vec::new()));
    }

    fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.incoming.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_core::UserId;
    use belfry_store::StateChange;

    #[test]
    fn big_commits_are_split_and_small_ones_are_not() {
        let user = UserId::parse("u").unwrap();
        let one = vec![StoreEvent::State {
            user: user.clone(),
            change: StateChange::SeenAll,
        }];
        assert_eq!(encode(&one).len(), 1);
        let many: Vec<StoreEvent> = (0..40_000)
            .map(|_| StoreEvent::State {
                user: user.clone(),
                change: StateChange::SeenAll,
            })
            .collect();
        let parts = encode(&many);
        assert!(parts.len() > 1);
        let mut total = 0;
        for p in &parts {
            assert!(p.len() <= MAX_MESSAGE);
            total += serde_json::from_slice::<Vec<StoreEvent>>(p).unwrap().len();
        }
        assert_eq!(total, 40_000, "nothing lost in splitting");
        assert_eq!(&encode(&[])[0][..], b"[]");
    }
}
