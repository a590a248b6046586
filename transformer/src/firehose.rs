//! The Firehose data-transformation wire format (source: a Kinesis stream).
//!
//! Own types rather than `aws_lambda_events`: that crate requires a numeric
//! `subsequenceNumber` (fixtures carry `""`), models `result` as a free string and always
//! emits `metadata`. Here `result` is an enum and unknown fields are ignored.
//! Docs: <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html>

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseEvent {
    #[serde(default)]
    pub invocation_id: Option<String>,
    #[serde(default)]
    pub delivery_stream_arn: Option<String>,
    #[serde(default)]
    pub source_kinesis_stream_arn: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub records: Vec<FirehoseRecord>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseRecord {
    pub record_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_arrival_timestamp: Option<f64>,
    /// base64 of the exact Kinesis record bytes; echoed back unchanged for `Ok` and
    /// `ProcessingFailed`, so it is never re-encoded.
    pub data: String,
}

/// `result` of a response record: Firehose accepts exactly these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordResult {
    Ok,
    Dropped,
    ProcessingFailed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseResponseRecord {
    pub record_id: String,
    pub result: RecordResult,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FirehoseResponse {
    pub records: Vec<FirehoseResponseRecord>,
}
