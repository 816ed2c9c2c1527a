//! Lists, filters and counts over the read model's indexes.
//!
//! A list walks one index (two for "every status") in its order from the
//! cursor on, filters on the facets each entry carries, and reads only the
//! records of the page it returns.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use vroeg_core::archive::{CaseRecord, CaseStatus};
use vroeg_core::time::Millis;

use crate::{index_prefix, sled_err, Facets, ReadModel, ReadModelError};

/// The order of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Highest priority first, then the earliest deadline.
    Prioriteit,
    /// Earliest contact deadline first.
    Deadline,
    /// Earliest opened first.
    Geopend,
}

impl Order {
    pub const ALL: [Order; 3] = [Order::Prioriteit, Order::Deadline, Order::Geopend];

    pub(crate) fn byte(self) -> u8 {
        match self {
            Order::Prioriteit => b'p',
            Order::Deadline => b'd',
            Order::Geopend => b'o',
        }
    }

    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "prioriteit" => Some(Order::Prioriteit),
            "deadline" => Some(Order::Deadline),
            "geopend" => Some(Order::Geopend),
            _ => None,
        }
    }
}

/// Whose cases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Team(String),
    All,
}

impl Scope {
    fn name(&self) -> &str {
        match self {
            Scope::Team(t) => t,
            Scope::All => "",
        }
    }
}

/// A list request.
#[derive(Clone, Debug)]
pub struct Query {
    pub scope: Scope,
    /// `None`: open and closed.
    pub status: Option<CaseStatus>,
    pub order: Order,
    /// Reverse the order.
    pub descending: bool,
    pub werkbak: Option<String>,
    pub categorie: Option<String>,
    /// Normalised (`1234AB`).
    pub postcode: Option<String>,
    /// Only overdue cases (`true`), or only those that are not.
    pub overdue: Option<bool>,
    /// Continue after this cursor (from [`Page::next`]).
    pub after: Option<Vec<u8>>,
    pub limit: usize,
    /// For `overdue`.
    pub now: Millis,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<CaseRecord>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<Vec<u8>>,
}

/// Counts of one work queue's cases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub open: u64,
    pub te_laat: u64,
    pub crisis: u64,
}

type Entry = (Vec<u8>, CaseStatus, Facets);

impl ReadModel {
    /// One page of the cases `query` asks for.
    pub fn list(&self, query: &Query) -> Result<Page, ReadModelError> {
        let statuses: &[CaseStatus] = match query.status {
            Some(CaseStatus::Open) => &[CaseStatus::Open],
            Some(CaseStatus::Gesloten) => &[CaseStatus::Gesloten],
            None => &[CaseStatus::Open, CaseStatus::Gesloten],
        };
        let mut streams: Vec<Box<dyn Iterator<Item = Result<Entry, ReadModelError>> + '_>> =
            Vec::new();
        for status in statuses {
            streams.push(Box::new(self.walk(query, *status)));
        }
        // Merge the streams by their sort suffix.
        let mut heads: Vec<Option<Entry>> = Vec::new();
        for s in streams.iter_mut() {
            heads.push(s.next().transpose()?);
        }
        let mut records = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        loop {
            let pick = heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.as_ref().map(|h| (i, &h.0)))
                .reduce(|a, b| {
                    let a_first = if query.descending {
                        a.1 > b.1
                    } else {
                        a.1 < b.1
                    };
                    if a_first {
                        a
                    } else {
                        b
                    }
                })
                .map(|(i, _)| i);
            let Some(i) = pick else {
                return Ok(Page {
                    records,
                    next: None,
                });
            };
            let (suffix, status, facets) = heads[i].take().expect("picked a head");
            heads[i] = streams[i].next().transpose()?;
            if !matches(query, status, &facets) {
                continue;
            }
            if records.len() == query.limit {
                // One more matches: there is a next page.
                return Ok(Page {
                    records,
                    next: last,
                });
            }
            let id = String::from_utf8_lossy(&suffix[id_start(query.order)..]).into_owned();
            if let Some(r) = self.case(&id)? {
                records.push(r);
            }
            last = Some(suffix);
        }
    }

    /// The entries of one index from the cursor on, in the query's
    /// direction: (sort suffix, status, facets).
    fn walk<'a>(
        &'a self,
        query: &Query,
        status: CaseStatus,
    ) -> impl Iterator<Item = Result<Entry, ReadModelError>> + 'a {
        let prefix = index_prefix(query.scope.name(), status, query.order);
        let n = prefix.len();
        let mut end = prefix.clone();
        // Index prefixes end in an order byte below 0xff.
        *end.last_mut().expect("not empty") += 1;
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            match (&query.after, query.descending) {
                (None, false) => Box::new(self.tree.range(prefix.clone()..end)),
                (None, true) => Box::new(self.tree.range(prefix.clone()..end).rev()),
                (Some(after), false) => {
                    let mut from = prefix.clone();
                    from.extend_from_slice(after);
                    Box::new(
                        self.tree
                            .range::<Vec<u8>, _>((Bound::Excluded(from), Bound::Excluded(end))),
                    )
                }
                (Some(after), true) => {
                    let mut to = prefix.clone();
                    to.extend_from_slice(after);
                    Box::new(self.tree.range(prefix.clone()..to).rev())
                }
            };
        iter.map(move |item| {
            let (k, v) = item.map_err(sled_err("walk an index"))?;
            let facets: Facets = postcard::from_bytes(&v).map_err(|e| ReadModelError::Stored {
                id: String::from_utf8_lossy(&k[n..]).into_owned(),
                detail: e.to_string(),
            })?;
            Ok((k[n..].to_vec(), status, facets))
        })
    }

    /// Per team: its open cases, and how many of them are overdue at
    /// `now`. For the `vroeg_open_cases` and `vroeg_overdue_cases` gauges,
    /// which a scrape counts: the open cases are counted as records are
    /// applied, and only the cases whose contact deadline passed are read
    /// (in each team's deadline order, up to `now`).
    pub fn open_counts_by_team(
        &self,
        now: Millis,
    ) -> Result<BTreeMap<String, (u64, u64)>, ReadModelError> {
        let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for item in self.tree.scan_prefix([crate::P_OPEN_COUNT]) {
            let (key, value) = item.map_err(crate::sled_err("read the open counts"))?;
            let team = String::from_utf8_lossy(&key[1..]).into_owned();
            out.insert(team, (crate::decode_count(&key, &value)?, 0));
        }
        for (team, (_, overdue)) in out.iter_mut() {
            let prefix = crate::index_prefix(team, CaseStatus::Open, Order::Deadline);
            for item in self.tree.scan_prefix(&prefix) {
                let (key, value) = item.map_err(crate::sled_err("read the deadline index"))?;
                let deadline = key
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(crate::unordered)
                    .ok_or_else(|| ReadModelError::Stored {
                        id: String::from_utf8_lossy(&key).into_owned(),
                        detail: "a deadline index key without its deadline".into(),
                    })?;
                if deadline >= now {
                    break;
                }
                let facets: Facets =
                    postcard::from_bytes(&value).map_err(|e| ReadModelError::Stored {
                        id: String::from_utf8_lossy(&key).into_owned(),
                        detail: e.to_string(),
                    })?;
                *overdue += u64::from(facets.overdue(CaseStatus::Open, now));
            }
        }
        Ok(out)
    }

    /// Open, overdue and crisis cases per work queue of a scope.
    pub fn counts(
        &self,
        scope: &Scope,
        now: Millis,
    ) -> Result<BTreeMap<String, QueueCounts>, ReadModelError> {
        let query = open_query(scope.clone(), now);
        let mut out: BTreeMap<String, QueueCounts> = BTreeMap::new();
        for entry in self.walk(&query, CaseStatus::Open) {
            let (_, status, f) = entry?;
            let c = out.entry(f.werkbak.clone()).or_default();
            c.open += 1;
            c.te_laat += u64::from(f.overdue(status, now));
            c.crisis += u64::from(f.crisis);
        }
        Ok(out)
    }
}

/// Every open case of `scope`, most urgent first.
pub(crate) fn open_query(scope: Scope, now: Millis) -> Query {
    Query {
        scope,
        status: Some(CaseStatus::Open),
        order: Order::Prioriteit,
        descending: false,
        werkbak: None,
        categorie: None,
        postcode: None,
        overdue: None,
        after: None,
        limit: 0,
        now,
    }
}

/// Where the case id starts in a sort suffix.
fn id_start(order: Order) -> usize {
    match order {
        Order::Prioriteit => 9,
        Order::Deadline | Order::Geopend => 8,
    }
}

fn matches(query: &Query, status: CaseStatus, f: &Facets) -> bool {
    query.werkbak.as_ref().is_none_or(|w| *w == f.werkbak)
        && query.categorie.as_ref().is_none_or(|c| *c == f.categorie)
        && query.postcode.as_ref().is_none_or(|p| *p == f.postcode)
        && query
            .overdue
            .is_none_or(|o| o == f.overdue(status, query.now))
}
