//! Per-household state and the pure transitions that change it.
//!
//! A household keeps the arrears signals of its lookback window (the latest
//! per source and referentie is the one that counts), recent school-absence
//! reports, its case, and the contact details outreach needs. Applying a
//! signal is idempotent: a second copy of the same (`source`, `id`) is a
//! [`ApplyOutcome::Duplicate`] and changes nothing. The order signals arrive
//! in does not decide which one is "latest": records are ordered by
//! (`signaaldatum`, `time`, `source`, `id`).
//!
//! Nothing here reads a clock or does IO; `now` is always an argument.

use serde::{Deserialize, Serialize};

use crate::case::CaseState;
use crate::name::Name;
use crate::signal::{ArrearsStatus, PartnerType, Signal, SignalBody, Verzuimsoort};
use crate::time::{Day, Millis};

/// The longest window any absence variable looks at, in days.
pub const ABSENCE_WINDOW_DAYS: i32 = 90;
/// At most this many arrears records are kept per household; beyond it the
/// oldest closed ones go first. Bounds the state a flood of signals can build.
pub const MAX_ARREARS_RECORDS: usize = 256;
/// At most this many absence reports are kept per household.
pub const MAX_ABSENCE_RECORDS: usize = 64;

/// Rule-set settings that shape state and variables.
#[derive(Clone, Debug, PartialEq)]
pub struct StateSettings {
    /// How far back signals count, in calendar months (default 6).
    pub lookback_months: u32,
    /// Open arrears below this amount do not count towards the case
    /// variables (default 7 500 cent, €75).
    pub minimum_cent: u64,
    /// Whether school-absence signals may be combined with debt signals (the
    /// AVG purpose binding). Off by default.
    pub school_purpose: bool,
    /// When a first contact attempt is due, and how escalation repeats.
    pub contact: ContactPolicy,
    /// Keep the names, addresses, phone numbers, e-mail addresses and BSNs
    /// of signals in the state, and give the case events of a case that
    /// opens, changes or escalates the contact details. Off where nobody may
    /// see them (a what-if without personal data): the state then holds of
    /// a person only what decisions read, the birth date (age) and the
    /// postcode (routing), and case events carry no contact details.
    pub personal_data: bool,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            lookback_months: 6,
            minimum_cent: 7_500,
            school_purpose: false,
            contact: ContactPolicy::default(),
            personal_data: true,
        }
    }
}

/// The contact deadline of a case (the Amsterdam norm: a contact attempt
/// within 14 days; crisis: within 3 working days) and its escalation.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactPolicy {
    /// Calendar days to the first contact attempt (default 14).
    pub deadline_days: u32,
    /// Working days to the first contact attempt for a crisis case (default
    /// 3): weekends and `holidays` do not count.
    pub crisis_working_days: u32,
    /// After the deadline passes without an attempt, the team is told again
    /// every this many days (default 7), like Alertmanager's `repeat_interval`.
    pub repeat_days: u32,
    /// Public holidays, which are not working days.
    pub holidays: std::collections::BTreeSet<Day>,
    /// Whether overdue cases escalate. Off only for replays of history
    /// whose contact attempts are not part of the input.
    pub escalate: bool,
}

impl Default for ContactPolicy {
    fn default() -> Self {
        ContactPolicy {
            escalate: true,
            deadline_days: 14,
            crisis_working_days: 3,
            repeat_days: 7,
            holidays: Default::default(),
        }
    }
}

impl ContactPolicy {
    /// Whether `day` is a working day: Monday to Friday, not a holiday.
    pub fn is_working_day(&self, day: Day) -> bool {
        day.weekday() < 5 && !self.holidays.contains(&day)
    }

    /// The moment a first contact attempt for a case opened at `opened` is
    /// overdue: `deadline_days` calendar days later at the same local time,
    /// or for a crisis case at the end of the `crisis_working_days`-th
    /// working day after the opening day. Days are Europe/Amsterdam days,
    /// daylight saving included: a case opened at 00:47 Dutch time opened
    /// on that day, not on the UTC day before.
    pub fn deadline(&self, opened: Millis, crisis: bool) -> Millis {
        if !crisis {
            return crate::time::plus_local_days(opened, self.deadline_days as i32);
        }
        let mut day = Day::local_of(opened);
        let mut counted = 0;
        while counted < self.crisis_working_days {
            day = day.plus_days(1);
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        day.plus_days(1).local_start()
    }

    /// The last (Europe/Amsterdam) day on which a first contact attempt
    /// meets `deadline`.
    pub fn last_day(deadline: Millis) -> Day {
        Day::local_of(deadline - 1)
    }
}

impl StateSettings {
    /// The first day inside the lookback window at `now`.
    pub fn window_start(&self, now: Millis) -> Day {
        Day::of_millis(now).minus_months(self.lookback_months)
    }

    /// The first day on which a signal dated `signaaldatum` has left the window.
    pub fn ages_out_on(&self, signaaldatum: Day) -> Day {
        let mut day = signaaldatum.plus_months(self.lookback_months).plus_days(1);
        while day.minus_months(self.lookback_months) <= signaaldatum {
            day = day.plus_days(1);
        }
        day
    }
}

/// One arrears signal as the household remembers it. Its only personal
/// data is [`Client`], which the DDAS export needs; it is never logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrearsRecord {
    pub source: Name,
    pub id: Name,
    pub referentie: String,
    pub partner: PartnerType,
    pub status: ArrearsStatus,
    pub bedrag_cent: u64,
    pub ontstaansdatum: Day,
    pub signaaldatum: Day,
    pub time: Millis,
    pub crisis: bool,
    pub eindelevering: bool,
    /// The person the signal is about.
    pub client: Client,
}

/// The person an arrears signal is about, as DDAS reports it (the address
/// is the household's). Personal data: kept with the signal, never logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub bsn: Option<String>,
    pub voorletters: String,
    pub voorvoegsel: Option<String>,
    pub achternaam: String,
    pub geboortedatum: Day,
}

impl ArrearsRecord {
    fn order_key(&self) -> (Day, Millis, &str, &str) {
        (self.signaaldatum, self.time, &self.source, &self.id)
    }
}

/// One school-absence report. No personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsenceRecord {
    pub source: Name,
    pub id: Name,
    pub time: Millis,
    pub verzuimsoort: Verzuimsoort,
    pub uren_4_weken: u32,
}

/// The contact details outreach needs, taken from the latest payment signal.
/// Personal data: kept only while the household has open signals or a case,
/// and never logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub voorletters: String,
    pub voorvoegsel: Option<String>,
    pub achternaam: String,
    pub geboortedatum: Day,
    pub straatnaam: String,
    pub postcode: String,
    pub huisnummer: u32,
    pub huisnummertoevoeging: Option<String>,
    pub plaatsnaam: String,
    pub telefoon: Option<String>,
    pub email: Option<String>,
}

/// A reference to one signal: its CloudEvents `source` and `id`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SignalRef {
    pub source: Name,
    pub id: Name,
}

/// Everything Vroeg keeps about one household.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HouseholdState {
    /// Arrears signals in the lookback window, ordered by
    /// (`signaaldatum`, `time`, `source`, `id`).
    pub arrears: Vec<ArrearsRecord>,
    /// Absence reports of the last [`ABSENCE_WINDOW_DAYS`], ordered by time.
    pub absences: Vec<AbsenceRecord>,
    /// The open case, if any. Boxed, like the contact details: most
    /// households have neither, and a million of them are held in memory.
    pub case: Option<Box<CaseState>>,
    /// How many cases this household has had; the next one is `episodes + 1`.
    pub episodes: u32,
    pub contact: Option<Box<Contact>>,
    /// The due time of this household's registered timer, if any. The store
    /// keeps a time index entry for exactly this value.
    pub timer_due: Option<Millis>,
    /// When the team recorded the outcome of the last case: signals up to
    /// then are handled, and only a newer one opens a new case.
    pub closed_through: Option<Millis>,
}

/// Insert `item` at `pos`, growing a short list by one slot at a time.
///
/// A household holds one to a few records of some 200 bytes, and a million
/// households are held in memory; `Vec`'s first growth takes four slots.
pub(crate) fn insert_compact<T>(list: &mut Vec<T>, pos: usize, item: T) {
    const SHORT: usize = 4;
    if list.len() == list.capacity() && list.len() < SHORT {
        list.reserve_exact(1);
    }
    list.insert(pos, item);
}

/// What applying a signal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The signal changed the state.
    Applied,
    /// A signal with this (`source`, `id`) was applied before: no change.
    Duplicate,
    /// A school-absence signal while the school purpose is off: not stored.
    PurposeDisabled,
    /// The signal is older than the lookback window: it cannot count.
    OutsideWindow,
}

impl HouseholdState {
    /// Whether this (`source`, `id`) is already part of the state.
    pub fn contains(&self, source: &str, id: &str) -> bool {
        self.arrears
            .iter()
            .any(|r| r.id == id && r.source == source)
            || self
                .absences
                .iter()
                .any(|r| r.id == id && r.source == source)
    }

    /// Apply one decoded signal. Idempotent: applying the same signal again
    /// returns [`ApplyOutcome::Duplicate`] and leaves the state as it is.
    pub fn apply(
        &mut self,
        signal: &Signal,
        now: Millis,
        settings: &StateSettings,
    ) -> ApplyOutcome {
        if self.contains(&signal.source, &signal.id) {
            return ApplyOutcome::Duplicate;
        }
        match &signal.body {
            SignalBody::Arrears(a) => {
                if a.signaaldatum < settings.window_start(now) {
                    return ApplyOutcome::OutsideWindow;
                }
                let record = ArrearsRecord {
                    source: signal.source.clone(),
                    id: signal.id.clone(),
                    referentie: a.referentie.clone(),
                    partner: a.partner,
                    status: a.status,
                    bedrag_cent: a.bedrag_cent,
                    ontstaansdatum: a.ontstaansdatum,
                    signaaldatum: a.signaaldatum,
                    time: signal.time,
                    crisis: a.crisissignaal,
                    eindelevering: a.eindelevering,
                    client: if settings.personal_data {
                        Client {
                            bsn: a.client.bsn.clone(),
                            voorletters: a.client.voorletters.clone(),
                            voorvoegsel: a.client.voorvoegsel.clone(),
                            achternaam: a.client.achternaam.clone(),
                            geboortedatum: a.client.geboortedatum,
                        }
                    } else {
                        Client {
                            geboortedatum: a.client.geboortedatum,
                            ..Client::default()
                        }
                    },
                };
                let pos = self
                    .arrears
                    .partition_point(|r| r.order_key() < record.order_key());
                let newest = pos == self.arrears.len();
                insert_compact(&mut self.arrears, pos, record);
                // The contact details follow the newest payment signal
                // (written over the old ones, reusing their buffers).
                if (newest || self.contact.is_none()) && !settings.personal_data {
                    let to = self.contact.get_or_insert_with(Default::default);
                    to.geboortedatum = a.client.geboortedatum;
                    to.postcode.clone_from(&a.client.address.postcode);
                } else if newest || self.contact.is_none() {
                    let c = &a.client;
                    let to = self.contact.get_or_insert_with(Default::default);
                    to.voorletters.clone_from(&c.voorletters);
                    to.voorvoegsel.clone_from(&c.voorvoegsel);
                    to.achternaam.clone_from(&c.achternaam);
                    to.geboortedatum = c.geboortedatum;
                    to.straatnaam.clone_from(&c.address.straatnaam);
                    to.postcode.clone_from(&c.address.postcode);
                    to.huisnummer = c.address.huisnummer;
                    to.huisnummertoevoeging
                        .clone_from(&c.address.huisnummertoevoeging);
                    to.plaatsnaam.clone_from(&c.address.plaatsnaam);
                    to.telefoon.clone_from(&c.telefoon);
                    to.email.clone_from(&c.email);
                }
                self.enforce_caps();
                ApplyOutcome::Applied
            }
            SignalBody::Absence(a) => {
                if !settings.school_purpose {
                    return ApplyOutcome::PurposeDisabled;
                }
                if Day::of_millis(signal.time) < Day::of_millis(now).plus_days(-ABSENCE_WINDOW_DAYS)
                {
                    return ApplyOutcome::OutsideWindow;
                }
                let record = AbsenceRecord {
                    source: signal.source.clone(),
                    id: signal.id.clone(),
                    time: signal.time,
                    verzuimsoort: a.verzuimsoort,
                    uren_4_weken: a.uren_4_weken,
                };
                let key = (record.time, record.source.as_str(), record.id.as_str());
                let pos = self
                    .absences
                    .partition_point(|r| (r.time, r.source.as_str(), r.id.as_str()) < key);
                insert_compact(&mut self.absences, pos, record);
                if self.absences.len() > MAX_ABSENCE_RECORDS {
                    self.absences.remove(0);
                }
                ApplyOutcome::Applied
            }
        }
    }

    fn enforce_caps(&mut self) {
        while self.arrears.len() > MAX_ARREARS_RECORDS {
            // Drop the oldest record that is not the current one of its
            // (source, referentie); if all are current, the oldest.
            let victim = (0..self.arrears.len())
                .find(|i| !self.is_latest(*i))
                .unwrap_or(0);
            self.arrears.remove(victim);
        }
    }

    /// Whether record `i` is the latest of its (`source`, `referentie`):
    /// no later record in the ordered history has the same pair. Households
    /// hold a handful of records, so a scan beats building a map.
    fn is_latest(&self, i: usize) -> bool {
        let r = &self.arrears[i];
        !self.arrears[i + 1..]
            .iter()
            .any(|o| o.source == r.source && o.referentie == r.referentie)
    }

    /// The current record of each (`source`, `referentie`) that is open and
    /// inside the window at `now`: the household's open arrears, in
    /// history order.
    pub fn open_arrears(&self, now: Millis, settings: &StateSettings) -> Vec<&ArrearsRecord> {
        self.open_arrears_iter(now, settings).collect()
    }

    /// [`HouseholdState::open_arrears`], without collecting them.
    pub fn open_arrears_iter(
        &self,
        now: Millis,
        settings: &StateSettings,
    ) -> impl Iterator<Item = &ArrearsRecord> {
        let start = settings.window_start(now);
        self.arrears
            .iter()
            .enumerate()
            .filter(move |(i, r)| {
                r.status == ArrearsStatus::Open && r.signaaldatum >= start && self.is_latest(*i)
            })
            .map(|(_, r)| r)
    }

    /// Absence reports inside the absence window at `now`.
    pub fn recent_absences(&self, now: Millis) -> impl Iterator<Item = &AbsenceRecord> {
        let start = Day::of_millis(now).plus_days(-ABSENCE_WINDOW_DAYS);
        self.absences
            .iter()
            .filter(move |r| Day::of_millis(r.time) >= start)
    }

    /// Whether a signal arrived after the last recorded outcome, so that a
    /// new case may open.
    pub fn has_new_signals(&self, now: Millis, settings: &StateSettings) -> bool {
        let Some(through) = self.closed_through else {
            return true;
        };
        self.open_arrears_iter(now, settings)
            .any(|r| r.time > through)
            || (settings.school_purpose && self.recent_absences(now).any(|r| r.time > through))
    }

    /// Whether anything can still keep a case open: open arrears, or (with
    /// the school purpose on) recent absence reports.
    pub fn has_open_items(&self, now: Millis, settings: &StateSettings) -> bool {
        self.open_arrears_iter(now, settings).next().is_some()
            || (settings.school_purpose && self.recent_absences(now).next().is_some())
    }

    /// Drop what has left the windows at `now`. Contact details are dropped
    /// once nothing is open and no case needs them.
    pub fn expire(&mut self, now: Millis, settings: &StateSettings) {
        let start = settings.window_start(now);
        self.arrears.retain(|r| r.signaaldatum >= start);
        let absence_start = Day::of_millis(now).plus_days(-ABSENCE_WINDOW_DAYS);
        self.absences
            .retain(|r| Day::of_millis(r.time) >= absence_start);
        if self.case.is_none() && !self.has_open_items(now, settings) {
            self.contact = None;
        }
    }

    /// When this household next needs attention without a new signal: the
    /// first moment an open signal ages out or an absence report leaves its
    /// window. `None` when nothing is pending.
    pub fn next_due(&self, now: Millis, settings: &StateSettings) -> Option<Millis> {
        let arrears = self
            .open_arrears_iter(now, settings)
            .map(|r| settings.ages_out_on(r.signaaldatum).start_millis());
        let absences = self.recent_absences(now).map(|r| {
            Day::of_millis(r.time)
                .plus_days(ABSENCE_WINDOW_DAYS + 1)
                .start_millis()
        });
        let escalation = self
            .case
            .as_ref()
            .filter(|c| !c.contacted && settings.contact.escalate)
            .map(|c| c.next_escalation);
        arrears
            .chain(absences)
            .chain(escalation)
            .filter(|due| *due > now)
            .min()
    }

    /// Whether the household holds nothing but its case counter: no
    /// signals, no absence reports, no case. Once its case records are
    /// past retention too, the retention purge deletes it.
    pub fn holds_nothing(&self) -> bool {
        self.arrears.is_empty() && self.absences.is_empty() && self.case.is_none()
    }

    /// Whether nothing is left worth keeping: no records, no case, and no
    /// case ever opened. The store deletes such a household. A household
    /// that had a case is kept, so that its `episodes` counter, and with it
    /// every case id, stays unique.
    pub fn is_empty(&self) -> bool {
        self.arrears.is_empty()
            && self.absences.is_empty()
            && self.case.is_none()
            && self.episodes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{format_rfc3339, parse_rfc3339};

    fn deadline(policy: &ContactPolicy, opened: &str, crisis: bool) -> String {
        format_rfc3339(policy.deadline(parse_rfc3339(opened).unwrap(), crisis))
    }

    #[test]
    fn a_crisis_case_opened_just_after_midnight_counts_from_that_dutch_day() {
        let policy = ContactPolicy::default();
        // Thursday 26 November, 00:47 in Amsterdam (Wednesday in UTC).
        // Working days after it: Friday 27, Monday 30, Tuesday 1 December;
        // overdue from Wednesday 00:00 Dutch time.
        assert_eq!(
            deadline(&policy, "2026-11-26T00:47:00+01:00", true),
            "2026-12-01T23:00:00.000Z"
        );
        assert_eq!(
            ContactPolicy::last_day(
                policy.deadline(parse_rfc3339("2026-11-26T00:47:00+01:00").unwrap(), true)
            )
            .to_string(),
            "2026-12-01"
        );
    }

    #[test]
    fn deadlines_across_the_daylight_saving_weekend() {
        let policy = ContactPolicy::default();
        // Summer time starts on Sunday 29 March 2026. A crisis case of
        // Friday 27 March: Monday 30, Tuesday 31, Wednesday 1 April;
        // overdue from Thursday 00:00, which is 22:00 UTC in summer time.
        assert_eq!(
            deadline(&policy, "2026-03-27T10:00:00+01:00", true),
            "2026-04-01T22:00:00.000Z"
        );
        // Fourteen days keep the Dutch clock time: 09:00 before and after.
        assert_eq!(
            deadline(&policy, "2026-03-20T09:00:00+01:00", false),
            "2026-04-03T07:00:00.000Z"
        );
    }

    #[test]
    fn a_holiday_is_not_a_working_day() {
        let mut policy = ContactPolicy::default();
        // Koningsdag, Monday 27 April 2026.
        policy.holidays.insert(Day::parse("2026-04-27").unwrap());
        // Friday 24 April: Tuesday 28, Wednesday 29, Thursday 30.
        assert_eq!(
            deadline(&policy, "2026-04-24T15:00:00+02:00", true),
            "2026-04-30T22:00:00.000Z"
        );
        policy.holidays.clear();
        assert_eq!(
            deadline(&policy, "2026-04-24T15:00:00+02:00", true),
            "2026-04-29T22:00:00.000Z"
        );
    }

    #[test]
    fn ages_out_never_returns_a_day_still_inside_the_window() {
        let s = StateSettings::default();
        for start in [
            Day::parse("2026-02-28").unwrap(),
            Day::parse("2025-08-31").unwrap(),
            Day(0),
        ] {
            for offset in 0..400 {
                let d = start.plus_days(offset);
                let out = s.ages_out_on(d);
                assert!(out.minus_months(6) > d, "{d} ages out on {out}");
                assert!(
                    out.plus_days(-1).minus_months(6) <= d,
                    "{d} ages out too late on {out}"
                );
            }
        }
    }
}
