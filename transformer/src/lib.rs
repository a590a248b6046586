//! eks-audit-lake transformer: CloudWatch Logs subscription records (via Kinesis and
//! Firehose) -> stamped, attributed `eks_audit` and `sts_sessions` Parquet.
//!
//! Pure stages (`decode`, `audit`, `encode`, the extraction in `handler`) do no I/O; the
//! `lake` and `session_store` modules are the I/O seams, and the binaries (`bootstrap`,
//! `auditlake`) only adapt.

pub mod audit;
pub mod config;
pub mod consume;
pub mod decode;
pub mod demo;
pub mod encode;
pub mod firehose;
pub mod handler;
pub mod ingest;
pub mod lake;
pub mod metrics;
pub mod runtime;
pub mod session_store;
pub mod text;

pub use handler::{BatchOutput, Handler, HandlerConfig, InputRecord};
