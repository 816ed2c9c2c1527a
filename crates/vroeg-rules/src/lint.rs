//! Lints: warnings about rules that load and type-check, but cannot do
//! what their author meant. `vroeg rules check` prints them; they never
//! stop a rule set from loading.
//!
//! They are found by evaluating the whole rule set, as the engine does, on
//! a fixed sample of representative households: each has one to a few
//! partners with arrears (the usual four most often), amounts spread from
//! a few euros to thousands, days of arrears, repeats, crisis and end of
//! supply now and then, and the household-wide variables derived from
//! those, so that they agree with each other as the engine's would. The
//! sample is the same on every run (a fixed seed), so a lint is
//! reproducible.
//!
//! - `never-fires`: a signalling rule whose `when` holds for none of them;
//! - `never-decides`: a signalling rule that fires, but whenever it does a
//!   rule of higher priority fires too, so it never sets a case's priority
//!   or category; the warning names the rule that decides instead;
//! - `suppresses-everything`: a suppression rule that fires on every
//!   household that would get a case;
//! - `queue-never-chosen`: a work-queue rule that never puts a case in its
//!   queue (it never fires on a household that gets a case, or another
//!   queue rule of higher priority always wins).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vroeg_core::signal::PartnerType;
use vroeg_core::vars::{index_of, Purpose, VarValue, Variables};

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::ruleset::{Action, RuleSet};

/// How many households the lints evaluate.
pub const SAMPLES: usize = 20_000;
/// The sample's seed: the same households on every run.
const SEED: u64 = 20_261_126;

/// The partner types most households' arrears come from.
const COMMON: [PartnerType; 4] = [
    PartnerType::Huur,
    PartnerType::Zorg,
    PartnerType::Energie,
    PartnerType::Water,
];

fn set(vars: &mut Variables, name: &str, value: VarValue) {
    if let Some(i) = index_of(name) {
        vars.values[i] = value;
    }
}

/// One representative household's variables.
fn household(rng: &mut ChaCha8Rng, minimum: f64, school: bool) -> Variables {
    loop {
        let mut vars = Variables::zeroes();
        let mut open = 0i64;
        let mut recent = 0i64;
        let mut open_signals = 0i64;
        let (mut total, mut highest) = (0.0f64, 0.0f64);
        let mut any = false;
        let mut newest_repeat = false;
        let mut newest_rise = false;
        let mut oldest_open_days = 0i64;
        let mut energie = false;
        for partner in PartnerType::ALL {
            let p = if COMMON.contains(partner) { 0.35 } else { 0.03 };
            if !rng.random_bool(p) {
                continue;
            }
            any = true;
            let prefix = partner.var_prefix();
            // Log-uniform from 10 to 5,000 euro, in cents.
            let amount = (10f64 * 500f64.powf(rng.random::<f64>()) * 100.0).round() / 100.0;
            let signals = rng.random_range(1..=4i64);
            let is_open = amount >= minimum && rng.random_bool(0.9);
            let repeat = signals > 1 && rng.random_bool(0.5);
            let rise = repeat && rng.random_bool(0.4);
            let days = if is_open {
                rng.random_range(0..=400i64)
            } else {
                0
            };
            highest = highest.max(amount);
            set(
                &mut vars,
                &format!("{prefix}_signalen"),
                VarValue::Int(signals),
            );
            set(
                &mut vars,
                &format!("{prefix}_herhaling"),
                VarValue::Bool(repeat),
            );
            set(
                &mut vars,
                &format!("{prefix}_bedrag_gestegen"),
                VarValue::Bool(rise),
            );
            if is_open {
                open += 1;
                recent += i64::from(rng.random_bool(0.7));
                open_signals += rng.random_range(1..=signals);
                total += amount;
                oldest_open_days = oldest_open_days.max(days);
                set(&mut vars, &format!("{prefix}_open"), VarValue::Bool(true));
                set(
                    &mut vars,
                    &format!("{prefix}_bedrag"),
                    VarValue::Float(amount),
                );
                set(
                    &mut vars,
                    &format!("{prefix}_dagen_achterstand"),
                    VarValue::Int(days),
                );
            }
            if *partner == PartnerType::Energie {
                energie = true;
            }
            // The newest signal: any of them.
            if rng.random_bool(0.5) || !newest_repeat && !newest_rise {
                newest_repeat = repeat;
                newest_rise = rise;
            }
        }
        if !any {
            continue;
        }
        set(&mut vars, "aantal_partners_open", VarValue::Int(open));
        set(&mut vars, "aantal_partners_30d", VarValue::Int(recent));
        set(
            &mut vars,
            "aantal_open_signalen",
            VarValue::Int(open_signals),
        );
        set(&mut vars, "totaal_bedrag_open", VarValue::Float(total));
        set(&mut vars, "hoogste_bedrag_open", VarValue::Float(highest));
        set(&mut vars, "minimum_bedrag", VarValue::Float(minimum));
        set(
            &mut vars,
            "eerder_signaal_6m",
            VarValue::Bool(rng.random_bool(0.3)),
        );
        set(&mut vars, "crisis", VarValue::Bool(rng.random_bool(0.05)));
        set(
            &mut vars,
            "eindelevering",
            VarValue::Bool(energie && rng.random_bool(0.1)),
        );
        set(&mut vars, "herhaling", VarValue::Bool(newest_repeat));
        set(&mut vars, "bedrag_gestegen", VarValue::Bool(newest_rise));
        set(
            &mut vars,
            "dagen_sinds_eerste_open",
            VarValue::Int(oldest_open_days),
        );
        set(
            &mut vars,
            "dagen_sinds_laatste_signaal",
            VarValue::Int(rng.random_range(0..=60)),
        );
        set(
            &mut vars,
            "leeftijd",
            VarValue::Int(rng.random_range(18..=95)),
        );
        if school && rng.random_bool(0.3) {
            set(
                &mut vars,
                "verzuim_uren_4w",
                VarValue::Int(rng.random_range(0..=40)),
            );
            set(
                &mut vars,
                "verzuim_meldingen_90d",
                VarValue::Int(rng.random_range(1..=5)),
            );
            set(
                &mut vars,
                "verzuim_langdurig",
                VarValue::Bool(rng.random_bool(0.1)),
            );
        }
        return vars;
    }
}

/// The fixed sample of representative households for a rule set.
pub fn households(rules: &RuleSet, n: usize) -> Vec<Variables> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let minimum = rules.settings.minimum_amount_cent as f64 / 100.0;
    let school = rules.active_rules().any(|r| r.purpose == Purpose::School);
    (0..n)
        .map(|_| household(&mut rng, minimum, school))
        .collect()
}

#[derive(Default)]
struct Tally {
    fired: usize,
    decided: usize,
    /// When it fired and did not decide: who decided, how often.
    deciders: BTreeMap<String, usize>,
    /// Suppression: fired on a household that would get a case.
    suppressed: usize,
    /// Queue: fired on a household that gets a case; chose the queue.
    fired_on_case: usize,
    chosen: usize,
    winners: BTreeMap<String, usize>,
}

/// What an evaluation decides, as the engine decides it: the highest
/// priority of the signalling rules that fired, and the rule whose
/// category the case gets (the first by id at that priority).
pub fn decision(eval: &vroeg_core::Evaluation) -> (u8, Option<&str>) {
    let top = eval.fired.iter().map(|r| r.prioriteit).max().unwrap_or(0);
    let category = eval
        .fired
        .iter()
        .filter(|r| r.prioriteit == top)
        .map(|r| r.id.as_str())
        .min();
    (top, category)
}

/// Every lint of a rule set, as warnings at the rules they concern.
pub fn lint(rules: &RuleSet) -> Diagnostics {
    lint_on(rules, &households(rules, SAMPLES))
}

/// The lints on a given sample (tests use small, chosen ones).
pub fn lint_on(rules: &RuleSet, sample: &[Variables]) -> Diagnostics {
    let mut tally: BTreeMap<&str, Tally> = rules
        .active_rules()
        .map(|r| (r.id.as_str(), Tally::default()))
        .collect();
    let by_id: BTreeMap<&str, &crate::ruleset::CompiledRule> =
        rules.active_rules().map(|r| (r.id.as_str(), r)).collect();
    let mut would_open = 0usize;
    for vars in sample {
        let (eval, _) = rules.evaluate(vars);
        if eval.fired.is_empty() {
            continue;
        }
        would_open += 1;
        for id in &eval.suppressed_by {
            if let Some(t) = tally.get_mut(id.as_str()) {
                t.suppressed += 1;
            }
        }
        let (top, category) = decision(&eval);
        let category = category.unwrap_or("");
        for r in &eval.fired {
            let Some(t) = tally.get_mut(r.id.as_str()) else {
                continue;
            };
            t.fired += 1;
            if r.prioriteit == top {
                t.decided += 1;
            } else {
                *t.deciders.entry(category.to_owned()).or_default() += 1;
            }
        }
        if !eval.suppressed_by.is_empty() {
            continue;
        }
        // The queue, as the engine chooses it: the highest-priority queue
        // rule that fired, the first in the files on a tie. Each queue rule
        // is evaluated once.
        let fired: Vec<&crate::ruleset::CompiledRule> = rules
            .active_rules()
            .filter(|r| r.action == Action::Werkbak && rules.fires(r, vars))
            .collect();
        let mut winner: Option<&crate::ruleset::CompiledRule> = None;
        for &rule in &fired {
            if let Some(t) = tally.get_mut(rule.id.as_str()) {
                t.fired_on_case += 1;
            }
            if winner.is_none_or(|w| rule.prioriteit > w.prioriteit) {
                winner = Some(rule);
            }
        }
        if let Some(w) = winner {
            for rule in fired.iter().filter(|r| r.id != w.id) {
                if let Some(t) = tally.get_mut(rule.id.as_str()) {
                    *t.winners.entry(w.id.to_string()).or_default() += 1;
                }
            }
            if let Some(t) = tally.get_mut(w.id.as_str()) {
                t.chosen += 1;
            }
        }
    }
    let mut out = Diagnostics::default();
    let n = sample.len();
    for rule in rules.active_rules() {
        let t = &tally[rule.id.as_str()];
        let warn = |code: &'static str, message: String| Diagnostic {
            file: rule.file.clone(),
            line: rule.line,
            col: rule.col,
            severity: Severity::Warning,
            code,
            message,
        };
        match rule.action {
            Action::Signaleren if t.fired == 0 => out.0.push(warn(
                "never-fires",
                format!(
                    "rule `{}` fires on none of {n} representative households: check the thresholds and names in its `when`",
                    rule.id
                ),
            )),
            Action::Signaleren if t.decided == 0 => {
                let (shadow, _) = t
                    .deciders
                    .iter()
                    .max_by_key(|(_, count)| **count)
                    .map(|(id, c)| (id.as_str(), *c))
                    .unwrap_or(("", 0));
                let shadow_priority = by_id.get(shadow).map_or(0, |r| r.prioriteit);
                out.0.push(warn(
                    "never-decides",
                    format!(
                        "rule `{}` (priority {}) never decides a case's priority or category: on every representative household where it fires, a rule of higher priority fires too, most often `{shadow}` (priority {shadow_priority}); raise its priority above that, or make it exclude those households",
                        rule.id, rule.prioriteit
                    ),
                ));
            }
            Action::Onderdrukken if would_open > 0 && t.suppressed == would_open => {
                out.0.push(warn(
                    "suppresses-everything",
                    format!(
                        "suppression rule `{}` fires on every representative household that would get a case ({would_open} of {n}): it stops every case",
                        rule.id
                    ),
                ))
            }
            Action::Werkbak if t.chosen == 0 => {
                let queue = rule.werkbak.as_deref().unwrap_or("");
                let message = match t.winners.iter().max_by_key(|(_, c)| **c) {
                    Some((winner, _)) if t.fired_on_case > 0 => format!(
                        "work-queue rule `{}` never puts a case in `{queue}`: wherever it fires, `{winner}` (priority {}) wins with a higher priority",
                        rule.id,
                        by_id.get(winner.as_str()).map_or(0, |r| r.prioriteit)
                    ),
                    _ => format!(
                        "work-queue rule `{}` never puts a case in `{queue}`: it fires on none of the representative households that get a case",
                        rule.id
                    ),
                };
                out.0.push(warn("queue-never-chosen", message));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::LoadOptions;
    use std::path::{Path, PathBuf};

    fn shipped(extra: &str) -> RuleSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/regels.yaml");
        let text = std::fs::read_to_string(&path).unwrap() + extra;
        RuleSet::from_sources(
            &[(PathBuf::from("regels.yaml"), text)],
            &LoadOptions::default(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn the_shipped_rules_draw_no_lint() {
        let found = lint(&shipped(""));
        assert!(found.0.is_empty(), "{found}");
    }

    #[test]
    fn a_new_rule_under_crisis_is_reported_with_the_rule_that_shadows_it() {
        // The policy officer's task: end of supply plus rent arrears, 8.
        let rules = shipped(
            "
  - id: einde-levering-en-huur
    description: Einde levering en een huurachterstand.
    when: eindelevering && huur_open
    categorie: meervoudig
    prioriteit: 8
",
        );
        let found = lint(&rules);
        assert_eq!(found.0.len(), 1, "{found}");
        let d = &found.0[0];
        assert_eq!((d.code, d.severity), ("never-decides", Severity::Warning));
        assert!(d.message.contains("`crisis` (priority 9)"), "{}", d.message);
        // At priority 9 it ties with crisis and decides the priority too.
        let rules = shipped(
            "
  - id: einde-levering-en-huur
    description: Einde levering en een huurachterstand.
    when: eindelevering && huur_open
    categorie: meervoudig
    prioriteit: 9
",
        );
        assert!(lint(&rules).0.is_empty());
    }

    #[test]
    fn the_sample_is_the_same_on_every_run_and_consistent() {
        let rules = shipped("");
        let (a, b) = (households(&rules, 200), households(&rules, 200));
        assert_eq!(
            a.iter().map(|v| v.values.clone()).collect::<Vec<_>>(),
            b.iter().map(|v| v.values.clone()).collect::<Vec<_>>()
        );
        for v in &a {
            let get = |n: &str| v.get(n).unwrap();
            let open = PartnerType::ALL
                .iter()
                .filter(|p| get(&format!("{}_open", p.var_prefix())) == VarValue::Bool(true))
                .count() as i64;
            assert_eq!(get("aantal_partners_open"), VarValue::Int(open));
        }
    }
}
