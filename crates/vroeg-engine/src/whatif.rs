//! What-if: a history of signals replayed in memory under a rule set, as
//! `vroeg replay` replays it on sled. `vroeg rules diff` runs one per rule
//! set, each on a thread of its own, and compares their case events.
//!
//! It is replay's path with a [`MemoryStore`]: the same records, the same
//! intake, the same engine with event time as its clock. Nothing is
//! written to disk, and nothing is kept once the run ends but what the
//! caller takes from the outbox.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use vroeg_core::time::Millis;
use vroeg_rules::RuleSet;
use vroeg_store::{MemoryStore, Message};

use crate::{ClockMode, Engine, EngineConfig, EngineError, Record, Stats};

#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One side of a what-if: the rules, the engine's settings (event time),
/// "now" for the check on future dates, and the records per batch.
pub struct WhatIf {
    pub rules: Arc<RuleSet>,
    pub config: EngineConfig,
    pub wall_now: Millis,
    pub batch_size: usize,
}

impl WhatIf {
    fn engine(self) -> Result<(Engine<MemoryStore>, Millis, usize), WhatIfError> {
        debug_assert_eq!(self.config.clock, ClockMode::EventTime);
        let engine = Engine::new(MemoryStore::new(), self.rules, self.config)?;
        Ok((engine, self.wall_now, self.batch_size.max(1)))
    }

    /// Replay the signals of `file` (CloudEvents, one per line, in time
    /// order), handing every outbox message to `sink` in order.
    pub fn replay_file(
        self,
        file: &Path,
        sink: &mut dyn FnMut(Message),
    ) -> Result<Stats, WhatIfError> {
        let io = |source| WhatIfError::Io {
            file: file.display().to_string(),
            source,
        };
        let reader = std::fs::File::open(file).map_err(io)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
        let stream: Arc<str> = format!(
            "file:{}",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
        .into();
        let (mut engine, wall_now, batch_size) = self.engine()?;
        let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
        let mut offset = 0;
        loop {
            let mut line = Vec::new();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n > 0 {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                batch.push(Record {
                    stream: stream.clone(),
                    partition: 0,
                    offset,
                    payload: line,
                    headers: Vec::new(),
                });
                offset += 1;
            }
            if batch.len() >= batch_size || (n == 0 && !batch.is_empty()) {
                process(&mut engine, &batch, wall_now, sink)?;
                batch.clear();
            }
            if n == 0 {
                break;
            }
        }
        Ok(engine.stats().clone())
    }

    /// [`WhatIf::replay_file`] of records read already (a topic's, in
    /// [`in_time_order`]).
    pub fn replay_records(
        self,
        records: &[Record],
        sink: &mut dyn FnMut(Message),
    ) -> Result<Stats, WhatIfError> {
        let (mut engine, wall_now, batch_size) = self.engine()?;
        for batch in records.chunks(batch_size) {
            process(&mut engine, batch, wall_now, sink)?;
        }
        Ok(engine.stats().clone())
    }
}

fn process(
    engine: &mut Engine<MemoryStore>,
    batch: &[Record],
    wall_now: Millis,
    sink: &mut dyn FnMut(Message),
) -> Result<(), WhatIfError> {
    engine.process_batch(batch, wall_now)?;
    for message in engine.store_mut().take_outbox() {
        sink(message);
    }
    Ok(())
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
}
