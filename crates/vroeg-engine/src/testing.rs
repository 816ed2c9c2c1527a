//! The rule test runner, in the style of `promtool test rules`.
//!
//! A test file lists input signals with their times (and contact attempts
//! the team records) and, at evaluation points, the case events expected
//! since the previous point. `events: []`
//! asserts that nothing fires. The runner drives the engine itself
//! ([`crate::Engine`], over a [`MemoryStore`]), with event time as the
//! clock, so signals, timers (signals ageing out, escalations) and contact
//! attempts take the path they take in `vroeg replay` and `vroeg run`.
//!
//! The file format is documented in `docs/rules.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;
use vroeg_core::feedback::{ContactAttempt, Contactsoort, Feedback, FeedbackKind};
use vroeg_core::signal::{
    Absence, Address, Arrears, ArrearsStatus, PartnerType, Person, Pupil, Signal, SignalBody,
    Verzuimsoort,
};
use vroeg_core::time::{Day, Millis};
use vroeg_core::{Alert, HouseholdKey};

use vroeg_rules::location as at;
use vroeg_store::{MemoryStore, Message, StateStore};

use crate::{ClockMode, Engine, EngineConfig, EngineError, KeyedInput, KeyedRecord};
use vroeg_rules::routing::Routing;
use vroeg_rules::{Diagnostics, LoadOptions, RuleSet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    /// Rule files or directories, relative to the test file. Default: the
    /// directory above the test file's directory.
    #[serde(default)]
    rule_files: Option<Vec<String>>,
    #[serde(default)]
    school_purpose: bool,
    /// A wijkteam routing file, relative to the test file. Default: every
    /// case to the team `standaard`.
    #[serde(default)]
    routing: Option<String>,
    tests: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    #[serde(default)]
    signals: Vec<Spanned<RawSignal>>,
    expect: Vec<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    at: String,
    household: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    /// The household's postcode (default 1000AA): routing goes by it.
    #[serde(default)]
    postcode: Option<String>,
    // Payment arrears.
    #[serde(default)]
    partner: Option<String>,
    #[serde(default)]
    referentie: Option<String>,
    #[serde(default)]
    bedrag: Option<Amount>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    ontstaansdatum: Option<String>,
    #[serde(default)]
    crisis: bool,
    #[serde(default)]
    eindelevering: bool,
    /// Date of birth of the person (default 1980-01-01).
    #[serde(default)]
    geboortedatum: Option<String>,
    // School absence.
    #[serde(default)]
    verzuim: Option<String>,
    /// Not a signal: the team records a contact attempt (escalation stops).
    #[serde(default)]
    contactpoging: bool,
    #[serde(default)]
    uren: Option<u32>,
}

/// An amount in euro: a number (`412.5`), or text with a decimal comma as
/// Dutch writes it (`"412,50"`, `412,50`, `"1.234,50"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Amount {
    Number(f64),
    Text(String),
}

impl Amount {
    fn euros(&self) -> Result<f64, String> {
        match self {
            Amount::Number(n) => Ok(*n),
            Amount::Text(t) => {
                let t = t.trim();
                let normal = if t.contains(',') {
                    t.replace('.', "").replace(',', ".")
                } else {
                    t.to_owned()
                };
                normal.parse::<f64>().map_err(|_| {
                    format!("`bedrag: {t}` is not an amount in euro; write 412.50 or \"412,50\"")
                })
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    at: String,
    events: Vec<Spanned<RawEvent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    household: Option<String>,
    #[serde(default)]
    categorie: Option<String>,
    #[serde(default)]
    prioriteit: Option<u8>,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    reden: Option<String>,
    #[serde(default)]
    werkbak: Option<String>,
    #[serde(default)]
    wijkteam: Option<String>,
}

/// The outcome of one test.
#[derive(Debug)]
pub struct TestOutcome {
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
    /// Every evaluation of the rules during the test, in order.
    pub evaluations: Vec<vroeg_core::Evaluation>,
    /// The case events the test gave, in order.
    pub events: Vec<Alert>,
}

/// The outcome of one test file.
#[derive(Debug)]
pub struct FileOutcome {
    pub file: PathBuf,
    pub tests: Vec<TestOutcome>,
    /// The rule set the tests ran against.
    pub rules: Arc<RuleSet>,
}

impl FileOutcome {
    pub fn passed(&self) -> bool {
        self.tests.iter().all(|t| t.failures.is_empty())
    }
}

/// Why a test file could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("{file}:{line}:{col}: {message}")]
    Invalid {
        file: PathBuf,
        line: u64,
        col: u64,
        message: String,
    },
    /// Every problem of a file, each with its location once.
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Problems(Vec<TestFileError>),
    #[error("{file}: rule or routing files do not load:\n{diags}")]
    Rules { file: PathBuf, diags: Diagnostics },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// Parse a time: a date (`2026-03-01`) is a Dutch calendar day, as
/// deadlines count them: 09:00 Dutch time that day for a signal, and the
/// end of that day for an evaluation point.
fn parse_time(s: &str, end_of_day: bool) -> Option<Millis> {
    vroeg_core::time::parse_moment(s, end_of_day)
}

/// "unknown partner `Zrog`; did you mean `Zorg`? expected one of: ..."
fn unknown<'a>(what: &str, got: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    let closest = known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&got.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, k)) => format!(
            "unknown {what} `{got}`; did you mean `{k}`? (expected one of: {})",
            known.join(", ")
        ),
        None => format!(
            "unknown {what} `{got}`; expected one of: {}",
            known.join(", ")
        ),
    }
}

fn invalid(file: &Path, loc: (u64, u64), message: impl Into<String>) -> TestFileError {
    TestFileError::Invalid {
        file: file.to_owned(),
        line: loc.0,
        col: loc.1,
        message: message.into(),
    }
}

fn build_signal(
    file: &Path,
    test: &str,
    n: usize,
    number: u32,
    raw: &Spanned<RawSignal>,
) -> Result<(Millis, Signal), TestFileError> {
    let loc = at(raw);
    let s = &raw.value;
    let time = parse_time(&s.at, false).ok_or_else(|| {
        invalid(
            file,
            loc,
            format!("`at: {}` is not a date (YYYY-MM-DD) or RFC 3339 time", s.at),
        )
    })?;
    let day = Day::of_millis(time);
    let postcode = match &s.postcode {
        None => "1000AA".to_owned(),
        Some(p) => vroeg_core::signal::normalise_postcode(p).ok_or_else(|| {
            invalid(
                file,
                loc,
                format!("`postcode: {p}` is not a Dutch postcode; write 1234AB"),
            )
        })?,
    };
    let address = Address {
        straatnaam: "Teststraat".into(),
        postcode,
        huisnummer: number,
        huisnummertoevoeging: None,
        plaatsnaam: "Teststad".into(),
    };
    let id = s.id.clone().unwrap_or_else(|| format!("{test}#{n}"));
    let body =
        match (&s.partner, &s.verzuim) {
            (Some(partner), None) => {
                let partner = PartnerType::parse(partner).ok_or_else(|| {
                    invalid(
                        file,
                        loc,
                        unknown(
                            "partner",
                            partner,
                            PartnerType::ALL.iter().map(|p| p.as_str()),
                        ),
                    )
                })?;
                let status = match &s.status {
                    None => ArrearsStatus::Open,
                    Some(st) => ArrearsStatus::parse(st).ok_or_else(|| {
                        invalid(
                            file,
                            loc,
                            unknown("status", st, ArrearsStatus::ALL.iter().map(|p| p.as_str())),
                        )
                    })?,
                };
                let bedrag = s
                    .bedrag
                    .as_ref()
                    .ok_or_else(|| invalid(file, loc, "a payment signal needs `bedrag` (euro)"))?
                    .euros()
                    .map_err(|m| invalid(file, loc, m))?;
                if !(0.0..=10_000_000.0).contains(&bedrag) {
                    return Err(invalid(
                        file,
                        loc,
                        "`bedrag` must be between 0 and 10000000 euro",
                    ));
                }
                let ontstaansdatum = match &s.ontstaansdatum {
                    None => day.plus_days(-60),
                    Some(d) => Day::parse(d)
                        .ok_or_else(|| invalid(file, loc, "`ontstaansdatum` must be YYYY-MM-DD"))?,
                };
                SignalBody::Arrears(Arrears {
                    partner,
                    referentie: s
                        .referentie
                        .clone()
                        .unwrap_or_else(|| format!("{}-{}", s.household, partner.var_prefix())),
                    status,
                    bedrag_cent: (bedrag * 100.0).round() as u64,
                    ontstaansdatum,
                    signaaldatum: day,
                    crisissignaal: s.crisis,
                    eindelevering: s.eindelevering,
                    client: Person {
                        voorletters: "T.".into(),
                        voorvoegsel: None,
                        achternaam: "Test".into(),
                        geboortedatum: match &s.geboortedatum {
                            None => Day::parse("1980-01-01").unwrap_or(Day(3652)),
                            Some(d) => Day::parse(d).ok_or_else(|| {
                                invalid(file, loc, "`geboortedatum` must be YYYY-MM-DD")
                            })?,
                        },
                        address,
                        bsn: None,
                        telefoon: None,
                        email: None,
                    },
                })
            }
            (None, Some(soort)) => SignalBody::Absence(Absence {
                verzuimsoort: Verzuimsoort::parse(soort).ok_or_else(|| {
                    invalid(
                        file,
                        loc,
                        unknown(
                            "verzuim",
                            soort,
                            Verzuimsoort::ALL.iter().map(|p| p.as_str()),
                        ),
                    )
                })?,
                uren_4_weken: s.uren.unwrap_or(16),
                school: "00AA".into(),
                leerling: Pupil {
                    geboortedatum: Day::parse("2012-01-01").unwrap_or(Day(15340)),
                    address,
                },
            }),
            _ => return Err(invalid(
                file,
                loc,
                "a signal needs either `partner` (payment arrears) or `verzuim` (school absence)",
            )),
        };
    let source = s.source.clone().unwrap_or_else(|| match &body {
        SignalBody::Arrears(a) => format!("urn:vroeg:test:{}", a.partner.var_prefix()),
        SignalBody::Absence(_) => "urn:vroeg:test:school".into(),
    });
    Ok((
        time,
        Signal {
            source: source.into(),
            id: id.into(),
            time,
            body,
        },
    ))
}

/// Run one test file.
pub fn run_file(file: &Path) -> Result<FileOutcome, TestFileError> {
    run_file_with(file, &BTreeMap::new())
}

/// The rule files a test file runs against (its `rule_files`, or the
/// directory above its own), each as found on disk.
pub fn rule_files_of(file: &Path) -> Result<Vec<PathBuf>, TestFileError> {
    let raw = parse(file)?;
    RuleSet::files_in(&rule_paths(file, &raw)).map_err(|diags| TestFileError::Rules {
        file: file.to_owned(),
        diags,
    })
}

fn rule_paths(file: &Path, raw: &RawTestFile) -> Vec<PathBuf> {
    let base = file.parent().unwrap_or(Path::new("."));
    match &raw.rule_files {
        Some(list) => list.iter().map(|p| normal(&base.join(p))).collect(),
        None => vec![normal(base.parent().unwrap_or(Path::new(".")))],
    }
}

/// A path with its `a/..` pairs removed, so that one rule file has one
/// name whichever test file names it (`rules/tests/../regels.yaml` is
/// `rules/regels.yaml`).
fn normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// Read and parse a test file (its inputs are checked by [`prepare`]).
fn parse(file: &Path) -> Result<RawTestFile, TestFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| TestFileError::Io {
        file: file.to_owned(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let msg = e.without_snippet().to_string();
        let first = msg.lines().next().unwrap_or("");
        // The location is printed once, in front.
        let first = match first.rfind(" at line ") {
            Some(i) => &first[..i],
            None => first,
        };
        invalid(file, (line, col), first.to_owned())
    })
}

/// A test's signals as `vroeg replay` reads them.
#[derive(Debug)]
pub struct ReplayInput {
    pub test: String,
    /// Structured-mode CloudEvents, one per line, in time order.
    pub lines: Vec<String>,
    /// Each household's name and address (replay finds households by
    /// address; the runner by name).
    pub households: Vec<(String, vroeg_core::signal::Address)>,
    /// The contact attempts among the inputs, (time, household): replay
    /// reads those from a feedback file.
    pub contact_attempts: Vec<(Millis, String)>,
    /// The last evaluation point.
    pub until: Option<Millis>,
}

/// What a test file runs on, and its tests' signals as `vroeg replay`
/// reads them: to show that the two give the same case events.
#[derive(Debug)]
pub struct ReplayInputs {
    pub rule_files: Vec<PathBuf>,
    pub school_purpose: bool,
    pub routing: Option<PathBuf>,
    pub tests: Vec<ReplayInput>,
}

pub fn replay_inputs(file: &Path) -> Result<ReplayInputs, TestFileError> {
    let raw = parse(file)?;
    let mut problems = Vec::new();
    let mut tests = Vec::new();
    for test in &raw.tests {
        let prepared = prepare(file, test, &mut problems);
        let mut households: Vec<(String, vroeg_core::signal::Address)> = Vec::new();
        let mut lines = Vec::new();
        let mut contact_attempts = Vec::new();
        for (time, name, signal) in &prepared.signals {
            let Some(signal) = signal else {
                contact_attempts.push((*time, name.clone()));
                continue;
            };
            if !households.iter().any(|(n, _)| n == name) {
                households.push((name.clone(), signal.address().clone()));
            }
            lines.push(vroeg_core::signal::encode_structured(signal).to_string());
        }
        tests.push(ReplayInput {
            test: test.name.clone(),
            lines,
            households,
            contact_attempts,
            until: prepared.points.last().map(|(t, _)| *t),
        });
    }
    if !problems.is_empty() {
        return Err(TestFileError::Problems(problems));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    Ok(ReplayInputs {
        rule_files: rule_paths(file, &raw),
        school_purpose: raw.school_purpose,
        routing: raw.routing.as_ref().map(|r| dir.join(r)),
        tests,
    })
}

/// Run a test file with some rule files' text replaced: `overrides` maps a
/// rule file (as [`rule_files_of`] names it) to the text to use instead
/// (the mutation tests' mutants).
pub fn run_file_with(
    file: &Path,
    overrides: &BTreeMap<PathBuf, String>,
) -> Result<FileOutcome, TestFileError> {
    let raw = parse(file)?;
    // Every input of every test is checked before anything runs, and every
    // problem is reported.
    let mut problems = Vec::new();
    let prepared: Vec<Prepared<'_>> = raw
        .tests
        .iter()
        .map(|t| prepare(file, t, &mut problems))
        .collect();
    if !problems.is_empty() {
        return Err(TestFileError::Problems(problems));
    }
    let options = LoadOptions {
        school_purpose: raw.school_purpose,
        ..LoadOptions::default()
    };
    let rules_error = |diags| TestFileError::Rules {
        file: file.to_owned(),
        diags,
    };
    let files = RuleSet::files_in(&rule_paths(file, &raw)).map_err(rules_error)?;
    let mut sources = Vec::new();
    for f in files {
        let text = match overrides.get(&f) {
            Some(text) => text.clone(),
            None => std::fs::read_to_string(&f).map_err(|source| TestFileError::Io {
                file: f.clone(),
                source,
            })?,
        };
        sources.push((f, text));
    }
    let (rules, _) = RuleSet::from_sources(&sources, &options).map_err(rules_error)?;
    let rules = Arc::new(rules);
    let routing = match &raw.routing {
        None => Routing::single(crate::DEFAULT_TEAM),
        Some(name) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(name);
            Routing::load(&path).map_err(|diags| TestFileError::Rules {
                file: file.to_owned(),
                diags,
            })?
        }
    };
    let routing = Arc::new(routing);
    let tests = prepared
        .into_iter()
        .map(|p| run_test(file, &rules, &routing, p))
        .collect();
    Ok(FileOutcome {
        file: file.to_owned(),
        tests,
        rules,
    })
}

/// A test whose inputs are checked: its signals and contact attempts in
/// time order, and its evaluation points.
struct Prepared<'a> {
    name: &'a str,
    /// (time, household, the signal; `None` for a contact attempt)
    signals: Vec<(Millis, String, Option<Signal>)>,
    points: Vec<(Millis, &'a Spanned<RawExpect>)>,
}

/// Check a test's inputs; every problem goes to `problems`.
fn prepare<'a>(file: &Path, test: &'a RawTest, problems: &mut Vec<TestFileError>) -> Prepared<'a> {
    let mut signals = Vec::new();
    // Each household gets an address of its own: house number 1 for the
    // first household named, 2 for the next, and so on.
    let mut numbers: BTreeMap<&str, u32> = BTreeMap::new();
    for (n, raw) in test.signals.iter().enumerate() {
        let next = numbers.len() as u32 + 1;
        let number = *numbers.entry(raw.value.household.as_str()).or_insert(next);
        let input = if raw.value.contactpoging {
            // On a day: when feedback dated that day takes effect, as in
            // `vroeg replay --feedback`.
            let moment = &raw.value.at;
            Day::parse(moment)
                .map(vroeg_core::feedback::effective_time)
                .or_else(|| parse_time(moment, false))
                .map(|time| (time, None))
                .ok_or_else(|| {
                    invalid(
                        file,
                        at(raw),
                        format!("`at: {}` is not a date or RFC 3339 time", raw.value.at),
                    )
                })
        } else {
            build_signal(file, &test.name, n + 1, number, raw)
                .map(|(time, signal)| (time, Some(signal)))
        };
        match input {
            Ok((time, signal)) => signals.push((time, raw.value.household.clone(), signal)),
            Err(e) => problems.push(e),
        }
    }
    signals.sort_by_key(|(t, _, _)| *t);
    let mut points = Vec::new();
    for e in &test.expect {
        match parse_time(&e.value.at, true) {
            Some(t) => points.push((t, e)),
            None => problems.push(invalid(
                file,
                at(e),
                format!("`at: {}` is not a date or RFC 3339 time", e.value.at),
            )),
        }
    }
    points.sort_by_key(|(t, _)| *t);
    Prepared {
        name: &test.name,
        signals,
        points,
    }
}

/// The stream a rule test's input comes from, for the engine's positions.
const TEST_STREAM: &str = "regeltest";

/// A rule test runs on the engine itself (`vroeg replay`'s and `vroeg
/// run`'s), over a store in memory, with event time as its clock: signals
/// are applied at their time, timers fire at their due time, and a contact
/// attempt is feedback on the household's open case, as a wijkteam sends
/// it.
struct Runner {
    engine: Engine<MemoryStore>,
    stream: Arc<str>,
    offset: i64,
    /// Case events since the last evaluation point.
    emitted: Vec<Alert>,
    failures: Vec<String>,
}

impl Runner {
    fn new(rules: &Arc<RuleSet>, routing: &Arc<Routing>) -> Result<Runner, EngineError> {
        // The household secret is not used: the test names its households.
        let mut config = EngineConfig::new(Vec::new(), ClockMode::EventTime);
        config.routing = routing.clone();
        config.observe = true;
        Ok(Runner {
            engine: Engine::new(MemoryStore::new(), rules.clone(), config)?,
            stream: TEST_STREAM.into(),
            offset: 0,
            emitted: Vec::new(),
            failures: Vec::new(),
        })
    }

    fn record(&mut self, household: &str, input: KeyedInput) -> KeyedRecord {
        self.offset += 1;
        KeyedRecord {
            stream: self.stream.clone(),
            partition: 0,
            offset: self.offset - 1,
            key: HouseholdKey(household.into()),
            input,
        }
    }

    /// One batch, then the clock moved on to `until`; collect what came out.
    fn process(&mut self, records: &[KeyedRecord], until: Millis) -> Result<(), EngineError> {
        self.engine.process_keyed(records, until, Some(until))?;
        for message in self.engine.store_mut().take_outbox() {
            match message {
                Message::Alert(alert) => self.emitted.push(*alert),
                Message::DeadLetter(d) => self
                    .failures
                    .push(format!("the engine refused input: {}", d.error)),
                Message::PartnerStatus { .. } | Message::Case { .. } => {}
            }
        }
        Ok(())
    }

    /// The team records a contact attempt at `time` on `household`'s open
    /// case: feedback, as through the case API.
    fn contact_attempt(
        &mut self,
        file: &Path,
        test: &str,
        household: &str,
        time: Millis,
    ) -> Result<(), EngineError> {
        let key = HouseholdKey(household.into());
        let case = self
            .engine
            .store()
            .household(&key)?
            .and_then(|state| state.case.map(|c| c.id));
        let Some(zaak_id) = case else {
            self.failures.push(format!(
                "{}: a contact attempt for `{household}`, which has no open case",
                file.display()
            ));
            return Ok(());
        };
        let feedback = Feedback {
            id: format!("{test}#contactpoging-{}", self.offset),
            zaak_id: zaak_id.into(),
            kind: FeedbackKind::Contactpoging(ContactAttempt {
                soort: Contactsoort::Telefoon,
                bereikt: false,
                datum: Day::local_of(time),
                dagdeel: None,
            }),
        };
        let record = self.record(household, KeyedInput::Feedback(feedback));
        self.process(&[record], time)
    }
}

fn run_test(
    file: &Path,
    rules: &Arc<RuleSet>,
    routing: &Arc<Routing>,
    test: Prepared<'_>,
) -> TestOutcome {
    let Prepared {
        name: test_name,
        signals,
        points,
    } = test;
    let mut outcome = TestOutcome {
        name: test_name.to_owned(),
        failures: Vec::new(),
        evaluations: Vec::new(),
        events: Vec::new(),
    };
    let mut runner = match Runner::new(rules, routing) {
        Ok(r) => r,
        Err(e) => {
            outcome
                .failures
                .push(format!("the engine did not start: {e}"));
            return outcome;
        }
    };
    let mut next_signal = signals.into_iter().peekable();
    for (point, expect) in points {
        let mut batch = Vec::new();
        while let Some((t, _, _)) = next_signal.peek() {
            if *t > point {
                break;
            }
            let (t, name, signal) = next_signal.next().expect("peeked");
            let step = match signal {
                Some(signal) => {
                    let record = runner.record(&name, KeyedInput::Signal(Box::new(signal)));
                    batch.push(record);
                    Ok(())
                }
                // What came before goes first, with the clock at the attempt.
                None => runner
                    .process(&std::mem::take(&mut batch), t)
                    .and_then(|()| runner.contact_attempt(file, test_name, &name, t)),
            };
            if let Err(e) = step {
                runner.failures.push(format!("the engine failed: {e}"));
            }
        }
        if let Err(e) = runner.process(&batch, point) {
            runner.failures.push(format!("the engine failed: {e}"));
        }
        let got = std::mem::take(&mut runner.emitted);
        compare(file, expect, &got, &mut runner.failures);
        outcome.events.extend(got);
    }
    let observed = runner.engine.take_observed();
    outcome.failures.extend(runner.failures);
    outcome.failures.extend(
        observed
            .rule_errors
            .into_iter()
            .map(|e| format!("rule evaluation failed: {e}")),
    );
    outcome.evaluations = observed.evaluations;
    outcome
}

fn describe(a: &Alert) -> String {
    let rules: Vec<&str> = a.regels.iter().map(|r| r.id.as_str()).collect();
    let mut s = format!(
        "{} household={} categorie={} prioriteit={} werkbak={} wijkteam={} rules=[{}]",
        a.kind.as_str(),
        a.huishouden,
        a.categorie,
        a.prioriteit,
        a.werkbak,
        a.wijkteam,
        rules.join(", ")
    );
    if let Some(r) = a.reden {
        let _ = write!(s, " reden={}", r.as_str());
    }
    s
}

fn compare(file: &Path, expect: &Spanned<RawExpect>, got: &[Alert], failures: &mut Vec<String>) {
    let (line, col) = at(expect);
    let want = &expect.value.events;
    let mut problems = Vec::new();
    if want.len() != got.len() {
        problems.push(format!(
            "expected {} event(s), got {}",
            want.len(),
            got.len()
        ));
    }
    for (i, (w, g)) in want.iter().zip(got.iter()).enumerate() {
        let w_loc = at(w);
        let w = &w.value;
        let mut diffs = Vec::new();
        if w.kind != g.kind.as_str() {
            diffs.push(format!(
                "type: expected {}, got {}",
                w.kind,
                g.kind.as_str()
            ));
        }
        if let Some(h) = &w.household {
            if h != &g.huishouden {
                diffs.push(format!("household: expected {h}, got {}", g.huishouden));
            }
        }
        if let Some(c) = &w.categorie {
            if c != &g.categorie {
                diffs.push(format!("categorie: expected {c}, got {}", g.categorie));
            }
        }
        if let Some(p) = w.prioriteit {
            if p != g.prioriteit {
                diffs.push(format!("prioriteit: expected {p}, got {}", g.prioriteit));
            }
        }
        if let Some(rules) = &w.rules {
            let mut want_rules = rules.clone();
            want_rules.sort();
            let mut got_rules: Vec<String> = g.regels.iter().map(|r| r.id.to_string()).collect();
            got_rules.sort();
            if want_rules != got_rules {
                diffs.push(format!(
                    "rules: expected [{}], got [{}]",
                    want_rules.join(", "),
                    got_rules.join(", ")
                ));
            }
        }
        if let Some(q) = &w.werkbak {
            if q != &g.werkbak {
                diffs.push(format!("werkbak: expected {q}, got {}", g.werkbak));
            }
        }
        if let Some(t) = &w.wijkteam {
            if t != &g.wijkteam {
                diffs.push(format!("wijkteam: expected {t}, got {}", g.wijkteam));
            }
        }
        if let Some(r) = &w.reden {
            let got_r = g.reden.map(|r| r.as_str()).unwrap_or("-");
            if r != got_r {
                diffs.push(format!("reden: expected {r}, got {got_r}"));
            }
        }
        if !diffs.is_empty() {
            problems.push(format!(
                "event {} ({}:{}:{}): {}",
                i + 1,
                file.display(),
                w_loc.0,
                w_loc.1,
                diffs.join("; ")
            ));
        }
    }
    if !problems.is_empty() {
        let mut msg = format!(
            "{}:{line}:{col}: at {}: {}",
            file.display(),
            expect.value.at,
            problems.join("; ")
        );
        msg.push_str("\n      got:");
        if got.is_empty() {
            msg.push_str(" no events");
        }
        for g in got {
            let _ = write!(msg, "\n        - {}", describe(g));
        }
        failures.push(msg);
    }
}

/// The test files a list of paths names: files as given, and the `*.yaml` /
/// `*.yml` files directly inside directories, sorted.
pub fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostics> {
    RuleSet::files_in(paths)
}
