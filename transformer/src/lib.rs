//! eks-audit-lake transformer: the pipeline from CloudWatch Logs subscription records
//! (via Kinesis and Firehose) to stamped, attributed `eks_audit`, `eks_api_events`,
//! `sts_sessions` and `findings` Parquet.
//!
//! A library of stages, one file each, every one a plain function without I/O:
//! [`decode`] -> [`extract`] (with [`audit`] and [`eks_api`] parsing) -> [`plan`] ->
//! [`attribute`] -> [`detect`] -> [`finding`] -> [`partition`] -> [`encode`]. [`handler`] strings them together with the only I/O of
//! the path, behind two capability traits: [`lake::ObjectStore`] (local directory and
//! memory here; S3 in the `auditlake` crate) and `resolver::store::SessionStore`
//! ([`session_store`] over the lake). No AWS SDK, no async runtime and no environment
//! is read here: the `auditlake` crate's binaries adapt.

pub mod alerts;
pub mod attribute;
pub mod audit;
pub mod compact;
pub mod compactor;
pub mod decode;
pub mod detect;
pub mod eks_api;
pub mod encode;
pub mod envelope;
pub mod extract;
pub mod finding;
pub mod firehose;
#[doc(hidden)]
pub mod fuzz;
pub mod handler;
pub mod lake;
pub mod lookup;
pub mod metrics;
pub mod part_file;
pub mod partition;
pub mod plan;
pub mod session_store;
pub mod sigma;
#[cfg(test)]
mod testkit;
pub mod text;
pub mod trust;

pub use handler::{BatchOutput, Handler, HandlerConfig, InputRecord};
