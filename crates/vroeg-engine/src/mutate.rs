//! Rule coverage and mutation testing of rule tests.
//!
//! - [`coverage`]: for each rule, how often it fired in the tests, and how
//!   often it decided the case's priority or category (or chose the work
//!   queue), so that a rule no test exercises stands out.
//! - [`mutate`]: change each setting, each priority, each number and each
//!   comparison in the rule files, one at a time (the minimum amount
//!   doubled and halved, 6 months to 5 and 7, `>= 2` to `>= 1` and
//!   `>= 3`, `>=` to `>`, ...), run the tests against every such mutant,
//!   and list the mutants no test noticed: each is a change of policy the
//!   tests would let through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::testing::{rule_files_of, run_file_with, FileOutcome, TestFileError};
use vroeg_rules::Action;

/// How one rule fared in the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCoverage {
    pub file: PathBuf,
    pub id: String,
    /// `signaleren`, `onderdrukken` or `werkbak`.
    pub actie: &'static str,
    /// Evaluations in which its `when` held (for a work-queue rule: in
    /// which it chose the queue).
    pub fired: usize,
    /// Evaluations in which it set the priority (it had the highest).
    pub decided_priority: usize,
    /// Evaluations in which it set the category (first by id at the
    /// highest priority, as the engine chooses).
    pub decided_category: usize,
}

/// Coverage of every rule of the rule sets the test files ran against.
pub fn coverage(outcomes: &[FileOutcome]) -> Vec<RuleCoverage> {
    let mut out: BTreeMap<(PathBuf, String), RuleCoverage> = BTreeMap::new();
    for outcome in outcomes {
        for rule in outcome.rules.active_rules() {
            out.entry((rule.file.clone(), rule.id.to_string()))
                .or_insert_with(|| RuleCoverage {
                    file: rule.file.clone(),
                    id: rule.id.to_string(),
                    actie: match rule.action {
                        Action::Signaleren => "signaleren",
                        Action::Onderdrukken => "onderdrukken",
                        Action::Werkbak => "werkbak",
                    },
                    ..RuleCoverage::default()
                });
        }
        let queues: Vec<(&str, &PathBuf, &str)> = outcome
            .rules
            .active_rules()
            .filter(|r| r.action == Action::Werkbak)
            .filter_map(|r| r.werkbak.as_deref().map(|q| (q, &r.file, r.id.as_str())))
            .collect();
        let file_of: BTreeMap<&str, &PathBuf> = outcome
            .rules
            .active_rules()
            .map(|r| (r.id.as_str(), &r.file))
            .collect();
        for eval in outcome.tests.iter().flat_map(|t| &t.evaluations) {
            let mut bump = |id: &str, f: &dyn Fn(&mut RuleCoverage)| {
                if let Some(file) = file_of.get(id) {
                    if let Some(c) = out.get_mut(&((*file).clone(), id.to_owned())) {
                        f(c);
                    }
                }
            };
            let (top, category) = vroeg_rules::lint::decision(eval);
            for r in &eval.fired {
                let decided = r.prioriteit == top;
                let chose = Some(r.id.as_str()) == category;
                bump(&r.id, &|c| {
                    c.fired += 1;
                    c.decided_priority += usize::from(decided);
                    c.decided_category += usize::from(chose);
                });
            }
            for id in &eval.suppressed_by {
                bump(id, &|c| {
                    c.fired += 1;
                    c.decided_priority += 1;
                    c.decided_category += 1;
                });
            }
            if let Some(queue) = &eval.werkbak {
                // The rule that chose it: the first with that queue.
                if let Some((_, _, id)) = queues.iter().find(|(q, _, _)| q == queue) {
                    bump(id, &|c| {
                        c.fired += 1;
                        c.decided_priority += 1;
                        c.decided_category += 1;
                    });
                }
            }
        }
    }
    out.into_values().collect()
}

/// One change to a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutant {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    /// What changed, e.g. "`>=` to `>` in `aantal_partners_30d >= 2`".
    pub change: String,
    /// The whole file with the change.
    pub text: String,
}

const SETTINGS_DOUBLED: &[&str] = &["minimum_amount_euro"];
const SETTINGS_STEPPED: &[&str] = &[
    "lookback_months",
    "contact_deadline_days",
    "crisis_contact_working_days",
    "escalation_repeat_days",
];

fn number_text(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// The comparisons and what each is changed into.
const COMPARISONS: &[(&str, &str)] = &[
    (">=", ">"),
    ("<=", "<"),
    ("==", "!="),
    ("!=", "=="),
    (">", ">="),
    ("<", "<="),
];

/// A rule's block of lines: its id, its `actie`, and its `prioriteit` line.
struct Block {
    id: String,
    actie: String,
    /// (line index, column, value)
    prioriteit: Option<(usize, usize, i64)>,
}

fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if let Some(id) = t.strip_prefix("- id:") {
            out.push(Block {
                id: id.trim().to_owned(),
                actie: "signaleren".into(),
                prioriteit: None,
            });
            continue;
        }
        let Some(block) = out.last_mut() else {
            continue;
        };
        if let Some(a) = t.strip_prefix("actie:") {
            block.actie = a.split('#').next().unwrap_or("").trim().to_owned();
        } else if let Some(p) = t.strip_prefix("prioriteit:") {
            let value = p.split('#').next().unwrap_or("").trim();
            if let Ok(v) = value.parse::<i64>() {
                let col = line.len() - p.trim_start().len();
                block.prioriteit = Some((n, col, v));
            }
        }
    }
    out
}

/// Every mutant of a rule file's text:
/// - `minimum_amount_euro` doubled and halved; the other settings one
///   more and one less;
/// - a signalling rule's priority one more and one less (within 1 to 9);
///   a work-queue rule's priority only orders the queue rules, so the
///   priorities of each two neighbouring queue rules are swapped; a
///   suppression rule's priority means nothing and is left alone;
/// - in `when`: each whole number one more and one less (not below 0),
///   each decimal number doubled and halved, and each comparison changed
///   (`>=` and `>`, `<=` and `<`, `==` and `!=`).
pub fn mutants(file: &Path, text: &str) -> Vec<Mutant> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut push = |at: (usize, usize), change: String, edits: Vec<(usize, String)>| {
        let mut changed: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        for (n, line) in edits {
            changed[n] = line;
        }
        let mut text = changed.join("\n");
        text.push('\n');
        out.push(Mutant {
            file: file.to_owned(),
            line: at.0 as u64 + 1,
            col: at.1 as u64 + 1,
            change,
            text,
        });
    };
    let with_value = |n: usize, col: usize, old: &str, new: &str| {
        let line = lines[n];
        format!("{}{}", &line[..col], line[col..].replacen(old, new, 1))
    };
    let rule_blocks = blocks(&lines);
    for (n, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim_start_matches("- ").trim();
        let value_raw = value.split('#').next().unwrap_or("").trim();
        let at = indent + trimmed.find(value_raw).unwrap_or(0);
        if SETTINGS_DOUBLED.contains(&key) {
            if let Ok(x) = value_raw.parse::<f64>() {
                for (how, y) in [("doubled", x * 2.0), ("halved", x / 2.0)] {
                    let y = number_text(y);
                    push(
                        (n, at),
                        format!("`{key}` {how}: {value_raw} to {y}"),
                        vec![(n, with_value(n, at, value_raw, &y))],
                    );
                }
            }
        } else if SETTINGS_STEPPED.contains(&key) {
            if let Ok(x) = value_raw.parse::<i64>() {
                for y in [x - 1, x + 1].into_iter().filter(|y| *y >= 1) {
                    push(
                        (n, at),
                        format!("`{key}` {x} to {y}"),
                        vec![(n, with_value(n, at, value_raw, &y.to_string()))],
                    );
                }
            }
        } else if key == "when" && !value_raw.is_empty() && !value_raw.starts_with(['>', '|']) {
            for (pos, len, new, what) in expression_mutations(value_raw) {
                let expr = format!("{}{new}{}", &value_raw[..pos], &value_raw[pos + len..]);
                push(
                    (n, at + pos),
                    format!("{what} in `{value_raw}`"),
                    vec![(n, with_value(n, at, value_raw, &expr))],
                );
            }
        }
    }
    for b in rule_blocks.iter().filter(|b| b.actie == "signaleren") {
        let Some((n, col, x)) = b.prioriteit else {
            continue;
        };
        for y in [x - 1, x + 1].into_iter().filter(|y| (1..=9).contains(y)) {
            push(
                (n, col),
                format!("`prioriteit` of `{}` {x} to {y}", b.id),
                vec![(n, with_value(n, col, &x.to_string(), &y.to_string()))],
            );
        }
    }
    let mut queues: Vec<(&Block, (usize, usize, i64))> = rule_blocks
        .iter()
        .filter(|b| b.actie == "werkbak")
        .filter_map(|b| b.prioriteit.map(|p| (b, p)))
        .collect();
    queues.sort_by_key(|(_, (_, _, p))| std::cmp::Reverse(*p));
    for pair in queues.windows(2) {
        let [(a, (na, ca, pa)), (b, (nb, cb, pb))] = pair else {
            continue;
        };
        if pa == pb {
            continue;
        }
        push(
            (*na, *ca),
            format!(
                "the priorities of queue rules `{}` ({pa}) and `{}` ({pb}) swapped",
                a.id, b.id
            ),
            vec![
                (*na, with_value(*na, *ca, &pa.to_string(), &pb.to_string())),
                (*nb, with_value(*nb, *cb, &pb.to_string(), &pa.to_string())),
            ],
        );
    }
    out
}

/// The mutations of one expression: (byte offset, length, replacement,
/// description).
fn expression_mutations(expr: &str) -> Vec<(usize, usize, String, String)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let in_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if c.is_ascii_digit() && !in_word {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let literal = &expr[start..i];
            if let Ok(n) = literal.parse::<i64>() {
                for m in [n - 1, n + 1] {
                    if m >= 0 {
                        out.push((start, i - start, m.to_string(), format!("{n} to {m}")));
                    }
                }
            } else if let Ok(x) = literal.parse::<f64>() {
                for y in [x * 2.0, x / 2.0] {
                    let y = format!("{y:?}");
                    out.push((start, i - start, y.clone(), format!("{literal} to {y}")));
                }
            }
            continue;
        }
        if let Some((op, new)) = COMPARISONS.iter().find(|(op, _)| expr[i..].starts_with(op)) {
            out.push((i, op.len(), (*new).to_owned(), format!("`{op}` to `{new}`")));
            i += op.len();
            continue;
        }
        i += 1;
    }
    out
}

/// What the tests made of the mutants.
#[derive(Debug, Default)]
pub struct MutationReport {
    pub mutants: usize,
    pub killed: usize,
    /// Mutants whose rule set does not load (a priority of 10, say): not
    /// counted as killed or survived.
    pub invalid: usize,
    pub survivors: Vec<Mutant>,
}

/// Mutate every rule file the test files use and run the tests against
/// each mutant, on all cores.
pub fn mutate(test_files: &[PathBuf]) -> Result<MutationReport, TestFileError> {
    let mut users: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for t in test_files {
        for r in rule_files_of(t)? {
            users.entry(r).or_default().push(t.clone());
        }
    }
    let mut all = Vec::new();
    for (rule_file, tests) in &users {
        let text = std::fs::read_to_string(rule_file).map_err(|source| TestFileError::Io {
            file: rule_file.clone(),
            source,
        })?;
        for m in mutants(rule_file, &text) {
            all.push((m, tests.clone()));
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = all.len().div_ceil(workers).max(1);
    let verdicts: Vec<(Mutant, Verdict)> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(m, tests)| (m.clone(), verdict(m, tests)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(verdicts) => verdicts,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let mut report = MutationReport {
        mutants: verdicts.len(),
        ..MutationReport::default()
    };
    for (m, v) in verdicts {
        match v {
            Verdict::Killed => report.killed += 1,
            Verdict::Invalid => report.invalid += 1,
            Verdict::Survived => report.survivors.push(m),
        }
    }
    Ok(report)
}

enum Verdict {
    Killed,
    Survived,
    Invalid,
}

fn verdict(m: &Mutant, tests: &[PathBuf]) -> Verdict {
    let overrides = BTreeMap::from([(m.file.clone(), m.text.clone())]);
    for t in tests {
        match run_file_with(t, &overrides) {
            Err(TestFileError::Rules { .. }) => return Verdict::Invalid,
            Err(_) => return Verdict::Killed,
            Ok(outcome) if !outcome.passed() => return Verdict::Killed,
            Ok(_) => {}
        }
    }
    Verdict::Survived
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_settings_and_priorities_are_mutated_one_change_at_a_time() {
        let text = "settings:\n  minimum_amount_euro: 75\n  lookback_months: 6\nrules:\n  - id: meervoudig\n    when: aantal_partners_30d >= 2 && zorg_bedrag < 100.5\n    prioriteit: 9\n  - id: stil\n    when: crisis\n    actie: onderdrukken\n    prioriteit: 1\n  - id: a\n    when: crisis\n    actie: werkbak\n    prioriteit: 9\n  - id: b\n    when: crisis\n    actie: werkbak\n    prioriteit: 5\n";
        let ms = mutants(Path::new("r.yaml"), text);
        let changes: Vec<&str> = ms.iter().map(|m| m.change.as_str()).collect();
        assert_eq!(
            changes,
            [
                "`minimum_amount_euro` doubled: 75 to 150",
                "`minimum_amount_euro` halved: 75 to 37.5",
                "`lookback_months` 6 to 5",
                "`lookback_months` 6 to 7",
                "`>=` to `>` in `aantal_partners_30d >= 2 && zorg_bedrag < 100.5`",
                "2 to 1 in `aantal_partners_30d >= 2 && zorg_bedrag < 100.5`",
                "2 to 3 in `aantal_partners_30d >= 2 && zorg_bedrag < 100.5`",
                "`<` to `<=` in `aantal_partners_30d >= 2 && zorg_bedrag < 100.5`",
                "100.5 to 201.0 in `aantal_partners_30d >= 2 && zorg_bedrag < 100.5`",
                "100.5 to 50.25 in `aantal_partners_30d >= 2 && zorg_bedrag < 100.5`",
                "`prioriteit` of `meervoudig` 9 to 8",
                "the priorities of queue rules `a` (9) and `b` (5) swapped",
            ]
        );
        // The digits of a variable name are not a threshold; one change each.
        assert!(ms[4]
            .text
            .contains("aantal_partners_30d > 2 && zorg_bedrag < 100.5"));
        assert!(ms[0].text.contains("minimum_amount_euro: 150\n"));
        let swap = &ms[11].text;
        assert!(
            swap.contains("id: a\n    when: crisis\n    actie: werkbak\n    prioriteit: 5\n"),
            "{swap}"
        );
        assert!(
            swap.contains("id: b\n    when: crisis\n    actie: werkbak\n    prioriteit: 9\n"),
            "{swap}"
        );
        assert_eq!((ms[4].line, ms[4].col), (6, 31));
    }
}
