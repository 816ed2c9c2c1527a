//! Vroeg's HTTP API: `/healthz`, `/readyz` and `/metrics` (Prometheus text
//! format). The case API comes with wijkteam delivery.
//!
//! [`Metrics`] implements the engine's `BatchObserver`, so the running
//! pipeline reports into it. Labels are bounded: error codes, event kinds,
//! topics and partitions; never a household. This crate must not touch the
//! store or Kafka itself.

mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use metrics::Metrics;

/// Whether the service is ready (broker reachable, partitions assigned,
/// store open).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Readiness,
}

/// The router, for serving and for tests.
pub fn router(metrics: Arc<Metrics>, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, ready })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if (state.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "http api listening");
    axum::serve(listener, router(metrics, ready))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use vroeg_engine::{BatchObserver, Stats};

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        let mut stats = Stats {
            records: 3,
            applied: 2,
            ..Stats::default()
        };
        stats.rejected.insert("invalid_json".into(), 1);
        stats.alerts.insert("geopend".into(), 1);
        metrics.batch(&stats, std::time::Duration::from_millis(3));
        metrics.lag("vroeg.signalen", 0, 7);
        let ready_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ready_flag.clone();
        let router = router(
            metrics,
            Arc::new(move || flag.load(std::sync::atomic::Ordering::Relaxed)),
        );
        assert_eq!(get(router.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(router.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready_flag.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(get(router.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("vroeg_signals_consumed_messages_total 3"),
            "{text}"
        );
        assert!(
            text.contains("vroeg_signals_rejected_messages_total{code=\"invalid_json\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vroeg_case_events_messages_total{kind=\"geopend\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "vroeg_consumer_lag_messages{topic=\"vroeg.signalen\",partition=\"0\"} 7"
            ),
            "{text}"
        );
        assert!(
            text.contains("vroeg_batch_duration_seconds_count 1"),
            "{text}"
        );
    }
}
