//! The outbox's messages: typed, as the engine made them. Each sink
//! encodes them for its medium (Kafka: CloudEvents and the dead-letter
//! headers, `vroeg-kafka::producer`; replay: JSON lines); nothing reads a
//! message back from bytes.
//!
//! The single-node store keeps messages that are not yet published as JSON
//! chunks, one per commit ([`crate::Store::outbox`]). Chunks an older
//! version wrote (the wire form: destination, key, payload, string headers)
//! are still read, and turned into messages.

use serde::{Deserialize, Serialize};
use vroeg_core::archive::CaseRecord;
use vroeg_core::feedback::PartnerStatus;
use vroeg_core::signal::DecodeError;
use vroeg_core::state::SignalRef;
use vroeg_core::Alert;

use crate::StoreError;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// Case alert events, for the wijkteams.
    Alerts,
    /// Rejected input, with its reason.
    DeadLetter,
    /// The restricted status of a signal, for its partner.
    PartnerFeedback,
    /// Case records as they now are, for the read models.
    Cases,
}

/// A message waiting to be published. It is removed from the outbox only
/// once its sink has confirmed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A case event, for the wijkteams (key: its household).
    Alert(Box<Alert>),
    /// Input that was refused, with its reason.
    DeadLetter(Box<DeadLetter>),
    /// What became of a partner's signal, in the restricted terms partners
    /// may see (key: the partner's source). Never content.
    PartnerStatus {
        signal: SignalRef,
        status: PartnerStatus,
    },
    /// A case record as it now is, or (`None`) its deletion: a tombstone
    /// on the compacted case topic (key: the case id).
    Case {
        id: String,
        record: Option<Box<CaseRecord>>,
    },
}

impl Message {
    pub fn destination(&self) -> Destination {
        match self {
            Message::Alert(_) => Destination::Alerts,
            Message::DeadLetter(_) => Destination::DeadLetter,
            Message::PartnerStatus { .. } => Destination::PartnerFeedback,
            Message::Case { .. } => Destination::Cases,
        }
    }

    /// The message key: the household of a case event, the partner of a
    /// status, the case of a record; a dead letter has none.
    pub fn key(&self) -> Option<&str> {
        match self {
            Message::Alert(alert) => Some(&alert.huishouden),
            Message::DeadLetter(_) => None,
            Message::PartnerStatus { signal, .. } => Some(&signal.source),
            Message::Case { id, .. } => Some(id),
        }
    }
}

/// A record that was refused: where it came from, what it was, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The stream (a topic, or `file:<name>` in replay), partition and
    /// offset of the record.
    pub stream: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's own headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's bytes, cut at the largest dead letter (see
    /// [`DeadLetter::cut`]).
    pub payload: Vec<u8>,
    /// Set when the payload was cut: the original's size and SHA-256
    /// (hex), so that its sender can still identify it.
    pub cut: Option<Cut>,
    pub error: DecodeError,
}

/// What a cut dead letter was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub bytes: usize,
    pub sha256: String,
}

/// A chunk as an older version stored it: the wire form.
#[derive(Deserialize)]
struct LegacyEntry {
    destination: Destination,
    key: Option<String>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl LegacyEntry {
    fn message(self) -> Result<Message, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "outbox entry of an older version",
            detail,
        };
        let header = |name: &str| {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        Ok(match self.destination {
            Destination::Alerts => Message::Alert(Box::new(
                serde_json::from_slice(&self.payload).map_err(|e| corrupt(e.to_string()))?,
            )),
            Destination::PartnerFeedback => {
                #[derive(Deserialize)]
                struct Status {
                    source: vroeg_core::Name,
                    id: vroeg_core::Name,
                    status: PartnerStatus,
                }
                let s: Status =
                    serde_json::from_slice(&self.payload).map_err(|e| corrupt(e.to_string()))?;
                Message::PartnerStatus {
                    signal: SignalRef {
                        source: s.source,
                        id: s.id,
                    },
                    status: s.status,
                }
            }
            Destination::Cases => Message::Case {
                id: self.key.clone().unwrap_or_default(),
                record: if self.payload.is_empty() {
                    None
                } else {
                    Some(Box::new(
                        serde_json::from_slice(&self.payload)
                            .map_err(|e| corrupt(e.to_string()))?,
                    ))
                },
            },
            Destination::DeadLetter => {
                let code = header("vroeg_error_code").unwrap_or_default();
                let code = vroeg_core::signal::ErrorCode::parse(&code)
                    .ok_or_else(|| corrupt(format!("unknown error code {code:?}")))?;
                let number = |name: &str| header(name).and_then(|v| v.parse::<i64>().ok());
                let cut = match (
                    number("vroeg_original_bytes"),
                    header("vroeg_original_sha256"),
                ) {
                    (Some(bytes), Some(sha256)) => Some(Cut {
                        bytes: bytes as usize,
                        sha256,
                    }),
                    _ => None,
                };
                let error = DecodeError {
                    code,
                    field: header("vroeg_error_field"),
                    detail: header("vroeg_error_detail").unwrap_or_default(),
                };
                let own = self
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with("vroeg_"))
                    .cloned()
                    .collect();
                Message::DeadLetter(Box::new(DeadLetter {
                    stream: header("vroeg_source_topic").unwrap_or_default(),
                    partition: number("vroeg_source_partition").unwrap_or(0) as i32,
                    offset: number("vroeg_source_offset").unwrap_or(0),
                    headers: own,
                    payload: self.payload,
                    cut,
                    error,
                }))
            }
        })
    }
}

/// A chunk as it is stored: JSON (an array, so its first byte is `[`).
pub(crate) fn encode_chunk(messages: &[Message]) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(messages).map_err(|e| StoreError::Encode {
        what: "outbox chunk",
        detail: e.to_string(),
    })
}

/// A stored chunk: JSON, or the versioned postcard of an older version.
pub(crate) fn decode_chunk(bytes: &[u8]) -> Result<Vec<Message>, StoreError> {
    if bytes.first() == Some(&b'[') {
        return serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            what: "outbox chunk",
            detail: e.to_string(),
        });
    }
    let legacy: Vec<LegacyEntry> = crate::decode("outbox chunk", bytes)?;
    legacy.into_iter().map(LegacyEntry::message).collect()
}
