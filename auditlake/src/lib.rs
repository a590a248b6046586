//! eks-audit-lake's shell: what the binaries share around the pure pipeline of the
//! `transformer` crate. Configuration read once from the environment ([`config`]), the
//! AWS implementations of the capability traits ([`s3`]), the lake a URI names
//! ([`lake`]), and building the handler from a validated configuration ([`start`]), and the compaction
//! job's shell ([`compaction`]).
//!
//! Binaries: `bootstrap` (the Lambda: the Firehose transformation, or with
//! `AUDITLAKE_FUNCTION=compact` the scheduled compaction), `auditlake` (the CLI: demo,
//! invoke, ingest, consume, compact, ddl; only it links the Kinesis SDK), `bench`.

pub mod aws_error;
pub mod compaction;
pub mod config;
pub mod dynamodb;
pub mod eventbridge;
pub mod lake;
pub mod s3;
pub mod sessions;
pub mod start;
pub mod synth;
