//! The exports of a running service, for the admin role:
//! `GET /admin/export/ddas` (the DDAS delivery of a period) and
//! `GET /admin/export/rapport` (the Divosa monitor indicators).
//!
//! They read the engine's own state, between two batches (see
//! [`Exports`]), with the same code as `vroeg export ddas` and
//! `vroeg report` on a stopped state: the same state gives the same file.
//! Both are audited (`export_ddas`, `export_rapport`). An instance that
//! runs no engine (`vroeg serve`) answers 503.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use vroeg_core::time::{parse_rfc3339, Day, Millis};
use vroeg_export::{Contactpersoon, DdasRequest, ExportError, Period, Snapshot};

use crate::cases::{admin, audit, blocking, ApiError, CaseApi};

/// A consistent view of the engine's state.
pub trait Exports: Send + Sync {
    /// Read the state while no batch writes it (the implementation holds
    /// the engine's lock while it reads).
    fn snapshot(&self) -> Result<Snapshot, ExportError>;
}

/// The one value of a query parameter; a repeated one is refused.
fn one<'a>(query: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = query
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!(
            "{name}: given more than once"
        )));
    }
    Ok(first)
}

fn known(query: &[(String, String)], names: &[&str]) -> Result<(), ApiError> {
    match query.iter().find(|(k, _)| !names.contains(&k.as_str())) {
        Some((k, _)) => Err(ApiError::BadRequest(format!(
            "unknown query parameter {k:?}; expected one of: {}",
            names.join(", ")
        ))),
        None => Ok(()),
    }
}

fn day(query: &[(String, String)], name: &str) -> Result<Day, ApiError> {
    let text = one(query, name)?
        .ok_or_else(|| ApiError::BadRequest(format!("{name}: required (YYYY-MM-DD)")))?;
    Day::parse(text)
        .ok_or_else(|| ApiError::BadRequest(format!("{name} {text:?}: expected YYYY-MM-DD")))
}

fn period(query: &[(String, String)]) -> Result<Period, ApiError> {
    Period::new(day(query, "van")?, day(query, "tot")?).map_err(refused)
}

/// `nu`: the time the export is made as of (RFC 3339), default the clock.
fn now(api: &CaseApi, query: &[(String, String)]) -> Result<Millis, ApiError> {
    match one(query, "nu")? {
        None => Ok((api.clock)()),
        Some(t) => parse_rfc3339(t)
            .ok_or_else(|| ApiError::BadRequest(format!("nu {t:?}: expected RFC 3339"))),
    }
}

/// An export refused for what it was asked, or for the state it read.
fn refused(error: ExportError) -> ApiError {
    match error {
        ExportError::Store(error) => {
            tracing::error!(%error, "an export failed to read the state");
            ApiError::Internal
        }
        ExportError::Inconsistent(ref problems) => {
            tracing::error!(
                problems = problems.len(),
                "an export found the state inconsistent"
            );
            ApiError::Conflict(error.to_string())
        }
        other => ApiError::Unprocessable {
            field: None,
            detail: other.to_string(),
        },
    }
}

/// Run an admin export: authenticate; unless what was asked is wrong, read
/// the snapshot off the runtime and build the answer; audit it with its
/// status.
async fn export<T: Send + 'static>(
    api: CaseApi,
    headers: HeaderMap,
    actie: &'static str,
    asked: Result<T, ApiError>,
    build: impl FnOnce(Snapshot, T) -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let caller = admin(&api, &headers, actie).await?;
    blocking(move || {
        let result = asked.and_then(|asked| match &api.exports {
            None => Err(ApiError::Unavailable(
                "this instance runs no engine and holds no state to export; ask the instance that runs `vroeg run`".into(),
            )),
            Some(exports) => build(exports.snapshot().map_err(refused)?, asked),
        });
        let status = result.as_ref().map_or_else(ApiError::status, |_| 200);
        audit(&api, &caller, actie, None, status)?;
        result
    })
    .await
}

const DDAS_PARAMS: &[&str] = &[
    "van",
    "tot",
    "gemeentecode",
    "organisatie",
    "kvk",
    "contactpersoon",
    "leverancier",
    "nu",
];

/// `GET /admin/export/ddas`: the DDAS delivery of a period, with what it
/// holds: `{levering, vroegsignalen, zaken, zaken_zonder_ddas_signaal}`.
pub(crate) async fn ddas(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let request = (|| {
        known(&query, DDAS_PARAMS)?;
        let contactpersonen = query
            .iter()
            .filter(|(k, _)| k == "contactpersoon")
            .map(|(_, v)| v.parse::<Contactpersoon>().map_err(refused))
            .collect::<Result<Vec<_>, _>>()?;
        let request = DdasRequest {
            period: period(&query)?,
            gemeentecode: one(&query, "gemeentecode")?
                .ok_or_else(|| ApiError::BadRequest("gemeentecode: required".into()))?
                .to_owned(),
            organisatie: one(&query, "organisatie")?.map(str::to_owned),
            kvk: one(&query, "kvk")?.map(str::to_owned),
            contactpersonen,
            leverancier: one(&query, "leverancier")?.unwrap_or("VROEG").to_owned(),
        };
        request.validate().map_err(refused)?;
        Ok::<_, ApiError>(request)
    })();
    let asked = request.and_then(|r| Ok((r, now(&api, &query)?)));
    export(
        api,
        headers,
        "export_ddas",
        asked,
        |snapshot, (request, when)| {
            let delivery = vroeg_export::ddas(&snapshot, &request, when).map_err(refused)?;
            Ok(Json(json!({
                "levering": delivery.document,
                "vroegsignalen": delivery.signals,
                "zaken": delivery.cases,
                "zaken_zonder_ddas_signaal": delivery.cases_without_ddas_signal,
            }))
            .into_response())
        },
    )
    .await
}

/// `GET /admin/export/rapport`: the Divosa monitor indicators of a period.
pub(crate) async fn report(
    State(api): State<CaseApi>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let asked = known(&query, &["van", "tot", "nu"])
        .and_then(|()| Ok((period(&query)?, now(&api, &query)?)));
    export(
        api,
        headers,
        "export_rapport",
        asked,
        |snapshot, (period, when)| {
            Ok(Json(vroeg_export::indicators(&snapshot, period, when)).into_response())
        },
    )
    .await
}
