//! Rule evaluation throughput: the shipped rule set against one household's
//! variables, and the variables computed from a household state.
//!
//! `cargo bench -p vroeg-rules --bench evaluate`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vroeg_core::signal::{ArrearsStatus, PartnerType};
use vroeg_core::state::{ArrearsRecord, HouseholdState};
use vroeg_core::time::{Day, DAY_MS};
use vroeg_core::vars::{compute, Variables};
use vroeg_rules::{LoadOptions, RuleSet};

fn household() -> HouseholdState {
    let day = Day::parse("2026-05-01").unwrap();
    let rec = |i: i32, partner, euro: u64| ArrearsRecord {
        source: format!("urn:bench:{i}").into(),
        id: format!("s{i}").into(),
        referentie: format!("R{i}"),
        partner,
        status: ArrearsStatus::Open,
        bedrag_cent: euro * 100,
        ontstaansdatum: day.plus_days(-60 + i),
        signaaldatum: day.plus_days(i * 10),
        time: day.plus_days(i * 10).start_millis(),
        crisis: false,
        eindelevering: false,
        client: Default::default(),
    };
    HouseholdState {
        arrears: vec![
            rec(0, PartnerType::Zorg, 450),
            rec(1, PartnerType::Energie, 800),
            rec(2, PartnerType::Huur, 1200),
        ],
        ..HouseholdState::default()
    }
}

fn bench(c: &mut Criterion) {
    let rules_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let (rules, _) = RuleSet::load(
        &[rules_dir],
        &LoadOptions {
            school_purpose: true,
            ..LoadOptions::default()
        },
    )
    .expect("rules load");
    let state = household();
    let settings = rules.state_settings();
    let now = Day::parse("2026-05-25").unwrap().start_millis() + DAY_MS / 2;
    let vars: Variables = compute(&state, now, &settings);
    let active = rules.active_rules().count() as u64;

    let mut g = c.benchmark_group("rules");
    // One element = one rule evaluated against one household.
    g.throughput(Throughput::Elements(active));
    g.bench_function("evaluate_shipped_rule_set", |b| {
        b.iter(|| rules.evaluate(std::hint::black_box(&vars)))
    });
    g.finish();

    let mut g = c.benchmark_group("variables");
    g.throughput(Throughput::Elements(1));
    g.bench_function("compute_for_household", |b| {
        b.iter(|| compute(std::hint::black_box(&state), now, &settings))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
