//! The bus: carries committed events from the node that committed them to
//! the hub of every node. The in-process bus serves a single node; a
//! clustered bus publishes to a message broker instead. The interface is
//! small and message-based on purpose.

use belfry_store::StoreEvent;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One commit's events. An empty batch (commits never publish one) means
/// "events were lost here": every hub makes its streams resume.
pub type Batch = Arc<Vec<StoreEvent>>;

pub trait Bus: Send + Sync + 'static {
    /// Publishes events committed on this node.
    fn publish(&self, events: Batch);
    /// This node lost committed events before publishing them.
    fn lagged(&self);
    /// Events of every node, in commit order per node.
    fn subscribe(&self) -> broadcast::Receiver<Batch>;
}

/// The bus of a single node.
pub struct LocalBus {
    tx: broadcast::Sender<Batch>,
}

impl LocalBus {
    pub fn new() -> Arc<LocalBus> {
        let (tx, _) = broadcast::channel(16 * 1024);
        Arc::new(LocalBus { tx })
    }
}

impl Bus for LocalBus {
    fn publish(&self, events: Batch) {
        let _ = self.tx.send(events);
    }

    fn lagged(&self) {
        let _ = self.tx.send(Arc::new(Vec::new()));
    }

    fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.tx.subscribe()
    }
}
