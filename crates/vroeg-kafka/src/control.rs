//! What a reload changes while the roles run: the rule set and the
//! objection list. The roles pick a new generation up between batches.

use std::sync::{Arc, Mutex};

use vroeg_core::optout::OptOut;
use vroeg_rules::RuleSet;

pub struct Control {
    inner: Mutex<(Arc<RuleSet>, Arc<OptOut>, u64)>,
}

impl Control {
    pub fn new(rules: Arc<RuleSet>, opt_out: Arc<OptOut>) -> Control {
        Control {
            inner: Mutex::new((rules, opt_out, 1)),
        }
    }

    /// Use `rules` and `opt_out` from the next batch on.
    pub fn set(&self, rules: Arc<RuleSet>, opt_out: Arc<OptOut>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let generation = inner.2 + 1;
        *inner = (rules, opt_out, generation);
    }

    /// The rule set, the objection list, and their generation.
    pub fn get(&self) -> (Arc<RuleSet>, Arc<OptOut>, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.0.clone(), inner.1.clone(), inner.2)
    }
}
