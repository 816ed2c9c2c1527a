//! The variable catalogue: every value a rule's `when` expression can read,
//! computed per household at the evaluation time.
//!
//! [`catalogue`] lists the variables with their type, unit, purpose and
//! meaning; `docs/rules.md` documents the same list and a test keeps the two
//! in step. [`compute`] fills in the values from a [`HouseholdState`]. It is
//! pure: `now` is passed in.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::signal::PartnerType;
use crate::state::{ArrearsRecord, HouseholdState, StateSettings};
use crate::time::{Day, Millis};

/// The value of one variable.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VarValue {
    Bool(bool),
    Int(i64),
    Float(f64),
}

/// The type of a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarType {
    Bool,
    Int,
    Float,
}

impl VarType {
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::Bool => "boolean",
            VarType::Int => "integer",
            VarType::Float => "number",
        }
    }
}

/// The processing purpose a variable belongs to (AVG purpose binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Debt signals: always allowed.
    Schuld,
    /// School absence: only when the municipality has enabled this purpose.
    School,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Schuld => "schuld",
            Purpose::School => "school",
        }
    }
}

/// One entry of the catalogue.
#[derive(Clone, Debug)]
pub struct VarSpec {
    pub name: String,
    pub ty: VarType,
    pub unit: &'static str,
    pub purpose: Purpose,
    pub description: String,
}

const PER_PARTNER: &[(&str, VarType, &str, &str)] = &[
    ("open", VarType::Bool, "-", "an open arrears signal of this partner type of at least the minimum amount"),
    ("bedrag", VarType::Float, "euro", "total open amount of this partner type (signals of at least the minimum amount)"),
    ("dagen_achterstand", VarType::Int, "days", "days since the earliest ontstaansdatum of the open signals of this type; 0 if none"),
    ("signalen", VarType::Int, "count", "signals of this type in the lookback window, any status"),
    ("bedrag_gestegen", VarType::Bool, "-", "the newest signal of this type has a higher amount than the previous signal from the same source"),
    ("herhaling", VarType::Bool, "-", "the newest signal of this type is a repeat: the same source signalled earlier in the lookback window"),
];

const GLOBAL: &[(&str, VarType, &str, Purpose, &str)] = &[
    ("aantal_partners_open", VarType::Int, "count", Purpose::Schuld, "distinct partner types with open arrears of at least the minimum amount"),
    ("aantal_partners_30d", VarType::Int, "count", Purpose::Schuld, "distinct partner types with open arrears of at least the minimum amount signalled in the last 30 days"),
    ("aantal_open_signalen", VarType::Int, "count", Purpose::Schuld, "open arrears signals of at least the minimum amount"),
    ("totaal_bedrag_open", VarType::Float, "euro", Purpose::Schuld, "total amount of the open arrears of at least the minimum amount"),
    ("hoogste_bedrag_open", VarType::Float, "euro", Purpose::Schuld, "the largest open amount of any signal (regardless of the minimum)"),
    ("minimum_bedrag", VarType::Float, "euro", Purpose::Schuld, "the rule set's minimum amount setting"),
    ("eerder_signaal_6m", VarType::Bool, "-", Purpose::Schuld, "an arrears signal in the lookback window dated more than 30 days before the household's newest signal (Divosa 'opeenvolgend')"),
    ("crisis", VarType::Bool, "-", Purpose::Schuld, "an open signal carries the crisis flag (threatened eviction or disconnection), any amount"),
    ("eindelevering", VarType::Bool, "-", Purpose::Schuld, "an open energy signal announces end of supply, any amount"),
    ("bedrag_gestegen", VarType::Bool, "-", Purpose::Schuld, "the household's newest signal has a higher amount than the previous signal from the same source"),
    ("herhaling", VarType::Bool, "-", Purpose::Schuld, "the household's newest signal is a repeat: its source signalled earlier in the lookback window"),
    ("dagen_sinds_eerste_open", VarType::Int, "days", Purpose::Schuld, "days since the signaaldatum of the oldest open signal; 0 if none"),
    ("dagen_sinds_laatste_signaal", VarType::Int, "days", Purpose::Schuld, "days since the signaaldatum of the newest signal; 0 if none"),
    ("leeftijd", VarType::Int, "years", Purpose::Schuld, "age in whole years of the person of the newest payment signal; 0 if unknown"),
    ("verzuim_uren_4w", VarType::Int, "hours", Purpose::School, "the highest uren_4_weken of the absence reports of the last 28 days"),
    ("verzuim_meldingen_90d", VarType::Int, "count", Purpose::School, "absence reports in the last 90 days"),
    ("verzuim_langdurig", VarType::Bool, "-", Purpose::School, "a long-term absence (langdurig) report in the last 90 days"),
];

const PARTNER_VARS: usize = 6;

/// Every variable rules can read, in a fixed order: per partner type (in
/// [`PartnerType::ALL`] order) the six per-partner variables, then the
/// household-wide ones.
pub fn catalogue() -> &'static [VarSpec] {
    static CATALOGUE: OnceLock<Vec<VarSpec>> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let mut out = Vec::new();
        for partner in PartnerType::ALL {
            for (suffix, ty, unit, description) in PER_PARTNER {
                out.push(VarSpec {
                    name: format!("{}_{}", partner.var_prefix(), suffix),
                    ty: *ty,
                    unit,
                    purpose: Purpose::Schuld,
                    description: format!("{} ({})", description, partner.as_str()),
                });
            }
        }
        for (name, ty, unit, purpose, description) in GLOBAL {
            out.push(VarSpec {
                name: (*name).to_owned(),
                ty: *ty,
                unit,
                purpose: *purpose,
                description: (*description).to_owned(),
            });
        }
        out
    })
}

/// The catalogue index of a variable, by name.
pub fn index_of(name: &str) -> Option<usize> {
    catalogue().iter().position(|v| v.name == name)
}

/// Values for every catalogue variable, in catalogue order.
#[derive(Clone, Debug, PartialEq)]
pub struct Variables {
    pub values: Vec<VarValue>,
}

impl Variables {
    pub fn get(&self, name: &str) -> Option<VarValue> {
        index_of(name).map(|i| self.values[i])
    }

    /// A value for every variable: false, zero. Used to check rule types.
    pub fn zeroes() -> Self {
        let values = catalogue()
            .iter()
            .map(|v| match v.ty {
                VarType::Bool => VarValue::Bool(false),
                VarType::Int => VarValue::Int(0),
                VarType::Float => VarValue::Float(0.0),
            })
            .collect();
        Variables { values }
    }

    /// A value for every variable: true, and typical non-zero numbers.
    pub fn typical() -> Self {
        let values = catalogue()
            .iter()
            .map(|v| match v.ty {
                VarType::Bool => VarValue::Bool(true),
                VarType::Int => VarValue::Int(42),
                VarType::Float => VarValue::Float(512.5),
            })
            .collect();
        Variables { values }
    }
}

fn euro(cent: u64) -> f64 {
    cent as f64 / 100.0
}

/// Whole years from `born` to `today` (a birthday counts on its date).
fn age_in_years(born: Day, today: Day) -> i64 {
    let (b, t) = (born.to_date(), today.to_date());
    let mut years = (t.year() - b.year()) as i64;
    if (t.month() as u8, t.day()) < (b.month() as u8, b.day()) {
        years -= 1;
    }
    years.max(0)
}

fn days_between(from: Day, to: Day) -> i64 {
    (to.0 - from.0).max(0) as i64
}

/// Whether `newest` rose against the previous record of the same source.
fn rose_since_previous(all: &[ArrearsRecord], newest: &ArrearsRecord) -> (bool, bool) {
    let previous = all
        .iter()
        .rev()
        .filter(|r| r.source == newest.source && r.id != newest.id)
        .find(|r| (r.signaaldatum, r.time) <= (newest.signaaldatum, newest.time));
    match previous {
        None => (false, false),
        Some(p) => (newest.bedrag_cent > p.bedrag_cent, true),
    }
}

/// Compute every catalogue variable for one household at `now`.
pub fn compute(state: &HouseholdState, now: Millis, settings: &StateSettings) -> Variables {
    let today = Day::of_millis(now);
    let window_start = settings.window_start(now);
    let open = state.open_arrears(now, settings);
    let counted: Vec<&ArrearsRecord> = open
        .iter()
        .copied()
        .filter(|r| r.bedrag_cent >= settings.minimum_cent)
        .collect();
    let in_window: Vec<&ArrearsRecord> = state
        .arrears
        .iter()
        .filter(|r| r.signaaldatum >= window_start)
        .collect();

    let mut values = Vec::with_capacity(catalogue().len());
    for partner in PartnerType::ALL {
        // Counted open arrears of this partner: any, their sum, the oldest.
        let (mut any, mut sum, mut days) = (false, 0u64, 0i64);
        for r in counted.iter().filter(|r| r.partner == *partner) {
            any = true;
            sum += r.bedrag_cent;
            days = days.max(days_between(r.ontstaansdatum, today));
        }
        // Its signals in the window: how many, and the newest.
        let (mut signals, mut newest) = (0i64, None);
        for r in in_window.iter().filter(|r| r.partner == *partner) {
            signals += 1;
            newest = Some(*r);
        }
        let (rose, repeat) = newest
            .map(|newest| rose_since_previous(&state.arrears, newest))
            .unwrap_or((false, false));
        values.push(VarValue::Bool(any));
        values.push(VarValue::Float(euro(sum)));
        values.push(VarValue::Int(days));
        values.push(VarValue::Int(signals));
        values.push(VarValue::Bool(rose));
        values.push(VarValue::Bool(repeat));
    }
    debug_assert_eq!(values.len(), PartnerType::ALL.len() * PARTNER_VARS);

    // Distinct partners, as a set of bits (a partner type's bit is its
    // place in `PartnerType::ALL`).
    let partners = |records: &mut dyn Iterator<Item = &&ArrearsRecord>| {
        records
            .fold(0u64, |bits, r| bits | 1 << (r.partner as u32))
            .count_ones()
    };
    let recent = today.plus_days(-30);
    let partners_open = partners(&mut counted.iter());
    let partners_30d = partners(&mut counted.iter().filter(|r| r.signaaldatum >= recent));
    let newest = in_window.last().copied();
    let (rose, repeat) = newest
        .map(|n| rose_since_previous(&state.arrears, n))
        .unwrap_or((false, false));
    // "Earlier" is relative to the newest signal, not to now: a single old
    // signal is not consecutive to itself.
    let earlier = newest.is_some_and(|n| {
        let before = n.signaaldatum.plus_days(-30);
        in_window.iter().any(|r| r.signaaldatum < before)
    });

    values.push(VarValue::Int(i64::from(partners_open)));
    values.push(VarValue::Int(i64::from(partners_30d)));
    values.push(VarValue::Int(counted.len() as i64));
    values.push(VarValue::Float(euro(
        counted.iter().map(|r| r.bedrag_cent).sum(),
    )));
    values.push(VarValue::Float(euro(
        open.iter().map(|r| r.bedrag_cent).max().unwrap_or(0),
    )));
    values.push(VarValue::Float(euro(settings.minimum_cent)));
    values.push(VarValue::Bool(earlier));
    values.push(VarValue::Bool(open.iter().any(|r| r.crisis)));
    values.push(VarValue::Bool(open.iter().any(|r| r.eindelevering)));
    values.push(VarValue::Bool(rose));
    values.push(VarValue::Bool(repeat));
    values.push(VarValue::Int(
        open.first()
            .map(|r| days_between(r.signaaldatum, today))
            .unwrap_or(0),
    ));
    values.push(VarValue::Int(
        newest
            .map(|r| days_between(r.signaaldatum, today))
            .unwrap_or(0),
    ));
    values.push(VarValue::Int(
        state
            .contact
            .as_ref()
            .map(|c| age_in_years(c.geboortedatum, today))
            .unwrap_or(0),
    ));

    let (uren, meldingen, langdurig) = if settings.school_purpose {
        let four_weeks = today.plus_days(-28);
        let mut uren = 0;
        let mut meldingen = 0;
        let mut langdurig = false;
        for r in state.recent_absences(now) {
            meldingen += 1;
            if Day::of_millis(r.time) >= four_weeks {
                uren = uren.max(r.uren_4_weken as i64);
            }
            langdurig |= r.verzuimsoort == crate::signal::Verzuimsoort::Langdurig;
        }
        (uren, meldingen, langdurig)
    } else {
        (0, 0, false)
    };
    values.push(VarValue::Int(uren));
    values.push(VarValue::Int(meldingen));
    values.push(VarValue::Bool(langdurig));
    debug_assert_eq!(values.len(), catalogue().len());
    Variables { values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_whole_years() {
        let d = |s| Day::parse(s).unwrap();
        assert_eq!(age_in_years(d("2000-03-15"), d("2026-03-14")), 25);
        assert_eq!(age_in_years(d("2000-03-15"), d("2026-03-15")), 26);
        assert_eq!(age_in_years(d("2030-01-01"), d("2026-03-15")), 0);
    }
}
