//! What a change of the rules does to the cases: the case events of the
//! same history under a base and a candidate rule set, compared.
//!
//! `vroeg rules diff` replays the history under both rule sets (the same
//! engine and path as `vroeg replay`) and hands both event streams to
//! [`compare`], which reports per month the cases opened by category,
//! priority, team and work queue (base, candidate, change), the households
//! that gain a case, lose one or change priority (with sample
//! explanations), and the contact workload per team per week. Households
//! are named by their pseudonymous key; names and addresses appear only
//! when asked for ([`Compare::personal_data`]).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vroeg_core::case::{AlertKind, RuleRef};
use vroeg_core::state::Contact;
use vroeg_core::time::{parse_rfc3339, Day};
use vroeg_core::vars::VarValue;
use vroeg_core::Name;

/// How to compare.
#[derive(Clone, Debug, Default)]
pub struct Compare {
    /// Show names and addresses with the sample households.
    pub personal_data: bool,
    /// Sample households per group.
    pub samples: usize,
}

/// Base, candidate and the change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub basis: u64,
    pub kandidaat: u64,
    pub verschil: i64,
}

/// One month's opened cases, by each dimension.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Month {
    pub maand: String,
    pub totaal: Counts,
    pub per_categorie: BTreeMap<String, Counts>,
    pub per_prioriteit: BTreeMap<u8, Counts>,
    pub per_wijkteam: BTreeMap<String, Counts>,
    pub per_werkbak: BTreeMap<String, Counts>,
}

/// One household that the change affects, as a sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub huishouden: String,
    pub prioriteit_basis: Option<u8>,
    pub prioriteit_kandidaat: Option<u8>,
    /// The rules and values behind its case (the candidate's, where it has
    /// one; else the base's).
    pub uitleg: String,
    /// Name and address, only with personal data on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// A group of affected households.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Group {
    pub aantal: u64,
    pub voorbeelden: Vec<Sample>,
}

/// The households the change affects.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Households {
    /// A case under the candidate, none under the base.
    pub krijgen_zaak: Group,
    /// A case under the base, none under the candidate.
    pub verliezen_zaak: Group,
    /// A case under both, with another highest priority.
    pub andere_prioriteit: Group,
}

/// The whole comparison.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diff {
    pub maanden: Vec<Month>,
    pub huishoudens: Households,
    /// Cases opened per team per ISO week: each needs a first contact.
    pub contactwerk: BTreeMap<String, BTreeMap<String, Counts>>,
}

/// The part of a case event the comparison reads (a case event's JSON
/// deserializes into it; the rest is skipped, so two runs of a million
/// signals fit in memory).
#[derive(Clone, Debug, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub huishouden: Name,
    pub wijkteam: Name,
    pub werkbak: Name,
    pub tijd: String,
    pub prioriteit: u8,
    pub categorie: Name,
    #[serde(default)]
    pub regels: Vec<RuleRef>,
    #[serde(default)]
    pub variabelen: litemap::LiteMap<vroeg_core::case::VarName, VarValue>,
    #[serde(default)]
    pub contact: Option<Contact>,
}

impl Event {
    /// The part of a case event the comparison reads; the contact details
    /// only with `personal_data`.
    pub fn of(alert: vroeg_core::Alert, personal_data: bool) -> Event {
        Event {
            kind: alert.kind,
            huishouden: alert.huishouden,
            wijkteam: alert.wijkteam,
            werkbak: alert.werkbak,
            tijd: alert.tijd,
            prioriteit: alert.prioriteit,
            categorie: alert.categorie,
            regels: alert.regels,
            variabelen: alert.variabelen,
            contact: alert.contact.filter(|_| personal_data),
        }
    }
}

/// The month (`YYYY-MM`) and ISO week (`YYYY-Www`) of a case event, by
/// its Dutch day.
fn month_and_week(alert: &Event) -> (String, String) {
    let day = parse_rfc3339(&alert.tijd).map_or(Day(0), Day::local_of);
    let (year, week, _) = day.to_date().to_iso_week_date();
    (
        day.to_string()[..7].to_owned(),
        format!("{year}-W{week:02}"),
    )
}

/// Count one more under `key`, copying the key only the first time.
fn count<K: Ord + ?Sized + ToOwned>(map: &mut BTreeMap<K::Owned, u64>, key: &K)
where
    K::Owned: Ord + std::borrow::Borrow<K>,
{
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// The names a tally's explanations use, each kept once: an explanation is
/// kept as numbers ([`Names::encode`]) and written out only for the few
/// households that become samples ([`Names::explain`]).
#[derive(Default)]
struct Names {
    names: Vec<Box<str>>,
    index: FxHashMap<Box<str>, u32>,
}

/// The tags of a variable's value in an encoded explanation.
const BOOL: u32 = 0;
const INT: u32 = 1;
const FLOAT: u32 = 2;

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        id
    }

    /// `a`'s explanation as numbers, into `out` (cleared first): the
    /// category and priority, the count of rules, each rule and its
    /// priority, then each variable, its value's tag and the value's 64
    /// bits in two halves.
    fn encode(&mut self, a: &Event, out: &mut Vec<u32>) {
        out.clear();
        out.push(self.id(&a.categorie));
        out.push(u32::from(a.prioriteit));
        out.push(a.regels.len() as u32);
        for r in &a.regels {
            out.push(self.id(&r.id));
            out.push(u32::from(r.prioriteit));
        }
        for (k, v) in &a.variabelen {
            let (tag, bits) = match *v {
                VarValue::Bool(b) => (BOOL, u64::from(b)),
                VarValue::Int(i) => (INT, i as u64),
                VarValue::Float(f) => (FLOAT, f.to_bits()),
            };
            out.extend([self.id(k), tag, bits as u32, (bits >> 32) as u32]);
        }
    }

    /// The explanation [`Names::encode`] kept, in one line: "category,
    /// prioriteit P: rule (P), ...; variable = value, ...".
    fn explain(&self, words: &[u32]) -> String {
        let name = |id: u32| &*self.names[id as usize];
        let mut out = String::with_capacity(128);
        let _ = write!(out, "{}, prioriteit {}: ", name(words[0]), words[1]);
        let rules = words[2] as usize;
        for (n, r) in words[3..3 + 2 * rules].chunks_exact(2).enumerate() {
            let sep = if n > 0 { ", " } else { "" };
            let _ = write!(out, "{sep}{} ({})", name(r[0]), r[1]);
        }
        out.push_str("; ");
        for (n, v) in words[3 + 2 * rules..].chunks_exact(4).enumerate() {
            let sep = if n > 0 { ", " } else { "" };
            let k = name(v[0]);
            let bits = u64::from(v[2]) | (u64::from(v[3]) << 32);
            let _ = match v[1] {
                BOOL => write!(out, "{sep}{k} = {}", bits != 0),
                INT => write!(out, "{sep}{k} = {}", bits as i64),
                _ => write!(out, "{sep}{k} = {}", f64::from_bits(bits)),
            };
        }
        out
    }
}

fn contact(a: &Event) -> Option<String> {
    a.contact.as_ref().map(|c| {
        format!(
            "{} {}, {} {}{}, {}",
            c.voorletters,
            c.achternaam,
            c.straatnaam,
            c.huisnummer,
            c.huisnummertoevoeging.as_deref().unwrap_or(""),
            c.postcode
        )
    })
}

/// What one run said about one household.
#[derive(Default)]
struct Seen {
    cases: u32,
    highest: Option<u8>,
    /// What its last case event that opened or changed a case says, as
    /// [`Names::encode`] keeps it (empty: none yet): a run has hundreds of
    /// thousands of households and only a few become samples.
    last: Vec<u32>,
    /// Name and address of that event, when it carries them (personal data
    /// on).
    contact: Option<Box<str>>,
}

/// A household's key as the tally keeps it: the 32 hex digits the keyer
/// writes as the number they are, held in the map's own slot (a million
/// households are looked up once per case event); any other text as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Household {
    Hex(u128),
    Text(Box<str>),
}

impl Household {
    fn of(key: &str) -> Household {
        let hex = key.len() == 32
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match u128::from_str_radix(key, 16) {
            Ok(n) if hex => Household::Hex(n),
            _ => Household::Text(key.into()),
        }
    }
}

impl std::fmt::Display for Household {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Household::Hex(n) => write!(f, "{n:032x}"),
            Household::Text(t) => f.write_str(t),
        }
    }
}

/// One month's opened cases of one run, by each dimension.
#[derive(Default)]
struct MonthTally {
    totaal: u64,
    per_categorie: BTreeMap<String, u64>,
    per_prioriteit: BTreeMap<u8, u64>,
    per_wijkteam: BTreeMap<String, u64>,
    per_werkbak: BTreeMap<String, u64>,
}

/// One run's case events, tallied as they come, so that a run need not
/// keep its events: per month and dimension, per team and week, and per
/// household its cases, highest priority and last explanation. Each run
/// tallies on its own thread; [`compare_tallies`] puts two together.
#[derive(Default)]
pub struct Tally {
    months: BTreeMap<String, MonthTally>,
    work: BTreeMap<String, BTreeMap<String, u64>>,
    households: FxHashMap<Household, Seen>,
    /// The names the households' explanations use.
    names: Names,
    /// The month and week of the last event's UTC `tijd` up to its hour
    /// (empty for another offset): the events come in time order, and a
    /// Dutch day starts on a whole UTC hour.
    period: Option<(String, (String, String))>,
}

impl Tally {
    /// Count one case event, in the order of the run.
    pub fn add(&mut self, a: Event) {
        let opened = a.kind == AlertKind::Geopend;
        if opened {
            // Only a UTC time (`...Z`, as the engine writes it) is cached by
            // its hour; with another offset the same digits are another hour.
            let hour = a.tijd.get(..13).filter(|_| a.tijd.ends_with('Z'));
            if hour.is_none()
                || self
                    .period
                    .as_ref()
                    .is_none_or(|(h, _)| Some(h.as_str()) != hour)
            {
                let hour = hour.unwrap_or_default();
                self.period = Some((hour.to_owned(), month_and_week(&a)));
            }
            let (_, (month, week)) = self.period.as_ref().expect("just set");
            let m = match self.months.get_mut(month) {
                Some(m) => m,
                None => self.months.entry(month.clone()).or_default(),
            };
            m.totaal += 1;
            count(&mut m.per_categorie, a.categorie.as_str());
            *m.per_prioriteit.entry(a.prioriteit).or_default() += 1;
            count(&mut m.per_wijkteam, a.wijkteam.as_str());
            count(&mut m.per_werkbak, a.werkbak.as_str());
            let team = match self.work.get_mut(a.wijkteam.as_str()) {
                Some(team) => team,
                None => self.work.entry(a.wijkteam.to_string()).or_default(),
            };
            count(team, week.as_str());
        }
        let changed = matches!(a.kind, AlertKind::Geopend | AlertKind::Bijgewerkt);
        let s = self
            .households
            .entry(Household::of(&a.huishouden))
            .or_default();
        if opened {
            s.cases += 1;
        }
        if changed {
            s.highest = Some(s.highest.map_or(a.prioriteit, |h| h.max(a.prioriteit)));
            self.names.encode(&a, &mut s.last);
            s.contact = contact(&a).map(String::into_boxed_str);
        }
    }

    /// The explanation and contact line of `s`'s last event, if it has one.
    fn sample(&self, s: &Seen) -> Option<(String, Option<String>)> {
        (!s.last.is_empty()).then(|| {
            (
                self.names.explain(&s.last),
                s.contact.as_deref().map(str::to_owned),
            )
        })
    }
}

/// Base and candidate counts of each key either run has.
fn merge<K: Ord + Clone>(
    base: &BTreeMap<K, u64>,
    candidate: &BTreeMap<K, u64>,
) -> BTreeMap<K, Counts> {
    let mut out: BTreeMap<K, Counts> = BTreeMap::new();
    for (key, n) in base {
        out.entry(key.clone()).or_default().basis = *n;
    }
    for (key, n) in candidate {
        out.entry(key.clone()).or_default().kandidaat = *n;
    }
    for c in out.values_mut() {
        c.verschil = c.kandidaat as i64 - c.basis as i64;
    }
    out
}

/// Compare the case events of the base and the candidate run.
pub fn compare(base: &[Event], candidate: &[Event], how: &Compare) -> Diff {
    let tally = |events: &[Event]| {
        let mut t = Tally::default();
        for e in events {
            t.add(e.clone());
        }
        t
    };
    compare_tallies(&tally(base), &tally(candidate), how)
}

/// Compare two runs' tallies: [`compare`] of the events they counted.
pub fn compare_tallies(base: &Tally, candidate: &Tally, how: &Compare) -> Diff {
    let empty = MonthTally::default();
    let month_names: BTreeSet<&String> =
        base.months.keys().chain(candidate.months.keys()).collect();
    let maanden = month_names
        .into_iter()
        .map(|name| {
            let b = base.months.get(name).unwrap_or(&empty);
            let c = candidate.months.get(name).unwrap_or(&empty);
            Month {
                maand: name.clone(),
                totaal: Counts {
                    basis: b.totaal,
                    kandidaat: c.totaal,
                    verschil: c.totaal as i64 - b.totaal as i64,
                },
                per_categorie: merge(&b.per_categorie, &c.per_categorie),
                per_prioriteit: merge(&b.per_prioriteit, &c.per_prioriteit),
                per_wijkteam: merge(&b.per_wijkteam, &c.per_wijkteam),
                per_werkbak: merge(&b.per_werkbak, &c.per_werkbak),
            }
        })
        .collect();
    let no_work = BTreeMap::new();
    let teams: BTreeSet<&String> = base.work.keys().chain(candidate.work.keys()).collect();
    let contactwerk = teams
        .into_iter()
        .map(|team| {
            let b = base.work.get(team).unwrap_or(&no_work);
            let c = candidate.work.get(team).unwrap_or(&no_work);
            (team.clone(), merge(b, c))
        })
        .collect();
    // In the order of their keys' text.
    let mut households: Vec<(String, &Household)> = base
        .households
        .keys()
        .chain(candidate.households.keys())
        .map(|h| (h.to_string(), h))
        .collect();
    households.sort_unstable();
    households.dedup();
    let mut out = Households::default();
    for (h, key) in &households {
        let h = h.as_str();
        let (b, c) = (base.households.get(key), candidate.households.get(key));
        let (bc, cc) = (b.map_or(0, |s| s.cases), c.map_or(0, |s| s.cases));
        let (bp, cp) = (b.and_then(|s| s.highest), c.and_then(|s| s.highest));
        let group = match (bc > 0, cc > 0) {
            (false, true) => &mut out.krijgen_zaak,
            (true, false) => &mut out.verliezen_zaak,
            (true, true) if bp != cp => &mut out.andere_prioriteit,
            _ => continue,
        };
        group.aantal += 1;
        if group.voorbeelden.len() < how.samples {
            let last = c
                .and_then(|s| candidate.sample(s))
                .or_else(|| b.and_then(|s| base.sample(s)));
            let (uitleg, contact) = last.unwrap_or_default();
            group.voorbeelden.push(Sample {
                huishouden: h.to_owned(),
                prioriteit_basis: bp,
                prioriteit_kandidaat: cp,
                uitleg,
                contact: contact.filter(|_| how.personal_data),
            });
        }
    }
    Diff {
        maanden,
        huishoudens: out,
        contactwerk,
    }
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// The comparison as a terminal table: per month, the cases opened by
/// category; then the households; then the contact workload per team.
pub fn table(diff: &Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<20} {:>8} {:>10} {:>8}",
        "maand", "categorie", "basis", "kandidaat", "verschil"
    );
    for m in &diff.maanden {
        for (cat, c) in &m.per_categorie {
            let _ = writeln!(
                out,
                "{:<8} {:<20} {:>8} {:>10} {:>8}",
                m.maand,
                cat,
                c.basis,
                c.kandidaat,
                signed(c.verschil)
            );
        }
        let _ = writeln!(
            out,
            "{:<8} {:<20} {:>8} {:>10} {:>8}",
            m.maand,
            "(totaal)",
            m.totaal.basis,
            m.totaal.kandidaat,
            signed(m.totaal.verschil)
        );
    }
    let h = &diff.huishoudens;
    let _ = writeln!(out);
    for (label, g) in [
        ("die een zaak krijgen", &h.krijgen_zaak),
        ("die hun zaak verliezen", &h.verliezen_zaak),
        ("met een andere prioriteit", &h.andere_prioriteit),
    ] {
        let _ = writeln!(out, "huishoudens {label}: {}", g.aantal);
        for s in &g.voorbeelden {
            let p = |p: Option<u8>| p.map_or("-".to_owned(), |p| p.to_string());
            let _ = writeln!(
                out,
                "  {} ({} -> {}): {}{}",
                s.huishouden,
                p(s.prioriteit_basis),
                p(s.prioriteit_kandidaat),
                s.uitleg,
                s.contact
                    .as_deref()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "contactwerk: nieuwe zaken per wijkteam per week (basis -> kandidaat)"
    );
    for (team, weeks) in &diff.contactwerk {
        let cells: Vec<String> = weeks
            .iter()
            .map(|(w, c)| format!("{w} {}->{}", c.basis, c.kandidaat))
            .collect();
        let _ = writeln!(out, "  {team}: {}", cells.join(", "));
    }
    out
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Grouped bars: per label, the base and the candidate.
fn bars_svg(title: &str, rows: &[(String, u64, u64)]) -> String {
    let (w, h, left, bottom) = (760.0_f64, 240.0_f64, 48.0, 36.0);
    let max = rows.iter().map(|r| r.1.max(r.2)).max().unwrap_or(0).max(1) as f64;
    let slot = (w - left) / rows.len().max(1) as f64;
    let bar = (slot * 0.35).min(28.0);
    let mut s = format!(
        r#"<svg role="img" aria-label="{}" viewBox="0 0 {w} {}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(title),
        h + 24.0
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = 8.0 + (h - bottom - 8.0) * (1.0 - f64::from(k) / 4.0);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{v:.0}</text>"##,
            left - 4.0,
            y + 4.0
        );
    }
    for (i, (label, b, c)) in rows.iter().enumerate() {
        let x = left + slot * i as f64 + slot / 2.0 - bar;
        for (j, (v, colour, name)) in [(*b, "#1f4e79", "basis"), (*c, "#9c4a00", "kandidaat")]
            .into_iter()
            .enumerate()
        {
            let bh = (h - bottom - 8.0) * v as f64 / max;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"><title>{}: {name} {v}</title></rect>"#,
                x + bar * j as f64,
                h - bottom - bh,
                esc(label)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            x + bar,
            h - bottom + 14.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{h}" width="12" height="12" fill="#1f4e79"/><text x="{}" y="{}" font-size="12">basis</text><rect x="{}" y="{h}" width="12" height="12" fill="#9c4a00"/><text x="{}" y="{}" font-size="12">kandidaat</text></svg>"##,
        left + 16.0,
        h + 10.0,
        left + 90.0,
        left + 106.0,
        h + 10.0
    );
    s
}

/// The comparison as one self-contained HTML page (no scripts, no
/// external files): charts and tables per month, the affected households,
/// the contact workload.
pub fn html(diff: &Diff, base: &str, candidate: &str) -> String {
    let mut s = String::from(
        r#"<!DOCTYPE html><html lang="nl"><head><meta charset="utf-8"><title>Vroeg: regelwijziging vergeleken</title><style>
body{font-family:system-ui,sans-serif;color:#1a1a1a;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #ccc;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.plus{color:#2e6b30}.min{color:#a31515}svg{width:100%;height:auto;max-width:48rem}
</style></head><body>"#,
    );
    let _ = write!(
        s,
        "<h1>Regelwijziging vergeleken</h1><p>Basis: <code>{}</code>; kandidaat: <code>{}</code>. Dezelfde signalen, per regelset opnieuw verwerkt.</p>",
        esc(base),
        esc(candidate)
    );
    let totals: Vec<(String, u64, u64)> = diff
        .maanden
        .iter()
        .map(|m| (m.maand.clone(), m.totaal.basis, m.totaal.kandidaat))
        .collect();
    let _ = write!(
        s,
        "<h2>Geopende zaken per maand</h2>{}",
        bars_svg("Geopende zaken per maand: basis en kandidaat", &totals)
    );
    let cell = |n: i64| {
        let class = if n > 0 {
            "plus"
        } else if n < 0 {
            "min"
        } else {
            ""
        };
        format!(r#"<td class="n {class}">{}</td>"#, signed(n))
    };
    for m in &diff.maanden {
        let _ = write!(
            s,
            r#"<h3>{}</h3><table><thead><tr><th>categorie</th><th class="n">basis</th><th class="n">kandidaat</th><th class="n">verschil</th></tr></thead><tbody>"#,
            esc(&m.maand)
        );
        for (cat, c) in &m.per_categorie {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td>{}</tr>"#,
                esc(cat),
                c.basis,
                c.kandidaat,
                cell(c.verschil)
            );
        }
        let _ = write!(
            s,
            r#"<tr><th>totaal</th><th class="n">{}</th><th class="n">{}</th>{}</tr></tbody></table>"#,
            m.totaal.basis,
            m.totaal.kandidaat,
            cell(m.totaal.verschil)
        );
        let priorities: BTreeMap<String, Counts> = m
            .per_prioriteit
            .iter()
            .map(|(p, c)| (p.to_string(), c.clone()))
            .collect();
        for (what, rows) in [
            ("prioriteit", &priorities),
            ("wijkteam", &m.per_wijkteam),
            ("werkbak", &m.per_werkbak),
        ] {
            let _ = write!(
                s,
                r#"<table><thead><tr><th>{what}</th><th class="n">basis</th><th class="n">kandidaat</th><th class="n">verschil</th></tr></thead><tbody>"#
            );
            for (key, c) in rows {
                let _ = write!(
                    s,
                    r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td>{}</tr>"#,
                    esc(key),
                    c.basis,
                    c.kandidaat,
                    cell(c.verschil)
                );
            }
            s.push_str("</tbody></table>");
        }
    }
    let h = &diff.huishoudens;
    s.push_str("<h2>Huishoudens</h2>");
    for (label, g) in [
        ("die een zaak krijgen", &h.krijgen_zaak),
        ("die hun zaak verliezen", &h.verliezen_zaak),
        ("met een andere prioriteit", &h.andere_prioriteit),
    ] {
        let _ = write!(s, "<h3>{} huishoudens {label}</h3><ul>", g.aantal);
        for v in &g.voorbeelden {
            let p = |p: Option<u8>| p.map_or("-".to_owned(), |p| p.to_string());
            let _ = write!(
                s,
                "<li><code>{}</code> (prioriteit {} → {}): {}{}</li>",
                esc(&v.huishouden),
                p(v.prioriteit_basis),
                p(v.prioriteit_kandidaat),
                esc(&v.uitleg),
                v.contact
                    .as_deref()
                    .map(|c| format!(" — {}", esc(c)))
                    .unwrap_or_default()
            );
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Contactwerk: nieuwe zaken per wijkteam per week</h2>");
    for (team, weeks) in &diff.contactwerk {
        let rows: Vec<(String, u64, u64)> = weeks
            .iter()
            .map(|(w, c)| (w[5..].to_owned(), c.basis, c.kandidaat))
            .collect();
        let _ = write!(
            s,
            "<h3>{}</h3>{}",
            esc(team),
            bars_svg(&format!("Nieuwe zaken per week, {team}"), &rows)
        );
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(h: &str, kind: AlertKind, tijd: &str, cat: &str, p: u8) -> Event {
        let mut a: Event = serde_json::from_value(serde_json::json!({
            "id": format!("{h}-1-1"), "type": "geopend", "zaak_id": format!("{h}-1"),
            "huishouden": h, "wijkteam": "noord", "werkbak": "regulier", "episode": 1,
            "volgnummer": 1, "tijd": tijd, "prioriteit": p, "categorie": cat,
            "categorieen": [cat], "regels": [], "signalen": [], "variabelen": {},
            "regelset": "x"
        }))
        .unwrap();
        a.kind = kind;
        a
    }

    #[test]
    fn counts_groups_and_workload_follow_the_two_runs() {
        let base = vec![
            alert(
                "a",
                AlertKind::Geopend,
                "2026-03-02T10:00:00Z",
                "enkelvoudig",
                3,
            ),
            alert(
                "b",
                AlertKind::Geopend,
                "2026-03-03T10:00:00Z",
                "enkelvoudig",
                3,
            ),
            alert("c", AlertKind::Geopend, "2026-04-01T10:00:00Z", "crisis", 9),
        ];
        let candidate = vec![
            alert(
                "a",
                AlertKind::Geopend,
                "2026-03-02T10:00:00Z",
                "enkelvoudig",
                3,
            ),
            alert("c", AlertKind::Geopend, "2026-04-01T10:00:00Z", "crisis", 9),
            alert(
                "c",
                AlertKind::Bijgewerkt,
                "2026-04-02T10:00:00Z",
                "crisis",
                9,
            ),
            alert(
                "d",
                AlertKind::Geopend,
                "2026-04-03T10:00:00Z",
                "meervoudig",
                6,
            ),
        ];
        let d = compare(
            &base,
            &candidate,
            &Compare {
                personal_data: false,
                samples: 3,
            },
        );
        assert_eq!(d.maanden.len(), 2);
        let march = &d.maanden[0];
        assert_eq!(
            (
                march.totaal.basis,
                march.totaal.kandidaat,
                march.totaal.verschil
            ),
            (2, 1, -1)
        );
        assert_eq!(d.maanden[1].per_categorie["meervoudig"].verschil, 1);
        assert_eq!(d.huishoudens.krijgen_zaak.aantal, 1);
        assert_eq!(d.huishoudens.verliezen_zaak.aantal, 1);
        assert_eq!(d.huishoudens.andere_prioriteit.aantal, 0);
        assert_eq!(d.huishoudens.verliezen_zaak.voorbeelden[0].huishouden, "b");
        assert!(d.huishoudens.krijgen_zaak.voorbeelden[0].contact.is_none());
        assert_eq!(d.contactwerk["noord"]["2026-W10"].basis, 2);
        let text = table(&d);
        assert!(
            text.contains("2026-03  (totaal)                    2          1       -1"),
            "{text}"
        );
        let page = html(&d, "rules", "kandidaat");
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"nl\">") && page.contains("<svg"));
        assert!(!page.contains("<script"));
    }

    /// The month and week follow the Dutch day of each event, whatever
    /// offset its time is written with: the tally's cache by the hour must
    /// not carry one event's month over to the next.
    #[test]
    fn months_and_weeks_follow_the_dutch_day_of_every_event() {
        let events = [
            // 31 January, 23:30 in Amsterdam.
            ("a", "2026-01-31T22:30:00.000Z"),
            // 1 February, 00:10 in Amsterdam: the same UTC date.
            ("b", "2026-01-31T23:10:00.000Z"),
            // The same digits up to the hour, written in Dutch time: still
            // 31 January.
            ("c", "2026-01-31T23:50:00+01:00"),
            ("d", "2026-01-31T23:59:00.000Z"),
        ];
        let base: Vec<Event> = events
            .iter()
            .map(|(h, t)| alert(h, AlertKind::Geopend, t, "enkelvoudig", 3))
            .collect();
        let d = compare(&base, &[], &Compare::default());
        let months: Vec<(&str, u64)> = d
            .maanden
            .iter()
            .map(|m| (m.maand.as_str(), m.totaal.basis))
            .collect();
        assert_eq!(months, [("2026-01", 2), ("2026-02", 2)]);
        // Saturday 31 January is in week 5, Sunday 1 February too.
        assert_eq!(d.contactwerk["noord"]["2026-W05"].basis, 4);
    }

    /// A sample's explanation is kept as numbers and written out at the
    /// end: it reads as the event's rules and values, each kind of value
    /// written as before.
    #[test]
    fn an_explanation_kept_as_numbers_reads_as_the_event() {
        let mut a = alert("a", AlertKind::Geopend, "2026-03-02T10:00:00Z", "crisis", 9);
        a.regels = serde_json::from_value(serde_json::json!([
            {"id": "crisis", "version": 2, "categorie": "crisis", "prioriteit": 9},
            {"id": "huur_en_energie", "version": 1, "categorie": "meervoudig", "prioriteit": 6}
        ]))
        .unwrap();
        a.variabelen = [
            ("bedrag_totaal_euro", VarValue::Float(1234.5)),
            ("crisissignaal", VarValue::Bool(true)),
            ("dagen_sinds_eerste", VarValue::Int(-3)),
            ("klein", VarValue::Float(0.1 + 0.2)),
            ("nul", VarValue::Bool(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect();
        let mut names = Names::default();
        let mut words = vec![7; 3];
        names.encode(&a, &mut words);
        assert_eq!(
            names.explain(&words),
            "crisis, prioriteit 9: crisis (9), huur_en_energie (6); \
             bedrag_totaal_euro = 1234.5, crisissignaal = true, dagen_sinds_eerste = -3, \
             klein = 0.30000000000000004, nul = false"
        );
        // Names are kept once: a second event reuses them.
        let before = names.names.len();
        names.encode(&a, &mut words);
        assert_eq!(names.names.len(), before);
        a.regels.clear();
        a.variabelen.clear();
        names.encode(&a, &mut words);
        assert_eq!(names.explain(&words), "crisis, prioriteit 9: ; ");
    }

    /// A household's key reads back as the text it was, whether the tally
    /// keeps it as a number or as text.
    #[test]
    fn household_keys_read_back_as_their_text() {
        for key in [
            "00000000000000000000000000000000",
            "0f3a9c1e5b7d2468ace0135792468bdf",
            "ffffffffffffffffffffffffffffffff",
            "0F3A9C1E5B7D2468ACE0135792468BDF",
            "+f3a9c1e5b7d2468ace0135792468bdf",
            "0f3a9c1e5b7d2468ace0135792468bd",
            "huishouden-a",
            "",
        ] {
            let h = Household::of(key);
            assert_eq!(h.to_string(), key);
            assert_eq!(
                matches!(h, Household::Hex(_)),
                key.len() == 32 && key == key.to_lowercase() && !key.starts_with('+'),
                "{key}"
            );
        }
    }
}
