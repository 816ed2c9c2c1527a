//! The wijkteam case API: list, search, count and read a team's cases,
//! record contact attempts and outcomes, export the audit log.
//!
//! Reads come from the case read model (`vroeg-readmodel`), which follows
//! the case topic; `GET /api/v1/leesmodel` says how far behind it is.
//! Every read and every
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
use serde_json::{json, Value};
use vroeg_core::archive::{AuditEntry, CaseRecord, CaseStatus};
use vroeg_core::feedback::{check_consistent, decode_feedback};
use vroeg_core::signal::DecodeContext;
use vroeg_core::time::{format_rfc3339, Millis};
use vroeg_readmodel::view::{detail, Row};
use vroeg_readmodel::{normal_postcode, Order, Progress, Query as ListQuery, ReadModel, Scope};

use crate::auth::{bearer, Caller, Role, TokenSet};

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

/// Reload the rule files and the tokens: what is in force now, or every
/// error (then nothing changed). Blocking: it waits for the batch in
/// flight.
pub type Reload = Arc<dyn Fn() -> Result<Reloaded, Vec<String>> + Send + Sync>;

/// What a reload put in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The rule set's version, where this process runs the engine.
    pub regelset: Option<String>,
    /// How many API tokens are configured now.
    pub tokens: usize,
}

/// What the case API needs.
#[derive(Clone)]
pub struct CaseApi {
    /// The read model the API answers from.
    pub cases: ReadModel,
    /// How far the read model is behind the case topic.
    pub progress: Arc<Progress>,
    /// The tokens in force; a reload replaces them.
    pub tokens: Arc<TokenSet>,
    pub feedback: Arc<dyn FeedbackSink>,
    pub clock: Clock,
    /// Hot reload of the rules (`POST /admin/reload`), where supported.
    pub reload: Option<Reload>,
    /// The engine's state for the admin exports, where this process runs
    /// the engine (`vroeg run`; not `vroeg serve`).
    pub exports: Option<Arc<dyn crate::exports::Exports>>,
    /// The inbox's settings and the texts it shows (team names, rule
    /// descriptions).
    pub inbox: Arc<crate::inbox::Settings>,
}

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest(String),
    Unprocessable {
        field: Option<String>,
        detail: String,
    },
    Conflict(String),
    /// The body is over the limit (`MAX_BODY_BYTES`).
    TooLarge,
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
                json!({"fout": "verboden", "detail": "this token's role may not do this (the admin role, or a role that may write)"}),
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
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"fout": "te_groot", "detail": format!("the body is larger than {} KiB", crate::MAX_BODY_BYTES / 1024)}),
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
    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::Forbidden => 403,
            ApiError::NotFound => 404,
            ApiError::BadRequest(_) => 400,
            ApiError::Unprocessable { .. } => 422,
            ApiError::Conflict(_) => 409,
            ApiError::TooLarge => 413,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal => 500,
        }
    }
}

pub(crate) fn authenticate(api: &CaseApi, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(ApiError::Unauthorized)?;
    api.tokens
        .get()
        .caller(token, (api.clock)())
        .cloned()
        .ok_or(ApiError::Unauthorized)
}

/// Run blocking store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::Internal)?
}

/// The caller, if it holds the admin role; otherwise 403, audited as
/// `actie`.
pub(crate) async fn admin(
    api: &CaseApi,
    headers: &HeaderMap,
    actie: &'static str,
) -> Result<Caller, ApiError> {
    let caller = authenticate(api, headers)?;
    if caller.role != Role::Admin {
        let api = api.clone();
        blocking(move || audit(&api, &caller, actie, None, 403)).await?;
        return Err(ApiError::Forbidden);
    }
    Ok(caller)
}

/// Append an audit entry; a failure fails the request.
pub(crate) fn audit(
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
    api.cases.append_audit(&entry).map_err(|error| {
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
pub(crate) fn visible_case(
    api: &CaseApi,
    caller: &Caller,
    id: &str,
) -> Result<CaseRecord, ApiError> {
    let record = api.cases.case(id).map_err(|error| {
        tracing::error!(%error, "failed to read a case");
        ApiError::Internal
    })?;
    match record {
        Some(r) if caller.role.sees(&r.wijkteam) => Ok(r),
        _ => Err(ApiError::NotFound),
    }
}

pub(crate) fn read_error(error: vroeg_readmodel::ReadModelError) -> ApiError {
    tracing::error!(%error, "failed to read the read model");
    ApiError::Internal
}

/// The largest page.
pub const MAX_PAGE: usize = 500;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;

/// The read model's lag, for list answers.
fn lag_json(api: &CaseApi) -> Value {
    json!({"achterstand": api.progress.lag()})
}

/// The scope a caller asks for: its own team; the admin any team or all.
/// A team asking for another team's cases is not an error, it finds
/// nothing (`None`).
fn scope(caller: &Caller, asked: Option<&String>) -> Option<Scope> {
    match (&caller.role, asked) {
        (Role::Team(t), Some(asked)) if asked != t => None,
        (Role::Team(t), _) => Some(Scope::Team(t.clone())),
        (_, Some(asked)) => Some(Scope::Team(asked.clone())),
        (_, None) => Some(Scope::All),
    }
}

fn unknown_params(query: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    for key in query.keys() {
        if !known.contains(&key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {key:?}; expected one of: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// `GET /api/v1/cases`: a page of cases, with filters, an order and a
/// cursor (see the OpenAPI document).
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

const LIST_PARAMS: &[&str] = &[
    "status",
    "werkbak",
    "wijkteam",
    "categorie",
    "postcode",
    "te_laat",
    "sorteer",
    "na",
    "aantal",
];

fn list(
    api: &CaseApi,
    caller: &Caller,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    unknown_params(query, LIST_PARAMS)?;
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
    let (order, descending) = match query.get("sorteer").map(String::as_str) {
        None => (Order::Prioriteit, false),
        Some(s) => {
            let (name, descending) = match s.strip_prefix('-') {
                Some(name) => (name, true),
                None => (s, false),
            };
            let order = Order::parse(name).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "sorteer {s:?}: expected prioriteit, deadline or geopend, with - before it for the reverse order"
                ))
            })?;
            (order, descending)
        }
    };
    let overdue = match query.get("te_laat").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "te_laat {other:?}: expected true or false"
            )))
        }
    };
    let limit = match query.get("aantal") {
        None => DEFAULT_PAGE,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "aantal {n:?}: expected a number from 1 to {MAX_PAGE}"
                )))
            }
        },
    };
    let after = match query.get("na") {
        None => None,
        Some(c) => Some(hex::decode(c).map_err(|_| {
            ApiError::BadRequest("na: not a cursor from a previous page (volgende)".into())
        })?),
    };
    let Some(scope) = scope(caller, query.get("wijkteam")) else {
        return Ok(
            Json(json!({"zaken": [], "volgende": null, "leesmodel": lag_json(api)}))
                .into_response(),
        );
    };
    let now = (api.clock)();
    let page = api
        .cases
        .list(&ListQuery {
            scope,
            status,
            order,
            descending,
            werkbak: query.get("werkbak").cloned(),
            categorie: query.get("categorie").cloned(),
            postcode: query.get("postcode").map(|p| normal_postcode(p)),
            overdue,
            after,
            limit,
            now,
        })
        .map_err(read_error)?;
    let rows: Vec<Row> = page.records.iter().map(|r| Row::of(r, now)).collect();
    Ok(Json(json!({
        "zaken": rows,
        "volgende": page.next.map(hex::encode),
        "leesmodel": lag_json(api),
    }))
    .into_response())
}

/// `GET /api/v1/werkbakken`: per work queue, the open, overdue and crisis
/// cases of the caller's team (the admin: `wijkteam`, or every team).
pub(crate) async fn queue_counts(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    blocking(move || {
        let result = (|| {
            unknown_params(&query, &["wijkteam"])?;
            let counts = match scope(&caller, query.get("wijkteam")) {
                None => Default::default(),
                Some(scope) => api
                    .cases
                    .counts(&scope, (api.clock)())
                    .map_err(read_error)?,
            };
            let werkbakken: Vec<Value> = counts
                .into_iter()
                .map(|(werkbak, c)| {
                    json!({"werkbak": werkbak, "open": c.open, "te_laat": c.te_laat, "crisis": c.crisis})
                })
                .collect();
            Ok(Json(json!({"werkbakken": werkbakken, "leesmodel": lag_json(&api)})).into_response())
        })();
        audited(&api, &caller, "werkbakken", None, result)
    })
    .await
}

/// A search: the query parameters in, the cases found out.
pub(crate) type Search =
    fn(&CaseApi, &HashMap<String, String>) -> Result<Vec<CaseRecord>, ApiError>;

/// A search over the caller's cases, audited as `actie`, never with the
/// terms: `GET /api/v1/zoeken/adres?postcode=&huisnummer=` (`zoeken_adres`,
/// [`address_search`]) and `GET /api/v1/zoeken/naam?achternaam=`
/// (`zoeken_naam`, [`name_search`]: the surname or its first letters).
pub(crate) fn search_route(
    actie: &'static str,
    search: Search,
) -> axum::routing::MethodRouter<CaseApi> {
    axum::routing::get(
        move |State(api): State<CaseApi>,
              headers: HeaderMap,
              Query(query): Query<HashMap<String, String>>| async move {
            let caller = authenticate(&api, &headers)?;
            blocking(move || {
                let result =
                    search(&api, &query).and_then(|found| found_rows(&api, &caller, found));
                audited(&api, &caller, actie, None, result)
            })
            .await
        },
    )
}

/// A Dutch postcode exactly as the OpenAPI document allows it
/// (`^[1-9][0-9]{3} ?[A-Za-z]{2}$`), in the index's form (`1234AB`).
fn postcode(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let (digits, letters) = match b.len() {
        6 => (&b[..4], &b[4..]),
        7 if b[4] == b' ' => (&b[..4], &b[5..]),
        _ => return None,
    };
    let ok = (b'1'..=b'9').contains(&digits[0])
        && digits.iter().all(u8::is_ascii_digit)
        && letters.iter().all(u8::is_ascii_alphabetic);
    ok.then(|| normal_postcode(raw))
}

/// The largest house number the search accepts.
const MAX_HOUSE_NUMBER: u32 = 99_999;
/// The longest surname the search accepts, in characters.
const MAX_SURNAME_CHARS: usize = 100;

fn required<'a>(query: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    query
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::BadRequest(format!("{name}: required")))
}

pub(crate) fn address_search(
    api: &CaseApi,
    query: &HashMap<String, String>,
) -> Result<Vec<CaseRecord>, ApiError> {
    unknown_params(query, &["postcode", "huisnummer"])?;
    let code = postcode(required(query, "postcode")?).ok_or_else(|| ApiError::Unprocessable {
        field: Some("postcode".into()),
        detail: "expected a Dutch postcode, such as 1234 AB".into(),
    })?;
    let number = required(query, "huisnummer")?
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_HOUSE_NUMBER).contains(n))
        .ok_or_else(|| ApiError::Unprocessable {
            field: Some("huisnummer".into()),
            detail: format!(
                "expected a house number from 1 to {MAX_HOUSE_NUMBER} without its suffix, such as 12"
            ),
        })?;
    api.cases.by_address(&code, number).map_err(read_error)
}

pub(crate) fn name_search(
    api: &CaseApi,
    query: &HashMap<String, String>,
) -> Result<Vec<CaseRecord>, ApiError> {
    unknown_params(query, &["achternaam"])?;
    let name = required(query, "achternaam")?;
    if !(2..=MAX_SURNAME_CHARS).contains(&name.chars().count()) {
        return Err(ApiError::Unprocessable {
            field: Some("achternaam".into()),
            detail: format!(
                "give the surname or its first letters: 2 to {MAX_SURNAME_CHARS} characters"
            ),
        });
    }
    api.cases.by_surname(name, MAX_PAGE).map_err(read_error)
}

/// The found cases the caller may see, as list rows.
fn found_rows(
    api: &CaseApi,
    caller: &Caller,
    found: Vec<CaseRecord>,
) -> Result<Response, ApiError> {
    let now = (api.clock)();
    let rows: Vec<Row> = found
        .iter()
        .filter(|r| caller.role.sees(&r.wijkteam))
        .map(|r| Row::of(r, now))
        .collect();
    Ok(Json(json!({"zaken": rows, "leesmodel": lag_json(api)})).into_response())
}

/// `GET /api/v1/leesmodel`: how far the read model is behind the case
/// topic. A client that posted feedback can wait for `achterstand` 0 and
/// then find its feedback id in the case's `terugkoppeling`.
pub(crate) async fn read_model_status(
    State(api): State<CaseApi>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&api, &headers)?;
    Ok(Json(json!({
        "achterstand": api.progress.lag(),
        "gemeten": api.progress.measured().map(format_rfc3339),
        "partities": api.progress.partitions(),
    }))
    .into_response())
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
        let now = (api.clock)();
        audited(&api, &caller, "zaak_lezen", Some(&id), result)
            .map(|record| Json(detail(&record, now)).into_response())
    })
    .await
}

/// The handler of a feedback route: `POST /api/v1/cases/{id}/<route>`
/// records feedback of `kind` on the case (see `record_feedback`):
/// - `contactpogingen`: a contact attempt (`contactpoging`);
/// - `resultaat`: the outcome, which closes the case;
/// - `notities`: a note for the team (`notitie`); the author is the token's
///   name; never to partners, never in DDAS;
/// - `toewijzing`: assign the case to a colleague (`medewerker`), or
///   unassign it (`null`);
/// - `correctie`: the recorded outcome was wrong; reopen the case with a
///   reason (`reden`), then record the right outcome.
pub(crate) fn feedback_route(kind: &'static str) -> axum::routing::MethodRouter<CaseApi> {
    axum::routing::post(
        move |State(api): State<CaseApi>,
              headers: HeaderMap,
              Path(id): Path<String>,
              body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>| async move {
            // Who asks comes first; then a body over the limit is 413 with
            // the API's own JSON error, like every other answer.
            let caller = authenticate(&api, &headers)?;
            let body = body.map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            });
            record_feedback(api, caller, id, body, kind).await
        },
    )
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
    caller: Caller,
    id: String,
    body: Result<axum::body::Bytes, ApiError>,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let (api, caller, id, status) = (api.clone(), caller.clone(), id.clone(), e.status());
            blocking(move || audit(&api, &caller, kind, Some(&id), status)).await?;
            return Err(e);
        }
    };
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
    publish(&api, &caller, &id, kind, payload).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": feedback_id, "zaak_id": id, "type": kind, "status": "aangenomen"})),
    )
        .into_response())
}

/// Publish checked feedback to the feedback topic and audit the outcome:
/// 202 when the broker acknowledged it, 503 (and an error) otherwise.
pub(crate) async fn publish(
    api: &CaseApi,
    caller: &Caller,
    id: &str,
    kind: &'static str,
    payload: Vec<u8>,
) -> Result<(), ApiError> {
    let sent = api.feedback.submit(id.to_owned(), payload).await;
    let status = if sent.is_ok() { 202 } else { 503 };
    {
        let (api, caller, id) = (api.clone(), caller.clone(), id.to_owned());
        blocking(move || audit(&api, &caller, kind, Some(&id), status)).await?;
    }
    if let Err(error) = sent {
        tracing::warn!(%error, "failed to publish feedback");
        return Err(ApiError::Unavailable(
            "the feedback could not be published; try again".into(),
        ));
    }
    Ok(())
}

/// Check the caller may act on the case and that the body is valid
/// feedback; return the feedback id and the message to publish.
pub(crate) fn prepare_feedback(
    api: &CaseApi,
    caller: &Caller,
    id: &str,
    body: &[u8],
    kind: &str,
) -> Result<(String, Vec<u8>), ApiError> {
    let record = visible_case(api, caller, id)?;
    if !caller.role.writes() {
        return Err(ApiError::Forbidden);
    }
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
    if kind == "notitie" {
        if message.contains_key("auteur") {
            return Err(ApiError::Unprocessable {
                field: Some("auteur".into()),
                detail: "is the token's name; it is not sent".into(),
            });
        }
        message.insert("auteur".into(), Value::String(caller.name.clone()));
    }
    // A note may go on any case, a correction only on a case closed with
    // an outcome; everything else needs an open one.
    match (kind, record.status) {
        ("notitie", _) => {}
        ("correctie", CaseStatus::Open) => {
            return Err(ApiError::Conflict(
                "the case is open: record its outcome; a correction reopens a closed case".into(),
            ))
        }
        ("correctie", CaseStatus::Gesloten)
            if record.reden != Some(vroeg_core::case::CloseReason::Resultaat) =>
        {
            return Err(ApiError::Conflict(
                "the case closed without a recorded outcome: there is nothing to correct".into(),
            ))
        }
        ("correctie", _) => {}
        (_, CaseStatus::Gesloten) => return Err(ApiError::Conflict("the case is closed".into())),
        _ => {}
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
    let unprocessable = |e: vroeg_core::signal::DecodeError| ApiError::Unprocessable {
        field: e
            .field
            .map(|f| f.trim_start_matches("feedback.").to_owned()),
        detail: e.detail,
    };
    // The same decoder and consistency rules the engine uses, so what is
    // accepted here applies (unless the case changes meanwhile: then the
    // case's `terugkoppeling` shows the refusal).
    let feedback =
        decode_feedback(&payload, &DecodeContext::at((api.clock)())).map_err(unprocessable)?;
    check_consistent(
        record.geopend,
        record.contactpogingen.iter().any(|a| a.bereikt),
        &feedback,
    )
    .map_err(unprocessable)?;
    Ok((feedback_id, payload))
}

/// `GET /api/v1/audit`: the audit log as JSON lines (admin only).
pub(crate) async fn audit_export(
    State(api): State<CaseApi>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authenticate(&api, &headers)?;
    if !matches!(caller.role, Role::Admin | Role::ReadOnly) {
        return Err(ApiError::Forbidden);
    }
    blocking(move || {
        let mut out = Vec::new();
        for entry in api.cases.audit_log() {
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
    let caller = admin(&api, &headers, "herladen").await?;
    let Some(reload) = api.reload.clone() else {
        return Err(ApiError::Unavailable("this service cannot reload".into()));
    };
    blocking(move || {
        let result = reload();
        let status = if result.is_ok() { 200 } else { 422 };
        audit(&api, &caller, "herladen", None, status)?;
        Ok(match result {
            Ok(done) => {
                Json(json!({"regelset": done.regelset, "tokens": done.tokens})).into_response()
            }
            Err(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"fout": "ongeldige_regels", "detail": "the rule set does not load; the previous one stays in force", "fouten": errors})),
            )
                .into_response(),
        })
    })
    .await
}
