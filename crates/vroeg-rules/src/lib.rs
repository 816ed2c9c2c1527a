//! Rule files: parse, validate, compile, evaluate, explain, and test.
//!
//! A rule set is one or more YAML files. Each rule has a `when` expression
//! in evalexpr that reads the variables of the catalogue in
//! [`vroeg_core::vars`]. [`RuleSet::load`] reads the files and returns either
//! a compiled, checked rule set or **every** problem found, each with
//! `file:line:col` ([`Diagnostics`]). [`RuleSet::evaluate`] runs the rules
//! against one household's variables and explains the result.
//! The household step itself (apply, evaluate, decide) is
//! `vroeg_core::step`: a [`RuleSet`] is its evaluator and a
//! [`routing::Routing`] its router. The rule test runner and the mutation
//! tests drive the engine (`vroeg_engine::testing`, `vroeg_engine::mutate`).
//!
//! This crate must not do IO other than reading rule and test files, and
//! must not depend on tokio, sled or rdkafka.

mod context;
mod diag;
pub mod diff;
mod fast;
pub mod lint;
mod parse;
pub mod routing;
mod ruleset;
pub mod schema;

pub use diag::{Diagnostic, Diagnostics, Severity};
/// The `(line, column)` of a spanned YAML value.
pub use parse::at as location;
pub use ruleset::{Action, CompiledRule, LoadOptions, RuleEvalError, RuleSet, Settings};
