//! The per-household step: the one place where a household changes.
//!
//! A [`Household`] (its key and state) takes a signal, a timer or feedback
//! in a small [`Context`]: the moment, the settings, the rules and the
//! routing. It applies the input, lets what is too old age out, computes
//! the variables, has the rules evaluated, decides the case and sets the
//! next timer. The engine runs this step for `vroeg run`, `vroeg replay`,
//! the rule tests and the what-if alike; nothing else changes a household.
//!
//! Pure: no IO, no clock. The rules and the routing come in as traits,
//! implemented by `vroeg-rules`.

use crate::case::{decide, escalate, Alert, Evaluation, Trigger};
use crate::feedback::{apply_feedback, Feedback, FeedbackOutcome};
use crate::household::HouseholdKey;
use crate::name::Name;
use crate::signal::{DecodeError, Signal, SignalBody};
use crate::state::{ApplyOutcome, HouseholdState, StateSettings};
use crate::time::Millis;
use crate::vars::{compute, Variables};

/// The rules, as the step needs them.
pub trait Evaluator {
    /// The rule set's content hash: every case event names it.
    fn version(&self) -> &Name;
    /// What the rules say of a household's variables; a rule that cannot
    /// be evaluated is left out and reported.
    fn evaluate(&self, vars: &Variables) -> (Evaluation, Vec<RuleError>);
}

/// Which wijkteam a new case goes to.
pub trait Router {
    /// The team of a postcode (normalised, `1234AB`); `None`: unknown.
    fn team_for(&self, postcode: Option<&str>) -> &Name;
}

/// A rule that could not be evaluated for a household.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    /// The rule's id.
    pub rule: String,
    /// What went wrong, with the rule's file and line.
    pub message: String,
}

/// What a step needs besides the household.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The moment of the step: a signal's time, a timer's due time, or the
    /// wall clock.
    pub now: Millis,
    pub settings: &'a StateSettings,
    pub rules: &'a dyn Evaluator,
    pub routing: &'a dyn Router,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct StepResult {
    /// How a signal was taken; `None` for a timer or feedback.
    pub outcome: Option<ApplyOutcome>,
    pub alerts: Vec<Alert>,
    pub errors: Vec<RuleError>,
    /// A suppression rule held at this evaluation.
    pub suppressed: bool,
    /// What the rules said, where they were evaluated (rule coverage).
    pub evaluation: Option<Evaluation>,
}

/// One household, for one step.
pub struct Household<'a> {
    pub key: &'a HouseholdKey,
    pub state: &'a mut HouseholdState,
}

impl Household<'_> {
    /// Apply a signal at `ctx.now`, and decide.
    pub fn apply_signal(&mut self, signal: &Signal, ctx: &Context<'_>) -> StepResult {
        let outcome = self.state.apply(signal, ctx.now, ctx.settings);
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
        let mut result = self.evaluate(trigger, ctx);
        result.outcome = Some(outcome);
        result
    }

    /// The household's timer is due at `ctx.now`: let things age out,
    /// decide again, and escalate an open case whose contact deadline has
    /// passed.
    pub fn fire_timer(&mut self, ctx: &Context<'_>) -> StepResult {
        let mut result = self.evaluate(Trigger::Timer, ctx);
        let version = ctx.rules.version();
        if let Some(alert) = escalate(self.key, self.state, version, ctx.now, ctx.settings) {
            result.alerts.push(alert);
            self.state.timer_due = self.state.next_due(ctx.now, ctx.settings);
        }
        result
    }

    /// Apply a contact attempt or an outcome to the open case
    /// ([`apply_feedback`]).
    pub fn apply_feedback(
        &mut self,
        feedback: &Feedback,
        ctx: &Context<'_>,
    ) -> Result<FeedbackOutcome, DecodeError> {
        apply_feedback(
            self.key,
            self.state,
            feedback,
            ctx.rules.version(),
            ctx.now,
            ctx.settings,
        )
    }

    fn evaluate(&mut self, trigger: Trigger, ctx: &Context<'_>) -> StepResult {
        let (now, settings) = (ctx.now, ctx.settings);
        self.state.expire(now, settings);
        let mut result = StepResult::default();
        let evaluation = if self.state.has_open_items(now, settings) {
            let vars = compute(self.state, now, settings);
            let (eval, errors) = ctx.rules.evaluate(&vars);
            result.errors = errors;
            result.suppressed = !eval.suppressed_by.is_empty();
            Some(eval)
        } else {
            None
        };
        let postcode = self.state.contact.as_ref().map(|c| c.postcode.as_str());
        let decision = crate::case::Decision {
            ruleset: ctx.rules.version(),
            team: ctx.routing.team_for(postcode),
            now,
            settings,
        };
        result.alerts = decide(
            self.key,
            self.state,
            evaluation.as_ref(),
            trigger,
            &decision,
        );
        self.state.timer_due = self.state.next_due(now, settings);
        result.evaluation = evaluation;
        result
    }
}
