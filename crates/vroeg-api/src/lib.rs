//! Vroeg's HTTP API: `/healthz`, `/readyz`, `/metrics` (Prometheus text
//! format), and the wijkteam case API under `/api/v1` (see [`cases`] and
//! the OpenAPI document served at `/api/v1/openapi.json`).
//!
//! [`Metrics`] implements the engine's `BatchObserver`, so the running
//! pipeline reports into it. Labels are bounded: error codes, event kinds,
//! topics and partitions; never a household.
//!
//! This crate reads case records and appends to the audit log; it must
//! never write household state, case records or offsets. Feedback it takes
//! goes to the feedback topic, and the engine applies it.

pub mod auth;
pub mod cases;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use cases::{CaseApi, Clock, FeedbackSink, Reload};
pub use metrics::Metrics;

/// Whether the service is ready (broker reachable, partitions assigned,
/// store open).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// The OpenAPI document of the case API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest accepted request body: feedback messages are small.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Every route of the case API, as (method, path). The OpenAPI document
/// must describe exactly these (a test checks both ways).
pub const CASE_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/cases"),
    ("get", "/api/v1/cases/{id}"),
    ("post", "/api/v1/cases/{id}/contactpogingen"),
    ("post", "/api/v1/cases/{id}/resultaat"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/admin/reload"),
];

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Readiness,
}

/// The router, for serving and for tests. Without `cases` only health,
/// readiness and metrics are served.
pub fn router(metrics: Arc<Metrics>, ready: Readiness, cases: Option<CaseApi>) -> Router {
    let base = Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, ready });
    let Some(cases) = cases else {
        return base;
    };
    let api = Router::new()
        .route("/api/v1/cases", get(cases::list_cases))
        .route("/api/v1/cases/{id}", get(cases::get_case))
        .route(
            "/api/v1/cases/{id}/contactpogingen",
            post(cases::post_attempt),
        )
        .route("/api/v1/cases/{id}/resultaat", post(cases::post_result))
        .route("/api/v1/audit", get(cases::audit_export))
        .route("/admin/reload", post(cases::reload_rules))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(cases);
    base.merge(api)
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
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "http api listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod api_tests;

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
            None,
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
