//! The malformed-signal corpus (`tests/corpus/`): every message becomes a
//! dead letter with its expected error code and its original bytes (cut at
//! `MAX_DEAD_LETTER_BYTES`), and
//! the engine keeps going (a valid signal after them still opens a case).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use vroeg_core::time::parse_rfc3339;
use vroeg_engine::{ClockMode, Engine, EngineConfig, Record};
use vroeg_rules::{LoadOptions, RuleSet};
use vroeg_store::{Message, Store};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (file, bytes, expected code) of every corpus entry.
fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let dir = root().join("tests/corpus");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (file, code) = l.split_once('\t').expect("file<TAB>code");
            let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            (file.to_owned(), bytes, code.to_owned())
        })
        .collect()
}

#[test]
fn every_corpus_message_is_a_dead_letter_with_its_code() {
    let corpus = corpus();
    assert!(
        corpus.len() >= 50,
        "the corpus has {} entries",
        corpus.len()
    );
    let (rules, _) = RuleSet::load(&[root().join("rules")], &LoadOptions::default()).unwrap();
    let mut engine = Engine::new(
        Store::temporary().unwrap(),
        Arc::new(rules),
        EngineConfig::new(b"corpus".to_vec(), ClockMode::Wall),
    )
    .unwrap();
    let stream: Arc<str> = "corpus".into();
    let mut payloads: Vec<Vec<u8>> = corpus.iter().map(|(_, b, _)| b.clone()).collect();
    // A valid signal last: the engine must still be working after them.
    payloads.push(
        br#"{"specversion":"1.0","id":"after-corpus","source":"urn:vroeg:partner:zorg-0","type":"nl.vroeg.signaal.betalingsachterstand.v1","time":"2026-05-01T10:00:00Z","datacontenttype":"application/json","data":{"signaalpartner":"Zorg","referentie":"Z-1","status":"open","bedrag_cent":80000,"ontstaansdatum":"2026-03-01","signaaldatum":"2026-05-01","crisissignaal":false,"eindelevering":false,"client":{"voorletters":"A.","achternaam":"Boer","geboortedatum":"1977-08-15","straatnaam":"Dorpsstraat","postcode":"1000 XX","huisnummer":1,"plaatsnaam":"Utrecht"}}}"#.to_vec(),
    );
    let records: Vec<Record> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Record {
            stream: stream.clone(),
            partition: 0,
            offset: i as i64,
            payload: p.clone(),
            headers: vec![],
        })
        .collect();
    let now = parse_rfc3339("2026-05-02T00:00:00Z").unwrap();
    let stats = engine.process_batch(&records, now).unwrap();
    let entries: Vec<_> = engine
        .store()
        .outbox(usize::MAX)
        .unwrap()
        .into_iter()
        .flat_map(|(_, chunk)| chunk)
        .collect();
    let dead: BTreeMap<i64, (String, Vec<u8>)> = entries
        .iter()
        .filter_map(|m| match m {
            Message::DeadLetter(d) => Some((
                d.offset,
                (d.error.code.as_str().to_owned(), d.payload.clone()),
            )),
            _ => None,
        })
        .collect();
    let mut wrong = Vec::new();
    for (i, (file, bytes, code)) in corpus.iter().enumerate() {
        match dead.get(&(i as i64)) {
            None => wrong.push(format!("{file}: not a dead letter (expected {code})")),
            Some((got, payload)) => {
                if got != code {
                    wrong.push(format!("{file}: {got}, expected {code}"));
                }
                let kept = &bytes[..bytes.len().min(vroeg_engine::MAX_DEAD_LETTER_BYTES)];
                if payload != kept {
                    wrong.push(format!(
                        "{file}: the dead letter does not keep the original bytes"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        corpus.len(),
        wrong.join("\n")
    );
    assert_eq!(dead.len(), corpus.len());
    assert_eq!(
        stats.alerts.get("geopend"),
        Some(&1),
        "the valid signal after the corpus opened a case"
    );
}
