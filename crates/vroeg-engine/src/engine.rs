//! The engine: one batch in, one atomic commit out.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use tracing::{debug, warn};
use vroeg_core::archive::CaseRecord;
use vroeg_core::feedback::Feedback;
use vroeg_core::optout::OptOut;
use vroeg_core::signal::{DecodeError, Signal, DEFAULT_MAX_BYTES};
use vroeg_core::state::{ApplyOutcome, HouseholdState, StateSettings};
use vroeg_core::step::{Context, Household, StepResult};
use vroeg_core::time::{Millis, DAY_MS};
use vroeg_core::{Alert, AlertKind, HouseholdKey, HouseholdKeyer};

use crate::intake::{not_a_case_id, Classified, Forwarded, ForwardedItem, Intake, Origin};
use vroeg_rules::routing::Routing;
use vroeg_rules::RuleSet;
use vroeg_store::{
    queue_key, Commit, Cut, DeadLetter, HouseholdWrite, Message, StateStore, Store, StoreError,
};

use crate::stats::Stats;

/// The team of every case when no routing file is configured.
pub const DEFAULT_TEAM: &str = "standaard";

/// Which clock decides "now" for rules and timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// The signals' own `time` (the maximum seen so far): replay.
    EventTime,
    /// The wall clock the caller passes in: the live service.
    Wall,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The secret of the household pseudonym (HMAC key).
    pub household_secret: Vec<u8>,
    pub clock: ClockMode,
    /// How far into the future a signal's time may lie, in milliseconds.
    pub max_future: Millis,
    /// Largest accepted message, in bytes.
    pub max_bytes: usize,
    /// Streams (topics) that carry wijkteam feedback instead of signals.
    pub feedback_streams: Vec<String>,
    /// Which wijkteam gets a new case.
    pub routing: Arc<Routing>,
    /// Addresses and persons who object: their signals are dropped.
    pub opt_out: Arc<OptOut>,
    /// Publish every changed case record (`Destination::Cases`) for the
    /// read models: on in `vroeg run`, off in replay and the rule tests.
    pub publish_cases: bool,
    /// Keep every evaluation of the rules and every evaluation error
    /// ([`Engine::take_observed`]): the rule tests' coverage and failures.
    pub observe: bool,
    /// Keep a record of every case (the case archive: what the case API,
    /// the exports and feedback on closed cases read). Off only where
    /// nothing reads them and no feedback comes: a what-if over history.
    pub case_records: bool,
    /// Keep the personal data of signals (names, addresses, phone numbers,
    /// e-mail addresses, BSNs) in the households' state, and give
    /// `geopend`, `bijgewerkt` and `escalatie` case events the household's
    /// contact details. Off where nobody may see them: a what-if without
    /// `--with-personal-data`, which then never copies them (the state keeps
    /// what decisions read: birth date and postcode).
    pub personal_data: bool,
}

impl EngineConfig {
    pub fn new(household_secret: Vec<u8>, clock: ClockMode) -> Self {
        EngineConfig {
            household_secret,
            clock,
            max_future: DAY_MS,
            max_bytes: DEFAULT_MAX_BYTES,
            feedback_streams: Vec::new(),
            routing: Arc::new(Routing::single(DEFAULT_TEAM)),
            opt_out: Arc::new(OptOut::default()),
            publish_cases: false,
            observe: false,
            case_records: true,
            personal_data: true,
        }
    }
}

/// One input record and its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The stream: a Kafka topic, or `file:<name>` for replay.
    pub stream: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    /// Message headers (binary-mode CloudEvents carry `ce_*` attributes here).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The records of a file of JSON lines, as `vroeg replay` and the what-if
/// read a history: stream `file:<name>`, partition 0, offsets counting the
/// lines from 0, line endings (`\n`, `\r\n`) removed.
pub struct FileRecords<R> {
    reader: R,
    stream: Arc<str>,
    offset: i64,
    /// The line being read, reused: a record's payload is then allocated
    /// once, at its size, instead of growing with the line.
    line: Vec<u8>,
}

impl<R: std::io::BufRead> FileRecords<R> {
    pub fn new(path: &std::path::Path, reader: R) -> FileRecords<R> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        FileRecords {
            reader,
            stream: format!("file:{name}").into(),
            offset: 0,
            line: Vec::new(),
        }
    }

    /// The next line as a record, with the bytes it took in the file
    /// (its line ending included); `None` at the end of the file.
    pub fn next_record(&mut self) -> std::io::Result<Option<(Record, usize)>> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(None);
        }
        let mut line = self.line.as_slice();
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest;
        }
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        let record = Record {
            stream: self.stream.clone(),
            partition: 0,
            offset: self.offset,
            payload: line.to_vec(),
            headers: Vec::new(),
        };
        self.offset += 1;
        Ok(Some((record, n)))
    }
}

/// A record from the household topic: its own position there, and what
/// intake forwarded.
#[derive(Clone, Debug)]
pub struct ForwardedRecord {
    pub stream: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub forwarded: Forwarded,
}

/// A processed batch not yet written: see [`Engine::prepare`].
#[derive(Debug)]
pub struct Prepared {
    commit: Commit,
    stats: Stats,
    observed: Observed,
    moved: HashMap<(Arc<str>, i32), i64>,
    watermark_before: Millis,
    sources_before: Sources,
}

impl Prepared {
    /// What the batch changes, and its outbox.
    pub fn commit(&self) -> &Commit {
        &self.commit
    }

    /// What the batch did (`batches` is counted when it is completed).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn is_empty(&self) -> bool {
        self.commit.is_empty()
    }
}

/// What the rules said during the batches processed with
/// [`EngineConfig::observe`] on.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every evaluation of the rules, in order.
    pub evaluations: Vec<vroeg_core::Evaluation>,
    /// Every rule that failed to evaluate, as its message.
    pub rule_errors: Vec<String>,
}

/// A record the engine can process: a raw one, which it classifies, or one
/// intake classified already.
trait Item {
    /// Whether these records take part in the event-time merge.
    const MERGES: bool;
    fn position(&self) -> (&Arc<str>, i32, i64);
    /// An event-time progress marker, if this is one: its source, clock,
    /// whether the source is idle, and its topic's partition count.
    fn progress(&self) -> Option<(&Origin, Millis, bool, u32)> {
        None
    }
    /// Event time: move the clock on to this moment before the next item.
    fn clock(&self) -> Option<Millis> {
        None
    }
    /// What intake makes of it: borrowed where it was classified before.
    fn classified(&self, intake: &Intake, wall_now: Millis) -> Cow<'_, Classified>;
    /// The record as its source had it, for a dead letter.
    fn original(&self) -> Cow<'_, Record>;
}

impl Item for Record {
    const MERGES: bool = false;

    fn position(&self) -> (&Arc<str>, i32, i64) {
        (&self.stream, self.partition, self.offset)
    }

    fn classified(&self, intake: &Intake, wall_now: Millis) -> Cow<'_, Classified> {
        Cow::Owned(intake.classify(self, wall_now))
    }

    fn original(&self) -> Cow<'_, Record> {
        Cow::Borrowed(self)
    }
}

impl Item for ForwardedRecord {
    const MERGES: bool = true;

    fn position(&self) -> (&Arc<str>, i32, i64) {
        (&self.stream, self.partition, self.offset)
    }

    fn progress(&self) -> Option<(&Origin, Millis, bool, u32)> {
        match self.forwarded.item {
            ForwardedItem::Progress {
                clock,
                idle,
                partitions,
            } => Some((&self.forwarded.origin, clock, idle, partitions)),
            _ => None,
        }
    }

    /// Never called for a progress marker ([`Item::progress`] handles it).
    fn classified(&self, intake: &Intake, _wall_now: Millis) -> Cow<'_, Classified> {
        Cow::Owned(match &self.forwarded.item {
            ForwardedItem::Signal(signal) => Classified::Signal {
                key: intake.keyer().key(signal.address()),
                signal: signal.clone(),
            },
            ForwardedItem::Feedback { feedback, .. } => match feedback.household() {
                Some((key, _)) => Classified::Feedback {
                    key,
                    feedback: feedback.clone(),
                },
                None => Classified::Rejected(not_a_case_id()),
            },
            ForwardedItem::Progress { .. } => Classified::OptedOut,
        })
    }

    fn original(&self) -> Cow<'_, Record> {
        Cow::Owned(self.forwarded.original())
    }
}

/// Replay's input: records, and the moments feedback takes effect.
#[derive(Clone, Debug)]
pub enum Input {
    Record(Record),
    /// Event time: move the clock on to this moment (if later), firing the
    /// timers due by then, before the next record. Feedback carries no time
    /// of its own; replay puts its moment in front of it.
    ClockAt(Millis),
}

impl Item for Input {
    const MERGES: bool = false;

    /// Never called for [`Input::ClockAt`] ([`Item::clock`] handles it).
    fn position(&self) -> (&Arc<str>, i32, i64) {
        match self {
            Input::Record(r) => r.position(),
            Input::ClockAt(_) => unreachable!("a clock item has no position"),
        }
    }

    fn clock(&self) -> Option<Millis> {
        match self {
            Input::Record(_) => None,
            Input::ClockAt(t) => Some(*t),
        }
    }

    fn classified(&self, intake: &Intake, wall_now: Millis) -> Cow<'_, Classified> {
        match self {
            Input::Record(r) => r.classified(intake, wall_now),
            Input::ClockAt(_) => Cow::Owned(Classified::OptedOut),
        }
    }

    fn original(&self) -> Cow<'_, Record> {
        match self {
            Input::Record(r) => r.original(),
            Input::ClockAt(t) => Cow::Owned(Record {
                stream: "clock".into(),
                partition: 0,
                offset: *t,
                payload: Vec::new(),
                headers: Vec::new(),
            }),
        }
    }
}

/// A record whose household is known already: the rule test runner names
/// its households (`h1`, `gezin-a`) instead of deriving them from an
/// address. It takes no part in the event-time merge.
#[derive(Clone, Debug)]
pub struct KeyedRecord {
    pub stream: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: HouseholdKey,
    pub input: KeyedInput,
}

/// What a [`KeyedRecord`] carries.
#[derive(Clone, Debug)]
pub enum KeyedInput {
    Signal(Box<Signal>),
    Feedback(Feedback),
}

impl Item for KeyedRecord {
    const MERGES: bool = false;

    fn position(&self) -> (&Arc<str>, i32, i64) {
        (&self.stream, self.partition, self.offset)
    }

    fn classified(&self, _intake: &Intake, _wall_now: Millis) -> Cow<'_, Classified> {
        Cow::Owned(match &self.input {
            KeyedInput::Signal(signal) => Classified::Signal {
                key: self.key.clone(),
                signal: (**signal).clone(),
            },
            KeyedInput::Feedback(feedback) => Classified::Feedback {
                key: self.key.clone(),
                feedback: feedback.clone(),
            },
        })
    }

    /// The input as JSON (a refused contact attempt's dead letter).
    fn original(&self) -> Cow<'_, Record> {
        let payload = match &self.input {
            KeyedInput::Signal(signal) => serde_json::to_vec(signal),
            KeyedInput::Feedback(feedback) => serde_json::to_vec(feedback),
        };
        Cow::Owned(Record {
            stream: self.stream.clone(),
            partition: self.partition,
            offset: self.offset,
            payload: payload.unwrap_or_default(),
            headers: Vec::new(),
        })
    }
}

/// A record and what intake made of it, classified once ahead of the
/// engine: a what-if classifies its history once for every rule set it
/// compares ([`crate::whatif`]). The engine applies it exactly as it applies
/// the record after classifying it itself, with the same [`Intake`]
/// settings; the record is what a dead letter carries.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub record: Record,
    pub classified: Classified,
}

impl Decoded {
    pub fn new(intake: &Intake, record: Record, wall_now: Millis) -> Decoded {
        let classified = intake.classify(&record, wall_now);
        Decoded { record, classified }
    }
}

impl Item for Decoded {
    const MERGES: bool = false;

    fn position(&self) -> (&Arc<str>, i32, i64) {
        self.record.position()
    }

    fn classified(&self, _intake: &Intake, _wall_now: Millis) -> Cow<'_, Classified> {
        Cow::Borrowed(&self.classified)
    }

    fn original(&self) -> Cow<'_, Record> {
        Cow::Borrowed(&self.record)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("failed to encode an alert: {0}")]
    Encode(String),
    /// A batch failed while it held households the memory store lent it
    /// ([`StateStore::LENDS`]): the store is short of them, so no later
    /// batch may run on it.
    #[error("an earlier batch failed while it held households of the memory store; the store is incomplete, so the run must start over")]
    StoreShort,
}

/// A sink could not deliver; the entries stay in the outbox.
#[derive(Debug, thiserror::Error)]
#[error("{destination} sink: {message}")]
pub struct SinkError {
    pub destination: &'static str,
    pub message: String,
}

/// Where outbox messages go; each sink encodes them for its medium. `send`
/// returns only once every message is durably delivered; then the engine
/// removes them from the outbox.
pub trait Sink {
    fn send(&mut self, messages: &[Message]) -> Result<(), SinkError>;
}

/// The rules, routing and settings of a batch: what the context of each
/// household step ([`vroeg_core::step`]) is made of.
struct Step<'a> {
    rules: &'a RuleSet,
    routing: &'a Routing,
    settings: StateSettings,
}

impl Step<'_> {
    fn at(&self, now: Millis) -> Context<'_> {
        Context {
            now,
            settings: &self.settings,
            rules: self.rules,
            routing: self.routing,
        }
    }
}

/// A household loaded into a batch.
struct Loaded {
    state: Box<HouseholdState>,
    /// The timer registered in the store before this batch.
    stored_timer: Option<Millis>,
    dirty: bool,
    /// Moved out of a lending store ([`StateStore::LENDS`]): written back
    /// with the batch even when unchanged.
    lent: bool,
}

const WATERMARK: &str = "watermark";

/// The engine over a store: sled ([`Store`], the default) for the service
/// and replay, or memory ([`vroeg_store::MemoryStore`]) for the rule tests
/// and `vroeg rules diff`. Everything it decides is the same on both.
pub struct Engine<S = Store> {
    store: S,
    rules: Arc<RuleSet>,
    pub(crate) config: EngineConfig,
    intake: Intake,
    /// Event-time clock: the maximum signal time seen (persisted).
    watermark: Millis,
    positions: HashMap<(Arc<str>, i32), i64>,
    stats: Stats,
    /// Event-time merge: the progress of every source partition.
    sources: Sources,
    /// What the rules said, with [`EngineConfig::observe`].
    observed: Observed,
    /// A batch failed while it held households of a lending store.
    store_short: bool,
    /// The last batch's household map, emptied: the next batch reuses its
    /// room instead of allocating (and the kernel zeroing) it again.
    spare_households: FxHashMap<HouseholdKey, Loaded>,
}

/// The progress intake reported for each source partition (event time,
/// partitioned roles). See [`ForwardedItem::Progress`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Sources {
    /// (stream, partition) -> (latest signal time forwarded, idle).
    progress: BTreeMap<(String, i32), (Millis, bool)>,
    /// Partition count per source stream.
    partitions: BTreeMap<String, u32>,
}

const SOURCE_META: &str = "merge.source\0";
const TOPIC_META: &str = "merge.topic\0";

impl Sources {
    fn load(store: &impl StateStore) -> Result<Sources, EngineError> {
        let mut sources = Sources::default();
        for (name, value) in store.meta_with_prefix(SOURCE_META)? {
            let rest = &name[SOURCE_META.len()..];
            let Some((stream, partition)) = rest.rsplit_once('\0') else {
                continue;
            };
            let (Ok(partition), Ok(clock)) = (
                partition.parse::<i32>(),
                <[u8; 8]>::try_from(value.get(..8).unwrap_or_default()),
            ) else {
                continue;
            };
            let idle = value.get(8) == Some(&1);
            sources.progress.insert(
                (stream.to_owned(), partition),
                (i64::from_be_bytes(clock), idle),
            );
        }
        for (name, value) in store.meta_with_prefix(TOPIC_META)? {
            if let Ok(count) = <[u8; 4]>::try_from(value.as_slice()) {
                sources.partitions.insert(
                    name[TOPIC_META.len()..].to_owned(),
                    u32::from_be_bytes(count),
                );
            }
        }
        Ok(sources)
    }

    fn update(&mut self, stream: &str, partition: i32, clock: Millis, idle: bool, count: u32) {
        let e = self
            .progress
            .entry((stream.to_owned(), partition))
            .or_insert((i64::MIN, false));
        *e = (e.0.max(clock), idle);
        let n = self.partitions.entry(stream.to_owned()).or_insert(count);
        *n = (*n).max(count);
    }

    /// No source can still send a signal older than this: the minimum over
    /// every partition of every source stream of its latest time (an idle
    /// one sets no bound; one not heard from yet holds everything back).
    fn low_watermark(&self) -> Millis {
        if self.partitions.is_empty() {
            return i64::MIN;
        }
        let mut low = i64::MAX;
        for (stream, count) in &self.partitions {
            for p in 0..*count as i32 {
                let bound = match self.progress.get(&(stream.clone(), p)) {
                    None => i64::MIN,
                    Some((_, true)) => i64::MAX,
                    Some((clock, false)) => *clock,
                };
                low = low.min(bound);
            }
        }
        low
    }

    /// The latest signal time any source has forwarded.
    fn horizon(&self) -> Millis {
        self.progress
            .values()
            .map(|(c, _)| *c)
            .max()
            .unwrap_or(i64::MIN)
    }

    fn meta(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for ((stream, partition), (clock, idle)) in &self.progress {
            let mut v = clock.to_be_bytes().to_vec();
            v.push(u8::from(*idle));
            out.push((format!("{SOURCE_META}{stream}\0{partition}"), v));
        }
        for (stream, count) in &self.partitions {
            out.push((
                format!("{TOPIC_META}{stream}"),
                count.to_be_bytes().to_vec(),
            ));
        }
        out
    }
}

/// Per-batch working set.
struct Batch {
    /// How many more timers this batch may fire (wall clock; see
    /// [`MAX_TIMERS_PER_BATCH`]).
    timer_budget: usize,
    /// FxHash: the keys are HMAC digests, and a batch holds a few thousand.
    households: FxHashMap<HouseholdKey, Loaded>,
    /// Timers set during this batch (not yet in the store).
    new_timers: BTreeSet<(Millis, HouseholdKey)>,
    /// The next store timer after the cursor, if any: (due, household).
    store_next: Option<(Millis, HouseholdKey)>,
    commit: Commit,
    stats: Stats,
    /// Case records changed in this batch, by case id.
    cases: HashMap<String, CaseRecord>,
    /// Signals this batch put in the event-time merge queue, by queue key.
    queued: BTreeMap<Vec<u8>, Signal>,
    /// With [`EngineConfig::observe`]: what the rules said in this batch.
    observed: Observed,
}

impl<S: StateStore> Engine<S> {
    pub fn new(store: S, rules: Arc<RuleSet>, config: EngineConfig) -> Result<Self, EngineError> {
        let watermark = match store.meta(WATERMARK)? {
            Some(v) if v.len() == 8 => i64::from_be_bytes(v.try_into().unwrap_or([0; 8])),
            _ => i64::MIN,
        };
        let intake = Intake::new(&config);
        let sources = Sources::load(&store)?;
        Ok(Self {
            store,
            rules,
            config,
            intake,
            watermark,
            positions: HashMap::new(),
            stats: Stats::default(),
            sources,
            observed: Observed::default(),
            store_short: false,
            spare_households: FxHashMap::default(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, to take what a batch wrote (the memory store's outbox).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The store, once the engine is done with it.
    pub fn into_store(self) -> S {
        self.store
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// What the rules said since the last call (with [`EngineConfig::observe`]).
    pub fn take_observed(&mut self) -> Observed {
        std::mem::take(&mut self.observed)
    }

    /// Use another rule set from the next batch on (hot reload). Cases keep
    /// their ids and state; each event names the rule set it fired under.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// Use another objection list from the next batch on.
    pub fn set_opt_out(&mut self, opt_out: Arc<OptOut>) {
        self.intake.set_opt_out(opt_out.clone());
        self.config.opt_out = opt_out;
    }

    pub fn opt_out(&self) -> &Arc<OptOut> {
        &self.config.opt_out
    }

    /// Everything processed so far by this engine instance.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next offset to read for a partition, from the store.
    pub fn position(
        &mut self,
        stream: &Arc<str>,
        partition: i32,
    ) -> Result<Option<i64>, EngineError> {
        if let Some(p) = self.positions.get(&(stream.clone(), partition)) {
            return Ok(Some(*p));
        }
        let p = self.store.position(stream, partition)?;
        if let Some(p) = p {
            self.positions.insert((stream.clone(), partition), p);
        }
        Ok(p)
    }

    /// Forget cached positions (after a rebalance, another owner may have
    /// moved them).
    pub fn forget_positions(&mut self) {
        self.positions.clear();
    }

    /// Process one batch and commit it atomically. `wall_now` is the current
    /// wall-clock time (used for the future-date check, and as "now" in
    /// [`ClockMode::Wall`]). Returns what this batch did.
    ///
    /// On error nothing of the batch is committed and the engine's in-memory
    /// clock is left as it was, so the same batch can be offered again.
    pub fn process_batch(
        &mut self,
        records: &[Record],
        wall_now: Millis,
    ) -> Result<Stats, EngineError> {
        self.process_items(records, wall_now, None)
    }

    /// Process one batch without writing anything: the returned
    /// [`Prepared`] holds the commit (state, case records, positions, and
    /// the outbox of case events, dead letters and partner feedback). Then
    /// either [`Engine::complete`] (or [`Engine::complete_cached`]) it, or
    /// [`Engine::abandon`] it. Prepare the next batch only after that.
    pub fn prepare(
        &mut self,
        records: &[Record],
        wall_now: Millis,
    ) -> Result<Prepared, EngineError> {
        self.prepare_items(records, wall_now, None)
    }

    /// [`Engine::prepare`] for records intake has classified already (the
    /// partitioned service's state role).
    pub fn prepare_forwarded(
        &mut self,
        records: &[ForwardedRecord],
        wall_now: Millis,
    ) -> Result<Prepared, EngineError> {
        self.prepare_items(records, wall_now, None)
    }

    /// [`Engine::process_batch`] for replay's input: records, and the
    /// moments its feedback takes effect.
    pub fn process_inputs(
        &mut self,
        inputs: &[Input],
        wall_now: Millis,
    ) -> Result<Stats, EngineError> {
        self.process_items(inputs, wall_now, None)
    }

    /// [`Engine::process_batch`] for records classified ahead of the
    /// engine ([`Decoded`]): a what-if's history, classified once for
    /// every rule set.
    pub fn process_decoded(
        &mut self,
        records: &[Decoded],
        wall_now: Millis,
    ) -> Result<Stats, EngineError> {
        self.process_items(records, wall_now, None)
    }

    /// Process and commit records whose household is known already (the
    /// rule test runner's named households), then, in event time, move the
    /// clock on to `advance_to` (if later) and fire every timer due by then.
    pub fn process_keyed(
        &mut self,
        records: &[KeyedRecord],
        wall_now: Millis,
        advance_to: Option<Millis>,
    ) -> Result<Stats, EngineError> {
        self.process_items(records, wall_now, advance_to)
    }

    /// Event time: move the clock on to `to` (if that is later) and fire
    /// every timer due by then, as one committed batch: what happens when
    /// time passes without signals (`vroeg replay --until`, a rule test's
    /// evaluation point). On the wall clock it fires what is due at
    /// `wall_now`, like [`Engine::tick`].
    pub fn advance(&mut self, to: Millis, wall_now: Millis) -> Result<Stats, EngineError> {
        self.process_items::<Record>(&[], wall_now, Some(to))
    }

    /// Prepare and complete one batch of any kind of item: what every
    /// `process_*` entry point does.
    fn process_items<I: Item>(
        &mut self,
        items: &[I],
        wall_now: Millis,
        advance_to: Option<Millis>,
    ) -> Result<Stats, EngineError> {
        let prepared = self.prepare_items(items, wall_now, advance_to)?;
        self.complete(prepared)
    }

    /// Write a prepared batch with its outbox, as one atomic commit.
    pub fn complete(&mut self, mut prepared: Prepared) -> Result<Stats, EngineError> {
        let commit = std::mem::take(&mut prepared.commit);
        let empty = commit.is_empty();
        let result = self.store.write(commit);
        self.finish(prepared, empty, result)
    }

    /// Forget a prepared batch: its Kafka transaction was aborted. The
    /// engine is as it was before [`Engine::prepare`] (with a lending store,
    /// [`StateStore::LENDS`], short of the households the batch held: it
    /// refuses every later batch).
    pub fn abandon(&mut self, prepared: Prepared) {
        self.store_short |= S::LENDS && !prepared.commit.households.is_empty();
        self.watermark = prepared.watermark_before;
        self.sources = prepared.sources_before;
    }

    fn finish(
        &mut self,
        prepared: Prepared,
        empty: bool,
        written: Result<(), StoreError>,
    ) -> Result<Stats, EngineError> {
        if let Err(e) = written {
            self.store_short |= S::LENDS;
            self.watermark = prepared.watermark_before;
            self.sources = prepared.sources_before;
            return Err(e.into());
        }
        let Prepared {
            mut stats,
            moved,
            observed,
            ..
        } = prepared;
        self.observed.evaluations.extend(observed.evaluations);
        self.observed.rule_errors.extend(observed.rule_errors);
        if !empty {
            stats.batches = 1;
        }
        // Only now, with the batch written, do positions move in memory.
        self.positions.extend(moved);
        self.stats.merge(&stats);
        Ok(stats)
    }

    fn prepare_items<I: Item>(
        &mut self,
        items: &[I],
        wall_now: Millis,
        advance_to: Option<Millis>,
    ) -> Result<Prepared, EngineError> {
        if self.store_short {
            return Err(EngineError::StoreShort);
        }
        let watermark_before = self.watermark;
        let sources_before = self.sources.clone();
        match self.prepare_inner(items, wall_now, advance_to) {
            Ok((commit, stats, observed, moved)) => Ok(Prepared {
                commit,
                stats,
                observed,
                moved,
                watermark_before,
                sources_before,
            }),
            Err(e) => {
                self.watermark = watermark_before;
                self.sources = sources_before;
                // The households lent to the failed batch are gone with it.
                self.store_short |= S::LENDS;
                Err(e)
            }
        }
    }

    /// The event-time merge: apply, in queue order (time, then source),
    /// every queued signal older than the low watermark, firing timers as
    /// the clock passes them; then move the clock to the watermark (at most
    /// the latest signal time seen), and queue what must still wait.
    fn release(
        &mut self,
        processor: &Step<'_>,
        batch: &mut Batch,
        sources_at_start: &Sources,
    ) -> Result<(), EngineError> {
        let low = self.sources.low_watermark();
        let end = queue_key(low, "", i32::MIN, i64::MIN);
        let mut due: BTreeMap<Vec<u8>, (Signal, bool)> = BTreeMap::new();
        for (key, bytes) in self.store.queued_before(low)? {
            let signal: Signal = postcard::from_bytes(&bytes).map_err(|e| {
                EngineError::Store(StoreError::Corrupt {
                    what: "queued signal",
                    detail: e.to_string(),
                })
            })?;
            due.insert(key, (signal, true));
        }
        let waiting = batch.queued.split_off(&end);
        for (key, signal) in std::mem::replace(&mut batch.queued, waiting) {
            due.insert(key, (signal, false));
        }
        for (key, (signal, stored)) in due {
            if stored {
                batch.commit.queued.push((key, None));
            }
            self.watermark = self.watermark.max(signal.time);
            let now = self.watermark;
            self.fire_timers(processor, batch, now)?;
            let household = self.intake.keyer().key(signal.address());
            self.apply(processor, batch, &household, &signal, now)?;
        }
        let clock = low.min(self.sources.horizon());
        if clock > self.watermark {
            self.watermark = clock;
            self.fire_timers(processor, batch, clock)?;
        }
        for (key, signal) in std::mem::take(&mut batch.queued) {
            let bytes =
                postcard::to_allocvec(&signal).map_err(|e| EngineError::Encode(e.to_string()))?;
            batch.commit.queued.push((key, Some(bytes)));
        }
        if self.sources != *sources_at_start {
            batch.commit.meta.extend(self.sources.meta());
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn prepare_inner<I: Item>(
        &mut self,
        items: &[I],
        wall_now: Millis,
        advance_to: Option<Millis>,
    ) -> Result<(Commit, Stats, Observed, HashMap<(Arc<str>, i32), i64>), EngineError> {
        let rules = self.rules.clone();
        let mut batch = Batch {
            households: {
                // At most one household per item: with room for them all,
                // the map never rehashes.
                let mut map = std::mem::take(&mut self.spare_households);
                map.reserve(items.len());
                map
            },
            new_timers: BTreeSet::new(),
            store_next: None,
            commit: Commit::default(),
            stats: Stats::default(),
            cases: HashMap::new(),
            queued: BTreeMap::new(),
            observed: Observed::default(),
            timer_budget: match self.config.clock {
                ClockMode::Wall => MAX_TIMERS_PER_BATCH,
                // Event time fires every due timer before the next record,
                // or the case events would depend on batch boundaries.
                ClockMode::EventTime => usize::MAX,
            },
        };
        let routing = self.config.routing.clone();
        let processor = Step {
            settings: StateSettings {
                personal_data: self.config.personal_data,
                ..rules.state_settings()
            },
            rules: &rules,
            routing: &routing,
        };
        batch.store_next = self.store.timer_after(None)?;
        // Event time on forwarded records: signals wait in the merge queue
        // until the low watermark passes them (see `ForwardedItem::Progress`).
        let merge = I::MERGES && self.config.clock == ClockMode::EventTime;
        let low_before = self.sources.low_watermark();
        let sources_at_start = if merge {
            self.sources.clone()
        } else {
            Sources::default()
        };
        let mut moved: HashMap<(Arc<str>, i32), i64> = HashMap::new();
        for item in items {
            if let Some(to) = item.clock() {
                if self.config.clock == ClockMode::EventTime && to > self.watermark {
                    self.watermark = to;
                    self.fire_timers(&processor, &mut batch, to)?;
                }
                continue;
            }
            let (stream, partition, offset) = item.position();
            let pos_key = (stream.clone(), partition);
            let next = match moved.get(&pos_key) {
                Some(p) => Some(*p),
                None => self.position(stream, partition)?,
            };
            if next.is_some_and(|p| offset < p) {
                continue; // processed in an earlier, committed batch
            }
            moved.insert(pos_key, offset + 1);
            if let Some((origin, clock, idle, count)) = item.progress() {
                if merge {
                    self.sources
                        .update(&origin.stream, origin.partition, clock, idle, count);
                }
                continue;
            }
            batch.stats.records += 1;
            let classified = item.classified(&self.intake, wall_now);
            let queue = merge
                && matches!(&*classified, Classified::Signal { signal, .. } if signal.time >= low_before);
            if queue {
                // Event time on forwarded records: the signal waits in the
                // merge queue until the low watermark passes it.
                if let Classified::Signal { signal, .. } = classified.into_owned() {
                    let origin = item.original();
                    let queue_key =
                        queue_key(signal.time, &origin.stream, origin.partition, origin.offset);
                    batch.queued.insert(queue_key, signal);
                }
                continue;
            }
            match &*classified {
                Classified::Rejected(error) => {
                    reject(&mut batch, &self.intake, &item.original(), error)
                }
                // An objection: dropped before it touches any state (not
                // even the event-time clock), and counted.
                Classified::OptedOut => batch.stats.opted_out += 1,
                Classified::Feedback { key, feedback } => {
                    // Feedback carries no event time; in replay the clock is
                    // the signals' watermark.
                    let now = match self.config.clock {
                        ClockMode::EventTime => self.watermark,
                        ClockMode::Wall => wall_now,
                    };
                    if let Err(error) = self.feedback(&processor, &mut batch, key, feedback, now)? {
                        reject(&mut batch, &self.intake, &item.original(), &error);
                    }
                }
                Classified::Signal { key, signal } => {
                    let now = match self.config.clock {
                        ClockMode::EventTime => {
                            self.watermark = self.watermark.max(signal.time);
                            self.watermark
                        }
                        ClockMode::Wall => wall_now,
                    };
                    self.fire_timers(&processor, &mut batch, now)?;
                    self.apply(&processor, &mut batch, key, signal, now)?;
                }
            }
        }
        match (self.config.clock, advance_to) {
            (ClockMode::Wall, _) => self.fire_timers(&processor, &mut batch, wall_now)?,
            (ClockMode::EventTime, Some(to)) if to > self.watermark => {
                self.watermark = to;
                self.fire_timers(&processor, &mut batch, to)?;
            }
            (ClockMode::EventTime, _) => {}
        }
        if merge && !items.is_empty() {
            self.release(&processor, &mut batch, &sources_at_start)?;
        }
        let Batch {
            mut households,
            mut commit,
            stats,
            cases,
            observed,
            ..
        } = batch;
        commit.cases = cases.into_values().collect();
        commit.cases.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        if self.config.publish_cases {
            for case in &commit.cases {
                commit.outbox.push(case_entry(&case.id, Some(case)));
            }
        }
        commit.households.reserve(households.len());
        for (key, loaded) in households.drain() {
            if !loaded.dirty && !loaded.lent {
                continue;
            }
            let state = (!loaded.state.is_empty()).then_some(loaded.state);
            commit.households.push(HouseholdWrite {
                key,
                state,
                old_timer: loaded.stored_timer,
            });
        }
        self.spare_households = households;
        // Deterministic write order (sled batches are atomic either way;
        // the changelog follows this order).
        commit.households.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let mut positions: Vec<_> = moved.iter().collect();
        positions.sort();
        for ((stream, partition), offset) in positions {
            commit
                .positions
                .push((stream.to_string(), *partition, *offset));
        }
        if self.config.clock == ClockMode::EventTime && self.watermark != i64::MIN {
            commit
                .meta
                .push((WATERMARK.to_owned(), self.watermark.to_be_bytes().to_vec()));
        }
        Ok((commit, stats, observed, moved))
    }

    pub(crate) fn keyer(&self) -> &HouseholdKeyer {
        self.intake.keyer()
    }

    /// "Now" for rules and timers: the wall clock passed in, or in
    /// event-time mode the watermark (`None` before the first signal).
    pub(crate) fn now(&self, wall_now: Millis) -> Option<Millis> {
        match self.config.clock {
            ClockMode::Wall => Some(wall_now),
            ClockMode::EventTime => (self.watermark != i64::MIN).then_some(self.watermark),
        }
    }

    /// Fire every timer due at or before `now` (wall mode: outside a batch
    /// of records, e.g. from a periodic tick). Commits like a batch.
    pub fn tick(&mut self, wall_now: Millis) -> Result<Stats, EngineError> {
        self.process_batch(&[], wall_now)
    }

    fn load<'b>(
        &self,
        batch: &'b mut Batch,
        key: &HouseholdKey,
    ) -> Result<&'b mut Loaded, EngineError> {
        if batch.households.contains_key(key) {
            return Ok(batch.households.get_mut(key).expect("just checked"));
        }
        let (key, state, lent) = match self.store.lend_household(key)? {
            Some((key, state)) => (key, state, S::LENDS),
            // A household the retention purge deleted counts its cases on
            // from where it was.
            None => {
                let state = HouseholdState {
                    episodes: self.store.retired(key)?.unwrap_or(0),
                    ..HouseholdState::default()
                };
                (key.clone(), Box::new(state), false)
            }
        };
        let stored_timer = state.timer_due;
        Ok(batch.households.entry(key).or_insert(Loaded {
            state,
            stored_timer,
            dirty: false,
            lent,
        }))
    }

    fn apply(
        &self,
        processor: &Step<'_>,
        batch: &mut Batch,
        key: &HouseholdKey,
        signal: &Signal,
        now: Millis,
    ) -> Result<(), EngineError> {
        let loaded = self.load(batch, key)?;
        let before = loaded.state.timer_due;
        let mut household = Household {
            key,
            state: &mut loaded.state,
        };
        let result = household.apply_signal(signal, &processor.at(now));
        match result.outcome {
            Some(ApplyOutcome::Applied) => {
                loaded.dirty = true;
                let after = loaded.state.timer_due;
                batch.stats.applied += 1;
                move_timer(batch, key, before, after);
            }
            Some(ApplyOutcome::Duplicate) => batch.stats.duplicates += 1,
            Some(ApplyOutcome::PurposeDisabled) => batch.stats.purpose_disabled += 1,
            Some(ApplyOutcome::OutsideWindow) => batch.stats.outside_window += 1,
            None => {}
        }
        self.emit(batch, key, result, now)
    }

    fn emit(
        &self,
        batch: &mut Batch,
        key: &HouseholdKey,
        result: StepResult,
        now: Millis,
    ) -> Result<(), EngineError> {
        self.archive(batch, key, &result.alerts, now)?;
        if result.suppressed {
            batch.stats.suppressed += 1;
        }
        for error in &result.errors {
            warn!(rule = %error.rule, household = %key, %error, "rule evaluation failed");
        }
        if self.config.observe {
            batch.observed.evaluations.extend(result.evaluation);
            let errors = result.errors.iter().map(|e| e.to_string());
            batch.observed.rule_errors.extend(errors);
        }
        batch.stats.rule_errors += result.errors.len() as u64;
        for alert in result.alerts {
            count_alert(&mut batch.stats, &alert);
            batch.commit.outbox.push(Message::Alert(Box::new(alert)));
        }
        Ok(())
    }

    /// Bring the case records this step touched up to date: the cases its
    /// alerts name, and the household's open case.
    fn archive(
        &self,
        batch: &mut Batch,
        key: &HouseholdKey,
        alerts: &[Alert],
        now: Millis,
    ) -> Result<(), EngineError> {
        let Some(loaded) = batch.households.get(key) else {
            return Ok(());
        };
        if !self.config.case_records {
            return Ok(());
        }
        let mut ids: BTreeSet<&str> = alerts.iter().map(|a| a.zaak_id.as_str()).collect();
        if loaded.dirty {
            if let Some(case) = &loaded.state.case {
                ids.insert(case.id.as_str());
            }
        }
        for id in ids {
            let stored = match batch.cases.remove(id) {
                Some(r) => Some(r),
                None => self.store.case(id)?,
            };
            if let Some(record) =
                CaseRecord::observe(stored, id, &key.0, alerts, &loaded.state, now)
            {
                batch.cases.insert(id.to_owned(), record);
            }
        }
        Ok(())
    }

    /// Fire timers due at or before `now`, in (due, household) order, from
    /// the store's time index and from timers set earlier in this batch. A
    /// candidate fires only if it is still the household's current timer;
    /// entries that this batch moved are skipped.
    fn fire_timers(
        &self,
        processor: &Step<'_>,
        batch: &mut Batch,
        now: Millis,
    ) -> Result<(), EngineError> {
        loop {
            if batch.timer_budget == 0 {
                return Ok(()); // the rest fire in the next batches
            }
            let from_store = batch
                .store_next
                .as_ref()
                .filter(|(d, _)| *d <= now)
                .cloned();
            let from_batch = batch.new_timers.first().filter(|(d, _)| *d <= now).cloned();
            let (due, key) = match (from_store, from_batch) {
                (None, None) => return Ok(()),
                (Some(a), Some(b)) if b < a => {
                    batch.new_timers.remove(&b);
                    b
                }
                (Some(a), _) => {
                    batch.store_next = self.store.timer_after(Some(&a))?;
                    a
                }
                (None, Some(b)) => {
                    batch.new_timers.remove(&b);
                    b
                }
            };
            let fire_at = match self.config.clock {
                ClockMode::EventTime => due,
                ClockMode::Wall => now,
            };
            let loaded = self.load(batch, &key)?;
            if loaded.state.timer_due != Some(due) {
                continue; // moved or fired since it was indexed
            }
            let mut household = Household {
                key: &key,
                state: &mut loaded.state,
            };
            let result = household.fire_timer(&processor.at(fire_at));
            loaded.dirty = true;
            let after = loaded.state.timer_due;
            batch.timer_budget -= 1;
            batch.stats.timers += 1;
            move_timer(batch, &key, Some(due), after);
            self.emit(batch, &key, result, fire_at)?;
        }
    }

    /// Apply one feedback record (a contact attempt or an outcome) to its
    /// case. Its alerts and partner statuses enter the outbox like any other.
    fn feedback(
        &self,
        processor: &Step<'_>,
        batch: &mut Batch,
        key: &HouseholdKey,
        feedback: &Feedback,
        now: Millis,
    ) -> Result<Result<(), DecodeError>, EngineError> {
        if feedback.kind.annotates() {
            return self.annotate(batch, feedback, now);
        }
        if let vroeg_core::feedback::FeedbackKind::Correctie { reden } = &feedback.kind {
            return self.correct(processor, batch, key, feedback, reden, now);
        }
        let key = key.clone();
        let loaded = self.load(batch, &key)?;
        let before = loaded.state.timer_due;
        let mut household = Household {
            key: &key,
            state: &mut loaded.state,
        };
        let outcome = match household.apply_feedback(feedback, &processor.at(now)) {
            Ok(o) => o,
            Err(e) => {
                // A case that exists (closed meanwhile) shows the refusal.
                self.trace_feedback(batch, feedback, now, Some(&e))?;
                return Ok(Err(e));
            }
        };
        if outcome.duplicate {
            batch.stats.duplicates += 1;
            return Ok(Ok(()));
        }
        loaded.dirty = true;
        let after = loaded.state.timer_due;
        batch.stats.feedback += 1;
        move_timer(batch, &key, before, after);
        for (signal, status) in outcome.partner {
            // Only the source, id and status: never content.
            batch
                .commit
                .outbox
                .push(Message::PartnerStatus { signal, status });
            batch.stats.partner_feedback += 1;
        }
        let result = StepResult {
            alerts: outcome.alerts,
            ..StepResult::default()
        };
        self.emit(batch, &key, result, now)?;
        self.trace_feedback(batch, feedback, now, None)?;
        Ok(Ok(()))
    }

    /// Apply a note or an assignment to its case record: the record alone
    /// changes (and goes to the case topic); the household does not.
    fn annotate(
        &self,
        batch: &mut Batch,
        feedback: &Feedback,
        now: Millis,
    ) -> Result<Result<(), DecodeError>, EngineError> {
        let id = feedback.zaak_id.as_str();
        let record = self.take_case(batch, id)?;
        let Some(mut record) = record else {
            return Ok(Err(vroeg_core::feedback::unknown_case("no such case")));
        };
        let result = match record.annotate(feedback, now) {
            Ok(true) => {
                record.trace_feedback(feedback, now, None);
                batch.stats.feedback += 1;
                Ok(())
            }
            Ok(false) => {
                batch.stats.duplicates += 1;
                Ok(())
            }
            Err(e) => {
                record.trace_feedback(feedback, now, Some(&e));
                Err(e)
            }
        };
        batch.cases.insert(id.to_owned(), record);
        Ok(result)
    }

    /// Correct a recorded outcome: reopen the case in its household's state
    /// and on its record (`vroeg_core::feedback::reopen`).
    fn correct(
        &self,
        processor: &Step<'_>,
        batch: &mut Batch,
        key: &HouseholdKey,
        feedback: &Feedback,
        reden: &str,
        now: Millis,
    ) -> Result<Result<(), DecodeError>, EngineError> {
        let id = feedback.zaak_id.as_str();
        let record = self.take_case(batch, id)?;
        let Some(mut record) = record.filter(|r| r.huishouden == key.0) else {
            return Ok(Err(vroeg_core::feedback::unknown_case("no such case")));
        };
        let result = if record.applied(&feedback.id) {
            batch.stats.duplicates += 1;
            Ok(())
        } else {
            let loaded = self.load(batch, key)?;
            let before = loaded.state.timer_due;
            match vroeg_core::feedback::reopen(
                &mut loaded.state,
                &mut record,
                reden,
                now,
                &processor.settings,
            ) {
                Ok(()) => {
                    loaded.dirty = true;
                    let after = loaded.state.timer_due;
                    move_timer(batch, key, before, after);
                    batch.stats.feedback += 1;
                    record.trace_feedback(feedback, now, None);
                    Ok(())
                }
                Err(e) => {
                    record.trace_feedback(feedback, now, Some(&e));
                    Err(e)
                }
            }
        };
        batch.cases.insert(id.to_owned(), record);
        Ok(result)
    }

    /// Case `id`'s record as this batch has it so far: taken out of the
    /// batch (the caller puts it back), or read from the store.
    fn take_case(&self, batch: &mut Batch, id: &str) -> Result<Option<CaseRecord>, EngineError> {
        match batch.cases.remove(id) {
            Some(r) => Ok(Some(r)),
            None => Ok(self.store.case(id)?),
        }
    }

    /// Note on the case record what became of a feedback message, if the
    /// case has a record (feedback for a case that never existed has
    /// none: it is dead-lettered only).
    fn trace_feedback(
        &self,
        batch: &mut Batch,
        feedback: &Feedback,
        now: Millis,
        refused: Option<&DecodeError>,
    ) -> Result<(), EngineError> {
        let id = feedback.zaak_id.as_str();
        let record = self.take_case(batch, id)?;
        if let Some(mut record) = record {
            record.trace_feedback(feedback, now, refused);
            batch.cases.insert(id.to_owned(), record);
        }
        Ok(())
    }
}

impl Engine<Store> {
    /// Write a prepared batch whose outbox and changelog records go to
    /// Kafka in one transaction, as a cache of the changelog: up to
    /// `Some(changelog_next)` once the transaction committed, or, written
    /// while it commits, with no changelog offset at all until
    /// [`Store::set_changelog_offset`] ([`Store::commit_changelog`]).
    /// `changelog`: the batch's changelog records as they were encoded for
    /// the transaction (keys and values, `None` for a tombstone).
    pub fn complete_cached(
        &mut self,
        prepared: Prepared,
        changelog: &[(&[u8], Option<&[u8]>)],
        changelog_next: Option<i64>,
    ) -> Result<Stats, EngineError> {
        let empty = prepared.commit.is_empty();
        let result = self
            .store
            .commit_changelog(&prepared.commit, changelog, changelog_next);
        self.finish(prepared, empty, result)
    }

    /// Hand outbox messages to `sink`, oldest first, removing each chunk
    /// once the sink has confirmed it. Returns how many messages were sent
    /// (at least `max`, unless the outbox ran empty: chunks are not split).
    pub fn publish_outbox(&self, sink: &mut dyn Sink, max: usize) -> Result<usize, EngineError> {
        let mut sent = 0;
        while sent < max {
            let chunks = self.store.outbox(16)?;
            if chunks.is_empty() {
                break;
            }
            for (seq, entries) in chunks {
                sink.send(&entries)?;
                self.store.outbox_remove(&[seq])?;
                sent += entries.len();
            }
        }
        Ok(sent)
    }
}

/// The message that publishes a case record as it now is, or its
/// deletion (`None`: a tombstone on the case topic).
pub fn case_entry(id: &str, record: Option<&CaseRecord>) -> Message {
    Message::Case {
        id: id.to_owned(),
        record: record.map(|r| Box::new(r.clone())),
    }
}

/// Count a rejected record and send it to the dead-letter outbox.
fn reject(batch: &mut Batch, intake: &Intake, record: &Record, error: &DecodeError) {
    debug!(code = %error.code, stream = %record.stream, partition = record.partition, offset = record.offset, "rejected record");
    intake.count_rejection(&mut batch.stats, record, error);
    batch.commit.outbox.push(dead_letter(record, error));
}

/// A household's timer moved from `before` to `after` in this batch: keep
/// this batch's timers (those [`Engine::fire_timers`] looks at besides the
/// store's index) up to date. A timer that stays where it was is already in
/// one of the two: the store's index, or this batch's timers.
fn move_timer(
    batch: &mut Batch,
    key: &HouseholdKey,
    before: Option<Millis>,
    after: Option<Millis>,
) {
    if before == after {
        return;
    }
    // One copy of the key: the entry taken out is put back with its new time.
    let mut entry = before.map(|b| (b, key.clone()));
    if let Some(old) = entry.take() {
        entry = Some(batch.new_timers.take(&old).unwrap_or(old));
    }
    if let Some(a) = after {
        let k = entry.map_or_else(|| key.clone(), |(_, k)| k);
        batch.new_timers.insert((a, k));
    }
}

fn count_alert(stats: &mut Stats, alert: &Alert) {
    count(&mut stats.alerts, alert.kind.as_str());
    if alert.kind == AlertKind::Escalatie {
        count(&mut stats.escalations, &alert.wijkteam);
    }
    if alert.kind == AlertKind::Geopend {
        count(&mut stats.opened_by_category, &alert.categorie);
        *stats
            .opened_by_priority
            .entry(alert.prioriteit)
            .or_default() += 1;
    }
}

/// One more under `key`, which is copied only the first time.
fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// The dead letter of a rejected record: where it came from, its headers
/// and bytes, and the reason. A dead letter must fit the dead-letter
/// topic, or it would block the outbox: of an oversized message only the
/// first part is kept, with its length and hash, so that the sender can
/// still identify it.
pub fn dead_letter(record: &Record, error: &DecodeError) -> Message {
    let (payload, cut) = if record.payload.len() > MAX_DEAD_LETTER_BYTES {
        (
            record.payload[..MAX_DEAD_LETTER_BYTES].to_vec(),
            Some(Cut {
                bytes: record.payload.len(),
                sha256: hex_sha256(&record.payload),
            }),
        )
    } else {
        (record.payload.clone(), None)
    };
    Message::DeadLetter(Box::new(DeadLetter {
        stream: record.stream.to_string(),
        partition: record.partition,
        offset: record.offset,
        headers: record.headers.clone(),
        payload,
        cut,
        error: error.clone(),
    }))
}

/// On the wall clock, the most timers one batch fires. After a long outage
/// or a restore of old state many timers can be due at once; firing them
/// all in one batch would make it, and its Kafka transaction, unbounded
/// (past `transaction.timeout.ms` it would be aborted and tried again for
/// ever). The rest fire in the next batches, one tick apart at most.
pub const MAX_TIMERS_PER_BATCH: usize = 5_000;

/// The largest payload a dead letter carries (the original message is cut
/// there): well inside Kafka's default 1 MiB message limit.
pub const MAX_DEAD_LETTER_BYTES: usize = 512 * 1024;

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
