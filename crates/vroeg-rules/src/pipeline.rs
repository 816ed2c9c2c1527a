//! The pure per-household step: apply a signal (or a timer), evaluate the
//! rules, and decide the case transition.
//!
//! The engine runs this step inside its batches; the rule test runner runs
//! it in memory. Keeping it in one place means a rule test exercises exactly
//! what production runs. No IO, no clock.

use vroeg_core::case::{decide, escalate, Alert, Trigger};
use vroeg_core::signal::{Signal, SignalBody};
use vroeg_core::state::{ApplyOutcome, HouseholdState, StateSettings};
use vroeg_core::time::Millis;
use vroeg_core::vars::compute;
use vroeg_core::HouseholdKey;

use crate::routing::Routing;
use crate::ruleset::{RuleEvalError, RuleSet};

/// What one step did.
#[derive(Debug, Default)]
pub struct StepResult {
    /// `None` for a timer step.
    pub outcome: Option<ApplyOutcome>,
    pub alerts: Vec<Alert>,
    pub errors: Vec<RuleEvalError>,
    /// A suppression rule held at this evaluation.
    pub suppressed: bool,
    /// What the rules said, where they were evaluated (for rule coverage).
    pub evaluation: Option<vroeg_core::Evaluation>,
}

/// The rule set with the state settings it implies, and the routing of
/// new cases to wijkteams.
pub struct Processor<'a> {
    pub rules: &'a RuleSet,
    pub settings: StateSettings,
    pub routing: &'a Routing,
}

impl<'a> Processor<'a> {
    pub fn new(rules: &'a RuleSet, routing: &'a Routing) -> Self {
        Processor {
            rules,
            settings: rules.state_settings(),
            routing,
        }
    }

    /// Apply one signal to its household at `now`.
    pub fn apply_signal(
        &self,
        key: &HouseholdKey,
        state: &mut HouseholdState,
        signal: &Signal,
        now: Millis,
    ) -> StepResult {
        let outcome = state.apply(signal, now, &self.settings);
        if outcome != ApplyOutcome::Applied {
            return StepResult {
                outcome: Some(outcome),
                ..StepResult::default()
            };
        }
        let trigger = match &signal.body {
            SignalBody::Arrears(a) => Trigger::Signal(a.status),
            SignalBody::Absence(_) => Trigger::Absence,
        };
        let mut result = self.evaluate(key, state, trigger, now);
        result.outcome = Some(outcome);
        result
    }

    /// A household's timer is due at `now`: let things age out, re-evaluate,
    /// and escalate an open case whose contact deadline has passed.
    pub fn fire_timer(
        &self,
        key: &HouseholdKey,
        state: &mut HouseholdState,
        now: Millis,
    ) -> StepResult {
        let mut result = self.evaluate(key, state, Trigger::Timer, now);
        if let Some(alert) = escalate(key, state, &self.rules.version, now, &self.settings) {
            result.alerts.push(alert);
            state.timer_due = state.next_due(now, &self.settings);
        }
        result
    }

    fn evaluate(
        &self,
        key: &HouseholdKey,
        state: &mut HouseholdState,
        trigger: Trigger,
        now: Millis,
    ) -> StepResult {
        state.expire(now, &self.settings);
        let mut result = StepResult::default();
        let evaluation = if state.has_open_items(now, &self.settings) {
            let vars = compute(state, now, &self.settings);
            let (eval, errors) = self.rules.evaluate(&vars);
            result.errors = errors;
            result.suppressed = !eval.suppressed_by.is_empty();
            Some(eval)
        } else {
            None
        };
        let team = self
            .routing
            .team_for(state.contact.as_ref().map(|c| c.postcode.as_str()));
        result.alerts = decide(
            key,
            state,
            evaluation.as_ref(),
            &self.rules.version,
            team,
            trigger,
            now,
            &self.settings,
        );
        state.timer_due = state.next_due(now, &self.settings);
        result.evaluation = evaluation;
        result
    }
}
