//! The monitor: the Divosa indicators per month, as server-rendered SVG
//! charts with their figures in tables beside them, and as CSV.
//!
//! Each month's figures are `vroeg_export::indicators` over that month:
//! the same function, on the same state, as `vroeg report` and
//! `GET /admin/export/rapport` with `van` and `tot` the month's first and
//! last day.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use vroeg_core::time::Day;
use vroeg_export::{Indicators, Period};

use super::tekst::maand;

/// One month of the monitor.
#[derive(Clone, Debug)]
pub struct Month {
    /// `2026-11`.
    pub key: String,
    /// `nov 2026`.
    pub label: String,
    pub period: Period,
}

/// The months from the one holding `from` through the one holding `to`.
pub fn months(from: Day, to: Day) -> Vec<Month> {
    let mut out = Vec::new();
    let first = from.to_date();
    let mut start = Day::parse(&format!(
        "{:04}-{:02}-01",
        first.year(),
        first.month() as u8
    ))
    .unwrap_or(from);
    while start <= to {
        let next = start.plus_months(1);
        let d = start.to_date();
        out.push(Month {
            key: format!("{:04}-{:02}", d.year(), d.month() as u8),
            label: format!("{} {}", &maand(d.month() as u8)[..3], d.year()),
            period: Period {
                from: start,
                to: next.plus_days(-1),
            },
        });
        start = next;
    }
    out
}

/// Parse `YYYY-MM` into the month's first day.
pub fn parse_month(text: &str) -> Option<Day> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    Day::parse(&format!("{y}-{m}-01"))
}

/// One series of a chart: its name and a value per month (or per team).
pub type Series = (String, Vec<f64>);

/// A chart with the table of its figures.
#[derive(Clone, Debug)]
pub struct Chart {
    pub id: &'static str,
    pub titel: String,
    /// What the figures count.
    pub eenheid: &'static str,
    /// The bar labels (months, or teams).
    pub labels: Vec<String>,
    pub series: Vec<Series>,
}

/// Colours with at least 4.5:1 contrast on white; the tables and the
/// legend's words carry the meaning, never the colour alone.
const COLOURS: [&str; 8] = [
    "#1f4e79", "#9c4a00", "#2e6b30", "#6a1b9a", "#a31515", "#00616b", "#5d4037", "#3d4f58",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as the tables and charts show it.
pub fn number(value: f64, eenheid: &str) -> String {
    if eenheid == "%" {
        format!("{:.1}%", value).replace('.', ",")
    } else {
        format!("{value:.0}")
    }
}

impl Chart {
    /// The chart as an SVG element: stacked bars, one per label, with a
    /// legend; every bar part has a tooltip with its figure.
    pub fn svg(&self) -> String {
        let (width, height, left, bottom, top) = (720.0_f64, 260.0_f64, 48.0, 40.0, 12.0);
        let n = self.labels.len().max(1) as f64;
        let totals: Vec<f64> = (0..self.labels.len())
            .map(|i| self.series.iter().map(|(_, v)| v[i]).sum())
            .collect();
        let max = totals.iter().copied().fold(0.0, f64::max);
        let mut scale_max = nice(max);
        if self.eenheid != "%" {
            // Counts: whole numbers at each of the four grid lines.
            scale_max = nice(max / 4.0).ceil().max(1.0) * 4.0;
        }
        // The legend: as many columns as its longest name allows.
        let longest = self
            .series
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        let column = (7.0 * longest as f64 + 28.0).clamp(120.0, width - left);
        let columns = (((width - left) / column).floor() as usize).max(1);
        let legend_rows = self.series.len().div_ceil(columns);
        let plot_h = height - bottom - top;
        let plot_w = width - left - 8.0;
        let slot = plot_w / n;
        let bar = (slot * 0.6).min(48.0);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="grafiek" role="img" aria-labelledby="{id}-titel" viewBox="0 0 {width} {}" xmlns="http://www.w3.org/2000/svg"><title id="{id}-titel">{}</title>"#,
            height + 24.0 * legend_rows as f64,
            escape(&self.titel),
            id = self.id,
        );
        for k in 0..=4 {
            let v = scale_max * f64::from(k) / 4.0;
            let y = top + plot_h - plot_h * f64::from(k) / 4.0;
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#c8c8c8"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#333">{}</text>"##,
                width - 8.0,
                left - 4.0,
                y + 4.0,
                number(v, self.eenheid)
            );
        }
        for (i, label) in self.labels.iter().enumerate() {
            let x = left + slot * i as f64 + (slot - bar) / 2.0;
            let mut y = top + plot_h;
            for (j, (name, values)) in self.series.iter().enumerate() {
                let v = values[i];
                if v <= 0.0 || scale_max <= 0.0 {
                    continue;
                }
                let h = plot_h * v / scale_max;
                y -= h;
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{}"><title>{}, {}: {}</title></rect>"#,
                    COLOURS[j % COLOURS.len()],
                    escape(label),
                    escape(name),
                    number(v, self.eenheid)
                );
            }
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#333">{}</text>"##,
                x + bar / 2.0,
                top + plot_h + 16.0,
                escape(label)
            );
        }
        for (j, (name, _)) in self.series.iter().enumerate() {
            let (col, row) = (j % columns, j / columns);
            let x = left + col as f64 * column;
            let y = height + row as f64 * 24.0 - 8.0;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{y:.1}" font-size="12" fill="#222">{}</text>"##,
                y - 10.0,
                COLOURS[j % COLOURS.len()],
                x + 16.0,
                escape(name)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// The figures as table rows: the label, then one cell per series.
    pub fn rows(&self) -> Vec<(String, Vec<String>)> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let cells = self
                    .series
                    .iter()
                    .map(|(_, v)| number(v[i], self.eenheid))
                    .collect();
                (label.clone(), cells)
            })
            .collect()
    }
}

/// A round upper bound for an axis.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A chart of one per-key figure of the indicators, per month.
fn per_key(
    id: &'static str,
    titel: &str,
    months: &[Month],
    figures: &[Indicators],
    pick: impl Fn(&Indicators) -> &BTreeMap<String, u64>,
) -> Chart {
    let keys: BTreeSet<&String> = figures.iter().flat_map(|f| pick(f).keys()).collect();
    Chart {
        id,
        titel: titel.to_owned(),
        eenheid: "aantal",
        labels: months.iter().map(|m| m.label.clone()).collect(),
        series: keys
            .into_iter()
            .map(|k| {
                let values = figures
                    .iter()
                    .map(|f| pick(f).get(k).copied().unwrap_or(0) as f64)
                    .collect();
                (k.clone(), values)
            })
            .collect(),
    }
}

/// The monitor's charts, for months and their figures, and the open and
/// overdue cases per team now.
pub fn charts(
    months: &[Month],
    figures: &[Indicators],
    teams: &BTreeMap<String, (u64, u64)>,
    team_name: impl Fn(&str) -> String,
) -> Vec<Chart> {
    let labels: Vec<String> = months.iter().map(|m| m.label.clone()).collect();
    vec![
        per_key("signalen", "Signalen per bron", months, figures, |f| {
            &f.signalen_per_bron
        }),
        per_key(
            "categorieen",
            "Geopende zaken per categorie",
            months,
            figures,
            |f| &f.zaken_per_categorie,
        ),
        Chart {
            id: "bereik",
            titel: "Bereik: geopende zaken waarin de inwoner is bereikt".into(),
            eenheid: "%",
            labels,
            series: vec![(
                "bereikt".into(),
                figures
                    .iter()
                    .map(|f| f.bereik.unwrap_or(0.0) * 100.0)
                    .collect(),
            )],
        },
        per_key(
            "contactsoorten",
            "Contactpogingen per soort",
            months,
            figures,
            |f| &f.contactpogingen_per_soort,
        ),
        per_key(
            "resultaten",
            "Gesloten zaken per resultaat",
            months,
            figures,
            |f| &f.resultaten,
        ),
        Chart {
            id: "te-laat",
            titel: "Open zaken per wijkteam, nu: op tijd en te laat".into(),
            eenheid: "aantal",
            labels: teams.keys().map(|t| team_name(t)).collect(),
            series: vec![
                (
                    "op tijd".into(),
                    teams.values().map(|(o, l)| (o - l) as f64).collect(),
                ),
                (
                    "te laat".into(),
                    teams.values().map(|(_, l)| *l as f64).collect(),
                ),
            ],
        },
    ]
}

/// The monitor's figures as CSV (`;`-separated, as Dutch spreadsheets
/// read it): `maand;indicator;sleutel;waarde`, one line per figure. Shares
/// are fractions with a decimal comma. The per-team line's month is `nu`.
pub fn csv(
    months: &[Month],
    figures: &[Indicators],
    teams: &BTreeMap<String, (u64, u64)>,
) -> String {
    let mut out = String::from("maand;indicator;sleutel;waarde\n");
    let share = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}").replace('.', ","));
    for (m, f) in months.iter().zip(figures) {
        let mut line = |indicator: &str, key: &str, value: String| {
            let _ = writeln!(out, "{};{indicator};{};{value}", m.key, csv_field(key));
        };
        for (k, v) in &f.signalen_per_bron {
            line("signalen_per_bron", k, v.to_string());
        }
        line("signalen", "", f.signalen.to_string());
        line("signalen_in_zaak", "", f.signalen_in_zaak.to_string());
        line("aandeel_signalen_zaak", "", share(f.aandeel_signalen_zaak));
        line("zaken_geopend", "", f.zaken_geopend.to_string());
        for (k, v) in &f.zaken_per_categorie {
            line("zaken_per_categorie", k, v.to_string());
        }
        line("zaken_bereikt", "", f.zaken_bereikt.to_string());
        line("bereik", "", share(f.bereik));
        for (k, v) in &f.contactpogingen_per_soort {
            line("contactpogingen_per_soort", k, v.to_string());
        }
        for (k, v) in &f.resultaten {
            line("resultaten", k, v.to_string());
        }
        line(
            "deadlines_beoordeeld",
            "",
            f.deadlines_beoordeeld.to_string(),
        );
        line("deadlines_gehaald", "", f.deadlines_gehaald.to_string());
        line(
            "aandeel_deadlines_gehaald",
            "",
            share(f.aandeel_deadlines_gehaald),
        );
    }
    for (team, (open, late)) in teams {
        let _ = writeln!(out, "nu;open_per_wijkteam;{};{open}", csv_field(team));
        let _ = writeln!(out, "nu;te_laat_per_wijkteam;{};{late}", csv_field(team));
    }
    out
}

/// A CSV field, quoted where it holds a separator, a quote or a newline.
fn csv_field(text: &str) -> String {
    if text.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_cover_the_period_whole() {
        let m = months(
            Day::parse("2026-10-15").unwrap(),
            Day::parse("2027-01-02").unwrap(),
        );
        let keys: Vec<&str> = m.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["2026-10", "2026-11", "2026-12", "2027-01"]);
        assert_eq!(m[1].period.from, Day::parse("2026-11-01").unwrap());
        assert_eq!(m[1].period.to, Day::parse("2026-11-30").unwrap());
        assert_eq!(m[1].label, "nov 2026");
        assert_eq!(parse_month("2026-02"), Day::parse("2026-02-01"));
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("26-01"), None);
    }

    #[test]
    fn charts_escape_their_labels_and_show_every_figure() {
        let chart = Chart {
            id: "t",
            titel: "A & B".into(),
            eenheid: "aantal",
            labels: vec!["<x>".into(), "y".into()],
            series: vec![
                ("s\"1".into(), vec![3.0, 0.0]),
                ("s2".into(), vec![1.0, 2.0]),
            ],
        };
        let svg = chart.svg();
        assert!(svg.contains("A &amp; B") && svg.contains("&lt;x&gt;") && svg.contains("s&quot;1"));
        assert!(!svg.contains("<x>"));
        // Three non-zero parts, each with its figure.
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2, "{svg}");
        assert_eq!(
            chart.rows(),
            vec![
                ("<x>".to_owned(), vec!["3".to_owned(), "1".to_owned()]),
                ("y".to_owned(), vec!["0".to_owned(), "2".to_owned()])
            ]
        );
        // Counts get whole numbers on every grid line: 0 to 4 here.
        for tick in 0..=4 {
            assert!(svg.contains(&format!(">{tick}</text>")), "{svg}");
        }
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(230.0), 250.0);
    }

    #[test]
    fn the_csv_holds_every_figure_and_quotes_separators() {
        let m = months(
            Day::parse("2026-11-01").unwrap(),
            Day::parse("2026-11-30").unwrap(),
        );
        let mut f = Indicators::default();
        f.signalen_per_bron.insert("Zorg".into(), 4);
        f.zaken_geopend = 2;
        f.bereik = Some(0.5);
        let teams = BTreeMap::from([("a;b".to_owned(), (5, 2))]);
        let text = csv(&m, &[f], &teams);
        assert!(
            text.contains("2026-11;signalen_per_bron;Zorg;4\n"),
            "{text}"
        );
        assert!(text.contains("2026-11;bereik;;0,5\n"), "{text}");
        assert!(
            text.contains("nu;te_laat_per_wijkteam;\"a;b\";2\n"),
            "{text}"
        );
    }
}
