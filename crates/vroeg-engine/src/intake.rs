//! Intake: the stateless half of processing a record.
//!
//! [`Intake::classify`] decodes and validates one input record, computes its
//! household key, and checks the objection list. It reads no state, so it
//! can run anywhere: inside the [`crate::Engine`] (replay, the single-node
//! service), or in the partitioned service's intake role, which sends the
//! result on, re-keyed by household, as a [`Forwarded`] record. The state
//! role applies a forwarded record exactly as the engine applies a raw one
//! after classifying it, so both paths give the same case events for the
//! same records in the same order.

use serde::{Deserialize, Serialize};
use vroeg_core::feedback::{decode_feedback, Feedback};
use vroeg_core::optout::OptOut;
use vroeg_core::signal::{
    decode_binary, decode_structured, DecodeContext, DecodeError, ErrorCode, Signal,
};
use vroeg_core::time::Millis;
use vroeg_core::{HouseholdKey, HouseholdKeyer};

use crate::engine::{EngineConfig, Record};

/// What intake makes of one input record.
#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    /// A valid signal, for the household `key`.
    Signal { key: HouseholdKey, signal: Signal },
    /// Valid feedback on a case of the household `key`.
    Feedback {
        key: HouseholdKey,
        feedback: Feedback,
    },
    /// Not valid: it goes to the dead-letter topic with this reason.
    Rejected(DecodeError),
    /// A signal about an address or person on the objection list: counted,
    /// never stored.
    OptedOut,
}

/// Decodes, validates and keys records. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    keyer: HouseholdKeyer,
    max_future: Millis,
    max_bytes: usize,
    feedback_streams: Vec<String>,
    opt_out: std::sync::Arc<OptOut>,
}

impl Intake {
    pub fn new(config: &EngineConfig) -> Intake {
        Intake {
            keyer: HouseholdKeyer::new(&config.household_secret),
            max_future: config.max_future,
            max_bytes: config.max_bytes,
            feedback_streams: config.feedback_streams.clone(),
            opt_out: config.opt_out.clone(),
        }
    }

    pub fn keyer(&self) -> &HouseholdKeyer {
        &self.keyer
    }

    /// Use another objection list from now on.
    pub fn set_opt_out(&mut self, opt_out: std::sync::Arc<OptOut>) {
        self.opt_out = opt_out;
    }

    pub fn opt_out(&self) -> &std::sync::Arc<OptOut> {
        &self.opt_out
    }

    /// Whether records of `stream` are wijkteam feedback.
    pub fn is_feedback(&self, stream: &str) -> bool {
        self.feedback_streams.iter().any(|f| f == stream)
    }

    /// Count a rejected record in `stats`: as feedback when it came from a
    /// feedback stream, else as a signal of the partner type it names.
    pub fn count_rejection(&self, stats: &mut crate::Stats, record: &Record, error: &DecodeError) {
        if self.is_feedback(&record.stream) {
            stats.reject_feedback(error.code.as_str());
        } else {
            let headers: Vec<(&str, &[u8])> = record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            let partner =
                vroeg_core::signal::partner_label(&headers, &record.payload, self.max_bytes);
            stats.reject_signal(error.code.as_str(), partner);
        }
    }

    /// Classify one record. `wall_now` bounds how far in the future a
    /// signal's time may lie.
    pub fn classify(&self, record: &Record, wall_now: Millis) -> Classified {
        let ctx = DecodeContext {
            now: wall_now,
            max_future: self.max_future,
            max_bytes: self.max_bytes,
        };
        if self.is_feedback(&record.stream) {
            let feedback = match decode_feedback(&record.payload, &ctx) {
                Ok(f) => f,
                Err(e) => return Classified::Rejected(e),
            };
            // The decoder has checked that the case id names a household.
            return match feedback.household() {
                Some((key, _)) => Classified::Feedback { key, feedback },
                None => Classified::Rejected(not_a_case_id()),
            };
        }
        let binary = record
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("ce_specversion"));
        let decoded = if binary {
            let headers: Vec<(&str, &[u8])> = record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            decode_binary(&headers, &record.payload, &ctx)
        } else {
            decode_structured(&record.payload, &ctx)
        };
        match decoded {
            Err(e) => Classified::Rejected(e),
            Ok(signal) => {
                let key = self.keyer.key(signal.address());
                if !self.opt_out.is_empty() && self.opt_out.blocks(&signal, &key, &self.keyer) {
                    Classified::OptedOut
                } else {
                    Classified::Signal { key, signal }
                }
            }
        }
    }
}

/// Feedback whose case id names no household.
pub(crate) fn not_a_case_id() -> DecodeError {
    DecodeError {
        code: ErrorCode::InvalidValue,
        field: Some("feedback.zaak_id".into()),
        detail: "not a case id".into(),
    }
}

/// Where a forwarded record came from: its partner or feedback topic,
/// partition and offset. Dead letters name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub stream: String,
    pub partition: i32,
    pub offset: i64,
}

/// A classified record on its way from intake to the state role: the
/// value of a message on the household topic, keyed by household.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forwarded {
    pub origin: Origin,
    pub item: ForwardedItem,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ForwardedItem {
    Signal(Signal),
    /// Event time only (`engine.clock = "event"`): how far intake has
    /// come in the source partition `origin`: every signal up to
    /// `origin.offset` is forwarded, the latest signal time among them is
    /// `clock`, and with `idle` the source has nothing more to read for
    /// now. `partitions` is its topic's partition count. Intake sends one
    /// to every household partition after each batch, and one when a
    /// source falls idle. From these a household partition knows when no
    /// source can still send a signal older than a given time (the low
    /// watermark): it releases queued signals in event-time order up to
    /// there, and its clock, and with it the timers, follows. So the case
    /// events do not depend on how the partner partitions interleave, and
    /// they equal the embedded engine's for the same input.
    Progress {
        clock: Millis,
        idle: bool,
        partitions: u32,
    },
    /// Feedback keeps its original bytes: if it cannot be applied (its case
    /// is unknown or closed), the dead letter carries them.
    Feedback {
        feedback: Feedback,
        payload: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
    },
}

/// The version byte in front of an encoded [`Forwarded`]. Bump it on any
/// incompatible change; a state role refuses a version it does not know.
pub const FORWARDED_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ForwardedError {
    #[error("a household-topic record has format version {found}; this build reads version {FORWARDED_VERSION}")]
    Version { found: u8 },
    #[error("a household-topic record does not decode: {0}")]
    Decode(String),
    #[error("failed to encode a household-topic record: {0}")]
    Encode(String),
}

impl Forwarded {
    /// The forwarded form of a classified record, if it is forwarded at
    /// all (rejected and objected records are not).
    pub fn new(record: &Record, classified: Classified) -> Option<(HouseholdKey, Forwarded)> {
        let origin = Origin {
            stream: record.stream.to_string(),
            partition: record.partition,
            offset: record.offset,
        };
        match classified {
            Classified::Signal { key, signal } => Some((
                key,
                Forwarded {
                    origin,
                    item: ForwardedItem::Signal(signal),
                },
            )),
            Classified::Feedback { key, feedback } => Some((
                key,
                Forwarded {
                    origin,
                    item: ForwardedItem::Feedback {
                        feedback,
                        payload: record.payload.clone(),
                        headers: record.headers.clone(),
                    },
                },
            )),
            Classified::Rejected(_) | Classified::OptedOut => None,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, ForwardedError> {
        let body =
            postcard::to_allocvec(self).map_err(|e| ForwardedError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(FORWARDED_VERSION);
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Forwarded, ForwardedError> {
        match bytes.split_first() {
            Some((&FORWARDED_VERSION, body)) => {
                postcard::from_bytes(body).map_err(|e| ForwardedError::Decode(e.to_string()))
            }
            Some((&found, _)) => Err(ForwardedError::Version { found }),
            None => Err(ForwardedError::Decode("empty value".into())),
        }
    }

    /// The original record as intake read it (for dead letters), with the
    /// payload and headers it kept.
    pub(crate) fn original(&self) -> Record {
        let (payload, headers) = match &self.item {
            ForwardedItem::Signal(_) | ForwardedItem::Progress { .. } => (Vec::new(), Vec::new()),
            ForwardedItem::Feedback {
                payload, headers, ..
            } => (payload.clone(), headers.clone()),
        };
        Record {
            stream: self.origin.stream.as_str().into(),
            partition: self.origin.partition,
            offset: self.origin.offset,
            payload,
            headers,
        }
    }
}
