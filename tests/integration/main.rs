//! Vroeg's integration tests, one binary: the command line without Kafka
//! (`cli`; `ruletests`: a rule test and a replay give the same case
//! events; `rulesdiff`), and `vroeg run` against a real Apache Kafka broker: the
//! single-node service (`kafka`, `lifecycle`, `faults`, `killloop`,
//! `privacy`), the partitioned service (`partitioned`), what an
//! operator sees of it: metrics and logs (`operations`, `faults`), the
//! case read model (`readmodel`), and the wijkteam inbox in a real
//! headless Chromium (`inbox`).
//!
//! The Kafka tests use the broker at `VROEG_TEST_BROKERS` if set (CI starts
//! one with `scripts/kafka.sh start`); otherwise they start one themselves
//! with that script, which needs Java 17 and Maven.

mod cli;
mod deploy;
mod faults;
mod inbox;
mod kafka;
mod killloop;
mod lifecycle;
mod operations;
mod partitioned;
mod privacy;
mod readmodel;
mod rulesdiff;
mod ruletests;
