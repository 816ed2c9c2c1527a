//! How the inbox writes things for people: amounts, dates and times in
//! Dutch, and a case's explanation in plain Dutch, generated from the
//! rules that fired and the signals and values they fired on.

use std::collections::HashMap;

use vroeg_core::archive::{CaseRecord, SignalDetail};
use vroeg_core::time::{local_hour_minute, Day, Millis};
use vroeg_core::vars::VarValue;

const MAANDEN: [&str; 12] = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
];

/// The Dutch name of a month (1 = januari).
pub fn maand(month: u8) -> &'static str {
    MAANDEN[usize::from(month.clamp(1, 12)) - 1]
}

/// An amount as Dutch people write it: `€1.234,56`.
// `is_multiple_of` is newer than the workspace's minimum Rust (1.85).
#[allow(clippy::manual_is_multiple_of)]
pub fn euro(cents: u64) -> String {
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("€{grouped},{:02}", cents % 100)
}

/// A day as Dutch people write it: `26 november 2026`.
pub fn datum(day: Day) -> String {
    let d = day.to_date();
    format!("{} {} {}", d.day(), maand(d.month() as u8), d.year())
}

/// A moment in Dutch time: `26 november 2026, 14:05`.
pub fn moment(ms: Millis) -> String {
    let (h, m) = local_hour_minute(ms);
    format!("{}, {h:02}:{m:02}", datum(Day::local_of(ms)))
}

/// A number of things in words, as the start of a sentence.
fn aantal(n: usize) -> String {
    const WOORDEN: [&str; 11] = [
        "Geen", "Eén", "Twee", "Drie", "Vier", "Vijf", "Zes", "Zeven", "Acht", "Negen", "Tien",
    ];
    WOORDEN
        .get(n)
        .map_or_else(|| n.to_string(), |w| (*w).to_owned())
}

/// `a`, `a en b`, `a, b en c`.
pub fn opsomming(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} en {last}", rest.join(", ")),
    }
}

/// The explanation of a case, for people.
#[derive(Clone, Debug, PartialEq)]
pub struct Uitleg {
    /// One sentence: the deciding rule and what it fired on.
    pub zin: String,
    /// Every rule that fired, in plain words.
    pub regels: Vec<String>,
    /// The values the rules read: name and value.
    pub waarden: Vec<(String, String)>,
}

/// Explain a case: `rules` holds the rule set's descriptions by rule id.
pub fn uitleg(record: &CaseRecord, rules: &HashMap<String, String>) -> Uitleg {
    // Per partner, its latest payment signal.
    let mut latest: Vec<(String, u64, i32, Millis)> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    for s in &record.signalen {
        match &s.detail {
            SignalDetail::Betalingsachterstand {
                partner: p,
                bedrag_cent,
                ontstaansdatum,
                signaaldatum,
                crisis,
                eindelevering,
                ..
            } => {
                let name = p.as_str().to_owned();
                let days = signaaldatum.0 - ontstaansdatum.0;
                match latest.iter_mut().find(|l| l.0 == name) {
                    Some(l) if l.3 <= s.tijd => *l = (name, *bedrag_cent, days, s.tijd),
                    Some(_) => {}
                    None => latest.push((name, *bedrag_cent, days, s.tijd)),
                }
                let flags = [
                    (*crisis, format!("crisissignaal van {}", p.as_str())),
                    (
                        *eindelevering,
                        format!("einde levering door {}", p.as_str()),
                    ),
                ];
                for (set, text) in flags {
                    if set && !extra.contains(&text) {
                        extra.push(text);
                    }
                }
            }
            SignalDetail::Schoolverzuim {
                verzuimsoort,
                uren_4_weken,
            } => extra.push(format!(
                "schoolverzuim ({}, {uren_4_weken} uur in 4 weken)",
                verzuimsoort.as_str().to_lowercase()
            )),
        }
    }
    let signalen: Vec<String> = latest
        .iter()
        .map(|(name, cents, days, _)| {
            if *days > 0 {
                format!("{name} ({}, {days} dagen achterstand)", euro(*cents))
            } else {
                format!("{name} ({})", euro(*cents))
            }
        })
        .collect();
    let describe = |id: &str| {
        rules
            .get(id)
            // The description's first sentence.
            .map(|d| {
                let d = d.trim();
                d.split_once(". ")
                    .map_or(d, |(first, _)| first)
                    .trim_end_matches('.')
                    .to_owned()
            })
            .unwrap_or_else(|| format!("Regel {id}"))
    };
    // The rule that decided: the one that gave the case its category.
    let deciding = record
        .uitleg
        .regels
        .iter()
        .find(|r| r.categorie == record.categorie)
        .or(record.uitleg.regels.first());
    let mut zin = match deciding {
        Some(rule) => describe(&rule.id),
        None => format!("{} partners signaleren", aantal(latest.len())),
    };
    if !signalen.is_empty() {
        zin.push_str(": ");
        zin.push_str(&opsomming(&signalen));
    }
    if !extra.is_empty() {
        zin.push_str(if signalen.is_empty() { ": " } else { "; " });
        zin.push_str(&opsomming(&extra));
    }
    zin.push('.');
    let regels = record
        .uitleg
        .regels
        .iter()
        .map(|r| {
            let full = rules.get(r.id.as_str()).map(|d| d.trim().to_owned());
            format!(
                "{} (regel {}: categorie {}, prioriteit {})",
                full.unwrap_or_else(|| describe(&r.id)),
                r.id,
                r.categorie,
                r.prioriteit
            )
        })
        .collect();
    let waarden = record
        .uitleg
        .variabelen
        .iter()
        .map(|(name, value)| {
            let text = match value {
                VarValue::Bool(true) => "ja".to_owned(),
                VarValue::Bool(false) => "nee".to_owned(),
                VarValue::Int(i) => i.to_string(),
                VarValue::Float(f) => format!("{f}").replace('.', ","),
            };
            (name.to_string(), text)
        })
        .collect();
    Uitleg {
        zin,
        regels,
        waarden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vroeg_core::archive::ArchivedSignal;
    use vroeg_core::case::RuleRef;
    use vroeg_core::signal::{ArrearsStatus, PartnerType};
    use vroeg_core::state::Client;

    #[test]
    fn amounts_and_days_are_written_the_dutch_way() {
        assert_eq!(euro(41250), "€412,50");
        assert_eq!(euro(123456789), "€1.234.567,89");
        assert_eq!(euro(5), "€0,05");
        assert_eq!(datum(Day::parse("2026-04-27").unwrap()), "27 april 2026");
        let t = vroeg_core::time::parse_rfc3339("2026-11-26T13:05:00Z").unwrap();
        assert_eq!(moment(t), "26 november 2026, 14:05");
        assert_eq!(
            opsomming(&["a".into(), "b".into(), "c".into()]),
            "a, b en c"
        );
    }

    #[test]
    fn the_explanation_names_the_rule_and_what_it_fired_on() {
        let day = |t: &str| Day::parse(t).unwrap();
        let signal = |id: &str, partner: &str, cents: u64, ontstaan: &str| ArchivedSignal {
            source: "partner".into(),
            id: id.into(),
            tijd: 0,
            detail: SignalDetail::Betalingsachterstand {
                partner: PartnerType::parse(partner).unwrap(),
                status: ArrearsStatus::Open,
                bedrag_cent: cents,
                ontstaansdatum: day(ontstaan),
                signaaldatum: day("2026-11-01"),
                crisis: false,
                eindelevering: false,
                client: Client {
                    bsn: None,
                    voorletters: "J.".into(),
                    voorvoegsel: None,
                    achternaam: "Jansen".into(),
                    geboortedatum: day("1980-01-01"),
                },
            },
        };
        let mut record = CaseRecord::new("k-1", "k", 0);
        record.categorie = "meervoudig".into();
        record
            .signalen
            .push(signal("1", "Zorg", 41250, "2026-08-29"));
        record
            .signalen
            .push(signal("2", "Huur", 85000, "2026-11-01"));
        record.uitleg.regels.push(RuleRef {
            id: "meervoudig".into(),
            version: 1,
            categorie: "meervoudig".into(),
            prioriteit: 6,
        });
        let rules = HashMap::from([(
            "meervoudig".to_owned(),
            "Twee of meer verschillende partners signaleren binnen 30 dagen.".to_owned(),
        )]);
        let u = uitleg(&record, &rules);
        assert_eq!(
            u.zin,
            "Twee of meer verschillende partners signaleren binnen 30 dagen: \
             Zorg (€412,50, 64 dagen achterstand) en Huur (€850,00)."
        );
        assert_eq!(u.regels.len(), 1);
        // Without the rule set's text, the rule is still named.
        assert!(uitleg(&record, &HashMap::new())
            .zin
            .starts_with("Regel meervoudig: Zorg"));
    }
}
