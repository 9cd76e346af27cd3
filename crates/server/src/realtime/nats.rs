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
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Largest message published; bigger commits are split (NATS' default
/// maximum payload is 1 MiB).
const MAX_MESSAGE: usize = 512 * 1024;

pub struct NatsBus {
    client: async_nats::Client,
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

/// This node's messages as it published them, until the bus brings them
/// back: a message whose bytes equal one of these is that one, and its
/// events are taken as they were rather than decoded again (a node
/// receives its own commits too; decoding the JSON of every batch was most
/// of a node's time on the bus). Equal bytes decode to equal events, so
/// whatever is matched or missed, every node sees the same events.
#[derive(Default)]
struct Sent {
    queue: VecDeque<(Bytes, Batch)>,
}

/// How many of its messages a node keeps for their echo. In-flight ones
/// are a few; the oldest go first when echoes were lost (a disconnection
/// drops them, and the resumption from the store covers what they held).
const SENT_KEPT: usize = 256;

impl Sent {
    fn sent(&mut self, payload: Bytes, batch: Batch) {
        if self.queue.len() == SENT_KEPT {
            self.queue.pop_front();
        }
        self.queue.push_back((payload, batch));
    }

    /// The events this node published as `payload`, if it did. NATS
    /// delivers one publisher's messages in order, so the ones of this
    /// node before it will not come back, and are dropped.
    fn echo(&mut self, payload: &[u8]) -> Option<Batch> {
        let at = self
            .queue
            .iter()
            .position(|(sent, _)| sent[..] == *payload)?;
        self.queue.drain(..=at).last().map(|(_, batch)| batch)
    }
}

/// How long `connect` waits for the server to confirm the subscription
/// before going on without it (NATS down at start: the node serves, and its
/// streams resume once the connection is made).
const CONFIRM_AT_START: Duration = Duration::from_secs(10);

/// How long one probe after a reconnection may take before it is sent again.
const CONFIRM_AGAIN: Duration = Duration::from_secs(5);

/// One round trip through the server on this connection: a private inbox is
/// subscribed to and published to, and its message comes back. The server
/// handles a connection's operations in order, so when it does, every
/// subscription made before it is in place. (`Client::flush` only writes the
/// socket; it does not say the server has read it.)
async fn round_trip(client: &async_nats::Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut probe = client
        .subscribe(inbox.clone())
        .await
        .context("subscribing to the probe inbox")?;
    client
        .publish(inbox, Bytes::new())
        .await
        .context("publishing the probe")?;
    client.flush().await.context("NATS flush")?;
    probe.next().await.context("the probe subscription ended")?;
    Ok(())
}

impl NatsBus {
    /// Connects and subscribes to `subject` (one subject per Belfry cluster).
    /// Returns once the server has the subscription (or after
    /// [`CONFIRM_AT_START`] if NATS cannot be reached yet): events published
    /// by any node after that reach this one.
    pub async fn connect(url: &str, subject: &str) -> anyhow::Result<Arc<NatsBus>> {
        let (incoming, _) = broadcast::channel::<Batch>(16 * 1024);
        // (Re)connections and slow-consumer drops, handled by a task that
        // holds the client (the callback cannot).
        let (trouble_tx, mut trouble) = mpsc::unbounded_channel::<async_nats::Event>();
        let trouble_tx_start = trouble_tx.clone();
        let client = async_nats::ConnectOptions::new()
            .name("belfry")
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let trouble_tx = trouble_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                            let _ = trouble_tx.send(event);
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
        // The first connection: nothing can have been missed before it, so it
        // needs no lost mark, unless NATS is not there yet and the node starts
        // serving without it (then the mark follows when it connects).
        let first = async {
            while let Some(event) = trouble.recv().await {
                if event == async_nats::Event::Connected {
                    return round_trip(&client).await;
                }
            }
            anyhow::bail!("the NATS client closed")
        };
        match tokio::time::timeout(CONFIRM_AT_START, first).await {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!(
                    "NATS at {url} has not answered in {CONFIRM_AT_START:?}; serving, and streams resume when it does"
                );
                let _ = trouble_tx_start.send(async_nats::Event::Connected);
            }
        }

        // Messages may have gone by while disconnected, or been dropped for
        // a slow consumer: every stream must resume from the store. After a
        // (re)connection the mark goes out only once the server has the
        // subscription again, so that nothing falls between the resumption
        // and the first message received.
        let lost = incoming.clone();
        let prober = client.clone();
        tokio::spawn(async move {
            while let Some(event) = trouble.recv().await {
                if event == async_nats::Event::Connected {
                    loop {
                        match tokio::time::timeout(CONFIRM_AGAIN, round_trip(&prober)).await {
                            Ok(Ok(())) => break,
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "NATS: confirming the subscription failed")
                            }
                            Err(_) => {
                                tracing::warn!("NATS: no answer to the probe in {CONFIRM_AGAIN:?}")
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                tracing::warn!(%event, "NATS: events may have been missed; streams resume");
                let _ = lost.send(Arc::new(Vec::new()));
            }
        });

        let sent = Arc::new(Mutex::new(Sent::default()));
        let echoes = sent.clone();
        let receiver = incoming.clone();
        tokio::spawn(async move {
            let from_self =
                metrics::counter!("belfry_bus_messages_received_total", "from" => "self");
            let from_other =
                metrics::counter!("belfry_bus_messages_received_total", "from" => "other");
            while let Some(message) = subscription.next().await {
                let own = echoes.lock().expect("sent messages").echo(&message.payload);
                if let Some(events) = own {
                    from_self.increment(1);
                    let _ = receiver.send(events);
                    continue;
                }
                from_other.increment(1);
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
        let publisher = client.clone();
        tokio::spawn(async move {
            while let Some(batch) = queue.recv().await {
                let payloads = encode(&batch);
                // Kept before it leaves, so that its echo cannot come first.
                // A commit split over several messages is decoded as before.
                if let [payload] = &payloads[..] {
                    sent.lock()
                        .expect("sent messages")
                        .sent(payload.clone(), batch.clone());
                }
                for payload in payloads {
                    if let Err(e) = publisher.publish(subject.clone(), payload).await {
                        tracing::error!(error = %e, "NATS: publishing events failed");
                    }
                }
            }
        });
        Ok(Arc::new(NatsBus {
            client,
            outgoing,
            incoming,
        }))
    }

    /// Drops the connection and makes it again, as a network fault would:
    /// subscribers get the lost mark once the subscription is back.
    pub async fn reconnect(&self) -> anyhow::Result<()> {
        self.client
            .force_reconnect()
            .await
            .context("reconnecting to NATS")
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

    fn batch(user: &str) -> Batch {
        Arc::new(vec![StoreEvent::UserDeleted {
            user: UserId::parse(user).unwrap(),
        }])
    }

    #[test]
    fn own_messages_come_back_as_sent_and_others_are_left_to_decode() {
        let mut sent = Sent::default();
        let (a, b, c) = (batch("a"), batch("b"), batch("c"));
        for events in [&a, &b, &c] {
            let [payload] = &encode(events)[..] else {
                panic!("one message")
            };
            sent.sent(payload.clone(), events.clone());
        }
        // Another node's message: not ours, nothing dropped.
        assert!(sent.echo(&encode(&batch("z"))[0]).is_none());
        assert_eq!(sent.queue.len(), 3);
        // The first echo was lost: the second comes back as the very batch
        // sent, and the first is dropped with it.
        let echoed = sent.echo(&encode(&b)[0]).expect("ours");
        assert!(Arc::ptr_eq(&echoed, &b));
        assert_eq!(sent.queue.len(), 1);
        assert!(
            sent.echo(&encode(&a)[0]).is_none(),
            "dropped, decoded instead"
        );
        assert!(Arc::ptr_eq(&sent.echo(&encode(&c)[0]).unwrap(), &c));
        assert!(sent.queue.is_empty());
        // What was decoded instead equals what was sent.
        let decoded: Vec<StoreEvent> = serde_json::from_slice(&encode(&a)[0]).unwrap();
        assert_eq!(decoded, *a);
    }

    #[test]
    fn at_most_so_many_messages_wait_for_their_echo() {
        let mut sent = Sent::default();
        for k in 0..SENT_KEPT + 10 {
            let events = batch(&format!("u{k}"));
            sent.sent(encode(&events)[0].clone(), events);
        }
        assert_eq!(sent.queue.len(), SENT_KEPT);
        assert!(
            sent.echo(&encode(&batch("u0"))[0]).is_none(),
            "the oldest went"
        );
        assert!(sent.echo(&encode(&batch("u10"))[0]).is_some());
    }
}
