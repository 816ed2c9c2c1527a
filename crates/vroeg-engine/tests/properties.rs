//! Property tests of the engine loop: determinism, idempotence, resends.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;
use vroeg_engine::{
    dead_letter, Classified, ClockMode, Decoded, Engine, EngineConfig, EngineError, Forwarded,
    ForwardedItem, ForwardedRecord, Intake, Origin, Record, Sink, SinkError,
};
use vroeg_rules::{LoadOptions, RuleSet};
use vroeg_store::{MemoryStore, Message, Store};

fn rules() -> Arc<RuleSet> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    Arc::new(
        RuleSet::load(&[dir], &LoadOptions::default())
            .expect("shipped rules load")
            .0,
    )
}

/// A compact description of one signal, turned into CloudEvents JSON.
#[derive(Clone, Debug)]
struct Spec {
    id: u32,
    household: u8,
    partner: u8,
    day: u16,
    euro: u32,
    status: u8,
    crisis: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u32..40,
        0u8..4,
        0u8..3,
        0u16..300,
        10u32..2000,
        0u8..5,
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(id, household, partner, day, euro, status, crisis)| Spec {
            id,
            household,
            partner,
            day,
            euro,
            status,
            crisis,
        })
}

fn payload(s: &Spec) -> Vec<u8> {
    let partner = ["Zorg", "Energie", "Huur"][s.partner as usize];
    let status = ["open", "open", "open", "betaald", "betalingsregeling"][s.status as usize];
    let day = vroeg_core::time::Day::parse("2026-01-01")
        .unwrap()
        .plus_days(s.day as i32);
    let json = json!({
        "specversion": "1.0", "id": format!("s{}", s.id), "source": format!("urn:test:{partner}"),
        "type": "nl.vroeg.signaal.betalingsachterstand.v1",
        "time": format!("{day}T10:00:00Z"),
        "data": {
            "signaalpartner": partner, "referentie": format!("R{}", s.household), "status": status,
            "bedrag_cent": s.euro * 100, "ontstaansdatum": day.plus_days(-40).to_string(),
            "signaaldatum": day.to_string(), "crisissignaal": s.crisis,
            "client": { "voorletters": "A.", "achternaam": "Test", "geboortedatum": "1980-01-01",
                "straatnaam": "Teststraat", "postcode": "1234AB", "huisnummer": 1 + s.household as u32,
                "plaatsnaam": "Teststad" }
        }
    });
    json.to_string().into_bytes()
}

/// Signals as a stream sorted by time (and id, for stable order).
fn stream(specs: &[Spec]) -> Vec<Vec<u8>> {
    let mut specs = specs.to_vec();
    // One spec per id: a resend of an id must be the same signal.
    specs.sort_by_key(|s| s.id);
    specs.dedup_by_key(|s| s.id);
    specs.sort_by_key(|s| (s.day, s.id));
    specs.iter().map(payload).collect()
}

struct Collect(Vec<Message>);

impl Sink for Collect {
    fn send(&mut self, entries: &[Message]) -> Result<(), SinkError> {
        self.0.extend_from_slice(entries);
        Ok(())
    }
}

const NOW: i64 = 1_900_000_000_000;

/// Payloads as records of one partition, offsets from 0.
fn records(stream: &str, payloads: &[Vec<u8>]) -> Vec<Record> {
    let stream: Arc<str> = stream.into();
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Record {
            stream: stream.clone(),
            partition: 0,
            offset: i as i64,
            payload: p.clone(),
            headers: vec![],
        })
        .collect()
}

/// Every household and case record in the store, encoded, in key order.
fn states(engine: &Engine) -> Vec<(String, Vec<u8>)> {
    store_states(engine.store())
}

fn store_states(store: &Store) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = store
        .households()
        .map(|r| {
            let (k, s) = r.unwrap();
            (k.0.to_string(), vroeg_store::encode_state(&s).unwrap())
        })
        .collect();
    for record in store.cases() {
        let record = record.unwrap();
        // A household with an open case has a record of it.
        out.push((
            format!("case:{}", record.id),
            serde_json::to_vec(&record).unwrap(),
        ));
    }
    for r in store.households() {
        let (_, state) = r.unwrap();
        if let Some(case) = state.case {
            let record = store
                .case(&case.id)
                .unwrap()
                .expect("open case has a record");
            assert_eq!(record.status, vroeg_core::archive::CaseStatus::Open);
            assert_eq!(record.wijkteam, case.team);
        }
    }
    out
}

/// Run payloads through a fresh engine in batches; return the alert
/// payloads and the final household states (encoded).
fn run(payloads: &[Vec<u8>], batch: usize) -> (Vec<Vec<u8>>, Vec<(String, Vec<u8>)>) {
    let store = Store::temporary().unwrap();
    let mut engine = Engine::new(
        store,
        rules(),
        EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime),
    )
    .unwrap();
    let records = records("test", payloads);
    let mut sink = Collect(Vec::new());
    for chunk in records.chunks(batch.max(1)) {
        engine.process_batch(chunk, NOW).unwrap();
        engine.publish_outbox(&mut sink, usize::MAX).unwrap();
    }
    (sink.0.iter().map(json).collect(), states(&engine))
}

/// What a run published: case events by id, and dead letters in order.
type Published = (
    std::collections::BTreeMap<String, Vec<u8>>,
    Vec<Message>,
    Vec<(String, Vec<u8>)>,
);

/// A message as JSON, to compare runs by.
fn json(m: &Message) -> Vec<u8> {
    serde_json::to_vec(m).unwrap()
}

fn by_id(outbox: Vec<Message>) -> Published {
    let mut alerts = std::collections::BTreeMap::new();
    let mut dead = Vec::new();
    for m in outbox {
        match &m {
            Message::Alert(a) => {
                let bytes = serde_json::to_vec(a).unwrap();
                assert!(
                    alerts.insert(a.id.clone(), bytes).is_none(),
                    "an alert id twice"
                );
            }
            _ => dead.push(m),
        }
    }
    (alerts, dead, Vec::new())
}

/// The embedded engine over `payloads`, in batches of `batch`.
fn embedded(payloads: &[Vec<u8>], batch: usize) -> Published {
    let mut engine = Engine::new(
        Store::temporary().unwrap(),
        rules(),
        EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime),
    )
    .unwrap();
    let mut sink = Collect(Vec::new());
    for chunk in records("signalen", payloads).chunks(batch) {
        engine.process_batch(chunk, NOW).unwrap();
        engine.publish_outbox(&mut sink, usize::MAX).unwrap();
    }
    let mut out = by_id(sink.0);
    out.2 = states(&engine);
    out
}

/// The same records the partitioned way, in memory: intake classifies
/// them in arrival order, in batches of `intake_batch`, and forwards them by
/// household partition, with a progress marker per source partition to
/// every household partition after each batch, and an idle marker for
/// every source at the end; each household partition's engine processes
/// its records in batches of `state_batch`, writing its cache as the
/// changelog would. Each partition is then restored from its changelog into
/// a fresh cache, which must equal the live one. `arrival` holds records of
/// `sources` source partitions of one stream.
fn partitioned(
    arrival: &[Record],
    sources: u32,
    partitions: u32,
    intake_batch: usize,
    state_batch: usize,
) -> Published {
    let config = EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime);
    let intake = Intake::new(&config);
    let topic: Arc<str> = "huishoudens".into();
    let mut forwarded: Vec<Vec<ForwardedRecord>> = vec![Vec::new(); partitions as usize];
    let mut outbox = Vec::new();
    let to_all =
        |forwarded: &mut Vec<Vec<ForwardedRecord>>, origin: Origin, item: ForwardedItem| {
            for (i, p) in forwarded.iter_mut().enumerate() {
                p.push(ForwardedRecord {
                    stream: topic.clone(),
                    partition: i as i32,
                    offset: p.len() as i64,
                    forwarded: Forwarded {
                        origin: origin.clone(),
                        item: item.clone(),
                    },
                });
            }
        };
    let mut last_offset = std::collections::BTreeMap::new();
    for chunk in arrival.chunks(intake_batch) {
        let mut progress = std::collections::BTreeMap::new();
        for record in chunk {
            let classified = intake.classify(record, NOW);
            let clock = progress.entry(record.partition).or_insert((0, i64::MIN));
            clock.0 = record.offset;
            last_offset.insert(record.partition, record.offset);
            match &classified {
                Classified::Rejected(e) => outbox.push(dead_letter(record, e)),
                Classified::Signal { signal, .. } => clock.1 = clock.1.max(signal.time),
                _ => {}
            }
            if let Some((key, f)) = Forwarded::new(record, classified) {
                let p = &mut forwarded[key.partition(partitions) as usize];
                // Through the wire format, as on Kafka.
                let f = Forwarded::decode(&f.encode().unwrap()).unwrap();
                p.push(ForwardedRecord {
                    stream: topic.clone(),
                    partition: key.partition(partitions) as i32,
                    offset: p.len() as i64,
                    forwarded: f,
                });
            }
        }
        for (source, (offset, clock)) in progress {
            let origin = Origin {
                stream: "signalen".into(),
                partition: source,
                offset,
            };
            let item = ForwardedItem::Progress {
                clock,
                idle: false,
                partitions: sources,
            };
            to_all(&mut forwarded, origin, item);
        }
    }
    for source in 0..sources as i32 {
        let origin = Origin {
            stream: "signalen".into(),
            partition: source,
            offset: last_offset.get(&source).copied().unwrap_or(-1),
        };
        let item = ForwardedItem::Progress {
            clock: i64::MIN,
            idle: true,
            partitions: sources,
        };
        to_all(&mut forwarded, origin, item);
    }
    let root = Store::temporary().unwrap();
    let mut states = Vec::new();
    for (p, records) in forwarded.iter().enumerate() {
        let mut engine =
            Engine::new(root.partition(p as u32).unwrap(), rules(), config.clone()).unwrap();
        let mut changelog = Vec::new();
        for chunk in records.chunks(state_batch) {
            let prepared = engine.prepare_forwarded(chunk, NOW).unwrap();
            outbox.extend(prepared.commit().outbox.iter().cloned());
            let records = prepared.commit().changelog().unwrap();
            let encoded: Vec<(&[u8], Option<&[u8]>)> = records
                .iter()
                .map(|r| (r.key.as_slice(), r.value.as_deref()))
                .collect();
            let next = (changelog.len() + records.len()) as i64;
            engine
                .complete_cached(prepared, &encoded, Some(next))
                .unwrap();
            for r in records {
                changelog.push((changelog.len() as i64, r));
            }
        }
        let live = store_states(engine.store());
        let fresh = Store::temporary().unwrap().partition(p as u32).unwrap();
        fresh.restore(&changelog, changelog.len() as i64).unwrap();
        assert_eq!(store_states(&fresh), live, "partition {p} restored differs");
        states.extend(live);
    }
    states.sort();
    let mut out = by_id(outbox);
    out.2 = states;
    out
}

/// `payloads` split over `sources` source partitions by partner (as a
/// partner topic keyed by partner is), each in its own order, then
/// interleaved by `picks`: each pick takes the next record of one source.
fn interleaved(payloads: &[Vec<u8>], sources: u32, picks: &[prop::sample::Index]) -> Vec<Record> {
    let mut queues: Vec<std::collections::VecDeque<Record>> =
        vec![Default::default(); sources as usize];
    for p in payloads {
        let partner = serde_json::from_slice::<serde_json::Value>(p)
            .ok()
            .and_then(|v| {
                v["source"]
                    .as_str()
                    .map(|s| s.len() + s.bytes().map(usize::from).sum::<usize>())
            })
            .unwrap_or(0);
        let q = &mut queues[partner % sources as usize];
        q.push_back(Record {
            stream: "signalen".into(),
            partition: (partner % sources as usize) as i32,
            offset: q.len() as i64,
            payload: p.clone(),
            headers: vec![],
        });
    }
    let mut out = Vec::new();
    let mut picks = picks.iter().cycle();
    while queues.iter().any(|q| !q.is_empty()) {
        let open: Vec<usize> = (0..queues.len())
            .filter(|i| !queues[*i].is_empty())
            .collect();
        let i = open[picks.next().map_or(0, |p| p.index(open.len()))];
        out.push(queues[i].pop_front().unwrap());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn interleaving_of_source_partitions_does_not_change_the_case_events(
        specs in proptest::collection::vec(spec(), 1..40),
        first in proptest::collection::vec(any::<prop::sample::Index>(), 1..20),
        second in proptest::collection::vec(any::<prop::sample::Index>(), 1..20),
        partitions in 1u32..5,
        batches in (1usize..9, 1usize..9, 1usize..9, 1usize..9),
    ) {
        let payloads = stream(&specs);
        let a = partitioned(&interleaved(&payloads, 3, &first), 3, partitions, batches.0, batches.1);
        let b = partitioned(&interleaved(&payloads, 3, &second), 3, partitions, batches.2, batches.3);
        prop_assert_eq!(&a.0, &b.0, "case events differ");
        prop_assert_eq!(a.2, b.2, "states differ");
    }

    /// The property above on an input that surely opens cases (random
    /// input may open none: amounts under the minimum, say), so that it is
    /// never checked on empty output alone.
    #[test]
    fn interleavings_of_households_with_several_partners_open_the_same_cases(
        first in proptest::collection::vec(any::<prop::sample::Index>(), 1..20),
        second in proptest::collection::vec(any::<prop::sample::Index>(), 1..20),
        partitions in 1u32..5,
        batches in (1usize..9, 1usize..9, 1usize..9, 1usize..9),
    ) {
        let signal = |id, household, partner, day| Spec {
            id,
            household,
            partner,
            day,
            euro: 600,
            status: 0,
            crisis: false,
        };
        let specs = [
            signal(1, 0, 0, 100),
            signal(2, 0, 1, 104),
            signal(3, 0, 2, 109),
            signal(4, 1, 2, 101),
            signal(5, 1, 0, 103),
            signal(6, 2, 1, 102),
            signal(7, 3, 0, 105),
            signal(8, 3, 1, 150),
        ];
        let payloads = stream(&specs);
        let a = partitioned(&interleaved(&payloads, 3, &first), 3, partitions, batches.0, batches.1);
        let b = partitioned(&interleaved(&payloads, 3, &second), 3, partitions, batches.2, batches.3);
        prop_assert!(!a.0.is_empty(), "the input opens cases");
        prop_assert_eq!(&a.0, &b.0, "case events differ");
        prop_assert_eq!(a.2, b.2, "states differ");
    }

    #[test]
    fn partitioned_processing_equals_the_embedded_engine(
        specs in proptest::collection::vec(spec(), 1..40),
        garbage in proptest::collection::vec((any::<prop::sample::Index>(), "[a-z{}]{0,12}"), 0..4),
        partitions in 1u32..5,
        intake_batch in 1usize..9,
        state_batch in 1usize..9,
        batch in 1usize..9,
    ) {
        let mut payloads = stream(&specs);
        for (at, text) in garbage {
            payloads.insert(at.index(payloads.len() + 1), text.into_bytes());
        }
        let embedded = embedded(&payloads, batch);
        let arrival = records("signalen", &payloads);
        let partitioned = partitioned(&arrival, 1, partitions, intake_batch, state_batch);
        prop_assert_eq!(&embedded.0, &partitioned.0, "case events differ");
        prop_assert_eq!(&embedded.1, &partitioned.1, "dead letters differ");
        let mut states = embedded.2.clone();
        states.sort();
        prop_assert_eq!(states, partitioned.2, "states differ");
    }

    #[test]
    fn the_memory_store_gives_what_sled_gives(
        specs in proptest::collection::vec(spec(), 1..40),
        batch in 1usize..8,
    ) {
        let payloads = stream(&specs);
        let mut config = EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime);
        config.publish_cases = true;
        let mut on_sled = Engine::new(Store::temporary().unwrap(), rules(), config.clone()).unwrap();
        let intake = Intake::new(&config);
        let mut in_memory = Engine::new(MemoryStore::new(), rules(), config.clone()).unwrap();
        // The what-if's path: records classified ahead of the engine.
        let mut decoded = Engine::new(MemoryStore::new(), rules(), config).unwrap();
        let mut sink = Collect(Vec::new());
        let mut from_memory = Vec::new();
        let mut from_decoded = Vec::new();
        for chunk in records("signalen", &payloads).chunks(batch) {
            let stats = on_sled.process_batch(chunk, NOW).unwrap();
            prop_assert_eq!(&stats, &in_memory.process_batch(chunk, NOW).unwrap());
            let classified: Vec<Decoded> =
                chunk.iter().map(|r| Decoded::new(&intake, r.clone(), NOW)).collect();
            prop_assert_eq!(&stats, &decoded.process_decoded(&classified, NOW).unwrap());
            on_sled.publish_outbox(&mut sink, usize::MAX).unwrap();
            from_memory.extend(in_memory.store_mut().take_outbox());
            from_decoded.extend(decoded.store_mut().take_outbox());
        }
        // Case events, case records and dead letters, in the same order.
        prop_assert_eq!(&sink.0, &from_memory);
        prop_assert_eq!(&from_memory, &from_decoded);
        // A household that a batch read but did not change (a duplicate)
        // is back in the memory store that lent it.
        prop_assert_eq!(
            in_memory.store().households().count(),
            on_sled.store().households().count()
        );
        let mut memory_states: Vec<(String, Vec<u8>)> = in_memory
            .store()
            .households()
            .map(|r| {
                let (k, s) = r.unwrap();
                (k.0.to_string(), vroeg_store::encode_state(&s).unwrap())
            })
            .chain(in_memory.store().cases().map(|r| {
                (format!("case:{}", r.id), serde_json::to_vec(r).unwrap())
            }))
            .collect();
        memory_states.sort();
        let mut sled_states = states(&on_sled);
        sled_states.sort();
        prop_assert_eq!(sled_states, memory_states);
    }

    /// A what-if without personal data never copies names, addresses and
    /// the like into its state or its case events, and nothing else
    /// changes: the same events but for the contact details.
    #[test]
    fn without_personal_data_the_state_and_case_events_hold_none_and_decide_the_same(
        specs in proptest::collection::vec(spec(), 1..40),
        batch in 1usize..8,
    ) {
        let payloads = stream(&specs);
        let full = EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime);
        let lean = EngineConfig { personal_data: false, ..full.clone() };
        let run = |config: EngineConfig| {
            let intake = Intake::new(&config);
            let mut engine = Engine::new(MemoryStore::new(), rules(), config).unwrap();
            let mut out = Vec::new();
            for chunk in records("signalen", &payloads).chunks(batch) {
                let classified: Vec<Decoded> =
                    chunk.iter().map(|r| Decoded::new(&intake, r.clone(), NOW)).collect();
                engine.process_decoded(&classified, NOW).unwrap();
                out.extend(engine.store_mut().take_outbox());
            }
            let mut states: Vec<(String, vroeg_core::state::HouseholdState)> = engine
                .store()
                .households()
                .map(|r| {
                    let (k, s) = r.unwrap();
                    (k.0.to_string(), s)
                })
                .collect();
            states.sort_by(|a, b| a.0.cmp(&b.0));
            (out, states)
        };
        let (mut with, with_states) = run(full);
        let (without, without_states) = run(lean);
        let mut contacts = 0;
        for m in &mut with {
            if let Message::Alert(a) = m {
                contacts += usize::from(a.contact.take().is_some());
            }
        }
        prop_assert!(without.iter().all(|m| !matches!(m, Message::Alert(a) if a.contact.is_some())));
        prop_assert_eq!(&with, &without);
        // The state without personal data is the full one with only the
        // birth date and the postcode left of each person.
        let scrubbed: Vec<_> = with_states
            .into_iter()
            .map(|(k, mut state)| {
                for r in &mut state.arrears {
                    r.client = vroeg_core::state::Client {
                        geboortedatum: r.client.geboortedatum,
                        ..Default::default()
                    };
                }
                if let Some(c) = &mut state.contact {
                    **c = vroeg_core::state::Contact {
                        geboortedatum: c.geboortedatum,
                        postcode: std::mem::take(&mut c.postcode),
                        ..Default::default()
                    };
                }
                (k, state)
            })
            .collect();
        prop_assert_eq!(scrubbed, without_states);
        // The generated households open cases with contact details.
        let opened = with.iter().filter(|m| matches!(m, Message::Alert(_))).count();
        prop_assert!(opened == 0 || contacts > 0);
    }

    #[test]
    fn replay_is_deterministic(specs in proptest::collection::vec(spec(), 1..40), batch in 1usize..8) {
        let payloads = stream(&specs);
        let a = run(&payloads, batch);
        let b = run(&payloads, batch);
        prop_assert_eq!(&a, &b);
        // Batch boundaries do not change the result either.
        let c = run(&payloads, 1000);
        prop_assert_eq!(a, c);
    }

    #[test]
    fn a_signal_applied_twice_equals_once(specs in proptest::collection::vec(spec(), 1..30), pick in any::<prop::sample::Index>()) {
        let payloads = stream(&specs);
        let i = pick.index(payloads.len());
        let mut doubled = payloads.clone();
        doubled.insert(i + 1, payloads[i].clone());
        prop_assert_eq!(run(&payloads, 5), run(&doubled, 5));
    }

    #[test]
    fn resends_in_any_order_change_nothing(
        specs in proptest::collection::vec(spec(), 1..30),
        resends in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
    ) {
        let payloads = stream(&specs);
        let mut with_resends = payloads.clone();
        // Insert copies of signals at random positions after their original
        // (a resend never arrives before the signal itself).
        for (which, where_) in resends {
            let src = which.index(payloads.len());
            let original = with_resends.iter().position(|p| *p == payloads[src]).unwrap();
            let pos = original + 1 + where_.index(with_resends.len() - original);
            with_resends.insert(pos, payloads[src].clone());
        }
        prop_assert_eq!(run(&payloads, 4), run(&with_resends, 4));
    }
}

#[test]
fn a_restart_resumes_after_the_committed_position() {
    let specs: Vec<Spec> = (0..60)
        .map(|i| Spec {
            id: i,
            household: (i % 4) as u8,
            partner: (i % 3) as u8,
            day: (i * 4) as u16,
            euro: 300 + i,
            status: (i % 5) as u8,
            crisis: i % 17 == 0,
        })
        .collect();
    let payloads = stream(&specs);
    let (reference, ref_states) = run(&payloads, 7);
    assert!(!reference.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let stream_name: Arc<str> = "test".into();
    let records = records("test", &payloads);
    let mut sink = Collect(Vec::new());
    let config = EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime);
    {
        let mut engine = Engine::new(
            Store::open(dir.path(), true).unwrap(),
            rules(),
            config.clone(),
        )
        .unwrap();
        for chunk in records[..30].chunks(7) {
            engine.process_batch(chunk, NOW).unwrap();
        }
        // Crash before publishing the last batch: its alerts stay in the outbox.
        engine.publish_outbox(&mut sink, 1).unwrap();
    }
    let mut engine = Engine::new(Store::open(dir.path(), true).unwrap(), rules(), config).unwrap();
    assert_eq!(engine.position(&stream_name, 0).unwrap(), Some(30));
    engine.publish_outbox(&mut sink, usize::MAX).unwrap();
    // The source re-delivers from an earlier point: already-committed records are skipped.
    for chunk in records[20..].chunks(7) {
        engine.process_batch(chunk, NOW).unwrap();
        engine.publish_outbox(&mut sink, usize::MAX).unwrap();
    }
    let got: Vec<Vec<u8>> = sink.0.iter().map(json).collect();
    assert_eq!(got, reference);
    assert_eq!(states(&engine), ref_states);
}

#[test]
fn invalid_records_become_dead_letters_with_their_position() {
    let store = Store::temporary().unwrap();
    let mut engine = Engine::new(
        store,
        rules(),
        EngineConfig::new(b"s".to_vec(), ClockMode::EventTime),
    )
    .unwrap();
    let stream: Arc<str> = "signalen".into();
    let records = vec![
        Record {
            stream: stream.clone(),
            partition: 2,
            offset: 10,
            payload: b"{not json".to_vec(),
            headers: vec![],
        },
        Record {
            stream: stream.clone(),
            partition: 2,
            offset: 11,
            payload: vec![0xff, 0x00],
            headers: vec![],
        },
    ];
    let stats = engine.process_batch(&records, NOW).unwrap();
    assert_eq!(stats.rejected.get("invalid_json"), Some(&1));
    assert_eq!(stats.rejected.get("invalid_utf8"), Some(&1));
    let mut sink = Collect(Vec::new());
    engine.publish_outbox(&mut sink, usize::MAX).unwrap();
    assert_eq!(sink.0.len(), 2);
    let Message::DeadLetter(first) = &sink.0[0] else {
        panic!("a dead letter expected: {:?}", sink.0[0]);
    };
    assert_eq!(first.payload, b"{not json");
    assert_eq!(first.error.code.as_str(), "invalid_json");
    assert_eq!((first.partition, first.offset), (2, 10));
    assert_eq!(engine.position(&stream, 2).unwrap(), Some(12));
}

/// On the wall clock a batch fires at most `MAX_TIMERS_PER_BATCH` timers;
/// the rest fire in the next batches, none lost.
#[test]
fn a_wall_clock_batch_fires_a_bounded_number_of_timers() {
    let n = vroeg_engine::MAX_TIMERS_PER_BATCH + 200;
    let day = vroeg_core::time::Day::of_millis(NOW - 2 * vroeg_core::time::DAY_MS);
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            json!({
                "specversion": "1.0", "id": format!("t{i}"), "source": "urn:test:Huur",
                "type": "nl.vroeg.signaal.betalingsachterstand.v1",
                "time": format!("{day}T10:00:00Z"),
                "data": {
                    "signaalpartner": "Huur", "referentie": format!("R{i}"), "status": "open",
                    "bedrag_cent": 90_000, "ontstaansdatum": day.plus_days(-60).to_string(),
                    "signaaldatum": day.to_string(), "crisissignaal": false,
                    "client": { "voorletters": "A.", "achternaam": "Test", "geboortedatum": "1980-01-01",
                        "straatnaam": "Teststraat", "postcode": "1234AB", "huisnummer": 1 + i,
                        "plaatsnaam": "Teststad" }
                }
            })
            .to_string()
            .into_bytes()
        })
        .collect();
    let mut engine = Engine::new(
        Store::temporary().unwrap(),
        rules(),
        EngineConfig::new(b"secret".to_vec(), ClockMode::Wall),
    )
    .unwrap();
    engine
        .process_batch(&records("signalen", &payloads), NOW)
        .unwrap();
    let later = NOW + 60 * vroeg_core::time::DAY_MS;
    let due = engine
        .store()
        .households()
        .filter(|h| h.as_ref().unwrap().1.timer_due.is_some_and(|d| d <= later))
        .count();
    assert!(
        due > vroeg_engine::MAX_TIMERS_PER_BATCH,
        "only {due} timers due"
    );
    let first = engine.tick(later).unwrap().timers;
    assert_eq!(first as usize, vroeg_engine::MAX_TIMERS_PER_BATCH);
    let second = engine.tick(later).unwrap().timers;
    assert_eq!((first + second) as usize, due, "every due timer fired once");
}

/// The memory store lends its households to a batch. A batch that is
/// given up holds them still, so the engine refuses to go on rather than
/// run on a store that lost them.
#[test]
fn an_engine_refuses_to_go_on_after_a_batch_that_held_lent_households_is_given_up() {
    let specs: Vec<Spec> = (0..4)
        .map(|id| Spec {
            id,
            household: id as u8,
            partner: 0,
            day: 200,
            euro: 500,
            status: 0,
            crisis: false,
        })
        .collect();
    let payloads = stream(&specs);
    let all = records("signalen", &payloads);
    let config = EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime);
    let mut engine = Engine::new(MemoryStore::new(), rules(), config).unwrap();
    engine.process_batch(&all[..2], NOW).unwrap();
    assert_eq!(engine.store().households().count(), 2);
    // The same two households again, and two new ones: prepared, given up.
    let prepared = engine.prepare(&all, NOW).unwrap();
    engine.abandon(prepared);
    let refused = engine.process_batch(&all[2..], NOW).unwrap_err();
    assert!(matches!(refused, EngineError::StoreShort), "{refused}");
    assert!(refused.to_string().contains("start over"), "{refused}");
}

/// A household a batch reads but does not change (here: a resent signal)
/// goes back into the memory store that lent it, and counts on from there.
#[test]
fn a_household_a_batch_only_read_is_back_in_the_memory_store() {
    let spec = |id| Spec {
        id,
        household: 1,
        partner: 0,
        day: 200,
        euro: 500,
        status: 0,
        crisis: false,
    };
    let first = stream(&[spec(1)]);
    let config = EngineConfig::new(b"secret".to_vec(), ClockMode::EventTime);
    let mut engine = Engine::new(MemoryStore::new(), rules(), config).unwrap();
    engine
        .process_batch(&records("signalen", &first), NOW)
        .unwrap();
    let before: Vec<_> = engine.store().households().map(Result::unwrap).collect();
    assert_eq!(before.len(), 1);
    // The same signal once more, at a later offset: a duplicate.
    let mut again = records("signalen", &[first[0].clone(), first[0].clone()]);
    again.remove(0);
    let stats = engine.process_batch(&again, NOW).unwrap();
    assert_eq!(stats.duplicates, 1);
    let after: Vec<_> = engine.store().households().map(Result::unwrap).collect();
    assert_eq!(after, before);
}
