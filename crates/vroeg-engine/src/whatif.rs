//! What-if: a history of signals replayed in memory under several rule
//! sets at once, as `vroeg replay` replays it on sled under one.
//! `vroeg rules diff` compares the case events of two.
//!
//! It is replay's path with a [`MemoryStore`]: the same records, the same
//! intake, the same engine with event time as its clock. The history is
//! classified once, on the reader's thread, and each rule set's engine runs
//! on a thread of its own over the same classified batches. Nothing is
//! written to disk, and nothing is kept once the run ends but what the
//! callers' sinks take from the outbox.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use vroeg_core::time::Millis;
use vroeg_rules::RuleSet;
use vroeg_store::{MemoryStore, Message};

use crate::{
    ClockMode, Decoded, Engine, EngineConfig, EngineError, FileRecords, Intake, Record, Stats,
};

#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the replay under rule set {side} stopped: {reason}")]
    Side { side: usize, reason: &'static str },
}

/// A what-if: the engine's settings (event time) shared by every rule set,
/// "now" for the check on future dates, and the records per batch.
pub struct WhatIf {
    pub config: EngineConfig,
    pub wall_now: Millis,
    pub batch_size: usize,
}

/// The history a what-if replays.
pub enum History<'a> {
    /// CloudEvents, one per line, in time order.
    File(&'a Path),
    /// Records read already (a topic's, in [`in_time_order`]).
    Records(&'a [Record]),
}

/// One rule set of a what-if, and where its outbox messages go, in order.
pub struct Side<'a> {
    pub rules: Arc<RuleSet>,
    pub sink: Box<dyn FnMut(Message) + Send + 'a>,
}

/// What one side of a what-if ended with.
pub struct Replayed {
    pub stats: Stats,
    /// The state the history left under this side's rules.
    pub store: MemoryStore,
}

/// Classified batches in flight to each side: enough that a side never
/// waits for the reader while the other catches up.
const IN_FLIGHT: usize = 4;

impl WhatIf {
    /// Replay `history` under every side's rules at once, each side on a
    /// thread of its own. The history is read and classified (decoded,
    /// validated, keyed) once, on the calling thread, and every side's
    /// engine gets the same classified batches: the same records in the
    /// same order as a separate replay of each side. Returns what each
    /// side ended with, in the order of `sides`.
    pub fn replay(
        &self,
        history: History<'_>,
        sides: Vec<Side<'_>>,
    ) -> Result<Vec<Replayed>, WhatIfError> {
        debug_assert_eq!(self.config.clock, ClockMode::EventTime);
        let intake = Intake::new(&self.config);
        let batch_size = self.batch_size.max(1);
        std::thread::scope(|scope| {
            let mut senders = Vec::new();
            let mut threads = Vec::new();
            for side in sides {
                let (tx, rx) = sync_channel::<Arc<Vec<Decoded>>>(IN_FLIGHT);
                senders.push(tx);
                let config = self.config.clone();
                let wall_now = self.wall_now;
                threads.push(scope.spawn(move || run_side(config, side, rx, wall_now)));
            }
            let mut send = |batch: Vec<Record>| -> bool {
                let decoded: Vec<Decoded> = batch
                    .into_iter()
                    .map(|r| Decoded::new(&intake, r, self.wall_now))
                    .collect();
                let decoded = Arc::new(decoded);
                // A side that stopped has dropped its receiver; its error
                // is reported when it is joined.
                senders.iter().all(|tx| tx.send(decoded.clone()).is_ok())
            };
            let read = match history {
                History::File(path) => read_file(path, batch_size, &mut send),
                History::Records(records) => {
                    for chunk in records.chunks(batch_size) {
                        if !send(chunk.to_vec()) {
                            break;
                        }
                    }
                    Ok(())
                }
            };
            drop(senders);
            let mut replayed = Vec::new();
            for (n, thread) in threads.into_iter().enumerate() {
                match thread.join() {
                    Ok(result) => replayed.push(result?),
                    Err(_) => {
                        return Err(WhatIfError::Side {
                            side: n + 1,
                            reason: "its thread panicked",
                        })
                    }
                }
            }
            read?;
            Ok(replayed)
        })
    }
}

/// One side: an engine over a [`MemoryStore`], fed classified batches until
/// the reader is done.
fn run_side(
    config: EngineConfig,
    mut side: Side<'_>,
    batches: Receiver<Arc<Vec<Decoded>>>,
    wall_now: Millis,
) -> Result<Replayed, WhatIfError> {
    let mut engine = Engine::new(MemoryStore::new(), side.rules, config)?;
    for batch in batches {
        engine.process_decoded(&batch, wall_now)?;
        for message in engine.store_mut().take_outbox() {
            (side.sink)(message);
        }
    }
    let stats = engine.stats().clone();
    Ok(Replayed {
        stats,
        store: engine.into_store(),
    })
}

/// Read `file` in batches of records, handing each to `send` until it says
/// stop.
fn read_file(
    file: &Path,
    batch_size: usize,
    send: &mut dyn FnMut(Vec<Record>) -> bool,
) -> Result<(), WhatIfError> {
    let io = |source| WhatIfError::Io {
        file: file.display().to_string(),
        source,
    };
    let reader = std::fs::File::open(file).map_err(io)?;
    let mut lines = FileRecords::new(file, std::io::BufReader::with_capacity(1 << 20, reader));
    let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
    loop {
        let next = lines.next_record().map_err(io)?;
        let at_end = next.is_none();
        if let Some((record, _)) = next {
            batch.push(record);
        }
        if batch.len() >= batch_size || (at_end && !batch.is_empty()) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if !send(full) {
                return Ok(());
            }
        }
        if at_end {
            return Ok(());
        }
    }
}

/// Put records of several partitions in the order of their signals' time
/// (CloudEvents `time`, from the `ce_time` header or the JSON), then by
/// partition and offset: the order a file of history has, so that the
/// event-time clock does not depend on how the partitions interleaved. A
/// record without a readable time goes first (it is dead-lettered anyway).
///
/// The records become one stream, `history:<stream>`, numbered in that
/// order: the engine takes a stream partition's offsets as increasing, and
/// skips one it has passed.
pub fn in_time_order(records: &mut [Record]) {
    records.sort_by_cached_key(|r| (record_time(r), r.partition, r.offset));
    let mut streams: std::collections::HashMap<Arc<str>, Arc<str>> = Default::default();
    for (n, r) in records.iter_mut().enumerate() {
        let history = streams
            .entry(r.stream.clone())
            .or_insert_with(|| format!("history:{}", r.stream).into());
        r.stream = history.clone();
        r.partition = 0;
        r.offset = n as i64;
    }
}

fn record_time(r: &Record) -> Millis {
    #[derive(serde::Deserialize)]
    struct Time<'a> {
        #[serde(borrow)]
        time: Option<std::borrow::Cow<'a, str>>,
    }
    let header = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ce_time"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(vroeg_core::time::parse_rfc3339);
    header
        .or_else(|| {
            let t: Time<'_> = serde_json::from_slice(&r.payload).ok()?;
            vroeg_core::time::parse_rfc3339(&t.time?)
        })
        .unwrap_or(Millis::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        partition: i32,
        offset: i64,
        payload: &str,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Record {
        Record {
            stream: "t".into(),
            partition,
            offset,
            payload: payload.as_bytes().to_vec(),
            headers,
        }
    }

    #[test]
    fn records_of_several_partitions_are_put_in_time_order() {
        let mut records = vec![
            record(0, 0, r#"{"time":"2026-03-02T10:00:00Z"}"#, vec![]),
            record(1, 0, r#"{"time":"2026-03-01T10:00:00Z"}"#, vec![]),
            record(
                1,
                1,
                "{}",
                vec![("ce_time".into(), b"2026-03-01T11:00:00Z".to_vec())],
            ),
            record(0, 1, "not json", vec![]),
            record(2, 0, r#"{"time":"2026-03-01T10:00:00Z","p":2}"#, vec![]),
        ];
        in_time_order(&mut records);
        let order: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
        assert_eq!(
            order,
            [
                &b"not json"[..],
                // At the same time: partition 1, then partition 2.
                br#"{"time":"2026-03-01T10:00:00Z"}"#,
                br#"{"time":"2026-03-01T10:00:00Z","p":2}"#,
                b"{}",
                br#"{"time":"2026-03-02T10:00:00Z"}"#,
            ]
        );
        // One stream, numbered in this order.
        assert!(records
            .iter()
            .all(|r| &*r.stream == "history:t" && r.partition == 0));
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_file_is_read_as_records_one_per_line() {
        let text = b"{\"a\":1}\r\n{\"b\":2}\n\nlast";
        let mut lines = FileRecords::new(Path::new("/tmp/history.jsonl"), &text[..]);
        let mut got = Vec::new();
        while let Some((r, n)) = lines.next_record().unwrap() {
            assert_eq!((&*r.stream, r.partition), ("file:history.jsonl", 0));
            got.push((r.offset, String::from_utf8(r.payload).unwrap(), n));
        }
        assert_eq!(
            got,
            [
                (0, "{\"a\":1}".to_owned(), 9),
                (1, "{\"b\":2}".to_owned(), 8),
                // An empty line is a record too (it is dead-lettered).
                (2, String::new(), 1),
                (3, "last".to_owned(), 4),
            ]
        );
    }
}
