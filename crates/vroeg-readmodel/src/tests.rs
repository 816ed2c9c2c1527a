use vroeg_core::archive::{ArchivedAttempt, CaseRecord, CaseStatus};
use vroeg_core::feedback::Contactsoort;
use vroeg_core::state::Contact;
use vroeg_core::time::{Day, DAY_MS};

use super::*;

const NOW: Millis = 1_790_000_000_000;

fn record(n: u32, team: &str, werkbak: &str, prioriteit: u8, surname: &str) -> CaseRecord {
    let id = format!("{:032x}-1", n);
    let mut r = CaseRecord::new(&id, &id[..32], NOW - i64::from(n) * 1000);
    r.wijkteam = team.into();
    r.werkbak = werkbak.into();
    r.prioriteit = prioriteit;
    r.categorie = if prioriteit >= 9 {
        "crisis"
    } else {
        "enkelvoudig"
    }
    .into();
    // Every third case is overdue.
    r.contact_deadline = if n.is_multiple_of(3) {
        NOW - DAY_MS
    } else {
        NOW + i64::from(n) * DAY_MS
    };
    r.contact = Some(Contact {
        voorletters: "J.".into(),
        voorvoegsel: Some("de".into()),
        achternaam: surname.into(),
        geboortedatum: Day(3000),
        straatnaam: "Dorpsstraat".into(),
        postcode: format!("1234 A{}", (b'A' + (n % 3) as u8) as char),
        huisnummer: n,
        huisnummertoevoeging: None,
        plaatsnaam: "Utrecht".into(),
        telefoon: None,
        email: None,
    });
    r
}

fn incoming(offset: i64, r: &CaseRecord) -> Incoming {
    Incoming {
        partition: (offset % 2) as i32,
        offset,
        key: r.id.as_bytes().to_vec(),
        value: Some(serde_json::to_vec(r).unwrap()),
    }
}

fn query(scope: Scope) -> Query {
    Query {
        limit: 50,
        ..crate::query::open_query(scope, NOW)
    }
}

fn ids(page: &Page) -> Vec<String> {
    page.records.iter().map(|r| r.id.clone()).collect()
}

/// Every page of a query, following the cursors.
fn all_pages(model: &ReadModel, mut q: Query) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = model.list(&q).unwrap();
        assert!(page.records.len() <= q.limit);
        out.extend(ids(&page));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return out,
        }
    }
}

fn sample() -> (ReadModel, Vec<CaseRecord>) {
    let model = ReadModel::temporary().unwrap();
    let records: Vec<CaseRecord> = (1..=30)
        .map(|n| {
            let team = if n % 2 == 0 { "noord" } else { "zuid" };
            let werkbak = if n % 5 == 0 { "crisis" } else { "standaard" };
            record(
                n,
                team,
                werkbak,
                (n % 10) as u8,
                &format!("Jansen{}", n % 4),
            )
        })
        .collect();
    let batch: Vec<Incoming> = records
        .iter()
        .enumerate()
        .map(|(i, r)| incoming(i as i64, r))
        .collect();
    model.apply(&batch).unwrap();
    (model, records)
}

#[test]
fn pages_follow_the_order_without_gaps_or_repeats() {
    let (model, records) = sample();
    for order in Order::ALL {
        for descending in [false, true] {
            for limit in [1, 4, 7, 100] {
                let mut q = query(Scope::Team("noord".into()));
                q.order = order;
                q.descending = descending;
                q.limit = limit;
                let got = all_pages(&model, q);
                let mut want: Vec<&CaseRecord> =
                    records.iter().filter(|r| r.wijkteam == "noord").collect();
                want.sort_by_key(|r| sort_suffix(r, order));
                if descending {
                    want.reverse();
                }
                let want: Vec<String> = want.iter().map(|r| r.id.clone()).collect();
                assert_eq!(got, want, "{order:?} descending={descending} limit={limit}");
            }
        }
    }
}

#[test]
fn priority_order_puts_the_most_urgent_first() {
    let (model, _) = sample();
    let page = model.list(&query(Scope::All)).unwrap();
    let prios: Vec<u8> = page.records.iter().map(|r| r.prioriteit).collect();
    assert!(prios.windows(2).all(|w| w[0] >= w[1]), "{prios:?}");
    assert_eq!(page.records.len(), 30, "the admin scope sees every team");
}

#[test]
fn filters_and_counts_agree_with_the_records() {
    let (model, records) = sample();
    let mut q = query(Scope::Team("zuid".into()));
    q.overdue = Some(true);
    let overdue = all_pages(&model, q);
    let want: Vec<&CaseRecord> = records
        .iter()
        .filter(|r| r.wijkteam == "zuid" && r.contact_deadline < NOW)
        .collect();
    assert_eq!(overdue.len(), want.len());
    assert!(!overdue.is_empty());

    let mut q = query(Scope::Team("zuid".into()));
    q.werkbak = Some("crisis".into());
    q.postcode = Some("1234AB".into());
    for id in all_pages(&model, q) {
        let r = records.iter().find(|r| r.id == id).unwrap();
        assert_eq!(r.werkbak, "crisis");
        assert_eq!(
            normal_postcode(&r.contact.as_ref().unwrap().postcode),
            "1234AB"
        );
    }

    let counts = model.counts(&Scope::Team("zuid".into()), NOW).unwrap();
    let open: u64 = counts.values().map(|c| c.open).sum();
    let late: u64 = counts.values().map(|c| c.te_laat).sum();
    assert_eq!(open, 15);
    assert_eq!(late, want.len() as u64);
    assert_eq!(counts["crisis"].open, 3, "cases 5, 15 and 25");
}

#[test]
fn updates_move_index_entries_and_tombstones_delete() {
    let (model, mut records) = sample();
    // Case 2 gets a contact attempt and closes; case 4 is purged.
    let r = &mut records[1];
    r.contactpogingen.push(ArchivedAttempt {
        soort: Contactsoort::Telefoon,
        bereikt: true,
        datum: Day::of_millis(NOW),
        dagdeel: None,
        vastgelegd: NOW,
    });
    r.status = CaseStatus::Gesloten;
    r.gesloten = Some(NOW);
    let closed = r.id.clone();
    let purged = records[3].id.clone();
    model
        .apply(&[
            incoming(100, &records[1]),
            Incoming {
                partition: 1,
                offset: 101,
                key: purged.as_bytes().to_vec(),
                value: None,
            },
        ])
        .unwrap();
    let open = all_pages(&model, query(Scope::Team("noord".into())));
    assert!(!open.contains(&closed) && !open.contains(&purged));
    let mut q = query(Scope::Team("noord".into()));
    q.status = Some(CaseStatus::Gesloten);
    assert_eq!(all_pages(&model, q), vec![closed.clone()]);
    let mut q = query(Scope::Team("noord".into()));
    q.status = None;
    assert_eq!(all_pages(&model, q).len(), 14, "15 minus the purged one");
    assert!(model.case(&purged).unwrap().is_none());
    assert_eq!(model.len(), 29);
    let mut positions = model.positions().unwrap();
    positions.sort();
    assert_eq!(positions, vec![(0, 101), (1, 102)]);
}

/// Per team, open and overdue cases, counted from the records themselves.
fn counted(model: &ReadModel, now: Millis) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in model.cases() {
        let r = r.unwrap();
        if r.status == CaseStatus::Open {
            let c = out.entry(r.wijkteam.to_string()).or_default();
            c.0 += 1;
            c.1 += u64::from(overdue(
                r.status,
                !r.contactpogingen.is_empty(),
                r.contact_deadline,
                now,
            ));
        }
    }
    out
}

#[test]
fn the_open_counts_per_team_follow_every_change_of_status_team_and_contact() {
    let (model, mut records) = sample();
    let expected = counted(&model, NOW);
    assert_eq!(expected["noord"], (15, 5));
    assert_eq!(model.open_counts_by_team(NOW).unwrap(), expected);
    // Case 3 (overdue) gets a contact attempt; case 6 moves to a new team;
    // case 9 closes and, in the same batch, opens again; case 12 closes;
    // case 1 is purged.
    records[2].contactpogingen.push(ArchivedAttempt {
        soort: Contactsoort::Telefoon,
        bereikt: false,
        datum: Day::of_millis(NOW),
        dagdeel: None,
        vastgelegd: NOW,
    });
    records[5].wijkteam = "west".into();
    let mut closed = records[8].clone();
    closed.status = CaseStatus::Gesloten;
    records[11].status = CaseStatus::Gesloten;
    let batch = vec![
        incoming(100, &records[2]),
        incoming(101, &records[5]),
        incoming(102, &closed),
        incoming(103, &records[8]),
        incoming(104, &records[11]),
        Incoming {
            partition: 1,
            offset: 105,
            key: records[0].id.as_bytes().to_vec(),
            value: None,
        },
    ];
    model.apply(&batch).unwrap();
    let expected = counted(&model, NOW);
    assert_eq!(expected["west"], (1, 1));
    assert_eq!(model.open_counts_by_team(NOW).unwrap(), expected);
    // Later the other deadlines pass too.
    let later = NOW + 40 * DAY_MS;
    assert_eq!(
        model.open_counts_by_team(later).unwrap(),
        counted(&model, later)
    );
    // Every case of a team closed: the team is gone from the counts.
    let mut moved = records[5].clone();
    moved.status = CaseStatus::Gesloten;
    model.apply(&[incoming(106, &moved)]).unwrap();
    assert!(!model.open_counts_by_team(NOW).unwrap().contains_key("west"));
}

#[test]
fn search_by_address_and_surname() {
    let (model, records) = sample();
    let found = model.by_address("1234 ab", 7).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, records[6].id);
    assert!(model.by_address("1234AA", 7).unwrap().is_empty());
    let found = model.by_surname("  JANSEN1 ", 100).unwrap();
    assert_eq!(found.len(), 8, "n % 4 == 1 for n in 1..=30");
    assert_eq!(model.by_surname("jans", 100).unwrap().len(), 30);
    assert_eq!(model.by_surname("jans", 5).unwrap().len(), 5);
}

#[test]
fn a_record_that_does_not_decode_stops_the_batch() {
    let (model, records) = sample();
    let before = model.positions().unwrap();
    let mut changed = records[0].clone();
    changed.prioriteit = 1;
    let err = model
        .apply(&[
            incoming(200, &changed),
            Incoming {
                partition: 0,
                offset: 201,
                key: b"x".to_vec(),
                value: Some(b"{not json".to_vec()),
            },
        ])
        .unwrap_err();
    assert!(
        matches!(err, ReadModelError::Record { offset: 201, .. }),
        "{err}"
    );
    assert_eq!(model.positions().unwrap(), before, "nothing applied");
    assert_eq!(model.case(&records[0].id).unwrap().unwrap(), records[0]);
}

#[test]
fn a_rebuild_from_the_same_records_answers_the_same() {
    let (model, records) = sample();
    let again = ReadModel::temporary().unwrap();
    // Other batch boundaries, same records in the same order.
    for (i, r) in records.iter().enumerate() {
        again.apply(&[incoming(i as i64, r)]).unwrap();
    }
    for order in Order::ALL {
        let mut q = query(Scope::All);
        q.order = order;
        q.limit = 3;
        assert_eq!(all_pages(&model, q.clone()), all_pages(&again, q));
    }
    assert_eq!(
        model.counts(&Scope::All, NOW).unwrap(),
        again.counts(&Scope::All, NOW).unwrap()
    );
}

#[test]
fn views_show_euros_and_iso_dates() {
    let (_, records) = sample();
    let mut r = records[0].clone();
    r.signalen.push(vroeg_core::archive::ArchivedSignal {
        source: "urn:zorg".into(),
        id: "s1".into(),
        tijd: NOW,
        detail: SignalDetail::Betalingsachterstand {
            partner: vroeg_core::signal::PartnerType::Zorg,
            status: vroeg_core::signal::ArrearsStatus::Open,
            bedrag_cent: 41_250,
            ontstaansdatum: Day(20_000),
            signaaldatum: Day(20_010),
            crisis: false,
            eindelevering: false,
            client: vroeg_core::state::Client {
                bsn: None,
                voorletters: "J.".into(),
                voorvoegsel: None,
                achternaam: "Jansen".into(),
                geboortedatum: Day(3000),
            },
        },
    });
    let row = view::Row::of(&r, NOW);
    assert_eq!(row.bedrag_euro, 412.5);
    assert_eq!(row.partners, vec!["Zorg"]);
    assert_eq!(row.naam.as_deref(), Some("J. de Jansen1"));
    assert_eq!(row.adres.as_deref(), Some("Dorpsstraat 1, 1234 AB Utrecht"));
    let detail = view::detail(&r, NOW);
    let signal = &detail["signalen"][0];
    assert_eq!(signal["bedrag_euro"], 412.5);
    assert!(signal.get("bedrag_cent").is_none());
    assert_eq!(signal["client"]["geboortedatum"], "1978-03-20");
    assert_eq!(detail["contact"]["geboortedatum"], "1978-03-20");
}

#[test]
fn an_older_layout_is_rebuilt_from_the_topic_and_keeps_its_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let model = ReadModel::open(dir.path()).unwrap();
        model
            .apply(&[incoming(0, &record(1, "noord", "regulier", 3, "Jansen"))])
            .unwrap();
        model
            .append_audit(&AuditEntry {
                tijd: NOW,
                wie: "beheer".into(),
                rol: "admin".into(),
                actie: "zaken_lijst".into(),
                zaak_id: None,
                status: 200,
            })
            .unwrap();
        // As the previous release left it.
        model
            .tree
            .insert(LAYOUT_KEY, &b"vroeg-readmodel-1"[..])
            .unwrap();
        model.flush().unwrap();
    }
    let model = ReadModel::open(dir.path()).unwrap();
    assert_eq!(model.len(), 0, "the cases are read again");
    assert!(
        model.positions().unwrap().is_empty(),
        "from the start of the topic"
    );
    assert_eq!(model.audit_log().count(), 1, "the audit log stays");
    drop(model);
    // Another program's directory is refused, not cleared.
    let other = tempfile::tempdir().unwrap();
    {
        let model = ReadModel::open(other.path()).unwrap();
        model
            .tree
            .insert(LAYOUT_KEY, &b"something-else"[..])
            .unwrap();
        model.flush().unwrap();
    }
    assert!(matches!(
        ReadModel::open(other.path()),
        Err(ReadModelError::Layout { .. })
    ));
}

/// The record filter answers "absent" without sled, so it must never miss
/// a record: one a clone applied after the filter was built, one written
/// again after its tombstone in the same batch, and every record of a read
/// model opened again.
#[test]
fn the_record_filter_never_hides_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let model = ReadModel::open(dir.path()).unwrap();
    let (a, b) = (
        record(1, "noord", "regulier", 3, "Jansen"),
        record(2, "zuid", "regulier", 3, "Bakker"),
    );
    // A miss builds the filter; a clone (the follower) applies; the first
    // handle (the API) finds the record, and its indexes follow.
    assert!(model.case(&a.id).unwrap().is_none());
    let follower = model.clone();
    follower.apply(&[incoming(0, &a)]).unwrap();
    assert_eq!(model.case(&a.id).unwrap().unwrap().id, a.id);
    // Gone and back within one batch.
    let tombstone = Incoming {
        partition: 0,
        offset: 2,
        key: b.id.as_bytes().to_vec(),
        value: None,
    };
    follower
        .apply(&[incoming(1, &b), tombstone, incoming(3, &b)])
        .unwrap();
    assert!(model.case(&b.id).unwrap().is_some());
    // Updated: the old record is found, so its index entries go.
    let mut closed = a.clone();
    closed.status = CaseStatus::Gesloten;
    follower.apply(&[incoming(4, &closed)]).unwrap();
    let open = all_pages(&model, query(Scope::Team("noord".into())));
    assert!(open.is_empty(), "{open:?}");
    drop((model, follower));
    let model = ReadModel::open(dir.path()).unwrap();
    assert!(model.case(&a.id).unwrap().is_some());
    assert!(model.case(&b.id).unwrap().is_some());
    assert!(model.case("nergens").unwrap().is_none());
}
