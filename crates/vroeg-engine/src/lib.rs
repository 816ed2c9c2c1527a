//! The processing loop shared by `vroeg run` (Kafka) and `vroeg replay`
//! (files): decode, apply, evaluate, commit, publish.
//!
//! A source hands the [`Engine`] batches of [`Record`]s. For each batch the
//! engine decodes every record, routes valid signals to their household,
//! runs the pure step of [`vroeg_core::step`], fires due timers, and
//! writes everything the batch changed as **one** atomic sled commit. A sink
//! then drains the outbox. See [`guarantees`] for why this loses nothing and
//! doubles nothing.
//!
//! The engine does not read a clock: callers pass the wall-clock time in,
//! and in event-time mode the clock is the signals' own `time`. It does not
//! talk to Kafka or files; sources and sinks live in the binary and in
//! `vroeg-kafka`.

mod engine;
pub mod guarantees;
pub mod intake;
pub mod mutate;
mod retention;
mod stats;
pub mod testing;
pub mod whatif;

pub use engine::{
    dead_letter, ClockMode, Decoded, Engine, EngineConfig, EngineError, FileRecords,
    ForwardedRecord, Input, KeyedInput, KeyedRecord, Observed, Prepared, Record, Sink, SinkError,
    DEFAULT_TEAM, MAX_DEAD_LETTER_BYTES, MAX_TIMERS_PER_BATCH,
};
pub use intake::{Classified, Forwarded, ForwardedError, ForwardedItem, Intake, Origin};
pub use retention::{PurgeStats, Retention};
pub use stats::{BatchObserver, Stats};
/// The store, for readers beside the engine (the case API).
pub use vroeg_store::{Commit, MemoryStore, StateStore, Store, StoreError};
