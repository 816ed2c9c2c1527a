//! Table-driven tests of the case API: authentication, team isolation,
//! audit, validation, and the OpenAPI document.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use vroeg_core::archive::{CaseRecord, CaseStatus};
use vroeg_core::feedback::decode_feedback;
use vroeg_core::signal::DecodeContext;
use vroeg_core::time::{parse_rfc3339, Millis};
use vroeg_readmodel::{Incoming, Progress, ReadModel};

use crate::auth::{hash_token, Role, TokenEntry, TokenSet, Tokens};
use crate::cases::{BoxFuture, CaseApi, FeedbackSink};
use crate::{router, Metrics, CASE_ROUTES, OPENAPI};

/// Put case records in the read model, as the case topic would.
fn commit_cases(model: &ReadModel, cases: Vec<CaseRecord>) {
    let records: Vec<Incoming> = cases
        .iter()
        .enumerate()
        .map(|(i, r)| Incoming {
            partition: 0,
            offset: i as i64,
            key: r.id.as_bytes().to_vec(),
            value: Some(serde_json::to_vec(r).unwrap()),
        })
        .collect();
    model.apply(&records).unwrap();
}

pub(crate) const NOORD: &str = "token-noord";
pub(crate) const ZUID: &str = "token-zuid";
pub(crate) const ADMIN: &str = "token-admin";
pub(crate) const AUDITOR: &str = "token-auditor";
const EXPIRED: &str = "token-expired";
pub(crate) const NOORD_CASE: &str = "0123456789abcdef0123456789abcdef-1";
pub(crate) const ZUID_CASE: &str = "fedcba9876543210fedcba9876543210-1";
pub(crate) const CLOSED_CASE: &str = "0123456789abcdef0123456789abcdef-2";

static RELOAD_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn now() -> Millis {
    parse_rfc3339("2026-03-10T09:00:00Z").unwrap()
}

#[derive(Default)]
pub(crate) struct Sent(pub(crate) Mutex<Vec<(String, Vec<u8>)>>);

struct CollectSink(Arc<Sent>, bool);

impl FeedbackSink for CollectSink {
    fn submit(&self, key: String, payload: Vec<u8>) -> BoxFuture<Result<(), String>> {
        let ok = self.1;
        if ok {
            self.0 .0.lock().unwrap().push((key, payload));
        }
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err("broker down".into())
            }
        })
    }
}

fn record(id: &str, team: &str, status: CaseStatus) -> CaseRecord {
    // Opened a week before now.
    let mut r = CaseRecord::new(
        id,
        id.split('-').next().unwrap(),
        now() - 7 * vroeg_core::time::DAY_MS,
    );
    r.wijkteam = team.into();
    r.werkbak = "regulier".into();
    r.episode = 1;
    r.status = status;
    r
}

/// The engine's state for the admin exports: one closed case of February
/// with an arrears signal.
struct StoreExports(vroeg_store::Store);

impl crate::Exports for StoreExports {
    fn snapshot(&self) -> Result<vroeg_export::Snapshot, vroeg_export::ExportError> {
        vroeg_export::Snapshot::read(&self.0)
    }
}

fn export_store() -> vroeg_store::Store {
    use vroeg_core::archive::{ArchivedSignal, SignalDetail};
    let day = |s| vroeg_core::time::Day::parse(s).unwrap();
    let mut case = record(CLOSED_CASE, "noord", CaseStatus::Gesloten);
    case.geopend = day("2026-02-10").start_millis();
    case.gesloten = Some(day("2026-02-20").start_millis());
    case.reden = Some(vroeg_core::case::CloseReason::Betaald);
    case.signalen.push(ArchivedSignal {
        source: "woningcorporatie-x".into(),
        id: "s-1".into(),
        tijd: 0,
        detail: SignalDetail::Betalingsachterstand {
            partner: vroeg_core::signal::PartnerType::Huur,
            status: vroeg_core::signal::ArrearsStatus::Open,
            bedrag_cent: 85_000,
            ontstaansdatum: day("2026-01-01"),
            signaaldatum: day("2026-02-09"),
            crisis: false,
            eindelevering: false,
            client: Default::default(),
        },
    });
    let store = vroeg_store::Store::temporary().unwrap();
    store
        .commit(&vroeg_store::Commit {
            cases: vec![case],
            ..Default::default()
        })
        .unwrap();
    store
}

pub(crate) struct Fixture {
    pub(crate) router: Router,
    pub(crate) store: ReadModel,
    pub(crate) sent: Arc<Sent>,
    pub(crate) progress: Arc<Progress>,
}

fn fixture_with(sink_ok: bool) -> Fixture {
    let store = ReadModel::temporary().unwrap();
    commit_cases(
        &store,
        vec![
            record(NOORD_CASE, "noord", CaseStatus::Open),
            record(ZUID_CASE, "zuid", CaseStatus::Open),
            record(CLOSED_CASE, "noord", CaseStatus::Gesloten),
        ],
    );
    let entry = |name: &str, token: &str, role| TokenEntry {
        name: name.into(),
        sha256: hex::encode(hash_token(token)),
        role,
        expires: None,
    };
    let expired = TokenEntry {
        // The fixture's clock is 2026-03-10.
        expires: vroeg_core::time::Day::parse("2026-03-09"),
        ..entry("oud", EXPIRED, Role::Admin)
    };
    let tokens = Tokens::new(&[
        entry("coordinator-noord", NOORD, Role::Team("noord".into())),
        entry("coordinator-zuid", ZUID, Role::Team("zuid".into())),
        entry("beheer", ADMIN, Role::Admin),
        entry("accountant", AUDITOR, Role::ReadOnly),
        expired,
    ])
    .unwrap();
    let sent = Arc::new(Sent::default());
    let progress = Arc::new(Progress::default());
    let api = CaseApi {
        cases: store.clone(),
        progress: progress.clone(),
        tokens: Arc::new(TokenSet::new(tokens)),
        feedback: Arc::new(CollectSink(sent.clone(), sink_ok)),
        clock: Arc::new(now),
        reload: Some(Arc::new(|| {
            if RELOAD_FAILS.load(std::sync::atomic::Ordering::SeqCst) {
                Err(vec!["rules/regels.yaml:3:5: unknown field `wen`".to_owned()])
            } else {
                Ok(crate::Reloaded {
                    regelset: Some("abcdef0123456789".to_owned()),
                    tokens: 5,
                })
            }
        })),
        exports: Some(Arc::new(StoreExports(export_store()))),
        inbox: Arc::new(crate::inbox::Settings::default()),
    };
    Fixture {
        router: router(Arc::new(Metrics::new()), Arc::new(Vec::new), Some(api)),
        store,
        sent,
        progress,
    }
}

#[tokio::test]
async fn metrics_show_how_far_the_read_model_is_behind_once_measured() {
    let f = fixture();
    let scrape = || async {
        let response = f
            .router
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let text = scrape().await;
    assert!(
        text.contains("\nvroeg_readmodel_lag_messages -1\n"),
        "{text}"
    );
    f.progress.set(
        vec![
            vroeg_readmodel::PartitionProgress {
                partitie: 0,
                positie: 5,
                einde: 12,
            },
            vroeg_readmodel::PartitionProgress {
                partitie: 1,
                positie: 3,
                einde: 3,
            },
        ],
        0,
    );
    let text = scrape().await;
    assert!(
        text.contains("\nvroeg_readmodel_lag_messages 7\n"),
        "{text}"
    );
}

pub(crate) fn fixture() -> Fixture {
    fixture_with(true)
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// A table row of requests: (token or method, path, body, expected status,
/// expected audit action).
type Row = (
    &'static str,
    String,
    Option<Vec<u8>>,
    StatusCode,
    &'static str,
);

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn attempt() -> Vec<u8> {
    json!({"contactsoort": "Telefoon", "bereikt": false, "datum": "2026-03-09", "dagdeel": "Ochtend"})
        .to_string()
        .into_bytes()
}

fn outcome() -> Vec<u8> {
    json!({"resultaat": "Inwoner heeft zelf al betaald/betalingsregeling getroffen", "datum": "2026-03-09"})
        .to_string()
        .into_bytes()
}

/// Every case endpoint with a case id, as (method, path template, body).
fn case_endpoints() -> Vec<(&'static str, &'static str, Option<Vec<u8>>)> {
    vec![
        ("GET", "/api/v1/cases/{id}", None),
        (
            "POST",
            "/api/v1/cases/{id}/contactpogingen",
            Some(attempt()),
        ),
        ("POST", "/api/v1/cases/{id}/resultaat", Some(outcome())),
    ]
}

#[tokio::test]
async fn missing_or_invalid_tokens_get_401_on_every_route() {
    let f = fixture();
    let hashed = hex::encode(hash_token(NOORD));
    let bad_auth: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer wrong".into()),
        Some(format!("Basic {NOORD}")),
        Some(format!("Bearer {hashed}")), // the stored hash is not a token
        Some(format!("Bearer {NOORD}x")),
        Some(format!("Bearer {EXPIRED}")), // past its last day
    ];
    for (method, template) in CASE_ROUTES {
        if *template == "/api/v1/openapi.json" {
            continue; // public
        }
        let path = template.replace("{id}", NOORD_CASE);
        let method = method.to_uppercase();
        let body = method.eq("POST").then(attempt);
        for auth in &bad_auth {
            let (status, value) =
                call(&f.router, &method, &path, auth.as_deref(), body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}: {value}"
            );
        }
    }
    assert!(f.sent.0.lock().unwrap().is_empty());
    assert_eq!(
        f.store.audit_log().count(),
        0,
        "unauthenticated calls have no caller to audit"
    );
}

#[tokio::test]
async fn another_teams_case_is_not_found_on_every_endpoint() {
    let f = fixture();
    for (method, template, body) in case_endpoints() {
        // Zuid's real case and a case that does not exist answer alike.
        let foreign = call(
            &f.router,
            method,
            &template.replace("{id}", ZUID_CASE),
            Some(&bearer(NOORD)),
            body.clone(),
        )
        .await;
        let missing = call(
            &f.router,
            method,
            &template.replace("{id}", "00000000000000000000000000000000-1"),
            Some(&bearer(NOORD)),
            body.clone(),
        )
        .await;
        assert_eq!(
            foreign.0,
            StatusCode::NOT_FOUND,
            "{method} {template}: {}",
            foreign.1
        );
        assert_eq!(
            foreign, missing,
            "{method} {template}: a foreign case must look like a missing one"
        );
        // The owning team and the admin do get through.
        for token in [ZUID, ADMIN] {
            let (status, value) = call(
                &f.router,
                method,
                &template.replace("{id}", ZUID_CASE),
                Some(&bearer(token)),
                body.clone(),
            )
            .await;
            assert!(
                status.is_success(),
                "{method} {template} as {token}: {status} {value}"
            );
        }
    }
    // Lists: noord sees only its own cases, even when asking for zuid's.
    for query in [
        "",
        "?status=alle",
        "?wijkteam=zuid",
        "?status=alle&wijkteam=zuid",
    ] {
        let (status, value) = call(
            &f.router,
            "GET",
            &format!("/api/v1/cases{query}"),
            Some(&bearer(NOORD)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let teams: BTreeSet<&str> = value["zaken"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z["wijkteam"].as_str().unwrap())
            .collect();
        assert!(!teams.contains("zuid"), "{query}: {value}");
    }
    // The audit export is for the admin role only.
    let (status, _) = call(
        &f.router,
        "GET",
        "/api/v1/audit",
        Some(&bearer(NOORD)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Only the successful posts (zuid and admin, two each) reached the topic.
    let sent = f.sent.0.lock().unwrap();
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|(key, _)| key == ZUID_CASE));
}

#[tokio::test]
async fn listing_filters_by_status_and_queue() {
    let f = fixture();
    let ids = |v: &Value| -> Vec<String> {
        v["zaken"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases = [
        ("", vec![NOORD_CASE]),
        ("?status=open", vec![NOORD_CASE]),
        ("?status=gesloten", vec![CLOSED_CASE]),
        ("?status=alle", vec![NOORD_CASE, CLOSED_CASE]),
        ("?werkbak=crisis", vec![]),
    ];
    for (query, expected) in cases {
        let (status, value) = call(
            &f.router,
            "GET",
            &format!("/api/v1/cases{query}"),
            Some(&bearer(NOORD)),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}");
        let mut got = ids(&value);
        got.sort();
        let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
        expected.sort();
        assert_eq!(got, expected, "{query}");
    }
    let (status, value) = call(
        &f.router,
        "GET",
        "/api/v1/cases?status=dicht",
        Some(&bearer(NOORD)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    let (status, _) = call(
        &f.router,
        "GET",
        "/api/v1/cases?team=zuid",
        Some(&bearer(NOORD)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, all) = call(
        &f.router,
        "GET",
        "/api/v1/cases?status=alle",
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    assert_eq!(ids(&all).len(), 3);
}

#[tokio::test]
async fn reads_write_audit_entries() {
    let f = fixture();
    let reads = [
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}"),
            "zaak_lezen",
            Some(NOORD_CASE),
            200,
        ),
        (
            NOORD,
            format!("/api/v1/cases/{ZUID_CASE}"),
            "zaak_lezen",
            Some(ZUID_CASE),
            404,
        ),
        (
            ADMIN,
            format!("/api/v1/cases/{ZUID_CASE}"),
            "zaak_lezen",
            Some(ZUID_CASE),
            200,
        ),
        (
            ZUID,
            "/api/v1/cases?status=alle".to_owned(),
            "zaken_lijst",
            None,
            200,
        ),
    ];
    for (i, (token, path, actie, zaak, status)) in reads.iter().enumerate() {
        call(&f.router, "GET", path, Some(&bearer(token)), None).await;
        let log: Vec<_> = f.store.audit_log().map(Result::unwrap).collect();
        assert_eq!(log.len(), i + 1, "{path}");
        let entry = log.last().unwrap();
        assert_eq!(entry.actie, *actie);
        assert_eq!(entry.zaak_id.as_deref(), *zaak);
        assert_eq!(entry.status, *status);
        assert_eq!(entry.tijd, now());
        let expected_who = match *token {
            NOORD => ("coordinator-noord", "noord"),
            ZUID => ("coordinator-zuid", "zuid"),
            _ => ("beheer", "admin"),
        };
        assert_eq!((entry.wie.as_str(), entry.rol.as_str()), expected_who);
    }
    // The export returns the log (and is itself audited).
    let (status, body) = call(
        &f.router,
        "GET",
        "/api/v1/audit",
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert_eq!(text.lines().count(), reads.len(), "{text}");
    assert!(text.contains(ZUID_CASE));
    assert!(
        !text.contains(NOORD) && !text.contains(&hex::encode(hash_token(NOORD))),
        "no tokens in the audit log"
    );
    assert_eq!(f.store.audit_log().count(), reads.len() + 1);
}

#[tokio::test]
async fn feedback_is_validated_and_published() {
    let f = fixture();
    let path = format!("/api/v1/cases/{NOORD_CASE}/contactpogingen");
    let (status, value) = call(
        &f.router,
        "POST",
        &path,
        Some(&bearer(NOORD)),
        Some(attempt()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    let sent = f.sent.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, NOORD_CASE);
    let feedback = decode_feedback(&sent[0].1, &DecodeContext::at(now())).unwrap();
    assert_eq!(feedback.zaak_id, NOORD_CASE);
    assert_eq!(feedback.id, value["id"].as_str().unwrap());

    // A caller-chosen id is kept, so a retry is recognised downstream.
    let mut body: Value = serde_json::from_slice(&outcome()).unwrap();
    body["id"] = json!("mijn-id-1");
    let (status, value) = call(
        &f.router,
        "POST",
        &format!("/api/v1/cases/{NOORD_CASE}/resultaat"),
        Some(&bearer(NOORD)),
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(value["id"], "mijn-id-1");

    let invalid: Vec<(Value, &str, Option<&str>)> = vec![
        (
            json!({"contactsoort": "Postduif", "bereikt": true, "datum": "2026-03-09"}),
            "contactpogingen",
            Some("contactsoort"),
        ),
        (
            json!({"contactsoort": "Brief", "datum": "2026-03-09"}),
            "contactpogingen",
            Some("bereikt"),
        ),
        (
            json!({"contactsoort": "Brief", "bereikt": true, "datum": "2027-01-01"}),
            "contactpogingen",
            Some("datum"),
        ),
        (
            json!({"contactsoort": "Brief", "bereikt": true, "datum": "2026-03-09", "notitie": "x"}),
            "contactpogingen",
            Some("notitie"),
        ),
        (
            json!({"contactsoort": "Brief", "bereikt": true, "datum": "2026-03-09", "zaak_id": ZUID_CASE}),
            "contactpogingen",
            Some("zaak_id"),
        ),
        (
            json!({"resultaat": "Opgelost", "datum": "2026-03-09"}),
            "resultaat",
            Some("resultaat"),
        ),
        (json!([1, 2]), "resultaat", None),
    ];
    for (body, endpoint, field) in invalid {
        let (status, value) = call(
            &f.router,
            "POST",
            &format!("/api/v1/cases/{NOORD_CASE}/{endpoint}"),
            Some(&bearer(NOORD)),
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {value}");
        assert_eq!(value["veld"].as_str(), field, "{body}: {value}");
    }
    let (status, _) = call(
        &f.router,
        "POST",
        &path,
        Some(&bearer(NOORD)),
        Some(b"{not json".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A closed case takes no more feedback.
    let (status, _) = call(
        &f.router,
        "POST",
        &format!("/api/v1/cases/{CLOSED_CASE}/contactpogingen"),
        Some(&bearer(NOORD)),
        Some(attempt()),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Oversized bodies are refused before they are read.
    let big = vec![b' '; crate::MAX_BODY_BYTES + 1];
    let (status, body) = call(&f.router, "POST", &path, Some(&bearer(NOORD)), Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["fout"], "te_groot", "the API's own JSON error: {body}");
    let last = f.store.audit_log().last().unwrap().unwrap();
    assert_eq!((last.actie.as_str(), last.status), ("contactpoging", 413));
    assert_eq!(
        f.sent.0.lock().unwrap().len(),
        2,
        "nothing invalid was published"
    );
}

#[tokio::test]
async fn an_unreachable_feedback_topic_is_503_and_audited() {
    let f = fixture_with(false);
    let (status, value) = call(
        &f.router,
        "POST",
        &format!("/api/v1/cases/{NOORD_CASE}/contactpogingen"),
        Some(&bearer(NOORD)),
        Some(attempt()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    let log: Vec<_> = f.store.audit_log().map(Result::unwrap).collect();
    assert_eq!(log.last().unwrap().status, 503);
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let f = fixture();
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = CASE_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routed, "openapi.json and CASE_ROUTES differ");
    // Every listed route is served (an unrouted path would be 404 or 405).
    for (method, template) in CASE_ROUTES {
        let path = template.replace("{id}", NOORD_CASE);
        let method = method.to_uppercase();
        let body = method.eq("POST").then(attempt);
        let (status, _) = call(&f.router, &method, &path, None, body).await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::OK,
            "{method} {path} is not routed: {status}"
        );
    }
    let (status, served) = call(&f.router, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, doc);
    // And an undocumented path is not served.
    let (status, _) = call(
        &f.router,
        "GET",
        "/api/v1/zaken",
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rules_reload_is_for_the_admin_and_reports_every_error() {
    let f = fixture();
    let (status, _) = call(
        &f.router,
        "POST",
        "/admin/reload",
        Some(&bearer(NOORD)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&f.router, "POST", "/admin/reload", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, value) = call(
        &f.router,
        "POST",
        "/admin/reload",
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["regelset"], "abcdef0123456789");
    RELOAD_FAILS.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, value) = call(
        &f.router,
        "POST",
        "/admin/reload",
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    RELOAD_FAILS.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}");
    assert_eq!(
        value["fouten"][0],
        "rules/regels.yaml:3:5: unknown field `wen`"
    );
    let actions: Vec<(String, u16)> = f
        .store
        .audit_log()
        .map(|e| e.map(|e| (e.actie, e.status)).unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            ("herladen".to_owned(), 403),
            ("herladen".to_owned(), 200),
            ("herladen".to_owned(), 422)
        ]
    );
}

#[tokio::test]
async fn admin_exports_answer_for_the_period_and_are_audited() {
    let f = fixture();
    let ddas = "/admin/export/ddas?gemeentecode=0363&nu=2026-03-05T10:00:00Z";
    // (token, path, status, audited action)
    let table: Vec<(&str, String, StatusCode, Option<&str>)> = vec![
        (
            ADMIN,
            format!("{ddas}&van=2026-02-01&tot=2026-02-28"),
            StatusCode::OK,
            Some("export_ddas"),
        ),
        // A period without signals or cases: never an empty delivery.
        (
            ADMIN,
            format!("{ddas}&van=2026-04-01&tot=2026-04-30"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("export_ddas"),
        ),
        (
            ADMIN,
            format!("{ddas}&van=2026-02-28&tot=2026-02-01"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("export_ddas"),
        ),
        (
            ADMIN,
            "/admin/export/ddas?gemeentecode=363&van=2026-02-01&tot=2026-02-28".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("export_ddas"),
        ),
        (
            ADMIN,
            format!("{ddas}&van=2026-02-01"),
            StatusCode::BAD_REQUEST,
            Some("export_ddas"),
        ),
        (
            ADMIN,
            format!("{ddas}&van=2026-02-01&tot=2026-02-28&extra=1"),
            StatusCode::BAD_REQUEST,
            Some("export_ddas"),
        ),
        (
            NOORD,
            format!("{ddas}&van=2026-02-01&tot=2026-02-28"),
            StatusCode::FORBIDDEN,
            Some("export_ddas"),
        ),
        (
            ADMIN,
            "/admin/export/rapport?van=2026-02-01&tot=2026-02-28".into(),
            StatusCode::OK,
            Some("export_rapport"),
        ),
        (
            NOORD,
            "/admin/export/rapport?van=2026-02-01&tot=2026-02-28".into(),
            StatusCode::FORBIDDEN,
            Some("export_rapport"),
        ),
        (
            "nobody",
            "/admin/export/rapport?van=2026-02-01&tot=2026-02-28".into(),
            StatusCode::UNAUTHORIZED,
            None,
        ),
    ];
    for (token, path, expected, action) in table {
        let before = f.store.audit_log().count();
        let (status, body) = call(&f.router, "GET", &path, Some(&bearer(token)), None).await;
        assert_eq!(status, expected, "{path}: {body}");
        let log: Vec<_> = f.store.audit_log().map(Result::unwrap).collect();
        match action {
            Some(action) => {
                let last = log.last().expect("audited");
                assert_eq!(log.len(), before + 1, "{path}");
                assert_eq!(
                    (last.actie.as_str(), last.status),
                    (action, expected.as_u16())
                );
            }
            None => assert_eq!(log.len(), before, "{path}"),
        }
    }
    let path = format!("{ddas}&van=2026-02-01&tot=2026-02-28&contactpersoon=Beheer,beheer@example.org&contactpersoon=Tweede,twee@example.org,020");
    let (status, body) = call(&f.router, "GET", &path, Some(&bearer(ADMIN)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["zaken"].clone(), body["vroegsignalen"].clone()),
        (json!(1), json!(1))
    );
    let levering = &body["levering"]["leveringen"][0];
    assert_eq!(levering["gemeentecode"], "0363");
    assert_eq!(
        levering["aanleverende_organisatie"]["contactpersoonen"][1]["telefoonnummer"],
        "020"
    );
    assert_eq!(
        body["levering"]["aanleverdatumEnTijd"],
        "2026-03-05T10:00:00Z"
    );
    let (_, report) = call(
        &f.router,
        "GET",
        "/admin/export/rapport?van=2026-02-01&tot=2026-02-28",
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    assert_eq!(report["signalen"], 1);
    assert_eq!(report["signalen_per_bron"]["Huur"], 1);
}

#[tokio::test]
async fn the_read_only_role_reads_everything_and_changes_nothing() {
    let f = fixture();
    let auditor = bearer(AUDITOR);
    // (method, path, body, status, audited action)
    let table: Vec<Row> = vec![
        (
            "GET",
            "/api/v1/cases?status=alle".into(),
            None,
            StatusCode::OK,
            "zaken_lijst",
        ),
        (
            "GET",
            format!("/api/v1/cases/{ZUID_CASE}"),
            None,
            StatusCode::OK,
            "zaak_lezen",
        ),
        (
            "GET",
            format!("/api/v1/cases/{NOORD_CASE}"),
            None,
            StatusCode::OK,
            "zaak_lezen",
        ),
        (
            "GET",
            "/api/v1/werkbakken".into(),
            None,
            StatusCode::OK,
            "werkbakken",
        ),
        (
            "GET",
            "/api/v1/audit".into(),
            None,
            StatusCode::OK,
            "audit_export",
        ),
        (
            "POST",
            format!("/api/v1/cases/{NOORD_CASE}/contactpogingen"),
            Some(attempt()),
            StatusCode::FORBIDDEN,
            "contactpoging",
        ),
        (
            "POST",
            format!("/api/v1/cases/{NOORD_CASE}/resultaat"),
            Some(outcome()),
            StatusCode::FORBIDDEN,
            "resultaat",
        ),
        (
            "POST",
            "/admin/reload".into(),
            None,
            StatusCode::FORBIDDEN,
            "herladen",
        ),
        (
            "GET",
            "/admin/export/rapport?van=2026-02-01&tot=2026-02-28".into(),
            None,
            StatusCode::FORBIDDEN,
            "export_rapport",
        ),
    ];
    for (method, path, body, expected, action) in table {
        let (status, value) = call(&f.router, method, &path, Some(&auditor), body).await;
        assert_eq!(status, expected, "{method} {path}: {value}");
        let last = f.store.audit_log().last().unwrap().unwrap();
        assert_eq!(
            (last.actie.as_str(), last.status, last.rol.as_str()),
            (action, expected.as_u16(), "alleen_lezen"),
            "{method} {path}"
        );
    }
    let (_, list) = call(
        &f.router,
        "GET",
        "/api/v1/cases?status=alle",
        Some(&auditor),
        None,
    )
    .await;
    assert_eq!(
        list["zaken"].as_array().unwrap().len(),
        3,
        "every team's cases"
    );
    assert!(f.sent.0.lock().unwrap().is_empty(), "nothing was published");
}

#[tokio::test]
async fn notes_and_assignments_are_published_checked_and_audited() {
    let f = fixture();
    let note = |v: Value| Some(v.to_string().into_bytes());
    // (token, path, body, status, audited action)
    let table: Vec<Row> = vec![
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}/notities"),
            note(json!({"tekst": "Buurvrouw zegt: na 18 uur thuis."})),
            StatusCode::ACCEPTED,
            "notitie",
        ),
        // A note on a closed case is fine; an assignment is not.
        (
            NOORD,
            format!("/api/v1/cases/{CLOSED_CASE}/notities"),
            note(json!({"tekst": "Nazorg afgesproken."})),
            StatusCode::ACCEPTED,
            "notitie",
        ),
        (
            NOORD,
            format!("/api/v1/cases/{CLOSED_CASE}/toewijzing"),
            note(json!({"medewerker": "Fatima"})),
            StatusCode::CONFLICT,
            "toewijzing",
        ),
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}/toewijzing"),
            note(json!({"medewerker": "Fatima"})),
            StatusCode::ACCEPTED,
            "toewijzing",
        ),
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}/toewijzing"),
            note(json!({"medewerker": null})),
            StatusCode::ACCEPTED,
            "toewijzing",
        ),
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}/toewijzing"),
            note(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "toewijzing",
        ),
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}/notities"),
            note(json!({"tekst": "x", "auteur": "iemand anders"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "notitie",
        ),
        (
            NOORD,
            format!("/api/v1/cases/{NOORD_CASE}/notities"),
            note(json!({"tekst": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "notitie",
        ),
        (
            ZUID,
            format!("/api/v1/cases/{NOORD_CASE}/notities"),
            note(json!({"tekst": "x"})),
            StatusCode::NOT_FOUND,
            "notitie",
        ),
        (
            AUDITOR,
            format!("/api/v1/cases/{NOORD_CASE}/toewijzing"),
            note(json!({"medewerker": "x"})),
            StatusCode::FORBIDDEN,
            "toewijzing",
        ),
    ];
    for (token, path, body, expected, action) in table {
        let (status, value) = call(&f.router, "POST", &path, Some(&bearer(token)), body).await;
        assert_eq!(status, expected, "{path}: {value}");
        let last = f.store.audit_log().last().unwrap().unwrap();
        assert_eq!(
            (last.actie.as_str(), last.status),
            (action, expected.as_u16()),
            "{path}"
        );
    }
    let sent = f.sent.0.lock().unwrap();
    assert_eq!(sent.len(), 4, "only the accepted ones are published");
    let first: Value = serde_json::from_slice(&sent[0].1).unwrap();
    assert_eq!(first["type"], "notitie");
    assert_eq!(
        first["auteur"], "coordinator-noord",
        "the author is the token's name"
    );
    // What was published decodes with the engine's own decoder.
    for (_, payload) in sent.iter() {
        decode_feedback(payload, &DecodeContext::at(now())).unwrap();
    }
    // The note text never reaches the audit log.
    let log: Vec<_> = f.store.audit_log().map(Result::unwrap).collect();
    assert!(!serde_json::to_string(&log).unwrap().contains("Buurvrouw"));
}

#[tokio::test]
async fn a_correction_needs_a_case_closed_with_an_outcome_and_is_audited() {
    let f = fixture();
    const DECIDED: &str = "0123456789abcdef0123456789abcdef-3";
    let mut decided = record(DECIDED, "noord", CaseStatus::Gesloten);
    decided.reden = Some(vroeg_core::case::CloseReason::Resultaat);
    decided.resultaat = Some(vroeg_core::feedback::Eindresultaat::Advies);
    commit_cases(&f.store, vec![decided]);
    let body = |v: Value| Some(v.to_string().into_bytes());
    let why = json!({"reden": "Verkeerd resultaat gekozen."});
    // (token, case, body, status)
    let table = [
        (NOORD, DECIDED, body(why.clone()), StatusCode::ACCEPTED),
        (NOORD, NOORD_CASE, body(why.clone()), StatusCode::CONFLICT),
        (NOORD, CLOSED_CASE, body(why.clone()), StatusCode::CONFLICT),
        (
            NOORD,
            DECIDED,
            body(json!({"reden": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            NOORD,
            DECIDED,
            body(json!({"reden": "x", "resultaat": "Overleden"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (ZUID, DECIDED, body(why.clone()), StatusCode::NOT_FOUND),
        (AUDITOR, DECIDED, body(why), StatusCode::FORBIDDEN),
    ];
    for (token, case, body, expected) in table {
        let path = format!("/api/v1/cases/{case}/correctie");
        let (status, value) = call(&f.router, "POST", &path, Some(&bearer(token)), body).await;
        assert_eq!(status, expected, "{token} {case}: {value}");
        let last = f.store.audit_log().last().unwrap().unwrap();
        assert_eq!(
            (last.actie.as_str(), last.status, last.zaak_id.as_deref()),
            ("correctie", expected.as_u16(), Some(case))
        );
    }
    let sent = f.sent.0.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let message: Value = serde_json::from_slice(&sent[0].1).unwrap();
    assert_eq!(
        (message["type"].as_str(), message["zaak_id"].as_str()),
        (Some("correctie"), Some(DECIDED))
    );
}

#[tokio::test]
async fn search_by_address_and_surname_checks_its_terms_and_audits_only_the_kind() {
    let f = fixture();
    let mut at_home = record(
        "00112233445566778899aabbccddeeff-1",
        "noord",
        CaseStatus::Open,
    );
    at_home.contact = Some(vroeg_core::state::Contact {
        straatnaam: "Dorpsstraat".into(),
        huisnummer: 12,
        huisnummertoevoeging: None,
        postcode: "1234AB".into(),
        plaatsnaam: "Utrecht".into(),
        voorletters: "J.".into(),
        voorvoegsel: Some("de".into()),
        achternaam: "Vries".into(),
        geboortedatum: vroeg_core::time::Day(4000),
        telefoon: None,
        email: None,
    });
    commit_cases(&f.store, vec![at_home]);
    // (token, path, status, found, audited action)
    let table: Vec<(&str, &str, StatusCode, usize, &str)> = vec![
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234AB&huisnummer=12",
            StatusCode::OK,
            1,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234%20ab&huisnummer=12",
            StatusCode::OK,
            1,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234AB&huisnummer=13",
            StatusCode::OK,
            0,
            "zoeken_adres",
        ),
        (
            ZUID,
            "/api/v1/zoeken/adres?postcode=1234AB&huisnummer=12",
            StatusCode::OK,
            0,
            "zoeken_adres",
        ),
        (
            AUDITOR,
            "/api/v1/zoeken/adres?postcode=1234AB&huisnummer=12",
            StatusCode::OK,
            1,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=0234AB&huisnummer=12",
            StatusCode::UNPROCESSABLE_ENTITY,
            0,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234%20%20AB&huisnummer=12",
            StatusCode::UNPROCESSABLE_ENTITY,
            0,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234AB&huisnummer=12a",
            StatusCode::UNPROCESSABLE_ENTITY,
            0,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234AB&huisnummer=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            0,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/adres?postcode=1234AB",
            StatusCode::BAD_REQUEST,
            0,
            "zoeken_adres",
        ),
        (
            NOORD,
            "/api/v1/zoeken/naam?achternaam=vri",
            StatusCode::OK,
            1,
            "zoeken_naam",
        ),
        (
            NOORD,
            "/api/v1/zoeken/naam?achternaam=VRIES",
            StatusCode::OK,
            1,
            "zoeken_naam",
        ),
        (
            NOORD,
            "/api/v1/zoeken/naam?achternaam=jansen",
            StatusCode::OK,
            0,
            "zoeken_naam",
        ),
        (
            NOORD,
            "/api/v1/zoeken/naam?achternaam=v",
            StatusCode::UNPROCESSABLE_ENTITY,
            0,
            "zoeken_naam",
        ),
        (
            NOORD,
            "/api/v1/zoeken/naam?achternaam=vries&postcode=1234AB",
            StatusCode::BAD_REQUEST,
            0,
            "zoeken_naam",
        ),
    ];
    for (token, path, expected, found, action) in table {
        let (status, body) = call(&f.router, "GET", path, Some(&bearer(token)), None).await;
        assert_eq!(status, expected, "{path}: {body}");
        if status == StatusCode::OK {
            assert_eq!(
                body["zaken"].as_array().unwrap().len(),
                found,
                "{path}: {body}"
            );
        }
        let last = f.store.audit_log().last().unwrap().unwrap();
        assert_eq!(
            (last.actie.as_str(), last.status),
            (action, expected.as_u16()),
            "{path}"
        );
    }
    let log = serde_json::to_string(&f.store.audit_log().map(Result::unwrap).collect::<Vec<_>>())
        .unwrap();
    assert!(
        !log.contains("1234") && !log.to_lowercase().contains("vries"),
        "never the terms"
    );
}

#[tokio::test]
async fn lists_page_sort_filter_and_count_with_their_audit_entries() {
    let f = fixture();
    // Seven more open cases of noord: priorities 1..=7, opened a day apart,
    // every other one in the crisis queue, three of them overdue.
    let extra: Vec<CaseRecord> = (1..=7u8)
        .map(|p| {
            let id = format!("{:032x}-1", 0xabc0 + u32::from(p));
            let mut r = record(&id, "noord", CaseStatus::Open);
            r.prioriteit = p;
            r.geopend = now() - i64::from(p) * vroeg_core::time::DAY_MS;
            r.contact_deadline = if p >= 5 {
                now() - 1000
            } else {
                now() + vroeg_core::time::DAY_MS
            };
            r.werkbak = if p % 2 == 0 {
                "crisis".into()
            } else {
                "regulier".into()
            };
            r.categorie = if p % 2 == 0 {
                "meervoudig".into()
            } else {
                "enkelvoudig".into()
            };
            r
        })
        .collect();
    commit_cases(&f.store, extra);
    let noord = bearer(NOORD);
    let every_page = |query: &'static str| {
        let router = f.router.clone();
        let noord = noord.clone();
        async move {
            let mut ids = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let path = match &next {
                    Some(c) => format!("/api/v1/cases?{query}&aantal=3&na={c}"),
                    None => format!("/api/v1/cases?{query}&aantal=3"),
                };
                let (status, body) = call(&router, "GET", &path, Some(&noord), None).await;
                assert_eq!(status, StatusCode::OK, "{path}: {body}");
                let page = body["zaken"].as_array().unwrap();
                assert!(page.len() <= 3);
                ids.extend(page.iter().map(|z| {
                    (
                        z["id"].as_str().unwrap().to_owned(),
                        z["prioriteit"].as_u64().unwrap(),
                    )
                }));
                match body["volgende"].as_str() {
                    Some(c) => next = Some(c.to_owned()),
                    None => return ids,
                }
            }
        }
    };
    let by_priority = every_page("sorteer=prioriteit").await;
    assert_eq!(by_priority.len(), 8, "every open case of noord, each once");
    let unique: BTreeSet<&String> = by_priority.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), 8);
    let reversed = every_page("sorteer=-prioriteit").await;
    let mut back = reversed.clone();
    back.reverse();
    assert_eq!(back, by_priority, "-prioriteit is the reverse order");
    let priorities: Vec<u64> = by_priority.iter().map(|(_, p)| *p).collect();
    assert!(
        priorities.windows(2).all(|w| w[0] >= w[1]) || priorities.windows(2).all(|w| w[0] <= w[1]),
        "{priorities:?}"
    );
    for order in ["deadline", "geopend"] {
        let query: &'static str = if order == "deadline" {
            "sorteer=deadline"
        } else {
            "sorteer=geopend"
        };
        let reverse: &'static str = if order == "deadline" {
            "sorteer=-deadline"
        } else {
            "sorteer=-geopend"
        };
        let mut there = every_page(query).await;
        there.reverse();
        assert_eq!(there, every_page(reverse).await, "{order}");
    }
    // Filters: (query, expected count)
    for (query, n) in [
        ("werkbak=crisis", 3),
        ("werkbak=regulier", 5),
        ("categorie=meervoudig", 3),
        // The fixture's own open case is overdue too.
        ("te_laat=true", 4),
        ("te_laat=false", 4),
        ("status=gesloten", 1),
        ("status=alle", 9),
        ("werkbak=crisis&te_laat=true", 1),
    ] {
        let (status, body) = call(
            &f.router,
            "GET",
            &format!("/api/v1/cases?{query}&aantal=500"),
            Some(&noord),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(
            body["zaken"].as_array().unwrap().len(),
            n,
            "{query}: {body}"
        );
    }
    // Bad parameters: 400, audited.
    for query in [
        "aantal=0",
        "aantal=501",
        "sorteer=naam",
        "na=zz",
        "te_laat=ja",
        "status=dicht",
        "kleur=rood",
    ] {
        let (status, body) = call(
            &f.router,
            "GET",
            &format!("/api/v1/cases?{query}"),
            Some(&noord),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let last = f.store.audit_log().last().unwrap().unwrap();
        assert_eq!((last.actie.as_str(), last.status), ("zaken_lijst", 400));
    }
    // Counts per work queue, for the team; audited.
    let (status, body) = call(&f.router, "GET", "/api/v1/werkbakken", Some(&noord), None).await;
    assert_eq!(status, StatusCode::OK);
    let queues: Vec<(String, u64, u64, u64)> = body["werkbakken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["werkbak"].as_str().unwrap().to_owned(),
                w["open"].as_u64().unwrap(),
                w["te_laat"].as_u64().unwrap(),
                w["crisis"].as_u64().unwrap(),
            )
        })
        .collect();
    let open: u64 = queues.iter().map(|q| q.1).sum();
    let late: u64 = queues.iter().map(|q| q.2).sum();
    assert_eq!((open, late), (8, 4), "{queues:?}");
    let last = f.store.audit_log().last().unwrap().unwrap();
    assert_eq!(
        (last.actie.as_str(), last.status, last.wie.as_str()),
        ("werkbakken", 200, "coordinator-noord")
    );
}
