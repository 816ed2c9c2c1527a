//! JSON Schemas of rule files and rule test files, for editors: with them
//! an editor (VS Code's YAML extension, or any client of the
//! yaml-language-server) completes keys, partner names and variable names,
//! and marks a wrong key or value while the policy officer types.
//!
//! The schemas are generated from the same lists the loader checks against
//! (rule keys, settings, the variable catalogue, the partner types), so
//! they cannot drift: `vroeg rules schema --out schemas/` writes them, and a
//! test holds the committed files to this output. They describe the shape
//! of a file; `vroeg rules check` and `vroeg rules test` remain the
//! judges of what an expression means.

use serde_json::{json, Map, Value};
use vroeg_core::signal::{ArrearsStatus, PartnerType, Verzuimsoort};
use vroeg_core::vars::{catalogue, VarType};

/// The file name of the rule-file schema in `schemas/`.
pub const RULES_SCHEMA_FILE: &str = "rules.schema.json";
/// The file name of the rule-test schema in `schemas/`.
pub const TESTS_SCHEMA_FILE: &str = "rule-tests.schema.json";

/// A lower-case name: a rule id, a category, a work queue.
const NAME: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
/// An ISO date.
const DATE: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
/// An ISO date, or an RFC 3339 time.
const DATE_OR_TIME: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9:.]+([Zz]|[+-][0-9]{2}:[0-9]{2}))?$";

/// The variable catalogue as a Markdown table, one line per variable
/// (`vroeg rules variables` prints it; the schema shows it as the help of
/// `when`).
pub fn catalogue_markdown() -> String {
    let mut out =
        String::from("| variable | type | unit | purpose | meaning |\n|---|---|---|---|---|\n");
    for v in catalogue() {
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

fn strings(items: impl IntoIterator<Item = &'static str>) -> Vec<Value> {
    items
        .into_iter()
        .map(|s| Value::from(s.to_owned()))
        .collect()
}

/// The schema of a rule file (`rules/*.yaml`).
pub fn rules_schema() -> Value {
    // Completion in `when`: every variable, alone and in a typical test.
    let examples: Vec<Value> = catalogue()
        .iter()
        .map(|v| {
            Value::from(match v.ty {
                VarType::Bool => v.name.clone(),
                VarType::Int => format!("{} >= 1", v.name),
                VarType::Float => format!("{} >= 100.0", v.name),
            })
        })
        .collect();
    let variables: Map<String, Value> = catalogue()
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                json!({
                    "kind": v.ty.as_str(),
                    "unit": v.unit,
                    "purpose": v.purpose.as_str(),
                    "description": v.description,
                }),
            )
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://vroeg.invalid/schemas/rules.schema.json",
        "title": "Vroeg rule file",
        "description": "Settings and triage rules of a municipality. Check with `vroeg rules check rules/`; test with `vroeg rules test rules/tests/`. The variables are in docs/rules.md and under `x-variables` here.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "settings": {
                "description": "The rule set's settings (in one file of the set only).",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "minimum_amount_euro": {"type": "number", "minimum": 0, "maximum": 1_000_000, "description": "Open arrears below this amount (euro) do not count. Default 75."},
                    "lookback_months": {"type": "integer", "minimum": 1, "maximum": 60, "description": "How many months of history the rules see. Default 6."},
                    "contact_deadline_days": {"type": "integer", "minimum": 1, "maximum": 365, "description": "Days within which a first contact attempt is due. Default 14."},
                    "crisis_contact_working_days": {"type": "integer", "minimum": 1, "maximum": 60, "description": "Working days within which a first contact attempt is due for a crisis case. Default 3."},
                    "escalation_repeat_days": {"type": "integer", "minimum": 1, "maximum": 365, "description": "Days between repeated escalations of a case without a contact attempt. Default 7."},
                    "holidays": {"type": "array", "items": {"type": "string", "pattern": DATE}, "description": "Public holidays (YYYY-MM-DD), which are not working days."}
                }
            },
            "rules": {
                "type": "array",
                "items": {"$ref": "#/$defs/rule"}
            }
        },
        "$defs": {
            "rule": {
                "type": "object",
                "additionalProperties": false,
                "required": ["id", "description", "when", "categorie", "prioriteit"],
                "properties": {
                    "id": {"type": "string", "pattern": NAME, "description": "Unique id: lower-case letters, digits, `_` or `-`, at most 64."},
                    "description": {"type": "string", "minLength": 1, "description": "What the rule means, in plain Dutch. The inbox uses its first sentence to explain a case."},
                    "when": {"type": "string", "minLength": 1, "markdownDescription": format!("A boolean expression (evalexpr) over the variables below. Combine with `&&`, `||` and `!`; compare with `==`, `!=`, `<`, `<=`, `>`, `>=`.\n\n{}", catalogue_markdown()), "description": "A boolean expression over the variables of the catalogue (`x-variables`).", "examples": examples},
                    "categorie": {"type": "string", "pattern": NAME, "examples": strings(["enkelvoudig", "meervoudig", "opeenvolgend", "crisis", "gezin"]), "description": "The case category this rule gives: one of the built-in ones or a custom lower-case name."},
                    "prioriteit": {"type": "integer", "minimum": 1, "maximum": 9, "description": "1 (lowest) to 9 (highest). The highest priority of the firing rules decides."},
                    "labels": {"type": "array", "items": {"type": "string"}},
                    "enabled": {"type": "boolean", "description": "false switches the rule off. Default true."},
                    "version": {"type": "integer", "minimum": 1, "description": "The rule's version, cited in case events."},
                    "actie": {"enum": ["signaleren", "onderdrukken", "werkbak"], "description": "signaleren (default): open or update a case; onderdrukken: stop this evaluation from opening or updating one; werkbak: put the case in a work queue."},
                    "werkbak": {"type": "string", "pattern": NAME, "description": "The work queue, with `actie: werkbak`."},
                    "doel": {"enum": ["schuld", "school"], "description": "The purpose the rule serves (AVG purpose binding). `school` combines absence with debt, and loads only with the school purpose on."}
                },
                "if": {"properties": {"actie": {"const": "werkbak"}}, "required": ["actie"]},
                "then": {"required": ["werkbak"]},
                "else": {"not": {"required": ["werkbak"]}}
            }
        },
        "x-variables": variables,
    })
}

/// The schema of a rule test file (`rules/tests/*.yaml`).
pub fn tests_schema() -> Value {
    let partners = strings(PartnerType::ALL.iter().map(|p| p.as_str()));
    let statuses = strings(ArrearsStatus::ALL.iter().map(|s| s.as_str()));
    let absences = strings(Verzuimsoort::ALL.iter().map(|s| s.as_str()));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://vroeg.invalid/schemas/rule-tests.schema.json",
        "title": "Vroeg rule test file",
        "description": "Signals for made-up households, and the case events the rules must give. Run with `vroeg rules test rules/tests/`.",
        "type": "object",
        "additionalProperties": false,
        "required": ["tests"],
        "properties": {
            "rule_files": {"type": "array", "items": {"type": "string"}, "description": "Rule files or directories, relative to this file. Default: the directory above this file's directory."},
            "school_purpose": {"type": "boolean", "description": "Load the rules with the school purpose on."},
            "routing": {"type": "string", "description": "A wijkteam routing file, relative to this file (e.g. ../../config/wijkteams.yaml). Default: every case to the team `standaard`."},
            "tests": {"type": "array", "items": {"$ref": "#/$defs/test"}}
        },
        "$defs": {
            "test": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "expect"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "signals": {"type": "array", "items": {"$ref": "#/$defs/signal"}},
                    "expect": {"type": "array", "items": {"$ref": "#/$defs/expect"}}
                }
            },
            "signal": {
                "type": "object",
                "additionalProperties": false,
                "required": ["at", "household"],
                "properties": {
                    "at": {"type": "string", "pattern": DATE_OR_TIME, "description": "When the signal arrives: a day (YYYY-MM-DD) or an RFC 3339 time."},
                    "household": {"type": "string", "minLength": 1, "description": "A made-up household: any short name."},
                    "id": {"type": "string"},
                    "source": {"type": "string"},
                    "postcode": {"type": "string", "pattern": "^[1-9][0-9]{3} ?[A-Za-z]{2}$", "description": "The household's postcode (default 1000AA): the routing file picks the team by it."},
                    "partner": {"enum": partners, "description": "The partner type of a payment-arrears signal."},
                    "referentie": {"type": "string", "description": "The partner's reference: the same reference is the same arrears."},
                    "bedrag": {"description": "The amount in euro: 412.50, or with a decimal comma \"412,50\".", "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": "^[0-9.]*[0-9](,[0-9]{1,2})?$"}]},
                    "status": {"enum": statuses},
                    "ontstaansdatum": {"type": "string", "pattern": DATE},
                    "crisis": {"type": "boolean"},
                    "eindelevering": {"type": "boolean"},
                    "geboortedatum": {"type": "string", "pattern": DATE, "description": "Date of birth of the person (default 1980-01-01)."},
                    "verzuim": {"enum": absences, "description": "A school-absence report instead of a payment signal."},
                    "uren": {"type": "integer", "minimum": 0, "description": "Hours of absence in 4 weeks."},
                    "contactpoging": {"type": "boolean", "description": "Not a signal: the team records a contact attempt."}
                }
            },
            "expect": {
                "type": "object",
                "additionalProperties": false,
                "required": ["at", "events"],
                "properties": {
                    "at": {"type": "string", "pattern": DATE_OR_TIME, "description": "The day (or moment) whose case events are checked; [] expects none."},
                    "events": {"type": "array", "items": {"$ref": "#/$defs/event"}}
                }
            },
            "event": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["geopend", "bijgewerkt", "escalatie", "gesloten"]},
                    "household": {"type": "string"},
                    "categorie": {"type": "string", "pattern": NAME},
                    "prioriteit": {"type": "integer", "minimum": 1, "maximum": 9},
                    "rules": {"type": "array", "items": {"type": "string", "pattern": NAME}, "description": "The ids of the rules that fired, in order."},
                    "reden": {"enum": ["betaald", "betalingsregeling", "ingetrokken", "verlopen", "resultaat"], "description": "Why the case closed."},
                    "werkbak": {"type": "string", "pattern": NAME},
                    "wijkteam": {"type": "string", "description": "The team the routing file gave the case."}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    }

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::draft202012::new(schema).expect("the schema compiles")
    }

    /// Every problem the schema finds in a YAML text.
    fn problems(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
        let value: Value = serde_saphyr::from_str(text).expect("YAML");
        validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }

    #[test]
    fn the_committed_schemas_are_the_generated_ones() {
        for (file, schema) in [
            (RULES_SCHEMA_FILE, rules_schema()),
            (TESTS_SCHEMA_FILE, tests_schema()),
        ] {
            let committed = std::fs::read_to_string(root().join("schemas").join(file)).unwrap();
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            assert!(
                committed == generated,
                "schemas/{file} is stale: run `vroeg rules schema`"
            );
        }
    }

    #[test]
    fn every_shipped_rule_file_and_test_file_validates_and_names_its_schema() {
        let rules = validator(&rules_schema());
        let tests = validator(&tests_schema());
        let sets = [
            (root().join("rules"), &rules, "../schemas/rules.schema.json"),
            (
                root().join("rules/school"),
                &rules,
                "../../schemas/rules.schema.json",
            ),
            (
                root().join("rules/tests"),
                &tests,
                "../../schemas/rule-tests.schema.json",
            ),
        ];
        let mut checked = 0;
        for (dir, validator, schema_path) in sets {
            for file in yaml_files(&dir) {
                let text = std::fs::read_to_string(&file).unwrap();
                let first = text.lines().next().unwrap_or("");
                assert_eq!(
                    first,
                    format!("# yaml-language-server: $schema={schema_path}"),
                    "{}",
                    file.display()
                );
                let found = problems(validator, &text);
                assert!(found.is_empty(), "{}: {found:#?}", file.display());
                checked += 1;
            }
        }
        assert!(checked >= 11, "{checked} files checked");
    }

    #[test]
    fn the_schemas_refuse_what_the_loader_refuses() {
        let rules = validator(&rules_schema());
        let bad = "rules:\n  - id: Hoofdletters\n    description: x\n    when: crisis\n    categorie: werkbak\n    prioriteit: 10\n    wen: crisis\n    actie: werkbak\n";
        let found = problems(&rules, bad);
        // The id, the priority, the unknown key and the missing work queue.
        assert_eq!(found.len(), 4, "{found:#?}");
        let tests = validator(&tests_schema());
        let bad = "tests:\n  - name: t\n    signals:\n      - { at: 2026-05-04, household: a, partner: Zrog, bedrag: \"12,345\" }\n    expect: []\n";
        let found = problems(&tests, bad);
        assert_eq!(found.len(), 2, "{found:#?}");
        // The catalogue is in the schema, for completion.
        let schema = rules_schema();
        let examples = schema["$defs"]["rule"]["properties"]["when"]["examples"]
            .as_array()
            .unwrap();
        assert_eq!(examples.len(), catalogue().len());
        assert!(schema["x-variables"]["aantal_partners_30d"]["description"].is_string());
    }
}
