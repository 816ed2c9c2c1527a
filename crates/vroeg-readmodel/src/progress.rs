//! How far a read model is behind the case topic, as its follower last saw
//! it. The API reports it, so that a client can wait until its own feedback
//! shows.

use std::sync::Mutex;

use serde::Serialize;
use vroeg_core::time::Millis;

/// One partition of the case topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionProgress {
    pub partitie: i32,
    /// The next offset the read model reads.
    pub positie: i64,
    /// The partition's end (high watermark) when last asked.
    pub einde: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Snapshot {
    partities: Vec<PartitionProgress>,
    /// When the ends were last read; `None` before the first time.
    gemeten: Option<Millis>,
}

/// Shared between the follower (writes) and the API (reads).
#[derive(Debug, Default)]
pub struct Progress {
    inner: Mutex<Snapshot>,
}

impl Progress {
    /// The follower's latest view, measured at `now`.
    pub fn set(&self, partitions: Vec<PartitionProgress>, now: Millis) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.partities = partitions;
        s.gemeten = Some(now);
    }

    /// Records between the read model and the end of the topic (commit
    /// markers included), or `None` before the follower first measured.
    pub fn lag(&self) -> Option<i64> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.gemeten?;
        Some(
            s.partities
                .iter()
                .map(|p| (p.einde - p.positie).max(0))
                .sum(),
        )
    }

    /// When the follower last measured.
    pub fn measured(&self) -> Option<Millis> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).gemeten
    }

    pub fn partitions(&self) -> Vec<PartitionProgress> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .partities
            .clone()
    }
}
