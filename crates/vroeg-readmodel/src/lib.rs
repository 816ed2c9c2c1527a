//! The case read model: a live view of the cases, built from the case topic.
//!
//! The engine publishes every change of a case record to a compacted topic
//! (`vroeg.zaken`, keyed by case id), in the same transaction as the case's
//! events. A read model consumes that topic (`read_committed`) into a sled
//! store of its own, with the indexes the case API needs:
//!
//! - per scope (a team, and "every team" for the admin role), per status,
//!   in three orders (priority, contact deadline, opening time), each
//!   entry carrying the case's facets (work queue, category, deadline,
//!   postcode, contacted) so that filters and counts read no records;
//! - by postcode plus house number;
//! - by surname (of the case's contact and of its signals' clients).
//!
//! Records, index entries and the topic position of the batch that wrote
//! them are one atomic sled batch, so a read model is always the case
//! topic up to its position, never part of a record. Any number of read
//! models can follow one topic; deleting one and starting it again
//! rebuilds it from the topic with the same answers.
//!
//! The audit log of the API that serves a read model lives beside it, in a
//! tree of its own: it is not rebuilt from the topic.
//!
//! Personal data: records hold names and addresses, and the name and
//! address indexes hold them too. Nothing here logs.

mod progress;
mod query;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vroeg_core::archive::{AuditEntry, CaseRecord, CaseStatus, SignalDetail};
use vroeg_core::time::Millis;
use vroeg_store::KeyFilter;

pub use progress::{PartitionProgress, Progress};
pub use query::{Order, Page, Query, QueueCounts, Scope};

/// Prefixes of the keys in the read model's tree.
const P_RECORD: u8 = b'c';
const P_INDEX: u8 = b'i';
const P_ADDRESS: u8 = b'a';
const P_NAME: u8 = b'n';
const P_POSITION: u8 = b'p';
/// Per team, how many of its cases are open (u64), kept by every batch.
const P_OPEN_COUNT: u8 = b'k';

/// The read model's page cache unless configured (`api.read_model_cache_mb`).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The layout of the case tree; a read model of an older layout is
/// rebuilt. Layout 2 keeps an index entry's facets in postcard rather than
/// JSON (filters and counts decode one per case). Layout 3 keeps a record
/// as the state store keeps values: the JSON of the case topic, LZ4
/// compressed (`vroeg_store::stored_value`), which halves the tree that
/// sled writes and pages in, and counts each team's open cases as it
/// applies records, so the case gauges need not scan every open case.
const LAYOUT: &[u8] = b"vroeg-readmodel-3";
/// What every layout of the case tree starts with.
const LAYOUT_FAMILY: &[u8] = b"vroeg-readmodel-";
const LAYOUT_KEY: &[u8] = b"m/layout";

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read model: failed to {op}: {source}")]
    Sled {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("read model: the stored record of case {id:?} does not decode: {detail}")]
    Stored { id: String, detail: String },
    #[error("the case topic record at partition {partition}, offset {offset} does not decode ({detail}); the read model stops here rather than skip it")]
    Record {
        partition: i32,
        offset: i64,
        detail: String,
    },
    #[error("{dir} holds a read model of another layout; delete the directory and start again to rebuild it from the case topic")]
    Layout { dir: String },
}

fn sled_err(op: &'static str) -> impl FnOnce(sled::Error) -> ReadModelError {
    move |source| ReadModelError::Sled { op, source }
}

/// One record of the case topic.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    /// The case id.
    pub key: Vec<u8>,
    /// The case record as JSON; `None` (a tombstone) deletes it.
    pub value: Option<Vec<u8>>,
}

/// What an index entry knows about its case: enough to filter and count
/// without reading the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Facets {
    pub wijkteam: String,
    pub werkbak: String,
    pub categorie: String,
    pub crisis: bool,
    pub deadline: Millis,
    pub contacted: bool,
    pub postcode: String,
}

impl Facets {
    fn of(r: &CaseRecord) -> Facets {
        Facets {
            wijkteam: r.wijkteam.to_string(),
            werkbak: r.werkbak.to_string(),
            categorie: r.categorie.to_string(),
            crisis: is_crisis(r),
            deadline: r.contact_deadline,
            contacted: !r.contactpogingen.is_empty(),
            postcode: r
                .contact
                .as_ref()
                .map(|c| normal_postcode(&c.postcode))
                .unwrap_or_default(),
        }
    }

    pub(crate) fn overdue(&self, status: CaseStatus, now: Millis) -> bool {
        overdue(status, self.contacted, self.deadline, now)
    }
}

/// Overdue: open, no contact attempt, and the contact deadline passed at
/// `now`. The one definition behind the `te_laat` filter, the counts, the
/// views and the overdue gauge.
pub fn overdue(status: CaseStatus, contacted: bool, deadline: Millis, now: Millis) -> bool {
    status == CaseStatus::Open && !contacted && deadline < now
}

/// A crisis case: a crisis category, or a crisis signal.
pub fn is_crisis(r: &CaseRecord) -> bool {
    r.categorie == "crisis"
        || r.categorieen.iter().any(|c| c == "crisis")
        || r.signalen.iter().any(|s| {
            matches!(
                s.detail,
                SignalDetail::Betalingsachterstand { crisis: true, .. }
                    | SignalDetail::Betalingsachterstand {
                        eindelevering: true,
                        ..
                    }
            )
        })
}

/// A postcode as the indexes keep it: upper case, no spaces (`1234AB`).
pub fn normal_postcode(postcode: &str) -> String {
    postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

/// A surname as the name index keeps it: lower case, single spaces.
pub fn normal_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// An `i64` as bytes that sort like the numbers.
pub(crate) fn ordered(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// The number [`ordered`] made these bytes of.
pub(crate) fn unordered(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

fn status_byte(s: CaseStatus) -> u8 {
    match s {
        CaseStatus::Open => b'o',
        CaseStatus::Gesloten => b'g',
    }
}

/// The prefix of one index: scope, status and order.
pub(crate) fn index_prefix(scope: &str, status: CaseStatus, order: Order) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + 5);
    k.push(P_INDEX);
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.push(status_byte(status));
    k.push(order.byte());
    k
}

/// The part of an index key after its prefix: the sort fields, then the
/// case id. Cursors are this, in hex.
pub(crate) fn sort_suffix(r: &CaseRecord, order: Order) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + r.id.len());
    match order {
        Order::Prioriteit => {
            k.push(255 - r.prioriteit);
            k.extend_from_slice(&ordered(r.contact_deadline));
        }
        Order::Deadline => k.extend_from_slice(&ordered(r.contact_deadline)),
        Order::Geopend => k.extend_from_slice(&ordered(r.geopend)),
    }
    k.extend_from_slice(r.id.as_bytes());
    k
}

fn address_prefix(postcode: &str, huisnummer: u32) -> Vec<u8> {
    let mut k = vec![P_ADDRESS];
    k.extend_from_slice(normal_postcode(postcode).as_bytes());
    k.push(0);
    k.extend_from_slice(&huisnummer.to_be_bytes());
    k
}

fn name_prefix(name: &str) -> Vec<u8> {
    let mut k = vec![P_NAME];
    k.extend_from_slice(normal_name(name).as_bytes());
    k
}

/// An index key and its value.
type IndexEntry = (Vec<u8>, Vec<u8>);

/// Every index key of a record, with its value.
fn index_entries(r: &CaseRecord) -> Result<Vec<IndexEntry>, ReadModelError> {
    let facets = postcard::to_stdvec(&Facets::of(r)).map_err(|e| ReadModelError::Stored {
        id: r.id.clone(),
        detail: e.to_string(),
    })?;
    let mut out = Vec::new();
    for scope in [r.wijkteam.as_str(), ""] {
        for order in Order::ALL {
            let mut key = index_prefix(scope, r.status, order);
            key.extend_from_slice(&sort_suffix(r, order));
            out.push((key, facets.clone()));
        }
    }
    if let Some(c) = &r.contact {
        let mut key = address_prefix(&c.postcode, c.huisnummer);
        key.push(0);
        key.extend_from_slice(r.id.as_bytes());
        out.push((key, Vec::new()));
    }
    let mut names: Vec<String> = r
        .contact
        .iter()
        .map(|c| normal_name(&c.achternaam))
        .chain(r.signalen.iter().filter_map(|s| match &s.detail {
            SignalDetail::Betalingsachterstand { client, .. } => {
                Some(normal_name(&client.achternaam))
            }
            SignalDetail::Schoolverzuim { .. } => None,
        }))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut key = name_prefix(&name);
        key.push(0);
        key.extend_from_slice(r.id.as_bytes());
        out.push((key, Vec::new()));
    }
    Ok(out)
}

fn record_key(id: &str) -> Vec<u8> {
    let mut k = vec![P_RECORD];
    k.extend_from_slice(id.as_bytes());
    k
}

fn open_count_key(team: &str) -> Vec<u8> {
    let mut k = vec![P_OPEN_COUNT];
    k.extend_from_slice(team.as_bytes());
    k
}

fn position_key(partition: i32) -> [u8; 5] {
    let mut k = [P_POSITION, 0, 0, 0, 0];
    k[1..].copy_from_slice(&partition.to_be_bytes());
    k
}

/// The read model. Clones share it: one follower writes, the API reads.
#[derive(Clone)]
pub struct ReadModel {
    db: sled::Db,
    tree: sled::Tree,
    audit: sled::Tree,
    /// Which case records `tree` may hold: most records on the case topic
    /// open a case, whose earlier record [`ReadModel::apply`] looks up and
    /// does not find.
    records: Arc<KeyFilter>,
}

impl ReadModel {
    /// Open (or create) a read model in `dir`, with a page cache of
    /// [`DEFAULT_CACHE_BYTES`].
    pub fn open(dir: &Path) -> Result<ReadModel, ReadModelError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`ReadModel::open`] with a page cache of `cache_bytes` (sled's own
    /// default, 1 GiB, let a read model of many cases grow to that).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<ReadModel, ReadModelError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput);
        let db = vroeg_store::open_db(&config).map_err(sled_err("open the read model"))?;
        Self::from_db(db, &dir.display().to_string())
    }

    /// A read model in a temporary directory, removed on drop (tests).
    pub fn temporary() -> Result<ReadModel, ReadModelError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(sled_err("open a temporary read model"))?;
        Self::from_db(db, "a temporary directory")
    }

    fn from_db(db: sled::Db, dir: &str) -> Result<ReadModel, ReadModelError> {
        let tree = db
            .open_tree("zaken")
            .map_err(sled_err("open the case tree"))?;
        let audit = db
            .open_tree("audit")
            .map_err(sled_err("open the audit log"))?;
        match tree.get(LAYOUT_KEY).map_err(sled_err("read the layout"))? {
            Some(v) if v.as_ref() == LAYOUT => {}
            // An older layout of ours: the cases are derived from the
            // topic, so they go and are read again (positions included);
            // the audit log, which is the read model's own, stays.
            Some(v) if v.starts_with(LAYOUT_FAMILY) => {
                tracing::warn!(
                    dir,
                    "the read model has an older layout: rebuilding its cases from the case topic"
                );
                tree.clear().map_err(sled_err("clear an older layout"))?;
                tree.insert(LAYOUT_KEY, LAYOUT)
                    .map_err(sled_err("write the layout"))?;
            }
            Some(_) => return Err(ReadModelError::Layout { dir: dir.into() }),
            None => {
                tree.insert(LAYOUT_KEY, LAYOUT)
                    .map_err(sled_err("write the layout"))?;
            }
        }
        Ok(ReadModel {
            db,
            tree,
            audit,
            records: Arc::new(KeyFilter::new(&[P_RECORD])),
        })
    }

    /// Apply records of the case topic, in order, with their positions, as
    /// one atomic batch. A record whose value does not decode is an error
    /// and nothing of the batch is applied.
    pub fn apply(&self, records: &[Incoming]) -> Result<(), ReadModelError> {
        let mut batch = sled::Batch::default();
        let mut latest: HashMap<String, Option<CaseRecord>> = HashMap::new();
        let mut positions: HashMap<i32, i64> = HashMap::new();
        // How each team's count of open cases changes.
        let mut open: BTreeMap<String, i64> = BTreeMap::new();
        let mut added: Vec<Vec<u8>> = Vec::new();
        for r in records {
            let bad = |detail: String| ReadModelError::Record {
                partition: r.partition,
                offset: r.offset,
                detail,
            };
            let id = std::str::from_utf8(&r.key)
                .map_err(|_| bad("the key is not a UTF-8 case id".into()))?
                .to_owned();
            let new = match &r.value {
                None => None,
                Some(v) => {
                    let record: CaseRecord =
                        serde_json::from_slice(v).map_err(|e| bad(e.to_string()))?;
                    if record.id != id {
                        return Err(bad(format!(
                            "the key names case {id:?}, the record case {:?}",
                            record.id
                        )));
                    }
                    Some(record)
                }
            };
            let old = match latest.remove(&id) {
                Some(old) => old,
                None => self.case(&id)?,
            };
            if let Some(old) = &old {
                for (key, _) in index_entries(old)? {
                    batch.remove(key);
                }
                if old.status == CaseStatus::Open {
                    *open.entry(old.wijkteam.to_string()).or_default() -= 1;
                }
            }
            match &new {
                Some(record) => {
                    if record.status == CaseStatus::Open {
                        *open.entry(record.wijkteam.to_string()).or_default() += 1;
                    }
                    for (key, value) in index_entries(record)? {
                        batch.insert(key, value);
                    }
                    // The record as it came, checked above.
                    let value = r.value.as_deref().unwrap_or_default();
                    let key = record_key(&id);
                    batch.insert(key.as_slice(), vroeg_store::stored_value(value));
                    added.push(key);
                }
                None => batch.remove(record_key(&id)),
            }
            latest.insert(id, new);
            positions.insert(r.partition, r.offset + 1);
        }
        for (partition, next) in positions {
            batch.insert(&position_key(partition), &next.to_be_bytes());
        }
        // The records this batch may add, noted before sled has them (a
        // record removed again later in the batch only costs a read).
        self.records.note(added.iter().map(Vec::as_slice));
        for (team, change) in open.into_iter().filter(|(_, c)| *c != 0) {
            let key = open_count_key(&team);
            let count = self.open_count(&key)? as i64 + change;
            if count < 0 {
                return Err(ReadModelError::Stored {
                    id: format!("the open count of team {team}"),
                    detail: format!("would fall to {count}"),
                });
            }
            match count {
                0 => batch.remove(key),
                n => batch.insert(key, &(n as u64).to_be_bytes()),
            }
        }
        self.tree
            .apply_batch(batch)
            .map_err(sled_err("apply a batch of the case topic"))
    }

    /// A team's count of open cases, by its key.
    fn open_count(&self, key: &[u8]) -> Result<u64, ReadModelError> {
        match self.tree.get(key).map_err(sled_err("read an open count"))? {
            None => Ok(0),
            Some(v) => decode_count(key, &v),
        }
    }

    /// The next offset to read per partition of the case topic.
    pub fn positions(&self) -> Result<Vec<(i32, i64)>, ReadModelError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([P_POSITION]) {
            let (k, v) = item.map_err(sled_err("read positions"))?;
            if k.len() == 5 && v.len() == 8 {
                let mut p = [0u8; 4];
                p.copy_from_slice(&k[1..]);
                let mut o = [0u8; 8];
                o.copy_from_slice(&v);
                out.push((i32::from_be_bytes(p), i64::from_be_bytes(o)));
            }
        }
        Ok(out)
    }

    /// One case record.
    pub fn case(&self, id: &str) -> Result<Option<CaseRecord>, ReadModelError> {
        let key = record_key(id);
        let may_hold = self.records.may_hold(&self.tree, &key);
        if !may_hold.map_err(sled_err("build the record filter"))? {
            return Ok(None);
        }
        match self.tree.get(key).map_err(sled_err("read a case"))? {
            None => Ok(None),
            Some(v) => decode(id, &v).map(Some),
        }
    }

    /// Every case record, by case id.
    pub fn cases(&self) -> impl Iterator<Item = Result<CaseRecord, ReadModelError>> + '_ {
        self.tree.scan_prefix([P_RECORD]).map(|item| {
            let (k, v) = item.map_err(sled_err("scan cases"))?;
            decode(&String::from_utf8_lossy(&k[1..]), &v)
        })
    }

    /// How many case records the read model holds.
    pub fn len(&self) -> usize {
        self.tree.scan_prefix([P_RECORD]).count()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.scan_prefix([P_RECORD]).next().is_none()
    }

    /// Cases at a postcode and house number (any suffix), by case id.
    pub fn by_address(
        &self,
        postcode: &str,
        huisnummer: u32,
    ) -> Result<Vec<CaseRecord>, ReadModelError> {
        let mut prefix = address_prefix(postcode, huisnummer);
        prefix.push(0);
        self.ids_under(&prefix, usize::MAX)
    }

    /// Cases with a person whose surname starts with `name` (case and
    /// spacing do not matter), at most `limit`.
    pub fn by_surname(&self, name: &str, limit: usize) -> Result<Vec<CaseRecord>, ReadModelError> {
        self.ids_under(&name_prefix(name), limit)
    }

    /// The records whose ids end the keys under `prefix` (after the last 0).
    fn ids_under(&self, prefix: &[u8], limit: usize) -> Result<Vec<CaseRecord>, ReadModelError> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, _) = item.map_err(sled_err("search"))?;
            let Some(at) = k.iter().rposition(|b| *b == 0) else {
                continue;
            };
            let id = String::from_utf8_lossy(&k[at + 1..]).into_owned();
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(r) = self.case(&id)? {
                out.push(r);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Append an entry to the audit log and flush it: a read is only
    /// answered once its audit entry is durable.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<(), ReadModelError> {
        let seq = self
            .db
            .generate_id()
            .map_err(sled_err("number an audit entry"))?;
        let bytes = serde_json::to_vec(entry).map_err(|e| ReadModelError::Stored {
            id: String::new(),
            detail: e.to_string(),
        })?;
        self.audit
            .insert(seq.to_be_bytes(), bytes)
            .map_err(sled_err("append to the audit log"))?;
        self.audit
            .flush()
            .map_err(sled_err("flush the audit log"))?;
        Ok(())
    }

    /// The audit log, oldest first.
    pub fn audit_log(&self) -> impl Iterator<Item = Result<AuditEntry, ReadModelError>> + '_ {
        self.audit.iter().map(|item| {
            let (_, v) = item.map_err(sled_err("read the audit log"))?;
            serde_json::from_slice(&v).map_err(|e| ReadModelError::Stored {
                id: "audit".into(),
                detail: e.to_string(),
            })
        })
    }

    /// Flush everything to disk.
    pub fn flush(&self) -> Result<(), ReadModelError> {
        self.db.flush().map(|_| ()).map_err(sled_err("flush"))
    }
}

/// The value of an open count's key.
pub(crate) fn decode_count(key: &[u8], value: &[u8]) -> Result<u64, ReadModelError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| ReadModelError::Stored {
            id: String::from_utf8_lossy(&key[1..]).into_owned(),
            detail: "an open count is not 8 bytes".into(),
        })
}

fn decode(id: &str, bytes: &[u8]) -> Result<CaseRecord, ReadModelError> {
    let stored = |detail: String| ReadModelError::Stored {
        id: id.to_owned(),
        detail,
    };
    let body = vroeg_store::stored_body(bytes).map_err(|e| stored(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| stored(e.to_string()))
}

#[cfg(test)]
mod tests;
