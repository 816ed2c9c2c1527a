//! # Guarantees
//!
//! This is the contract between sources, the engine, the store and sinks,
//! written as a checkpoint document: each mechanism, and the failures it
//! covers. Keep it true; the tests named here check it.
//!
//! Vroeg runs in two models. The **partitioned model** (`vroeg run`, whose
//! default role `all` runs intake and state in one process, or `--role
//! intake|state`) is Kafka-native: exactly once for consumers of the case
//! events, several instances, state restored from Kafka. The **single-node
//! model** (`vroeg run --role single`, the service of earlier releases, and
//! the embedded `replay`) keeps its positions and an outbox in sled: nothing
//! lost, and a duplicate is always an exact re-send.
//!
//! ## Deterministic processing (both models)
//!
//! The core is pure: the same state, signal and time give the same result.
//! Case ids are `<household>-<episode>` and alert ids `<case id>-<sequence>`;
//! both are derived from state, never from a counter outside it. With
//! `engine.clock = "event"` the clock is the signals' own `time`, and due
//! timers fire at their own due time, so reprocessing gives byte-identical
//! events. [`crate::Engine::prepare`] computes a batch without writing
//! anything, so a batch can be thrown away and computed again.
//!
//! ## The partitioned model
//!
//! ### Intake: one transaction per batch
//!
//! Intake ([`crate::Intake`]) classifies each record of the partner topics
//! and the feedback topic without reading state. For each batch one Kafka
//! transaction holds every forwarded record (to the household topic, in the
//! partition of its household: `HouseholdKey::partition`), every dead
//! letter, and the partner-topic offsets that pass the batch
//! (`send_offsets_to_transaction`).
//!
//! | failure | what happens |
//! |---|---|
//! | crash before the commit | the transaction is aborted (by the broker's timeout, or at once when the instance restarts with the same `transactional.id`); the batch is read again from the committed offsets |
//! | crash after the commit | nothing to redo: forwarded records and offsets moved together |
//! | abortable error (a broker lost, a timeout) | the transaction is aborted, the consumer rewinds to the batch's first offsets, the batch is done again |
//! | zombie (a paused instance whose partitions moved, or two instances with one id) | its transactional producer is fenced (fatal) and its offset commit refused (stale group generation); nothing it wrote becomes visible; it drops its clients and rejoins |
//!
//! A `read_committed` reader of the household topic therefore sees each
//! input record forwarded exactly once, in the order of its source
//! partition.
//!
//! ### State: changelog and cache, then the offset
//!
//! Each household partition is processed by one [`crate::Engine`] over its
//! own sled tree. For each batch (all assigned partitions together) one
//! transaction holds: the changelog records of every household, case
//! record, position and merge-queue entry the batch changed
//! ([`vroeg_store::Commit::changelog`]), the case events, dead letters and
//! partner feedback, and the household-topic offsets. While it commits (on
//! a thread of its own) the batch is written to sled
//! ([`crate::Engine::complete_cached`], without a flush) with no changelog
//! offset; the offset it reflects is written once the commit landed
//! (`Store::set_changelog_offset`). A cache without an offset is rebuilt
//! from the changelog on its next restore, so sled may run ahead of the
//! changelog only where it will not be trusted.
//!
//! | failure | what happens |
//! |---|---|
//! | crash before the commit lands | aborted; the cache reflects no changelog offset if sled saw the batch, and the next assignment rebuilds it from the changelog; the input is read again |
//! | crash after the commit, before the offset is written | the cache reflects no offset if sled kept the batch (rebuilt from the changelog), or is behind the changelog (the next assignment restores the difference) |
//! | sled cannot write (disk full) | the role stops and the process exits 1; Kafka holds everything committed; a restart restores from the changelog |
//! | abortable error | aborted; the batch's partitions are restored from the changelog (their caches reflect no offset: rebuilt) and the consumer rewinds to the positions they hold |
//! | fenced (zombie) | fatal: clients replaced, partitions restored again on assignment; the zombie's last batch is not visible anywhere |
//! | disk lost | an empty state directory is rebuilt from the changelog on assignment |
//!
//! Consumers of the alerts topic with `isolation.level=read_committed` see
//! each case event exactly once: an aborted batch's events are never
//! delivered, and a committed batch is never processed again, because its
//! offsets moved in the same transaction.
//!
//! Checked on the real broker, each against an uninterrupted reference run
//! with 0 lost, 0 duplicated and identical content, by
//! `killloop::kill_loop_loses_nothing_and_doubles_nothing` (SIGKILLs and
//! the state dump), `kafka::crash_and_restart_loses_and_doubles_nothing`,
//! `kafka::graceful_restart_loses_and_doubles_nothing`,
//! `faults::a_30_second_broker_outage_leaves_the_service_up_not_ready_and_losing_nothing`
//! and `faults::a_store_that_cannot_write_stops_the_service_and_a_restart_loses_nothing`.
//!
//! ### Restore
//!
//! On assignment, before a partition takes input, its changelog partition is
//! read (`read_committed`) from the offset the cache reflects to its end
//! ([`vroeg_store::Store::restore`], which rebuilds the time index and team
//! index from the values). A cache that reflects no offset (new, deleted,
//! or a restore that stopped half-way) is cleared and rebuilt from the
//! beginning ([`vroeg_store::Store::bulk_restore`]); its changelog offset is
//! written only after all its records are written and flushed, so a crash
//! during it leaves a cache that reflects no offset, and the next
//! assignment starts it again. The restore reads on until the cache's stored
//! input position reaches the group's committed offset, so a transaction
//! the previous owner was committing as the partition moved is not missed.
//! A record that does not decode (in either path, superseded records
//! included) refuses the partition: it is paused,
//! logged, counted (`vroeg_changelog_refused_partitions`), `/readyz` turns
//! false, and nothing of it is processed or skipped. `/readyz` is false
//! while any partition restores. Tests:
//! `partitioned::three_instances_killed_ten_times_publish_each_case_event_exactly_once_and_restore_from_the_changelog`
//! (a deleted state directory, and the restores after SIGKILLs),
//! `partitioned::a_changelog_record_that_does_not_decode_refuses_its_partition_in_both_restore_paths`,
//! and the store's `a_bulk_restore_*` (among them a bulk restore that did
//! not finish) and
//! `a_partition_restored_from_its_changelog_equals_the_cache_written_live`.
//!
//! Not covered: a cache that was away longer than the changelog's
//! `delete.retention.ms` (a week, as `vroeg topics create` sets it) could
//! miss a compacted-away tombstone of the retention purge. Delete such an
//! instance's state directory before starting it.
//!
//! ### The event-time merge
//!
//! With `engine.clock = "event"`, a household's signals come through
//! several partner partitions, interleaved differently in every run. Intake
//! therefore reports, after each batch and when a source falls idle, how far
//! each source partition is ([`crate::ForwardedItem::Progress`]). A
//! household partition queues forwarded signals (in its state, so in the
//! changelog) and applies them in (time, source, offset) order once every
//! source has passed their time; its clock, and its timers, follow that low
//! watermark. The case events are then the same for every interleaving, and
//! the same as the embedded engine's for a time-ordered input. A signal
//! older than the watermark when it arrives (a source that is not time
//! ordered) is applied at once, as in the embedded engine.
//!
//! Checked by the property tests `partitioned_processing_equals_the_embedded_engine`
//! and `interleaving_of_source_partitions_does_not_change_the_case_events`
//! (`tests/properties.rs`), and on the real broker by
//! `partitioned::three_instances_killed_ten_times_…` in `tests/integration`:
//! three instances SIGKILLed at random, against an uninterrupted
//! single-instance reference: 0 lost, 0 duplicated, identical content,
//! identical state, and a deleted state directory rebuilt to the same.
//!
//! ## The single-node model
//!
//! ### Positions live with the state
//!
//! Every record carries its position: stream (a Kafka topic or a file),
//! partition, offset. For each batch, [`crate::Engine::process_batch`]
//! builds one `vroeg_store::Commit` holding
//!
//! - the new state of every household the batch touched (and its entry in
//!   the time index),
//! - the alert events and dead-letter entries it produced (the outbox),
//! - the case records (the archive the case API, the DDAS export and the
//!   report read) of every case the batch touched,
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
//! ahead of durable state. The Kafka commit is a convenience (lag
//! monitoring), never the source of truth: on assignment the consumer seeks
//! every partition to the position stored in sled.
//!
//! `tests/integration/killloop.rs` checks this against a real broker.
//!
//! ### The outbox
//!
//! Alerts and dead-letter messages are not sent while a batch is processed.
//! They enter the outbox inside the batch's commit, as typed messages
//! (`vroeg_store::Message`) that the sink encodes, and
//! [`crate::Engine::publish_outbox`] hands them to a [`crate::Sink`] after the
//! commit. An entry is removed only after the sink confirms it (for Kafka: the
//! delivery report of an idempotent producer). A crash between sending and
//! removing sends the entry again on restart, with the same id, so consumers
//! can drop the duplicate. Nothing is lost; a duplicate is always an exact
//! re-send.
//!
//! The single-node model runs one instance: its signals are partitioned by
//! partner, not by household, and a second member of the group would split
//! households across two stores.
//!
//! ## Both models
//!
//! ### Feedback from the case API
//!
//! The case API never writes state. A contact attempt or an outcome posted
//! to it is checked with the engine's own decoder and published to the
//! feedback topic; the API answers `202` only after the broker acknowledged
//! it. From there it is a record like any other: applied once (by its `id`,
//! kept in the case). A client that retries with the same `id` cannot apply
//! it twice.
//!
//! ### Bad input
//!
//! A record that does not decode becomes a dead letter in the same commit
//! (single-node) or transaction (partitioned) as the position that passes
//! it, carrying the original bytes and headers, the error code, field and
//! detail, and its source topic, partition and offset. So a bad record is
//! never silently dropped, and its position never passes before its dead
//! letter is written.
//!
//! A signal whose address or person is on the objection list is not an
//! error: it is counted and its position passes, with no state, no case
//! event and no dead letter (a dead letter would store it).
//!
//! ### Retention
//!
//! The retention purge ([`crate::Retention`]) runs between batches, so it
//! never races a batch. Its commits delete only what is past retention (or
//! objected to) and never touch positions, so a crash in the middle loses no
//! input and doubles no event; the next purge finishes the work. In the
//! partitioned model each chunk is a transaction of changelog tombstones,
//! written to sled after it commits. A purged household leaves its case
//! counter, so that case and alert ids stay unique for ever.
//!
//! ### Duplicates
//!
//! A signal is identified by (`source`, `id`). Each household keeps the
//! pairs of its signals for the whole lookback window, so a partner's
//! re-send is a no-op: it is counted as a duplicate and changes nothing.
//!
//! ## What the engine does not promise
//!
//! - Ordering across households: case events of different households may
//!   leave in any order; those of one household leave in sequence order.
//! - With `engine.clock = "wall"` (production), outcomes follow arrival
//!   order, like any live system: the same input replayed later gives other
//!   deadlines. Use `event` to reproduce.
//! - Feedback carries no event time: on event time the service applies it
//!   at the partition's clock when it arrives. `vroeg replay --feedback`
//!   and the rule tests move the clock to the feedback's own moment first
//!   (noon of its `datum`), so the timers due before it fire before it.
//! - A sink that confirms without having delivered breaks the outbox promise;
//!   sinks must confirm only durable delivery.
//! - The memory store (rule tests, `vroeg rules diff`) keeps nothing past the
//!   process and lends its households to each batch: a batch that fails or
//!   is given up leaves it short of them, so the engine refuses every later
//!   batch on it (`EngineError::StoreShort`) instead of going on with less.
