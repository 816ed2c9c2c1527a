//! Vroeg's Kafka binding: the signal consumer, the alert and dead-letter
//! producers, and the CloudEvents Kafka protocol binding.
//!
//! The consumer never decides when an offset is done: [`pipeline::Pipeline`]
//! hands records to the engine, which commits state and positions to sled
//! in one atomic batch; only then does the consumer commit to Kafka, and
//! only for monitoring (see `vroeg_engine::guarantees`). On assignment it
//! seeks every partition to the position stored in sled; on revoke it
//! finishes and persists the batch in flight first.
//!
//! This crate must not hold domain logic: decoding, state and rules belong
//! to the engine.

pub mod cases;
pub mod client_log;
pub mod cloudevents;
pub mod consumer;
pub mod control;
pub mod intake;
pub mod pipeline;
pub mod producer;
pub mod send;
pub mod settings;
pub mod state;
pub mod topics;
pub mod txn;

pub use consumer::{run_consumer, ConsumerError, Health};
pub use pipeline::{set_clock_offset, wall_now, Pipeline};
pub use producer::{FeedbackProducer, KafkaSink};
pub use settings::{ContentMode, KafkaSettings};
