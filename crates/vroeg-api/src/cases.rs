//! The wijkteam case API: list and read a team's cases, record contact
//! attempts and outcomes, export the audit log.
//!
//! Reads come from the case archive in the store. Every read and every
//! recorded action is appended to the audit log before it is answered; if
//! the audit entry cannot be written, the caller gets 500 and no data.
//!
//! Writes do not touch the store: a contact attempt or an outcome is checked
//! here and then published to the feedback topic, from which the engine
//! applies it like feedback from any other system (one writer, one path,
//! one set of guarantees). The answer is `202 Accepted` with the feedback
//! id; the case shows the change once the engine has applied it.
//!
//! A case of another team is answered exactly like a case that does not
//! exist: 404, same body.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use vroeg_core::archive::{AuditEntry, CaseRecord, CaseStatus};
use vroeg_core::feedback::decode_feedback;
use vroeg_core::signal::DecodeContext;
use vroeg_core::time::{format_rfc3339, Millis};
use vroeg_engine::Store;

use crate::auth::{bearer, Caller, Role, Tokens};

/// A boxed future, for the object-safe [`FeedbackSink`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where recorded feedback goes: the feedback topic in `vroeg run`.
pub trait FeedbackSink: Send + Sync {
    /// Publish one feedback message (key: the case id). Resolves once the
    /// message is acknowledged, or with a description of the failure.
    fn submit(&self, key: String, payload: Vec<u8>) -> BoxFuture<Result<(), String>>;
}

/// The wall clock, injected so tests control it.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// Reload the rule files: the new rule set's version, or every error (the
/// previous rule set stays in force). Blocking: it waits for the batch in
/// flight.
pub type Reload = Arc<dyn Fn() -> Result<String, Vec<String>> + Send + Sync>;

/// What the case API needs.
#[derive(Clone)]
pub struct CaseApi {
    pub store: Store,
    pub tokens: Arc<Tokens>,
    pub feedback: Arc<dyn FeedbackSink>,
    pub clock: Clock,
    /// Hot reload of the rules (`POST /admin/reload`), where supported.
    pub reload: Option<Reload>,
}

#[derive(Debug)]
pub(crate) enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest(String),
    Unprocessable {
        field: Option<String>,
        detail: String,
    },
    Conflict(String),
    Unavailable(String),
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Unauthorized => {
                let mut r = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"fout": "niet_geautoriseerd", "detail": "a valid bearer token is required"})),
                )
                    .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"fout": "verboden", "detail": "this needs the admin role"}),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"fout": "niet_gevonden", "detail": "no such case"}),
            ),
            ApiError::BadRequest(detail) => (
                StatusCode::BAD_REQUEST,
                json!({"fout": "ongeldig_verzoek", "detail": detail}),
            ),
            ApiError::Unprocessable { field, detail } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"fout": "ongeldige_invoer", "veld": field, "detail": detail}),
            ),
            ApiError::Conflict(detail) => (
                StatusCode::CONFLICT,
                json!({"fout": "conflict", "detail": detail}),
            ),
            ApiError::Unavailable(detail) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"fout": "niet_beschikbaar", "detail": detail}),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"fout": "interne_fout", "detail": "see the service log"}),
            ),
        };
        (status, Json(body)).into_response()
    }
}

impl ApiError {
    fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::Forbidden => 403,
            ApiError::NotFound => 404,
            ApiError::BadRequest(_) => 400,
            ApiError::Unprocessable { .. } => 422,
            ApiError::Conflict(_) => 409,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal => 500,
        }
    }
}

fn authenticate(api: &CaseApi, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(ApiError::Unauthorized)?;
    api.tokens
        .caller(token)
        .cloned()
        .ok_or(ApiError::Unauthorized)
}

/// Run blocking store work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::Internal)?
}

/// Append an audit entry; a failure fails the request.
fn audit(
    api: &CaseApi,
    caller: &Caller,
    actie: &str,
    zaak_id: Option<&str>,
    status: u16,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        tijd: (api.clock)(),
        wie: caller.name.clone(),
        rol: caller.role.name().to_owned(),
        actie: actie.to_owned(),
        zaak_id: zaak_id.map(str::to_owned),
        status,
    };
    api.store.append_audit(&entry).map_err(|error| {
        tracing::error!(%error, "failed to write the audit log; request refused");
        ApiError::Internal
    })
}

/// Audit a read with the status its result will be answered with (200 or
/// the error's), then pass the result on.
fn audited<T>(
    api: &CaseApi,
    caller: &Caller,
    actie: &str,
    zaak_id: Option<&str>,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let status = result.as_ref().map_or_else(ApiError::status, |_| 200);
    audit(api, caller, actie, zaak_id, status)?;
    result
}

/// A case the caller may see, or 404.
fn visible_case(api: &CaseApi, caller: &Caller, id: &str) -> Result<CaseRecord, ApiError> {
    let record = api.store.case(id).map_err(|error| {
        tracing::error!(%error, "failed to read a case");
        ApiError::Internal
    })?;
    match record {
        Some(r) if caller.role.sees(&r.wijkteam) => Ok(r),
        _ => Err(ApiError::NotFound),
    }
}

/// One line of a case list.
#[derive(Serialize)]
struct CaseSummary<'a> {
    id: &'a str,
    wijkteam: &'a str,
    werkbak: &'a str,
    status: CaseStatus,
    geopend: String,
    gesloten: Option<String>,
    prioriteit: u8,
    categorie: &'a str,
    contact_deadline: String,
    escalaties: u32,
    contactpogingen: usize,
    signalen: usize,
}

impl<'a> CaseSummary<'a> {
    fn of(r: &'a CaseRecord) -> Self {
        CaseSummary {
            id: &r.id,
            wijkteam: &r.wijkteam,
            werkbak: &r.werkbak,
            status: r.status,
            geopend: format_rfc3339(r.geopend),
            gesloten: r.gesloten.map(format_rfc3339),
            prioriteit: r.prioriteit,
            categorie: &r.categorie,
            contact_deadline: format_rfc3339(r.contact_deadline),
            escalaties: r.escalaties,
            contactpogingen: r.contactpogingen.len(),
            signalen: r.signalen.len(),
        }
    }
}

/// `GET /api/v1/cases?status=open|gesloten|alle&werkbak=...&wijkteam=...`
pub(crate) async fn list_cases(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    blocking(move || {
        let result = list(&api, &caller, &query);
        audited(&api, &caller, "zaken_lijst", None, result)
    })
    .await
}

fn list(
    api: &CaseApi,
    caller: &Caller,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    for key in query.keys() {
        if !["status", "werkbak", "wijkteam"].contains(&key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {key:?}; expected status, werkbak or wijkteam"
            )));
        }
    }
    let status = match query.get("status").map(String::as_str) {
        None | Some("open") => Some(CaseStatus::Open),
        Some("gesloten") => Some(CaseStatus::Gesloten),
        Some("alle") => None,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status {other:?}: expected open, gesloten or alle"
            )))
        }
    };
    // A team sees its own cases; asking for another team's is not an error,
    // it just finds nothing.
    let team = match (&caller.role, query.get("wijkteam")) {
        (Role::Team(t), Some(asked)) if asked != t => {
            return Ok(Json(json!({"zaken": []})).into_response())
        }
        (Role::Team(t), _) => Some(t.clone()),
        (Role::Admin, asked) => asked.cloned(),
    };
    let store_error = |error: vroeg_engine::StoreError| {
        tracing::error!(%error, "failed to list cases");
        ApiError::Internal
    };
    let records: Vec<CaseRecord> = match (&team, status) {
        (Some(team), Some(CaseStatus::Open)) => api.store.open_cases(team).map_err(store_error)?,
        _ => api
            .store
            .cases()
            .filter(|r| match r {
                Ok(r) => {
                    team.as_ref().is_none_or(|t| *t == r.wijkteam)
                        && status.is_none_or(|s| s == r.status)
                }
                Err(_) => true,
            })
            .collect::<Result<_, _>>()
            .map_err(store_error)?,
    };
    let werkbak = query.get("werkbak");
    let mut summaries: Vec<CaseSummary> = records
        .iter()
        .filter(|r| werkbak.is_none_or(|w| *w == r.werkbak))
        .map(CaseSummary::of)
        .collect();
    // Most urgent first: priority, then the earliest deadline.
    summaries.sort_by(|a, b| {
        b.prioriteit
            .cmp(&a.prioriteit)
            .then_with(|| a.contact_deadline.cmp(&b.contact_deadline))
            .then_with(|| a.id.cmp(b.id))
    });
    Ok(Json(json!({ "zaken": summaries })).into_response())
}

/// `GET /api/v1/cases/{id}`
pub(crate) async fn get_case(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    blocking(move || {
        let result = visible_case(&api, &caller, &id);
        audited(&api, &caller, "zaak_lezen", Some(&id), result)
            .map(|record| Json(record).into_response())
    })
    .await
}

/// `POST /api/v1/cases/{id}/contactpogingen`
pub(crate) async fn post_attempt(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    record_feedback(api, headers, id, body, "contactpoging").await
}

/// `POST /api/v1/cases/{id}/resultaat`
pub(crate) async fn post_result(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    record_feedback(api, headers, id, body, "resultaat").await
}

static FEEDBACK_SEQ: AtomicU64 = AtomicU64::new(0);

/// A feedback id that no other submission of this process or another will
/// use: 128 random bits.
fn new_feedback_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::Internal)?;
    let seq = FEEDBACK_SEQ.fetch_add(1, Ordering::Relaxed);
    Ok(format!("api-{}-{seq}", hex::encode(bytes)))
}

async fn record_feedback(
    api: CaseApi,
    headers: HeaderMap,
    id: String,
    body: axum::body::Bytes,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    let prepared = {
        let (api, caller, id) = (api.clone(), caller.clone(), id.clone());
        blocking(move || {
            let result = prepare_feedback(&api, &caller, &id, &body, kind);
            if let Err(e) = &result {
                audit(&api, &caller, kind, Some(&id), e.status())?;
            }
            result
        })
        .await?
    };
    let (feedback_id, payload) = prepared;
    let sent = api.feedback.submit(id.clone(), payload).await;
    let status = if sent.is_ok() { 202 } else { 503 };
    {
        let (api, caller, id) = (api.clone(), caller.clone(), id.clone());
        blocking(move || audit(&api, &caller, kind, Some(&id), status)).await?;
    }
    if let Err(error) = sent {
        tracing::warn!(%error, "failed to publish feedback");
        return Err(ApiError::Unavailable(
            "the feedback could not be published; try again".into(),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": feedback_id, "zaak_id": id, "type": kind, "status": "aangenomen"})),
    )
        .into_response())
}

/// Check the caller may act on the case and that the body is valid
/// feedback; return the feedback id and the message to publish.
fn prepare_feedback(
    api: &CaseApi,
    caller: &Caller,
    id: &str,
    body: &[u8],
    kind: &str,
) -> Result<(String, Vec<u8>), ApiError> {
    let record = visible_case(api, caller, id)?;
    let mut message = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(ApiError::Unprocessable {
                field: None,
                detail: "the body must be a JSON object".into(),
            })
        }
        Err(e) => {
            return Err(ApiError::Unprocessable {
                field: None,
                detail: format!("the body is not valid JSON: {e}"),
            })
        }
    };
    for reserved in ["zaak_id", "type"] {
        if message.contains_key(reserved) {
            return Err(ApiError::Unprocessable {
                field: Some(reserved.into()),
                detail: "is set by the request path".into(),
            });
        }
    }
    if record.status == CaseStatus::Gesloten {
        return Err(ApiError::Conflict("the case is closed".into()));
    }
    // A caller-chosen id makes a retry safe: the engine applies an id once.
    let feedback_id = match message.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => s.clone(),
        Some(_) => {
            return Err(ApiError::Unprocessable {
                field: Some("id".into()),
                detail: "must be a non-empty string of at most 200 characters".into(),
            })
        }
        None => new_feedback_id()?,
    };
    message.insert("id".into(), Value::String(feedback_id.clone()));
    message.insert("zaak_id".into(), Value::String(id.to_owned()));
    message.insert("type".into(), Value::String(kind.to_owned()));
    let payload = serde_json::to_vec(&message).map_err(|_| ApiError::Internal)?;
    // The same decoder the engine uses, so what is accepted here applies.
    decode_feedback(&payload, &DecodeContext::at((api.clock)())).map_err(|e| {
        ApiError::Unprocessable {
            field: e
                .field
                .map(|f| f.trim_start_matches("feedback.").to_owned()),
            detail: e.detail,
        }
    })?;
    Ok((feedback_id, payload))
}

/// `GET /api/v1/audit`: the audit log as JSON lines (admin only).
pub(crate) async fn audit_export(
    State(api): State<CaseApi>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    blocking(move || {
        let mut out = Vec::new();
        for entry in api.store.audit_log() {
            let entry = entry.map_err(|error| {
                tracing::error!(%error, "failed to read the audit log");
                ApiError::Internal
            })?;
            serde_json::to_writer(&mut out, &entry).map_err(|_| ApiError::Internal)?;
            out.push(b'\n');
        }
        audit(&api, &caller, "audit_export", None, 200)?;
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
    })
    .await
}

/// `POST /admin/reload`: reload the rule files (admin only). `200` with the
/// new rule set's version, or `422` with every error while the previous
/// rule set stays in force.
pub(crate) async fn reload_rules(
    State(api): State<CaseApi>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    if caller.role != Role::Admin {
        blocking(move || audit(&api, &caller, "herladen", None, 403)).await?;
        return Err(ApiError::Forbidden);
    }
    let Some(reload) = api.reload.clone() else {
        return Err(ApiError::Unavailable(
            "this service cannot reload rules".into(),
        ));
    };
    blocking(move || {
        let result = reload();
        let status = if result.is_ok() { 200 } else { 422 };
        audit(&api, &caller, "herladen", None, status)?;
        Ok(match result {
            Ok(version) => Json(json!({"regelset": version})).into_response(),
            Err(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"fout": "ongeldige_regels", "detail": "the rule set does not load; the previous one stays in force", "fouten": errors})),
            )
                .into_response(),
        })
    })
    .await
}
