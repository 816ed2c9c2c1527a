//! The case lifecycle: one open case per household, and the alert events
//! its transitions emit.
//!
//! [`decide`] takes a household's state after a signal or a timer, and the
//! rule [`Evaluation`] at that moment, and returns the alerts: `geopend` when
//! rules fire and no case is open, `bijgewerkt` when a new rule fires or the
//! priority rises, `gesloten` when nothing keeps the case open. Case and
//! alert ids are derived from the household key, the episode and a sequence
//! number, so reprocessing the same input yields the same ids.
//!
//! Pure: no IO, no clock.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use litemap::LiteMap;

use crate::household::HouseholdKey;
use crate::name::Name;
use crate::signal::ArrearsStatus;
use crate::sorted::SortedSet;
use crate::state::{Contact, HouseholdState, SignalRef, StateSettings};
use crate::time::{format_rfc3339, Millis};
use crate::vars::VarValue;

/// The work queue of a case no queue rule claims.
pub const DEFAULT_QUEUE: &str = "regulier";

/// A rule that fired, as the rule engine reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FiredRule {
    pub id: Name,
    pub version: u32,
    pub categorie: Name,
    pub prioriteit: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Whether the rule reads school-absence variables; if so the absence
    /// reports count as contributing signals.
    #[serde(skip)]
    pub reads_school: bool,
}

/// The outcome of evaluating a rule set for one household.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Signalling rules whose `when` held.
    pub fired: Vec<FiredRule>,
    /// Ids of suppression rules whose `when` held. Any one of them stops
    /// this evaluation from opening or updating a case.
    pub suppressed_by: Vec<Name>,
    /// The value of every variable the fired and suppressing rules read, in
    /// name order (names from the [`crate::vars::catalogue`]).
    pub variables: Vec<(&'static str, VarValue)>,
    /// The work queue a queue rule chose, if any.
    pub werkbak: Option<Name>,
}

/// The open case of a household.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseState {
    pub id: Name,
    pub episode: u32,
    pub opened_at: Millis,
    pub prioriteit: u8,
    /// Ids and versions of every rule that fired during this case. (Small
    /// sorted maps, encoded as a `BTreeMap` is: a million cases are held in
    /// memory, and a `BTreeMap` allocates eleven slots for its first entry.)
    #[serde(serialize_with = "crate::sorted::as_map")]
    pub rules: LiteMap<Name, u32>,
    /// Category per rule id, for the case's categories.
    #[serde(serialize_with = "crate::sorted::as_map")]
    pub categories: LiteMap<Name, (Name, u8)>,
    /// Sequence number of the last alert of this case.
    pub seq: u32,
    /// Every signal that contributed to this case.
    pub signals: SortedSet<SignalRef>,
    /// The wijkteam the case is routed to (fixed when it opens).
    pub team: Name,
    /// When a first contact attempt is overdue.
    pub deadline: Millis,
    /// Whether the team recorded a contact attempt.
    pub contacted: bool,
    /// When the next `escalatie` is due while no attempt is recorded.
    pub next_escalation: Millis,
    /// How many escalations were sent.
    pub escalations: u32,
    /// Contact attempts the team recorded.
    pub attempts: Vec<crate::feedback::ContactAttempt>,
    /// Ids of the feedback messages applied (a re-send has no effect).
    pub feedback_ids: BTreeSet<String>,
    /// The work queue (`werkbak`) the case is in.
    pub werkbak: Name,
}

impl CaseState {
    /// The category of the case's highest-priority rule (ties: rule id order).
    pub fn main_category(&self) -> Name {
        self.categories
            .values()
            .fold(None::<&(Name, u8)>, |best, c| match best {
                Some(b) if b.1 >= c.1 => Some(b),
                _ => Some(c),
            })
            .map(|c| c.0.clone())
            .unwrap_or_default()
    }

    pub fn category_set(&self) -> Vec<Name> {
        let mut set: Vec<&Name> = self.categories.values().map(|(c, _)| c).collect();
        set.sort_unstable();
        set.dedup();
        set.into_iter().cloned().collect()
    }
}

/// The kind of an alert event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Geopend,
    Bijgewerkt,
    Gesloten,
    /// The contact deadline passed without a recorded contact attempt.
    Escalatie,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Geopend => "geopend",
            AlertKind::Bijgewerkt => "bijgewerkt",
            AlertKind::Gesloten => "gesloten",
            AlertKind::Escalatie => "escalatie",
        }
    }
}

/// A rule as cited in an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub id: Name,
    pub version: u32,
    pub categorie: Name,
    pub prioriteit: u8,
}

/// Why a case closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseReason {
    /// The last open signal was paid.
    Betaald,
    /// The last open signal moved to a payment plan.
    Betalingsregeling,
    /// The partner withdrew the last open signal.
    Ingetrokken,
    /// The last open signals aged out of the lookback window.
    Verlopen,
    /// The team recorded the outcome (`resultaat`) of the case.
    Resultaat,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Betaald => "betaald",
            CloseReason::Betalingsregeling => "betalingsregeling",
            CloseReason::Ingetrokken => "ingetrokken",
            CloseReason::Verlopen => "verlopen",
            CloseReason::Resultaat => "resultaat",
        }
    }
}

/// A variable's name in a case event's explanation: the catalogue's own
/// name where the engine writes the event (no copy per event), an owned
/// one where an event is read back.
pub type VarName = std::borrow::Cow<'static, str>;

/// An alert event: one transition of a case. Documented in `docs/alerts.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `<case id>-<seq>`: deterministic, so re-sends can be recognised.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    /// `<household key>-<episode>`.
    pub zaak_id: Name,
    pub huishouden: Name,
    /// The wijkteam the case is routed to.
    pub wijkteam: Name,
    /// The work queue within the team.
    pub werkbak: Name,
    pub episode: u32,
    pub volgnummer: u32,
    /// When the transition happened (evaluation time), RFC 3339 UTC.
    pub tijd: String,
    pub prioriteit: u8,
    pub categorie: Name,
    pub categorieen: Vec<Name>,
    /// The rules that fired at this evaluation (empty for `gesloten`).
    pub regels: Vec<RuleRef>,
    /// The signals of the case so far.
    pub signalen: Vec<SignalRef>,
    /// The value of every variable the fired rules read: the explanation.
    /// (A map kept as a sorted vector: encoded as the map it is.)
    #[serde(serialize_with = "crate::sorted::as_map")]
    pub variabelen: LiteMap<VarName, VarValue>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reden: Option<CloseReason>,
    /// With `reden: resultaat`: the DDAS outcome the team recorded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resultaat: Option<crate::feedback::Eindresultaat>,
    /// Content hash of the rule set that was evaluated.
    pub regelset: Name,
    /// Contact details for outreach (`geopend` and `bijgewerkt` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub contact: Option<Contact>,
}

/// What caused an evaluation; it decides the reason when a case closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A signal with this status was applied.
    Signal(ArrearsStatus),
    /// An absence report was applied.
    Absence,
    /// A timer fired: something aged out.
    Timer,
}

/// What a case decision needs besides the household and the rules'
/// verdict: the rule set it is made under, the team a new case goes to,
/// the moment, and the settings.
#[derive(Clone, Copy)]
pub struct Decision<'a> {
    pub ruleset: &'a Name,
    pub team: &'a Name,
    pub now: Millis,
    pub settings: &'a StateSettings,
}

/// Apply a rule evaluation to a household's case and return the alerts.
///
/// `evaluation` is `None` exactly when the household has nothing open
/// ([`HouseholdState::has_open_items`] is false; rules need not run then):
/// an open case closes. `ruleset` is the content hash of the rule set;
/// `team` the wijkteam a case that opens now is routed to.
/// Updates `state.case` and `state.episodes`, and drops the contact details
/// when a case closes.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    key: &HouseholdKey,
    state: &mut HouseholdState,
    evaluation: Option<&Evaluation>,
    trigger: Trigger,
    d: &Decision<'_>,
) -> Vec<Alert> {
    let Decision {
        ruleset,
        team,
        now,
        settings,
    } = *d;
    let mut alerts = Vec::new();
    let Some(eval) = evaluation else {
        if state.case.is_some() {
            let reden = match trigger {
                Trigger::Signal(ArrearsStatus::Betaald) => CloseReason::Betaald,
                Trigger::Signal(ArrearsStatus::Betalingsregeling) => CloseReason::Betalingsregeling,
                Trigger::Signal(ArrearsStatus::Ingetrokken) => CloseReason::Ingetrokken,
                _ => CloseReason::Verlopen,
            };
            alerts.extend(close(key, state, reden, ruleset, now));
        }
        return alerts;
    };
    if eval.fired.is_empty() || !eval.suppressed_by.is_empty() {
        return alerts;
    }
    let top = eval.fired.iter().map(|r| r.prioriteit).max().unwrap_or(0);
    let crisis = eval.fired.iter().any(|r| r.categorie == "crisis");
    if state.case.is_none() && !state.has_new_signals(now, settings) {
        // Everything open was handled by the last case's recorded outcome.
        return alerts;
    }
    let reads_school = eval.fired.iter().any(|r| r.reads_school);
    // The contributing signals the case does not hold yet (copied only then).
    let held = state.case.as_ref().map(|c| &c.signals);
    let contributing: Vec<SignalRef> = state
        .open_arrears_iter(now, settings)
        .map(|r| (&r.source, &r.id))
        .chain(
            state
                .recent_absences(now)
                .filter(|_| reads_school)
                .map(|r| (&r.source, &r.id)),
        )
        .filter(|(source, id)| {
            !held.is_some_and(|held| {
                held.contains_by(|s| (s.source.as_str(), s.id.as_str()).cmp(&(source, id)))
            })
        })
        .map(|(source, id)| SignalRef {
            source: source.clone(),
            id: id.clone(),
        })
        .collect();
    let kind = match &mut state.case {
        None => {
            state.episodes += 1;
            let episode = state.episodes;
            let deadline = settings.contact.deadline(now, crisis);
            state.case = Some(Box::new(CaseState {
                id: Name::from(format!("{}-{}", key, episode)),
                episode,
                opened_at: now,
                prioriteit: top,
                // Exactly as many slots as rules fired (a first insert
                // would take four).
                rules: LiteMap::with_capacity(eval.fired.len()),
                categories: LiteMap::with_capacity(eval.fired.len()),
                seq: 0,
                signals: SortedSet::new(),
                team: team.clone(),
                deadline,
                contacted: false,
                next_escalation: deadline,
                escalations: 0,
                attempts: Vec::new(),
                feedback_ids: BTreeSet::new(),
                werkbak: Name::default(),
            }));
            AlertKind::Geopend
        }
        Some(case) => {
            let new_rule = eval
                .fired
                .iter()
                .any(|r| case.rules.get(&r.id) != Some(&r.version));
            if !new_rule && top <= case.prioriteit {
                // Nothing new for the team; still remember new signals.
                case.signals.extend(contributing);
                return alerts;
            }
            AlertKind::Bijgewerkt
        }
    };
    let case = state.case.as_mut().expect("case was just ensured");
    case.prioriteit = case.prioriteit.max(top);
    match &eval.werkbak {
        Some(werkbak) => case.werkbak.clone_from(werkbak),
        None if case.werkbak != DEFAULT_QUEUE => case.werkbak = Name::from(DEFAULT_QUEUE),
        None => {}
    }
    if crisis && !case.contacted {
        // A case that becomes a crisis gets the crisis deadline, if sooner.
        let due = settings.contact.deadline(now, true);
        case.deadline = case.deadline.min(due);
        case.next_escalation = case.next_escalation.min(due);
    }
    for r in &eval.fired {
        // A rule that fired before keeps its entries (and their buffers).
        match case.rules.get_mut(&r.id) {
            Some(version) => *version = r.version,
            None => {
                case.rules.insert(r.id.clone(), r.version);
            }
        }
        match case.categories.get_mut(&r.id) {
            Some((categorie, prioriteit)) => {
                categorie.clone_from(&r.categorie);
                *prioriteit = r.prioriteit;
            }
            None => {
                case.categories
                    .insert(r.id.clone(), (r.categorie.clone(), r.prioriteit));
            }
        }
    }
    case.signals.extend(contributing);
    case.seq += 1;
    let regels = eval
        .fired
        .iter()
        .map(|r| RuleRef {
            id: r.id.clone(),
            version: r.version,
            categorie: r.categorie.clone(),
            prioriteit: r.prioriteit,
        })
        .collect();
    let mut event = alert(key, case, kind, now, ruleset);
    event.regels = regels;
    event.variabelen = eval
        .variables
        .iter()
        .map(|(name, value)| (VarName::Borrowed(name), *value))
        .collect();
    // The contact details for the team's outreach, where they may be kept
    // (`StateSettings::personal_data`).
    if settings.personal_data {
        event.contact = state.contact.as_deref().cloned();
    }
    alerts.push(event);
    alerts
}

/// The case event of `case`'s transition `kind` at `now`, under the rule
/// set `regelset`: without rules, values, reason or contact details, which
/// the caller adds where the transition has them.
pub(crate) fn alert(
    key: &HouseholdKey,
    case: &CaseState,
    kind: AlertKind,
    now: Millis,
    regelset: &Name,
) -> Alert {
    Alert {
        id: numbered(&case.id, case.seq),
        kind,
        zaak_id: case.id.clone(),
        huishouden: key.0.clone(),
        wijkteam: case.team.clone(),
        werkbak: case.werkbak.clone(),
        episode: case.episode,
        volgnummer: case.seq,
        tijd: format_rfc3339(now),
        prioriteit: case.prioriteit,
        categorie: case.main_category(),
        categorieen: case.category_set(),
        regels: Vec::new(),
        signalen: case.signals.iter().cloned().collect(),
        variabelen: LiteMap::new(),
        reden: None,
        resultaat: None,
        regelset: regelset.clone(),
        contact: None,
    }
}

/// `{base}-{n}`: the id of a case's `n`th event.
fn numbered(base: &str, n: u32) -> String {
    let mut digits = itoa::Buffer::new();
    let n = digits.format(n);
    let mut id = String::with_capacity(base.len() + 1 + n.len());
    id.push_str(base);
    id.push('-');
    id.push_str(n);
    id
}

/// Close the open case: emit `gesloten` with `reden`, and drop the contact
/// details, which only a case needs. `None` when no case is open.
pub fn close(
    key: &HouseholdKey,
    state: &mut HouseholdState,
    reden: CloseReason,
    ruleset: &Name,
    now: Millis,
) -> Option<Alert> {
    let mut case = state.case.take()?;
    state.contact = None;
    case.seq += 1;
    let mut event = alert(key, &case, AlertKind::Gesloten, now, ruleset);
    event.reden = Some(reden);
    Some(event)
}

/// The contact deadline of the open case has passed without a recorded
/// contact attempt: raise its priority, emit `escalatie`, and schedule the
/// next one after the repeat interval. `None` when nothing is due. The event
/// carries the contact details where they may be kept
/// (`StateSettings::personal_data`).
pub fn escalate(
    key: &HouseholdKey,
    state: &mut HouseholdState,
    ruleset: &Name,
    now: Millis,
    settings: &StateSettings,
) -> Option<Alert> {
    let case = state.case.as_mut()?;
    if !settings.contact.escalate || case.contacted || now < case.next_escalation {
        return None;
    }
    case.escalations += 1;
    case.prioriteit = (case.prioriteit + 1).min(9);
    case.seq += 1;
    let repeat = settings.contact.repeat_days.max(1) as Millis * crate::time::DAY_MS;
    while case.next_escalation <= now {
        case.next_escalation += repeat;
    }
    let mut event = alert(key, case, AlertKind::Escalatie, now, ruleset);
    if settings.personal_data {
        event.contact = state.contact.as_deref().cloned();
    }
    Some(event)
}
