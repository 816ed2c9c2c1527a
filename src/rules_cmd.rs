//! `vroeg rules check` and `vroeg rules test`.

use std::process::ExitCode;

use vroeg_rules::testing::{run_file, test_files};
use vroeg_rules::{LoadOptions, RuleSet};

use crate::{RulesCheckArgs, RulesTestArgs};

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
            }
        }
    }
    println!("rule tests: {passed} passed, {failed} failed, {broken} file(s) could not run");
    Ok(if failed == 0 && broken == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The catalogue as a Markdown table, one line per variable.
pub fn catalogue_markdown() -> String {
    let mut out =
        String::from("| variable | type | unit | purpose | meaning |\n|---|---|---|---|---|\n");
    for v in vroeg_core::vars::catalogue() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            v.name,
            v.ty.as_str(),
            v.unit,
            v.purpose.as_str(),
            v.description
        ));
    }
    out
}

pub fn variables() -> anyhow::Result<ExitCode> {
    print!("{}", catalogue_markdown());
    Ok(ExitCode::SUCCESS)
}
