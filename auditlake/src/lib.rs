//! eks-audit-lake's shell: what the binaries share around the pure pipeline of the
//! `transformer` crate. Configuration read once from the environment ([`config`]), the
//! AWS implementations of the capability traits ([`s3`]), the lake a URI names
//! ([`lake`]), and building the handler from a validated configuration ([`start`]).
//!
//! Binaries: `bootstrap` (the Lambda), `auditlake` (the CLI: demo, invoke, ingest,
//! consume, ddl; only it links the Kinesis SDK), `bench`.

pub mod aws_error;
pub mod config;
pub mod dynamodb;
pub mod lake;
pub mod s3;
pub mod sessions;
pub mod start;
pub mod synth;
