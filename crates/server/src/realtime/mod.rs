//! Real time: the bus between "a commit happened" and the hub of every
//! node, the hub that routes events to live connections, and the SSE and
//! WebSocket endpoints with gap-free resume.

pub mod bus;
pub mod frame;
pub mod hub;
pub(crate) mod streams;

pub use bus::{Bus, LocalBus};
pub use hub::{Hub, HubConfig};

use belfry_store::SharedStore;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Feeds the events this node's store commits into the bus, and the bus's
/// events (from every node) into the hub, until the hub shuts down.
pub fn start(store: &SharedStore, bus: Arc<dyn Bus>, hub: Arc<Hub>) {
    let mut committed = store.events();
    let publisher = bus.clone();
    let stop = hub.shutdown.clone();
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
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hub.shutdown.cancelled() => return,
                event = incoming.recv() => match event {
                    Ok(events) if events.is_empty() => {
                        tracing::warn!("events were lost before the bus; streams resume");
                        hub.reset_all();
                    }
                    Ok(events) => hub.dispatch(&events),
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
