//! The accept loop. Like `axum::serve`, with one addition the streams need:
//! every request carries a [`ConnectionHandle`] whose cancellation drops its
//! TCP connection at once, even while the server waits to write to a client
//! that stopped reading (a stuck stream must not hold resources).

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Lets a handler cut the connection its request came on.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    pub abort: CancellationToken,
}

/// How long shutdown waits for connections to finish.
const DRAIN: Duration = Duration::from_secs(20);

/// Serves `router` until `shutdown` is cancelled; then stops accepting,
/// lets requests in flight finish (bounded by [`DRAIN`]) and returns.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let (alive_tx, alive_rx) = watch::channel(());
    // One for all connections: each connection's task holds an Arc to it
    // rather than its own copy (240 bytes per open connection).
    let builder = Arc::new({
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http2().enable_connect_protocol();
        builder
    });
    loop {
        let (stream, _remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let abort = CancellationToken::new();
        let handle = ConnectionHandle {
            abort: abort.clone(),
        };
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(handle.clone());
                req.map(Body::new)
            });
        let service = TowerToHyperService::new(service);
        let shutdown = shutdown.clone();
        let alive = alive_rx.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let mut conn =
                pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
            let mut draining = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    // Dropping the connection closes the socket.
                    _ = abort.cancelled() => break,
                    _ = shutdown.cancelled(), if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(alive);
        });
    }
    drop(alive_rx);
    if tokio::time::timeout(DRAIN, alive_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; stopping anyway");
    }
}
