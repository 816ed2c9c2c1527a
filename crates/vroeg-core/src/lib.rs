//! Vroeg's domain: signals, households, cases and alerts, and the pure state
//! transitions between them.
//!
//! This crate is the bottom of the crate chain. It holds the types every other
//! crate speaks and the functions that change household state. It must not do
//! IO, spawn threads, or read a clock: every function that depends on time
//! takes the time as an argument, so the same input always gives the same
//! output. That property is what makes replay deterministic and lets the
//! engine reprocess a batch after a crash with identical results.
//!
//! - [`signal`]: the signal contract (CloudEvents JSON) and its decoder.
//! - [`household`]: address normalisation and the keyed household pseudonym.
//! - [`state`]: per-household state and the transitions that apply signals.
//! - [`vars`]: the variable catalogue that rules read, computed from state.
//! - [`case`]: the case lifecycle and the alert events it emits.
//! - [`step`]: the per-household step (a signal, a timer, feedback) that
//!   every part of Vroeg runs, with the rules and routing as traits.
//! - [`archive`]: the durable record of every case, for the API and exports.
//! - [`sorted`]: a set kept as a sorted vector, for the small sets of a case.
//! - [`time`]: day and millisecond arithmetic used everywhere else.

#[macro_use]
mod macros;

pub mod archive;
pub mod case;
pub mod feedback;
pub mod household;
mod json;
pub mod name;
pub mod optout;
pub mod signal;
pub mod sorted;
pub mod state;
pub mod step;
pub mod time;
pub mod vars;

pub use case::{Alert, AlertKind, CaseState, Evaluation, FiredRule};
pub use household::{HouseholdKey, HouseholdKeyer};
pub use name::Name;
pub use signal::{DecodeError, ErrorCode, PartnerType, Signal, SignalBody};
pub use state::{ApplyOutcome, HouseholdState, StateSettings};
pub use step::{Context, Evaluator, Household, Router, RuleError, StepResult};
pub use vars::{VarValue, Variables};
