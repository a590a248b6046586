//! Test helpers: run batches through the real handler on in-memory stores and read the
//! Parquet it wrote back with the parquet crate's own reader.
#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;

use arrow_array::{
    Array, Int32Array, ListArray, MapArray, RecordBatch, StringArray, TimestampMillisecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

use resolver::MemorySessionStore;
use transformer::handler::{Handler, HandlerConfig, InputRecord};
use transformer::lake::MemoryStore;
use transformer::trust::TrustedTrails;

pub type TestHandler = Handler<MemoryStore, Arc<MemorySessionStore>>;

/// The organisation trail of these tests (see `trail_record`).
pub const TRAIL_OWNER: &str = "999999999999";
pub const TRAIL_GROUP: &str = "aws-cloudtrail-logs-o-example";

/// `config`, trusting the tests' trail when it trusts nothing yet.
pub fn trusting(mut config: HandlerConfig) -> HandlerConfig {
    if config.trusted_trails.is_empty() {
        config.trusted_trails = TrustedTrails::none().with(TRAIL_OWNER, TRAIL_GROUP);
    }
    config
}

pub fn handler(config: HandlerConfig) -> (TestHandler, Arc<MemoryStore>, Arc<MemorySessionStore>) {
    let lake = Arc::new(MemoryStore::default());
    let sessions = Arc::new(MemorySessionStore::default());
    (
        Handler::new(trusting(config), lake.clone(), sessions.clone()),
        lake,
        sessions,
    )
}

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip CWL envelope record for a cluster's audit stream.
pub fn audit_record(id: &str, owner: &str, cluster: &str, messages: &[String]) -> InputRecord {
    envelope_record(
        id,
        owner,
        &format!("/aws/eks/{cluster}/cluster"),
        "kube-apiserver-audit-0123",
        messages,
    )
}

pub fn envelope_record(
    id: &str,
    owner: &str,
    group: &str,
    stream: &str,
    messages: &[String],
) -> InputRecord {
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("{id}{i:04}"), "timestamp": 1_732_626_427_000i64 + i as i64, "message": m}))
        .collect();
    InputRecord::gzip(
        id,
        gz(cwl_envelope(owner, group, stream, &events).as_bytes()),
    )
}

/// An envelope in CloudWatch Logs' own field order (`messageType` and `owner` first,
/// which the handler relies on to share a batch's budget among accounts).
pub fn cwl_envelope(owner: &str, group: &str, stream: &str, events: &[Value]) -> String {
    format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":{},"logGroup":{},"logStream":{},"subscriptionFilters":["f"],"logEvents":{}}}"#,
        json!(owner),
        json!(group),
        json!(stream),
        Value::Array(events.to_vec())
    )
}

/// A CloudTrail record as the org trail's log group delivers it.
pub fn trail_record(id: &str, events: &[Value]) -> InputRecord {
    let msgs: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    envelope_record(
        id,
        TRAIL_OWNER,
        TRAIL_GROUP,
        "o-example_CloudTrail_us-east-1",
        &msgs,
    )
}

/// An audit event by an aws-iam-authenticator identity.
pub fn aws_event(audit_id: &str, at: &str, username: &str, extra: Option<Value>) -> String {
    let mut user = json!({"username": username, "groups": ["system:authenticated"]});
    if let Some(x) = extra {
        user["extra"] = x;
    }
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/pods", "verb": "list", "user": user, "sourceIPs": ["198.51.100.1"],
        "objectRef": {"resource": "pods", "apiVersion": "v1"}, "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": at, "stageTimestamp": at})
    .to_string()
}

pub fn assumed_extra(account: &str, role: &str, session: &str, key: &str) -> Value {
    json!({"accessKeyId": [key], "arn": [format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")],
        "canonicalArn": [format!("arn:aws:iam::{account}:role/{role}")], "sessionName": [session], "principalId": ["AROAX"]})
}

pub fn read_parquet(bytes: Vec<u8>) -> Vec<RecordBatch> {
    let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    r.map(|b| b.unwrap()).collect()
}

/// All rows of a table in the memory lake, as one batch per object.
pub fn table(lake: &MemoryStore, table: &str) -> Vec<(String, RecordBatch)> {
    let mut out = Vec::new();
    for k in lake
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{table}/")))
    {
        for b in read_parquet(lake.object(&k).unwrap()) {
            out.push((k.clone(), b));
        }
    }
    out
}

/// A row as column name -> JSON value (strings, ints, lists, maps; timestamps as ms).
pub fn rows(batches: &[(String, RecordBatch)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (key, b) in batches {
        for i in 0..b.num_rows() {
            let mut row = serde_json::Map::new();
            row.insert("_object".into(), json!(key));
            for (f, col) in b.schema().fields().iter().zip(b.columns()) {
                row.insert(f.name().clone(), cell(col.as_ref(), i));
            }
            out.push(Value::Object(row));
        }
    }
    out
}

fn cell(col: &dyn Array, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return json!(a.value(i));
    }
    if let Some(a) = any.downcast_ref::<Int32Array>() {
        return json!(a.value(i));
    }
    if let Some(a) = any.downcast_ref::<arrow_array::BooleanArray>() {
        return json!(a.value(i));
    }
    if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
        return json!(a.value(i));
    }
    if let Some(a) = any.downcast_ref::<ListArray>() {
        let v = a.value(i);
        return Value::Array((0..v.len()).map(|j| cell(v.as_ref(), j)).collect());
    }
    if let Some(a) = any.downcast_ref::<MapArray>() {
        let v = a.value(i);
        let keys = v.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let mut m = serde_json::Map::new();
        for j in 0..v.len() {
            m.insert(keys.value(j).to_string(), cell(v.column(1).as_ref(), j));
        }
        return Value::Object(m);
    }
    panic!("unexpected column type {:?}", col.data_type())
}

pub fn find<'a>(rows: &'a [Value], col: &str, val: &str) -> &'a Value {
    let hits: Vec<&Value> = rows.iter().filter(|r| r[col] == json!(val)).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one row with {col} = {val}, got {}",
        hits.len()
    );
    hits[0]
}

pub fn now() -> i64 {
    1_732_700_000_000
}
