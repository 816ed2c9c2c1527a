use serde_json::json;

use super::*;
use crate::case::{decide, AlertKind, Evaluation, FiredRule, Trigger};
use crate::signal::ArrearsStatus;
use crate::state::{ArrearsRecord, HouseholdState};
use crate::time::DAY_MS;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn ctx() -> DecodeContext {
    DecodeContext::at(Day::parse("2026-06-01").unwrap().start_millis())
}

fn decode(v: serde_json::Value) -> Result<Feedback, DecodeError> {
    decode_feedback(v.to_string().as_bytes(), &ctx())
}

fn record(id: &str, time: Millis) -> ArrearsRecord {
    ArrearsRecord {
        source: "urn:p".into(),
        id: id.into(),
        referentie: id.into(),
        partner: crate::signal::PartnerType::Zorg,
        status: ArrearsStatus::Open,
        bedrag_cent: 50_000,
        ontstaansdatum: Day::of_millis(time).plus_days(-40),
        signaaldatum: Day::of_millis(time),
        time,
        crisis: false,
        eindelevering: false,
        client: Default::default(),
    }
}

fn eval() -> Evaluation {
    Evaluation {
        fired: vec![FiredRule {
            id: "enkelvoudig".into(),
            version: 1,
            categorie: "enkelvoudig".into(),
            prioriteit: 3,
            labels: vec![],
            reads_school: false,
        }],
        ..Evaluation::default()
    }
}

/// The rule set's version in these tests.
fn v() -> Name {
    Name::from("v")
}

/// Decide with the one-rule evaluation above.
fn decide_now(
    key: &HouseholdKey,
    state: &mut HouseholdState,
    trigger: Trigger,
    now: Millis,
) -> Vec<Alert> {
    let settings = StateSettings::default();
    let (ruleset, team) = (v(), Name::from("team"));
    let d = crate::case::Decision {
        ruleset: &ruleset,
        team: &team,
        now,
        settings: &settings,
    };
    decide(key, state, Some(&eval()), trigger, &d)
}

/// A household with one open signal and an open case.
fn with_case(now: Millis) -> (HouseholdKey, HouseholdState, StateSettings) {
    let key = HouseholdKey(KEY.into());
    let settings = StateSettings::default();
    let mut state = HouseholdState {
        arrears: vec![record("s1", now)],
        ..HouseholdState::default()
    };
    let alerts = decide_now(&key, &mut state, Trigger::Signal(ArrearsStatus::Open), now);
    assert_eq!(alerts.len(), 1);
    (key, state, settings)
}

#[test]
fn decodes_both_kinds_and_names_every_problem() {
    let ok = decode(
        json!({"id": "f1", "zaak_id": format!("{KEY}-1"), "type": "contactpoging",
        "contactsoort": "Telefoon", "bereikt": false, "datum": "2026-05-20", "dagdeel": "Ochtend"}),
    )
    .unwrap();
    assert_eq!(ok.household(), Some((HouseholdKey(KEY.into()), 1)));
    let r = decode(
        json!({"id": "f2", "zaak_id": format!("{KEY}-1"), "type": "resultaat",
        "resultaat": "(Budget)advies en/of quick fix", "datum": "2026-05-21"}),
    )
    .unwrap();
    assert!(matches!(
        r.kind,
        FeedbackKind::Resultaat {
            resultaat: Eindresultaat::Advies,
            ..
        }
    ));
    let bad = |v, code, field: &str| {
        let e = decode(v).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (code, Some(field)), "{e}");
    };
    bad(
        json!({"id": "x", "zaak_id": "nope", "type": "resultaat", "resultaat": "Inwoner is overleden", "datum": "2026-05-21"}),
        ErrorCode::InvalidValue,
        "feedback.zaak_id",
    );
    bad(
        json!({"id": "x", "zaak_id": format!("{KEY}-1"), "type": "contactpoging", "contactsoort": "Fax", "bereikt": true, "datum": "2026-05-21"}),
        ErrorCode::InvalidValue,
        "feedback.contactsoort",
    );
    bad(
        json!({"id": "x", "zaak_id": format!("{KEY}-1"), "type": "resultaat", "resultaat": "klaar", "datum": "2026-05-21"}),
        ErrorCode::InvalidValue,
        "feedback.resultaat",
    );
    bad(
        json!({"id": "x", "zaak_id": format!("{KEY}-1"), "type": "resultaat", "resultaat": "Inwoner is overleden", "datum": "2099-01-01"}),
        ErrorCode::FutureDate,
        "feedback.datum",
    );
    bad(
        json!({"id": "x", "zaak_id": format!("{KEY}-1"), "type": "anders", "datum": "2026-05-21"}),
        ErrorCode::UnknownType,
        "feedback.type",
    );
    bad(
        json!({"id": "x", "zaak_id": format!("{KEY}-1"), "type": "resultaat", "resultaat": "Inwoner is overleden", "datum": "2026-05-21", "naam": "Jansen"}),
        ErrorCode::UnknownField,
        "feedback.naam",
    );
}

#[test]
fn a_contact_attempt_stops_escalation() {
    let now = Day::parse("2026-05-01").unwrap().start_millis();
    let (key, mut state, settings) = with_case(now);
    assert_eq!(
        state.next_due(now, &settings),
        Some(now + 14 * DAY_MS),
        "the contact deadline"
    );
    let fb = decode(
        json!({"id": "f1", "zaak_id": format!("{KEY}-1"), "type": "contactpoging",
        "contactsoort": "Huisbezoek", "bereikt": true, "datum": "2026-05-02"}),
    )
    .unwrap();
    let out = apply_feedback(&key, &mut state, &fb, &v(), now + DAY_MS, &settings).unwrap();
    assert!(out.alerts.is_empty() && !out.duplicate);
    let case = state.case.as_ref().unwrap();
    assert!(case.contacted);
    assert_eq!(case.attempts.len(), 1);
    assert_ne!(
        state.next_due(now + DAY_MS, &settings),
        Some(now + 14 * DAY_MS)
    );
    // The same message again: no effect.
    let again = apply_feedback(&key, &mut state, &fb, &v(), now + DAY_MS, &settings).unwrap();
    assert!(again.duplicate);
    assert_eq!(state.case.as_ref().unwrap().attempts.len(), 1);
}

#[test]
fn an_outcome_closes_the_case_and_tells_partners_only_the_status() {
    let now = Day::parse("2026-05-01").unwrap().start_millis();
    let (key, mut state, settings) = with_case(now);
    let fb = decode(
        json!({"id": "f2", "zaak_id": format!("{KEY}-1"), "type": "resultaat",
        "resultaat": "Inwoner al bekend bij schuldhulpverlening", "datum": "2026-05-03"}),
    )
    .unwrap();
    let out = apply_feedback(&key, &mut state, &fb, &v(), now + 2 * DAY_MS, &settings).unwrap();
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].kind, AlertKind::Gesloten);
    assert_eq!(out.alerts[0].reden, Some(CloseReason::Resultaat));
    assert_eq!(out.alerts[0].resultaat, Some(Eindresultaat::AlBekend));
    assert_eq!(
        out.alerts[0].signalen.len(),
        1,
        "the closing event lists the case's signals"
    );
    assert_eq!(
        out.partner,
        vec![(
            SignalRef {
                source: "urn:p".into(),
                id: "s1".into()
            },
            PartnerStatus::AlBekend
        )]
    );
    assert!(state.case.is_none() && state.contact.is_none());
    // Feedback on the closed case is refused.
    let late = decode(
        json!({"id": "f3", "zaak_id": format!("{KEY}-1"), "type": "contactpoging",
        "contactsoort": "Brief", "bereikt": false, "datum": "2026-05-04"}),
    )
    .unwrap();
    let err =
        apply_feedback(&key, &mut state, &late, &v(), now + 3 * DAY_MS, &settings).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownCase);
    // The handled signal does not reopen a case; a newer one does, as episode 2.
    let later = now + 5 * DAY_MS;
    let none = decide_now(&key, &mut state, Trigger::Timer, later);
    assert!(none.is_empty(), "{none:?}");
    state.arrears.push(record("s2", later));
    let reopened = decide_now(
        &key,
        &mut state,
        Trigger::Signal(ArrearsStatus::Open),
        later,
    );
    assert_eq!(reopened[0].kind, AlertKind::Geopend);
    assert_eq!(reopened[0].episode, 2);
}

#[test]
fn outcomes_that_fit_no_partner_status_tell_partners_nothing() {
    assert_eq!(Eindresultaat::GeenHulpNodig.partner_status(), None);
    assert_eq!(
        Eindresultaat::VervolgFinancieel.partner_status(),
        Some(PartnerStatus::WilHulp)
    );
    assert_eq!(
        Eindresultaat::GeenContact.partner_status(),
        Some(PartnerStatus::NietBereikt)
    );
    assert_eq!(Eindresultaat::ALL.len(), 15);
}

#[test]
fn the_case_record_follows_the_case_from_opening_to_outcome() {
    use crate::archive::{CaseRecord, CaseStatus, SignalDetail};
    let now = Day::parse("2026-05-10").unwrap().start_millis();
    let key = HouseholdKey(KEY.into());
    let settings = StateSettings::default();
    let mut state = HouseholdState {
        arrears: vec![record("s1", now)],
        ..HouseholdState::default()
    };
    let opened = decide_now(&key, &mut state, Trigger::Signal(ArrearsStatus::Open), now);
    let id = opened[0].zaak_id.clone();
    let rec = CaseRecord::observe(None, &id, KEY, &opened, &state, now).unwrap();
    assert_eq!(rec.status, CaseStatus::Open);
    assert_eq!(rec.wijkteam, "team");
    assert_eq!(rec.uitleg.regels[0].id, "enkelvoudig");
    assert_eq!(rec.signalen.len(), 1);
    assert!(matches!(
        rec.signalen[0].detail,
        SignalDetail::Betalingsachterstand {
            bedrag_cent: 50_000,
            ..
        }
    ));
    assert_eq!(rec.tijdlijn.len(), 1);
    // Observing the same alerts again changes nothing.
    let again = CaseRecord::observe(Some(rec.clone()), &id, KEY, &opened, &state, now).unwrap();
    assert_eq!(again, rec);
    // Another case id is left alone.
    assert_eq!(
        CaseRecord::observe(None, "other-1", KEY, &opened, &state, now),
        None
    );

    let attempt = Feedback {
        id: "f1".into(),
        zaak_id: id.as_str().into(),
        kind: FeedbackKind::Contactpoging(ContactAttempt {
            soort: Contactsoort::Huisbezoek,
            bereikt: true,
            datum: Day::of_millis(now + DAY_MS),
            dagdeel: Some(Dagdeel::Middag),
        }),
    };
    let later = now + DAY_MS;
    let out = apply_feedback(&key, &mut state, &attempt, &v(), later, &settings).unwrap();
    let rec = CaseRecord::observe(Some(rec), &id, KEY, &out.alerts, &state, later).unwrap();
    assert_eq!(rec.contactpogingen.len(), 1);
    assert_eq!(rec.first_attempt(), Some(Day::of_millis(later)));
    assert_eq!(rec.deadline_met(later), Some(true));
    assert_eq!(rec.tijdlijn.last().unwrap().gebeurtenis, "contactpoging");

    let result = Feedback {
        id: "f2".into(),
        zaak_id: id.as_str().into(),
        kind: FeedbackKind::Resultaat {
            resultaat: Eindresultaat::Advies,
            datum: Day::of_millis(later),
        },
    };
    let closing = later + DAY_MS;
    let out = apply_feedback(&key, &mut state, &result, &v(), closing, &settings).unwrap();
    assert!(state.case.is_none());
    let rec = CaseRecord::observe(Some(rec), &id, KEY, &out.alerts, &state, closing).unwrap();
    assert_eq!(rec.status, CaseStatus::Gesloten);
    assert_eq!(rec.gesloten, Some(closing));
    assert_eq!(rec.resultaat, Some(Eindresultaat::Advies));
    assert_eq!(
        rec.signalen.len(),
        1,
        "the signals stay with the closed case"
    );
    assert_eq!(rec.contactpogingen.len(), 1);
    assert_eq!(rec.tijdlijn.last().unwrap().gebeurtenis, "gesloten");
}

#[test]
fn feedback_dated_before_the_case_opened_is_refused() {
    // Opened at 00:30 UTC on 1 May: 02:30 on 1 May in Amsterdam.
    let now = Day::parse("2026-05-01").unwrap().start_millis() + 30 * 60_000;
    let (key, mut state, settings) = with_case(now);
    let attempt = |id: &str, datum: &str| {
        decode(
            json!({"id": id, "zaak_id": format!("{KEY}-1"), "type": "contactpoging",
            "contactsoort": "Telefoon", "bereikt": true, "datum": datum}),
        )
        .unwrap()
    };
    let err = apply_feedback(
        &key,
        &mut state,
        &attempt("a", "2026-04-30"),
        &v(),
        now,
        &settings,
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::BeforeCase);
    assert_eq!(err.field.as_deref(), Some("feedback.datum"));
    assert!(err.detail.contains("2026-05-01"), "{}", err.detail);
    assert!(state.case.as_ref().unwrap().attempts.is_empty());
    // The same id may come again with a correct date: a refusal is no use.
    apply_feedback(
        &key,
        &mut state,
        &attempt("a", "2026-05-01"),
        &v(),
        now,
        &settings,
    )
    .unwrap();
    assert_eq!(state.case.as_ref().unwrap().attempts.len(), 1);
}

#[test]
fn an_outcome_that_presupposes_contact_needs_a_reached_attempt() {
    let now = Day::parse("2026-05-01").unwrap().start_millis();
    let (key, mut state, settings) = with_case(now);
    let advies = decode(
        json!({"id": "r1", "zaak_id": format!("{KEY}-1"), "type": "resultaat",
        "resultaat": "(Budget)advies en/of quick fix", "datum": "2026-05-02"}),
    )
    .unwrap();
    let err = apply_feedback(&key, &mut state, &advies, &v(), now, &settings).unwrap_err();
    assert_eq!(err.code, ErrorCode::ContactRequired);
    assert!(state.case.is_some(), "the case stays open");
    // An attempt that did not reach the resident is not enough.
    let missed = decode(
        json!({"id": "a1", "zaak_id": format!("{KEY}-1"), "type": "contactpoging",
        "contactsoort": "Brief", "bereikt": false, "datum": "2026-05-01"}),
    )
    .unwrap();
    apply_feedback(&key, &mut state, &missed, &v(), now, &settings).unwrap();
    let err = apply_feedback(&key, &mut state, &advies, &v(), now, &settings).unwrap_err();
    assert_eq!(err.code, ErrorCode::ContactRequired);
    // "Definitief geen contact" needs none.
    assert!(!Eindresultaat::GeenContact.needs_contact());
    assert!(!Eindresultaat::VerwijzingZonderContact.needs_contact());
    let reached = decode(
        json!({"id": "a2", "zaak_id": format!("{KEY}-1"), "type": "contactpoging",
        "contactsoort": "Huisbezoek", "bereikt": true, "datum": "2026-05-02"}),
    )
    .unwrap();
    apply_feedback(&key, &mut state, &reached, &v(), now, &settings).unwrap();
    let out = apply_feedback(&key, &mut state, &advies, &v(), now, &settings).unwrap();
    assert_eq!(out.alerts[0].resultaat, Some(Eindresultaat::Advies));
}

#[test]
fn notes_and_assignments_decode_without_a_date_and_with_every_check() {
    let zaak = format!("{KEY}-1");
    let note = decode(json!({"id": "n1", "zaak_id": zaak, "type": "notitie", "tekst": " Gebeld met de buurvrouw. ", "auteur": "coordinator-noord"})).unwrap();
    assert_eq!(
        note.kind,
        FeedbackKind::Notitie {
            tekst: "Gebeld met de buurvrouw.".into(),
            auteur: "coordinator-noord".into()
        }
    );
    assert_eq!(note.datum(), None);
    assert!(note.kind.annotates());
    let assign =
        decode(json!({"id": "t1", "zaak_id": zaak, "type": "toewijzing", "medewerker": "Fatima"}))
            .unwrap();
    assert_eq!(
        assign.kind,
        FeedbackKind::Toewijzing {
            medewerker: Some("Fatima".into())
        }
    );
    let unassign =
        decode(json!({"id": "t2", "zaak_id": zaak, "type": "toewijzing", "medewerker": null}))
            .unwrap();
    assert_eq!(unassign.kind, FeedbackKind::Toewijzing { medewerker: None });
    // (message, error code, field)
    let bad = [
        (
            json!({"id": "n", "zaak_id": zaak, "type": "notitie", "tekst": "  ", "auteur": "a"}),
            ErrorCode::InvalidValue,
            "feedback.tekst",
        ),
        (
            json!({"id": "n", "zaak_id": zaak, "type": "notitie", "tekst": "x".repeat(MAX_NOTE_CHARS + 1), "auteur": "a"}),
            ErrorCode::InvalidValue,
            "feedback.tekst",
        ),
        (
            json!({"id": "n", "zaak_id": zaak, "type": "notitie", "tekst": "x"}),
            ErrorCode::MissingField,
            "feedback.auteur",
        ),
        (
            json!({"id": "n", "zaak_id": zaak, "type": "notitie", "tekst": "x", "auteur": "a", "datum": "2026-05-01"}),
            ErrorCode::UnknownField,
            "feedback.datum",
        ),
        (
            json!({"id": "t", "zaak_id": zaak, "type": "toewijzing"}),
            ErrorCode::MissingField,
            "feedback.medewerker",
        ),
        (
            json!({"id": "t", "zaak_id": zaak, "type": "toewijzing", "medewerker": ""}),
            ErrorCode::InvalidValue,
            "feedback.medewerker",
        ),
        // A contact attempt still needs its date.
        (
            json!({"id": "c", "zaak_id": zaak, "type": "contactpoging", "contactsoort": "Brief", "bereikt": false}),
            ErrorCode::MissingField,
            "feedback.datum",
        ),
    ];
    for (message, code, field) in bad {
        let e = decode(message.clone()).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (code, Some(field)),
            "{message}"
        );
    }
}

#[test]
fn a_note_goes_on_any_case_and_an_assignment_on_an_open_one_once() {
    use crate::archive::{CaseRecord, CaseStatus, FeedbackStatus};
    let zaak = format!("{KEY}-1");
    let mut record = CaseRecord::new(&zaak, KEY, 0);
    let assign =
        decode(json!({"id": "t1", "zaak_id": zaak, "type": "toewijzing", "medewerker": "Fatima"}))
            .unwrap();
    assert_eq!(record.annotate(&assign, 10), Ok(true));
    assert_eq!(record.annotate(&assign, 11), Ok(true), "not traced yet");
    record.trace_feedback(&assign, 11, None);
    assert_eq!(
        record.annotate(&assign, 12),
        Ok(false),
        "a re-send has no effect"
    );
    assert_eq!(record.medewerker.as_deref(), Some("Fatima"));
    record.status = CaseStatus::Gesloten;
    let note = decode(json!({"id": "n1", "zaak_id": zaak, "type": "notitie", "tekst": "Nagebeld.", "auteur": "coordinator"})).unwrap();
    assert_eq!(record.annotate(&note, 20), Ok(true));
    assert_eq!(record.notities.len(), 1);
    assert_eq!(record.notities[0].tijd, 20);
    let late =
        decode(json!({"id": "t3", "zaak_id": zaak, "type": "toewijzing", "medewerker": null}))
            .unwrap();
    let refused = record.annotate(&late, 30).unwrap_err();
    assert_eq!(refused.code, ErrorCode::UnknownCase);
    record.trace_feedback(&late, 30, Some(&refused));
    assert_eq!(
        record.terugkoppeling.last().unwrap().status,
        FeedbackStatus::Geweigerd
    );
    assert_eq!(record.medewerker.as_deref(), Some("Fatima"), "unchanged");
    // The timeline says a note was added, never what it says.
    let text = serde_json::to_string(&record.tijdlijn).unwrap();
    assert!(
        text.contains("notitie") && !text.contains("Nagebeld"),
        "{text}"
    );
}

#[test]
fn only_the_latest_case_closed_with_an_outcome_can_be_reopened() {
    use crate::archive::{CaseRecord, CaseStatus};
    use crate::case::CloseReason;
    let settings = StateSettings::default();
    let closed = |reden| {
        let mut r = CaseRecord::new(&format!("{KEY}-1"), KEY, 0);
        r.episode = 1;
        r.status = CaseStatus::Gesloten;
        r.reden = Some(reden);
        r.resultaat = Some(Eindresultaat::Advies);
        r
    };
    let household = || HouseholdState {
        episodes: 1,
        ..HouseholdState::default()
    };
    // Closed because the arrears were paid: no outcome to correct.
    let e = reopen(
        &mut household(),
        &mut closed(CloseReason::Betaald),
        "x",
        5,
        &settings,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotCorrectable);
    // A newer case exists.
    let mut newer = household();
    newer.episodes = 2;
    let e = reopen(
        &mut newer,
        &mut closed(CloseReason::Resultaat),
        "x",
        5,
        &settings,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotCorrectable);
    // The latest, closed with an outcome: reopened, and it does not escalate.
    let (mut state, mut record) = (household(), closed(CloseReason::Resultaat));
    reopen(&mut state, &mut record, "verkeerd", 5, &settings).unwrap();
    let case = state.case.as_ref().unwrap();
    assert_eq!(
        (case.id.as_str(), case.contacted),
        (record.id.as_str(), true)
    );
    assert_eq!((record.status, record.resultaat), (CaseStatus::Open, None));
    assert_eq!(
        record.correcties[0].vorig_resultaat,
        Some(Eindresultaat::Advies)
    );
    assert_eq!(record.tijdlijn.last().unwrap().gebeurtenis, "heropend");
    // Reopened once: a second correction finds it open.
    let e = reopen(&mut state, &mut record, "x", 6, &settings).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotCorrectable);
}
