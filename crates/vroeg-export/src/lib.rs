//! Exports of the engine's state: the DDAS delivery for CBS and the Divosa
//! monitor indicators.
//!
//! Both read a [`Snapshot`]: every case record and every arrears signal
//! that is in no case, read from a state that no batch is writing (a
//! stopped service's state directory, or a running service between two
//! batches). [`Snapshot::read`] refuses a state that contradicts itself
//! (a torn copy of a running service's directory) or that is empty, and
//! [`ddas`] refuses to build an empty delivery: a municipality must never
//! send CBS an empty file without noticing.
//!
//! The DDAS mapping is documented in `docs/ddas.md`. Notes on a case never
//! reach an export.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use vroeg_core::archive::{ArchivedSignal, CaseRecord, CaseStatus, SignalDetail};
use vroeg_core::case::CloseReason;
use vroeg_core::feedback::Eindresultaat;
use vroeg_core::state::{Client, Contact};
use vroeg_core::time::{format_rfc3339, Day, Millis};
use vroeg_store::{Store, StoreError};

/// Why an export was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the period's first day {from} lies after its last day {to}")]
    Period { from: Day, to: Day },
    #[error("gemeentecode {0:?}: expected the 4-digit CBS code, e.g. 0363")]
    Gemeentecode(String),
    #[error("contactpersoon {0:?}: expected \"name,email[,phone[,function]]\"")]
    Contactpersoon(String),
    #[error("the state holds no households and no cases: is this the state directory of the service (engine.state_dir)?")]
    EmptyState,
    #[error("the DDAS delivery for {from} .. {to} would hold no signals and no cases; an empty delivery is never written (check the period and the state directory)")]
    EmptyDelivery { from: Day, to: Day },
    #[error("the state is inconsistent ({} problems; first: {}); a copy of a running service's state directory can be torn: stop the service first, or fetch the export from the running service (--service)", .0.len(), .0.first().map(String::as_str).unwrap_or("-"))]
    Inconsistent(Vec<String>),
    #[error("cannot read the state: {0}")]
    Store(#[from] StoreError),
}

/// A period of whole days, both inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: Day,
    pub to: Day,
}

impl Period {
    pub fn new(from: Day, to: Day) -> Result<Period, ExportError> {
        if from > to {
            return Err(ExportError::Period { from, to });
        }
        Ok(Period { from, to })
    }

    fn contains(self, day: Day) -> bool {
        day >= self.from && day <= self.to
    }
}

/// A contact person of the delivering organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contactpersoon {
    pub naam: String,
    pub email: String,
    pub telefoonnummer: Option<String>,
    pub functietitel: Option<String>,
}

impl FromStr for Contactpersoon {
    type Err = ExportError;

    /// `"name,email[,phone[,function]]"`.
    fn from_str(s: &str) -> Result<Contactpersoon, ExportError> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() < 2 || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
            return Err(ExportError::Contactpersoon(s.to_owned()));
        }
        Ok(Contactpersoon {
            naam: parts[0].to_owned(),
            email: parts[1].to_owned(),
            telefoonnummer: parts.get(2).map(|p| (*p).to_owned()),
            functietitel: parts.get(3).map(|p| (*p).to_owned()),
        })
    }
}

impl std::fmt::Display for Contactpersoon {
    /// The form [`FromStr`] reads: `name,email[,phone[,function]]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.naam, self.email)?;
        for part in [&self.telefoonnummer, &self.functietitel]
            .into_iter()
            .flatten()
        {
            write!(f, ",{part}")?;
        }
        Ok(())
    }
}

/// What a DDAS delivery is about, beside the state: the period and the
/// delivering organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdasRequest {
    pub period: Period,
    /// The municipality's 4-digit CBS code.
    pub gemeentecode: String,
    /// Default: "Gemeente <code>".
    pub organisatie: Option<String>,
    pub kvk: Option<String>,
    pub contactpersonen: Vec<Contactpersoon>,
    /// `codeGegevensleverancier`.
    pub leverancier: String,
}

impl DdasRequest {
    /// Check the fields the state does not decide.
    pub fn validate(&self) -> Result<(), ExportError> {
        if self.gemeentecode.len() != 4 || !self.gemeentecode.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ExportError::Gemeentecode(self.gemeentecode.clone()));
        }
        Ok(())
    }
}

/// A signal as the export sees it, wherever it was found.
struct ExportSignal {
    source: String,
    id: String,
    detail: SignalDetail,
    contact: Option<Contact>,
}

impl ExportSignal {
    fn ddas_id(&self) -> String {
        ddas_id(&self.source, &self.id)
    }
}

/// The DDAS `ID` of a signal: partners' ids are unique per source only.
fn ddas_id(source: &str, id: &str) -> String {
    format!("{source}/{id}")
}

/// What the exports read of a state: every case record, and every arrears
/// signal of the households that is in no case record.
pub struct Snapshot {
    cases: Vec<CaseRecord>,
    loose: Vec<ExportSignal>,
    households: usize,
}

impl Snapshot {
    /// Read `store` (a spanning view of a whole state directory) and check
    /// that it agrees with itself: every open case of a household has an
    /// open record, and every open record is its household's open case.
    /// Refuses an empty state, and reports every contradiction found.
    ///
    /// The caller makes sure no batch writes meanwhile: a stopped service,
    /// or the service's own lock between batches.
    pub fn read(store: &Store) -> Result<Snapshot, ExportError> {
        let mut cases = Vec::new();
        let mut in_case = BTreeSet::new();
        let mut open_records: HashMap<String, String> = HashMap::new();
        for record in store.cases() {
            let record = record?;
            for s in &record.signalen {
                in_case.insert((s.source.clone(), s.id.clone()));
            }
            if record.status == CaseStatus::Open {
                open_records.insert(record.id.clone(), record.huishouden.clone());
            }
            cases.push(record);
        }
        let mut problems = Vec::new();
        let mut loose = Vec::new();
        let mut households = 0;
        for item in store.households() {
            let (key, state) = item?;
            households += 1;
            if let Some(case) = &state.case {
                match open_records.remove(case.id.as_str()) {
                    Some(owner) if owner == key.0 => {}
                    Some(_) => problems.push(format!(
                        "case {} is recorded for another household",
                        case.id
                    )),
                    None => problems.push(format!(
                        "case {} is open in its household but has no open record",
                        case.id
                    )),
                }
            }
            for r in &state.arrears {
                if in_case.contains(&(r.source.clone(), r.id.clone())) {
                    continue;
                }
                let archived = ArchivedSignal::of_arrears(r);
                loose.push(ExportSignal {
                    source: archived.source.into(),
                    id: archived.id.into(),
                    detail: archived.detail,
                    contact: state.contact.as_deref().cloned(),
                });
            }
        }
        let mut orphans: Vec<&String> = open_records.keys().collect();
        orphans.sort();
        for id in orphans {
            problems.push(format!(
                "case {id} is recorded as open but its household has no such case"
            ));
        }
        if !problems.is_empty() {
            return Err(ExportError::Inconsistent(problems));
        }
        if households == 0 && cases.is_empty() {
            return Err(ExportError::EmptyState);
        }
        Ok(Snapshot {
            cases,
            loose,
            households,
        })
    }

    /// How many case records the state holds.
    pub fn cases(&self) -> usize {
        self.cases.len()
    }

    /// How many households the state holds.
    pub fn households(&self) -> usize {
        self.households
    }
}

/// Whether a case was active at some time in the period.
fn active_in(case: &CaseRecord, period: Period) -> bool {
    Day::of_millis(case.geopend) <= period.to
        && case
            .gesloten
            .is_none_or(|g| Day::of_millis(g) >= period.from)
}

fn signal_day(detail: &SignalDetail) -> Option<Day> {
    match detail {
        SignalDetail::Betalingsachterstand { signaaldatum, .. } => Some(*signaaldatum),
        SignalDetail::Schoolverzuim { .. } => None,
    }
}

/// DDAS `EnumEindresultaat` of a closed case.
pub fn case_result(case: &CaseRecord) -> Option<Eindresultaat> {
    if case.status != CaseStatus::Gesloten {
        return None;
    }
    if let Some(r) = case.resultaat {
        return Some(r);
    }
    let reached = case.contactpogingen.iter().any(|a| a.bereikt);
    Some(match case.reden? {
        CloseReason::Betaald | CloseReason::Betalingsregeling => Eindresultaat::ZelfBetaald,
        _ if reached => Eindresultaat::GeenReactie,
        _ if !case.contactpogingen.is_empty() => Eindresultaat::GeenContact,
        _ => Eindresultaat::AndereReden,
    })
}

/// DDAS `EnumSignaalstatus` of a signal, given the case it belongs to.
/// `None` where no value applies: the signal was picked up.
pub fn signal_status(case: Option<&CaseRecord>) -> Option<&'static str> {
    let Some(case) = case else {
        // No rule selected it (below the minimum amount, suppressed, or not
        // (yet) combined with another signal).
        return Some("Niet opgepakt: andere reden");
    };
    if let Some(result) = case_result(case) {
        return match result {
            Eindresultaat::HerhaaldeMelding
            | Eindresultaat::OnterechtSignaal
            | Eindresultaat::Overleden
            | Eindresultaat::GeenInwoner
            | Eindresultaat::AndereReden => Some(result.as_str()),
            _ => None,
        };
    }
    case.contactpogingen
        .is_empty()
        .then_some("Nog niet opgepakt")
}

fn client_json(client: &Client, contact: Option<&Contact>) -> Value {
    let mut c = Map::new();
    if let Some(bsn) = &client.bsn {
        c.insert("Burgerservicenummer".into(), json!(bsn));
    }
    if !client.voorletters.is_empty() {
        c.insert("Voorletters".into(), json!(client.voorletters));
    }
    if let Some(v) = &client.voorvoegsel {
        c.insert("Voorvoegsel".into(), json!(v));
    }
    if !client.achternaam.is_empty() {
        c.insert("Achternaam".into(), json!(client.achternaam));
        c.insert(
            "Geboortedatum".into(),
            json!(client.geboortedatum.to_string()),
        );
    }
    if let Some(a) = contact {
        c.insert("Straatnaam".into(), json!(a.straatnaam));
        c.insert("Postcode".into(), json!(a.postcode));
        c.insert("Huisnummer".into(), json!(a.huisnummer.to_string()));
        if let Some(t) = &a.huisnummertoevoeging {
            c.insert("Huisnummertoevoeging".into(), json!(t));
        }
        c.insert("Plaatsnaam".into(), json!(a.plaatsnaam));
    }
    Value::Object(c)
}

fn signal_json(s: &ExportSignal, case: Option<&CaseRecord>) -> Option<Value> {
    let SignalDetail::Betalingsachterstand {
        partner,
        bedrag_cent,
        ontstaansdatum,
        signaaldatum,
        crisis,
        eindelevering,
        client,
        ..
    } = &s.detail
    else {
        return None; // school absence is not a DDAS vroegsignaal
    };
    let mut v = json!({
        "ID": s.ddas_id(),
        "crisissignaal": *crisis || *eindelevering,
        // Whole euros, rounded half up.
        "bedrag": bedrag_cent.saturating_add(50) / 100,
        "ontstaansdatum": ontstaansdatum.to_string(),
        "signaaldatum": signaaldatum.to_string(),
        "signaalpartner": { "type": partner.as_str() },
        "client": client_json(client, s.contact.as_ref()),
    });
    if let Some(status) = signal_status(case) {
        v["status"] = json!(status);
    }
    Some(v)
}

fn case_json(case: &CaseRecord) -> Option<Value> {
    let ids: BTreeSet<String> = case
        .signalen
        .iter()
        .filter(|s| matches!(s.detail, SignalDetail::Betalingsachterstand { .. }))
        .map(|s| ddas_id(&s.source, &s.id))
        .collect();
    if ids.is_empty() {
        return None; // DDAS needs at least one vroegsignaal per case
    }
    let opened = Day::of_millis(case.geopend);
    let first_signal = case
        .signalen
        .iter()
        .filter_map(|s| signal_day(&s.detail))
        .min()
        .unwrap_or(opened);
    let mut v = json!({
        "matchingsdatum": opened.to_string(),
        "startdatum_matchtingperiode": first_signal.min(opened).to_string(),
        "einddatum_matchingperiode": opened.to_string(),
        "vroegsignalen": ids.iter().map(|id| json!({ "ID": id })).collect::<Vec<_>>(),
        "contactpogingen": case.contactpogingen.iter().map(|a| {
            let mut p = json!({ "soort": a.soort.as_str(), "bereikt": a.bereikt, "datum": a.datum.to_string() });
            if let Some(d) = a.dagdeel { p["dagdeel"] = json!(d.as_str()); }
            p
        }).collect::<Vec<_>>(),
    });
    if let Some(r) = case_result(case) {
        v["resultaat"] = json!(r.as_str());
    }
    if let Some(first) = case.first_attempt() {
        v["datum_opgepakt"] = json!(first.to_string());
    }
    Some(v)
}

/// A DDAS delivery and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The delivery document (DDAS Uitwisselmodel v0.9).
    pub document: Value,
    pub signals: usize,
    pub cases: usize,
    /// Cases of school absence only, which DDAS has no place for.
    pub cases_without_ddas_signal: usize,
}

/// Build the DDAS delivery for the request's period, as of `now` (the
/// delivery time). Refuses a delivery without signals and cases.
pub fn ddas(
    snapshot: &Snapshot,
    request: &DdasRequest,
    now: Millis,
) -> Result<Delivery, ExportError> {
    request.validate()?;
    let period = request.period;
    let mut cases_without_ddas_signal = 0;
    let mut signals: BTreeMap<String, Value> = BTreeMap::new();
    let mut zaken = Vec::new();
    for case in snapshot.cases.iter().filter(|c| active_in(c, period)) {
        let Some(z) = case_json(case) else {
            cases_without_ddas_signal += 1;
            continue;
        };
        zaken.push(z);
        // A case's signals go with it, even ones signalled before `from`.
        for s in &case.signalen {
            let export = ExportSignal {
                source: s.source.to_string(),
                id: s.id.to_string(),
                detail: s.detail.clone(),
                contact: case.contact.clone(),
            };
            if let Some(v) = signal_json(&export, Some(case)) {
                signals.insert(export.ddas_id(), v);
            }
        }
    }
    for s in &snapshot.loose {
        if signal_day(&s.detail).is_some_and(|d| period.contains(d)) {
            if let Some(v) = signal_json(s, None) {
                signals.entry(s.ddas_id()).or_insert(v);
            }
        }
    }
    if signals.is_empty() && zaken.is_empty() {
        return Err(ExportError::EmptyDelivery {
            from: period.from,
            to: period.to,
        });
    }
    let mut organisatie = json!({
        "naam": request.organisatie.clone().unwrap_or_else(|| format!("Gemeente {}", request.gemeentecode)),
    });
    if let Some(kvk) = &request.kvk {
        organisatie["kvk-nummer"] = json!(kvk);
    }
    if !request.contactpersonen.is_empty() {
        let people: Vec<Value> = request
            .contactpersonen
            .iter()
            .map(|c| {
                let mut p = json!({ "naam": c.naam, "email": c.email });
                if let Some(t) = &c.telefoonnummer {
                    p["telefoonnummer"] = json!(t);
                }
                if let Some(f) = &c.functietitel {
                    p["functietitel"] = json!(f);
                }
                p
            })
            .collect();
        organisatie["contactpersoonen"] = json!(people);
    }
    let (n_signals, n_cases) = (signals.len(), zaken.len());
    let document = json!({
        "codeGegevensleverancier": request.leverancier,
        "startdatumLevering": period.from.to_string(),
        "einddatumLevering": period.to.to_string(),
        "aanleverdatumEnTijd": format_rfc3339(now - now.rem_euclid(1000)).replace(".000Z", "Z"),
        "leveringen": [{
            "teller": 1,
            "gemeentecode": request.gemeentecode,
            "aanleverende_organisatie": organisatie,
            "vroegsignalen": signals.into_values().collect::<Vec<_>>(),
            "vroegsignaalzaken": zaken,
        }],
    });
    Ok(Delivery {
        document,
        signals: n_signals,
        cases: n_cases,
        cases_without_ddas_signal,
    })
}

/// The Divosa monitor indicators over a period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Indicators {
    pub van: String,
    pub tot_en_met: String,
    /// Payment signals with a signal date in the period, per partner type.
    pub signalen_per_bron: BTreeMap<String, u64>,
    pub signalen: u64,
    /// Of those, how many belong to a case.
    pub signalen_in_zaak: u64,
    pub aandeel_signalen_zaak: Option<f64>,
    /// Cases opened in the period, by main category.
    pub zaken_geopend: u64,
    pub zaken_per_categorie: BTreeMap<String, u64>,
    /// Of the cases opened in the period: the resident was reached.
    pub zaken_bereikt: u64,
    pub bereik: Option<f64>,
    /// Contact attempts dated in the period, by kind.
    pub contactpogingen_per_soort: BTreeMap<String, u64>,
    /// Cases closed in the period, by DDAS outcome.
    pub resultaten: BTreeMap<String, u64>,
    /// Cases whose contact deadline fell in the period and is decided.
    pub deadlines_beoordeeld: u64,
    pub deadlines_gehaald: u64,
    pub aandeel_deadlines_gehaald: Option<f64>,
}

pub fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 1000.0)
}

pub fn indicators(snapshot: &Snapshot, period: Period, now: Millis) -> Indicators {
    let (from, to) = (period.from, period.to);
    let (cases, loose) = (&snapshot.cases, &snapshot.loose);
    let in_period = |d: Day| d >= from && d <= to;
    let mut ind = Indicators {
        van: from.to_string(),
        tot_en_met: to.to_string(),
        ..Indicators::default()
    };
    let count_signal = |detail: &SignalDetail, in_case: bool, ind: &mut Indicators| {
        if let SignalDetail::Betalingsachterstand {
            partner,
            signaaldatum,
            ..
        } = detail
        {
            if in_period(*signaaldatum) {
                *ind.signalen_per_bron
                    .entry(partner.as_str().into())
                    .or_default() += 1;
                ind.signalen += 1;
                ind.signalen_in_zaak += u64::from(in_case);
            }
        }
    };
    let mut seen = BTreeSet::new();
    for case in cases {
        for s in &case.signalen {
            if seen.insert((s.source.clone(), s.id.clone())) {
                count_signal(&s.detail, true, &mut ind);
            }
        }
    }
    for s in loose {
        count_signal(&s.detail, false, &mut ind);
    }
    for case in cases {
        if in_period(Day::of_millis(case.geopend)) {
            ind.zaken_geopend += 1;
            *ind.zaken_per_categorie
                .entry(case.categorie.to_string())
                .or_default() += 1;
            ind.zaken_bereikt += u64::from(case.contactpogingen.iter().any(|a| a.bereikt));
        }
        for a in &case.contactpogingen {
            if in_period(a.datum) {
                *ind.contactpogingen_per_soort
                    .entry(a.soort.as_str().into())
                    .or_default() += 1;
            }
        }
        if case.gesloten.is_some_and(|g| in_period(Day::of_millis(g))) {
            if let Some(r) = case_result(case) {
                *ind.resultaten.entry(r.as_str().into()).or_default() += 1;
            }
        }
        if in_period(Day::of_millis(case.contact_deadline)) {
            if let Some(met) = case.deadline_met(now) {
                ind.deadlines_beoordeeld += 1;
                ind.deadlines_gehaald += u64::from(met);
            }
        }
    }
    ind.aandeel_signalen_zaak = share(ind.signalen_in_zaak, ind.signalen);
    ind.bereik = share(ind.zaken_bereikt, ind.zaken_geopend);
    ind.aandeel_deadlines_gehaald = share(ind.deadlines_gehaald, ind.deadlines_beoordeeld);
    ind
}

#[cfg(test)]
mod tests {
    use super::*;
    use vroeg_core::archive::ArchivedAttempt;
    use vroeg_core::feedback::Contactsoort;

    fn closed(reden: CloseReason, attempts: &[bool]) -> CaseRecord {
        let mut r = CaseRecord::new("k-1", "k", 0);
        r.status = CaseStatus::Gesloten;
        r.reden = Some(reden);
        for &bereikt in attempts {
            r.contactpogingen.push(ArchivedAttempt {
                soort: Contactsoort::Brief,
                bereikt,
                datum: Day(0),
                dagdeel: None,
                vastgelegd: 0,
            });
        }
        r
    }

    #[test]
    fn close_reasons_map_onto_ddas_results() {
        use Eindresultaat::*;
        let cases = [
            (closed(CloseReason::Betaald, &[]), ZelfBetaald),
            (closed(CloseReason::Betalingsregeling, &[true]), ZelfBetaald),
            (closed(CloseReason::Verlopen, &[]), AndereReden),
            (closed(CloseReason::Verlopen, &[false, false]), GeenContact),
            (
                closed(CloseReason::Ingetrokken, &[false, true]),
                GeenReactie,
            ),
        ];
        for (case, expected) in cases {
            assert_eq!(case_result(&case), Some(expected), "{:?}", case.reden);
        }
        let mut recorded = closed(CloseReason::Resultaat, &[true]);
        recorded.resultaat = Some(Advies);
        assert_eq!(case_result(&recorded), Some(Advies));
        assert_eq!(case_result(&CaseRecord::new("k-2", "k", 0)), None);
    }

    #[test]
    fn signal_statuses_use_the_ddas_enum() {
        let open = CaseRecord::new("k-1", "k", 0);
        assert_eq!(signal_status(Some(&open)), Some("Nog niet opgepakt"));
        assert_eq!(signal_status(None), Some("Niet opgepakt: andere reden"));
        let mut dup = closed(CloseReason::Resultaat, &[]);
        dup.resultaat = Some(Eindresultaat::HerhaaldeMelding);
        assert_eq!(
            signal_status(Some(&dup)),
            Some("Niet opgepakt: herhaalde melding")
        );
        let mut helped = closed(CloseReason::Resultaat, &[true]);
        helped.resultaat = Some(Eindresultaat::Advies);
        assert_eq!(
            signal_status(Some(&helped)),
            None,
            "picked up: no status applies"
        );
    }
    fn store_with(cases: Vec<CaseRecord>) -> Store {
        let store = Store::temporary().unwrap();
        store
            .commit(&vroeg_store::Commit {
                cases,
                ..vroeg_store::Commit::default()
            })
            .unwrap();
        store
    }

    fn request(from: Day, to: Day) -> DdasRequest {
        DdasRequest {
            period: Period::new(from, to).unwrap(),
            gemeentecode: "0363".into(),
            organisatie: None,
            kvk: None,
            contactpersonen: Vec::new(),
            leverancier: "VROEG".into(),
        }
    }

    #[test]
    fn an_empty_state_is_refused() {
        let store = Store::temporary().unwrap();
        assert!(matches!(
            Snapshot::read(&store),
            Err(ExportError::EmptyState)
        ));
    }

    #[test]
    fn an_open_record_without_its_household_case_is_inconsistent() {
        let mut open = CaseRecord::new("k-1", "k", 0);
        open.status = CaseStatus::Open;
        let mut paid = closed(CloseReason::Betaald, &[]);
        paid.id = "k-0".into();
        let store = store_with(vec![open, paid]);
        match Snapshot::read(&store) {
            Err(ExportError::Inconsistent(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert!(problems[0].contains("k-1"), "{problems:?}");
            }
            other => panic!("expected inconsistent, got {:?}", other.err()),
        }
    }

    #[test]
    fn an_empty_delivery_is_refused_and_a_period_with_a_case_is_not() {
        let mut case = closed(CloseReason::Betaald, &[]);
        case.id = "k-2".into();
        case.geopend = Day::parse("2026-02-10").unwrap().start_millis();
        case.gesloten = Some(Day::parse("2026-02-20").unwrap().start_millis());
        case.signalen.push(ArchivedSignal {
            source: "woningcorporatie-x".into(),
            id: "s-1".into(),
            tijd: 0,
            detail: SignalDetail::Betalingsachterstand {
                partner: vroeg_core::signal::PartnerType::Huur,
                bedrag_cent: 85_000,
                ontstaansdatum: Day::parse("2026-01-01").unwrap(),
                signaaldatum: Day::parse("2026-02-09").unwrap(),
                crisis: false,
                eindelevering: false,
                client: Client::default(),
                status: vroeg_core::signal::ArrearsStatus::Open,
            },
        });
        let snapshot = Snapshot::read(&store_with(vec![case])).unwrap();
        let d = |s| Day::parse(s).unwrap();
        let march = request(d("2026-03-01"), d("2026-03-31"));
        assert!(matches!(
            ddas(&snapshot, &march, 0),
            Err(ExportError::EmptyDelivery { .. })
        ));
        let february = request(d("2026-02-01"), d("2026-02-28"));
        let delivery = ddas(&snapshot, &february, 0).unwrap();
        assert_eq!((delivery.cases, delivery.signals), (1, 1));
    }

    #[test]
    fn a_bad_period_or_municipality_code_is_refused() {
        let d = |s| Day::parse(s).unwrap();
        assert!(Period::new(d("2026-02-02"), d("2026-02-01")).is_err());
        let mut r = request(d("2026-02-01"), d("2026-02-28"));
        r.gemeentecode = "363".into();
        assert!(matches!(r.validate(), Err(ExportError::Gemeentecode(_))));
        assert!("Naam".parse::<Contactpersoon>().is_err());
        assert!("Naam,".parse::<Contactpersoon>().is_err());
        for text in ["Naam,mail@example.org", "Naam,mail@example.org,020,Beheer"] {
            let parsed: Contactpersoon = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text, "read back as written");
        }
        assert_eq!(
            "Naam, mail@example.org, 020"
                .parse::<Contactpersoon>()
                .unwrap()
                .telefoonnummer
                .as_deref(),
            Some("020")
        );
    }
}
