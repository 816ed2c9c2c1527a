//! The rule-file parser, validator and compiler on arbitrary text, and the
//! routing-file loader: diagnostics or a rule set, never a panic. A rule set
//! that loads is also evaluated once, on an empty household.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use vroeg_rules::{LoadOptions, RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = vec![(PathBuf::from("fuzz.yaml"), text.to_owned())];
    for options in [LoadOptions::default(), LoadOptions { school_purpose: true, ..LoadOptions::default() }] {
        if let Ok((rules, _)) = RuleSet::from_sources(&sources, &options) {
            let settings = rules.state_settings();
            let state = vroeg_core::HouseholdState::default();
            let vars = vroeg_core::vars::compute(&state, 1_790_000_000_000, &settings);
            let _ = rules.evaluate(&vars);
        }
    }
    let _ = vroeg_rules::routing::Routing::from_source(Path::new("fuzz.yaml"), text);
});
