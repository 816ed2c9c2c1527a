//! Feedback from the wijkteams: contact attempts and the outcome of a case,
//! and the restricted status partners get back.
//!
//! Coordinators record feedback through the HTTP API or the Kafka topic
//! `vroeg.terugkoppeling`, as JSON:
//!
//! ```json
//! {"id": "fb-1", "zaak_id": "<household>-<episode>", "type": "contactpoging",
//!  "contactsoort": "Telefoon", "bereikt": false, "datum": "2026-11-20", "dagdeel": "Ochtend"}
//! {"id": "fb-2", "zaak_id": "<household>-<episode>", "type": "resultaat",
//!  "resultaat": "Vervolghulp en/of verwijzing financieel", "datum": "2026-11-21"}
//! ```
//!
//! The enums are DDAS's (`EnumContactsoort`, `EnumDagdeel`,
//! `EnumEindresultaat`). A contact attempt stops escalation; an outcome
//! closes the case and tells each partner of its signals one of four
//! statuses, never more.
//!
//! Two kinds only annotate the case record, for the wijkteam itself: a note
//! (`notitie`: `tekst` and `auteur`), on an open or a closed case, and an
//! assignment to a colleague (`toewijzing`: `medewerker`, or `null` to
//! unassign), on an open case. They carry no date (the engine records when
//! it applied them), never reach partners or the DDAS export, and change
//! nothing the rules see. Pure: no IO, no clock.

use crate::json::Json;
use crate::name::Name;
use serde::{Deserialize, Serialize};

use crate::case::{close, Alert, CloseReason};
use crate::household::HouseholdKey;
use crate::signal::{parse_json, DecodeContext, DecodeError, ErrorCode, Obj};
use crate::state::{HouseholdState, SignalRef, StateSettings};
use crate::time::{Day, Millis};

string_enum! {
    /// DDAS `EnumContactsoort`.
    Contactsoort {
        Mail => "Mail",
        Brief => "Brief",
        SmsWhatsapp => "SMS/Whatsapp",
        Telefoon => "Telefoon",
        Huisbezoek => "Huisbezoek",
        Kaartje => "Kaartje",
        Overige => "Overige",
        Administratief => "Administratief",
    }
}

string_enum! {
    /// DDAS `EnumDagdeel`.
    Dagdeel {
        Ochtend => "Ochtend",
        Middag => "Middag",
        Avond => "Avond",
    }
}

string_enum! {
    /// DDAS `EnumEindresultaat`: the outcome of a case.
    Eindresultaat {
        HerhaaldeMelding => "Niet opgepakt: herhaalde melding",
        OnterechtSignaal => "Niet opgepakt: onterecht signaal",
        Overleden => "Inwoner is overleden",
        GeenInwoner => "Persoon is geen inwoner (meer) in de gemeente",
        AndereReden => "Niet opgepakt: andere reden",
        AlBekend => "Inwoner al bekend bij schuldhulpverlening",
        AnderTraject => "Inwoner heeft al een ander lopend traject",
        GeenContact => "Definitief geen contact kunnen krijgen",
        GeenReactie => "Geen reactie na eerder contact",
        GeenHulpNodig => "Inwoner hoeft geen hulp vanuit vroegsignalering",
        ZelfBetaald => "Inwoner heeft zelf al betaald/betalingsregeling getroffen",
        Advies => "(Budget)advies en/of quick fix",
        VervolgFinancieel => "Vervolghulp en/of verwijzing financieel",
        VerwijzingZonderContact => "Verwijzing zonder contact",
        VervolgNietFinancieel => "Vervolghulp en/of verwijzing niet financieel",
    }
}

string_enum! {
    /// What a partner may hear back about its signal: nothing more.
    PartnerStatus {
        NietOpgepakt => "niet_opgepakt",
        AlBekend => "al_bekend_bij_schuldhulp",
        WilHulp => "wil_hulp",
        NietBereikt => "niet_bereikt",
    }
}

impl Eindresultaat {
    /// Whether this outcome says the resident was reached: help, advice,
    /// a referral, "needs no help" and "no reply after earlier contact"
    /// all presuppose a conversation. Such an outcome needs a contact
    /// attempt with `bereikt: true` first (docs/ddas.md, consistency
    /// rules).
    pub fn needs_contact(self) -> bool {
        use Eindresultaat::*;
        matches!(
            self,
            Advies | VervolgFinancieel | VervolgNietFinancieel | GeenHulpNodig | GeenReactie
        )
    }

    /// The restricted status partners get for this outcome. `None` where
    /// none of the four applies (the resident was reached but needs no
    /// help, or paid already): then partners hear nothing.
    pub fn partner_status(self) -> Option<PartnerStatus> {
        use Eindresultaat::*;
        match self {
            HerhaaldeMelding | OnterechtSignaal | Overleden | GeenInwoner | AndereReden => {
                Some(PartnerStatus::NietOpgepakt)
            }
            AlBekend | AnderTraject => Some(PartnerStatus::AlBekend),
            GeenContact | GeenReactie | VerwijzingZonderContact => Some(PartnerStatus::NietBereikt),
            Advies | VervolgFinancieel | VervolgNietFinancieel => Some(PartnerStatus::WilHulp),
            GeenHulpNodig | ZelfBetaald => None,
        }
    }
}

/// One recorded contact attempt (DDAS `Contactpoging`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactAttempt {
    pub soort: Contactsoort,
    pub bereikt: bool,
    pub datum: Day,
    pub dagdeel: Option<Dagdeel>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackKind {
    Contactpoging(ContactAttempt),
    Resultaat {
        resultaat: Eindresultaat,
        datum: Day,
    },
    /// A note for the team: never to partners, never in DDAS.
    Notitie {
        tekst: String,
        auteur: String,
    },
    /// The colleague who works the case; `None` unassigns it.
    Toewijzing {
        medewerker: Option<String>,
    },
    /// The recorded outcome was wrong: reopen the case (see [`reopen`]).
    Correctie {
        reden: String,
    },
}

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// The longest name of an author or a colleague, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest reason for a correction, in characters.
pub const MAX_REASON_CHARS: usize = 500;

impl FeedbackKind {
    /// The wire name of the kind (`type`).
    pub fn name(&self) -> &'static str {
        match self {
            FeedbackKind::Contactpoging(_) => "contactpoging",
            FeedbackKind::Resultaat { .. } => "resultaat",
            FeedbackKind::Notitie { .. } => "notitie",
            FeedbackKind::Toewijzing { .. } => "toewijzing",
            FeedbackKind::Correctie { .. } => "correctie",
        }
    }

    /// Whether this kind only annotates the case record (a note, an
    /// assignment) and leaves the household's state alone.
    pub fn annotates(&self) -> bool {
        matches!(
            self,
            FeedbackKind::Notitie { .. } | FeedbackKind::Toewijzing { .. }
        )
    }
}

/// When feedback dated `day` takes effect where it carries no moment of
/// its own (`vroeg replay --feedback`, `gen --feedback`, a rule test's
/// contact attempt on a day): noon (UTC) of that day.
pub fn effective_time(day: Day) -> crate::time::Millis {
    day.start_millis() + 12 * 3_600_000
}

/// A decoded feedback message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Unique per message: a re-send has no effect.
    pub id: String,
    pub zaak_id: String,
    pub kind: FeedbackKind,
}

impl Feedback {
    /// The date the feedback gives: of the attempt, or of the outcome.
    /// Notes and assignments carry none.
    pub fn datum(&self) -> Option<Day> {
        match &self.kind {
            FeedbackKind::Contactpoging(a) => Some(a.datum),
            FeedbackKind::Resultaat { datum, .. } => Some(*datum),
            FeedbackKind::Notitie { .. }
            | FeedbackKind::Toewijzing { .. }
            | FeedbackKind::Correctie { .. } => None,
        }
    }

    /// The household and episode the case id names.
    pub fn household(&self) -> Option<(HouseholdKey, u32)> {
        let (key, episode) = self.zaak_id.rsplit_once('-')?;
        let episode = episode.parse().ok()?;
        (key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| (HouseholdKey(Name::from(key)), episode))
    }
}

/// Decode a feedback message. Every problem is a [`DecodeError`] naming the
/// field; nothing panics.
pub fn decode_feedback(bytes: &[u8], ctx: &DecodeContext) -> Result<Feedback, DecodeError> {
    let value = parse_json(bytes, ctx)?;
    let Json::Object(map) = &value else {
        return Err(DecodeError::whole(
            ErrorCode::NotAnObject,
            "feedback must be a JSON object",
        ));
    };
    let obj = Obj {
        map,
        path: "feedback",
    };
    let id = obj.string("id")?.to_owned();
    let zaak_id = obj.string("zaak_id")?.to_owned();
    let datum = || -> Result<Day, DecodeError> {
        let datum = obj.date("datum")?;
        if datum > Day::of_millis(ctx.now + ctx.max_future) {
            return Err(DecodeError::new(
                ErrorCode::FutureDate,
                obj.field("datum"),
                "lies in the future",
            ));
        }
        Ok(datum)
    };
    let text = |name: &str, max: usize| -> Result<String, DecodeError> {
        let value = obj.string(name)?.trim();
        if value.is_empty() || value.chars().count() > max {
            return Err(DecodeError::new(
                ErrorCode::InvalidValue,
                obj.field(name),
                format!("must be 1 to {max} characters"),
            ));
        }
        Ok(value.to_owned())
    };
    let kind = match obj.string("type")? {
        "contactpoging" => {
            obj.deny_unknown(&[
                "id",
                "zaak_id",
                "type",
                "contactsoort",
                "bereikt",
                "datum",
                "dagdeel",
            ])?;
            let datum = datum()?;
            let soort = obj.string("contactsoort")?;
            let soort = Contactsoort::parse(soort).ok_or_else(|| {
                DecodeError::new(
                    ErrorCode::InvalidValue,
                    obj.field("contactsoort"),
                    format!(
                        "expected one of: {}",
                        names(Contactsoort::ALL.iter().map(|c| c.as_str()))
                    ),
                )
            })?;
            let dagdeel = match obj.opt_string("dagdeel")? {
                None => None,
                Some(d) => Some(Dagdeel::parse(d).ok_or_else(|| {
                    DecodeError::new(
                        ErrorCode::InvalidValue,
                        obj.field("dagdeel"),
                        "expected Ochtend, Middag or Avond",
                    )
                })?),
            };
            FeedbackKind::Contactpoging(ContactAttempt {
                soort,
                bereikt: obj.boolean("bereikt")?,
                datum,
                dagdeel,
            })
        }
        "resultaat" => {
            obj.deny_unknown(&["id", "zaak_id", "type", "resultaat", "datum"])?;
            let datum = datum()?;
            let r = obj.string("resultaat")?;
            let resultaat = Eindresultaat::parse(r).ok_or_else(|| {
                DecodeError::new(
                    ErrorCode::InvalidValue,
                    obj.field("resultaat"),
                    format!(
                        "expected one of: {}",
                        names(Eindresultaat::ALL.iter().map(|c| c.as_str()))
                    ),
                )
            })?;
            FeedbackKind::Resultaat { resultaat, datum }
        }
        "notitie" => {
            obj.deny_unknown(&["id", "zaak_id", "type", "tekst", "auteur"])?;
            FeedbackKind::Notitie {
                tekst: text("tekst", MAX_NOTE_CHARS)?,
                auteur: text("auteur", MAX_NAME_CHARS)?,
            }
        }
        "toewijzing" => {
            obj.deny_unknown(&["id", "zaak_id", "type", "medewerker"])?;
            let medewerker = match obj.map.get("medewerker") {
                None => {
                    return Err(DecodeError::new(
                        ErrorCode::MissingField,
                        obj.field("medewerker"),
                        "required: a colleague's name, or null to unassign",
                    ))
                }
                Some(Json::Null) => None,
                Some(_) => Some(text("medewerker", MAX_NAME_CHARS)?),
            };
            FeedbackKind::Toewijzing { medewerker }
        }
        "correctie" => {
            obj.deny_unknown(&["id", "zaak_id", "type", "reden"])?;
            FeedbackKind::Correctie {
                reden: text("reden", MAX_REASON_CHARS)?,
            }
        }
        _ => {
            return Err(DecodeError::new(
                ErrorCode::UnknownType,
                obj.field("type"),
                "expected contactpoging, resultaat, notitie, toewijzing or correctie",
            ))
        }
    };
    let feedback = Feedback { id, zaak_id, kind };
    if feedback.household().is_none() {
        return Err(DecodeError::new(
            ErrorCode::InvalidValue,
            obj.field("zaak_id"),
            "expected a case id: <household key>-<episode>",
        ));
    }
    Ok(feedback)
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Correct a recorded outcome: reopen the case, with the reason, so that
/// the team can record the right outcome (which closes it again, and is
/// what the DDAS export then shows). `record` is the case's record, `state`
/// its household's.
///
/// Only the household's latest case, closed with an outcome (`reden:
/// resultaat`), and only while no newer case is open, can be reopened;
/// anything else is refused with `not_correctable`. The reopened case
/// does not escalate again: the team handled it already.
pub fn reopen(
    state: &mut HouseholdState,
    record: &mut crate::archive::CaseRecord,
    reden: &str,
    now: Millis,
    settings: &StateSettings,
) -> Result<(), DecodeError> {
    use crate::archive::{CaseStatus, Correction};
    use crate::case::{CaseState, CloseReason};
    let refuse =
        |detail: &str| DecodeError::new(ErrorCode::NotCorrectable, "feedback.zaak_id", detail);
    if record.status != CaseStatus::Gesloten || record.reden != Some(CloseReason::Resultaat) {
        return Err(refuse(
            "only a case closed with an outcome (resultaat) can be corrected",
        ));
    }
    if state.case.is_some() || record.episode != state.episodes {
        return Err(refuse(
            "this household has a newer case; correct that one instead",
        ));
    }
    let seq = record
        .tijdlijn
        .iter()
        .filter_map(|t| {
            t.alert_id
                .as_deref()?
                .rsplit_once('-')?
                .1
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    state.case = Some(Box::new(CaseState {
        id: Name::from(record.id.as_str()),
        episode: record.episode,
        opened_at: record.geopend,
        prioriteit: record.prioriteit,
        rules: record
            .uitleg
            .regels
            .iter()
            .map(|r| (r.id.clone(), r.version))
            .collect(),
        categories: record
            .uitleg
            .regels
            .iter()
            .map(|r| (r.id.clone(), (r.categorie.clone(), r.prioriteit)))
            .collect(),
        seq,
        signals: record
            .signalen
            .iter()
            .map(|s| SignalRef {
                source: s.source.clone(),
                id: s.id.clone(),
            })
            .collect(),
        team: record.wijkteam.clone(),
        deadline: record.contact_deadline,
        contacted: true,
        next_escalation: now,
        escalations: record.escalaties,
        attempts: record
            .contactpogingen
            .iter()
            .map(|a| ContactAttempt {
                soort: a.soort,
                bereikt: a.bereikt,
                datum: a.datum,
                dagdeel: a.dagdeel,
            })
            .collect(),
        feedback_ids: record
            .terugkoppeling
            .iter()
            .filter(|t| t.status == crate::archive::FeedbackStatus::Verwerkt)
            .map(|t| t.id.clone())
            .collect(),
        werkbak: record.werkbak.clone(),
    }));
    state.contact = record.contact.clone().map(Box::new);
    state.timer_due = state.next_due(now, settings);
    let vorig = record.resultaat;
    record.correcties.push(Correction {
        tijd: now,
        reden: reden.to_owned(),
        vorig_resultaat: vorig,
    });
    record.status = CaseStatus::Open;
    record.gesloten = None;
    record.reden = None;
    record.resultaat = None;
    record.tijdlijn.push(crate::archive::TimelineEntry {
        tijd: now,
        gebeurtenis: "heropend".into(),
        alert_id: None,
        prioriteit: None,
        detail: vorig.map(|r| r.as_str().to_owned()),
    });
    Ok(())
}

/// The refusal of feedback for a case that does not exist here.
pub fn unknown_case(detail: &str) -> DecodeError {
    DecodeError::new(ErrorCode::UnknownCase, "feedback.zaak_id", detail)
}

/// What applying feedback did.
#[derive(Debug, Default, PartialEq)]
pub struct FeedbackOutcome {
    pub alerts: Vec<Alert>,
    /// The restricted status per signal, for the partners.
    pub partner: Vec<(SignalRef, PartnerStatus)>,
    /// The same feedback was applied before.
    pub duplicate: bool,
}

/// Apply feedback to the household's open case. Fails with
/// [`ErrorCode::UnknownCase`] when the case is not this household's open
/// case (closed, or never existed): such feedback goes to the dead-letter
/// topic, so nothing is dropped unseen.
pub fn apply_feedback(
    key: &HouseholdKey,
    state: &mut HouseholdState,
    feedback: &Feedback,
    ruleset: &Name,
    now: Millis,
    settings: &StateSettings,
) -> Result<FeedbackOutcome, DecodeError> {
    let unknown = || {
        DecodeError::new(
            ErrorCode::UnknownCase,
            "feedback.zaak_id",
            "not an open case (closed, or never opened)",
        )
    };
    let case = state
        .case
        .as_mut()
        .filter(|c| c.id == feedback.zaak_id)
        .ok_or_else(unknown)?;
    let mut outcome = FeedbackOutcome::default();
    if feedback.kind.annotates() {
        // Notes and assignments change the case record only
        // (`CaseRecord::annotate`), never the household.
        return Ok(outcome);
    }
    if case.feedback_ids.contains(&feedback.id) {
        outcome.duplicate = true;
        return Ok(outcome);
    }
    check_consistent(
        case.opened_at,
        case.attempts.iter().any(|a| a.bereikt),
        feedback,
    )?;
    case.feedback_ids.insert(feedback.id.clone());
    match &feedback.kind {
        FeedbackKind::Contactpoging(attempt) => {
            case.attempts.push(attempt.clone());
            case.contacted = true;
        }
        // Applied elsewhere: `CaseRecord::annotate` and `reopen`.
        FeedbackKind::Notitie { .. }
        | FeedbackKind::Toewijzing { .. }
        | FeedbackKind::Correctie { .. } => {}
        FeedbackKind::Resultaat { resultaat, .. } => {
            let signals = case.signals.clone();
            if let Some(mut closing) = close(key, state, CloseReason::Resultaat, ruleset, now) {
                closing.resultaat = Some(*resultaat);
                outcome.alerts.push(closing);
            }
            if let Some(status) = resultaat.partner_status() {
                outcome.partner = signals.into_iter().map(|s| (s, status)).collect();
            }
            // The signals up to now are handled: only a newer one opens a
            // new case.
            state.closed_through = Some(now);
        }
    }
    state.timer_due = state.next_due(now, settings);
    Ok(outcome)
}

/// The consistency rules of docs/ddas.md: nothing dated before the
/// (Europe/Amsterdam) day the case opened, so that `datum_opgepakt` never
/// lies before `matchingsdatum`; and an outcome that presupposes contact
/// only after a contact attempt that reached the resident.
///
/// `opened_at` is when the case opened, `reached` whether a recorded
/// attempt reached the resident. The engine applies these rules, and the
/// case API checks them before it accepts feedback.
pub fn check_consistent(
    opened_at: Millis,
    reached: bool,
    feedback: &Feedback,
) -> Result<(), DecodeError> {
    let opened = Day::local_of(opened_at);
    if feedback.datum().is_some_and(|d| d < opened) {
        return Err(DecodeError::new(
            ErrorCode::BeforeCase,
            "feedback.datum",
            format!("lies before {opened}, the day the case opened"),
        ));
    }
    if let FeedbackKind::Resultaat { resultaat, .. } = &feedback.kind {
        if resultaat.needs_contact() && !reached {
            return Err(DecodeError::new(
                ErrorCode::ContactRequired,
                "feedback.resultaat",
                format!(
                    "{:?} says the resident was reached; record a contact attempt with bereikt: true first",
                    resultaat.as_str()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
