//! A scan for personal data in service output: every `vroeg run` log the
//! integration tests produce is scanned when its [`crate::kafka::Service`]
//! goes away, and tests scan `/metrics` with it too.
//!
//! It looks for the shapes of the personal data in Vroeg's input: a Dutch
//! postcode (`1234 AB`, `1234AB`) and a date of birth (any date before 2010;
//! the tests' signal and log dates are all later). Household keys are
//! lower-case hex, so they never look like a postcode. It looks for the
//! BSNs, surnames and street names of the tests' input by value
//! ([`remember_names`], [`HAND_WRITTEN_BSN`]): a BSN has no shape of its
//! own, since one in eleven nine-digit numbers passes the elfproef, and a
//! number in a log (a size, a duration, an id) once did.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Surnames and street names of the generated input of this test run.
static NAMES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// BSNs of the generated input of this test run.
static BSNS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The BSN of the tests' hand-written signals.
pub(crate) const HAND_WRITTEN_BSN: &str = "111222333";

/// Remember the names and BSNs in generated signals (JSON lines), so that
/// the scan looks for them too.
pub(crate) fn remember_names(lines: &[String]) {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let mut bsns = BSNS.lock().unwrap_or_else(|e| e.into_inner());
    for line in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let client = &v["data"]["client"];
        for field in ["achternaam", "straatnaam"] {
            if let Some(name) = client[field].as_str() {
                if name.len() >= 4 {
                    names.insert(name.to_owned());
                }
            }
        }
        if let Some(bsn) = client["bsn"].as_str() {
            bsns.insert(bsn.to_owned());
        }
    }
}

/// Whether `digits` is a BSN of the tests' input.
fn known_bsn(digits: &str) -> bool {
    digits == HAND_WRITTEN_BSN
        || BSNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digits)
}

/// Every stretch of `text` that looks like personal data, or is a name of
/// the generated input.
pub(crate) fn personal_data(text: &str) -> Vec<String> {
    let mut found: Vec<String> = NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|name| {
            text.match_indices(name.as_str()).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + name.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            })
        })
        .map(|name| format!("name {name}"))
        .collect();
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let alnum = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && (digit(i - 1) || b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let prev_alnum = i > 0 && alnum(i - 1);
        // A BSN of the input: nine digits standing alone (not inside a
        // hex id).
        if run == 9 && !prev_alnum && !alnum(i + 9) && known_bsn(&text[i..i + 9]) {
            found.push(format!("bsn-like {}", &text[i..i + 9]));
        }
        // A postcode: four digits (not starting with 0), an optional space,
        // two capitals, and nothing alphanumeric around it.
        if run == 4 && b[i] != b'0' && !prev_alnum {
            let mut j = i + 4;
            if b.get(j) == Some(&b' ') {
                j += 1;
            }
            if b.get(j).is_some_and(u8::is_ascii_uppercase)
                && b.get(j + 1).is_some_and(u8::is_ascii_uppercase)
                && !alnum(j + 2)
            {
                found.push(format!("postcode-like {}", &text[i..j + 2]));
            }
        }
        // A date of birth: YYYY-MM-DD before 2010.
        if run == 4
            && b.get(i + 4) == Some(&b'-')
            && digit(i + 5)
            && digit(i + 6)
            && b.get(i + 7) == Some(&b'-')
            && digit(i + 8)
            && digit(i + 9)
        {
            let year: u32 = text[i..i + 4].parse().unwrap_or(9999);
            if (1900..2010).contains(&year) {
                found.push(format!("birth-date-like {}", &text[i..i + 10]));
            }
        }
        i += run;
    }
    found
}

#[test]
fn the_scan_finds_what_it_looks_for_and_not_log_noise() {
    let noisy = r#"{"timestamp":"2026-11-23T13:30:01.123456782Z","level":"INFO","fields":{"message":"batch","household":"9f3a1c0e5b7d2a4f","offset":1234,"topic":"t-x-1234-567"}}"#;
    assert_eq!(personal_data(noisy), Vec::<String>::new());
    remember_names(&[
        r#"{"data":{"client":{"achternaam":"Testpersoonsnaam","straatnaam":"Scanweg"}}}"#.into(),
    ]);
    assert_eq!(
        personal_data("lives at Scanweg; Testpersoonsnamen is another word"),
        vec!["name Scanweg"]
    );
    // 111061052 passes the elfproef but is no BSN of the input: a log
    // once held it.
    let leaky = "client 111222333 at 1234 AB, born 1979-03-04; also 9999ZZ; size 111061052";
    assert_eq!(
        personal_data(leaky),
        vec![
            "bsn-like 111222333",
            "postcode-like 1234 AB",
            "birth-date-like 1979-03-04",
            "postcode-like 9999ZZ"
        ]
    );
}
