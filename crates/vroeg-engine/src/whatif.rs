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

/// Replay the signals of `file` (CloudEvents, one per line) in memory
/// under `rules`, in batches of `batch_size` records, handing every
/// outbox message to `sink` in order. `config.clock` must be event time.
pub fn replay(
    file: &Path,
    rules: Arc<RuleSet>,
    config: EngineConfig,
    wall_now: Millis,
    batch_size: usize,
    sink: &mut dyn FnMut(Message),
) -> Result<Stats, WhatIfError> {
    debug_assert_eq!(config.clock, ClockMode::EventTime);
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
    let mut engine = Engine::new(MemoryStore::new(), rules, config)?;
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
        if batch.len() >= batch_size.max(1) || (n == 0 && !batch.is_empty()) {
            engine.process_batch(&batch, wall_now)?;
            batch.clear();
            for entry in engine.store_mut().take_outbox() {
                sink(entry);
            }
        }
        if n == 0 {
            break;
        }
    }
    Ok(engine.stats().clone())
}
