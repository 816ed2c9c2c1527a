//! Loading, validating, compiling and evaluating a rule set.
//!
//! Loading follows a raw-then-validate pattern: every file is read into its
//! located raw form, then each field is checked and converted, and every
//! problem is collected with its `file:line:col`. Only a rule set without
//! errors is returned.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::fast::Condition;
use evalexpr::{build_operator_tree, Node, Value as EValue};
use serde_json::Value;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use vroeg_core::case::{Evaluation, FiredRule};
use vroeg_core::state::{ContactPolicy, StateSettings};
use vroeg_core::time::Day;
use vroeg_core::vars::{catalogue, Purpose, Variables};
use vroeg_core::Name;

use crate::context::{index, VarContext};
use crate::diag::Diagnostics;
use crate::parse::{at, LocatedMap, RawRuleFile};

/// Rule-set settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Open arrears below this amount do not count (default €75).
    pub minimum_amount_cent: u64,
    /// How far back signals count, in months (default 6).
    pub lookback_months: u32,
    /// Contact deadlines and escalation.
    pub contact: ContactPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            minimum_amount_cent: 7_500,
            lookback_months: 6,
            contact: ContactPolicy::default(),
        }
    }
}

/// What a rule does when its `when` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open or update the household's case (the default).
    Signaleren,
    /// Stop this evaluation from opening or updating a case.
    Onderdrukken,
    /// Put the case in the work queue named by the rule's `werkbak`.
    Werkbak,
}

/// Options that come from the deployment, not from the rule files.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Whether the municipality has enabled combining school-absence data
    /// with debt data (the AVG purpose binding).
    pub school_purpose: bool,
    /// Do not escalate overdue cases (replays of history without feedback).
    pub no_escalation: bool,
}

/// One checked and compiled rule.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub id: Name,
    pub description: String,
    pub when: String,
    pub categorie: Name,
    pub prioriteit: u8,
    pub labels: Vec<String>,
    pub enabled: bool,
    pub version: u32,
    pub action: Action,
    /// With `actie: werkbak`: the work queue.
    pub werkbak: Option<Name>,
    pub purpose: Purpose,
    /// Whether the rule takes part in evaluation: enabled, and its purpose
    /// is allowed.
    pub active: bool,
    /// Catalogue indices of the variables `when` reads.
    pub reads: Vec<usize>,
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
    node: Node,
    /// `when` compiled to evaluate without allocating, where it can be
    /// (see `fast.rs`); evalexpr evaluates the rest.
    condition: Option<Condition>,
}

impl CompiledRule {
    /// Whether `when` holds for `vars`: by the compiled condition where it
    /// has one and can tell, else by evalexpr (with its error). `context`
    /// is made only when evalexpr is asked.
    fn holds(
        &self,
        vars: &Variables,
        context: &mut Option<VarContext>,
    ) -> Result<bool, evalexpr::EvalexprError> {
        if let Some(truth) = self.condition.as_ref().and_then(|c| c.eval(vars)) {
            return Ok(truth);
        }
        let ctx = context.get_or_insert_with(|| VarContext::new(vars));
        self.node.eval_boolean_with_context(ctx)
    }
}

/// A rule failed at evaluation time. `rules check` makes this rare; the
/// engine counts and logs it and carries on without that rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}` ({file}:{line}) failed to evaluate: {message}")]
pub struct RuleEvalError {
    pub rule: String,
    pub file: String,
    pub line: u64,
    pub message: String,
}

/// A loaded, checked rule set.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub settings: Settings,
    pub rules: Vec<CompiledRule>,
    /// Content hash of the rule files (first 16 hex digits of SHA-256).
    pub version: Name,
    pub options: LoadOptions,
    pub files: Vec<PathBuf>,
}

const BUILTIN_CATEGORIES: &[&str] = &[
    "enkelvoudig",
    "meervoudig",
    "opeenvolgend",
    "crisis",
    "gezin",
];
const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "when",
    "categorie",
    "prioriteit",
    "labels",
    "enabled",
    "version",
    "actie",
    "doel",
    "werkbak",
];
const SETTINGS_KEYS: &[&str] = &[
    "minimum_amount_euro",
    "lookback_months",
    "contact_deadline_days",
    "crisis_contact_working_days",
    "escalation_repeat_days",
    "holidays",
];

/// The rules as the household step reads them (`vroeg_core::step`).
impl vroeg_core::Evaluator for RuleSet {
    fn version(&self) -> &Name {
        &self.version
    }

    fn evaluate(&self, vars: &Variables) -> (Evaluation, Vec<vroeg_core::RuleError>) {
        let (evaluation, errors) = RuleSet::evaluate(self, vars);
        let errors = errors
            .into_iter()
            .map(|e| vroeg_core::RuleError {
                message: e.to_string(),
                rule: e.rule,
            })
            .collect();
        (evaluation, errors)
    }
}

impl RuleSet {
    /// The rule files a list of paths names: each file as given, and the
    /// `*.yaml` / `*.yml` files directly inside each directory, sorted.
    pub fn files_in(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostics> {
        let mut files = Vec::new();
        let mut diags = Diagnostics::default();
        for path in paths {
            if path.is_dir() {
                match std::fs::read_dir(path) {
                    Ok(entries) => {
                        let mut found: Vec<PathBuf> = entries
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| {
                                p.is_file()
                                    && matches!(
                                        p.extension().and_then(|e| e.to_str()),
                                        Some("yaml" | "yml")
                                    )
                            })
                            .collect();
                        found.sort();
                        if found.is_empty() {
                            diags.push(
                                path,
                                (1, 1),
                                "no-rule-files",
                                "directory holds no .yaml or .yml files",
                            );
                        }
                        files.extend(found);
                    }
                    Err(e) => diags.push(path, (1, 1), "io", format!("cannot read directory: {e}")),
                }
            } else {
                files.push(path.clone());
            }
        }
        if diags.has_errors() {
            Err(diags)
        } else {
            Ok(files)
        }
    }

    /// Read, check and compile the rule files under `paths`. Returns the rule
    /// set with any warnings, or every problem found.
    pub fn load(
        paths: &[PathBuf],
        options: &LoadOptions,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        let files = Self::files_in(paths)?;
        let mut sources = Vec::new();
        let mut diags = Diagnostics::default();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => diags.push(&file, (1, 1), "io", format!("cannot read file: {e}")),
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        Self::from_sources(&sources, options)
    }

    /// Check and compile rule files given as (path, text) pairs.
    pub fn from_sources(
        sources: &[(PathBuf, String)],
        options: &LoadOptions,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut settings: Option<(Settings, PathBuf, (u64, u64))> = None;
        let mut rules: Vec<CompiledRule> = Vec::new();
        let mut seen_ids: HashMap<String, (PathBuf, u64, u64)> = HashMap::new();
        for (file, text) in sources {
            let raw: RawRuleFile = match serde_saphyr::from_str(text) {
                Ok(raw) => raw,
                Err(e) => {
                    let (line, col) = e
                        .location()
                        .map(|l| (l.line(), l.column()))
                        .unwrap_or((1, 1));
                    diags.push(file, (line, col), "yaml", clean_yaml_error(&e));
                    continue;
                }
            };
            if let Some(raw_settings) = raw.settings {
                let parsed = parse_settings(file, &raw_settings.value, &mut diags);
                match &settings {
                    Some((_, first_file, (l, c))) => diags.push(
                        file,
                        at(&raw_settings),
                        "duplicate-settings",
                        format!(
                            "settings are already given at {}:{l}:{c}; give them in one file",
                            first_file.display()
                        ),
                    ),
                    None => settings = Some((parsed, file.clone(), at(&raw_settings))),
                }
            }
            let Some(raw_rules) = raw.rules else {
                continue;
            };
            for raw_rule in raw_rules {
                if let Some(rule) = parse_rule(file, text, &raw_rule, options, &mut diags) {
                    if let Some((f, l, c)) = seen_ids.get(rule.id.as_str()) {
                        diags.push(
                            file,
                            rule_id_location(&raw_rule),
                            "duplicate-id",
                            format!(
                                "rule id `{}` is already used at {}:{l}:{c}",
                                rule.id,
                                f.display()
                            ),
                        );
                        continue;
                    }
                    let (l, c) = rule_id_location(&raw_rule);
                    seen_ids.insert(rule.id.to_string(), (file.clone(), l, c));
                    rules.push(rule);
                }
            }
        }
        if rules.is_empty() && !diags.has_errors() {
            if let Some((file, _)) = sources.first() {
                diags.push(file, (1, 1), "no-rules", "the rule set holds no rules");
            }
        }
        diags.sort();
        if diags.has_errors() {
            return Err(diags);
        }
        let mut hasher = Sha256::new();
        for (file, text) in sources {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        let version = hex::encode(&hasher.finalize()[..8]);
        Ok((
            RuleSet {
                settings: settings.map(|s| s.0).unwrap_or_default(),
                rules,
                version: version.into(),
                options: options.clone(),
                files: sources.iter().map(|(f, _)| f.clone()).collect(),
            },
            diags,
        ))
    }

    /// The state settings these rules imply.
    pub fn state_settings(&self) -> StateSettings {
        StateSettings {
            lookback_months: self.settings.lookback_months,
            minimum_cent: self.settings.minimum_amount_cent,
            school_purpose: self.options.school_purpose,
            contact: ContactPolicy {
                escalate: !self.options.no_escalation,
                ..self.settings.contact.clone()
            },
            personal_data: true,
        }
    }

    /// Evaluate every active rule against one household's variables.
    pub fn evaluate(&self, vars: &Variables) -> (Evaluation, Vec<RuleEvalError>) {
        let mut ctx = None;
        let mut eval = Evaluation::default();
        let mut errors = Vec::new();
        let mut read: Vec<usize> = Vec::new();
        let mut queue_priority: Option<u8> = None;
        for rule in self.rules.iter().filter(|r| r.active) {
            match rule.holds(vars, &mut ctx) {
                Ok(false) => {}
                Ok(true) => {
                    read.extend_from_slice(&rule.reads);
                    match rule.action {
                        Action::Onderdrukken => eval.suppressed_by.push(rule.id.clone()),
                        Action::Werkbak => {
                            // The highest-priority queue rule wins; on a tie,
                            // the first in the rule files.
                            if queue_priority.is_none_or(|p| rule.prioriteit > p) {
                                queue_priority = Some(rule.prioriteit);
                                eval.werkbak = rule.werkbak.clone();
                            }
                        }
                        Action::Signaleren => eval.fired.push(FiredRule {
                            id: rule.id.clone(),
                            version: rule.version,
                            categorie: rule.categorie.clone(),
                            prioriteit: rule.prioriteit,
                            labels: rule.labels.clone(),
                            reads_school: rule.purpose == Purpose::School,
                        }),
                    }
                }
                Err(e) => errors.push(RuleEvalError {
                    rule: rule.id.to_string(),
                    file: rule.file.display().to_string(),
                    line: rule.line,
                    message: e.to_string(),
                }),
            }
        }
        read.sort_unstable();
        read.dedup();
        let cat = catalogue();
        eval.variables = read
            .into_iter()
            .map(|i| (cat[i].name.as_str(), vars.values[i]))
            .collect();
        eval.variables.sort_unstable_by_key(|(name, _)| *name);
        (eval, errors)
    }

    /// Whether one rule's `when` holds for these variables (an evaluation
    /// error counts as not holding, as in the engine).
    pub fn fires(&self, rule: &CompiledRule, vars: &Variables) -> bool {
        rule.holds(vars, &mut None).unwrap_or(false)
    }

    pub fn active_rules(&self) -> impl Iterator<Item = &CompiledRule> {
        self.rules.iter().filter(|r| r.active)
    }
}

/// serde-saphyr's message without the location it also carries (we print
/// the location in front, as `file:line:col`).
fn clean_yaml_error(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches(':').to_owned()
}

fn rule_id_location(rule: &Spanned<LocatedMap>) -> (u64, u64) {
    rule.value
        .0
        .iter()
        .find(|(k, _)| k.value == "id")
        .map(|(_, v)| at(v))
        .unwrap_or_else(|| at(rule))
}

/// Levenshtein distance, for "did you mean" hints.
fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min()
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Check keys of a located map: unknown and duplicate keys are problems.
fn check_keys(file: &Path, map: &LocatedMap, known: &[&str], what: &str, diags: &mut Diagnostics) {
    let mut seen: HashMap<&str, (u64, u64)> = HashMap::new();
    for (key, _) in &map.0 {
        if !known.contains(&key.value.as_str()) {
            diags.push(
                file,
                at(key),
                "unknown-key",
                format!(
                    "unknown key `{}` in {what}{}; known keys: {}",
                    key.value,
                    suggest(&key.value, known.iter().copied()),
                    known.join(", ")
                ),
            );
        }
        if let Some((l, c)) = seen.insert(key.value.as_str(), at(key)) {
            diags.push(
                file,
                at(key),
                "duplicate-key",
                format!(
                    "key `{}` is already given at line {l}, column {c}",
                    key.value
                ),
            );
        }
    }
}

fn get<'m>(map: &'m LocatedMap, key: &str) -> Option<&'m Spanned<Value>> {
    map.0.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
}

fn parse_settings(file: &Path, map: &LocatedMap, diags: &mut Diagnostics) -> Settings {
    check_keys(file, map, SETTINGS_KEYS, "settings", diags);
    let mut s = Settings::default();
    if let Some(v) = get(map, "minimum_amount_euro") {
        match v.value.as_f64() {
            Some(euro) if (0.0..=1_000_000.0).contains(&euro) => {
                s.minimum_amount_cent = (euro * 100.0).round() as u64
            }
            _ => diags.push(
                file,
                at(v),
                "invalid-value",
                format!(
                    "`minimum_amount_euro` must be a number from 0 to 1000000, found {}",
                    v.value
                ),
            ),
        }
    }
    if let Some(v) = get(map, "lookback_months") {
        match v.value.as_u64() {
            Some(m) if (1..=60).contains(&m) => s.lookback_months = m as u32,
            _ => diags.push(
                file,
                at(v),
                "invalid-value",
                "`lookback_months` must be a whole number from 1 to 60",
            ),
        }
    }
    let days = |key: &str, target: &mut u32, max: u64, diags: &mut Diagnostics| {
        if let Some(v) = get(map, key) {
            match v.value.as_u64() {
                Some(n) if (1..=max).contains(&n) => *target = n as u32,
                _ => diags.push(
                    file,
                    at(v),
                    "invalid-value",
                    format!("`{key}` must be a whole number from 1 to {max}"),
                ),
            }
        }
    };
    days(
        "contact_deadline_days",
        &mut s.contact.deadline_days,
        365,
        diags,
    );
    days(
        "crisis_contact_working_days",
        &mut s.contact.crisis_working_days,
        60,
        diags,
    );
    days(
        "escalation_repeat_days",
        &mut s.contact.repeat_days,
        365,
        diags,
    );
    if let Some(v) = get(map, "holidays") {
        match &v.value {
            Value::Array(items) => {
                for item in items {
                    match item.as_str().and_then(Day::parse) {
                        Some(d) => {
                            s.contact.holidays.insert(d);
                        }
                        None => diags.push(
                            file,
                            at(v),
                            "invalid-value",
                            format!("`holidays` must list dates as YYYY-MM-DD; {item} is not one"),
                        ),
                    }
                }
            }
            other => diags.push(
                file,
                at(v),
                "wrong-type",
                format!("`holidays` must be a list of dates, found {}", kind(other)),
            ),
        }
    }
    s
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Where `ident` occurs as a whole word in `text` at or after `from`,
/// as (line, col).
fn find_word(text: &str, from: usize, ident: &str) -> Option<(u64, u64)> {
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut start = from.min(text.len());
    while let Some(pos) = text.get(start..)?.find(ident) {
        let i = start + pos;
        let end = i + ident.len();
        let before_ok = i == 0 || !is_word(bytes[i - 1]);
        let after_ok = end >= bytes.len() || !is_word(bytes[end]);
        if before_ok && after_ok {
            let line = text[..i].matches('\n').count() as u64 + 1;
            let col = (i - text[..i].rfind('\n').map(|n| n + 1).unwrap_or(0)) as u64 + 1;
            return Some((line, col));
        }
        start = end;
    }
    None
}

fn parse_rule(
    file: &Path,
    text: &str,
    raw: &Spanned<LocatedMap>,
    options: &LoadOptions,
    diags: &mut Diagnostics,
) -> Option<CompiledRule> {
    let map = &raw.value;
    let errors_before = diags.errors().count();
    check_keys(file, map, RULE_KEYS, "a rule", diags);

    let string = |key: &str,
                  required: bool,
                  diags: &mut Diagnostics|
     -> Option<(String, (u64, u64), Option<u64>)> {
        match get(map, key) {
            None => {
                if required {
                    diags.push(
                        file,
                        at(raw),
                        "missing-key",
                        format!("rule is missing required key `{key}`"),
                    );
                }
                None
            }
            Some(v) => match &v.value {
                Value::String(s) if !s.trim().is_empty() => {
                    Some((s.clone(), at(v), v.referenced.span().byte_offset()))
                }
                Value::String(_) => {
                    diags.push(
                        file,
                        at(v),
                        "invalid-value",
                        format!("`{key}` must not be empty"),
                    );
                    None
                }
                other => {
                    diags.push(
                        file,
                        at(v),
                        "wrong-type",
                        format!("`{key}` must be a non-empty string, found {}", kind(other)),
                    );
                    None
                }
            },
        }
    };

    let id = string("id", true, diags).map(|(id, loc, _)| {
        if !is_name(&id) {
            diags.push(
                file,
                loc,
                "invalid-id",
                format!(
                    "rule id `{id}` must be lower-case letters, digits, `_` or `-`, at most 64"
                ),
            );
        }
        id
    });
    let description = string("description", true, diags).map(|d| d.0);
    let categorie = string("categorie", true, diags).map(|(c, loc, _)| {
        if !BUILTIN_CATEGORIES.contains(&c.as_str()) && !is_name(&c) {
            diags.push(
                file,
                loc,
                "invalid-category",
                format!(
                    "category `{c}` must be one of {} or a custom lower-case name",
                    BUILTIN_CATEGORIES.join(", ")
                ),
            );
        }
        c
    });
    let prioriteit = match get(map, "prioriteit") {
        None => {
            diags.push(
                file,
                at(raw),
                "missing-key",
                "rule is missing required key `prioriteit`",
            );
            None
        }
        Some(v) => match v.value.as_u64() {
            Some(p) if (1..=9).contains(&p) => Some(p as u8),
            _ => {
                diags.push(
                    file,
                    at(v),
                    "invalid-value",
                    "`prioriteit` must be a whole number from 1 (lowest) to 9 (highest)",
                );
                None
            }
        },
    };
    let labels = match get(map, "labels") {
        None => Vec::new(),
        Some(v) => match &v.value {
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            other => {
                diags.push(
                    file,
                    at(v),
                    "wrong-type",
                    format!("`labels` must be a list of strings, found {}", kind(other)),
                );
                Vec::new()
            }
        },
    };
    let enabled = match get(map, "enabled") {
        None => true,
        Some(v) => match v.value {
            Value::Bool(b) => b,
            ref other => {
                diags.push(
                    file,
                    at(v),
                    "wrong-type",
                    format!("`enabled` must be true or false, found {}", kind(other)),
                );
                true
            }
        },
    };
    let version = match get(map, "version") {
        None => 1,
        Some(v) => match v.value.as_u64() {
            Some(n) if (1..=u32::MAX as u64).contains(&n) => n as u32,
            _ => {
                diags.push(
                    file,
                    at(v),
                    "invalid-value",
                    "`version` must be a whole number of at least 1",
                );
                1
            }
        },
    };
    let action = match string("actie", false, diags) {
        None => Action::Signaleren,
        Some((a, loc, _)) => match a.as_str() {
            "signaleren" => Action::Signaleren,
            "onderdrukken" => Action::Onderdrukken,
            "werkbak" => Action::Werkbak,
            other => {
                diags.push(
                    file,
                    loc,
                    "invalid-value",
                    format!("`actie` must be `signaleren`, `onderdrukken` or `werkbak`, found `{other}`"),
                );
                Action::Signaleren
            }
        },
    };
    let werkbak = match (string("werkbak", false, diags), action) {
        (Some((w, loc, _)), Action::Werkbak) => {
            if !is_name(&w) {
                diags.push(
                    file,
                    loc,
                    "invalid-value",
                    format!("work queue `{w}` must be a lower-case name"),
                );
            }
            Some(w)
        }
        (Some((_, loc, _)), _) => {
            diags.push(
                file,
                loc,
                "invalid-value",
                "`werkbak` belongs to a rule with `actie: werkbak`",
            );
            None
        }
        (None, Action::Werkbak) => {
            diags.push(
                file,
                at(raw),
                "missing-key",
                "a rule with `actie: werkbak` needs `werkbak: <queue name>`",
            );
            None
        }
        (None, _) => None,
    };
    let purpose = match string("doel", false, diags) {
        None => Purpose::Schuld,
        Some((p, loc, _)) => match p.as_str() {
            "schuld" => Purpose::Schuld,
            "school" if !options.school_purpose => {
                // The AVG purpose binding: no rule for a purpose the
                // municipality has not enabled, not even an idle one.
                diags.push(
                    file,
                    loc,
                    "purpose-off",
                    "this rule combines school-absence data with debt signals (`doel: school`), \
                     but the school purpose is off; enable it (`engine.school_purpose = true`, \
                     or `--school-purpose`) or leave this file out of the rule set \
                     (the shipped school rules are in rules/school/)",
                );
                Purpose::School
            }
            "school" => Purpose::School,
            other => {
                diags.push(
                    file,
                    loc,
                    "invalid-value",
                    format!("`doel` must be `schuld` or `school`, found `{other}`"),
                );
                Purpose::Schuld
            }
        },
    };
    let when = string("when", true, diags);
    let mut compiled = None;
    let mut reads = Vec::new();
    if let Some((expr, loc, offset)) = &when {
        match build_operator_tree(expr) {
            Err(e) => diags.push(
                file,
                *loc,
                "syntax",
                format!("`when` is not a valid expression: {e}"),
            ),
            Ok(node) => {
                let mut ok = true;
                let ident_loc = |ident: &str| {
                    offset
                        .and_then(|o| find_word(text, o as usize, ident))
                        .unwrap_or(*loc)
                };
                if let Some(w) = node.iter_write_variable_identifiers().next() {
                    ok = false;
                    diags.push(
                        file,
                        ident_loc(w),
                        "assignment",
                        format!(
                            "`when` assigns to `{w}`; a condition must not assign (to compare, write `==`)"
                        ),
                    );
                }
                // `and`, `or` and `not` read as calls of functions by those
                // names: say what to write instead.
                let mut words: Vec<&str> = node.iter_function_identifiers().collect();
                words.sort_unstable();
                words.dedup();
                for word in words {
                    let instead = match word {
                        "and" | "en" => "&&",
                        "or" | "of" => "||",
                        "not" | "niet" => "!",
                        _ => continue,
                    };
                    ok = false;
                    diags.push(
                        file,
                        ident_loc(word),
                        "operator",
                        format!("`{word}` is not an operator in a condition; write `{instead}`"),
                    );
                }
                let mut names: Vec<&str> = node.iter_variable_identifiers().collect();
                names.sort_unstable();
                names.dedup();
                for name in names {
                    match index().get(name) {
                        None => {
                            ok = false;
                            diags.push(
                                file,
                                ident_loc(name),
                                "unknown-variable",
                                format!(
                                    "unknown variable `{name}`{}; the catalogue is in docs/rules.md",
                                    suggest(name, catalogue().iter().map(|v| v.name.as_str()))
                                ),
                            );
                        }
                        Some(i) => {
                            reads.push(*i);
                            let spec = &catalogue()[*i];
                            if spec.purpose == Purpose::School && purpose != Purpose::School {
                                ok = false;
                                diags.push(
                                    file,
                                    ident_loc(name),
                                    "purpose",
                                    format!(
                                        "`{name}` is school-absence data; a rule that reads it must declare `doel: school`, and runs only where the municipality enabled that purpose"
                                    ),
                                );
                            }
                        }
                    }
                }
                if ok {
                    if let Some((code, problem, literal)) = type_check(&node) {
                        let at = literal
                            .and_then(|l| offset.and_then(|o| find_text(text, o as usize, &l)))
                            .unwrap_or(*loc);
                        diags.push(file, at, code, format!("`when` {problem}"));
                    } else {
                        compiled = Some(node);
                    }
                }
            }
        }
    }
    reads.sort_unstable();
    if diags.errors().count() > errors_before {
        return None;
    }
    let active = enabled && (purpose != Purpose::School || options.school_purpose);
    Some(CompiledRule {
        id: id?.into(),
        description: description?,
        when: when?.0,
        categorie: categorie?.into(),
        prioriteit: prioriteit?,
        labels,
        enabled,
        version,
        action,
        werkbak: werkbak.map(Name::from),
        purpose,
        active,
        reads,
        file: file.to_owned(),
        line: at(raw).0,
        col: at(raw).1,
        condition: compiled.as_ref().and_then(Condition::compile),
        node: compiled?,
    })
}

/// Where `needle` first stands in `text` from byte `from`: (line, col).
fn find_text(text: &str, from: usize, needle: &str) -> Option<(u64, u64)> {
    let i = from.min(text.len()) + text.get(from..)?.find(needle)?;
    let line = text[..i].matches('\n').count() as u64 + 1;
    let col = (i - text[..i].rfind('\n').map(|n| n + 1).unwrap_or(0)) as u64 + 1;
    Some((line, col))
}

/// The variables an expression reads, each with its type and unit, for a
/// policy officer: "`zorg_bedrag` (a number, euro)".
fn read_variables(node: &Node) -> String {
    let mut names: Vec<&str> = node.iter_variable_identifiers().collect();
    names.sort_unstable();
    names.dedup();
    names
        .iter()
        .filter_map(|n| index().get(n).map(|i| &catalogue()[*i]))
        .map(|v| {
            let ty = match v.ty {
                vroeg_core::vars::VarType::Bool => "true or false",
                vroeg_core::vars::VarType::Int => "a whole number",
                vroeg_core::vars::VarType::Float => "a number",
            };
            if v.unit == "-" {
                format!("`{}` ({ty})", v.name)
            } else {
                format!("`{}` ({ty}, {})", v.name, v.unit)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A type error in the terms of a rule: which values do not go together,
/// with the variables the expression reads, their types and units; and the
/// literal to point at, if the error names one.
fn explain_type_error(node: &Node, error: &evalexpr::EvalexprError) -> (String, Option<String>) {
    use evalexpr::EvalexprError as E;
    let actual = match error {
        E::ExpectedNumber { actual }
        | E::ExpectedFloat { actual }
        | E::ExpectedInt { actual }
        | E::ExpectedBoolean { actual }
        | E::ExpectedNumberOrString { actual } => Some(actual),
        _ => None,
    };
    let reads = read_variables(node);
    let reads = if reads.is_empty() {
        String::new()
    } else {
        format!("; it reads {reads}")
    };
    match (error, actual) {
        (_, Some(EValue::String(text))) => (
            format!(
                "compares or combines a value with the text \"{text}\"; write numbers without quotes (`150`, not `\"150\"`){reads}"
            ),
            Some(format!("\"{text}\"")),
        ),
        (E::ExpectedBoolean { actual }, _) => (
            format!(
                "uses {} where true or false is needed (`&&`, `||` and `!` combine conditions; compare numbers with `>=`, `==`, ...){reads}",
                value_kind(actual)
            ),
            None,
        ),
        (_, Some(actual)) => (
            format!(
                "uses {} where a number is needed{reads}",
                value_kind(actual)
            ),
            None,
        ),
        _ => (format!("cannot be evaluated: {error}{reads}"), None),
    }
}

/// Evaluate against representative contexts: every variable false/zero,
/// every variable true/typical, and each boolean flipped on its own. A type
/// error in any of them, or a non-boolean result, is a problem: its code,
/// its message, and a literal of the expression to point at.
fn type_check(node: &Node) -> Option<(&'static str, String, Option<String>)> {
    let mut contexts = vec![Variables::zeroes(), Variables::typical()];
    let mut mixed = Variables::zeroes();
    for (i, v) in mixed.values.iter_mut().enumerate() {
        *v = Variables::typical().values[i];
        if i % 2 == 0 {
            *v = Variables::zeroes().values[i];
        }
    }
    contexts.push(mixed);
    for vars in &contexts {
        match node.eval_with_context(&VarContext::new(vars)) {
            Ok(EValue::Boolean(_)) => {}
            Ok(other) => {
                return Some((
                    "type",
                    format!(
                        "must give true or false, but gives {}; compare it, for example `>= 1`",
                        value_kind(&other)
                    ),
                    None,
                ))
            }
            // evalexpr parses `a >= ` and reports the missing operand only
            // when it evaluates: that is a syntax problem for the author.
            Err(evalexpr::EvalexprError::WrongOperatorArgumentAmount { .. }) => {
                return Some((
                    "syntax",
                    "is incomplete: an operator is missing an operand".to_owned(),
                    None,
                ))
            }
            Err(e) => {
                let (message, literal) = explain_type_error(node, &e);
                return Some(("type", message, literal));
            }
        }
    }
    None
}

fn value_kind(v: &EValue) -> &'static str {
    match v {
        EValue::String(_) => "a string",
        EValue::Float(_) => "a number",
        EValue::Int(_) => "an integer",
        EValue::Boolean(_) => "a boolean",
        EValue::Tuple(_) => "a tuple",
        EValue::Empty => "nothing",
    }
}

impl RuleSet {
    /// A short human summary: counts of rules by state.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        m.insert("rules", self.rules.len());
        m.insert("active", self.rules.iter().filter(|r| r.active).count());
        m.insert("disabled", self.rules.iter().filter(|r| !r.enabled).count());
        m.insert(
            "purpose_off",
            self.rules.iter().filter(|r| r.enabled && !r.active).count(),
        );
        m
    }
}
