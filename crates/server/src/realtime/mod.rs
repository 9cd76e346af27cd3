//! Real time: the bus between "a commit happened" and the hub of every
//! node, the hub that routes events to live connections, and the SSE and
//! WebSocket endpoints with gap-free resume.

pub mod bus;
pub mod frame;
pub mod hub;
pub mod nats;
pub mod queue;
mod sequencer;
pub mod stop;
pub(crate) mod streams;
mod wake;

pub use bus::{Bus, LocalBus};
pub use hub::{Hub, HubConfig};
pub use nats::NatsBus;

use belfry_store::SharedStore;
use sequencer::{Ready, Sequencer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// How long a batch that arrived before its turn waits for the ones before it.
const GAP_TIMEOUT: Duration = Duration::from_millis(500);

/// Feeds the events this node's store commits into the bus, and the bus's
/// events (from every node), back in commit order, into the hub, until the
/// hub shuts down.
pub fn start(store: &SharedStore, bus: Arc<dyn Bus>, hub: Arc<Hub>) {
    let mut committed = store.events();
    let publisher = bus.clone();
    let stop = hub.shutdown_signal();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = committed.recv() => match event {
                    Ok(events) => publisher.publish(events),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the bus fell behind the store");
                        publisher.lagged();
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    let mut incoming = bus.subscribe();
    let mut sequencer = Sequencer::new(store.last_seq(), GAP_TIMEOUT);
    let stop = hub.shutdown_signal();
    tokio::spawn(async move {
        let apply = |ready: Ready| {
            if ready.gap {
                tracing::warn!("a commit never arrived on the bus; streams resume from the store");
                hub.reset_all();
            }
            for batch in ready.batches {
                hub.dispatch(&batch);
            }
        };
        loop {
            let check = sequencer.waiting();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)), if check => {
                    apply(sequencer.expire(Instant::now()));
                }
                event = incoming.recv() => match event {
                    Ok(events) if events.is_empty() => {
                        tracing::warn!("events were lost before the bus; streams resume");
                        hub.reset_all();
                    }
                    Ok(events) => apply(sequencer.push(events, Instant::now())),
                    Err(RecvError::Lagged(n)) => {
                        // Live delivery has a hole; the store has not: make
                        // every client resume from its cursor.
                        tracing::warn!(missed = n, "the hub fell behind; streams resume");
                        hub.reset_all();
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
}
