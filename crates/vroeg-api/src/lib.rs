//! Vroeg's HTTP API: `/healthz`, `/readyz`, `/metrics` (Prometheus text
//! format), the wijkteam case API under `/api/v1` (see [`cases`] and
//! the OpenAPI document served at `/api/v1/openapi.json`), and the
//! wijkteam inbox under `/inbox` ([`inbox`]).
//!
//! [`Metrics`] implements the engine's `BatchObserver`, so the running
//! pipeline reports into it. Labels are bounded: error codes, event kinds,
//! topics and partitions; never a household.
//!
//! This crate reads case records from the read model and appends to the
//! audit log; it must never write household state, case records or
//! offsets. Feedback it takes
//! goes to the feedback topic, and the engine applies it.

pub mod auth;
pub mod cases;
pub mod exports;
pub mod inbox;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use cases::{CaseApi, Clock, FeedbackSink, Reload, Reloaded};
pub use exports::Exports;
pub use metrics::{Format, Metrics};

/// What keeps the service from being ready (broker unreachable, partitions
/// not assigned, store closed, ...), one short English phrase each; empty
/// when it is ready. `/readyz` answers 503 with these phrases.
pub type Readiness = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

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
    ("post", "/api/v1/cases/{id}/notities"),
    ("post", "/api/v1/cases/{id}/toewijzing"),
    ("post", "/api/v1/cases/{id}/correctie"),
    ("get", "/api/v1/werkbakken"),
    ("get", "/api/v1/zoeken/adres"),
    ("get", "/api/v1/zoeken/naam"),
    ("get", "/api/v1/leesmodel"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/admin/reload"),
    ("get", "/admin/export/ddas"),
    ("get", "/admin/export/rapport"),
];

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Readiness,
    /// Where the open and overdue case gauges are counted, when this
    /// process serves cases.
    cases: Option<CaseApi>,
}

/// The router, for serving and for tests. Without `cases` only health,
/// readiness and metrics are served. Every request is counted in
/// `vroeg_api_requests_total` and timed, by route pattern.
pub fn router(metrics: Arc<Metrics>, ready: Readiness, cases: Option<CaseApi>) -> Router {
    let base = Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState {
            metrics: metrics.clone(),
            ready,
            cases: cases.clone(),
        });
    let Some(cases) = cases else {
        return base.layer(middleware::from_fn_with_state(metrics, count_request));
    };
    let api = Router::new()
        .route("/api/v1/cases", get(cases::list_cases))
        .route("/api/v1/cases/{id}", get(cases::get_case))
        .route(
            "/api/v1/cases/{id}/contactpogingen",
            cases::feedback_route("contactpoging"),
        )
        .route(
            "/api/v1/cases/{id}/resultaat",
            cases::feedback_route("resultaat"),
        )
        .route(
            "/api/v1/cases/{id}/notities",
            cases::feedback_route("notitie"),
        )
        .route(
            "/api/v1/cases/{id}/toewijzing",
            cases::feedback_route("toewijzing"),
        )
        .route(
            "/api/v1/cases/{id}/correctie",
            cases::feedback_route("correctie"),
        )
        .route("/api/v1/werkbakken", get(cases::queue_counts))
        .route(
            "/api/v1/zoeken/adres",
            cases::search_route("zoeken_adres", cases::address_search),
        )
        .route(
            "/api/v1/zoeken/naam",
            cases::search_route("zoeken_naam", cases::name_search),
        )
        .route("/api/v1/leesmodel", get(cases::read_model_status))
        .route("/api/v1/audit", get(cases::audit_export))
        .route("/admin/reload", post(cases::reload_rules))
        .route("/admin/export/ddas", get(exports::ddas))
        .route("/admin/export/rapport", get(exports::report))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(cases.clone());
    let inbox = inbox::routes(cases).layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    base.merge(api)
        .merge(inbox)
        .layer(middleware::from_fn_with_state(metrics, count_request))
}

/// Count and time one request under its route pattern; a path that matches
/// no route counts as `unmatched`, so a client cannot create label values.
async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let reasons = (state.ready)();
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        )
    }
}

/// How often the open and overdue case gauges are counted at most.
pub const CASE_COUNT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// `/metrics`: Prometheus text 0.0.4, or OpenMetrics when the `Accept`
/// header prefers it. The case gauges are counted by the scrape, at most
/// once per [`CASE_COUNT_INTERVAL`].
async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    if let Some(lag) = state.cases.as_ref().and_then(|api| api.progress.lag()) {
        state.metrics.read_model_lag(lag);
    }
    let due = state.metrics.case_counts_due(CASE_COUNT_INTERVAL);
    if let Some(api) = state.cases.clone().filter(|_| due) {
        let metrics = state.metrics.clone();
        let counted = tokio::task::spawn_blocking(move || {
            api.cases
                .open_counts_by_team((api.clock)())
                .map(|counts| metrics.case_counts(&counts))
        })
        .await;
        match counted {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot count open cases for /metrics"),
            Err(_) => tracing::warn!("counting open cases for /metrics failed"),
        }
    }
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    (
        [(header::CONTENT_TYPE, format.content_type())],
        state.metrics.encode(format),
    )
}

/// Where the API's TLS certificate chain and key are (PEM files).
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A loaded TLS configuration, ready to serve with.
#[derive(Clone)]
pub struct TlsConfig(axum_server::tls_rustls::RustlsConfig);

/// Load the certificate chain and key: at start, so that a bad file stops
/// the service with a message instead of leaving it without its API.
pub async fn load_tls(tls: &Tls) -> std::io::Result<TlsConfig> {
    // One process-wide provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map(TlsConfig)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot load the TLS certificate {} and key {}: {e}",
                    tls.cert.display(),
                    tls.key.display()
                ),
            )
        })
}

/// How long a TLS listener lets requests in flight finish at shutdown.
const TLS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve until `shutdown` resolves: plain HTTP, or HTTPS with `tls`
/// (rustls). The inbox shows personal data: serve it over TLS, this way
/// or behind a proxy that terminates it.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    tls: Option<TlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(TlsConfig(config)) = tls else {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "http api listening");
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(TLS_DRAIN));
    });
    tracing::info!(%addr, "https api listening");
    axum_server::bind_rustls(addr, config)
        .handle(handle)
        .serve(router.into_make_service())
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
        get_accepting(router, path, None).await.0
    }

    async fn get_accepting(
        router: Router,
        path: &str,
        accept: Option<&str>,
    ) -> ((StatusCode, String), String) {
        let mut request = Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let resp = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            (status, String::from_utf8_lossy(&body).into_owned()),
            content_type,
        )
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_unless_openmetrics_is_preferred() {
        let router = router(Arc::new(Metrics::new()), Arc::new(Vec::new), None);
        let cases = [
            (None, "text/plain; version=0.0.4"),
            (Some("text/plain;version=0.0.4"), "text/plain; version=0.0.4"),
            (Some("*/*"), "text/plain; version=0.0.4"),
            (
                Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                "application/openmetrics-text; version=1.0.0",
            ),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                "application/openmetrics-text; version=1.0.0",
            ),
            (
                Some("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
                "text/plain; version=0.0.4",
            ),
        ];
        for (accept, expected) in cases {
            let ((status, text), content_type) =
                get_accepting(router.clone(), "/metrics", accept).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                content_type.starts_with(expected),
                "Accept {accept:?} gave {content_type}"
            );
            let openmetrics = expected.starts_with("application/openmetrics-text");
            assert_eq!(text.ends_with("# EOF\n"), openmetrics, "{text}");
            assert!(text.contains("vroeg_build_info{version="), "{text}");
        }
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        let mut stats = Stats {
            records: 3,
            applied: 2,
            ..Stats::default()
        };
        stats.reject_signal("invalid_json", "onbekend");
        stats.reject_signal("invalid_postcode", "zorg");
        stats.reject_feedback("unknown_case");
        stats.escalations.insert("noord".into(), 2);
        stats.alerts.insert("geopend".into(), 1);
        metrics.batch(&stats, std::time::Duration::from_millis(3));
        metrics.lag("vroeg.signalen", 0, 7);
        let ready_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ready_flag.clone();
        let router = router(
            metrics,
            Arc::new(move || {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    Vec::new()
                } else {
                    vec!["the broker is unreachable".to_owned()]
                }
            }),
            None,
        );
        assert_eq!(get(router.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(router.clone(), "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the broker is unreachable\n".to_owned()
            )
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
            text.contains("vroeg_signals_rejected_messages_total{code=\"invalid_postcode\",partner_type=\"zorg\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vroeg_feedback_rejected_messages_total{code=\"unknown_case\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vroeg_case_escalations_total{team=\"noord\"} 2"),
            "{text}"
        );
        // Prometheus text 0.0.4: a counter is declared under its sample name.
        assert!(
            text.contains("# TYPE vroeg_signals_consumed_messages_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        // The requests before this one were counted, by route pattern.
        assert!(
            text.contains(
                "vroeg_api_requests_total{route=\"/readyz\",method=\"GET\",status=\"503\"} 1"
            ),
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
