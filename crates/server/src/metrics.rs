//! Prometheus metrics: the process-wide recorder, and the request counters
//! and durations by route that the router's edge layer records.

use axum::extract::MatchedPath;
use axum::http::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often recorded histogram samples are folded into their buckets.
/// Until then every sample is kept in memory: without this upkeep a server
/// that nobody scrapes grew by about 2 MB a minute at 1000 sends/s (every
/// request records several durations), as the 30-minute soak showed.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the thread that runs the upkeep.
pub const UPKEEP_THREAD: &str = "belfry-metrics";

/// The recorder of this process, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (an embedding
            // program); then these metrics go there.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            // A plain thread: it works whatever runtime (if any) is running,
            // and lives as long as the process, like the recorder.
            let spawned = std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the metrics upkeep thread; histograms are folded only when /metrics is read");
            }
            handle
        })
        .clone()
}

/// A request's counter and duration histogram, for one method, route and
/// status.
type Handles = (metrics::Counter, metrics::Histogram);

/// The handles of the requests seen so far, by route template, then method
/// and status (a route sees a few of those). Building the labelled keys and
/// finding them in the registry for every request was about 3 % of the
/// server's CPU accepting notifications one per request. Bounded: routes
/// are the router's, methods the standard ones, statuses the server's own.
static REQUESTS: LazyLock<RwLock<Seen>> = LazyLock::new(Default::default);

type Seen = HashMap<Box<str>, Vec<(Method, u16, Handles)>>;

/// Counts a request by method, route template (`unmatched` when no route
/// took it) and status, and records its duration.
pub fn record_request(
    method: &Method,
    route: Option<&MatchedPath>,
    status: StatusCode,
    elapsed: Duration,
) {
    let route = route.map_or("unmatched", |p| p.as_str());
    let status = status.as_u16();
    // A method of a client's own (any token is one) would add a series.
    let method = if STANDARD_METHODS.contains(method) {
        method
    } else {
        &OTHER_METHOD
    };
    let seconds = elapsed.as_secs_f64();
    let known = REQUESTS
        .read()
        .expect("request metrics")
        .get(route)
        .and_then(|seen| {
            seen.iter()
                .find(|(m, s, _)| m == method && *s == status)
                .map(|(_, _, handles)| handles.clone())
        });
    let (counter, histogram) = known.unwrap_or_else(|| {
        // Our recorder, unless another was installed first: handles kept
        // from before any recorder would record nothing.
        let _ = handle();
        let handles: Handles = (
            metrics::counter!("belfry_http_requests_total", "method" => method.as_str().to_owned(), "route" => route.to_owned(), "status" => status.to_string()),
            metrics::histogram!("belfry_http_request_duration_seconds", "method" => method.as_str().to_owned(), "route" => route.to_owned()),
        );
        let mut requests = REQUESTS.write().expect("request metrics");
        let seen = requests.entry(route.into()).or_default();
        if !seen.iter().any(|(m, s, _)| m == method && *s == status) {
            seen.push((method.clone(), status, handles.clone()));
        }
        handles
    });
    counter.increment(1);
    histogram.record(seconds);
}

const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// The label of any other method.
static OTHER_METHOD: LazyLock<Method> =
    LazyLock::new(|| Method::from_bytes(b"OTHER").expect("a token"));

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread that folds histogram samples exists once the recorder
    /// does (without it, memory grows with every recorded duration).
    #[test]
    fn the_recorder_comes_with_its_upkeep_thread() {
        let h = handle();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        };
        // A new thread takes its name once it runs: wait for it (2 s at most).
        let named = (0..200).any(|_| {
            let found = names().iter().any(|n| n == UPKEEP_THREAD);
            if !found {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            found
        });
        assert!(named, "{:?}", names());
        // Samples recorded before the upkeep show in the buckets after it.
        metrics::histogram!("belfry_test_upkeep_duration_seconds").record(0.002);
        h.run_upkeep();
        let text = h.render();
        assert!(
            text.contains("belfry_test_upkeep_duration_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
    }
}
