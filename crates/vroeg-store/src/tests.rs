use super::*;
use vroeg_core::archive::CaseStatus;

fn key(s: &str) -> HouseholdKey {
    HouseholdKey(s.into())
}

/// A commit that writes one household.
fn write(name: &str, state: Option<HouseholdState>, old_timer: Option<i64>) -> Commit {
    Commit {
        households: vec![HouseholdWrite {
            key: key(name),
            state: state.map(Box::new),
            old_timer,
        }],
        ..Commit::default()
    }
}

/// A small message: a partner status.
fn status(source: &str) -> Message {
    Message::PartnerStatus {
        signal: vroeg_core::state::SignalRef {
            source: source.into(),
            id: "1".into(),
        },
        status: vroeg_core::feedback::PartnerStatus::WilHulp,
    }
}

#[test]
fn a_chunk_an_older_version_wrote_is_read_as_messages() {
    #[derive(Serialize)]
    struct Old {
        destination: Destination,
        key: Option<String>,
        payload: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
    }
    let h = |k: &str, v: &str| (k.to_owned(), v.as_bytes().to_vec());
    let old = vec![
        Old {
            destination: Destination::PartnerFeedback,
            key: Some("urn:p".into()),
            payload: br#"{"source":"urn:p","id":"s1","status":"wil_hulp"}"#.to_vec(),
            headers: vec![],
        },
        Old {
            destination: Destination::Cases,
            key: Some("k-1".into()),
            payload: Vec::new(),
            headers: vec![],
        },
        Old {
            destination: Destination::DeadLetter,
            key: None,
            payload: b"nope".to_vec(),
            headers: vec![
                h("ce_id", "x"),
                h("vroeg_error_code", "invalid_json"),
                h("vroeg_error_detail", "expected value"),
                h("vroeg_source_topic", "signalen"),
                h("vroeg_source_partition", "2"),
                h("vroeg_source_offset", "41"),
            ],
        },
    ];
    let store = Store::temporary().unwrap();
    store
        .tree
        .insert(outbox_key(7), encode("outbox chunk", &old).unwrap())
        .unwrap();
    let chunks = store.outbox(10).unwrap();
    assert_eq!(chunks.len(), 1);
    let messages = &chunks[0].1;
    assert_eq!(messages[0], status("urn:p").with_id("s1"));
    assert_eq!(
        messages[1],
        Message::Case {
            id: "k-1".into(),
            record: None
        }
    );
    let Message::DeadLetter(d) = &messages[2] else {
        panic!("a dead letter expected: {messages:?}")
    };
    assert_eq!(
        (d.stream.as_str(), d.partition, d.offset),
        ("signalen", 2, 41)
    );
    assert_eq!(d.error.code, vroeg_core::signal::ErrorCode::InvalidJson);
    assert_eq!(d.headers, vec![h("ce_id", "x")]);
    assert_eq!(d.payload, b"nope");
    // A new chunk beside it is JSON.
    store
        .commit(&Commit {
            outbox: vec![status("c")],
            ..Commit::default()
        })
        .unwrap();
    let chunks = store.outbox(10).unwrap();
    assert!(
        chunks.iter().any(|(_, m)| *m == vec![status("c")]),
        "{chunks:?}"
    );
}

impl Message {
    fn with_id(mut self, new: &str) -> Message {
        if let Message::PartnerStatus { signal, .. } = &mut self {
            signal.id = new.into();
        }
        self
    }
}

#[test]
fn a_commit_writes_state_positions_outbox_and_timers_together() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), true).unwrap();
        let state = HouseholdState {
            episodes: 2,
            timer_due: Some(5_000),
            ..HouseholdState::default()
        };
        store
            .commit(&Commit {
                positions: vec![("signals".into(), 3, 42)],
                outbox: vec![status("a")],
                ..write("a", Some(state), None)
            })
            .unwrap();
    }
    // Reopen: everything is there.
    let store = Store::open(dir.path(), true).unwrap();
    assert_eq!(store.household(&key("a")).unwrap().unwrap().episodes, 2);
    assert_eq!(store.position("signals", 3).unwrap(), Some(42));
    assert_eq!(store.position("signals", 4).unwrap(), None);
    assert_eq!(store.due_timers(4_999, 10).unwrap(), vec![]);
    assert_eq!(
        store.due_timers(5_000, 10).unwrap(),
        vec![(5_000, key("a"))]
    );
    let out = store.outbox(10).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.len(), 1);
    store.outbox_remove(&[out[0].0]).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
}

#[test]
fn moving_a_timer_removes_the_old_entry() {
    let store = Store::temporary().unwrap();
    let mut state = HouseholdState {
        timer_due: Some(-10),
        ..HouseholdState::default()
    };
    store
        .commit(&write("a", Some(state.clone()), None))
        .unwrap();
    assert_eq!(store.next_timer().unwrap(), Some(-10));
    state.timer_due = Some(20);
    store.commit(&write("a", Some(state), Some(-10))).unwrap();
    assert_eq!(
        store.due_timers(i64::MAX, 10).unwrap(),
        vec![(20, key("a"))]
    );
    store.commit(&write("a", None, Some(20))).unwrap();
    assert_eq!(store.next_timer().unwrap(), None);
    assert!(store.household(&key("a")).unwrap().is_none());
}

#[test]
fn outbox_sequence_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entry = status("b");
    {
        let store = Store::open(dir.path(), true).unwrap();
        store
            .commit(&Commit {
                outbox: vec![entry.clone(), entry.clone()],
                ..Commit::default()
            })
            .unwrap();
    }
    let store = Store::open(dir.path(), true).unwrap();
    store
        .commit(&Commit {
            outbox: vec![entry.clone()],
            ..Commit::default()
        })
        .unwrap();
    let seqs: Vec<u64> = store
        .outbox(10)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    // One chunk per commit, numbered on after the reopen.
    assert_eq!(seqs, vec![0, 1]);
    assert_eq!(store.outbox_len().unwrap(), 3);
}

#[test]
fn unknown_format_versions_are_refused() {
    let mut bytes = encode_state(&HouseholdState::default()).unwrap();
    assert_eq!(decode_state(&bytes).unwrap(), HouseholdState::default());
    bytes[0] = 99;
    assert!(matches!(
        decode_state(&bytes),
        Err(StoreError::Version { found: 99, .. })
    ));
    assert!(matches!(decode_state(&[]), Err(StoreError::Corrupt { .. })));
}

mod roundtrip {
    use proptest::prelude::*;
    use vroeg_core::signal::{ArrearsStatus, PartnerType};
    use vroeg_core::state::{ArrearsRecord, Contact, HouseholdState};
    use vroeg_core::time::Day;

    fn record() -> impl Strategy<Value = ArrearsRecord> {
        (
            ".{0,12}",
            ".{0,12}",
            ".{0,8}",
            0usize..11,
            0usize..4,
            any::<u64>(),
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(
                    source,
                    id,
                    referentie,
                    p,
                    st,
                    bedrag_cent,
                    o,
                    s,
                    time,
                    crisis,
                    eindelevering,
                )| ArrearsRecord {
                    source: source.into(),
                    id: id.into(),
                    referentie,
                    partner: PartnerType::ALL[p],
                    status: ArrearsStatus::ALL[st],
                    bedrag_cent,
                    ontstaansdatum: Day(o),
                    signaaldatum: Day(s),
                    time,
                    crisis,
                    eindelevering,
                    client: Default::default(),
                },
            )
    }

    proptest! {
        #[test]
        fn encoded_state_round_trips(
            arrears in proptest::collection::vec(record(), 0..8),
            episodes in any::<u32>(),
            timer in proptest::option::of(any::<i64>()),
            name in proptest::option::of(".{1,20}"),
        ) {
            let state = HouseholdState {
                arrears,
                episodes,
                timer_due: timer,
                contact: name.map(|n| Box::new(Contact {
                    voorletters: "A.".into(), voorvoegsel: None, achternaam: n, geboortedatum: Day(1),
                    straatnaam: "S".into(), postcode: "1234AB".into(), huisnummer: 1,
                    huisnummertoevoeging: Some("A".into()), plaatsnaam: "P".into(), telefoon: None, email: None,
                })),
                ..HouseholdState::default()
            };
            let bytes = super::super::encode_state(&state).unwrap();
            prop_assert_eq!(super::super::decode_state(&bytes).unwrap(), state);
        }
    }
}

/// Every key and value of a tree but the changelog offset itself.
fn contents(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .tree
        .iter()
        .map(|r| r.unwrap())
        .filter(|(k, _)| k.as_ref() != meta_key(CHANGELOG_OFFSET).as_slice())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn case(id: &str, team: &str, status: CaseStatus) -> CaseRecord {
    let mut r = CaseRecord::new(id, "a", 1_000);
    r.wijkteam = team.into();
    r.status = status;
    r
}

/// The cache of partition 3 of `store`, written live by a few commits that
/// move timers, open, change and close cases, and purge a household, with
/// its changelog (each record with its offset).
fn live_partition(store: &Store) -> (Store, Vec<(i64, ChangelogRecord)>) {
    let live = store.partition(3).unwrap();
    let with_timer = |due| HouseholdState {
        episodes: 1,
        timer_due: Some(due),
        ..HouseholdState::default()
    };
    let commits = [
        Commit {
            positions: vec![("vroeg.huishoudens".into(), 3, 10)],
            meta: vec![("watermark".into(), 7i64.to_be_bytes().to_vec())],
            cases: vec![case("a-1", "noord", CaseStatus::Open)],
            ..write("a", Some(with_timer(5_000)), None)
        },
        Commit {
            cases: vec![case("b-1", "zuid", CaseStatus::Open)],
            ..write("b", Some(with_timer(6_000)), None)
        },
        // The timer moves and the case changes (a case keeps its team);
        // then the household goes (retention) with its closed case, and
        // leaves its case counter.
        Commit {
            cases: vec![CaseRecord {
                prioriteit: 9,
                ..case("a-1", "noord", CaseStatus::Open)
            }],
            ..write("a", Some(with_timer(9_000)), Some(5_000))
        },
        Commit {
            retired: vec![(key("b"), 1)],
            cases: vec![case("b-1", "zuid", CaseStatus::Gesloten)],
            ..write("b", None, Some(6_000))
        },
        Commit {
            purged_cases: vec!["b-1".into()],
            ..Commit::default()
        },
    ];
    let mut changelog = Vec::new();
    for (i, commit) in commits.iter().enumerate() {
        for record in commit.changelog().unwrap() {
            let offset = changelog.len() as i64;
            changelog.push((offset, record));
        }
        live.commit_cached(commit, Some(changelog.len() as i64 + i as i64))
            .unwrap();
    }
    (live, changelog)
}

/// The cache `restored` answers as `live` does, and reflects offset 99.
fn assert_restored(restored: &Store, live: &Store) {
    assert_eq!(restored.changelog_offset().unwrap(), Some(99));
    assert_eq!(contents(restored), contents(live));
    assert_eq!(
        restored.due_timers(i64::MAX, 10).unwrap(),
        vec![(9_000, key("a"))]
    );
    assert_eq!(restored.retired(&key("b")).unwrap(), Some(1));
    let ids: Vec<String> = restored.cases().map(|c| c.unwrap().id).collect();
    assert_eq!(ids, vec!["a-1".to_owned()]);
}

#[test]
fn a_partition_restored_from_its_changelog_equals_the_cache_written_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let (live, changelog) = live_partition(&store);
    // A fresh cache, restored in two pieces, equals the live one.
    let restored = store.partition(4).unwrap();
    assert_eq!(restored.changelog_offset().unwrap(), None);
    let (first, rest) = changelog.split_at(3);
    restored.restore(first, 3).unwrap();
    restored.restore(rest, 99).unwrap();
    assert_restored(&restored, &live);
    assert_eq!(store.partitions(), vec![3, 4]);
    store.drop_partition(4).unwrap();
    assert_eq!(store.partitions(), vec![3]);
}

#[test]
fn a_cache_written_while_its_transaction_commits_reflects_no_offset_until_it_lands() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let (live, _) = live_partition(&store);
    let before = live.changelog_offset().unwrap();
    assert!(before.is_some());
    // Written ahead of its transaction: the batch is in the cache, and the
    // cache reflects no changelog offset (a restore would rebuild it).
    let commit = write("c", Some(HouseholdState::default()), None);
    live.commit_cached(&commit, None).unwrap();
    assert!(live.household(&key("c")).unwrap().is_some());
    assert_eq!(live.changelog_offset().unwrap(), None);
    // The transaction committed: the cache reflects its changelog again,
    // also once the store is opened anew.
    live.set_changelog_offset(42).unwrap();
    assert_eq!(live.changelog_offset().unwrap(), Some(42));
    drop((live, store));
    let store = Store::open(dir.path(), false).unwrap();
    assert_eq!(
        store.partition(3).unwrap().changelog_offset().unwrap(),
        Some(42)
    );
}

#[test]
fn the_team_index_of_an_earlier_version_goes_when_a_tree_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let (live, _) = live_partition(&store);
    let before = contents(&live);
    live.tree.insert(b"inoord\0a-1", &b""[..]).unwrap();
    drop((live, store));
    let store = Store::open(dir.path(), false).unwrap();
    assert_eq!(contents(&store.partition(3).unwrap()), before);
}

fn push_all(bulk: &mut BulkRestore, records: &[(i64, ChangelogRecord)]) {
    for (offset, record) in records {
        bulk.push(*offset, &record.key, record.value.as_deref())
            .unwrap();
    }
}

#[test]
fn a_bulk_restore_in_runs_of_any_size_equals_the_cache_written_live() {
    let store = Store::temporary().unwrap();
    let (live, changelog) = live_partition(&store);
    // One run; a run per record or two (keys written again in a later run
    // look up their old value); and a run that holds every record.
    for (p, run_bytes) in [(4, usize::MAX), (5, 1), (6, 200)] {
        let restored = store.partition(p).unwrap();
        let mut bulk = restored.bulk_restore(run_bytes).unwrap();
        push_all(&mut bulk, &changelog);
        bulk.finish(99).unwrap();
        assert_restored(&restored, &live);
    }
}

#[test]
fn a_bulk_restore_that_did_not_finish_is_cleared_by_the_next() {
    let store = Store::temporary().unwrap();
    let (live, changelog) = live_partition(&store);
    let restored = store.partition(4).unwrap();
    // Half the records written, then the restore is abandoned: the cache
    // reflects no offset, and holds records of households the changelog
    // later removes.
    let mut bulk = restored.bulk_restore(1).unwrap();
    push_all(&mut bulk, &changelog[..changelog.len() / 2]);
    drop(bulk);
    assert_eq!(restored.changelog_offset().unwrap(), None);
    assert!(restored.household(&key("b")).unwrap().is_some());
    let mut bulk = restored.bulk_restore(usize::MAX).unwrap();
    push_all(&mut bulk, &changelog);
    bulk.finish(99).unwrap();
    assert_restored(&restored, &live);
}

#[test]
fn a_bulk_restore_decodes_every_record_the_superseded_ones_too() {
    let store = Store::temporary().unwrap().partition(0).unwrap();
    let mut bulk = store.bulk_restore(usize::MAX).unwrap();
    bulk.push(
        0,
        &household_key(&key("a")),
        Some(&[FORMAT_VERSION, 0xff, 0xff, 0xff]),
    )
    .unwrap();
    let good = write("a", Some(HouseholdState::default()), None)
        .changelog()
        .unwrap();
    let error = good
        .into_iter()
        .try_for_each(|record| bulk.push(1, &record.key, record.value.as_deref()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("at offset 0"), "{error}");
}

#[test]
fn a_changelog_record_that_does_not_decode_fails_the_restore_and_changes_nothing() {
    let store = Store::temporary().unwrap().partition(0).unwrap();
    let good = write("a", Some(HouseholdState::default()), None)
        .changelog()
        .unwrap();
    let mut records: Vec<(i64, ChangelogRecord)> = good.into_iter().map(|r| (0, r)).collect();
    records.push((
        1,
        ChangelogRecord {
            key: household_key(&key("b")),
            value: Some(vec![FORMAT_VERSION, 0xff, 0xff, 0xff]),
        },
    ));
    let error = store.restore(&records, 2).unwrap_err().to_string();
    assert!(error.contains("at offset 1"), "{error}");
    assert_eq!(store.household(&key("a")).unwrap(), None);
    assert_eq!(store.changelog_offset().unwrap(), None);
    let unknown = [(
        5,
        ChangelogRecord {
            key: b"zzz".to_vec(),
            value: None,
        },
    )];
    let error = store.restore(&unknown, 6).unwrap_err().to_string();
    assert!(error.contains("unknown key prefix 'z'"), "{error}");
}

#[test]
fn long_values_are_stored_compressed_and_read_back_short_ones_plain() {
    let long: Vec<u8> = br#"{"tijd":"2026-07-28T11:43:14.774Z","soort":"escalatie"},"#.repeat(40);
    let value = stored(&long);
    assert_eq!(value[0], COMPRESSED);
    assert!(value.len() < long.len() / 4, "{} bytes", value.len());
    assert_eq!(
        versioned("value", &value).unwrap().as_ref(),
        long.as_slice()
    );

    let short = b"{\"id\":1}".to_vec();
    let value = stored(&short);
    assert_eq!(value[0], FORMAT_VERSION);
    assert_eq!(&value[1..], short.as_slice());
    assert_eq!(
        versioned("value", &value).unwrap().as_ref(),
        short.as_slice()
    );

    // Long but incompressible: plain.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    assert_eq!(stored(&noise)[0], FORMAT_VERSION);
}

#[test]
fn a_compressed_value_that_lies_about_its_size_or_does_not_decompress_is_corrupt() {
    let mut huge = vec![COMPRESSED];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&[0x10, b'a']);
    let error = versioned("case", &huge).unwrap_err().to_string();
    assert!(error.contains("claims 4294967295 bytes"), "{error}");

    let mut garbage = vec![COMPRESSED];
    garbage.extend_from_slice(&100u32.to_le_bytes());
    garbage.extend_from_slice(&[0xff; 8]);
    let error = versioned("case", &garbage).unwrap_err().to_string();
    assert!(error.contains("does not decompress"), "{error}");

    // In a changelog, such a record refuses the restore.
    let store = Store::temporary().unwrap().partition(0).unwrap();
    let records = [(
        7,
        ChangelogRecord {
            key: household_key(&key("c")),
            value: Some(garbage),
        },
    )];
    let error = store.restore(&records, 8).unwrap_err().to_string();
    assert!(error.contains("at offset 7"), "{error}");
}

#[test]
fn a_database_held_elsewhere_is_refused_after_the_wait_and_opens_once_it_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let config = sled::Config::new().path(dir.path());
    let held = open_db(&config).unwrap();
    // While it is held, sled refuses with the text `is_lock_held` knows
    // (the pinned sled version's wording): after the wait, not at once.
    let started = std::time::Instant::now();
    let wait = std::time::Duration::from_millis(300);
    let refused = open_db_waiting(&config, wait).unwrap_err();
    assert!(is_lock_held(&refused), "{refused}");
    assert!(started.elapsed() >= wait);
    // Released while a second open waits: that open succeeds.
    let waiting = std::thread::spawn(move || open_db_waiting(&config, LOCK_WAIT).map(drop));
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(held);
    waiting.join().unwrap().unwrap();
    // Other errors are not waited for.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let started = std::time::Instant::now();
    let other = open_db(&sled::Config::new().path(file.join("db"))).unwrap_err();
    assert!(!is_lock_held(&other), "{other}");
    assert!(started.elapsed() < LOCK_WAIT);
}

/// The key filter answers "absent" without sled, so it must never miss a
/// key: whichever handle on the tree wrote it, by whichever path, before
/// or after the filter was built, and after the database is opened again.
#[test]
fn the_key_filter_never_hides_a_key_whatever_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let household = |s: &Store, name: &str| s.household(&key(name)).unwrap().is_some();
    let state = || Some(HouseholdState::default());

    // Two handles on one partition: a miss builds the filter, the other
    // handle writes, the first one finds it.
    let reader = store.partition(3).unwrap();
    assert!(!household(&reader, "a"));
    let writer = store.partition(3).unwrap();
    writer
        .commit_cached(
            &Commit {
                cases: vec![case("a-1", "noord", CaseStatus::Open)],
                retired: vec![(key("r"), 2)],
                ..write("a", state(), None)
            },
            None,
        )
        .unwrap();
    assert!(household(&reader, "a"));
    assert!(reader.case("a-1").unwrap().is_some());
    assert_eq!(reader.retired(&key("r")).unwrap(), Some(2));

    // The main tree, through a durable commit.
    assert!(!household(&store, "m"));
    store.commit(&write("m", state(), None)).unwrap();
    assert!(household(&store, "m"));

    // A restore of the tail, after a miss built the filter.
    let (_, changelog) = live_partition(&Store::temporary().unwrap());
    let restored = store.partition(4).unwrap();
    assert!(!household(&restored, "a"));
    assert!(restored.case("a-1").unwrap().is_none());
    restored.restore(&changelog, 99).unwrap();
    assert!(household(&restored, "a"));
    assert!(restored.case("a-1").unwrap().is_some());
    assert_eq!(restored.retired(&key("b")).unwrap(), Some(1));

    // A bulk restore clears the cache, and the filter with it.
    let mut bulk = restored.bulk_restore(1).unwrap();
    assert!(!household(&restored, "a"));
    push_all(&mut bulk, &changelog);
    bulk.finish(99).unwrap();
    assert!(household(&restored, "a"));
    assert_eq!(restored.retired(&key("b")).unwrap(), Some(1));

    // A dropped partition comes back empty, and then holds what it is
    // written again.
    store.drop_partition(3).unwrap();
    let again = store.partition(3).unwrap();
    assert!(!household(&again, "a"));
    again
        .commit_cached(&write("a", state(), None), None)
        .unwrap();
    assert!(household(&again, "a"));

    // Opened again, the filter is built from what the trees hold.
    drop((reader, writer, restored, again, store));
    let store = Store::open(dir.path(), false).unwrap();
    assert!(household(&store, "m"));
    for p in [3, 4] {
        let partition = store.partition(p).unwrap();
        assert!(household(&partition, "a"));
        assert!(!household(&partition, "z"));
    }
}
