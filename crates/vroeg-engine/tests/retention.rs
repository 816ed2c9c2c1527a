//! Retention and objections, on the real engine and a sled store, with the
//! clock passed in: closed cases are purged 12 months after closing,
//! signals that aged out of the lookback window go, households that hold
//! nothing go (leaving only their case counter), and signals of addresses
//! or persons on the objection list are dropped at intake and never stored.

use std::path::PathBuf;
use std::sync::Arc;

use vroeg_core::optout::OptOut;
use vroeg_core::signal::Address;
use vroeg_core::time::parse_rfc3339;
use vroeg_core::{HouseholdKey, HouseholdKeyer};
use vroeg_engine::{ClockMode, Engine, EngineConfig, Record, Retention};
use vroeg_rules::{LoadOptions, RuleSet};
use vroeg_store::{Destination, Store};

const SECRET: &[u8] = b"retention-test";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine(opt_out: &str) -> Engine {
    let (rules, _) = RuleSet::load(&[root().join("rules")], &LoadOptions::default()).unwrap();
    let mut config = EngineConfig::new(SECRET.to_vec(), ClockMode::Wall);
    config.opt_out = Arc::new(OptOut::parse(opt_out, &HouseholdKeyer::new(SECRET)).unwrap());
    Engine::new(Store::temporary().unwrap(), Arc::new(rules), config).unwrap()
}

fn key(nr: u32) -> HouseholdKey {
    HouseholdKeyer::new(SECRET).key(&Address {
        straatnaam: String::new(),
        postcode: "1000XX".into(),
        huisnummer: nr,
        huisnummertoevoeging: None,
        plaatsnaam: String::new(),
    })
}

fn ms(day: &str) -> i64 {
    parse_rfc3339(&format!("{day}T12:00:00Z")).unwrap()
}

/// A rent-arrears signal for 1000 XX `nr`, dated `day`.
fn signal(id: &str, nr: u32, status: &str, cent: u64, day: &str, bsn: Option<&str>) -> Vec<u8> {
    let bsn = bsn.map_or(String::new(), |b| format!(r#","bsn":"{b}""#));
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"urn:vroeg:partner:woning-1","type":"nl.vroeg.signaal.betalingsachterstand.v1","time":"{day}T10:00:00Z","datacontenttype":"application/json","data":{{"signaalpartner":"Huur","referentie":"H-{nr}","status":"{status}","bedrag_cent":{cent},"ontstaansdatum":"{day}","signaaldatum":"{day}","crisissignaal":false,"eindelevering":false,"client":{{"voorletters":"A.","achternaam":"Jansen","geboortedatum":"1970-01-01","straatnaam":"Dorpsstraat","postcode":"1000 XX","huisnummer":{nr},"plaatsnaam":"Utrecht"{bsn}}}}}}}"#
    )
    .into_bytes()
}

fn process(
    engine: &mut Engine,
    offset: &mut i64,
    payloads: &[Vec<u8>],
    now: i64,
) -> vroeg_engine::Stats {
    let records: Vec<Record> = payloads
        .iter()
        .map(|p| {
            *offset += 1;
            Record {
                stream: "signalen".into(),
                partition: 0,
                offset: *offset,
                payload: p.clone(),
                headers: vec![],
            }
        })
        .collect();
    engine.process_batch(&records, now).unwrap()
}

#[test]
fn closed_cases_aged_signals_and_empty_households_are_purged_on_time() {
    let mut e = engine("");
    let mut offset = 0;
    let retention = Retention::default();
    process(
        &mut e,
        &mut offset,
        &[
            signal("a1", 1, "open", 80_000, "2026-01-10", None), // opens a case
            signal("b1", 2, "open", 5_000, "2026-01-10", None),  // below the minimum: no case
            signal("c1", 3, "open", 80_000, "2026-01-10", None), // a case that stays open
        ],
        ms("2026-01-10"),
    );
    // The rent is paid: household 1's case closes on 1 February 2026.
    process(
        &mut e,
        &mut offset,
        &[signal("a2", 1, "betaald", 0, "2026-02-01", None)],
        ms("2026-02-01"),
    );
    let case_a = format!("{}-1", key(1).0);
    let case_c = format!("{}-1", key(3).0);
    let store = e.store().clone();
    let record = store.case(&case_a).unwrap().expect("case of household 1");
    assert!(record.gesloten.is_some(), "the case closed on payment");
    assert!(store.case(&case_c).unwrap().unwrap().gesloten.is_none());

    // Within every window: nothing goes.
    let stats = e.purge(ms("2026-06-01"), &retention).unwrap();
    assert_eq!((stats.cases, stats.households), (0, 0), "{stats:?}");
    assert!(store.household(&key(2)).unwrap().is_some());

    // Mid-August: household 2's only signal left the 6-month lookback window
    // and belongs to no case, so the household goes. Household 1's signals
    // aged out too, but its closed case is kept for 12 months, and so is
    // the household. Household 3's case is open: untouched.
    let stats = e.purge(ms("2026-08-15"), &retention).unwrap();
    assert_eq!(stats.cases, 0, "{stats:?}");
    assert_eq!(stats.households, 1, "{stats:?}");
    assert!(store.household(&key(2)).unwrap().is_none());
    assert_eq!(store.retired(&key(2)).unwrap(), None, "it never had a case");
    let a = store
        .household(&key(1))
        .unwrap()
        .expect("kept for its case");
    assert!(a.arrears.is_empty() && a.contact.is_none());
    assert!(store.case(&case_a).unwrap().is_some());
    assert!(store.household(&key(3)).unwrap().unwrap().case.is_some());

    // One day short of 12 months after closing: kept.
    let stats = e.purge(ms("2027-01-31"), &retention).unwrap();
    assert_eq!(stats.cases, 0, "{stats:?}");
    assert!(store.case(&case_a).unwrap().is_some());

    // 12 months after closing: the case record, with its signals and client
    // details, and the household are gone; only the case counter stays.
    let stats = e.purge(ms("2027-02-01"), &retention).unwrap();
    assert_eq!(stats.cases, 1, "{stats:?}");
    assert!(stats.households >= 1, "{stats:?}");
    assert!(store.case(&case_a).unwrap().is_none());
    assert!(store.household(&key(1)).unwrap().is_none());
    assert_eq!(store.retired(&key(1)).unwrap(), Some(1));
    assert!(store.cases().all(|c| c.unwrap().huishouden != key(1).0));
    assert!(
        store.case(&case_c).unwrap().is_some(),
        "an open case is never purged"
    );

    // Household 1 returns: its new case does not reuse the purged case's id.
    process(
        &mut e,
        &mut offset,
        &[signal("a3", 1, "open", 90_000, "2027-03-01", None)],
        ms("2027-03-01"),
    );
    let again = store.household(&key(1)).unwrap().unwrap();
    assert_eq!(again.episodes, 2);
    assert!(store.case(&format!("{}-2", key(1).0)).unwrap().is_some());

    // A second purge at the same moment deletes nothing more.
    let stats = e.purge(ms("2027-03-01"), &retention).unwrap();
    assert_eq!((stats.cases, stats.households), (0, 0), "{stats:?}");
}

#[test]
fn signals_of_objectors_are_dropped_at_intake_and_never_stored() {
    let mut e = engine("adres 1000 XX 4\nbsn 111222333\n");
    let mut offset = 0;
    let stats = process(
        &mut e,
        &mut offset,
        &[
            signal("d1", 4, "open", 80_000, "2026-05-01", None),
            signal("e1", 5, "open", 80_000, "2026-05-01", Some("111222333")),
            signal("f1", 6, "open", 80_000, "2026-05-01", Some("123456782")),
        ],
        ms("2026-05-01"),
    );
    assert_eq!(stats.opted_out, 2, "{stats:?}");
    assert_eq!(stats.applied, 1, "{stats:?}");
    let store = e.store();
    assert!(store.household(&key(4)).unwrap().is_none());
    assert!(store.household(&key(5)).unwrap().is_none());
    assert!(store.household(&key(6)).unwrap().is_some());
    // Not dead-lettered either (that would store them in Kafka), and no
    // case event names them.
    let entries: Vec<_> = store
        .outbox(usize::MAX)
        .unwrap()
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect();
    assert!(entries
        .iter()
        .all(|e| e.destination() != Destination::DeadLetter));
    let text: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert!(!text.contains(key(4).as_str()) && !text.contains(key(5).as_str()));
    assert!(text.contains(key(6).as_str()));
    // Their positions still move on: nothing waits for them.
    assert_eq!(store.position("signalen", 0).unwrap(), Some(4));
}

#[test]
fn an_objection_reaches_back_into_stored_data_at_the_next_purge() {
    let mut e = engine("");
    let mut offset = 0;
    process(
        &mut e,
        &mut offset,
        &[
            signal("g1", 7, "open", 80_000, "2026-05-01", None), // a case, then closed
            signal("p1", 8, "open", 5_000, "2026-05-01", Some("111222333")),
            signal("p2", 8, "open", 6_000, "2026-05-02", Some("123456782")),
            signal("q1", 9, "open", 80_000, "2026-05-01", None), // an open case
        ],
        ms("2026-05-02"),
    );
    process(
        &mut e,
        &mut offset,
        &[signal("g2", 7, "betaald", 0, "2026-05-10", None)],
        ms("2026-05-10"),
    );
    let store = e.store().clone();
    assert!(store.case(&format!("{}-1", key(7).0)).unwrap().is_some());
    // Houses 7 and 9 object, and the person with BSN 111222333.
    e.set_opt_out(Arc::new(
        OptOut::parse(
            "adres 1000XX 7\nadres 1000XX 9\nbsn 111222333\n",
            &HouseholdKeyer::new(SECRET),
        )
        .unwrap(),
    ));
    let stats = e.purge(ms("2026-05-11"), &Retention::default()).unwrap();
    assert_eq!(stats.cases, 1, "{stats:?}");
    // House 7: its closed case and the household are gone, long before
    // their retention ends.
    assert!(store.case(&format!("{}-1", key(7).0)).unwrap().is_none());
    assert!(store.household(&key(7)).unwrap().is_none());
    // House 8: only the objector's signal went.
    let h8 = store.household(&key(8)).unwrap().unwrap();
    let ids: Vec<&str> = h8.arrears.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["p2"]);
    // House 9's case is open: left for its wijkteam.
    assert!(store.household(&key(9)).unwrap().unwrap().case.is_some());
}
