//! Backfill inputs for `auditlake ingest`: files become handler input records.
//!
//! Accepted: CloudWatch Logs subscription payloads (gzip or JSON, one or more envelopes
//! back to back), the Firehose `raw/` archive (the same, possibly gzip inside gzip), and
//! CloudTrail S3 log files (`{"Records":[...]}`, gzip or not). CloudTrail records are
//! wrapped into envelopes shaped like the org trail's CloudWatch Logs subscription, so
//! every input takes the one handler path.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use transformer::decode::{self, DecodeError};
use transformer::handler::InputRecord;

/// Cap on one file's decompressed size.
pub const MAX_FILE_DECOMPRESSED: usize = 1 << 30;
/// Target size of one synthetic record and of one handler batch.
pub const RECORD_BYTES: usize = 4 << 20;
pub const BATCH_BYTES: usize = 32 << 20;
pub const BATCH_RECORDS: usize = 500;
/// Log group and owner recorded for CloudTrail events read from S3 log files. Trusted
/// only by `ingest` (the operator chose the files); `000000000000` is no AWS account, so
/// no envelope CloudWatch Logs delivers can carry it.
pub const CLOUDTRAIL_S3_GROUP: &str = "cloudtrail-s3-backfill";
pub const CLOUDTRAIL_S3_OWNER: &str = "000000000000";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("document {index}: not JSON: {message}")]
    Json { index: usize, message: String },
    #[error("document {index}: neither a CloudWatch Logs envelope nor a CloudTrail log file")]
    Unknown { index: usize },
    #[error("empty file")]
    Empty,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "messageType", default)]
    message_type: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrailTime<'a> {
    #[serde(default, borrow)]
    event_time: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyntheticEnvelope<'a> {
    message_type: &'static str,
    owner: &'static str,
    log_group: &'static str,
    log_stream: &'a str,
    subscription_filters: [&'static str; 0],
    log_events: Vec<SyntheticEvent<'a>>,
}

#[derive(Serialize)]
struct SyntheticEvent<'a> {
    id: String,
    timestamp: i64,
    message: &'a str,
}

/// Turn one file into handler input records (plain JSON, `gzip: false`).
pub fn records_from_file(
    name: &str,
    bytes: Vec<u8>,
    _record_cap: usize,
) -> Result<Vec<InputRecord>, IngestError> {
    let json = decode::gunzip_any(bytes, MAX_FILE_DECOMPRESSED)?;
    let mut out: Vec<InputRecord> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, out: &mut Vec<InputRecord>| {
        if !pending.is_empty() {
            out.push(InputRecord {
                record_id: format!("{name}#{}", out.len()),
                data: std::mem::take(pending),
                gzip: false,
            });
        }
    };
    let mut docs = 0;
    for (index, doc) in serde_json::Deserializer::from_slice(&json)
        .into_iter::<&RawValue>()
        .enumerate()
    {
        let doc = doc.map_err(|e| IngestError::Json {
            index,
            message: e.to_string(),
        })?;
        docs += 1;
        let probe: Probe<'_> = serde_json::from_str(doc.get()).map_err(|e| IngestError::Json {
            index,
            message: e.to_string(),
        })?;
        if let Some(records) = probe.records {
            flush(&mut pending, &mut out);
            for (chunk_i, chunk) in records.chunks(1000).enumerate() {
                let events = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| SyntheticEvent {
                        id: format!("{index}-{chunk_i}-{i}"),
                        timestamp: serde_json::from_str::<TrailTime<'_>>(r.get())
                            .ok()
                            .and_then(|t| t.event_time)
                            .and_then(resolver::time::parse_rfc3339_ms)
                            .unwrap_or(0),
                        message: r.get(),
                    })
                    .collect();
                let env = SyntheticEnvelope {
                    message_type: "DATA_MESSAGE",
                    owner: CLOUDTRAIL_S3_OWNER,
                    log_group: CLOUDTRAIL_S3_GROUP,
                    log_stream: name,
                    subscription_filters: [],
                    log_events: events,
                };
                let data = serde_json::to_vec(&env).map_err(|e| IngestError::Json {
                    index,
                    message: e.to_string(),
                })?;
                out.push(InputRecord {
                    record_id: format!("{name}#{}", out.len()),
                    data,
                    gzip: false,
                });
            }
        } else if probe.message_type.is_some() {
            pending.extend_from_slice(doc.get().as_bytes());
            pending.push(b'\n');
            if pending.len() >= RECORD_BYTES {
                flush(&mut pending, &mut out);
            }
        } else {
            return Err(IngestError::Unknown { index });
        }
    }
    flush(&mut pending, &mut out);
    if docs == 0 {
        return Err(IngestError::Empty);
    }
    Ok(out)
}

/// Group records into handler batches, like Firehose buffers do.
pub fn batches(records: Vec<InputRecord>) -> Vec<Vec<InputRecord>> {
    let mut out = Vec::new();
    let mut cur: Vec<InputRecord> = Vec::new();
    let mut size = 0;
    for r in records {
        if !cur.is_empty() && (size + r.data.len() > BATCH_BYTES || cur.len() >= BATCH_RECORDS) {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += r.data.len();
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The audit events of a `rules test` file, each as compact JSON (as CloudWatch Logs
/// delivers it): one event, an array of events, one event per line, or a rule pack
/// test file (`{"positive": [...], "negative": [...]}`, positives first).
pub fn audit_messages(text: &str) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let compact = |v: &Value| v.to_string();
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(evs)) => Ok(evs.iter().map(compact).collect()),
        Ok(Value::Object(o)) if o.contains_key("positive") || o.contains_key("negative") => {
            let mut out = Vec::new();
            for k in ["positive", "negative"] {
                match o.get(k) {
                    Some(Value::Array(evs)) => out.extend(evs.iter().map(compact)),
                    None => {}
                    Some(_) => return Err(format!("`{k}` is not an array of events")),
                }
            }
            Ok(out)
        }
        Ok(v @ Value::Object(_)) => Ok(vec![compact(&v)]),
        Ok(_) => Err("expected an audit event, an array of them, or one per line".into()),
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str::<Value>(l)
                    .map(|v| compact(&v))
                    .map_err(|e| format!("line {}: {e}", i + 1))
            })
            .collect(),
    }
}

/// A CloudWatch Logs envelope of a cluster's audit stream holding `messages`.
pub fn test_envelope(messages: &[String]) -> String {
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"id": format!("{i}"), "timestamp": 0, "message": m}))
        .collect();
    serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "000000000000",
        "logGroup": "/aws/eks/rules-test/cluster",
        "logStream": "kube-apiserver-audit-rules-test",
        "subscriptionFilters": [],
        "logEvents": events,
    })
    .to_string()
}
