//! Wijkteam routing: which team gets a household's case, by postcode.
//!
//! `config/wijkteams.yaml` maps 4-digit postcode areas, ranges of them, and
//! 6-digit exceptions to teams; an unmatched postcode goes to the default
//! team. A 6-digit exception wins over its area. Loading reports every
//! problem at once, each with `file:line:col`: unknown keys, duplicate team
//! ids, malformed entries, overlaps between teams, an unknown default.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;
use vroeg_core::Name;

use crate::diag::Diagnostics;
use crate::parse::at;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    /// The team for postcodes no team claims.
    standaard: Spanned<String>,
    teams: Vec<Spanned<RawTeam>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    id: Spanned<String>,
    #[serde(default)]
    naam: Option<String>,
    #[serde(default)]
    postcodes: Vec<Spanned<String>>,
}

/// A checked routing table.
#[derive(Clone, Debug)]
pub struct Routing {
    default: Name,
    /// 4-digit area -> team.
    areas: HashMap<u16, Name>,
    /// 6-digit postcode -> team.
    exact: HashMap<String, Name>,
    /// Team id -> display name.
    pub names: HashMap<String, String>,
}

/// One parsed postcode entry.
enum Entry {
    Area(u16),
    Range(u16, u16),
    Exact(String),
}

fn parse_entry(s: &str) -> Option<Entry> {
    let s = s.trim();
    let area = |t: &str| -> Option<u16> {
        let t = t.trim();
        (t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) && !t.starts_with('0'))
            .then(|| t.parse().ok())?
    };
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (area(a)?, area(b)?);
        return (a <= b).then_some(Entry::Range(a, b));
    }
    if let Some(a) = area(s) {
        return Some(Entry::Area(a));
    }
    vroeg_core::signal::normalise_postcode(s).map(Entry::Exact)
}

/// Route the areas `from..=to` to team `id`; the first area another team
/// already holds is reported as an overlap.
#[allow(clippy::too_many_arguments)]
fn claim_areas(
    from: u16,
    to: u16,
    id: &str,
    loc: (u64, u64),
    area_at: &mut HashMap<u16, (String, (u64, u64))>,
    routing: &mut Routing,
    diags: &mut Diagnostics,
    path: &Path,
) {
    for a in from..=to {
        if let Some((holder, (l, c))) = area_at.get(&a) {
            diags.push(
                path,
                loc,
                "overlap",
                format!("area {a} is already routed to team `{holder}` at line {l}, column {c}"),
            );
            return;
        }
        area_at.insert(a, (id.to_owned(), loc));
        routing.areas.insert(a, Name::from(id));
    }
}

/// The routing as the household step reads it (`vroeg_core::step`).
impl vroeg_core::Router for Routing {
    fn team_for(&self, postcode: Option<&str>) -> &Name {
        Routing::team_for(self, postcode)
    }
}

impl Routing {
    /// Every case to one team (no routing file).
    pub fn single(team: &str) -> Routing {
        Routing {
            default: Name::from(team),
            areas: HashMap::new(),
            exact: HashMap::new(),
            names: HashMap::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Routing, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut d = Diagnostics::default();
            d.push(path, (1, 1), "io", format!("cannot read file: {e}"));
            d
        })?;
        Self::from_source(path, &text)
    }

    pub fn from_source(path: &Path, text: &str) -> Result<Routing, Diagnostics> {
        let mut diags = Diagnostics::default();
        let raw: RawRouting = serde_saphyr::from_str(text).map_err(|e| {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let mut d = Diagnostics::default();
            let msg = e.without_snippet().to_string();
            d.push(
                path,
                (line, col),
                "yaml",
                msg.lines().next().unwrap_or("").to_owned(),
            );
            d
        })?;
        let mut routing = Routing::single(&raw.standaard.value);
        // Where each area and postcode was claimed, for overlap messages.
        let mut area_at: HashMap<u16, (String, (u64, u64))> = HashMap::new();
        let mut exact_at: HashMap<String, (String, (u64, u64))> = HashMap::new();
        for team in &raw.teams {
            let id = &team.value.id.value;
            if id.trim().is_empty() {
                diags.push(
                    path,
                    at(&team.value.id),
                    "invalid-id",
                    "a team id must not be empty",
                );
                continue;
            }
            if routing.names.contains_key(id) {
                diags.push(
                    path,
                    at(&team.value.id),
                    "duplicate-id",
                    format!("team `{id}` is defined twice"),
                );
                continue;
            }
            routing.names.insert(
                id.clone(),
                team.value.naam.clone().unwrap_or_else(|| id.clone()),
            );
            for pc in &team.value.postcodes {
                let loc = at(pc);
                match parse_entry(&pc.value) {
                    None => diags.push(
                        path,
                        loc,
                        "invalid-postcode",
                        format!(
                            "`{}` is not a 4-digit area (1234), a range (1000-1099) or a postcode (1234AB)",
                            pc.value
                        ),
                    ),
                    Some(Entry::Exact(p)) => match exact_at.get(&p) {
                        Some((holder, (l, c))) => diags.push(
                            path,
                            loc,
                            "overlap",
                            format!("postcode {p} is already routed to team `{holder}` at line {l}, column {c}"),
                        ),
                        None => {
                            exact_at.insert(p.clone(), (id.clone(), loc));
                            routing.exact.insert(p, Name::from(id));
                        }
                    },
                    Some(Entry::Area(a)) => {
                        claim_areas(a, a, id, loc, &mut area_at, &mut routing, &mut diags, path)
                    }
                    Some(Entry::Range(from, to)) => {
                        claim_areas(from, to, id, loc, &mut area_at, &mut routing, &mut diags, path)
                    }
                }
            }
        }
        if !routing.names.contains_key(&raw.standaard.value) {
            diags.push(
                path,
                at(&raw.standaard),
                "unknown-team",
                format!(
                    "the default team `{}` is not one of the teams",
                    raw.standaard.value
                ),
            );
        }
        diags.sort();
        if diags.has_errors() {
            Err(diags)
        } else {
            Ok(routing)
        }
    }

    /// The team for a normalised postcode (`1234AB`); the default team when
    /// no team claims it or there is none.
    pub fn team_for(&self, postcode: Option<&str>) -> &Name {
        let Some(pc) = postcode else {
            return &self.default;
        };
        if let Some(t) = self.exact.get(pc) {
            return t;
        }
        pc.get(..4)
            .and_then(|a| a.parse::<u16>().ok())
            .and_then(|a| self.areas.get(&a))
            .unwrap_or(&self.default)
    }

    /// A team's name from the routing file (`naam`), or its id.
    pub fn name<'a>(&'a self, team: &'a str) -> &'a str {
        self.names.get(team).map_or(team, String::as_str)
    }

    pub fn default_team(&self) -> &str {
        &self.default
    }

    /// Every team the table can route to: the default team and each team
    /// that claims a postcode, sorted.
    pub fn teams(&self) -> Vec<&str> {
        let mut teams: Vec<&str> = std::iter::once(self.default.as_str())
            .chain(self.areas.values().map(Name::as_str))
            .chain(self.exact.values().map(Name::as_str))
            .chain(self.names.keys().map(String::as_str))
            .collect();
        teams.sort_unstable();
        teams.dedup();
        teams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Routing, Diagnostics> {
        Routing::from_source(Path::new("wijkteams.yaml"), text)
    }

    #[test]
    fn areas_ranges_and_exceptions() {
        let r = load(
            "standaard: centrum\nteams:\n  - id: centrum\n  - id: noord\n    postcodes: ['1000-1019', '1021', '1030 ab']\n  - id: zuid\n    postcodes: ['1030', '1019ZZ']\n",
        )
        .unwrap();
        assert_eq!(r.team_for(Some("1005XY")), "noord");
        assert_eq!(r.team_for(Some("1021AA")), "noord");
        assert_eq!(
            r.team_for(Some("1030AB")),
            "noord",
            "a 6-digit exception wins over its area"
        );
        assert_eq!(r.team_for(Some("1030AC")), "zuid");
        assert_eq!(r.team_for(Some("1019ZZ")), "zuid");
        assert_eq!(r.team_for(Some("9999AA")), "centrum");
        assert_eq!(r.team_for(None), "centrum");
    }

    #[test]
    fn every_mistake_is_reported_with_its_location() {
        let err = load(
            "standaard: nergens\nteams:\n  - id: a\n    postcodes: ['1000-1010', '12345', '1020']\n  - id: b\n    postcodes: ['1005', '1020', '1111AA']\n  - id: a\n  - id: c\n    postcodes: ['1111 aa', '2000-1000']\n",
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "wijkteams.yaml:1:12: error[unknown-team]",
            "wijkteams.yaml:4:30: error[invalid-postcode]",
            "wijkteams.yaml:6:17: error[overlap]: area 1005 is already routed to team `a`",
            "wijkteams.yaml:6:25: error[overlap]: area 1020",
            "wijkteams.yaml:7:9: error[duplicate-id]",
            "wijkteams.yaml:9:17: error[overlap]: postcode 1111AA",
            "wijkteams.yaml:9:28: error[invalid-postcode]",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("standaard: a\nteams:\n  - id: a\n    postcode: ['1000']\n").unwrap_err();
        assert!(err.to_string().contains("wijkteams.yaml:4:"), "{err}");
    }
}
