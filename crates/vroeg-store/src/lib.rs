//! The sled store: household state, input positions, the outbox, and the
//! time index of due timers.
//!
//! Deduplication needs no index of its own: a signal's (`source`, `id`) is
//! kept in its household's history for the whole lookback window, and a
//! signal older than the window has no effect (see `vroeg_core::state`).
//!
//! Everything lives in one sled tree under key prefixes, so that one
//! [`Commit`] is one `apply_batch`, which sled applies atomically: after a
//! crash either all of a batch's state changes, positions and outbox entries
//! are there, or none are. [`Store::commit`] then flushes, so the batch is
//! durable before the caller acknowledges any input.
//!
//! Key layout (all integers big-endian, so keys sort by number):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `h` | household key | format version byte + postcard `HouseholdState` |
//! | `p` | stream `\0` partition (i32) | next offset to read (i64) |
//! | `o` | chunk sequence (u64) | JSON `[Message]`: one chunk per commit (an older version's chunks, format version byte + postcard wire entries, are still read) |
//! | `t` | due millis (i64, sign-flipped) + household key | empty |
//! | `c` | case id | format version byte + JSON `CaseRecord` |
//! | `r` | household key | episodes (u32): the case counter of a household the retention purge deleted |
//! | `q` | time (i64, sign-flipped) + stream `\0` partition (i32) + offset (i64) | format version byte + a record waiting for the event-time merge (partitioned roles, `engine.clock = "event"`) |
//! | `m` | name | metadata, e.g. the store format version |
//!
//! A purged household leaves only its case counter under `r`: no signals,
//! no contact details, no case. A household that returns later continues
//! counting from there, so case and alert ids are never reused.
//!
//! A "format version byte" is [`FORMAT_VERSION`] for a body stored as it
//! is, or the same with the high bit set for a body that is LZ4-compressed
//! (values of 256 bytes or more, when that makes them shorter). Both are
//! read; the changelog carries the stored bytes unchanged.
//!
//! Case records are JSON rather than postcard: there are few of them, and
//! they evolve with the API they serve. The API's audit log lives in a tree
//! of its own (`audit`, keyed by a big-endian sequence number), written
//! outside the engine's batches, so a busy API never delays a commit.
//!
//! Reads by key of a household, a case counter or a case first ask the
//! tree's key filter (`filter.rs`): most of them are for keys that were
//! never written, and the filter says so without paging in a leaf.
//!
//! The engine reads and writes through [`StateStore`], which this store
//! and [`MemoryStore`] (the rule tests, `vroeg rules diff`) implement.
//!
//! This crate must not decide anything about signals or cases; it stores
//! what the engine gives it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use vroeg_core::archive::{AuditEntry, CaseRecord};
use vroeg_core::state::HouseholdState;
use vroeg_core::time::Millis;
use vroeg_core::HouseholdKey;

pub use filter::KeyFilter;

/// sled's page cache unless configured otherwise: 256 MiB. Restoring a
/// household partition touches every page of its tree once per run; with
/// two partitions restored at once, 128 MiB did not hold them and the
/// restore of 1M households took about a quarter longer (BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Version of the encoding of stored values. Bump on any incompatible change
/// to `HouseholdState`.
pub const FORMAT_VERSION: u8 = 4;

/// The first byte of a stored value whose body is LZ4-compressed (block
/// format, uncompressed size first): the format version with the high bit
/// set. Values of [`COMPRESS_FROM`] bytes or more are stored so when that
/// makes them smaller; both forms are read.
const COMPRESSED: u8 = FORMAT_VERSION | 0x80;

/// Bodies shorter than this are stored as they are.
const COMPRESS_FROM: usize = 256;

/// The largest body a compressed value may claim: far above any household
/// or case record.
const MAX_BODY: usize = 64 * 1024 * 1024;

const P_HOUSEHOLD: u8 = b'h';
const P_POSITION: u8 = b'p';
const P_OUTBOX: u8 = b'o';
const P_TIMER: u8 = b't';
const P_META: u8 = b'm';
const P_CASE: u8 = b'c';
/// Where stores of earlier versions kept a team index of open cases.
/// Nothing reads it any more; opening a tree removes what is left of it.
const P_OLD_TEAM_INDEX: u8 = b'i';
const P_RETIRED: u8 = b'r';
const P_QUEUE: u8 = b'q';

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled failed to {op}: {source}")]
    Sled {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("stored {what} has format version {found}; this build reads version {FORMAT_VERSION}")]
    Version { what: &'static str, found: u8 },
    #[error("failed to encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
}

/// How long [`open_db`] waits for a database's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Open the sled database `config` describes, waiting up to [`LOCK_WAIT`]
/// while its directory's lock is held.
///
/// sled 0.34 releases that lock when its flusher thread ends, a moment
/// after the last handle of a database is dropped (spacejam/sled#1234), so
/// a database closed and opened again at once in the same process (a
/// store or read model reopened in place, as the tests do) could be
/// refused. (Household partitions are trees of one database: moving one
/// opens nothing.) A lock that another process holds is still refused, after the
/// wait, with sled's error.
pub fn open_db(config: &sled::Config) -> sled::Result<sled::Db> {
    open_db_waiting(config, LOCK_WAIT)
}

fn open_db_waiting(config: &sled::Config, wait: std::time::Duration) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match config.open() {
            Err(e) if is_lock_held(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether sled refused to open a database because its lock is held.
/// sled 0.34.7 reports it as an `Other` IO error with this text (the
/// version is pinned; a test checks the text).
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock on"))
}

fn sled_err(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { op, source }
}

/// A change to one household.
#[derive(Clone, Debug)]
pub struct HouseholdWrite {
    pub key: HouseholdKey,
    /// The new state; `None` deletes the household. Boxed: a batch moves
    /// thousands of them.
    pub state: Option<Box<HouseholdState>>,
    /// The timer registered for this household before the batch, to remove
    /// from the time index.
    pub old_timer: Option<Millis>,
}

/// Everything one batch changes, written in one atomic sled batch.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    pub households: Vec<HouseholdWrite>,
    /// (stream, partition, next offset to read).
    pub positions: Vec<(String, i32, i64)>,
    pub outbox: Vec<Message>,
    /// Metadata to set, by name (e.g. the event-time watermark).
    pub meta: Vec<(String, Vec<u8>)>,
    /// Case records to write (whole records).
    pub cases: Vec<CaseRecord>,
    /// Case records to delete (retention), by id.
    pub purged_cases: Vec<String>,
    /// Households deleted by the retention purge, with their case counter.
    pub retired: Vec<(HouseholdKey, u32)>,
    /// Records entering (`Some`: their encoded form) or leaving (`None`)
    /// the event-time merge queue, by [`queue_key`].
    pub queued: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.households.is_empty()
            && self.positions.is_empty()
            && self.outbox.is_empty()
            && self.meta.is_empty()
            && self.cases.is_empty()
            && self.purged_cases.is_empty()
            && self.retired.is_empty()
            && self.queued.is_empty()
    }
}

/// The store. One process owns it at a time (sled locks the directory).
/// Clones share it: the engine writes, the API reads cases and appends to
/// the audit log.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    audit: sled::Tree,
    next_outbox: std::sync::Arc<std::sync::atomic::AtomicU64>,
    durable: bool,
    /// Reads of households and case records also look in the household
    /// partition caches ([`Store::spanning`]).
    span: bool,
    /// Which household, case counter and case keys `tree` may hold.
    filter: std::sync::Arc<KeyFilter>,
    /// The filter of every tree opened through this database, by name, so
    /// that two handles on one tree share one filter.
    filters: Filters,
}

fn case_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(P_CASE);
    k.extend_from_slice(id.as_bytes());
    k
}

fn encode_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        what,
        detail: e.to_string(),
    })?;
    Ok(stored(&body))
}

fn decode_json<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(&versioned(what, bytes)?).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn household_key(key: &HouseholdKey) -> Vec<u8> {
    prefixed(P_HOUSEHOLD, key)
}

fn retired_key(key: &HouseholdKey) -> Vec<u8> {
    prefixed(P_RETIRED, key)
}

fn prefixed(prefix: u8, key: &HouseholdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.0.len());
    k.push(prefix);
    k.extend_from_slice(key.0.as_bytes());
    k
}

fn position_key(stream: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + stream.len());
    k.push(P_POSITION);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn timer_key(due: Millis, key: &HouseholdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.0.len());
    k.push(P_TIMER);
    // Flip the sign bit so negative times sort before positive ones.
    k.extend_from_slice(&((due as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key.0.as_bytes());
    k
}

/// The inverse of [`timer_key`]; `None` for a key outside the time index.
fn parse_timer_key(k: &[u8]) -> Result<Option<(Millis, HouseholdKey)>, StoreError> {
    if k.first() != Some(&P_TIMER) || k.len() < 9 {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[1..9]);
    let due = (u64::from_be_bytes(b) ^ (1 << 63)) as i64;
    let key = String::from_utf8(k[9..].to_vec()).map_err(|_| StoreError::Corrupt {
        what: "timer",
        detail: "household key is not UTF-8".into(),
    })?;
    Ok(Some((due, HouseholdKey(key.into()))))
}

/// A record waiting in the event-time merge queue: its queue key and its
/// encoded form.
pub type QueuedRecord = (Vec<u8>, Vec<u8>);

/// The key of a record in the event-time merge queue: it sorts by time,
/// then by where the record came from.
pub fn queue_key(time: Millis, stream: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(22 + stream.len());
    k.push(P_QUEUE);
    k.extend_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The time of a queue key.
pub fn queue_time(key: &[u8]) -> Option<Millis> {
    let b: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![P_META];
    k.extend_from_slice(name.as_bytes());
    k
}

fn outbox_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = P_OUTBOX;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    let body = postcard::to_allocvec(value).map_err(|e| StoreError::Encode {
        what,
        detail: e.to_string(),
    })?;
    Ok(stored(&body))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(&versioned(what, bytes)?).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// A value as it is stored: the format version byte, then the body, LZ4
/// compressed when it is long and that makes it shorter ([`COMPRESSED`]).
/// Case records are JSON of about 2 KiB and shrink to about half: less to
/// write to sled, to the changelog, and to read back on a restore.
fn stored(body: &[u8]) -> Vec<u8> {
    if body.len() >= COMPRESS_FROM {
        let packed = lz4_flex::block::compress_prepend_size(body);
        if packed.len() < body.len() {
            let mut out = Vec::with_capacity(1 + packed.len());
            out.push(COMPRESSED);
            out.extend_from_slice(&packed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(body);
    out
}

/// The body of a stored value, after checking its format version byte
/// (and uncompressed if it was stored compressed).
fn versioned<'a>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    match bytes.split_first() {
        None => Err(StoreError::Corrupt {
            what,
            detail: "empty value".into(),
        }),
        Some((&FORMAT_VERSION, body)) => Ok(std::borrow::Cow::Borrowed(body)),
        Some((&COMPRESSED, packed)) => {
            let corrupt = |detail: String| StoreError::Corrupt { what, detail };
            let (size, packed) = packed
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("a compressed value without its size".into()))?;
            let size = u32::from_le_bytes(*size) as usize;
            // A corrupt size must not allocate gigabytes.
            if size > MAX_BODY {
                return Err(corrupt(format!(
                    "a compressed value claims {size} bytes (at most {MAX_BODY})"
                )));
            }
            lz4_flex::block::decompress(packed, size)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| corrupt(format!("does not decompress: {e}")))
        }
        Some((&v, _)) => Err(StoreError::Version { what, found: v }),
    }
}

/// Encode a case record as it is stored (for tools that write changelogs).
pub fn encode_case(record: &CaseRecord) -> Result<Vec<u8>, StoreError> {
    encode_json("case", record)
}

/// The encoded body of a stored value (uncompressed), and back: for tools
/// that rewrite stored values (the restore benchmark's changelog filler).
pub fn stored_body(value: &[u8]) -> Result<Vec<u8>, StoreError> {
    versioned("value", value).map(std::borrow::Cow::into_owned)
}

/// See [`stored_body`].
pub fn stored_value(body: &[u8]) -> Vec<u8> {
    stored(body)
}

/// Encode a household state as it is stored (exposed for round-trip tests).
pub fn encode_state(state: &HouseholdState) -> Result<Vec<u8>, StoreError> {
    encode("household state", state)
}

/// Decode a stored household state.
pub fn decode_state(bytes: &[u8]) -> Result<HouseholdState, StoreError> {
    decode("household state", bytes)
}

/// Trees holding one household partition each are named this, then the
/// partition number.
const PARTITION_TREE: &str = "partition-";

/// Metadata of the root tree: the household partitions assigned last.
const ASSIGNED: &str = "assigned";

/// The prefixes of the keys the engine reads one by one and usually does
/// not find: a tree's key filter tracks them.
const FILTERED: [u8; 3] = [P_HOUSEHOLD, P_RETIRED, P_CASE];

/// The changes of the time index a commit makes: a household whose timer
/// moved leaves its old entry and gets its new one.
fn timer_changes(commit: &Commit, batch: &mut sled::Batch) {
    for w in &commit.households {
        let new_timer = w.state.as_ref().and_then(|s| s.timer_due);
        if new_timer != w.old_timer {
            if let Some(old) = w.old_timer {
                batch.remove(timer_key(old, &w.key));
            }
            if let Some(due) = new_timer {
                batch.insert(timer_key(due, &w.key), Vec::new());
            }
        }
    }
}

/// The name of the main tree (the single-node model's state, and the
/// metadata of the partitioned one).
const MAIN_TREE: &str = "vroeg";

/// The filter of the tree `name`, shared by every handle on it.
fn filter_of(filters: &Filters, name: &str) -> std::sync::Arc<KeyFilter> {
    lock_filters(filters)
        .entry(name.to_owned())
        .or_insert_with(|| std::sync::Arc::new(KeyFilter::new(&FILTERED)))
        .clone()
}

type Filters =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<KeyFilter>>>>;

fn lock_filters(
    filters: &Filters,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Arc<KeyFilter>>> {
    filters.lock().unwrap_or_else(|e| e.into_inner())
}

fn partition_tree(partition: u32) -> String {
    format!("{PARTITION_TREE}{partition}")
}

/// Open a tree, check (or, when new, write) its format version, and find
/// the next outbox sequence number in it.
fn checked_tree(db: &sled::Db, name: &str) -> Result<(sled::Tree, u64), StoreError> {
    let tree = db.open_tree(name).map_err(sled_err("open the tree"))?;
    let meta = meta_key("format");
    match tree
        .get(&meta)
        .map_err(sled_err("read the format version"))?
    {
        None => {
            tree.insert(meta, vec![FORMAT_VERSION])
                .map_err(sled_err("write the format version"))?;
        }
        Some(v) if v.as_ref() == [FORMAT_VERSION] => {}
        Some(v) => {
            return Err(StoreError::Version {
                what: "store",
                found: v.first().copied().unwrap_or(0),
            })
        }
    }
    let old_index = tree
        .scan_prefix([P_OLD_TEAM_INDEX])
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(sled_err("read an old team index"))?;
    if !old_index.is_empty() {
        let mut batch = sled::Batch::default();
        for key in old_index {
            batch.remove(key);
        }
        tree.apply_batch(batch)
            .map_err(sled_err("remove an old team index"))?;
    }
    let next = match tree.scan_prefix([P_OUTBOX]).next_back() {
        None => 0,
        Some(r) => {
            let (k, _) = r.map_err(sled_err("scan the outbox"))?;
            let mut b = [0u8; 8];
            b.copy_from_slice(&k[1..9]);
            u64::from_be_bytes(b) + 1
        }
    };
    Ok((tree, next))
}

impl Store {
    /// Open (or create) the store in `path`. With `durable`, every commit is
    /// flushed to disk before it returns.
    pub fn open(path: &Path, durable: bool) -> Result<Store, StoreError> {
        Self::open_with_cache(path, durable, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes`: more cache, fewer
    /// page reads, more memory (see BENCHMARKS.md).
    pub fn open_with_cache(
        path: &Path,
        durable: bool,
        cache_bytes: u64,
    ) -> Result<Store, StoreError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput);
        let db = open_db(&config).map_err(sled_err("open the store"))?;
        Self::from_db(db, durable)
    }

    /// A store in a temporary directory, removed on drop.
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(sled_err("open a temporary store"))?;
        Self::from_db(db, false)
    }

    fn from_db(db: sled::Db, durable: bool) -> Result<Store, StoreError> {
        let audit = db
            .open_tree("audit")
            .map_err(sled_err("open the audit log"))?;
        let (tree, next) = checked_tree(&db, MAIN_TREE)?;
        let filters = Filters::default();
        Ok(Store {
            db,
            tree,
            audit,
            next_outbox: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(next)),
            durable,
            span: false,
            filter: filter_of(&filters, MAIN_TREE),
            filters,
        })
    }

    /// This store, with every commit flushed to disk before it returns
    /// (`durable`) or not.
    pub fn with_durability(self, durable: bool) -> Store {
        Store { durable, ..self }
    }

    /// This store for readers of a whole state directory (the case API,
    /// exports, the state dump): reads of households and case records
    /// cover this tree and the caches of the household partitions this
    /// instance holds (all caches when no assignment is recorded). Writes
    /// are unchanged.
    pub fn spanning(&self) -> Store {
        Store {
            span: true,
            ..self.clone()
        }
    }

    /// The trees reads cover.
    fn read_trees(&self) -> Result<Vec<sled::Tree>, StoreError> {
        let mut trees = vec![self.tree.clone()];
        if self.span {
            let partitions = match self.assigned()? {
                Some(assigned) => assigned,
                None => self.partitions(),
            };
            for p in partitions {
                trees.push(
                    self.db
                        .open_tree(partition_tree(p))
                        .map_err(sled_err("open a partition cache"))?,
                );
            }
        }
        Ok(trees)
    }

    /// The cache of one household partition (the service's state role): a
    /// tree of its own in the same directory, with the same key layout.
    /// Created empty when it does not exist yet.
    pub fn partition(&self, partition: u32) -> Result<Store, StoreError> {
        let name = partition_tree(partition);
        let (tree, next) = checked_tree(&self.db, &name)?;
        Ok(Store {
            db: self.db.clone(),
            tree,
            audit: self.audit.clone(),
            next_outbox: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(next)),
            durable: self.durable,
            span: false,
            filter: filter_of(&self.filters, &name),
            filters: self.filters.clone(),
        })
    }

    /// The household partitions this directory holds a cache of, in order.
    pub fn partitions(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|name| {
                std::str::from_utf8(name)
                    .ok()?
                    .strip_prefix(PARTITION_TREE)?
                    .parse()
                    .ok()
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Record which household partitions this instance holds now (the
    /// service's state role, after every rebalance): `vroeg state dump`
    /// shows those, and not the caches of partitions that moved away.
    pub fn set_assigned(&self, partitions: &[u32]) -> Result<(), StoreError> {
        let value: Vec<u8> = partitions.iter().flat_map(|p| p.to_be_bytes()).collect();
        self.tree
            .insert(meta_key(ASSIGNED), value)
            .map_err(sled_err("record the assignment"))?;
        Ok(())
    }

    /// The partitions recorded by [`Store::set_assigned`], if any were.
    pub fn assigned(&self) -> Result<Option<Vec<u32>>, StoreError> {
        Ok(self.meta(ASSIGNED)?.map(|v| {
            v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }))
    }

    /// Delete the cache of one partition (it is rebuilt from the changelog
    /// when the partition comes back).
    pub fn drop_partition(&self, partition: u32) -> Result<(), StoreError> {
        let name = partition_tree(partition);
        lock_filters(&self.filters).remove(&name);
        self.db
            .drop_tree(&name)
            .map_err(sled_err("drop a partition cache"))?;
        Ok(())
    }

    pub fn household(&self, key: &HouseholdKey) -> Result<Option<HouseholdState>, StoreError> {
        match self.get(&household_key(key), "read a household")? {
            None => Ok(None),
            Some(bytes) => decode_state(&bytes).map(Some),
        }
    }

    /// A value by key, from this tree (or, spanning, the first tree that
    /// has it).
    fn get(&self, key: &[u8], op: &'static str) -> Result<Option<sled::IVec>, StoreError> {
        if !self.span {
            if !self.may_hold(key)? {
                return Ok(None);
            }
            return self.tree.get(key).map_err(sled_err(op));
        }
        for tree in self.read_trees()? {
            if let Some(v) = tree.get(key).map_err(sled_err(op))? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Whether this tree may hold `key` (see `filter.rs`).
    fn may_hold(&self, key: &[u8]) -> Result<bool, StoreError> {
        (self.filter.may_hold(&self.tree, key)).map_err(sled_err("build the key filter"))
    }

    /// Every entry under `prefix` in the trees reads cover, tree by tree.
    fn scan(
        &self,
        prefix: Vec<u8>,
        op: &'static str,
    ) -> Box<dyn Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> + '_> {
        match self.read_trees() {
            Ok(trees) => Box::new(trees.into_iter().flat_map(move |t| {
                t.scan_prefix(prefix.clone())
                    .map(move |item| item.map_err(sled_err(op)))
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The next offset to read for a stream partition, if this store has
    /// processed any of it.
    pub fn position(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        match self
            .tree
            .get(position_key(stream, partition))
            .map_err(sled_err("read a position"))?
        {
            None => Ok(None),
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                Ok(Some(i64::from_be_bytes(b)))
            }
            Some(_) => Err(StoreError::Corrupt {
                what: "position",
                detail: "not 8 bytes".into(),
            }),
        }
    }

    /// The queued records of the event-time merge with a time before
    /// `before`, in queue order: (key, encoded record).
    pub fn queued_before(&self, before: Millis) -> Result<Vec<QueuedRecord>, StoreError> {
        let end = queue_key(before, "", i32::MIN, i64::MIN);
        let mut out = Vec::new();
        for item in self.tree.range([P_QUEUE].to_vec()..end) {
            let (k, v) = item.map_err(sled_err("scan the merge queue"))?;
            out.push((k.to_vec(), versioned("queued record", &v)?.to_vec()));
        }
        Ok(out)
    }

    /// Metadata values whose names start with `prefix`: (name, value).
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(meta_key(prefix)) {
            let (k, v) = item.map_err(sled_err("read metadata"))?;
            let name = String::from_utf8(k[1..].to_vec()).map_err(|_| StoreError::Corrupt {
                what: "metadata",
                detail: "name is not UTF-8".into(),
            })?;
            out.push((name, v.to_vec()));
        }
        Ok(out)
    }

    /// A metadata value written by an earlier commit.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(meta_key(name))
            .map_err(sled_err("read metadata"))?
            .map(|v| v.to_vec()))
    }

    /// The first timer entry strictly after `after` (a raw timer key from a
    /// previous call), as (due, household, raw key). Lets a caller walk the
    /// time index with a cursor while a batch is open.
    pub fn timer_after(
        &self,
        after: Option<&[u8]>,
    ) -> Result<Option<(Millis, HouseholdKey, Vec<u8>)>, StoreError> {
        let mut range = match after {
            Some(k) => self
                .tree
                .range::<&[u8], _>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
            None => self.tree.range::<&[u8], _>(&[P_TIMER][..]..),
        };
        match range.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item.map_err(sled_err("scan timers"))?;
                match parse_timer_key(&k)? {
                    None => Ok(None),
                    Some((due, key)) => Ok(Some((due, key, k.to_vec()))),
                }
            }
        }
    }

    /// Households whose timer is due at or before `now`, in due order, at
    /// most `limit`.
    pub fn due_timers(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, HouseholdKey)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.range([P_TIMER].to_vec()..) {
            let (k, _) = item.map_err(sled_err("scan timers"))?;
            let Some((due, key)) = parse_timer_key(&k)? else {
                break;
            };
            if due > now {
                break;
            }
            out.push((due, key));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The earliest registered timer, if any.
    pub fn next_timer(&self) -> Result<Option<Millis>, StoreError> {
        Ok(self.due_timers(i64::MAX, 1)?.first().map(|(d, _)| *d))
    }

    /// Write one batch atomically, and flush it if the store is durable.
    pub fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        let mut batch = self.batch(commit)?;
        if !commit.outbox.is_empty() {
            // One chunk per commit: one key to write, read and remove,
            // however many entries the batch produced.
            let seq = self
                .next_outbox
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            batch.insert(
                outbox_key(seq).to_vec(),
                message::encode_chunk(&commit.outbox)?,
            );
        }
        self.apply(batch)
    }

    /// Write a batch as a cache of its changelog records. Its outbox is not
    /// written: it is published in the same Kafka transaction.
    ///
    /// `Some(next)`: the transaction is committed, and the cache reflects
    /// the changelog up to `next` (the changelog offset to read from next).
    /// `None`: the transaction is still committing (the state writes its
    /// cache meanwhile). The cache then reflects no changelog offset until
    /// [`Store::set_changelog_offset`]: should the transaction abort, or
    /// the process die first, the next restore rebuilds this cache from the
    /// changelog rather than trust a batch that never landed.
    pub fn commit_cached(
        &self,
        commit: &Commit,
        changelog_next: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut batch = self.batch(commit)?;
        match changelog_next {
            Some(next) => batch.insert(meta_key(CHANGELOG_OFFSET), next.to_be_bytes().to_vec()),
            None => batch.remove(meta_key(CHANGELOG_OFFSET)),
        }
        self.apply(batch)
    }

    /// [`Store::commit_cached`] from the commit's changelog records as they
    /// were encoded for the transaction (`records`: each key and value, or
    /// `None` for a tombstone, exactly [`Commit::changelog`] of `commit`),
    /// so that no value is encoded twice. `commit` gives the time index.
    pub fn commit_changelog(
        &self,
        commit: &Commit,
        records: &[(&[u8], Option<&[u8]>)],
        changelog_next: Option<i64>,
    ) -> Result<(), StoreError> {
        debug_assert!(
            commit
                .changelog()
                .is_ok_and(|own| own.len() == records.len()
                    && own
                        .iter()
                        .zip(records)
                        .all(|(o, (k, v))| o.key == *k && o.value.as_deref() == *v)),
            "the records are not the commit's changelog"
        );
        let added = records.iter().filter(|(_, v)| v.is_some());
        self.filter.note(added.map(|(k, _)| *k));
        let mut batch = sled::Batch::default();
        timer_changes(commit, &mut batch);
        for (key, value) in records {
            match value {
                Some(v) => batch.insert(*key, *v),
                None => batch.remove(*key),
            }
        }
        match changelog_next {
            Some(next) => batch.insert(meta_key(CHANGELOG_OFFSET), next.to_be_bytes().to_vec()),
            None => batch.remove(meta_key(CHANGELOG_OFFSET)),
        }
        self.apply(batch)
    }

    fn apply(&self, batch: sled::Batch) -> Result<(), StoreError> {
        self.tree
            .apply_batch(batch)
            .map_err(sled_err("apply a batch"))?;
        if self.durable {
            self.db.flush().map_err(sled_err("flush a batch"))?;
        }
        Ok(())
    }

    /// The sled batch of a commit, without its outbox.
    fn batch(&self, commit: &Commit) -> Result<sled::Batch, StoreError> {
        // The keys this batch may add: noted in the key filter before
        // sled has them (below, before the batch is returned).
        let mut added: Vec<Vec<u8>> = Vec::new();
        let mut batch = sled::Batch::default();
        timer_changes(commit, &mut batch);
        for w in &commit.households {
            let key = household_key(&w.key);
            match &w.state {
                None => batch.remove(key),
                Some(state) => {
                    batch.insert(key.as_slice(), encode_state(state)?);
                    added.push(key);
                }
            }
        }
        for (stream, partition, offset) in &commit.positions {
            batch.insert(
                position_key(stream, *partition),
                offset.to_be_bytes().to_vec(),
            );
        }
        for (name, value) in &commit.meta {
            batch.insert(meta_key(name), value.clone());
        }
        for case in &commit.cases {
            let key = case_key(&case.id);
            batch.insert(key.as_slice(), encode_json("case", case)?);
            added.push(key);
        }
        for id in &commit.purged_cases {
            batch.remove(case_key(id));
        }
        for (key, episodes) in &commit.retired {
            let key = retired_key(key);
            batch.insert(key.as_slice(), episodes.to_be_bytes().to_vec());
            added.push(key);
        }
        for (key, value) in &commit.queued {
            match value {
                Some(v) => {
                    let mut stored = Vec::with_capacity(1 + v.len());
                    stored.push(FORMAT_VERSION);
                    stored.extend_from_slice(v);
                    batch.insert(key.as_slice(), stored)
                }
                None => batch.remove(key.as_slice()),
            }
        }
        self.filter.note(added.iter().map(Vec::as_slice));
        Ok(batch)
    }

    /// Up to `limit` outbox chunks, oldest first. Each chunk holds the
    /// entries of one commit.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(u64, Vec<Message>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([P_OUTBOX]).take(limit) {
            let (k, v) = item.map_err(sled_err("scan the outbox"))?;
            let mut b = [0u8; 8];
            b.copy_from_slice(&k[1..9]);
            out.push((u64::from_be_bytes(b), message::decode_chunk(&v)?));
        }
        Ok(out)
    }

    /// How many entries wait in the outbox (reads every chunk).
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.outbox(usize::MAX)?.iter().map(|(_, c)| c.len()).sum())
    }

    /// Remove published outbox chunks.
    pub fn outbox_remove(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for s in seqs {
            batch.remove(outbox_key(*s).to_vec());
        }
        self.tree
            .apply_batch(batch)
            .map_err(sled_err("remove outbox entries"))?;
        if self.durable {
            self.db.flush().map_err(sled_err("flush outbox removal"))?;
        }
        Ok(())
    }

    /// Every household, in key order.
    pub fn households(
        &self,
    ) -> impl Iterator<Item = Result<(HouseholdKey, HouseholdState), StoreError>> + '_ {
        self.scan(vec![P_HOUSEHOLD], "scan households").map(|item| {
            let (k, v) = item?;
            let key = String::from_utf8(k[1..].to_vec()).map_err(|_| StoreError::Corrupt {
                what: "household key",
                detail: "not UTF-8".into(),
            })?;
            Ok((HouseholdKey(key.into()), decode_state(&v)?))
        })
    }

    /// The case counter a purged household left behind, if it was purged.
    pub fn retired(&self, key: &HouseholdKey) -> Result<Option<u32>, StoreError> {
        let key = retired_key(key);
        if !self.span && !self.may_hold(&key)? {
            return Ok(None);
        }
        match self
            .tree
            .get(key)
            .map_err(sled_err("read a retired household"))?
        {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 4] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "retired household",
                    detail: format!("{} bytes, expected 4", v.len()),
                })?;
                Ok(Some(u32::from_be_bytes(b)))
            }
        }
    }

    /// How many purged households left their case counter behind.
    pub fn retired_len(&self) -> usize {
        self.scan(vec![P_RETIRED], "scan case counters").count()
    }

    /// The record of one case.
    pub fn case(&self, id: &str) -> Result<Option<CaseRecord>, StoreError> {
        match self.get(&case_key(id), "read a case")? {
            None => Ok(None),
            Some(bytes) => decode_json("case", &bytes).map(Some),
        }
    }

    /// Every case record, open and closed, by case id.
    pub fn cases(&self) -> impl Iterator<Item = Result<CaseRecord, StoreError>> + '_ {
        self.scan(vec![P_CASE], "scan cases").map(|item| {
            let (_, v) = item?;
            decode_json("case", &v)
        })
    }

    /// The audit log the case API kept here before it moved to the read
    /// model (`vroeg-readmodel`), oldest first.
    pub fn audit_log(&self) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.audit.iter().map(|item| {
            let (_, v) = item.map_err(sled_err("read the audit log"))?;
            decode_json("audit entry", &v)
        })
    }

    /// Flush everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(sled_err("flush"))
    }
}

mod changelog;
mod filter;
mod memory;
mod message;
pub use changelog::{BulkRestore, ChangelogRecord, CHANGELOG_OFFSET};
pub use memory::{Lent, MemoryStore, StateStore};
pub use message::{Cut, DeadLetter, Destination, Message};

#[cfg(test)]
mod tests;
