//! The case archive: the durable record of every case, open or closed.
//!
//! A household's state forgets a case when it closes and forgets signals when
//! they age out of the lookback window. Wijkteams, the DDAS export and the
//! monitor indicators need more: a case's signals, contact attempts,
//! timeline, explanation and outcome, for as long as retention allows. A
//! [`CaseRecord`] keeps that. The engine brings it up to date with
//! [`CaseRecord::observe`] in the same commit as the household state, so the
//! archive never disagrees with the alerts that were sent.
//!
//! Personal data: a record holds the client details of its signals (for the
//! DDAS export) and the contact details of the case. It is never logged.
//!
//! Pure: no IO, no clock.

use serde::{Deserialize, Serialize};

use crate::case::{Alert, AlertKind, CaseState, CloseReason, RuleRef};
use crate::feedback::{Contactsoort, Dagdeel, Eindresultaat};
use crate::name::Name;
use crate::signal::{ArrearsStatus, PartnerType, Verzuimsoort};
use crate::state::{AbsenceRecord, ArrearsRecord, Client, Contact, HouseholdState};
use crate::time::{day_text, format_rfc3339, millis_text, opt_millis_text, Day, Millis};
use crate::vars::VarValue;

/// Everything kept about one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub id: String,
    /// The household's pseudonymous key.
    pub huishouden: String,
    pub episode: u32,
    pub wijkteam: Name,
    pub werkbak: Name,
    /// `open` or `gesloten`.
    pub status: CaseStatus,
    #[serde(with = "millis_text")]
    pub geopend: Millis,
    #[serde(with = "opt_millis_text", default)]
    pub gesloten: Option<Millis>,
    pub reden: Option<CloseReason>,
    pub resultaat: Option<Eindresultaat>,
    pub prioriteit: u8,
    pub categorie: Name,
    pub categorieen: Vec<Name>,
    /// When a first contact attempt is due.
    #[serde(with = "millis_text")]
    pub contact_deadline: Millis,
    pub escalaties: u32,
    /// Why the case exists: the rules of the latest `geopend` or
    /// `bijgewerkt` event, and the variable values they read.
    pub uitleg: Explanation,
    pub signalen: Vec<ArchivedSignal>,
    pub contactpogingen: Vec<ArchivedAttempt>,
    /// Every event of the case, oldest first.
    pub tijdlijn: Vec<TimelineEntry>,
    /// Contact details (name, address) from the case's latest event.
    pub contact: Option<Contact>,
    /// What became of each feedback message for this case, oldest first:
    /// applied, or refused with its reason. A client that got `202` for
    /// its feedback finds it here once the engine has decided.
    #[serde(default)]
    pub terugkoppeling: Vec<FeedbackTrace>,
    /// The team's notes, oldest first. Never sent to partners, never in
    /// the DDAS export.
    #[serde(default)]
    pub notities: Vec<Note>,
    /// The colleague who works the case, if it is assigned.
    #[serde(default)]
    pub medewerker: Option<String>,
    /// Every correction of a recorded outcome, oldest first: each reopened
    /// the case.
    #[serde(default)]
    pub correcties: Vec<Correction>,
}

/// A corrected outcome: when, why, and which outcome it withdrew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    #[serde(with = "millis_text")]
    pub tijd: Millis,
    pub reden: String,
    pub vorig_resultaat: Option<Eindresultaat>,
}

/// A note on a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    #[serde(with = "millis_text")]
    pub tijd: Millis,
    pub auteur: String,
    pub tekst: String,
}

/// What the engine did with one feedback message for a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackTrace {
    /// The feedback message's id.
    pub id: String,
    /// `contactpoging`, `resultaat`, `notitie` or `toewijzing`.
    #[serde(rename = "type")]
    pub soort: String,
    #[serde(with = "millis_text")]
    pub tijd: Millis,
    pub status: FeedbackStatus,
    /// The dead-letter error code, for refused feedback.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackStatus {
    /// Applied to the case.
    Verwerkt,
    /// Refused (and dead-lettered with the same reason).
    Geweigerd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    Open,
    Gesloten,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Gesloten => "gesloten",
        }
    }

    pub fn parse(s: &str) -> Option<CaseStatus> {
        match s {
            "open" => Some(CaseStatus::Open),
            "gesloten" => Some(CaseStatus::Gesloten),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub regels: Vec<RuleRef>,
    #[serde(serialize_with = "crate::sorted::as_map")]
    pub variabelen: litemap::LiteMap<crate::case::VarName, VarValue>,
    /// Content hash of the rule set the rules fired under.
    pub regelset: Name,
}

/// One signal of a case, as it was when the case last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSignal {
    pub source: Name,
    pub id: Name,
    #[serde(with = "millis_text")]
    pub tijd: Millis,
    #[serde(flatten)]
    pub detail: SignalDetail,
}

impl ArchivedSignal {
    pub fn of_arrears(r: &ArrearsRecord) -> ArchivedSignal {
        ArchivedSignal {
            source: r.source.clone(),
            id: r.id.clone(),
            tijd: r.time,
            detail: SignalDetail::Betalingsachterstand {
                partner: r.partner,
                status: r.status,
                bedrag_cent: r.bedrag_cent,
                ontstaansdatum: r.ontstaansdatum,
                signaaldatum: r.signaaldatum,
                crisis: r.crisis,
                eindelevering: r.eindelevering,
                client: r.client.clone(),
            },
        }
    }

    pub fn of_absence(r: &AbsenceRecord) -> ArchivedSignal {
        ArchivedSignal {
            source: r.source.clone(),
            id: r.id.clone(),
            tijd: r.time,
            detail: SignalDetail::Schoolverzuim {
                verzuimsoort: r.verzuimsoort,
                uren_4_weken: r.uren_4_weken,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "soort", rename_all = "lowercase")]
pub enum SignalDetail {
    Betalingsachterstand {
        partner: PartnerType,
        status: ArrearsStatus,
        bedrag_cent: u64,
        #[serde(with = "day_text")]
        ontstaansdatum: Day,
        #[serde(with = "day_text")]
        signaaldatum: Day,
        crisis: bool,
        eindelevering: bool,
        client: Client,
    },
    Schoolverzuim {
        verzuimsoort: Verzuimsoort,
        uren_4_weken: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedAttempt {
    pub soort: Contactsoort,
    pub bereikt: bool,
    #[serde(with = "day_text")]
    pub datum: Day,
    pub dagdeel: Option<Dagdeel>,
    /// When the engine recorded it.
    #[serde(with = "millis_text")]
    pub vastgelegd: Millis,
}

/// One event in a case's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    #[serde(with = "millis_text")]
    pub tijd: Millis,
    /// `geopend`, `bijgewerkt`, `escalatie`, `gesloten` or `contactpoging`.
    pub gebeurtenis: String,
    /// The alert event's id, for case events.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alert_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prioriteit: Option<u8>,
    /// The close reason, or the kind of contact attempt.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl CaseRecord {
    /// Whether this record has outlived its retention at `now`: closed, on
    /// a day at least `months` calendar months before today. An open case
    /// is never past retention.
    pub fn past_retention(&self, now: Millis, months: u32) -> bool {
        self.status == CaseStatus::Gesloten
            && self.gesloten.is_some_and(|closed| {
                crate::time::Day::of_millis(closed).plus_months(months)
                    <= crate::time::Day::of_millis(now)
            })
    }

    /// An empty, open record for case `id` of household `huishouden`.
    pub fn new(id: &str, huishouden: &str, now: Millis) -> CaseRecord {
        CaseRecord {
            id: id.to_owned(),
            huishouden: huishouden.to_owned(),
            episode: 0,
            wijkteam: Name::default(),
            werkbak: Name::default(),
            status: CaseStatus::Open,
            geopend: now,
            gesloten: None,
            reden: None,
            resultaat: None,
            prioriteit: 0,
            categorie: Name::default(),
            categorieen: Vec::new(),
            contact_deadline: now,
            escalaties: 0,
            uitleg: Explanation::default(),
            signalen: Vec::new(),
            contactpogingen: Vec::new(),
            tijdlijn: Vec::new(),
            contact: None,
            terugkoppeling: Vec::new(),
            notities: Vec::new(),
            medewerker: None,
            correcties: Vec::new(),
        }
    }

    /// Whether feedback `id` was applied to this case (a re-send of it has
    /// no effect).
    pub fn applied(&self, id: &str) -> bool {
        self.terugkoppeling
            .iter()
            .any(|t| t.id == id && t.status == FeedbackStatus::Verwerkt)
    }

    /// Apply a note or an assignment (the feedback kinds that only
    /// annotate the record), as of `now`. A note may go on an open or a
    /// closed case, an assignment only on an open one. `Ok(false)` when the
    /// same feedback id was applied before.
    pub fn annotate(
        &mut self,
        feedback: &crate::feedback::Feedback,
        now: Millis,
    ) -> Result<bool, crate::signal::DecodeError> {
        use crate::feedback::FeedbackKind;
        if self.applied(&feedback.id) {
            return Ok(false);
        }
        match &feedback.kind {
            FeedbackKind::Notitie { tekst, auteur } => {
                self.notities.push(Note {
                    tijd: now,
                    auteur: auteur.clone(),
                    tekst: tekst.clone(),
                });
                // The timeline says that a note was added, not what it says.
                self.timeline(now, "notitie", None);
            }
            FeedbackKind::Toewijzing { medewerker } => {
                if self.status != CaseStatus::Open {
                    return Err(crate::signal::DecodeError::new(
                        crate::signal::ErrorCode::UnknownCase,
                        "feedback.zaak_id",
                        "not an open case (closed, or never opened)",
                    ));
                }
                self.medewerker.clone_from(medewerker);
                let what = if medewerker.is_some() {
                    "toegewezen"
                } else {
                    "toewijzing_ingetrokken"
                };
                self.timeline(now, what, medewerker.clone());
            }
            FeedbackKind::Contactpoging(_)
            | FeedbackKind::Resultaat { .. }
            | FeedbackKind::Correctie { .. } => {}
        }
        Ok(true)
    }

    fn timeline(&mut self, now: Millis, gebeurtenis: &str, detail: Option<String>) {
        self.tijdlijn.push(TimelineEntry {
            tijd: now,
            gebeurtenis: gebeurtenis.to_owned(),
            alert_id: None,
            prioriteit: None,
            detail,
        });
    }

    /// Note what became of a feedback message for this case.
    pub fn trace_feedback(
        &mut self,
        feedback: &crate::feedback::Feedback,
        now: Millis,
        refused: Option<&crate::signal::DecodeError>,
    ) {
        self.terugkoppeling.push(FeedbackTrace {
            id: feedback.id.clone(),
            soort: feedback.kind.name().to_owned(),
            tijd: now,
            status: if refused.is_some() {
                FeedbackStatus::Geweigerd
            } else {
                FeedbackStatus::Verwerkt
            },
            code: refused.map(|e| e.code.as_str().to_owned()),
            detail: refused.map(|e| e.detail.clone()),
        });
    }

    /// Bring the record of case `id` up to date after one step of its
    /// household: `alerts` are the step's alert events (any case), `state`
    /// the household's state after the step. `record` is the stored record,
    /// if any. Returns the new record, or `None` when the step has nothing
    /// to do with case `id`.
    pub fn observe(
        record: Option<CaseRecord>,
        id: &str,
        huishouden: &str,
        alerts: &[Alert],
        state: &HouseholdState,
        now: Millis,
    ) -> Option<CaseRecord> {
        let case = state.case.as_ref().filter(|c| c.id == id);
        let mine: Vec<&Alert> = alerts.iter().filter(|a| a.zaak_id == id).collect();
        if case.is_none() && mine.is_empty() {
            return record;
        }
        let mut record = record.unwrap_or_else(|| CaseRecord::new(id, huishouden, now));
        for alert in mine {
            record.apply_alert(alert, now);
        }
        if let Some(case) = case {
            record.refresh(case, state, now);
        }
        Some(record)
    }

    fn apply_alert(&mut self, alert: &Alert, now: Millis) {
        if self
            .tijdlijn
            .iter()
            .any(|t| t.alert_id.as_ref() == Some(&alert.id))
        {
            return; // already recorded
        }
        self.episode = alert.episode;
        self.wijkteam.clone_from(&alert.wijkteam);
        self.werkbak.clone_from(&alert.werkbak);
        self.prioriteit = alert.prioriteit;
        if !alert.categorie.is_empty() {
            self.categorie.clone_from(&alert.categorie);
            self.categorieen.clone_from(&alert.categorieen);
        }
        match alert.kind {
            AlertKind::Geopend | AlertKind::Bijgewerkt => {
                self.uitleg = Explanation {
                    regels: alert.regels.clone(),
                    variabelen: alert.variabelen.clone(),
                    regelset: alert.regelset.clone(),
                };
                if alert.kind == AlertKind::Geopend {
                    self.geopend = now;
                }
                if alert.contact.is_some() {
                    self.contact.clone_from(&alert.contact);
                }
            }
            AlertKind::Escalatie => self.escalaties += 1,
            AlertKind::Gesloten => {
                self.status = CaseStatus::Gesloten;
                self.gesloten = Some(now);
                self.reden = alert.reden;
                self.resultaat = alert.resultaat;
                // The contact details stay with the record until retention
                // removes it: the DDAS export reports the client.
            }
        }
        let detail = alert
            .resultaat
            .map(|r| r.as_str().to_owned())
            .or_else(|| alert.reden.map(|r| r.as_str().to_owned()));
        self.tijdlijn.push(TimelineEntry {
            tijd: now,
            gebeurtenis: alert.kind.as_str().to_owned(),
            alert_id: Some(alert.id.clone()),
            prioriteit: Some(alert.prioriteit),
            detail,
        });
    }

    /// Copy what the open case knows: team, queue, deadline, attempts, and
    /// the details of its signals still in the household's window.
    fn refresh(&mut self, case: &CaseState, state: &HouseholdState, now: Millis) {
        self.episode = case.episode;
        self.wijkteam.clone_from(&case.team);
        self.werkbak.clone_from(&case.werkbak);
        self.prioriteit = case.prioriteit;
        self.contact_deadline = case.deadline;
        for attempt in case.attempts.iter().skip(self.contactpogingen.len()) {
            self.contactpogingen.push(ArchivedAttempt {
                soort: attempt.soort,
                bereikt: attempt.bereikt,
                datum: attempt.datum,
                dagdeel: attempt.dagdeel,
                vastgelegd: now,
            });
            self.tijdlijn.push(TimelineEntry {
                tijd: now,
                gebeurtenis: "contactpoging".into(),
                alert_id: None,
                prioriteit: None,
                detail: Some(attempt.soort.as_str().to_owned()),
            });
        }
        for signal in &case.signals {
            let archived = state
                .arrears
                .iter()
                .find(|r| r.source == signal.source && r.id == signal.id)
                .map(ArchivedSignal::of_arrears)
                .or_else(|| {
                    state
                        .absences
                        .iter()
                        .find(|r| r.source == signal.source && r.id == signal.id)
                        .map(ArchivedSignal::of_absence)
                });
            let Some(archived) = archived else { continue };
            match self
                .signalen
                .iter_mut()
                .find(|s| s.source == archived.source && s.id == archived.id)
            {
                Some(existing) => *existing = archived,
                None => self.signalen.push(archived),
            }
        }
    }

    /// The day the team first tried to reach the client, if it did.
    pub fn first_attempt(&self) -> Option<Day> {
        self.contactpogingen.iter().map(|a| a.datum).min()
    }

    /// Whether the contact deadline was met: `Some(true)` when the first
    /// attempt was on or before the deadline's day, `Some(false)` when it
    /// was later or is missing with the deadline past at `now`, `None`
    /// while it is not yet due.
    pub fn deadline_met(&self, now: Millis) -> Option<bool> {
        let deadline = crate::state::ContactPolicy::last_day(self.contact_deadline);
        match self.first_attempt() {
            Some(first) => Some(first <= deadline),
            None if now > self.contact_deadline => Some(false),
            None => None,
        }
    }

    /// RFC 3339 of when the case opened.
    pub fn opened_text(&self) -> String {
        format_rfc3339(self.geopend)
    }
}

/// One entry of the API's audit log: who did what to which case, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(with = "millis_text")]
    pub tijd: Millis,
    /// The token's name from the config (never the token itself).
    pub wie: String,
    /// The team the token belongs to, or `admin`.
    pub rol: String,
    /// What was done: `zaken_lijst`, `zaak_lezen`, `contactpoging`, `resultaat`.
    pub actie: String,
    /// The case, for actions on one case.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zaak_id: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
}
