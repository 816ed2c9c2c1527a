//! `vroeg rules check` and `vroeg rules test`.

use std::process::ExitCode;

use vroeg_engine::testing::{run_file, test_files};
use vroeg_rules::{LoadOptions, RuleSet};

use crate::{RulesCheckArgs, RulesSchemaArgs, RulesTestArgs};

pub fn check(args: &RulesCheckArgs) -> anyhow::Result<ExitCode> {
    let options = LoadOptions {
        school_purpose: args.school_purpose,
        ..LoadOptions::default()
    };
    match RuleSet::load(&args.paths, &options) {
        Ok((rules, warnings)) => {
            for w in &warnings.0 {
                println!("{w}");
            }
            // Valid, but cannot do what was meant: warnings, not errors.
            let lints = vroeg_rules::lint::lint(&rules);
            for w in &lints.0 {
                println!("{w}");
            }
            if !lints.0.is_empty() {
                println!(
                    "{} warning(s), from evaluating the rules on {} representative households",
                    lints.0.len(),
                    vroeg_rules::lint::SAMPLES
                );
            }
            let s = rules.summary();
            println!(
                "ok: {} rules in {} file(s), {} active, {} disabled; rule set version {}",
                s["rules"],
                rules.files.len(),
                s["active"],
                s["disabled"],
                rules.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            for d in &diags.0 {
                println!("{d}");
            }
            let n = diags.errors().count();
            println!("{n} error(s)");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn test(args: &RulesTestArgs) -> anyhow::Result<ExitCode> {
    let files = match test_files(&args.paths) {
        Ok(f) => f,
        Err(diags) => {
            println!("{diags}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    let mut outcomes = Vec::new();
    for file in &files {
        match run_file(file) {
            Err(e) => {
                broken += 1;
                println!("{e}");
            }
            Ok(outcome) => {
                for t in &outcome.tests {
                    if t.failures.is_empty() {
                        passed += 1;
                        println!("ok      {} :: {}", file.display(), t.name);
                    } else {
                        failed += 1;
                        println!("FAILED  {} :: {}", file.display(), t.name);
                        for f in &t.failures {
                            println!("    {f}");
                        }
                    }
                }
                outcomes.push(outcome);
            }
        }
    }
    println!("rule tests: {passed} passed, {failed} failed, {broken} file(s) could not run");
    let mut ok = failed == 0 && broken == 0 && passed > 0;
    if args.coverage {
        print_coverage(&outcomes);
    }
    if args.mutate && ok {
        ok &= print_mutations(&files)?;
    } else if args.mutate {
        println!("mutation testing needs passing tests first");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_coverage(outcomes: &[vroeg_engine::testing::FileOutcome]) {
    let rules = vroeg_engine::mutate::coverage(outcomes);
    println!();
    println!("rule coverage (evaluations in the tests):");
    println!(
        "{:<40} {:<13} {:>7} {:>9} {:>9}",
        "rule", "actie", "fired", "priority", "category"
    );
    for r in &rules {
        println!(
            "{:<40} {:<13} {:>7} {:>9} {:>9}",
            format!("{}:{}", r.file.display(), r.id),
            r.actie,
            r.fired,
            r.decided_priority,
            r.decided_category
        );
    }
    let never_fired: Vec<&str> = rules
        .iter()
        .filter(|r| r.fired == 0)
        .map(|r| r.id.as_str())
        .collect();
    let never_decided: Vec<&str> = rules
        .iter()
        .filter(|r| r.fired > 0 && r.decided_priority == 0 && r.decided_category == 0)
        .map(|r| r.id.as_str())
        .collect();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("never fired: {}", list(&never_fired));
    println!("fired but never decided: {}", list(&never_decided));
}

/// Run the mutation tests; whether every mutant was noticed.
fn print_mutations(files: &[std::path::PathBuf]) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let report = vroeg_engine::mutate::mutate(files)?;
    println!();
    for m in &report.survivors {
        println!(
            "{}:{}:{}: survived: {}",
            m.file.display(),
            m.line,
            m.col,
            m.change
        );
    }
    println!(
        "mutation tests: {} mutants, {} noticed by a test, {} survived, {} did not load ({:.1} s)",
        report.mutants,
        report.killed,
        report.survivors.len(),
        report.invalid,
        started.elapsed().as_secs_f64()
    );
    Ok(report.survivors.is_empty())
}

pub fn variables() -> anyhow::Result<ExitCode> {
    print!("{}", vroeg_rules::schema::catalogue_markdown());
    Ok(ExitCode::SUCCESS)
}

/// `vroeg rules schema`: write the JSON Schemas of rule files and rule
/// test files into a directory (the repository keeps them in `schemas/`).
pub fn schema(args: &RulesSchemaArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use vroeg_rules::schema::{rules_schema, tests_schema, RULES_SCHEMA_FILE, TESTS_SCHEMA_FILE};
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, schema) in [
        (RULES_SCHEMA_FILE, rules_schema()),
        (TESTS_SCHEMA_FILE, tests_schema()),
    ] {
        let path = args.out.join(name);
        let mut text = serde_json::to_string_pretty(&schema)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
