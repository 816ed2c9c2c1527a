//! How the case API shows a case: dates as ISO dates, amounts in euros,
//! names and addresses in the list, and whether a case is overdue.
//!
//! The stored [`CaseRecord`] keeps amounts in cents and birth dates as day
//! numbers (compact, exact); people read these views.

use serde::Serialize;
use serde_json::{Map, Value};
use vroeg_core::archive::{CaseRecord, CaseStatus, SignalDetail};
use vroeg_core::state::ContactPolicy;
use vroeg_core::time::{format_rfc3339, Day, Millis};

/// Euros from cents, as a JSON number with at most two decimals.
pub fn euros(cents: u64) -> f64 {
    cents as f64 / 100.0
}

/// One line of a case list.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub wijkteam: String,
    pub werkbak: String,
    pub status: CaseStatus,
    pub geopend: String,
    pub gesloten: Option<String>,
    pub prioriteit: u8,
    pub categorie: String,
    /// The moment a first contact attempt is overdue.
    pub contact_deadline: String,
    /// The last (Dutch) day on which a first attempt is in time.
    pub contact_uiterlijk: String,
    /// Open, no attempt, and the deadline passed.
    pub te_laat: bool,
    pub crisis: bool,
    pub escalaties: u32,
    pub contactpogingen: usize,
    pub signalen: usize,
    /// Initials, prefix and surname of the case's contact.
    pub naam: Option<String>,
    /// Street, number, postcode and town.
    pub adres: Option<String>,
    /// The partner types of the case's payment signals.
    pub partners: Vec<String>,
    /// The sum of the case's payment arrears, in euros.
    pub bedrag_euro: f64,
    /// The colleague the case is assigned to.
    pub medewerker: Option<String>,
}

/// Whether a case is overdue at `now`.
pub fn overdue(r: &CaseRecord, now: Millis) -> bool {
    crate::overdue(
        r.status,
        !r.contactpogingen.is_empty(),
        r.contact_deadline,
        now,
    )
}

impl Row {
    pub fn of(r: &CaseRecord, now: Millis) -> Row {
        let mut partners: Vec<String> = Vec::new();
        let mut cents = 0u64;
        for s in &r.signalen {
            if let SignalDetail::Betalingsachterstand {
                partner,
                bedrag_cent,
                ..
            } = &s.detail
            {
                let name = partner.as_str().to_owned();
                if !partners.contains(&name) {
                    partners.push(name);
                }
                cents = cents.saturating_add(*bedrag_cent);
            }
        }
        Row {
            id: r.id.clone(),
            wijkteam: r.wijkteam.to_string(),
            werkbak: r.werkbak.to_string(),
            status: r.status,
            geopend: format_rfc3339(r.geopend),
            gesloten: r.gesloten.map(format_rfc3339),
            prioriteit: r.prioriteit,
            categorie: r.categorie.to_string(),
            contact_deadline: format_rfc3339(r.contact_deadline),
            contact_uiterlijk: ContactPolicy::last_day(r.contact_deadline).to_string(),
            te_laat: overdue(r, now),
            crisis: crate::is_crisis(r),
            escalaties: r.escalaties,
            contactpogingen: r.contactpogingen.len(),
            signalen: r.signalen.len(),
            naam: r.contact.as_ref().map(|c| {
                let mut parts = vec![c.voorletters.trim().to_owned()];
                if let Some(v) = c.voorvoegsel.as_deref().filter(|v| !v.trim().is_empty()) {
                    parts.push(v.trim().to_owned());
                }
                parts.push(c.achternaam.trim().to_owned());
                parts.retain(|p| !p.is_empty());
                parts.join(" ")
            }),
            adres: r.contact.as_ref().map(|c| {
                format!(
                    "{} {}{}, {} {}",
                    c.straatnaam,
                    c.huisnummer,
                    c.huisnummertoevoeging.as_deref().unwrap_or(""),
                    c.postcode,
                    c.plaatsnaam
                )
            }),
            partners,
            bedrag_euro: euros(cents),
            medewerker: r.medewerker.clone(),
        }
    }
}

/// A whole case as the API shows it: the record, with amounts in euros
/// (`bedrag_euro` for `bedrag_cent`), birth dates as ISO dates, and
/// `te_laat` and `contact_uiterlijk` added.
pub fn detail(r: &CaseRecord, now: Millis) -> Value {
    let mut value = serde_json::to_value(r).unwrap_or(Value::Null);
    readable(&mut value);
    if let Value::Object(map) = &mut value {
        map.insert("te_laat".into(), Value::Bool(overdue(r, now)));
        map.insert(
            "contact_uiterlijk".into(),
            Value::String(ContactPolicy::last_day(r.contact_deadline).to_string()),
        );
        map.insert("crisis".into(), Value::Bool(crate::is_crisis(r)));
    }
    value
}

/// Rewrite, anywhere in `value`, `bedrag_cent` as `bedrag_euro` and a
/// day-number `geboortedatum` as an ISO date.
fn readable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            rewrite(map);
            for v in map.values_mut() {
                readable(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(readable),
        _ => {}
    }
}

fn rewrite(map: &mut Map<String, Value>) {
    if let Some(cents) = map.get("bedrag_cent").and_then(Value::as_u64) {
        map.remove("bedrag_cent");
        map.insert("bedrag_euro".into(), Value::from(euros(cents)));
    }
    if let Some(day) = map.get("geboortedatum").and_then(Value::as_i64) {
        map.insert(
            "geboortedatum".into(),
            Value::String(Day(day as i32).to_string()),
        );
    }
}
