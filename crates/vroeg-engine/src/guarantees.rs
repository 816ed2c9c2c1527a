//! # Guarantees: effectively once
//!
//! This is the contract between sources, the engine, the store and sinks.
//! Keep it true; tests in `tests/` check it.
//!
//! ## Positions live with the state
//!
//! Every record carries its position: stream (a Kafka topic or a file),
//! partition, offset. For each batch, [`crate::Engine::process_batch`]
//! builds one `vroeg_store::Commit` holding
//!
//! - the new state of every household the batch touched (and its entry in
//!   the time index),
//! - the alert events and dead-letter entries it produced (the outbox),
//! - the case records (the archive the case API, the DDAS export and the
//!   report read) of every case the batch touched, and the team index of
//!   open cases,
//! - for every partition, the next offset to read,
//!
//! and writes it with a single sled `apply_batch`, which is atomic, then
//! flushes it when the store is durable. After a crash the store holds
//! either all of a batch or none of it. A source resumes each partition
//! from the stored position ([`crate::Engine::position`]); records before it
//! are skipped, records after it are processed again. Because the state and
//! the position always move together, a record is never applied twice and
//! never skipped.
//!
//! A source may also acknowledge upstream (a Kafka commit), but only after
//! `process_batch` has returned and the outbox entries of its batches are
//! delivered (`vroeg-kafka` does exactly that): the acknowledgement is never
//! ahead of durable state, and a dead-letter entry's offset counts as done
//! upstream only once the dead-letter write is confirmed. The Kafka commit is
//! a convenience (lag monitoring, partitions this store has never seen),
//! never the source of truth: on assignment the consumer seeks every
//! partition to the position stored in sled, and the engine skips any record
//! before it.
//!
//! `tests/integration/kafka.rs` checks this against a real broker: the
//! `crash_and_restart_loses_nothing` test SIGKILLs `vroeg run` three times
//! mid-stream and compares the alert ids and dead letters with an
//! uninterrupted run. It fails when the consumer acknowledges records to
//! Kafka before their batch is durable and resumes from Kafka's offset
//! instead of sled's (an alert goes missing).
//!
//! ## Deterministic processing
//!
//! The core is pure: the same state, signal and time give the same result.
//! In event-time mode (replay) the clock is the maximum signal `time` seen,
//! persisted with each commit, and due timers fire at their own due time, so
//! reprocessing a batch after a crash yields byte-identical alerts. Case ids
//! are `<household>-<episode>` and alert ids `<case id>-<sequence>`; both are
//! derived from state, never from a counter outside it.
//!
//! ## The outbox
//!
//! Alerts and dead-letter messages are not sent while a batch is processed.
//! They enter the outbox inside the batch's commit, and
//! [`crate::Engine::publish_outbox`] hands them to a [`crate::Sink`] after the
//! commit. An entry is removed only after the sink confirms it (for Kafka: the
//! delivery report of an idempotent producer). A crash between sending and
//! removing sends the entry again on restart, with the same id, so consumers
//! can drop the duplicate. Nothing is lost; a duplicate is always an exact
//! re-send.
//!
//! ## Feedback from the case API
//!
//! The case API never writes state. A contact attempt or an outcome posted
//! to it is checked with the engine's own decoder and published to the
//! feedback topic; the API answers `202` only after the broker acknowledged
//! it. From there it is a record like any other: applied once (by its `id`,
//! kept in the case), in a batch, with its position. A client that retries
//! with the same `id` cannot apply it twice.
//!
//! ## Bad input
//!
//! A record that does not decode becomes a dead-letter outbox entry in the
//! same commit as the position that passes it, carrying the original bytes
//! and headers, the error code, field and detail, and its stream, partition
//! and offset. So a bad record is never silently dropped, and its position
//! is never durable before its dead-letter entry is.
//!
//! A signal whose address or person is on the objection list is not an
//! error: it is counted and its position passes in the batch's commit, with
//! no state, no case event and no dead letter (a dead letter would store it).
//!
//! ## Retention
//!
//! The retention purge ([`crate::Retention`]) runs in the engine between
//! batches, so it never races a batch. Its commits delete only what is past
//! retention (or objected to) and never touch positions or the outbox, so a
//! crash in the middle loses no input and doubles no event; the next purge
//! finishes the work. A purged household leaves its case counter, so that
//! case and alert ids stay unique for ever: a returning household's new case
//! is never mistaken for an old one.
//!
//! ## Duplicates
//!
//! A signal is identified by (`source`, `id`). Each household keeps the
//! pairs of its signals for the whole lookback window, and the batch keeps
//! the pairs it has seen, so a re-send is a no-op: it is counted as a
//! duplicate and changes nothing. A re-send older than the window is
//! counted as outside the window and has no effect either, also after the
//! purge deleted its household.
//!
//! ## What the engine does not promise
//!
//! - Ordering across households: alerts of different households may leave
//!   in any order; alerts of one household leave in sequence order.
//! - A sink that confirms without having delivered breaks the outbox promise;
//!   sinks must confirm only durable delivery.
