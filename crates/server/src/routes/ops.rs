//! Operational endpoints: liveness, readiness, Prometheus metrics and the
//! OpenAPI document.

use crate::AppState;
use crate::error::{self, ApiError};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use belfry_store::{StoreError, Unavailable};
use std::sync::Arc;

pub(super) fn routes(openapi_json: Arc<String>) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = openapi_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// How long readiness waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The database answers (reads and the write path) within
/// [`READY_TIMEOUT`]; otherwise 503 with the reason's code and
/// `Retry-After`, so that a load balancer sends traffic elsewhere.
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Err(_) => {
            tracing::warn!("readiness: the database did not answer within 3 s");
            return Err(error::unavailable(Unavailable::Unreachable));
        }
        Ok(Err(e @ (StoreError::Unavailable { .. } | StoreError::Closed))) => {
            return Err(e.into());
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database failed");
            return Err(error::unavailable(Unavailable::Unreachable));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ready"}"#,
    ))
}

/// Prometheus text format. Job and pool gauges are read from the store at
/// scrape time; the SQLite WAL gauges are set by its checkpointer.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(s) = state.store.job_stats(state.clock.now()).await {
        metrics::gauge!("belfry_jobs_queued").set(s.queued as f64);
        metrics::gauge!("belfry_jobs_running").set(s.running as f64);
        metrics::gauge!("belfry_jobs_retrying").set(s.retrying as f64);
    }
    let pool = state.store.pool_stats();
    metrics::gauge!("belfry_db_pool_connections", "state" => "in_use").set(pool.in_use as f64);
    metrics::gauge!("belfry_db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("belfry_db_pool_max_connections").set(pool.max as f64);
    if let Some(waiting) = pool.waiting {
        metrics::gauge!("belfry_db_pool_waiting").set(waiting as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}
