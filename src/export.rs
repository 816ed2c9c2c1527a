//! Exports from a state directory: the DDAS delivery for CBS, the Divosa
//! monitor indicators, and the API's audit log. All read the store only;
//! run them on a stopped service or on a copy of its state directory.
//!
//! The DDAS mapping is documented in `docs/ddas.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Map, Value};
use vroeg_core::archive::{ArchivedSignal, CaseRecord, CaseStatus, SignalDetail};
use vroeg_core::case::CloseReason;
use vroeg_core::feedback::Eindresultaat;
use vroeg_core::state::{Client, Contact};
use vroeg_core::time::{format_rfc3339, parse_rfc3339, Day, Millis};
use vroeg_store::Store;

use crate::run::{open_state, StateArgs};

/// A `YYYY-MM-DD` command-line argument.
pub fn parse_day(s: &str) -> Result<Day, String> {
    Day::parse(s).ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

#[derive(Args)]
pub struct PeriodArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// First day of the period (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    pub from: Day,
    /// Last day of the period, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    pub to: Day,
}

#[derive(Args)]
pub struct DdasArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// The municipality's CBS code, e.g. 0363.
    #[arg(long)]
    pub gemeentecode: String,
    /// The delivering organisation's name (default: "Gemeente <code>").
    #[arg(long)]
    pub organisatie: Option<String>,
    /// The delivering organisation's KvK number.
    #[arg(long)]
    pub kvk: Option<String>,
    /// A contact person: "name,email[,phone[,function]]" (repeatable).
    #[arg(long = "contactpersoon")]
    pub contactpersonen: Vec<String>,
    /// Code of the data supplier (`codeGegevensleverancier`).
    #[arg(long, default_value = "VROEG")]
    pub leverancier: String,
    /// Delivery time (RFC 3339); default now. Fix it for reproducible files.
    #[arg(long)]
    pub now: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
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

/// Every case record, and every arrears signal of the households that is
/// in no case record.
fn load(store: &Store) -> anyhow::Result<(Vec<CaseRecord>, Vec<ExportSignal>)> {
    let mut cases = Vec::new();
    let mut in_case = BTreeSet::new();
    for record in store.cases() {
        let record = record?;
        for s in &record.signalen {
            in_case.insert((s.source.clone(), s.id.clone()));
        }
        cases.push(record);
    }
    let mut loose = Vec::new();
    for item in store.households() {
        let (_, state) = item?;
        for r in &state.arrears {
            if in_case.contains(&(r.source.clone(), r.id.clone())) {
                continue;
            }
            let archived = ArchivedSignal::of_arrears(r);
            loose.push(ExportSignal {
                source: archived.source,
                id: archived.id,
                detail: archived.detail,
                contact: state.contact.clone(),
            });
        }
    }
    Ok((cases, loose))
}

/// Whether a case was active at some time in [from, to].
fn active_in(case: &CaseRecord, from: Day, to: Day) -> bool {
    Day::of_millis(case.geopend) <= to && case.gesloten.is_none_or(|g| Day::of_millis(g) >= from)
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

/// Build the DDAS delivery for [from, to].
pub fn ddas_delivery(
    store: &Store,
    args: &DdasArgs,
    now: Millis,
) -> anyhow::Result<(Value, DeliveryCounts)> {
    let (from, to) = (args.period.from, args.period.to);
    let (cases, loose) = load(store)?;
    let mut counts = DeliveryCounts::default();
    let mut signals: BTreeMap<String, Value> = BTreeMap::new();
    let mut zaken = Vec::new();
    for case in cases.iter().filter(|c| active_in(c, from, to)) {
        let Some(z) = case_json(case) else {
            counts.cases_without_ddas_signal += 1;
            continue;
        };
        zaken.push(z);
        // A case's signals go with it, even ones signalled before `from`.
        for s in &case.signalen {
            let export = ExportSignal {
                source: s.source.clone(),
                id: s.id.clone(),
                detail: s.detail.clone(),
                contact: case.contact.clone(),
            };
            if let Some(v) = signal_json(&export, Some(case)) {
                signals.insert(export.ddas_id(), v);
            }
        }
    }
    for s in &loose {
        if signal_day(&s.detail).is_some_and(|d| d >= from && d <= to) {
            if let Some(v) = signal_json(s, None) {
                signals.entry(s.ddas_id()).or_insert(v);
            }
        }
    }
    counts.signals = signals.len();
    counts.cases = zaken.len();
    let mut organisatie = json!({
        "naam": args.organisatie.clone().unwrap_or_else(|| format!("Gemeente {}", args.gemeentecode)),
    });
    if let Some(kvk) = &args.kvk {
        organisatie["kvk-nummer"] = json!(kvk);
    }
    if !args.contactpersonen.is_empty() {
        let mut people = Vec::new();
        for c in &args.contactpersonen {
            let parts: Vec<&str> = c.split(',').map(str::trim).collect();
            anyhow::ensure!(
                parts.len() >= 2 && parts.iter().all(|p| !p.is_empty()),
                "--contactpersoon {c:?}: expected \"name,email[,phone[,function]]\""
            );
            let mut p = json!({ "naam": parts[0], "email": parts[1] });
            if let Some(t) = parts.get(2) {
                p["telefoonnummer"] = json!(t);
            }
            if let Some(f) = parts.get(3) {
                p["functietitel"] = json!(f);
            }
            people.push(p);
        }
        organisatie["contactpersoonen"] = json!(people);
    }
    let delivery = json!({
        "codeGegevensleverancier": args.leverancier,
        "startdatumLevering": from.to_string(),
        "einddatumLevering": to.to_string(),
        "aanleverdatumEnTijd": format_rfc3339(now - now.rem_euclid(1000)).replace(".000Z", "Z"),
        "leveringen": [{
            "teller": 1,
            "gemeentecode": args.gemeentecode,
            "aanleverende_organisatie": organisatie,
            "vroegsignalen": signals.into_values().collect::<Vec<_>>(),
            "vroegsignaalzaken": zaken,
        }],
    });
    Ok((delivery, counts))
}

#[derive(Debug, Default)]
pub struct DeliveryCounts {
    pub signals: usize,
    pub cases: usize,
    pub cases_without_ddas_signal: usize,
}

pub fn ddas(args: &DdasArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.period.from <= args.period.to,
        "--from must not be after --to"
    );
    anyhow::ensure!(
        args.gemeentecode.len() == 4 && args.gemeentecode.bytes().all(|b| b.is_ascii_digit()),
        "--gemeentecode {:?}: expected the 4-digit CBS code, e.g. 0363",
        args.gemeentecode
    );
    let now = match &args.now {
        Some(t) => parse_rfc3339(t).with_context(|| format!("--now {t:?} is not RFC 3339"))?,
        None => vroeg_kafka::wall_now(),
    };
    let store = open_state(&args.period.state)?;
    let (delivery, counts) = ddas_delivery(&store, args, now)?;
    let text = serde_json::to_string_pretty(&delivery)? + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    eprintln!(
        "ddas delivery {}..{}: {} signals, {} cases{}",
        args.period.from,
        args.period.to,
        counts.signals,
        counts.cases,
        if counts.cases_without_ddas_signal > 0 {
            format!(
                " ({} school-only cases left out: DDAS has no school signals)",
                counts.cases_without_ddas_signal
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Evaluate open deadlines as of this time (RFC 3339); default now.
    #[arg(long)]
    pub now: Option<String>,
}

/// The Divosa monitor indicators over a period.
#[derive(Debug, Default, serde::Serialize)]
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

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 1000.0)
}

pub fn indicators(store: &Store, from: Day, to: Day, now: Millis) -> anyhow::Result<Indicators> {
    let (cases, loose) = load(store)?;
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
    for case in &cases {
        for s in &case.signalen {
            if seen.insert((s.source.clone(), s.id.clone())) {
                count_signal(&s.detail, true, &mut ind);
            }
        }
    }
    for s in &loose {
        count_signal(&s.detail, false, &mut ind);
    }
    for case in &cases {
        if in_period(Day::of_millis(case.geopend)) {
            ind.zaken_geopend += 1;
            *ind.zaken_per_categorie
                .entry(case.categorie.clone())
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
    Ok(ind)
}

fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

pub fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.period.from <= args.period.to,
        "--from must not be after --to"
    );
    let now = match &args.now {
        Some(t) => parse_rfc3339(t).with_context(|| format!("--now {t:?} is not RFC 3339"))?,
        None => vroeg_kafka::wall_now(),
    };
    let store = open_state(&args.period.state)?;
    let ind = indicators(&store, args.period.from, args.period.to, now)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ind)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("vroegsignalering {} .. {}", ind.van, ind.tot_en_met);
    println!();
    println!("{:<48} {:>8}", "signalen", ind.signalen);
    for (bron, n) in &ind.signalen_per_bron {
        println!("  {:<46} {:>8}  {}", bron, n, pct(share(*n, ind.signalen)));
    }
    println!(
        "{:<48} {:>8}  {}",
        "signalen in een zaak",
        ind.signalen_in_zaak,
        pct(ind.aandeel_signalen_zaak)
    );
    println!();
    println!("{:<48} {:>8}", "zaken geopend", ind.zaken_geopend);
    for (cat, n) in &ind.zaken_per_categorie {
        println!(
            "  {:<46} {:>8}  {}",
            cat,
            n,
            pct(share(*n, ind.zaken_geopend))
        );
    }
    println!(
        "{:<48} {:>8}  {}",
        "bereik (inwoner bereikt)",
        ind.zaken_bereikt,
        pct(ind.bereik)
    );
    println!();
    println!("contactpogingen per soort");
    for (soort, n) in &ind.contactpogingen_per_soort {
        println!("  {:<46} {:>8}", soort, n);
    }
    println!();
    println!("resultaten (gesloten zaken)");
    for (r, n) in &ind.resultaten {
        println!("  {:<46} {:>8}", r, n);
    }
    println!();
    println!(
        "{:<48} {:>8}  {}",
        "contacttermijn gehaald",
        format!("{}/{}", ind.deadlines_gehaald, ind.deadlines_beoordeeld),
        pct(ind.aandeel_deadlines_gehaald)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TokenArgs {
    /// Who will hold the token (the audit log shows this name).
    #[arg(long)]
    pub name: String,
    /// The wijkteam whose cases the token may see.
    #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
    pub team: Option<String>,
    /// An admin token: every case and the audit log.
    #[arg(long)]
    pub admin: bool,
}

/// Print a new token once, and the config entry that stores its hash.
pub fn token_new(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let (token, hash) = vroeg_api::auth::new_token().context("no random source")?;
    eprintln!(
        "token for {:?} (shown once; give it to its holder, do not store it):",
        args.name
    );
    println!("{token}");
    eprintln!("\nadd to the config:\n");
    eprintln!(
        "[[api.tokens]]\nname = {:?}\nsha256 = \"{hash}\"",
        args.name
    );
    match &args.team {
        Some(team) => eprintln!("team = {team:?}"),
        None => eprintln!("admin = true"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The read model directory (`api.read_model_dir`), where the case API
    /// keeps its audit log. The service must not be running.
    #[arg(long, default_value = "leesmodel")]
    pub read_model: std::path::PathBuf,
}

/// Print the audit log as JSON lines.
pub fn audit_export(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    anyhow::ensure!(
        args.read_model.join("conf").exists(),
        "{} is not a Vroeg read model directory (api.read_model_dir)",
        args.read_model.display()
    );
    let model = vroeg_readmodel::ReadModel::open(&args.read_model).with_context(|| {
        format!(
            "cannot open {} (is the service still running? then use GET /api/v1/audit)",
            args.read_model.display()
        )
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in model.audit_log() {
        serde_json::to_writer(&mut out, &entry?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(reden: CloseReason, attempts: &[bool]) -> CaseRecord {
        let mut r = CaseRecord::new("k-1", "k", 0);
        r.status = CaseStatus::Gesloten;
        r.reden = Some(reden);
        for &bereikt in attempts {
            r.contactpogingen
                .push(vroeg_core::archive::ArchivedAttempt {
                    soort: vroeg_core::feedback::Contactsoort::Brief,
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
}
